"""``composer report``: one self-contained HTML page about a run folder or a compare folder.

A run's page: the diagram, training curves per epoch, test AUC / GAUC per task and scenario
(table and heatmap), calibration per task (reliability diagram and ECE), score distributions,
gate utilisation (``composer.inspect_gates``) and the blueprint's text. A compare folder's page:
every metric as bars with the spread over seeds, and the paired differences against the
baseline (``composer.paired``). Every image is inline (PNG or SVG data URIs) and nothing is
fetched, so the file opens anywhere, offline, and can be mailed as it is.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .blueprint.errors import BlueprintError, Location

GATE_ROWS = 50_000  # gate weights on at most this many test rows (the mean of more barely moves)
COMPARE_FILE = "compare.txt"
_RUN_LINE = re.compile(r"^(?P<name>\S+) \(seed (?P<seed>-?\d+)\):", re.M)
_BASELINE = re.compile(r"^paired with (?P<name>\S+),", re.M)
_SEED_FOLDER = re.compile(r"^(?P<name>.+)-seed(?P<seed>-?\d+)$")
_CURVE_COLUMNS = ("loss", "val_", "weight_")  # history.csv columns the curves draw


def is_compare_folder(path) -> bool:
    return (Path(path) / COMPARE_FILE).is_file()


def build_report(path) -> str:
    """The page for a run folder or, where ``compare.txt`` is, a compare folder."""
    return compare_page(path) if is_compare_folder(path) else run_page(path)


# ---------------------------------------------------------------------------------------- a run

@dataclass
class RunFacts:
    """What a run's page shows, computed (no HTML here)."""

    name: str
    data: str
    meta: dict
    counts: dict
    params: int
    tasks: list
    history: object  # pandas.DataFrame indexed by epoch, or None (no history.csv: interrupted run)
    report: object  # composer.metrics.Report on the test split
    calibration: dict  # task -> composer.calibration.Calibration
    scores: dict  # task -> predictions on the rows its label counts
    labels: dict  # task -> 0/1 labels of the same rows
    inspection: object  # composer.inspect_gates.Inspection
    diagram: tuple  # (kind, payload): ("svg", bytes) or ("dot", text)
    blueprint_text: str
    notes: list = field(default_factory=list)


def run_facts(run_dir) -> RunFacts:
    from . import training
    from .calibration import calibration
    from .inspect_gates import inspect, split_rows

    run = training.check_run_folder(run_dir)  # a missing or non-run folder stops here, before Keras
    history = read_history(run)
    from .quiet import import_backend

    import_backend()
    exp = training.load_run(str(run))
    predictions = training.predict(exp, "test")
    rep = training.report(exp, "test", predictions=predictions)
    rows = split_rows(exp, "test")
    labels, masks = exp.labels(rows)
    cal, scores, kept = {}, {}, {}
    for task in exp.tasks:
        m = masks[task]
        scores[task], kept[task] = np.asarray(predictions[task])[m], labels[task][m]
        cal[task] = calibration(kept[task], scores[task])
    counts = exp.dataset.counts()
    gate_rows = min(counts["test"], GATE_ROWS)
    notes = []
    if gate_rows < counts["test"]:
        notes.append(f"gate weights on the first {gate_rows:,} test rows")
    return RunFacts(
        name=exp.bp.name, data=exp.data_name, meta=json.loads((run / "data.json").read_text()),
        counts=counts, params=exp.model.count_params(), tasks=list(exp.tasks), history=history,
        report=rep, calibration=cal, scores=scores, labels=kept,
        inspection=inspect(exp, "test", rows=gate_rows if gate_rows < counts["test"] else None),
        diagram=_diagram(run), blueprint_text=_blueprint_text(run), notes=notes)


def read_history(run: Path):
    """history.csv as a DataFrame indexed by epoch; None where there is none (an interrupted
    run). Columns are read as found: new ones are shown where a panel knows them, others kept."""
    import pandas as pd

    from .training import RUN_FILES

    path = run / RUN_FILES["history"]
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path)
        if frame.empty:
            return None
        if "epoch" in frame.columns:
            frame = frame.set_index("epoch")
        for column in frame.columns:  # the curves' columns must be numbers; others are kept as read
            if str(column).startswith(_CURVE_COLUMNS):
                values = pd.to_numeric(frame[column], errors="coerce")
                bad = values.isna() & frame[column].notna()
                if bad.any():
                    raise ValueError(f"column {column} holds {frame[column][bad].iloc[0]!r}")
                frame[column] = values
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BlueprintError(f"damaged run folder: {path.name} does not read ({type(exc).__name__}: {reason})",
                             location=Location(str(path)),
                             hint="restore the file or train again (composer train writes it)") from None
    return frame


def _diagram(run: Path) -> tuple:
    from .training import RUN_FILES

    svg, dot = run / RUN_FILES["svg"], run / RUN_FILES["dot"]
    if svg.exists():
        return "svg", svg.read_bytes()
    if dot.exists():
        from .diagram import has_dot

        if has_dot():
            import subprocess

            try:
                return "svg", subprocess.run(["dot", "-Tsvg", str(dot)], capture_output=True, check=True,
                                             timeout=60).stdout
            except (OSError, subprocess.SubprocessError):
                pass
        return "dot", dot.read_text(errors="replace")
    return "none", ""


def _blueprint_text(run: Path) -> str:
    from .training import RUN_FILES

    for key in ("yaml", "blueprint"):
        path = run / RUN_FILES[key]
        if path.exists():
            return path.read_text(encoding="utf-8", errors="replace")
    return ""


def run_page(run_dir) -> str:
    return render_run(run_facts(run_dir))


def render_run(f: RunFacts) -> str:
    from . import report_plots as plots

    sections = []
    # diagram
    kind, payload = f.diagram
    if kind == "svg":
        body = _img("data:image/svg+xml;base64," + base64.b64encode(payload).decode("ascii"),
                    f"block diagram of {f.name}", cls="diagram")
    elif kind == "dot":
        body = ("<p>Graphviz is not installed, so here is the diagram's DOT text "
                "(<code>apt-get install graphviz</code> draws it).</p>" + _pre(payload))
    else:
        body = "<p>The run folder holds no diagram.</p>"
    sections.append(("diagram", "Diagram", body))
    # curves
    if f.history is None:
        body = "<p>No history.csv in the run folder (an interrupted run?): no curves to draw.</p>"
    else:
        body = _img(plots.training_curves(f.history, f.tasks), "training curves per epoch")
        body += _details("history.csv", _frame_table(f.history.reset_index()))
    sections.append(("curves", "Training curves", body))
    # metrics
    sections.append(("metrics", "Test metrics", _metrics_section(f, plots)))
    # calibration
    rows = [[t, f"{c.ece:.4f}", f"{c.n:,}", f"{np.mean(f.scores[t]):.4f}" if len(f.scores[t]) else "n/a",
             f"{np.mean(f.labels[t]):.4f}" if len(f.labels[t]) else "n/a"] for t, c in f.calibration.items()]
    body = ("<p>Predicted against observed positive rate in ten equal-count bins of the test "
            "predictions (deciles); ECE = &Sigma; (n<sub>b</sub>/n) |mean prediction<sub>b</sub> &minus; "
            "positive rate<sub>b</sub>|.</p>"
            + _table(["task", "ECE", "rows", "mean prediction", "positive rate"], rows)
            + _img(plots.calibration_plots(f.calibration), "calibration per task"))
    sections.append(("calibration", "Calibration", body))
    # score distributions
    sections.append(("scores", "Score distributions",
                     "<p>Test predictions per task, negatives and positives apart (densities).</p>"
                     + _img(plots.score_distributions(f.scores, f.labels), "score distributions per task")))
    # gates
    sections.append(("gates", "Gate utilisation", gates_section(f.inspection, plots)))
    # blueprint
    sections.append(("blueprint", "Blueprint", _pre(f.blueprint_text or "(no blueprint text in the run folder)")))

    timings = f.meta.get("timings", {}) or {}
    facts = [("data", f.data), ("rows", " · ".join(f"{k} {v:,}" for k, v in f.counts.items())),
             ("tasks", ", ".join(f.tasks)), ("parameters", f"{f.params:,}")]
    if timings.get("epochs_run") is not None:
        facts.append(("training", f"{timings['epochs_run']} epoch(s), {timings.get('train_s', 0):.1f}s"))
    facts += [("note", n) for n in f.notes]
    intro = "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>"
    return _page(f"{f.name} on {f.data}", intro, sections)


def _metrics_section(f: RunFacts, plots) -> str:
    from .inspect_gates import natural_key

    rep = f.report
    grouped = rep.group is not None
    head = ["task", "AUC"] + (["GAUC", "valid groups"] if grouped else []) + ["rows", "positives"]

    def rows(tasks, macro, prefix=()):
        out = []
        for name, t in tasks.items():
            out.append([*prefix, name, _num(t.auc)] + ([_num(t.gauc), _int(t.valid_groups)] if grouped else [])
                       + [_int(t.n), _int(t.positives)])
        out.append([*prefix, "macro", _num(macro["auc"])] + ([_num(macro["gauc"]), ""] if grouped else []) + ["", ""])
        return out

    body = _table(head, rows(rep.tasks, rep.macro()))
    if grouped:
        body += f"<p>GAUC over groups of <code>{_e(rep.group)}</code>, weighted by {_e(rep.weighting)}.</p>"
    values = sorted(rep.scenarios, key=natural_key)  # tab 2 before tab 10
    if values:
        scen = rep.scenario or "scenario"
        body += f"<h3>Per scenario ({_e(scen)})</h3>" + _table(
            [scen] + head, [r for v in values for r in rows(rep.scenarios[v], rep.macro(v), (str(v),))])
    row_names = ["all rows"] + [str(v) for v in values]
    slices = [rep.tasks] + [rep.scenarios[v] for v in values]
    panels = [([[_nan(s.get(t).auc if s.get(t) else None) for t in f.tasks] for s in slices],
               row_names, f.tasks, "test AUC")]
    if grouped:
        panels.append(([[_nan(s.get(t).gauc if s.get(t) else None) for t in f.tasks] for s in slices],
                       row_names, f.tasks, "test GAUC"))
    return body + _img(plots.heatmaps(panels, digits=4, cmap="RdYlGn"), "test AUC and GAUC heatmap")


def gates_section(ins, plots) -> str:
    from .inspect_gates import COLLAPSE_WEIGHT, SAME_OUTPUT_COSINE, TOP_WEIGHT, no_gates_sentence

    if not ins.gates:
        return f"<p>{_e(no_gates_sentence(ins.model))}.</p>"
    out = [f"<p>Weights of every gate on the {_e(ins.split)} split ({ins.rows:,} rows): the mean weight of "
           f"each expert per task (and per scenario), the entropy of a row's weights (ln K when even) and the "
           f"share of rows whose top expert takes over {TOP_WEIGHT}. <code>composer inspect RUN</code> prints "
           f"the same as text.</p>"]
    warnings = ins.warnings
    if warnings:
        out.append("<ul class='warn'>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>")
    else:
        out.append(f"<p class='ok'>No collapse: no expert takes over {COLLAPSE_WEIGHT} of a gate's weight and no "
                   f"two experts' outputs have a mean cosine over {SAME_OUTPUT_COSINE}.</p>")
    panels = [(*ins.heatmap(family), f"{family}: mean weight") for family in ins.families()]
    out.append("<h3>Task &times; expert</h3>" + _img(plots.heatmaps(panels, vmin=0.0, vmax=1.0), "gate weights, task by expert"))
    scen_panels = []
    for g in ins.gates:
        if g.scenarios:
            matrix, values, cols = ins.scenario_heatmap(g)
            rows = [f"{v} ({g.scenarios[v].n:,} rows)" for v in values]  # a mean over 12 rows says less
            scen_panels.append((matrix, rows, cols, f"{g.node} ({g.branch})"))
    if scen_panels:
        out.append(f"<h3>Scenario &times; expert ({_e(ins.scenario or 'scenario')})</h3>"
                   + _img(plots.heatmaps(scen_panels, vmin=0.0, vmax=1.0), "gate weights, scenario by expert"))
    rows = []
    for g in ins.gates:
        for label, st in [(g.branch, g.overall), *((f"{ins.scenario}={s}", st) for s, st in g.scenarios.items())]:
            rows.append([g.node, label, _int(st.n), " · ".join(f"{e} {w:.3f}" for e, w in zip(g.experts, st.mean)),
                         f"{st.entropy:.3f} of {g.max_entropy:.3f}", _num(st.top_share, 3)])
    out.append(_details("the numbers", _table(["gate", "for", "rows", "mean weight per expert", "entropy",
                                               f"top>{TOP_WEIGHT}"], rows)))
    if ins.pools:
        pool_panels = [(p.cosine, [str(i) for i in range(len(p.cosine))], [str(i) for i in range(len(p.cosine))],
                        f"{p.node}: mean cosine") for p in ins.pools]
        out.append("<h3>How alike are the experts' outputs</h3>"
                   + _img(plots.heatmaps(pool_panels, vmin=-1.0, vmax=1.0, digits=2, cmap="coolwarm", cols=3),
                          "mean cosine between expert outputs"))
    return "".join(out)


# ------------------------------------------------------------------------------ a compare folder

@dataclass
class CompareFacts:
    folder: str
    text: str  # compare.txt
    models: list  # in the order compare trained them
    runs: dict  # model -> [(seed, Report)] sorted by seed (run i = the i-th seed)
    baseline: str
    planted: object = None  # Report of the data's planted truth, where compare saved one


def compare_facts(folder) -> CompareFacts:
    from .metrics import Report

    root = Path(folder)
    text = (root / COMPARE_FILE).read_text(encoding="utf-8", errors="replace")
    runs: dict = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        m = _SEED_FOLDER.match(sub.name)
        if not m:
            continue
        metrics = sub / "metrics.json"
        if not metrics.exists():
            raise BlueprintError("damaged compare folder: a run folder has no metrics.json",
                                 location=Location(str(sub)), hint="run composer compare again")
        runs.setdefault(m["name"], []).append((int(m["seed"]), _read_report(metrics, Report)))
    if not runs:
        raise BlueprintError(f"not a compare folder: {COMPARE_FILE} but no NAME-seedSEED run folder beside it",
                             location=Location(str(root)), hint="pass the folder `composer compare` wrote (its --out)")
    order = list(dict.fromkeys(m["name"] for m in _RUN_LINE.finditer(text)))
    models = [m for m in order if m in runs] + sorted(set(runs) - set(order))
    for model in runs:
        runs[model].sort(key=lambda t: t[0])
    found = _BASELINE.search(text)
    baseline = found["name"] if found and found["name"] in runs else models[0]
    planted = root / "planted-truth" / "metrics.json"
    return CompareFacts(str(root), text, models, runs, baseline,
                        _read_report(planted, Report) if planted.exists() else None)


def _read_report(path: Path, cls):
    try:
        return cls.load(path.parent)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BlueprintError(f"damaged compare folder: {path.name} does not read ({type(exc).__name__})",
                             location=Location(str(path)), hint="run composer compare again") from None


def compare_metrics(c: CompareFacts) -> tuple[list[tuple], dict]:
    """The columns, (name, task or None for the macro, metric), and (model, name) -> one value
    per run (None: n/a)."""
    tasks = list(dict.fromkeys(t for reps in c.runs.values() for _, r in reps for t in r.tasks))
    has_gauc = any(r.group for reps in c.runs.values() for _, r in reps)
    keys = [(t, "auc") for t in tasks] + [(None, "auc")]
    if has_gauc:
        keys += [(t, "gauc") for t in tasks] + [(None, "gauc")]
    columns = [(f"{'macro' if key is None else key} {metric.upper()}", key, metric) for key, metric in keys]
    values = {(model, name): [_metric(r, key, metric) for _, r in reps]
              for model, reps in c.runs.items() for name, key, metric in columns}
    return columns, values


def _metric(report, key, metric):
    from .metrics import metric_of

    return metric_of(report, key, metric) if key is None or key in report.tasks else None


def compare_page(folder) -> str:
    from . import report_plots as plots
    from .paired import MIN_PAIRS_FOR_P, paired_differences

    c = compare_facts(folder)
    columns, values = compare_metrics(c)
    names = [name for name, _, _ in columns]
    seeds = {m: len(r) for m, r in c.runs.items()}
    sections = []
    rows = []
    for model in c.models:
        rows.append([model, str(seeds[model])] + [_mean_std(values[(model, n)]) for n in names])
    if c.planted is not None:
        rows.append(["(planted truth)", "1"] + [_num(_metric(c.planted, key, metric)) for _, key, metric in columns])
    body = ("<p>Test metrics of every model, mean &plusmn; standard deviation over its runs (one per seed); "
            "the bars draw the mean, the error bar the standard deviation and the dots each run.</p>"
            + _table(["model", "runs"] + names, rows)
            + _img(plots.metric_bars(c.models, names, values, baseline=c.baseline), "metrics per model"))
    sections.append(("metrics", "Metrics over seeds", body))
    others = [m for m in c.models if m != c.baseline]
    if others and min(seeds.values()) >= 2:
        diffs, cells = {}, []
        for model in others:
            row = [model]
            for n in names:
                k = min(len(values[(c.baseline, n)]), len(values[(model, n)]))
                base, other = values[(c.baseline, n)][:k], values[(model, n)][:k]
                stats = paired_differences(base, other)
                diffs[(model, n)] = [b - a for a, b in zip(base, other) if a is not None and b is not None]
                row.append(_paired_cell(stats))
            cells.append(row)
        body = (f"<p>Run i of each model against run i of <b>{_e(c.baseline)}</b> (the same seed): the mean "
                f"difference, the runs ahead out of the pairs and, from {MIN_PAIRS_FOR_P} pairs on, the paired "
                f"t-test p. p covers run-to-run (seed) variation on this one test split, not the sampling of its "
                f"rows.</p>" + _table(["model"] + names, cells)
                + _img(plots.paired_bars(others, names, diffs, c.baseline), "paired differences"))
    elif not others:
        body = "<p>One model only: nothing to pair.</p>"
    else:
        body = ("<p>One run per model: a paired comparison needs two seeds or more "
                "(<code>composer compare ... --seeds 3</code>).</p>")
    sections.append(("paired", f"Paired differences against {c.baseline}", body))
    sections.append(("compare-text", "compare.txt", _pre(c.text)))
    intro = (f"<dl><dt>folder</dt><dd>{_e(c.folder)}</dd><dt>models</dt><dd>{_e(', '.join(c.models))}</dd>"
             f"<dt>baseline</dt><dd>{_e(c.baseline)}</dd></dl>")
    return _page(f"compare: {', '.join(c.models)}", intro, sections)


def _mean_std(values) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    return _Html(f"{np.mean(v):.4f} &plusmn; {np.std(v):.4f}") if len(v) > 1 else f"{v[0]:.4f}"


def _paired_cell(stats) -> str:
    if stats is None:
        return "n/a"
    p = "p n/a" if stats["p"] is None else "p < 0.001" if stats["p"] < 0.001 else f"p {stats['p']:.3f}"
    return f"{stats['mean']:+.4f} ({stats['ahead']}/{stats['pairs']}, {p})"


# ------------------------------------------------------------------------------------- HTML bits

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2a44;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
nav{background:#fff;border-bottom:1px solid #dde1e8;padding:8px 32px;position:sticky;top:0}
nav a{margin-right:16px;color:#2a5bd7;text-decoration:none;font-size:14px}
main{padding:8px 32px 40px}section{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:16px 0;padding:12px 20px}
h2{font-size:18px;margin:6px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #dde1e8;padding:3px 8px;text-align:right}
th{background:#f0f2f6}td:first-child,th:first-child,td.name{text-align:left}
img{max-width:100%;height:auto}img.diagram{max-height:900px}
pre{background:#f4f5f7;padding:10px;overflow:auto;font-size:12px;border-radius:4px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}dt{font-weight:600}dd{margin:0}
ul.warn{color:#a4262c;font-weight:600}p.ok{color:#1e7b34}
"""

# Turns an image that did not decode into a console error, which the browser test reads.
_SCRIPT = """window.addEventListener("load", function () {
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    if (!img.complete || img.naturalWidth === 0) console.error("image did not load: " + img.alt);
  }
});"""


def _page(title: str, intro: str, sections) -> str:
    nav = "".join(f"<a href='#{sid}'>{_e(name)}</a>" for sid, name, _ in sections)
    body = "".join(f"<section id='{sid}'><h2>{_e(name)}</h2>{content}</section>" for sid, name, content in sections)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"
            f"<body><header><h1>{_e(title)}</h1></header><nav>{nav}</nav><main>{intro}{body}</main>"
            f"<script>{_SCRIPT}</script></body></html>\n")


class _Html(str):
    """A table cell that is HTML already (an entity such as &plusmn;), not text to escape."""


def _e(text) -> str:
    return html.escape(str(text))


def _img(uri: str, alt: str, cls: str = "") -> str:
    return f"<img src='{uri}' alt='{_e(alt)}'" + (f" class='{cls}'" if cls else "") + ">"


def _pre(text: str) -> str:
    return f"<pre>{_e(text)}</pre>"


def _details(summary: str, content: str) -> str:
    return f"<details><summary>{_e(summary)}</summary>{content}</details>"


def _table(head, rows) -> str:
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(_cell(c) for c in r)
                      + "</tr>" for r in rows) + "</tbody></table>")


_NUMBER = re.compile(r"^(?:[-+]?[\d,]*\.?\d+(?:e[-+]?\d+)?|n/a|)(?: .*)?$")


def _cell(c) -> str:
    """A cell: numbers (and "n/a") right-aligned as the CSS sets, names left-aligned."""
    text = c if isinstance(c, _Html) else _e(c)
    return f"<td>{text}</td>" if _NUMBER.match(str(c)) else f"<td class='name'>{text}</td>"


def _frame_table(frame) -> str:
    return _table(list(frame.columns), [[_fmt_cell(v) for v in row] for row in frame.itertuples(index=False)])


def _fmt_cell(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def _num(v, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _int(v) -> str:
    return "" if v is None else f"{v:,}"


def _nan(v) -> float:
    return np.nan if v is None else float(v)


def write_report(text: str, out: str) -> None:
    """Write the page; a file that cannot be written is a located error."""
    try:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise BlueprintError(f"cannot write the report: {exc.strerror}", location=Location(out), key="-o") from None


def check_output(out: str) -> None:
    if not out.lower().endswith((".html", ".htm")):
        raise BlueprintError("the report is an HTML page: name a .html file", location=Location(out), key="-o",
                             hint="e.g. -o report.html")
    if os.path.isdir(out):
        raise BlueprintError("is a folder; name the file to write", location=Location(out), key="-o")
