"""``composer`` command line. User mistakes print one located message each and exit 2.

``validate``, ``render``, ``summary``, ``diff`` and ``schema`` never import TensorFlow or Keras.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .blueprint.errors import BlueprintError, Location

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def _load_graph(file: str, data: str | None = None, sets=None, vocab_sizes=None):
    from .blueprint import load_blueprint
    from .graph import build_graph

    bp, doc = load_blueprint(file, data=data, sets=sets)
    return build_graph(bp, doc, vocab_sizes=vocab_sizes)


def _sets(args) -> list[str] | None:
    """The command's ``--set KEY=VALUE`` overrides, in order."""
    return getattr(args, "set", None)


def _blueprint_files(paths) -> list[str]:
    """Files as given; a folder stands for the .yaml/.yml files directly in it."""
    out = []
    for path in paths:
        if not os.path.isdir(path):
            out.append(path)
            continue
        found = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".yaml", ".yml")))
        if not found:
            raise BlueprintError("holds no .yaml or .yml file", location=Location(path),
                                 hint="name blueprint files, or a folder of them")
        out.extend(found)
    return out


def _parent_folder(path: str) -> None:
    """Create the folder an output file goes into (as `train --out` creates its run folder)."""
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise BlueprintError("is a folder; name the file to write", location=Location(path))
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        why = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
        raise BlueprintError(f"cannot create this folder: {why}", location=Location(folder)) from None


def _params_text(graph) -> str:
    if graph.total_params is not None:
        return f"{graph.total_params:,} params"
    return f"{graph.block_params:,} params + embeddings (vocabularies are fitted from the data)"


def _count(n) -> str:
    return "?" if n is None else f"{n:,}"


def _table(graph) -> str:
    from tabulate import tabulate

    emb = graph.layout.embedding_params()
    rows = [["features", "inputs", ", ".join(f"{k}{v[0]}" for k, v in graph.layout.inputs().items()),
             _count(emb) if emb is not None else "fitted from data"]]
    for nid in graph.order:
        node = graph.nodes[nid]
        rows.append([nid, node.block.type, str(node.out), _count(node.params)])
    total = graph.total_params
    rows.append(["total", "", "", _count(total) if total is not None else f"{graph.block_params:,} + embeddings"])
    return tabulate(rows, headers=["block", "type", "output", "params"], tablefmt="simple")


def cmd_validate(args) -> int:
    failed = 0
    for file in _blueprint_files(args.files):
        try:
            graph = _load_graph(file, args.data, _sets(args))
        except BlueprintError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        for warning in graph.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{file}: ok ({len(graph.nodes)} blocks, {len(graph.outputs)} outputs, {_params_text(graph)})")
    return EXIT_USER_ERROR if failed else 0


def cmd_summary(args) -> int:
    from .losses import LossPlan

    graph = _load_graph(args.file, args.data, _sets(args))
    print(_table(graph))
    print()
    print(LossPlan.from_blueprint(graph.blueprint).table())
    return 0


def cmd_render(args) -> int:
    from .diagram import check_format, render

    check_format(args.output)
    graph = _load_graph(args.file, args.data, _sets(args))
    return _draw(render, graph, args.output)


def _draw(render, what, output: str) -> int:
    """``render(what, output)`` into a folder made if needed; Graphviz's failure is exit 2."""
    _parent_folder(output)
    try:
        render(what, output)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"wrote {output}")
    return 0


def cmd_diff(args) -> int:
    from .review_diff import diff_graphs

    if args.output:
        from .diagram import check_format

        check_format(args.output)
    before = _load_graph(args.before, args.data)
    after = _load_graph(args.after, args.data)
    diff = diff_graphs(before, after, files=(args.before, args.after))
    print(diff.text())
    if args.output:
        from .review_diagram import render_diff

        return _draw(render_diff, diff, args.output)
    return 0


def cmd_plan(args) -> int:
    from .losses import LossPlan

    graph = _load_graph(args.file, args.data, _sets(args), vocab_sizes=_fitted_vocab_sizes(args.run))
    plan = LossPlan.from_blueprint(graph.blueprint)
    print(plan.table())
    _print_memory_plan(graph, args)
    if plan.fusion in ("gradnorm", "pareto"):
        tasks = [t.task for t in plan.trained]
        if plan.fusion == "gradnorm":
            chosen = plan.params.get("shared_layer")
            nid, why = (chosen, "loss.shared_layer") if chosen else graph.shared_layer_choice(tasks)
            print(f"\nGradNorm's W (last shared layer): {nid} ({why})")
        else:
            shared = [n for n in graph.shared_nodes(tasks) if graph.nodes[n].params]
            print(f"\nPE-LTR's shared parameters: {', '.join(shared)}")
    return 0


def _fitted_vocab_sizes(run) -> dict | None:
    """The table sizes a trained run fitted (its preprocessing.json; pure JSON, no Keras)."""
    if not run:
        return None
    from .data.preprocess import Preprocessor
    from .training.run_folder import RUN_FILES

    path = Path(run) / RUN_FILES["pre"]
    try:
        return Preprocessor.load(str(path)).vocab_sizes()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        why = "no such file" if isinstance(exc, FileNotFoundError) else f"does not read ({type(exc).__name__})"
        raise BlueprintError(f"{RUN_FILES['pre']}: {why}", location=Location(str(path)), key="--run",
                             hint="pass a folder `composer train` wrote") from None


def _print_memory_plan(graph, args) -> None:
    """Per table rows x width x bytes with the optimizer's slots, per device under the layout;
    refuses (exit 2) a layout over ``--device-memory-mb`` / training.device_memory_mb."""
    from .memory_plan import MemoryPlan

    updates = {k: v for k, v in (("distribution", args.distribution), ("model_axis", args.model_axis),
                                 ("device_memory_mb", args.device_memory_mb)) if v is not None}
    training = graph.blueprint.training
    if updates:
        from .training.experiment import _override

        training = _override(graph.blueprint, updates)
    devices = args.devices or training.model_axis or 1
    memory = MemoryPlan.of(graph, training, devices)
    print()
    print(memory.table())
    if memory.missing:
        print(f"rows of {', '.join(memory.missing)} are fitted from the data: pass --run RUN_DIR (a run trained "
              f"on it) or give vocab_size / hash_buckets in the blueprint")
    elif training.distribution == "model_parallel":
        print(f"replicated instead, every device would hold {memory.replicated_per_device() / 2**20:,.2f} MiB")
    memory.check(training.device_memory_mb, key="--device-memory-mb" if args.device_memory_mb else
                 "training.device_memory_mb")
    if training.device_memory_mb:
        print(f"fits the budget of {training.device_memory_mb:,} MiB per device")


def cmd_schema(args) -> int:
    from .blueprint.schema import blueprint_model

    text = json.dumps(blueprint_model().model_json_schema(), indent=2)
    if args.output:
        _parent_folder(args.output)
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def cmd_build(args) -> int:
    if args.output and not args.output.endswith((".keras", ".h5")):
        raise BlueprintError("Keras saves a model as a .keras file", location=Location(args.output),
                             key="-o", hint="e.g. -o model.keras")
    _quiet_tf()
    from .compiler import compile_graph

    from .losses import LossPlan

    graph = _load_graph(args.file, args.data, _sets(args))
    if graph.layout.missing_vocab():
        from .training import prepare

        exp = prepare(args.file, data=args.data, sets=_sets(args))
        graph, model = exp.graph, exp.model
        print(f"vocabularies fitted on the train split of {exp.data_name}")
    else:
        model = compile_graph(graph)
    print(_table(graph))
    print()
    print(LossPlan.from_blueprint(graph.blueprint).table())
    print(f"\nkeras model '{model.name}': inputs {[i.name for i in model.inputs]}, "
          f"outputs {list(model.output_names)}, {model.count_params()} parameters")
    if args.output:
        _parent_folder(args.output)
        model.save(args.output)
        print(f"wrote {args.output}")
    return 0


def _quiet_tf():
    from .quiet import import_backend

    import_backend()


def _print_report(rep, title):
    print(f"\n{title}")
    print(rep.table(by="task"))
    if rep.scenarios:
        print("\nper scenario")
        print(rep.table(by="scenario"))


def _overrides(args) -> dict:
    """Command-line overrides of the blueprint's training section."""
    names = {"epochs": "epochs", "batch_size": "batch_size", "learning_rate": "learning_rate",
             "seed": "seed", "monitor": "monitor", "patience": "patience", "precision": "precision",
             "distribution": "distribution",
             "stream": "stream", "chunk_rows": "chunk_rows", "shuffle_buffer": "shuffle_buffer",
             "device_budget_mb": "device_budget_mb", "loop": "loop", "model_axis": "model_axis",
             "device_memory_mb": "device_memory_mb"}
    return {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg, None) is not None}


def _base_seed(file, args) -> int:
    if args.seed is not None:
        return args.seed
    from .blueprint import load_blueprint

    return load_blueprint(file, data=args.data, sets=_sets(args))[0].training.seed


def _add_training_overrides(s):
    s.add_argument("--epochs", type=int, help="override training.epochs")
    s.add_argument("--batch-size", type=int, help="override training.batch_size")
    s.add_argument("--learning-rate", type=float, help="override training.learning_rate")
    s.add_argument("--seed", type=int, help="override training.seed")
    s.add_argument("--monitor", help="override training.monitor (auc, auc_<task>, loss)")
    s.add_argument("--patience", type=int, help="override training.patience")
    s.add_argument("--precision", help="override training.precision (float32, mixed_bfloat16)")
    s.add_argument("--distribution", help="override training.distribution (none, mirrored, data_parallel, "
                   "model_parallel)")
    s.add_argument("--model-axis", type=int, help="override training.model_axis (model_parallel: devices on the "
                   "mesh's model axis)")
    s.add_argument("--device-memory-mb", type=int, help="override training.device_memory_mb (refuse a layout "
                   "needing more per device)")
    s.add_argument("--stream", action="store_true", default=None,
                   help="read the data file in chunks (data larger than memory; training.stream)")
    s.add_argument("--chunk-rows", type=int, help="override training.chunk_rows (streaming)")
    s.add_argument("--shuffle-buffer", type=int, help="override training.shuffle_buffer (streaming)")


def cmd_train(args) -> int:
    from .distributed import Cluster

    if args.workers is not None:
        from .launch import launch_local

        return launch_local(args.workers, _worker_argv(args.argv), distribution=args.distribution,
                            cluster_flags=[args.coordinator, args.num_processes, args.process_id])
    cluster = Cluster.from_env(args.coordinator, args.num_processes, args.process_id)
    command = _train_command(args)
    resume = _checkpoint_of(Path(args.resume)) if args.resume else None  # a damaged one stops before loading
    _quiet_tf()
    from . import training
    from .training import run_folder

    exp = training.prepare(command["blueprint"], data=command["data"], rows=command["rows"],
                           training=command["training"], cluster=cluster, sets=command["sets"])
    if not cluster.is_chief:  # only process 0 reports and writes the run folder
        return _train_worker(exp, cluster)
    if args.resume:
        out = Path(args.resume)
    else:
        out = run_folder.claim(args.out or training.default_run_dir(exp.bp.name, exp.data_name),
                               overwrite=args.overwrite, command=command)
    for warning in exp.graph.warnings:  # e.g. an mmoe over one task: trained anyway, said once
        print(f"warning: {warning}", file=sys.stderr)
    counts = exp.dataset.counts()
    print(f"data {exp.data_name}: train {counts['train']:,} · valid {counts['valid']:,} · "
          f"test {counts['test']:,} rows; tasks {', '.join(exp.tasks)}; model {exp.model.count_params():,} params")
    if exp.bp.training.distribution != "none":
        print(f"distribution: {exp.parallel.describe(exp.bp.training.batch_size)}")
    if exp.pre.admission:  # also in the run folder's preprocessing.json
        from .data.preprocess import admission_table

        print(admission_table(exp.pre.admission))
    if resume is not None:
        print(f"resuming {out} after epoch {resume.epochs_done}")
    from .training.interrupt import Interrupted

    try:
        history = training.fit(exp, verbose=args.verbose, checkpoint_dir=out, resume=resume)
    except Interrupted as stop:
        run_folder.save_run(exp, str(out), stop.history, None, status={
            "state": "interrupted", "epochs_done": stop.epochs_done, "epochs": stop.epochs, "signal": stop.signal_name})
        print(f"composer: {stop.signal_name} after {stop.epochs_done} of {stop.epochs} epochs; {out} holds the "
              f"finished epochs (the best weights so far): `composer train --resume {out}` continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    t = exp.timings
    best = max(history.history.get("val_auc", [float("nan")]))
    share = f", validation {100 * t['valid_share']:.0f}% of it" if "valid_share" in t else ""
    print(f"trained {t['epochs_run']} epoch(s) in {t['train_s']:.1f}s "
          f"({t['train_examples_per_s']:,.0f} examples/s{share}); best valid macro AUC {best:.4f}")
    rep = training.report(exp, "test")
    out = training.save_run(exp, str(out), history, rep, status={"epochs_done": t["epochs_run"],
                                                                 "epochs": exp.bp.training.epochs})
    _print_report(rep, f"test split ({counts['test']:,} rows), exact metrics")
    print(f"\nrun saved to {out}")
    if cluster.multi_process:
        _worker_done(exp, cluster, history)
    return 0


def _train_command(args) -> dict:
    """What trains: the command line's, or for ``--resume RUN`` alone the one that started RUN
    (its blueprint file, data, rows, overrides and --set), with a new --epochs if given."""
    from .blueprint.errors import BlueprintError

    given = {"blueprint": args.file and os.path.abspath(args.file), "data": args.data, "rows": args.rows,
             "training": _overrides(args), "sets": _sets(args)}
    if not args.resume:
        if not args.file:
            raise BlueprintError("train needs a blueprint", key="BLUEPRINT",
                                 hint="composer train BLUEPRINT.yaml, or composer train --resume RUN_DIR")
        return given
    if args.out or args.overwrite:
        raise BlueprintError("--resume continues its own folder", key="--out" if args.out else "--overwrite",
                             hint="drop --out/--overwrite, or train anew without --resume")
    from .training.run_folder import read_status

    run = Path(args.resume)
    status = read_status(run) if run.is_dir() else None
    if status is None or not status.get("command"):
        from .blueprint.errors import Location

        raise BlueprintError("not a run folder that can resume (no status.json with its command)",
                             location=Location(str(run)), key="--resume",
                             hint="pass a folder `composer train` wrote")
    if args.file:
        return given
    recorded = dict(status["command"])
    recorded["training"] = {**recorded.get("training", {}), **given["training"]}
    return recorded


def _checkpoint_of(run: Path):
    from .blueprint.errors import BlueprintError, Location
    from .training import checkpoint

    path = run / checkpoint.FILE
    if not path.exists():
        raise BlueprintError("nothing to resume: no epoch finished before the run stopped", location=Location(str(run)),
                             key="--resume", hint=f"train again: composer train ... --out {run} --overwrite")
    return checkpoint.read(path)


def _train_worker(exp, cluster) -> int:
    from . import training

    history = training.fit(exp, verbose=0)
    _worker_done(exp, cluster, history)
    return 0


def _worker_done(exp, cluster, history):
    """One line per process, read by composer.launch to check that every process ended alike;
    then every process waits for the others (process 0 writes the run folder first)."""
    from .distributed import WORKER_LINE, barrier, weights_checksum

    loss = history.history["loss"][-1]
    print(WORKER_LINE.format(id=cluster.process_id, n=cluster.num_processes, loss=loss,
                             checksum=weights_checksum(exp.model)), flush=True)
    barrier(cluster, "composer train done")


def _worker_argv(argv: list[str]) -> list[str]:
    """The command line each worker runs: this one without --workers N."""
    out, skip = [], False
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif len(flag) >= 3 and "--workers".startswith(flag):  # argparse takes --work for --workers
            skip = "=" not in arg
        else:
            out.append(arg)
    return out


def cmd_evaluate(args) -> int:
    _quiet_tf()
    from . import training

    exp = training.load_run(args.run, data=args.data)
    rep = training.report(exp, args.split)
    out = os.path.join(args.run, f"eval-{args.split}" + (f"-{os.path.basename(args.data)}" if args.data else ""))
    rep.save(out)
    _print_report(rep, f"{args.split} split of {exp.data_name} ({exp.dataset.counts()[args.split]:,} rows)")
    print(f"\nsaved to {out}")
    return 0


PLANTED_ROW = "(planted truth)"
PLANTED_NOTE = ("(planted truth): the data generator's own score of the same test rows, the best its columns "
                "allow; not a model.\nThe labels are drawn with noise around it, so it is about the best a "
                "model can expect.")


def cmd_compare(args) -> int:
    _quiet_tf()
    from . import training
    from .metrics import compare_scenario_table, compare_table

    baseline = _compared(args)
    out = args.out or _default_compare_dir()
    print(f"results and models go to {out}", flush=True)
    reports, times, dataset, lines = {}, {}, None, []
    for file in args.files:
        for seed_i in range(args.seeds):
            overrides = {**_overrides(args), "seed": _run_seed(file, args, seed_i)}
            exp = training.prepare(file, data=args.data, rows=args.rows, dataset=dataset, training=overrides,
                                   sets=_sets(args))
            dataset = exp.dataset
            history = training.fit(exp, verbose=0)
            name, seed = exp.bp.name, exp.bp.training.seed
            rep = training.report(exp, "test")
            reports.setdefault(name, []).append(rep)
            times.setdefault(name, []).append(exp.timings["train_s"])
            training.save_run(exp, os.path.join(out, f"{name}-seed{seed}"), history, rep)
            lines.append(f"{name} (seed {seed}): {exp.timings['epochs_run']} epochs, "
                         f"{exp.timings['train_s']:.1f}s, test macro AUC {_rounded(rep.macro().get('auc'))}")
            print(lines[-1], flush=True)
    planted = training.planted_report(exp)  # the data generator's best score, where it has one
    if planted and any(set(r.tasks) != set(planted.tasks) for rs in reports.values() for r in rs):
        planted = None  # the blueprints predict different tasks: no one ceiling row fits them all
    rows_of = {**reports, PLANTED_ROW: [planted]} if planted else reports
    table = compare_table(rows_of)
    if planted:
        table += f"\n{PLANTED_NOTE}"
    counts = dataset.counts()
    table = f"test split of {args.data or 'each blueprint data'} ({counts['test']:,} rows), exact AUC\n{table}"
    print(f"\n{table}")
    if any(r[0].scenarios for r in reports.values()):
        rows = {}
        for reps in reports.values():
            for s, tasks in reps[0].scenarios.items():
                rows.setdefault(s, max((m.n for m in tasks.values()), default=0))
        sizes = ", ".join(f"{s} {n:,}" for s, n in rows.items())
        per_scenario = f"per scenario (test rows: {sizes}), exact AUC\n{compare_scenario_table(rows_of)}"
        group = next((r.group for rs in reports.values() for r in rs if r.group), None)
        if group:
            per_scenario += (f"\nper scenario, exact GAUC (groups of {group!r}, impressions-weighted)\n"
                             f"{compare_scenario_table(rows_of, metric='gauc')}")
        print(per_scenario)
        table += "\n\n" + per_scenario
    if len(reports) > 1 and args.seeds > 1:
        paired = _paired_tables(reports, baseline)
        print(paired)
        table += "\n\n" + paired
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "compare.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n\n" + table + "\n")
    if planted:
        planted.save(os.path.join(out, "planted-truth"))
    print(f"saved to {out} (compare.txt; one run folder per model and seed: NAME-seedSEED)")
    return 0


def _rounded(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _run_seed(file, args, i: int) -> int:
    """Run i's seed: i for every model (so run i of each model shares its initialisation and
    shuffling stream); --seed S: S + i; --blueprint-seeds: each blueprint's training.seed + i."""
    if args.blueprint_seeds:
        return _base_seed(file, args) + i
    return (args.seed or 0) + i


def _default_compare_dir() -> str:
    import time

    base = os.path.join("runs", "compare-" + time.strftime("%Y%m%d-%H%M%S"))
    out, n = base, 1
    while os.path.exists(out):  # two compares started within the same second
        n += 1
        out = f"{base}-{n}"
    return out


def _compared(args) -> str | None:
    """Checks a compare command line before anything trains (blueprints are read, not built):
    --seeds, one name per blueprint (results are keyed by name), and --baseline, a file given or a
    blueprint's name. Returns the baseline's name (None: the first blueprint)."""
    from .blueprint import load_blueprint
    from .blueprint.errors import did_you_mean

    if args.seeds < 1:
        raise BlueprintError(f"must be at least 1, got {args.seeds}", key="--seeds")
    if getattr(args, "blueprint_seeds", False) and args.seed is not None:
        raise BlueprintError("and --seed both choose the seeds", key="--blueprint-seeds",
                             hint="--seed S: run i of every model uses S + i; --blueprint-seeds: each "
                             "blueprint's training.seed + i")
    by_name: dict[str, str] = {}
    for file in args.files:
        bp, doc = load_blueprint(file, data=args.data, sets=_sets(args))
        if bp.name in by_name:
            raise BlueprintError(f"blueprint name '{bp.name}' is also the name of {by_name[bp.name]}",
                                 location=doc.location(("name",)), key="name",
                                 hint="compare keys results by name: give each blueprint its own name")
        by_name[bp.name] = str(file)
    if args.baseline is None:
        return None
    if len(by_name) < 2 or args.seeds < 2:
        raise BlueprintError("pairs runs, so it needs two blueprints or more and --seeds 2 or more",
                             key="--baseline")
    for name, file in by_name.items():
        if args.baseline == name or os.path.realpath(args.baseline) == os.path.realpath(file):
            return name
    raise BlueprintError(f"'{args.baseline}' is not one of the compared blueprints", key="--baseline",
                         hint=did_you_mean(args.baseline, list(by_name), what="blueprints"))


def _paired_tables(reports, baseline) -> str:
    from .paired import MIN_PAIRS_FOR_P, paired_table

    base = baseline or next(iter(reports))
    text = (f"paired with {base}, run i of each model with run i of {base} (the i-th seed), "
            f"AUC difference (+: ahead; runs ahead/pairs, paired t-test p)\n{paired_table(reports, base)}")
    if any(r[0].scenarios for r in reports.values()):
        text += f"\nper scenario\n{paired_table(reports, base, by='scenario')}"
    text += ("\np covers run-to-run (seed) variation on this one test split, not the sampling of its rows; "
             "one p per cell, not corrected for the number of cells")
    if min(len(r) for r in reports.values()) < MIN_PAIRS_FOR_P:
        text += (f"\np n/a: a paired t-test needs {MIN_PAIRS_FOR_P} pairs or more (--seeds "
                 f"{MIN_PAIRS_FOR_P}); with fewer, read the mean difference and the runs ahead only")
    return text


def cmd_export(args) -> int:
    _quiet_tf()
    import numpy as np

    from . import load_model, training
    from .export_tf import export_saved_model, raw_features

    exp = training.load_run(args.run)
    out = args.output or os.path.join(args.run, "export")
    os.makedirs(out, exist_ok=True)
    keras_path = os.path.join(out, "model.keras")
    exp.model.save(keras_path)
    import keras

    if keras.backend.backend() != "tensorflow":  # the SavedModel step below refuses, clearly
        print(f"wrote {keras_path}")
    saved = export_saved_model(exp, os.path.join(out, "saved_model"))
    # check both artefacts against the trained model on test rows
    rows = exp.dataset.head("test", 2048)
    x = exp.pre.pack(rows, exp.graph.layout)
    expected = exp.model.predict(x, verbose=0)
    reloaded = load_model(keras_path).predict(x, verbose=0)
    import tensorflow as tf

    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    served = serve(**{k: tf.constant(v) for k, v in raw_features(rows, exp.graph.layout).items()})
    for task in exp.tasks:
        d_keras = float(np.max(np.abs(np.asarray(reloaded[task]) - np.asarray(expected[task]))))
        d_saved = float(np.max(np.abs(served[task].numpy() - np.asarray(expected[task]).reshape(-1))))
        print(f"{task}: max |reloaded .keras - trained| = {d_keras:.2e}; "
              f"max |SavedModel(raw features) - trained| = {d_saved:.2e} on {len(rows)} test rows")
    print(f"wrote {keras_path} and {saved} (signature 'serving_default': raw features -> "
          f"{', '.join(exp.tasks)})")
    return 0


def cmd_predict(args) -> int:
    from .prediction import Predictor, check_output, key_columns, read_rows, table, write

    out = args.output or os.path.join(args.run, "predictions" + (f"-{os.path.basename(args.data)}" if args.data
                                                                 else "") + ".parquet")
    check_output(out)
    predictor = Predictor.open(args.run)  # a missing or damaged run folder stops here
    _parent_folder(out)  # after: the default output is inside the run folder
    data = args.data or predictor.exp.data_name
    frame, split, spec = read_rows(predictor, data, rows=args.rows, split=args.split)
    keep = [c.strip() for c in (args.keep or "").split(",") if c.strip()]
    absent = [c for c in keep if c not in frame.columns]
    if absent:
        from .blueprint.errors import did_you_mean

        raise BlueprintError(f"no column {', '.join(absent)} in {data}", key="--keep",
                             hint=did_you_mean(absent[0], [str(c) for c in frame.columns], what="columns"))
    result = table(frame, predictor(frame), key_columns(frame, predictor, spec, keep), split)
    write(result, out)
    parts = ""
    if split is not None:
        import numpy as np

        names, counts = np.unique(split, return_counts=True)
        parts = " (" + " · ".join(f"{n} {c:,}" for n, c in zip(names, counts)) + ")"
    means = ", ".join(f"{t} {result[t].mean():.4f}" for t in predictor.tasks)
    print(f"predicted {len(result):,} rows of {data}{parts}; mean probability {means}")
    print(f"wrote {out}: columns {', '.join(map(str, result.columns))}")
    return 0


def cmd_report(args) -> int:
    from .report_html import build_report, check_output, is_compare_folder, write_report

    out = args.output or os.path.join(args.run, "report.html")
    check_output(out)
    if not is_compare_folder(args.run):
        from .training import check_run_folder

        check_run_folder(args.run)  # a missing or non-run folder stops here, before any work
    _parent_folder(out)
    page = build_report(args.run)
    write_report(page, out)
    print(f"wrote {out} ({len(page.encode('utf-8')) / 1e6:.1f} MB, self-contained: open it in a browser)")
    return 0


def cmd_inspect(args) -> int:
    from .training import check_run_folder

    if args.rows is not None and args.rows < 1:
        raise BlueprintError(f"must be a positive number of rows, got {args.rows}", key="--rows")
    check_run_folder(args.run)
    _quiet_tf()
    from . import training
    from .inspect_gates import inspect

    exp = training.load_run(args.run)
    print(inspect(exp, args.split, rows=args.rows).table())
    return 0


def cmd_datasets(args) -> int:
    from .data import catalog

    if args.markdown:
        print(catalog.markdown(), end="")
    elif args.names:
        print("\n\n".join(catalog.detail(name) for name in args.names))
    else:
        print(catalog.text())
    return 0


def cmd_blueprints(args) -> int:
    from . import blueprints_catalog as shipped

    if args.action == "copy":
        target = shipped.copy(args.name, args.directory, overwrite=args.force)
        print(f"wrote {target}")
        return 0
    from tabulate import tabulate

    folder = shipped.folder()
    rows = [[name, shipped.description(folder / f"{name}.yaml")] for name in shipped.names()]
    print(tabulate(rows, headers=["blueprint", "description"], tablefmt="simple"))
    print(f"\n{len(rows)} blueprints in {folder}; `composer blueprints copy NAME [DIR]` writes one out to edit")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="composer", description="Design, build and render multi-task "
                                "and multi-scenario recommendation models from YAML blueprints.")
    p.add_argument("--version", action="version", version=f"composer {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("validate", help="check blueprints (schema, references, cycles, shapes)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--data", help="bind to this dataset (name or data YAML) instead of the blueprint's data:")
    s.set_defaults(func=cmd_validate)
    s = sub.add_parser("summary", help="table of blocks, output shapes and parameters (no TensorFlow)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--data", help="bind to this dataset instead of the blueprint's data:")
    s.set_defaults(func=cmd_summary)
    s = sub.add_parser("build", help="compile to a Keras model; -o saves it as .keras")
    s.add_argument("file", metavar="FILE")
    s.add_argument("-o", "--output", help="write the model here (e.g. model.keras)")
    s.add_argument("--data", help="bind to this dataset instead of the blueprint's data:")
    s.set_defaults(func=cmd_build)
    s = sub.add_parser("render", help="draw the block graph (.svg/.png/.pdf need Graphviz; .dot always)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("-o", "--output", required=True, help="X.svg, X.png, X.pdf or X.dot")
    s.add_argument("--data", help="bind to this dataset instead of the blueprint's data:")
    s.set_defaults(func=cmd_render)
    s = sub.add_parser("diff", help="what changed between two blueprints: blocks, features, settings and "
                       "parameters; -o draws a review diagram (no TensorFlow)")
    s.add_argument("before", metavar="A", help="the blueprint before (e.g. the main branch's)")
    s.add_argument("after", metavar="B", help="the blueprint after")
    s.add_argument("-o", "--output", help="also draw both in one diagram: X.svg, X.png, X.pdf or X.dot")
    s.add_argument("--data", help="bind both to this dataset instead of their data:")
    s.set_defaults(func=cmd_diff)
    s = sub.add_parser("plan", help="print the loss plan (per output loss, label, mask, weight; fusion) and the "
                       "memory plan (per table rows x width x bytes, optimizer slots, per device under the layout)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--data", help="bind to this dataset instead of the blueprint's data:")
    s.add_argument("--run", metavar="RUN_DIR", help="table sizes fitted by this run (its preprocessing.json) for "
                   "tables without vocab_size or hash_buckets")
    s.add_argument("--devices", type=int, help="devices of the planned run (default: training.model_axis, or 1)")
    s.add_argument("--distribution", help="override training.distribution (none, mirrored, data_parallel, "
                   "model_parallel)")
    s.add_argument("--model-axis", type=int, help="override training.model_axis (model_parallel)")
    s.add_argument("--device-memory-mb", type=int, help="override training.device_memory_mb: refuse (exit 2) a "
                   "layout needing more per device")
    s.set_defaults(func=cmd_plan)
    s = sub.add_parser("train", help="train on a dataset, report exact test metrics, save a run folder")
    s.add_argument("file", metavar="BLUEPRINT", nargs="?", help="the blueprint (optional with --resume)")
    s.add_argument("--data", help="dataset name (synthetic, census-mtl, ...) or data YAML; "
                   "overrides the blueprint's data:")
    _add_training_overrides(s)
    s.add_argument("--rows", type=int, help="use only the first N rows (quick runs)")
    s.add_argument("--out", help="run folder (default runs/NAME-DATA-TIME); an existing one is refused")
    s.add_argument("--overwrite", action="store_true", help="clear an existing --out folder first")
    s.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last finished "
                   "epoch (alone it repeats the run's command; --epochs may raise its epoch count)")
    s.add_argument("--loop", help="override training.loop (auto: the scanned loop on JAX; fit: Keras fit)")
    s.add_argument("--device-budget-mb", type=int, help="override training.device_budget_mb (JAX: device "
                   "memory the training rows may take; more streams in chunks)")
    s.add_argument("--verbose", type=int, default=2 if not sys.stdout.isatty() else 1,
                   help="progress: 0 silent, 1 or 2 one line per epoch")
    g = s.add_argument_group("several processes (distribution: data_parallel, KERAS_BACKEND=jax; "
                             "docs/distributed.md)")
    g.add_argument("--workers", type=int, help="start N worker processes on this machine "
                   "(127.0.0.1, a free port), wait for them and report")
    g.add_argument("--coordinator", help="HOST:PORT of process 0 (or KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    g.add_argument("--num-processes", type=int, help="processes in the run (or KERAS_DISTRIBUTION_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, help="this process, 0..N-1; 0 writes the run folder "
                   "(or KERAS_DISTRIBUTION_PROCESS_ID)")
    s.set_defaults(func=cmd_train)
    s = sub.add_parser("evaluate", help="exact AUC/GAUC per task and per scenario for a run folder")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--data", help="evaluate on another dataset with the same columns")
    s.add_argument("--split", default="test", choices=["train", "valid", "test"])
    s.set_defaults(func=cmd_evaluate)
    s = sub.add_parser("compare", help="train several blueprints on one split and seed; one table")
    s.add_argument("files", nargs="+", metavar="BLUEPRINT")
    s.add_argument("--data", help="dataset for every blueprint (default: each blueprint's data:)")
    _add_training_overrides(s)
    s.add_argument("--rows", type=int, help="use only the first N rows")
    s.add_argument("--seeds", type=int, default=1, help="runs per blueprint (mean ± std); run i of every "
                   "model uses seed i (--seed S: S + i); with 2 or more, a paired table against the baseline "
                   "follows (p-values from 3 runs)")
    s.add_argument("--blueprint-seeds", action="store_true", help="run i of each model uses its blueprint's "
                   "training.seed + i instead")
    s.add_argument("--baseline", help="blueprint (file or name) the others are paired with "
                   "(default: the first)")
    s.add_argument("--out", help="folder for compare.txt and one run folder (model, metrics, history) per "
                   "model and seed, NAME-seedSEED (default runs/compare-TIME)")
    s.set_defaults(func=cmd_compare)
    s = sub.add_parser("export", help="write .keras and a raw-feature SavedModel for serving")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("-o", "--output", help="export folder (default RUN_DIR/export)")
    s.set_defaults(func=cmd_export)
    s = sub.add_parser(
        "predict", help="one probability per task for raw rows (a dataset, data YAML, CSV or Parquet file)",
        description="Predict with a run folder on raw rows: one probability per task, written with the "
        "rows' key columns (the split of each row for a dataset name or data YAML; the dataset's group "
        "column; the scenario column; every column named id or *_id; --keep). Categorical values are "
        "read as text, unseen or missing ones use the out-of-vocabulary row; list features are lists "
        "(Parquet) or delimited text \"a,b\" (CSV), oldest first. The same numbers as the exported "
        "SavedModel. In Python: composer.predict(RUN_DIR, dataframe). See docs/predict.md.")
    s.add_argument("run", metavar="RUN_DIR", help="a folder `composer train` wrote")
    s.add_argument("--data", help="dataset name (synthetic, census-mtl, ...), data YAML, or a .csv/.parquet file "
                   "of raw rows holding every feature column (no labels needed); default: the run's own data")
    s.add_argument("-o", "--output", help="predictions file, .parquet or .csv "
                   "(default RUN_DIR/predictions[-DATA].parquet)")
    s.add_argument("--split", choices=["train", "valid", "test"], help="only this split of a dataset (default: every row)")
    s.add_argument("--rows", type=int, help="read only the first N rows")
    s.add_argument("--keep", metavar="COL,...", help="also write these input columns")
    s.set_defaults(func=cmd_predict)
    s = sub.add_parser("report", help="one self-contained HTML page about a run (diagram, curves, metrics, "
                       "calibration, scores, gates) or a compare folder (metrics over seeds, paired differences)")
    s.add_argument("run", metavar="RUN_DIR", help="a folder `composer train` or `composer compare` wrote")
    s.add_argument("-o", "--output", help="the page to write (default RUN_DIR/report.html)")
    s.set_defaults(func=cmd_report)
    s = sub.add_parser("inspect", help="gate utilisation of a run: mean weight per expert per task and "
                       "scenario, entropy, collapse warnings")
    s.add_argument("run", metavar="RUN_DIR", help="a folder `composer train` wrote")
    s.add_argument("--split", default="valid", choices=["train", "valid", "test"], help="rows to run the "
                   "gates on (default: valid)")
    s.add_argument("--rows", type=int, help="only the first N rows of the split")
    s.set_defaults(func=cmd_inspect)
    s = sub.add_parser("datasets", help="every built-in dataset: tasks, scenario, features, rows, files, "
                       "options (no data read, no TensorFlow)")
    s.add_argument("names", nargs="*", metavar="NAME", help="show these in full (options allowed: "
                   "synthetic:rows=5000; or a data YAML)")
    s.add_argument("--markdown", action="store_true", help="print docs/datasets.md")
    s.set_defaults(func=cmd_datasets)
    s = sub.add_parser("blueprints", help="list the shipped blueprints (installed with Composer); "
                       "`blueprints copy NAME [DIR]` writes one out")
    s.set_defaults(func=cmd_blueprints, action="list")
    actions = s.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list them (the default)")
    c = actions.add_parser("copy", help="copy one shipped blueprint into a folder, to edit")
    c.add_argument("name", metavar="NAME", help="a shipped blueprint (mmoe or mmoe.yaml)")
    c.add_argument("directory", metavar="DIR", nargs="?", default=".", help="folder (default: the current one)")
    c.add_argument("--force", action="store_true", help="overwrite an existing file")
    s = sub.add_parser("schema", help="print the JSON Schema of the blueprint language")
    s.add_argument("-o", "--output", help="write to a file instead of stdout")
    s.set_defaults(func=cmd_schema)
    for name in ("validate", "summary", "render", "plan", "build", "train", "compare"):
        sub.choices[name].add_argument(
            "--set", action="append", metavar="KEY=VALUE",
            help="override any blueprint setting, e.g. --set training.learning_rate=0.003, "
                 "--set blocks.moe.experts=8, --set features[0].dim=16 (VALUE is YAML: [64,32]); repeatable")
    return p


def _version() -> str:
    """The installed package's version; from pyproject.toml in a source tree that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("composer-rec")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        try:
            text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
        except OSError:
            text = ""
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
        return found.group(1) if found else "unknown"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except BlueprintError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # Ctrl-C outside training's own handling (loading, a second Ctrl-C)
        print("composer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `composer summary ... | head` stopped reading: nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 1


if __name__ == "__main__":
    sys.exit(main())
