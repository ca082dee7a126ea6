"""Training and evaluation of a compiled blueprint on a dataset.

``prepare`` binds the blueprint to the data, fits preprocessing on the train split only and
compiles the model; ``fit`` trains with Keras ``fit`` (tf.data on TensorFlow), validates with
exact AUC every epoch, stops early on the chosen metric and keeps the best weights; the run
folder holds everything needed to evaluate, compare and export later.
"""
from __future__ import annotations

import json
import os
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.preprocess import Preprocessor

RUN_FILES = {"model": "model.keras", "pre": "preprocessing.json", "blueprint": "blueprint.json",
             "data": "data.json", "plan": "loss_plan.json", "history": "history.csv",
             "yaml": "blueprint.yaml", "dot": "blueprint.dot", "svg": "blueprint.svg"}


@dataclass
class Experiment:
    bp: object
    graph: object
    dataset: object
    pre: Preprocessor
    model: object
    plan: object
    data_name: str
    blueprint_file: str = ""
    blueprint_text: str = ""  # the blueprint file's text as read when training started
    timings: dict = field(default_factory=dict)
    trainer: object = None
    task_weights: dict = field(default_factory=dict)
    parallel: object = None  # composer.distributed.Parallel; None: one device

    @property
    def tasks(self):
        return self.bp.task_names

    def labels(self, rows) -> tuple[dict, dict]:
        """Per task: labels (label column or label expression; -1 where a label it reads is
        missing) and the rows that count (valid label and the task's ``where``)."""
        from .blueprint.expressions import parse_label

        labels, masks = {}, {}
        for task in self.bp.tasks:
            labels[task.name] = _label_values(parse_label(task.label_text), rows)
            mask = labels[task.name] >= 0
            if task.where:
                where = _label_values(parse_label(task.where), rows)
                mask &= where == 1
            masks[task.name] = mask
        return labels, masks

    def arrays(self, part: str):
        """Packed inputs, labels and per-task sample weights (0 where a label is missing or
        outside the task's ``where``)."""
        return self.arrays_of(self.dataset.part(part).frame)

    def arrays_of(self, rows):
        """``arrays`` for some rows of the dataset (a streamed chunk)."""
        x = self.pre.pack(rows, self.graph.layout)
        labels, masks = self.labels(rows)
        y = {t: np.where(labels[t] < 0, 0, labels[t]).astype("float32").reshape(-1, 1) for t in self.tasks}
        w = {t: masks[t].astype("float32") for t in self.tasks}
        return x, y, w


def _label_values(expr, rows) -> np.ndarray:
    """0/1 per row from a label expression; -1 where any column it reads is missing (-1)."""
    from .blueprint.expressions import evaluate

    cols = {n: rows[n].to_numpy() for n in expr.names()}
    missing = np.zeros(len(rows), dtype=bool)
    for v in cols.values():
        missing |= v < 0
    value = np.asarray(evaluate(expr, {n: v == 1 for n, v in cols.items()}, np)).astype("int64")
    return np.where(missing, -1, value)


def prepare(blueprint_file: str, data: str | None = None, rows: int | None = None,
            dataset=None, training: dict | None = None, cluster=None, sets=None) -> Experiment:
    """Bind, load, fit preprocessing on train, compile. ``dataset`` skips loading (compare);
    ``training`` overrides fields of the blueprint's training section (e.g. from the CLI);
    ``sets`` (``KEY=VALUE`` texts, ``--set``) override any blueprint setting before validation;
    ``cluster`` (composer.distributed.Cluster) is this process's place in a multi-process run."""
    from .blueprint import load_blueprint
    from .compiler import compile_graph
    from .data.registry import load
    from .distributed import for_training
    from .graph import build_graph
    from .losses import LossPlan

    t0 = time.perf_counter()
    bp, doc = load_blueprint(blueprint_file, data=data, sets=sets)
    if training:
        bp = bp.model_copy(update={"training": _override(bp, training)})
    parallel = for_training(bp, cluster)  # joins a multi-process run before anything touches a device
    data_name = _data_path(blueprint_file, bp, data)
    if data_name is None:
        from .blueprint.errors import BlueprintError

        raise BlueprintError("no dataset to train on", location=doc.location(()),
                             hint="add 'data: synthetic' to the blueprint or pass --data NAME")
    if dataset is None and bp.training.stream:
        from .data.streaming import open_stream

        dataset = open_stream(data_name, rows=rows, chunk_rows=bp.training.chunk_rows)
    if dataset is None:
        dataset = load(data_name, rows=rows)
    t1 = time.perf_counter()
    pre = fit_preprocessing(bp, doc, dataset)
    graph = build_graph(bp, doc, vocab_sizes=pre.vocab_sizes())
    with parallel.scope():
        model = compile_graph(graph, numeric_stats=pre.numeric_stats(graph.layout) if graph.layout.numeric else None,
                              numeric_edges=pre.numeric_edges())
    plan = LossPlan.from_blueprint(bp)
    exp = Experiment(bp, graph, dataset, pre, model, plan, data_name, blueprint_file, parallel=parallel)
    exp.blueprint_text = _read_text(blueprint_file)
    exp.timings.update(load_s=t1 - t0, prepare_s=time.perf_counter() - t1)
    return exp


def _read_text(file) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, TypeError):
        return ""


def fit_preprocessing(bp, doc, dataset) -> Preprocessor:
    """Vocabularies (shared tables fitted on every feature reading them), hashing, list
    lengths, numeric statistics and quantile edges, from the train split only; the scenario
    values and list lengths of every split checked now, at load, not when a batch first meets a
    bad row."""
    from .layout import FeatureLayout

    layout = FeatureLayout.from_blueprint(bp)
    cats = [n for names in layout.categorical_by_dim.values() for n in names]
    scenario = (bp.scenarios.feature, bp.scenarios.ids) if bp.scenarios else None
    extra = dict(lists={n: {"max_len": lf.max_len, "ordered": lf.ordered} for n, lf in layout.lists.items()},
                 tables=layout.shared(), hashed=layout.hash_buckets,
                 quantiles={n: e.buckets for n, e in layout.numeric_embed.items() if e.kind == "quantile"})
    if getattr(dataset, "streaming", False):  # one pass over the train rows; scenarios checked
        if any(extra.values()):
            from .blueprint.errors import BlueprintError

            what = [k for k, v in extra.items() if v]
            raise BlueprintError(f"streaming does not read {' / '.join(what)} features yet",
                                 location=doc.location(("training", "stream")) if doc else None,
                                 key="training.stream", hint="train in memory (stream: false); lists, "
                                 "shared tables, hashing and quantile embeddings stream in a later version")
        return dataset.fit_preprocessor(cats, layout.numeric, min_count=bp.training.min_count, scenario=scenario)
    pre = Preprocessor.fit(dataset.part("train").frame, cats, layout.numeric, min_count=bp.training.min_count,
                           scenario=scenario, **extra)
    if scenario:
        from .data.files import row_locator

        pre.encode_scenario(dataset.frame[scenario[0]], source=dataset.source, locate=row_locator(dataset))
    _check_lengths(bp, doc, dataset)
    return pre


def _check_lengths(bp, doc, dataset) -> None:
    """A list longer than its max_len where the blueprint refuses truncation: an error at the
    blueprint's max_len, with the rows that break it."""
    from .blueprint.errors import BlueprintError
    from .data.lists import flatten

    problems = []
    for i, f in enumerate(bp.features):
        if getattr(f, "truncate", None) != "error" or f.name not in dataset.frame:
            continue
        _, lengths = flatten(dataset.frame[f.name])
        over = np.flatnonzero(lengths > f.max_len)
        if len(over):
            problems.append(BlueprintError(
                f"'{f.name}' holds more than max_len = {f.max_len} values on {len(over)} rows of "
                f"{dataset.source or 'the data'} (longest {int(lengths.max())}; first at data row {int(over[0])})",
                location=doc.location(("features", i, "max_len")) if doc else None,
                key=f"features[{i}].max_len",
                hint=f"raise max_len to {int(lengths.max())}, or let it truncate (remove truncate: error)"))
    if problems:
        raise BlueprintError.many(problems)


def _override(bp, updates: dict):
    """The training section with command-line overrides, checked like the blueprint itself."""
    from pydantic import ValidationError

    from .blueprint.errors import BlueprintError, did_you_mean

    try:
        section = bp.training.model_validate({**bp.training.model_dump(), **updates})
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = "--" + str(err["loc"][0]).replace("_", "-")
        message = err["msg"][0].lower() + err["msg"][1:]
        hint = None
        if err["type"] == "literal_error":  # e.g. --distribution mirored: did you mean 'mirrored'?
            field = type(bp.training).model_fields[err["loc"][0]]
            hint = did_you_mean(str(err.get("input")), typing.get_args(field.annotation), what="valid")
        raise BlueprintError(f"{message}, got {err.get('input')!r}", key=flag, hint=hint) from None
    monitors = ["auc", "loss", *(f"auc_{t}" for t in bp.task_names)]
    if section.monitor not in monitors:
        raise BlueprintError(f"'{section.monitor}' is not a metric", key="--monitor",
                             hint=did_you_mean(section.monitor, monitors, what="metrics"))
    return section


def _data_path(blueprint_file, bp, data):
    from .blueprint.binding import resolve_data_name

    class _Doc:
        file = blueprint_file

    return resolve_data_name(bp, _Doc, data)


def _optimizer(training):
    import keras

    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
           "adagrad": keras.optimizers.Adagrad, "sgd": keras.optimizers.SGD,
           "rmsprop": keras.optimizers.RMSprop}[training.optimizer]
    return cls(learning_rate=training.learning_rate)


def _batches(x, y, w, batch_size, shuffle, seed, parallel=None):
    import keras

    if parallel is not None and parallel.shards_data:  # this process's part of each global batch
        return parallel.batches(x, y, w, batch_size, shuffle, seed), {"shuffle": False}
    if keras.backend.backend() == "tensorflow":
        from .data.tf_pipeline import make_dataset

        return make_dataset(x, y, w, batch_size, shuffle, seed), {"shuffle": False}  # tf.data shuffles
    return (x, y, w), {"batch_size": batch_size, "shuffle": shuffle}


def _callbacks(exp: Experiment, x_valid, y_valid, w_valid):
    import keras

    from .metrics import auc

    class ExactValidationAUC(keras.callbacks.Callback):
        """Exact AUC per task on the valid split (keras.metrics.AUC is a 200-threshold
        approximation), logged as val_auc_<task> and their mean val_auc; and, from the same
        predictions, the valid loss (val_loss, val_loss_<task>) whatever the monitor."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            pred = exp.parallel.predict(exp.model, x_valid)  # on this process alone
            values = []
            for task in exp.tasks:
                keep = w_valid[task] > 0
                value = auc(y_valid[task][keep, 0], np.asarray(pred[task])[keep, 0])
                values.append(float("nan") if value is None else value)
            losses = valid_loss(exp, y_valid, w_valid, pred)
            agreed = exp.parallel.agree(values + list(losses.values()))  # every process stops at the same epoch
            values = agreed[:len(values)]
            for task, value in zip(exp.tasks, values):
                logs[f"val_auc_{task}"] = value
            known = [v for v in values if not np.isnan(v)]
            logs["val_auc"] = float(np.mean(known)) if known else float("nan")
            logs.update(zip(losses, agreed[len(values):]))

    monitor = exp.bp.training.monitor
    return [ExactValidationAUC(),
            keras.callbacks.EarlyStopping(monitor=f"val_{monitor}", mode="min" if monitor == "loss" else "max",
                                          patience=exp.bp.training.patience, restore_best_weights=True,
                                          verbose=0)]


def valid_loss(exp: Experiment, y, w, pred) -> dict[str, float]:
    """The training loss on the valid rows, from predictions already made (no second pass, and
    no per-replica split of the valid rows, which MirroredStrategy cannot do for an odd count):
    {"val_loss": fused total, "val_loss_<task>": masked mean BCE of each trained task}, by the
    trainer's own ``plan_loss`` (the fusion's current weights or log-variances and the model's
    regularization terms count as in training); the means are over the whole split."""
    import keras

    trainer = exp.trainer
    total, losses = trainer.plan_loss(y, {t: np.asarray(pred[t], dtype="float32") for t in trainer.tasks}, w)
    per_task = {f"val_loss_{t}": float(keras.ops.convert_to_numpy(v)) for t, v in zip(trainer.tasks, losses)}
    return {"val_loss": float(keras.ops.convert_to_numpy(total)), **per_task}


def fit(exp: Experiment, verbose: int = 1, epochs: int | None = None, batch_size: int | None = None):
    """Train in place; returns the Keras History."""
    if getattr(exp.dataset, "streaming", False):
        from .streamed_fit import fit_streaming

        return fit_streaming(exp, verbose, epochs, batch_size)
    training = exp.bp.training
    batch_size = batch_size or training.batch_size
    trainer = start_training(exp)
    parallel = exp.parallel
    counts = exp.dataset.counts()
    parallel.check_batch_size(batch_size, rows=counts["train"])
    for part in ("train", "valid"):
        if counts[part] == 0:
            from .data.errors import DataError

            raise DataError(f"the {part} split of {exp.data_name} has no rows ({counts['train']:,} train, "
                            f"{counts['valid']:,} valid, {counts['test']:,} test)", key="data",
                            hint="read more rows (--rows), or check the data's split rule: early stopping "
                            "needs valid rows")
    x, y, w = exp.arrays("train")
    xv, yv, wv = exp.arrays("valid")
    data, kwargs = _batches(x, y, w, batch_size, True, training.seed, parallel)
    if isinstance(data, tuple):
        kwargs.update(x=data[0], y=data[1], sample_weight=data[2])
    else:
        kwargs["x"] = data
    t0 = time.perf_counter()
    with parallel.scope():
        history = trainer.fit(epochs=epochs or training.epochs, verbose=verbose,
                              callbacks=_callbacks(exp, xv, yv, wv), **kwargs)
    finish_training(exp, history, time.perf_counter() - t0, len(next(iter(x.values()))))
    return history


def start_training(exp: Experiment):
    """The seeded trainer (``PlanTrainer``), compiled with the blueprint's optimizer in the
    distribution's scope; shared by in-memory and streamed ``fit``. Sets ``exp.parallel`` (one
    device when ``prepare`` did not set it) and ``exp.trainer``."""
    import keras

    from .distributed import Parallel
    from .fusion import PlanTrainer

    keras.utils.set_random_seed(exp.bp.training.seed)
    if exp.parallel is None:
        exp.parallel = Parallel()
    trainer = exp.parallel.trainer(PlanTrainer, exp.model, exp.plan, shared_layers=_shared_layers(exp))
    with exp.parallel.scope():
        trainer.compile(optimizer=_optimizer(exp.bp.training))
    exp.trainer = trainer
    return trainer


def finish_training(exp: Experiment, history, seconds: float, train_rows: int) -> None:
    """Timings and task weights of a finished ``fit``; the model made local to this process."""
    exp.timings["train_s"] = seconds
    exp.timings["epochs_run"] = len(history.history.get("loss", []))
    exp.timings["train_examples_per_s"] = train_rows * exp.timings["epochs_run"] / seconds
    exp.task_weights = exp.trainer.task_weight_values()
    exp.model = exp.parallel.host_model(exp.model)  # predict, report and save on this process alone


def _shared_layers(exp):
    """The Keras layers a gradient strategy differentiates: GradNorm's last shared layer W, or
    PE-LTR's shared parameters theta (every shared block)."""
    plan, graph = exp.plan, exp.graph
    tasks = [t.task for t in plan.trained]
    if plan.fusion == "gradnorm":
        nid = plan.params.get("shared_layer") or graph.last_shared_layer(tasks)
        nids = [nid] if nid else []
    elif plan.fusion == "pareto":
        nids = [n for n in graph.shared_nodes(tasks) if graph.nodes[n].params]
    else:
        return []
    if not nids:
        from .blueprint.errors import BlueprintError

        raise BlueprintError(f"{plan.fusion} needs a block with weights shared by every task",
                             key="loss", hint="this blueprint shares only the embeddings")
    layers = []
    for nid in nids:
        from .compiler import BuildContext

        name = BuildContext.layer_name_of(nid)
        try:
            layers.append(exp.model.get_layer(name))
        except ValueError:
            from .blueprint.errors import BlueprintError, did_you_mean

            raise BlueprintError(f"no block '{nid}' with weights", key="loss.shared_layer",
                                 hint=did_you_mean(nid, list(graph.nodes), what="blocks")) from None
    return layers


def predict(exp: Experiment, part: str) -> dict[str, np.ndarray]:
    if getattr(exp.dataset, "streaming", False):
        from .streamed_fit import predict_streaming

        return predict_streaming(exp, part)
    x, _, _ = exp.arrays(part)
    out = exp.model.predict(x, batch_size=8192, verbose=0)
    return {t: np.asarray(out[t]).reshape(-1) for t in exp.tasks}


def report(exp: Experiment, part: str = "test", predictions=None):
    """Exact AUC / GAUC per task and per scenario on one split (the test split by default)."""
    from .metrics import evaluate_predictions

    if getattr(exp.dataset, "streaming", False):
        from .streamed_fit import report_rows

        rows = report_rows(exp, part)
    else:
        rows = exp.dataset.part(part).frame
    predictions = predictions if predictions is not None else predict(exp, part)
    spec = exp.dataset.spec
    scenario_col = exp.bp.scenarios.feature if exp.bp.scenarios else spec.scenario
    labels, masks = exp.labels(rows)
    columns = {f"label:{t}": labels[t] for t in exp.tasks}
    columns.update({f"mask:{t}": masks[t] for t in exp.tasks})
    columns.update({f"pred:{t}": p for t, p in predictions.items()})
    if scenario_col:
        columns[scenario_col] = rows[scenario_col].astype("string").to_numpy()
    if spec.group:
        columns[spec.group] = rows[spec.group].to_numpy()
    import pandas as pd

    frame = pd.DataFrame(columns)
    return evaluate_predictions(
        frame, {t: f"pred:{t}" for t in exp.tasks},
        label_columns={t: f"label:{t}" for t in exp.tasks}, masks={t: f"mask:{t}" for t in exp.tasks},
        scenario=scenario_col, group=spec.group)


def planted_report(exp: Experiment, part: str = "test"):
    """The same metrics for the data's own best score (``Dataset.meta["planted"]``, label
    column -> one score per row; the synthetic generators give it), as if it were a model's
    prediction: the ceiling a model's AUC on these labels can be read against. None unless every
    task reads one such label column on all its rows (no label expression, no ``where``)."""
    if "planted" not in getattr(exp.dataset, "meta", {}):
        return None
    planted = exp.dataset.part(part).meta["planted"]
    tasks = exp.bp.tasks
    if not tasks or any(t.where or t.label_text not in planted for t in tasks):
        return None
    return report(exp, part, predictions={t.name: planted[t.label_text] for t in tasks})


def save_run(exp: Experiment, out_dir: str, history=None, test_report=None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    return out


def _save_diagram(graph, out: Path) -> None:
    """blueprint.dot always; blueprint.svg too where Graphviz's ``dot`` is installed (a failed
    drawing leaves the .dot, which says everything the picture would)."""
    import subprocess

    from .diagram import has_dot, render

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
    from . import load_model
    from .blueprint.schema import blueprint_model
    from .data.registry import load
    from .graph import build_graph
    from .losses import LossPlan

    run = check_run_folder(run_dir)
    bp = _run_file(run, "blueprint", lambda p: blueprint_model().model_validate(json.loads(p.read_text())))
    meta = _run_file(run, "data", lambda p: dict(json.loads(p.read_text())))
    data_name = data or meta.get("name")
    pre = _run_file(run, "pre", lambda p: Preprocessor.load(str(p)))
    graph = build_graph(bp, None, vocab_sizes=pre.vocab_sizes())
    if not with_data:
        model = _run_file(run, "model", lambda p: load_model(str(p)))
        return Experiment(bp, graph, None, pre, model, LossPlan.from_blueprint(bp), data_name)
    if bp.training.stream:
        from .data.streaming import open_stream

        dataset = open_stream(data_name, rows=rows, chunk_rows=bp.training.chunk_rows)
    else:
        dataset = load(data_name, rows=rows)
    model = _run_file(run, "model", lambda p: load_model(str(p)))
    return Experiment(bp, graph, dataset, pre, model, LossPlan.from_blueprint(bp), data_name)


def check_run_folder(run_dir) -> Path:
    """The run folder, if it holds every file ``load_run`` reads (nothing is loaded: no Keras)."""
    from .blueprint.errors import BlueprintError, Location

    run = Path(run_dir)
    if not run.is_dir():
        raise BlueprintError("no such run folder" if not run.exists() else "not a folder", location=Location(str(run)),
                             hint="pass the folder `composer train` wrote (runs/NAME-DATA-TIME, or its --out)")
    missing = [f for f in ("model", "pre", "blueprint", "data") if not (run / RUN_FILES[f]).exists()]
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
        from .blueprint.errors import BlueprintError, Location

        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BlueprintError(f"damaged run folder: {path.name} does not read ({type(exc).__name__}"
                             + (f": {reason})" if reason else ")"), location=Location(str(path)),
                             hint="restore the file or train again (composer train writes it)") from None
