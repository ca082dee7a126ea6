"""Run folders: what ``composer train`` writes and ``evaluate``, ``export``, ``predict`` read back;
a missing or damaged file is a located error naming it.

A run folder is claimed when training starts (``claim``: an existing one is refused unless
``--overwrite``, which clears it first) and holds ``status.json`` (training / interrupted /
finished, epochs done, the command that started it, for ``--resume``) and the epoch checkpoint
while training runs. ``save_run`` writes the whole folder beside it and swaps it in by renames,
so a reader never sees half of a run's files; the checkpoint moves into the new folder.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..data.preprocess import Preprocessor
from .experiment import Experiment

RUN_FILES = {"model": "model.keras", "pre": "preprocessing.json", "blueprint": "blueprint.json",
             "data": "data.json", "plan": "loss_plan.json", "history": "history.csv",
             "yaml": "blueprint.yaml", "dot": "blueprint.dot", "svg": "blueprint.svg",
             "status": "status.json", "checkpoint": "checkpoint.npz"}


def write_json(path, value) -> None:
    """Atomically replace ``path`` with ``value`` as JSON."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def claim(out_dir, *, overwrite: bool = False, command: dict | None = None) -> Path:
    """The run folder ``composer train`` writes into, created with a ``status.json`` saying
    training; an existing non-empty folder is refused unless ``overwrite`` (which clears it)."""
    from ..blueprint.errors import BlueprintError, Location

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BlueprintError("the run folder is a file", location=Location(str(out)), key="--out",
                             hint="pass a folder path to --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            status = read_status(out)
            what = f"a {status['state']} run" if status else "files"
            raise BlueprintError(f"the run folder already exists and holds {what}", location=Location(str(out)),
                                 key="--out", hint="pass --overwrite to replace it, --resume "
                                 f"{out} to continue it, or another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RUN_FILES["status"], {"state": "training", "epochs_done": 0, "command": command or {},
                                           "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return out


def read_status(run) -> dict | None:
    """``status.json`` of a run folder (None for a folder written before it existed, or none)."""
    path = Path(run) / RUN_FILES["status"]
    if not path.exists():
        return None
    return _run_file(Path(run), "status", lambda p: dict(json.loads(p.read_text(encoding="utf-8"))))


def update_status(run, **values) -> None:
    status = read_status(run) or {}
    status.update(values)
    write_json(Path(run) / RUN_FILES["status"], status)



def save_run(exp: Experiment, out_dir: str, history=None, test_report=None, status: dict | None = None) -> Path:
    """Write the run folder: every file into a sibling folder, then swapped in by renames (the
    checkpoint and status of a claimed folder carried over, the status updated by ``status``)."""
    final = Path(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    out = final.with_name(f".{final.name}.partial-{os.getpid()}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    _write_files(exp, out, history, test_report)
    previous = read_status(final) if final.is_dir() else None
    write_json(out / RUN_FILES["status"], {**(previous or {}), "state": "finished", **(status or {})})
    if (final / RUN_FILES["checkpoint"]).exists():
        os.replace(final / RUN_FILES["checkpoint"], out / RUN_FILES["checkpoint"])
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(out, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(out, final)
    return final


def _write_files(exp: Experiment, out: Path, history, test_report) -> None:
    exp.model.save(out / RUN_FILES["model"])
    exp.pre.save(str(out / RUN_FILES["pre"]))
    (out / RUN_FILES["blueprint"]).write_text(json.dumps(exp.bp.model_dump(mode="json"), indent=2))
    (out / RUN_FILES["plan"]).write_text(json.dumps(exp.plan.to_dict(), indent=2))
    spec = exp.dataset.spec
    (out / RUN_FILES["data"]).write_text(json.dumps({
        "name": exp.data_name, "source": exp.dataset.source, "rows": exp.dataset.counts(),
        "labels": spec.labels, "scenario": spec.scenario, "group": spec.group,
        "timings": exp.timings, "task_weights": exp.task_weights}, indent=2, default=str))
    if exp.blueprint_text:  # the blueprint as written (blueprint.json is the resolved one)
        (out / RUN_FILES["yaml"]).write_text(exp.blueprint_text, encoding="utf-8")
    _save_diagram(exp.graph, out)
    if history is not None:
        import pandas as pd

        pd.DataFrame(history.history).rename_axis("epoch").to_csv(out / RUN_FILES["history"])
    if test_report is not None:
        test_report.save(str(out))


def _save_diagram(graph, out: Path) -> None:
    """blueprint.dot always; blueprint.svg too where Graphviz's ``dot`` is installed (a failed
    drawing leaves the .dot, which says everything the picture would)."""
    import subprocess

    from ..diagram import has_dot, render

    render(graph, str(out / RUN_FILES["dot"]))
    if has_dot():
        try:
            render(graph, str(out / RUN_FILES["svg"]))
        except (RuntimeError, OSError, subprocess.CalledProcessError):
            pass


def default_run_dir(bp_name: str, data_name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = os.path.basename(str(data_name)).replace(":", "_").replace(",", "_").replace("=", "-")
    return os.path.join("runs", f"{bp_name}-{safe}-{stamp}")


def load_run(run_dir: str, data: str | None = None, rows: int | None = None, *,
             with_data: bool = True) -> Experiment:
    """Reload a run folder: the saved model, its preprocessing and its resolved blueprint, and
    its dataset (``data`` instead, when given) unless ``with_data`` is False (predicting new
    rows reads none). A missing folder or file, or a file that does not read, is a
    BlueprintError naming it."""
    from .. import load_model
    from ..blueprint.schema import blueprint_model
    from ..data.registry import load
    from ..graph import build_graph
    from ..losses import LossPlan

    run = check_run_folder(run_dir)
    bp = _run_file(run, "blueprint", lambda p: blueprint_model().model_validate(json.loads(p.read_text())))
    meta = _run_file(run, "data", lambda p: dict(json.loads(p.read_text())))
    data_name = data or meta.get("name")
    if rows is None and data is None:  # the rows it trained on (--rows), so the splits are the same
        rows = ((read_status(run) or {}).get("command") or {}).get("rows")
    pre = _run_file(run, "pre", lambda p: Preprocessor.load(str(p)))
    graph = build_graph(bp, None, vocab_sizes=pre.vocab_sizes())
    if not with_data:
        model = _run_file(run, "model", lambda p: load_model(str(p)))
        return Experiment(bp, graph, None, pre, model, LossPlan.from_blueprint(bp), data_name)
    if bp.training.stream:
        from ..data.streaming import open_stream

        dataset = open_stream(data_name, rows=rows, chunk_rows=bp.training.chunk_rows)
    else:
        dataset = load(data_name, rows=rows)
    model = _run_file(run, "model", lambda p: load_model(str(p)))
    return Experiment(bp, graph, dataset, pre, model, LossPlan.from_blueprint(bp), data_name)


def check_run_folder(run_dir) -> Path:
    """The run folder, if it holds every file ``load_run`` reads (nothing is loaded: no Keras)."""
    from ..blueprint.errors import BlueprintError, Location

    run = Path(run_dir)
    if not run.is_dir():
        raise BlueprintError("no such run folder" if not run.exists() else "not a folder", location=Location(str(run)),
                             hint="pass the folder `composer train` wrote (runs/NAME-DATA-TIME, or its --out)")
    missing = [f for f in ("model", "pre", "blueprint", "data") if not (run / RUN_FILES[f]).exists()]
    status = read_status(run) if missing else None
    if missing and status and status.get("state") == "training":
        raise BlueprintError(f"this run is still training, or stopped before writing its files "
                             f"({status.get('epochs_done', 0)} epoch(s) checkpointed)", location=Location(str(run)),
                             hint=f"wait for it, or continue it: composer train --resume {run}")
    if missing:
        raise BlueprintError(f"not a run folder: {', '.join(RUN_FILES[m] for m in missing)} missing",
                             location=Location(str(run)), hint="pass the folder `composer train` wrote")
    return run


def _run_file(run: Path, key: str, read):
    """``read(path)`` of one file of a run folder; one that does not read (truncated, edited,
    written by another version) is a located error rather than a traceback."""
    import zipfile

    path = run / RUN_FILES[key]
    try:
        return read(path)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as exc:
        from ..blueprint.errors import BlueprintError, Location

        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BlueprintError(f"damaged run folder: {path.name} does not read ({type(exc).__name__}"
                             + (f": {reason})" if reason else ")"), location=Location(str(path)),
                             hint="restore the file or train again (composer train writes it)") from None

