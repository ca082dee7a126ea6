"""An experiment: a blueprint bound to its data, preprocessing fitted on the train split only,
and the compiled model. ``prepare`` builds one; the training loop (composer/training/loop.py)
trains it and composer/training/run_folder.py saves and reloads it.
"""
from __future__ import annotations

import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.preprocess import Preprocessor

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
        from ..blueprint.expressions import parse_label

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
    from ..blueprint.expressions import evaluate

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
    from ..blueprint import load_blueprint
    from ..compiler import compile_graph
    from ..data.registry import load
    from ..distributed import for_training
    from ..graph import build_graph
    from ..losses import LossPlan

    t0 = time.perf_counter()
    bp, doc = load_blueprint(blueprint_file, data=data, sets=sets)
    if training:
        bp = bp.model_copy(update={"training": _override(bp, training)})
    parallel = for_training(bp, cluster)  # joins a multi-process run before anything touches a device
    data_name = _data_path(blueprint_file, bp, data)
    if data_name is None:
        from ..blueprint.errors import BlueprintError

        raise BlueprintError("no dataset to train on", location=doc.location(()),
                             hint="add 'data: synthetic' to the blueprint or pass --data NAME")
    if dataset is None and bp.training.stream:
        from ..data.streaming import open_stream

        dataset = open_stream(data_name, rows=rows, chunk_rows=bp.training.chunk_rows)
    if dataset is None:
        dataset = load(data_name, rows=rows)
    t1 = time.perf_counter()
    pre = fit_preprocessing(bp, doc, dataset)
    graph = build_graph(bp, doc, vocab_sizes=pre.vocab_sizes())
    parallel.lay_out(graph.layout, bp.training)  # model_parallel: which tables split, now their rows are known
    if bp.training.device_memory_mb:
        from ..memory_plan import MemoryPlan

        MemoryPlan.of(graph, bp.training, parallel.mesh_devices).check(bp.training.device_memory_mb)
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
    from ..layout import FeatureLayout

    layout = FeatureLayout.from_blueprint(bp)
    cats = [n for names in layout.categorical_by_dim.values() for n in names]
    scenario = (bp.scenarios.feature, bp.scenarios.ids) if bp.scenarios else None
    extra = dict(lists={n: {"max_len": lf.max_len, "ordered": lf.ordered} for n, lf in layout.lists.items()},
                 tables=layout.shared(), hashed=layout.hash_buckets,
                 quantiles={n: e.buckets for n, e in layout.numeric_embed.items() if e.kind == "quantile"})
    if getattr(dataset, "streaming", False):  # one pass over the train rows; scenarios checked
        if any(extra.values()):
            from ..blueprint.errors import BlueprintError

            what = [k for k, v in extra.items() if v]
            raise BlueprintError(f"streaming does not read {' / '.join(what)} features yet",
                                 location=doc.location(("training", "stream")) if doc else None,
                                 key="training.stream", hint="train in memory (stream: false); lists, "
                                 "shared tables, hashing and quantile embeddings stream in a later version")
        return dataset.fit_preprocessor(cats, layout.numeric, min_count=bp.training.min_count, scenario=scenario)
    pre = Preprocessor.fit(dataset.part("train").frame, cats, layout.numeric, min_count=bp.training.min_count,
                           scenario=scenario, **extra)
    if scenario:
        from ..data.files import row_locator

        pre.encode_scenario(dataset.frame[scenario[0]], source=dataset.source, locate=row_locator(dataset))
    _check_lengths(bp, doc, dataset)
    return pre


def _check_lengths(bp, doc, dataset) -> None:
    """A list longer than its max_len where the blueprint refuses truncation: an error at the
    blueprint's max_len, with the rows that break it."""
    from ..blueprint.errors import BlueprintError
    from ..data.lists import flatten

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

    from ..blueprint.errors import BlueprintError, did_you_mean

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
    from ..blueprint.binding import resolve_data_name

    class _Doc:
        file = blueprint_file

    return resolve_data_name(bp, _Doc, data)


