"""Binding a blueprint to a dataset: ``features: {from_data: ...}``, ``tasks: from_data``,
``'*'`` in groups and an ``outputs`` template become concrete lists, and explicit features and
labels are checked against the dataset's columns. Pure Python: only the dataset's static
description (``DataSpec``) is read, never the data."""
from __future__ import annotations

import os

from .errors import BlueprintError, did_you_mean
from .loader import path_text
from .schema import (FROM_DATA, CategoricalFeature, FeaturesFromData, MultiFeature, NumericFeature, Scenarios,
                     SequenceFeature, Task)


def needs_data(bp) -> bool:
    return isinstance(bp.features, FeaturesFromData) or FROM_DATA in (bp.tasks, bp.scenarios)


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
        what = ("features" if isinstance(bp.features, FeaturesFromData)
                else "tasks" if bp.tasks == FROM_DATA else "scenarios")
        err((what,), "from_data needs a dataset",
            "add 'data: NAME' to the blueprint (e.g. data: synthetic) or pass --data NAME")
        raise BlueprintError.many(problems)
    features = _features(bp, spec, err)
    tasks = _tasks(bp, spec, err)
    scenarios = _scenarios(bp, spec, err)
    names = [f.name for f in features]
    wildcards = {"*": names, "*categorical": [f.name for f in features if f.kind == "categorical"],
                 "*numeric": [f.name for f in features if f.kind == "numeric"],
                 "*multi": [f.name for f in features if f.kind == "multi"],
                 "*sequence": [f.name for f in features if f.kind == "sequence"],
                 "*scenario": [scenarios.feature] if scenarios is not None else []}
    for g, members in bp.groups.items():
        for i, m in enumerate(members):
            if m in wildcards and not wildcards[m]:
                err(("groups", g, i), f"'{m}' matches no feature",
                    "'*scenario' needs a scenarios: section" if m == "*scenario" else
                    f"the features have no {m[1:]} ones")
    groups = {g: _expand(members, wildcards) for g, members in bp.groups.items()}
    outputs = bp.outputs
    if isinstance(outputs, str):
        task_names = [t.name for t in tasks]
        if "{task}" not in outputs and len(task_names) > 1:
            err(("outputs",), f"one output reference '{outputs}' for {len(task_names)} tasks",
                "use '{task}' in it (e.g. tower.{task}) or map each task")
        outputs = {t: outputs.replace("{task}", t) for t in task_names}
    if problems:
        raise BlueprintError.many(problems)
    return bp.model_copy(update={"features": features, "tasks": tasks, "groups": groups, "outputs": outputs,
                                 "scenarios": scenarios})


def _features(bp, spec, err):
    if isinstance(bp.features, FeaturesFromData):
        fd = bp.features
        for key, values in (("dims", fd.dims), ("exclude", fd.exclude), ("hash_buckets", fd.hash_buckets)):
            for name in values:
                if name not in spec.features:
                    err(("features", key, name) if key != "exclude" else ("features", key),
                        f"'{name}' is not a feature of dataset '{spec.name}'",
                        did_you_mean(name, spec.features, what="features"), at_key=key != "exclude")
        return [f for f in _from_data(fd, spec) if f.name not in fd.exclude]
    if spec is not None:
        for i, f in enumerate(bp.features):
            if f.name in spec.outcomes:
                err(("features", i, "name"), f"'{f.name}' is an outcome of dataset '{spec.name}', "
                    f"never a feature: {spec.outcomes[f.name]}",
                    "remove it from the features (it is known only after the impression)")
            elif f.name not in spec.features:
                err(("features", i, "name"), f"'{f.name}' is not a feature of dataset '{spec.name}'",
                    did_you_mean(f.name, spec.features, what="features"))
            elif f.kind == "numeric" and f.name not in spec.numeric:
                kind = spec.lists[f.name].kind if f.name in spec.lists else "categorical"
                err(("features", i, "kind"), f"'{f.name}' is {kind} in dataset '{spec.name}'",
                    f"declare it kind: {kind}")
            elif f.kind != "numeric" and f.name in spec.numeric:
                err(("features", i, "kind"), f"'{f.name}' is numeric in dataset '{spec.name}'",
                    "declare it kind: numeric")
            elif f.kind in ("multi", "sequence") and f.name not in spec.lists:
                err(("features", i, "kind"), f"'{f.name}' holds one value per row in dataset "
                    f"'{spec.name}', not a list", "declare it kind: categorical")
            elif f.kind == "categorical" and f.name in spec.lists:
                kind = spec.lists[f.name].kind
                err(("features", i, "kind"), f"'{f.name}' is a list ({kind}) in dataset '{spec.name}'",
                    f"declare it kind: {kind} (with max_len), to pool it or read it as a sequence")
    return list(bp.features)


def _from_data(fd, spec):
    """The dataset's features as blueprint features: lists with their length, shared table and
    alignment as the dataset declares them."""
    out = []
    for n in spec.categorical:
        out.append(CategoricalFeature(name=n, kind="categorical", dim=fd.dims.get(n, fd.dim),
                                      hash_buckets=fd.hash_buckets.get(n)))
    for n, ls in spec.lists.items():
        cls = SequenceFeature if ls.ordered else MultiFeature
        extra = {"aligned_with": ls.aligned_with} if ls.ordered else {}
        if ls.share is not None and ls.share in spec.features and ls.share not in fd.exclude:
            extra["share"] = ls.share
        else:
            extra.update(dim=fd.dims.get(n, fd.dim), hash_buckets=fd.hash_buckets.get(n))
        out.append(cls(name=n, kind=ls.kind, max_len=ls.max_len, **extra))
    for n in spec.numeric:
        out.append(NumericFeature(name=n, kind="numeric", embed=fd.numeric_embed))
    return out


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


def _scenarios(bp, spec, err):
    """``from_data`` -> the dataset's scenario column and values; a section naming the dataset's
    scenario column without values takes them from the dataset too."""
    sc = bp.scenarios
    if sc is None:
        return None
    multi = "bind a multi-scenario dataset (synthetic-msl, census-msl, adult-msl, ...)"
    if sc == FROM_DATA:
        if spec.scenario is None:
            err(("scenarios",), f"dataset '{spec.name}' has no scenario column",
                f"{multi}, or write scenarios: {{feature: COLUMN, values: [...]}}")
            return None
        if not spec.scenario_values:
            err(("scenarios",), f"dataset '{spec.name}' does not declare the values of its scenario "
                f"column '{spec.scenario}'",
                f"write scenarios: {{feature: {spec.scenario}, values: [...]}} (ids follow their order), or, "
                f"for a data YAML, declare them there: scenario_values: [...] beside scenario: {spec.scenario}")
            return None
        return Scenarios(feature=spec.scenario, values=list(spec.scenario_values))
    if sc.values is not None and sc.count is not None:
        err(("scenarios",), "give either values or count, not both",
            "values: [...] names them in id order; count: N means the values 0..N-1")
    elif sc.values is None and sc.count is None:
        if spec is not None and spec.scenario == sc.feature and spec.scenario_values:
            return sc.model_copy(update={"values": list(spec.scenario_values)})
        err(("scenarios",), "the scenarios need their values or their count",
            "add values: [...] (in id order) or count: N (values 0..N-1)"
            + (f", or declare them in the data YAML: scenario_values: [...] beside scenario: {sc.feature}"
               if spec is not None and spec.scenario == sc.feature else ""))
    elif sc.values is not None and len(set(sc.values)) != len(sc.values):
        dup = next(v for v in sc.values if sc.values.count(v) > 1)
        err(("scenarios", "values"), f"scenario value '{dup}' is listed twice", "list each value once")
    return sc


def _label_names(task):
    from .expressions import parse_label

    return parse_label(task.label_text).names()


def _expand(members, wildcards):
    out = []
    for m in members:
        for name in wildcards.get(m, [m]):
            if name not in out:
                out.append(name)
    return out
