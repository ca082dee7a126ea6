"""The two leaderboards: every shipped multi-task blueprint, and every multi-scenario one, on
kuairand-pure against a shared model, over paired seeds (issues 19 and 20).

    python bench/leaderboard.py multitask     # -> docs/leaderboard.md
    python bench/leaderboard.py scenarios     # -> docs/scenario_leaderboard.md
    python bench/leaderboard.py multitask --quick   # tiny settings, page under runs/leaderboard-quick/

Discovery reads blueprints/*.yaml each time: a blueprint with a ``scenarios:`` section is a
multi-scenario one; one without, that binds to more than one task, is multi-task; one that does
not bind to the data (tasks tied to another dataset's labels, e.g. ESMM's click/conversion) is
listed on the page with the reason. Each (blueprint, seed) trains the way ``composer compare``
trains it (``composer.training``: prepare, fit, report; run i uses seed ``--seed`` + i for every
model, so runs pair) and is saved as a compare-style run folder NAME-seedSEED under
runs/leaderboard/BOARD/ with a ``leaderboard.json`` beside its metrics. A later run reuses every
entry whose fingerprint (the blueprint file's text, the data with its options, the training
settings, the Keras backend) still matches and trains only what is missing or stale, so new
blueprints cost only their own runs. Failures are reported on the page and not cached.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

FORMAT = 1  # bump when an entry's contents change: every cached entry retrains

# Defaults for ~20 minutes per board on 2 free CPU cores (TensorFlow) with ~18 blueprints: a run
# there took 9-19 s at rows=40,000 (about 4-5 s of it building the model), see bench/README.md.
BOARDS = {
    "multitask": {"page": "docs/leaderboard.md", "rows": 50_000, "epochs": 1, "seeds": 3},
    "scenarios": {"page": "docs/scenario_leaderboard.md", "rows": 50_000, "epochs": 1, "seeds": 3},
}
QUICK = {"rows": 3_000, "epochs": 1, "seeds": 2}
# Blueprints whose blocks name tasks bind to kuairand-pure's labels through these `--set`s (shown
# on the page and part of each run's fingerprint); every other blueprint runs as written.
BINDINGS = {
    "kuairand-pure": {
        "dbmtl": ["blocks.dbmtl.relations={long_view: [is_click], is_like: [is_click, long_view]}"],
    },
}


def bindings(name: str, data: str) -> list[str]:
    """The ``--set`` texts that bind blueprint ``name`` to ``data`` (a dataset with options)."""
    return list(BINDINGS.get(data.split(":")[0], {}).get(name, []))
BASELINE = "shared_bottom"


# ------------------------------------------------------------------------------- discovery

def discover(folder: Path, data: str) -> dict:
    """{'multitask': {name: file}, 'scenarios': {name: file}, 'excluded': {name: why}, 'routing':
    names with a scenarios: section, bound or not, 'shared': {name: file} bound without scenario
    routing, whatever their task count} for the blueprints directly in ``folder``,
    bound to ``data``."""
    import yaml

    from composer.blueprint import load_blueprint
    from composer.blueprint.errors import BlueprintError

    out = {"multitask": {}, "scenarios": {}, "excluded": {}, "routing": set(), "shared": {}}
    for file in sorted(folder.glob("*.yaml")):
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            out["excluded"][file.stem] = f"does not parse: {exc}"
            continue
        raw = raw if isinstance(raw, dict) else {}
        name = str(raw.get("name", file.stem))
        if name in out["shared"] or name in out["scenarios"]:
            out["excluded"][f"{name} ({file.name})"] = "another blueprint has this name; runs are keyed by name"
            continue
        if raw.get("scenarios") is not None:
            out["routing"].add(name)
        try:
            bp, _ = load_blueprint(str(file), data=data)
        except BlueprintError as exc:
            out["excluded"][name] = _why_not(raw, str(exc), data)
            continue
        if raw.get("scenarios") is not None:
            out["scenarios"][name] = str(file)
            continue
        out["shared"][name] = str(file)  # no routing: a candidate shared model
        if len(bp.task_names) > 1:
            out["multitask"][name] = str(file)
        else:
            out["excluded"][name] = (f"one task ({', '.join(bp.task_names)}) and no scenario routing: "
                                     f"neither multi-task nor multi-scenario")
    return out


def _why_not(raw: dict, error: str, data: str) -> str:
    import re

    first = error.splitlines()[0] if error else "does not bind"
    if "is not a label of dataset" in error and isinstance(raw.get("tasks"), list):
        texts = [str(t.get(k)) for t in raw["tasks"] if isinstance(t, dict) for k in ("label", "where") if t.get(k)]
        labels = sorted({w for text in texts for w in re.findall(r"[A-Za-z_]\w*", text)})
        return (f"its tasks read the labels of its own dataset ({raw.get('data')}: {', '.join(labels)}), which "
                f"{data.split(':')[0]} does not have: not on a real-data board yet (bench/esmm_vs_naive.py "
                f"compares esmm and esm2 on their own data; `composer compare` takes the others there)")
    return f"does not bind to {data}: {first.split(': ', 1)[-1]}"


# ------------------------------------------------------------------------------- the cache

def fingerprint(file: str, data: str, settings: dict, sets: list[str] = ()) -> str:
    import keras

    text = Path(file).read_text(encoding="utf-8")
    key = {"format": FORMAT, "blueprint": text, "data": data, "settings": settings,
           "backend": keras.backend.backend()}
    if sets:
        key["sets"] = list(sets)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


ENTRY = "leaderboard.json"


def cached(folder: Path, fp: str) -> dict | None:
    path = folder / ENTRY
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if entry.get("fingerprint") == fp else None


def train_one(file: str, data: str, seed: int, settings: dict, dataset, folder: Path,
              sets: list[str] = ()) -> tuple[dict, object]:
    """One run as ``composer compare`` trains it; saved to ``folder`` with its entry."""
    from composer import training

    start, cpu = time.perf_counter(), time.process_time()
    exp = training.prepare(file, data=data, dataset=dataset, training={**settings, "seed": seed},
                           sets=list(sets) or None)
    history = training.fit(exp, verbose=0)
    rep = training.report(exp, "test")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    training.save_run(exp, str(folder), history, rep)
    spec = exp.dataset.spec
    train_rows = {}
    if spec.scenario:
        counts = exp.dataset.part("train").frame[spec.scenario].astype(str).value_counts()
        train_rows = {str(k): int(v) for k, v in counts.items()}
    entry = {"format": FORMAT, "name": exp.bp.name, "file": os.path.relpath(file, ROOT), "seed": seed,
             "data": data, "settings": settings, "params": int(exp.model.count_params()),
             "train_s": float(exp.timings["train_s"]), "wall_s": wall, "cpu_s": cpu,
             "epochs_run": int(exp.timings["epochs_run"]), "counts": exp.dataset.counts(),
             "scenario_train_rows": train_rows, "report": rep.to_dict()}
    return entry, exp.dataset


def run_board(models: dict[str, str], data: str, seeds: list[int], settings: dict, out: Path,
              log=print, train: bool = True) -> tuple[dict, dict, dict]:
    """Every (model, seed): the cached entry when its fingerprint matches, else trained now
    (``train`` False: left out, as 'not trained yet'). Returns ({name: [entry per seed]},
    {name: why it is missing}, {'trained': n, 'cached': n, 'seconds': s})."""
    runs, failed = {}, {}
    stats = {"trained": 0, "cached": 0, "seconds": 0.0}
    dataset = None
    start = time.perf_counter()
    for name, file in models.items():
        entries = []
        for seed in seeds:
            folder = out / f"{name}-seed{seed}"
            fp = fingerprint(file, data, settings, bindings(name, data))
            entry = cached(folder, fp)
            if entry is not None:
                stats["cached"] += 1
                entries.append(entry)
                continue
            if not train:
                failed[name] = (f"not trained yet ({len(entries)} of {len(seeds)} seeds cached with these "
                                f"settings; run without --no-train)")
                break
            if dataset is None:
                from composer.data.registry import load

                dataset = load(data)
            try:
                entry, dataset = train_one(file, data, seed, settings, dataset, folder, bindings(name, data))
            except Exception as exc:  # a blueprint being written may not train yet: say so, go on
                failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
                log(f"{name} seed {seed}: FAILED {failed[name]}", flush=True)
                break
            entry["fingerprint"] = fp
            (folder / ENTRY).write_text(json.dumps(entry, indent=1) + "\n")
            stats["trained"] += 1
            log(f"{name} (seed {seed}): {entry['epochs_run']} epochs, {entry['train_s']:.1f}s train, "
                f"{entry['wall_s']:.1f}s wall, test macro AUC {_macro(entry)}", flush=True)
            entries.append(entry)
        if name not in failed:
            runs[name] = entries
    stats["seconds"] = time.perf_counter() - start
    return runs, failed, stats


def _macro(entry) -> str:
    v = entry["report"]["macro"].get("auc")
    return "n/a" if v is None else f"{v:.4f}"


def write_compare_txt(out: Path, runs: dict, baseline: str) -> None:
    """compare.txt as ``composer compare`` writes it, so ``composer report`` reads the folder."""
    from composer.metrics import compare_table
    from composer.paired import paired_table

    from _leaderboard_page import reports

    lines = [f"{n} (seed {e['seed']}): {e['epochs_run']} epochs, {e['train_s']:.1f}s, test macro AUC {_macro(e)}"
             for n, es in runs.items() for e in es]
    reps = {n: reports(es) for n, es in runs.items()}
    text = compare_table(reps)
    if len(reps) > 1 and min(len(r) for r in reps.values()) > 1:
        text += (f"\n\npaired with {baseline}, run i of each model with run i of {baseline} (the i-th seed)\n"
                 + paired_table(reps, baseline))
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.txt").write_text("\n".join(lines) + "\n\n" + text + "\n")


# ------------------------------------------------------------------------------- command line

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("board", choices=list(BOARDS), help="multitask: docs/leaderboard.md; scenarios: "
                   "docs/scenario_leaderboard.md")
    p.add_argument("--data", default="kuairand-pure", help="dataset name, options allowed "
                   "(kuairand-pure:histories=0,merge_tabs=1100); --rows adds rows=N")
    p.add_argument("--rows", type=int, help="the dataset option rows=N (kuairand-pure keeps whole users; "
                   "0: every row); default per board, see bench/README.md")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seeds", type=int, help="runs per blueprint (3 or more for the intervals)")
    p.add_argument("--seed", type=int, default=0, help="run i uses seed SEED + i (as composer compare)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--baseline", default=BASELINE, help="blueprint name the others are paired with")
    p.add_argument("--blueprints", default=str(ROOT / "blueprints"), help="folder of blueprints to discover")
    p.add_argument("--only", help="comma-separated names: only these (and the baseline)")
    p.add_argument("--task", help="scenarios: the task of the per-scenario tables (default: the first)")
    p.add_argument("--small-share", type=float, default=0.01, help="scenarios: a scenario with under this "
                   "share of the train rows is small (default 0.01: tabs 8, 5, 12, 3, 11, 9, 7, 13, 10, 14)")
    p.add_argument("--out", help="cache folder (default runs/leaderboard/BOARD, --quick runs/leaderboard-quick/BOARD)")
    p.add_argument("--page", help="the Markdown page to write (default docs/..., --quick OUT/page.md)")
    p.add_argument("--no-train", action="store_true", help="write the page from the cached runs only; "
                   "blueprints missing a seed are listed as not trained yet")
    p.add_argument("--quick", action="store_true", help=f"tiny settings for a smoke test: rows={QUICK['rows']}, "
                   f"epochs {QUICK['epochs']}, {QUICK['seeds']} seeds")
    return p.parse_args(argv)


def data_string(data: str, rows: int | None) -> str:
    if not rows:
        return data
    name, _, options = data.partition(":")
    kept = [o for o in options.split(",") if o and not o.startswith("rows=")]
    return f"{name}:{','.join(kept + [f'rows={rows}'])}"


def main(argv=None) -> int:
    args = parse_args(argv)
    _quiet()
    from _leaderboard_page import multitask_page, scenario_page

    from composer.blueprint import load_blueprint

    board = {**BOARDS[args.board], **(QUICK if args.quick else {})}
    rows = args.rows if args.rows is not None else board["rows"]
    epochs = args.epochs or board["epochs"]
    n_seeds = args.seeds or board["seeds"]
    data = data_string(args.data, rows)
    out = Path(args.out or ROOT / ("runs/leaderboard-quick" if args.quick else "runs/leaderboard") / args.board)
    page = Path(args.page or (out / "page.md" if args.quick else ROOT / board["page"]))
    settings = {"epochs": epochs}
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    if args.learning_rate:
        settings["learning_rate"] = args.learning_rate
    seeds = [args.seed + i for i in range(n_seeds)]

    found = discover(Path(args.blueprints), data)
    pool = found["multitask"] if args.board == "multitask" else found["shared"]
    if args.baseline not in pool:
        kind = "multi-task" if args.board == "multitask" else "shared (no scenario routing)"
        print(f"leaderboard: baseline '{args.baseline}' is not a {kind} blueprint of {args.blueprints} "
              f"bound to {data}", file=sys.stderr)
        return 2
    base_file = pool[args.baseline]
    found["excluded"].pop(args.baseline, None)  # on single-task data the baseline is "one task" too
    excluded = dict(found["excluded"])
    if args.board == "multitask":
        models = found["multitask"]
        if found["routing"]:
            excluded = {n: why for n, why in excluded.items() if n not in found["routing"]}
            excluded["multi-scenario (scenario routing)"] = (f"{', '.join(sorted(found['routing']))}: on the "
                                                             f"scenario leaderboard (docs/scenario_leaderboard.md)")
    else:
        models = {args.baseline: base_file, **found["scenarios"]}
        others = sorted(set(found["multitask"]) - {args.baseline})
        if others:
            excluded["multi-task, no scenario routing"] = (f"{', '.join(others)}: on the multi-task "
                                                           f"leaderboard (docs/leaderboard.md)")
        bp, _ = load_blueprint(base_file, data=data)
        scenario = _scenario_column(data)
        if scenario not in [f.name for f in bp.features]:
            print(f"leaderboard: {args.baseline} bound to {data} does not read the scenario column "
                  f"'{scenario}' as a feature: it is no fair shared model", file=sys.stderr)
            return 2
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")} | {args.baseline}
        left = sorted(set(models) - wanted)
        models = {n: f for n, f in models.items() if n in wanted}
        if left:
            excluded["left out by --only"] = f"{', '.join(left)}: not run this time"
    models = {args.baseline: models[args.baseline], **{n: f for n, f in models.items() if n != args.baseline}}

    print(f"{args.board}: {len(models)} blueprints x {len(seeds)} seeds on {data}, {epochs} epoch(s); "
          f"cache {out}", flush=True)
    runs, failed, stats = run_board(models, data, seeds, settings, out, train=not args.no_train)
    if args.baseline not in runs:
        print(f"leaderboard: the baseline failed: {failed.get(args.baseline)}", file=sys.stderr)
        return 1
    write_compare_txt(out, runs, args.baseline)

    argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    first = runs[args.baseline][0]
    c = first["counts"]
    all_runs = [e for es in runs.values() for e in es]
    wall, cpu = (sum(e.get(k) or 0 for e in all_runs) / 60 for k in ("wall_s", "cpu_s"))
    cpu_text = f"{cpu:.1f} min" if all(e.get("cpu_s") for e in all_runs) else "n/a"
    users = "; rows=N keeps whole users, by md5 of the user id" if data.startswith("kuairand-pure") and rows else ""
    overrides = f"; overrides {settings}" if len(settings) > 1 else ""
    facts = [("data", f"`{data}` (train {c['train']:,} · valid {c['valid']:,} · test {c['test']:,} rows{users})"),
             ("training", f"{epochs} epoch(s) (with more, the best epoch on the validation monitor is kept), "
                          f"each blueprint's own optimizer, batch size and learning rate{overrides}"),
             ("seeds", f"{len(seeds)} ({', '.join(map(str, seeds))}): run i of every model uses seed "
                       f"{args.seed}+i, as `composer compare --seeds {len(seeds)}`"),
             ("baseline", args.baseline),
             *([("bound with --set", "; ".join(f"{n}: `{t}`" for n in models for t in bindings(n, data)))]
               if any(bindings(n, data) for n in models) else []),
             ("page written", f"{time.strftime('%Y-%m-%d %H:%M %Z')}, composer at git {_git_head()} (cached "
                              f"runs may be older)"),
             ("models", f"{len(runs)} on the board ({len(failed)} failed or not trained yet; those not on this "
                        f"board are listed at the end), discovered from "
                        f"{os.path.relpath(args.blueprints, ROOT)}/*.yaml"),
             ("cost", f"{wall:.1f} min wall, {cpu_text} CPU of runs in all ({len(all_runs)} runs; this "
                      f"generation trained {stats['trained']}, reused {stats['cached']} from "
                      f"{os.path.relpath(out, ROOT)}, {stats['seconds'] / 60:.1f} min); {_machine()}")]
    meta = {"command": f"python bench/leaderboard.py {argv_text}".strip(), "facts": facts,
            "failed": failed, "excluded": excluded, "kuairand": data.startswith("kuairand-pure")}
    if args.board == "multitask":
        text = multitask_page(runs, args.baseline, meta)
    else:
        from _leaderboard_page import reports

        task = args.task or list(reports(runs[args.baseline])[0].tasks)[0]
        tasks = list(reports(runs[args.baseline])[0].tasks)
        facts.insert(2, ("tasks", f"every blueprint trains on all of {', '.join(tasks)} (`tasks: from_data`); "
                                  f"the per-{_scenario_column(data)} tables show {task}; the shared model "
                                  f"{args.baseline} reads {_scenario_column(data)} as a feature (checked)"))
        text = scenario_page(runs, args.baseline, meta, task, args.small_share)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    print(f"wrote {page} ({stats['trained']} runs trained, {stats['cached']} reused, "
          f"{stats['seconds'] / 60:.1f} min)")
    return 0


def _git_head() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", ""
    return (head or "unknown") + (" with uncommitted changes" if dirty else "")


def _quiet() -> None:
    """TensorFlow's start-up lines and its retracing warnings (one model after another) off."""
    import keras

    from composer.quiet import import_backend

    import_backend()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


def _scenario_column(data: str) -> str | None:
    from composer.data.registry import describe

    return describe(data).scenario


def _machine() -> str:
    import keras

    return f"Keras {keras.backend.backend()} on {os.cpu_count()} CPU cores"


if __name__ == "__main__":
    sys.exit(main())
