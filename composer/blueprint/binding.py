"""Binding a blueprint to a dataset: ``features: {from_data: ...}``, ``tasks: from_data``,
``'*'`` in groups and an ``outputs`` template become concrete lists, and explicit features and
labels are checked against the dataset's columns. Pure Python: only the dataset's static
description (``DataSpec``) is read, never the data."""
from __future__ import annotations

import os

from .errors import BlueprintError, did_you_mean
from .loader import path_text
from .schema import FROM_DATA, CategoricalFeature, FeaturesFromData, NumericFeature, Task


def needs_data(bp) -> bool:
    return isinstance(bp.features, FeaturesFromData) or bp.tasks == FROM_DATA


def resolve_data_name(bp, doc, data: str | None) -> str | None:
    """``--data`` wins over the blueprint's ``data:``; a relative data YAML path in the blueprint
    is relative to the blueprint's folder."""
    if data:
        return data
    if bp.data and bp.data.endswith((".yaml", ".yml")) and not os.path.isabs(bp.data) and doc:
        return os.path.join(os.path.dirname(doc.file), bp.data)
    return bp.data


def bind(bp, doc, spec=None):
    """The blueprint with every data-dependent part made concrete."""
    problems: list[BlueprintError] = []

    def err(path, message, hint=None, at_key=False):
        problems.append(BlueprintError(message, location=doc.location(path, at_key=at_key) if doc else None,
                                       key=path_text(path), hint=hint))

    if spec is None and needs_data(bp):
        what = "features" if isinstance(bp.features, FeaturesFromData) else "tasks"
        err((what,), "from_data needs a dataset",
            "add 'data: NAME' to the blueprint (e.g. data: synthetic) or pass --data NAME")
        raise BlueprintError.many(problems)
    features = _features(bp, spec, err)
    tasks = _tasks(bp, spec, err)
    names = [f.name for f in features]
    groups = {g: _expand(members, names) for g, members in bp.groups.items()}
    outputs = bp.outputs
    if isinstance(outputs, str):
        task_names = [t.name for t in tasks]
        if "{task}" not in outputs and len(task_names) > 1:
            err(("outputs",), f"one output reference '{outputs}' for {len(task_names)} tasks",
                "use '{task}' in it (e.g. tower.{task}) or map each task")
        outputs = {t: outputs.replace("{task}", t) for t in task_names}
    if problems:
        raise BlueprintError.many(problems)
    return bp.model_copy(update={"features": features, "tasks": tasks, "groups": groups, "outputs": outputs})


def _features(bp, spec, err):
    if isinstance(bp.features, FeaturesFromData):
        fd = bp.features
        for key, values in (("dims", fd.dims), ("exclude", fd.exclude)):
            for name in values:
                if name not in spec.features:
                    err(("features", key, name) if key == "dims" else ("features", key),
                        f"'{name}' is not a feature of dataset '{spec.name}'",
                        did_you_mean(name, spec.features, what="features"), at_key=key == "dims")
        cats = [CategoricalFeature(name=n, kind="categorical", dim=fd.dims.get(n, fd.dim))
                for n in spec.categorical if n not in fd.exclude]
        nums = [NumericFeature(name=n, kind="numeric") for n in spec.numeric if n not in fd.exclude]
        return cats + nums
    if spec is not None:
        for i, f in enumerate(bp.features):
            if f.name not in spec.features:
                err(("features", i, "name"), f"'{f.name}' is not a feature of dataset '{spec.name}'",
                    did_you_mean(f.name, spec.features, what="features"))
            elif f.kind == "numeric" and f.name in spec.categorical:
                err(("features", i, "kind"), f"'{f.name}' is categorical in dataset '{spec.name}'",
                    "declare it kind: categorical")
    return list(bp.features)


def _tasks(bp, spec, err):
    if bp.tasks == FROM_DATA:
        return [Task(name=t, label=col) for t, col in spec.labels.items()]
    if spec is not None:
        columns = list(spec.labels.values())
        for i, t in enumerate(bp.tasks):
            try:
                used = t.columns()
            except BlueprintError:
                continue  # a malformed expression; the cross-checks report it with its column
            for name in used:
                if name not in columns:
                    field = "where" if t.where and name not in _label_names(t) else "label" if t.label else "name"
                    err(("tasks", i, field), f"label column '{name}' is not a label of dataset '{spec.name}'",
                        did_you_mean(name, columns, what="label columns"))
    return list(bp.tasks)


def _label_names(task):
    from .expressions import parse_label

    return parse_label(task.label_text).names()


def _expand(members, names):
    out = []
    for m in members:
        for name in names if m == "*" else [m]:
            if name not in out:
                out.append(name)
    return out
