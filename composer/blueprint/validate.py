"""From a YAML file to a checked Blueprint, with every mistake located in the file."""
from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

from .errors import BlueprintError, did_you_mean
from .loader import Document, load_file, load_text, path_text
from .schema import blueprint_model


def load_blueprint(file: str, data: str | None = None, sets=None):
    """Load, schema-check, bind to its dataset and cross-check a blueprint file.

    ``data`` (a dataset name or data YAML path) overrides the blueprint's ``data:``; ``sets``
    (``KEY=VALUE`` texts, ``--set``) override any setting before the checks.
    Returns (Blueprint, Document); the Blueprint's features, tasks and outputs are concrete.
    """
    from .overrides import apply_overrides

    return check_document(apply_overrides(load_file(file), sets, blueprint_model()), data)


def load_blueprint_text(text: str, file: str = "<string>", data: str | None = None):
    return check_document(load_text(text, file), data)


def check_document(doc: Document, data: str | None = None):
    model = blueprint_model()
    if not isinstance(doc.data, dict):
        got = type(doc.data).__name__
        raise BlueprintError(f"a blueprint must be a mapping at the top level, got a {_kind(got)}",
                             location=doc.location(()),
                             hint="start with 'name:', 'features:', 'tasks:', 'blocks:', 'outputs:'")
    try:
        bp = model.model_validate(doc.data)
    except ValidationError as exc:
        raise BlueprintError.many(_drop_misspelled_missing(exc.errors(), doc, model)) from None
    bp = _bind(bp, doc, data)
    problems = list(_cross_check(bp, doc))
    if problems:
        raise BlueprintError.many(problems)
    return bp, doc


def _bind(bp, doc, data):
    from .binding import bind, needs_data, resolve_data_name

    name = resolve_data_name(bp, doc, data)
    spec = None
    # a data YAML is described from the YAML alone, so the blueprint's own one binds like --data:
    # explicit features are checked against it (a list declared categorical, an outcome column)
    own_yaml = bool(name) and str(name).lower().endswith((".yaml", ".yml"))
    if name and (needs_data(bp) or data or own_yaml):
        from ..data.registry import describe

        try:
            spec = describe(name)
        except BlueprintError as exc:
            if data is None and exc.location is None:  # the blueprint's own data: line is wrong
                exc.location, exc.key = doc.location(("data",)), "data"
            raise
    return bind(bp, doc, spec)


def _drop_misspelled_missing(errors, doc, model):
    """'unknown key blokcs' already says what 'missing blocks' would: report it once."""
    import difflib

    extras = {}
    for err in errors:
        if err["type"] == "extra_forbidden":
            path = _data_path(err["loc"], doc.data)
            extras.setdefault(path[:-1], []).append(str(path[-1]))
    out = []
    for err in errors:
        if err["type"] == "missing":
            path = _data_path(err["loc"], doc.data)
            if difflib.get_close_matches(str(path[-1]), extras.get(path[:-1], []), n=1, cutoff=0.6):
                continue
        out.append(_located(err, doc, model))
    return out


def _kind(pyname: str) -> str:
    return {"list": "list", "str": "string", "int": "number", "float": "number",
            "bool": "boolean", "NoneType": "null"}.get(pyname, pyname)


# -- pydantic errors -> located messages ------------------------------------------------------
def _data_path(loc: tuple, data) -> tuple:
    """pydantic puts discriminator tags (and function names) into ``loc``; drop what is not
    a real key or index of the document."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and part in (node.get("type"), node.get("kind"), node.get("fusion")):
            continue  # a discriminator tag, not a key
        elif part in _FORM_TAGS and not (isinstance(node, dict) and part in node):
            continue  # the shape tag of a field with several forms (schema._forms)
        else:
            path.append(part)
            node = None
    return tuple(path)


_FORM_TAGS = ("list", "mapping", "text")


def _model_at(model: type[BaseModel], path: tuple, data):
    """The pydantic model that owns the keys of the mapping at ``path``, if one does."""
    ann, node = model, data
    for part in path:
        ann = _unwrap(ann, node)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(part)
            if field is None:
                return None
            ann = field.annotation
        else:
            origin = typing.get_origin(ann)
            args = typing.get_args(ann)
            if origin is dict:
                ann = args[1]
            elif origin is list:
                ann = args[0]
            else:
                return None
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    ann = _unwrap(ann, node)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _unwrap(ann, node):
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            members = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = _pick_member(members, node)
            if ann is None:
                return None
        else:
            return ann


def _pick_member(members, node):
    members = [typing.get_args(m)[0] if typing.get_origin(m) is typing.Annotated else m for m in members]
    if len(members) == 1:
        return members[0]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if isinstance(node, dict) and len(models) == 1:
        return models[0]  # one mapping form among several shapes (schema._forms)
    if isinstance(node, dict):
        for m in members:
            if isinstance(m, type) and issubclass(m, BaseModel):
                for tag in ("type", "kind", "fusion"):
                    f = m.model_fields.get(tag)
                    if f is not None and typing.get_args(f.annotation) and node.get(tag) in typing.get_args(f.annotation):
                        return m
    return None


_MESSAGES = {
    "missing": "missing required key",
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer, not a fraction",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _located(err: dict, doc: Document, model) -> BlueprintError:
    path = _data_path(err["loc"], doc.data)
    etype, ctx = err["type"], err.get("ctx", {})
    got = err.get("input")
    key = path_text(path)
    if etype == "extra_forbidden":
        owner = _model_at(model, path[:-1], doc.data)
        allowed = owner.model_fields.keys() if owner else []
        return BlueprintError(f"unknown key '{path[-1]}'", location=doc.location(path, at_key=True),
                              key=path_text(path[:-1]) if path[:-1] else None,
                              hint=did_you_mean(path[-1], allowed, what="valid keys"))
    if etype == "union_tag_invalid" and ctx.get("discriminator", "").endswith("()"):
        forms = [t.strip().strip("'") for t in ctx.get("expected_tags", "").split(",")]
        words = {"list": "a list", "mapping": "a mapping", "text": "a string"}
        return BlueprintError(f"expected {' or '.join(words[f] for f in forms)}, got {_shown(got)}",
                              location=doc.location(path), key=key)
    if etype == "too_short":
        return BlueprintError(f"needs at least {ctx.get('min_length')} item(s)", location=doc.location(path), key=key)
    if etype == "union_tag_invalid":
        tag = ctx.get("discriminator", "").strip("'")
        valid = [t.strip().strip("'") for t in ctx.get("expected_tags", "").split(",")]
        return BlueprintError(f"unknown {tag} '{ctx.get('tag')}'", location=doc.location(path + (tag,)),
                              key=path_text(path + (tag,)), hint=did_you_mean(ctx.get("tag"), valid, what=f"valid {tag}s"))
    if etype == "union_tag_not_found":
        tag = ctx.get("discriminator", "").strip("'")
        owner_valid = _tags_for(tag)
        return BlueprintError(f"missing '{tag}'", location=doc.location(path), key=key,
                              hint=f"add '{tag}:' with one of: {', '.join(owner_valid)}")
    if etype == "missing":
        owner = _model_at(model, path[:-1], doc.data)
        desc = owner.model_fields[path[-1]].description if owner and path[-1] in owner.model_fields else None
        return BlueprintError(f"missing required key '{path[-1]}'", location=doc.location(path[:-1]),
                              key=path_text(path[:-1]) if path[:-1] else None,
                              hint=f"'{path[-1]}': {desc}" if desc else None)
    if etype == "literal_error":
        expected = ctx.get("expected", "")
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",")]
        return BlueprintError(f"'{got}' is not allowed", location=doc.location(path), key=key,
                              hint=did_you_mean(got, choices, what="valid values"))
    if etype == "string_pattern_mismatch":
        return BlueprintError(f"'{got}' is not a valid name", location=doc.location(path), key=key,
                              hint="names start with a letter or '_' and hold only letters, digits, '_'")
    message = _MESSAGES.get(etype)
    if message is None:
        message = err["msg"][0].lower() + err["msg"][1:]
        message = message.replace("input should be", "must be").replace("value should", "must")
    shown = _shown(got)
    if shown is not None and etype not in ("missing",):
        message += f", got {shown}"
    return BlueprintError(message, location=doc.location(path), key=key)


def _shown(value):
    if isinstance(value, (dict, list)):
        return f"a {_kind(type(value).__name__)}" if isinstance(value, list) else "a mapping"
    if isinstance(value, str):
        return f"'{value}'"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _tags_for(tag: str) -> list[str]:
    from ..blocks import all_blocks

    if tag == "type":
        return sorted(all_blocks())
    if tag == "kind":
        return ["categorical", "numeric"]
    return ["fixed"]


# -- cross-checks the schema cannot express ---------------------------------------------------
def _cross_check(bp, doc: Document):
    def err(path, message, hint=None, at_key=False):
        return BlueprintError(message, location=doc.location(path, at_key=at_key),
                              key=path_text(path), hint=hint)

    yield from _duplicates([f.name for f in bp.features], "features", "feature", err)
    yield from _duplicates([t.name for t in bp.tasks], "tasks", "task", err)
    features = [f.name for f in bp.features]
    yield from _check_features(list(bp.features), err)
    for gname, members in bp.groups.items():
        written = (doc.data.get("groups") or {}).get(gname) if isinstance(doc.data, dict) else None
        for member in members:
            if member not in features:
                # the index as written: '*' has expanded into many members before this check
                i = written.index(member) if isinstance(written, list) and member in written else None
                yield err(("groups", gname) + ((i,) if i is not None else ()), f"unknown feature '{member}'",
                          did_you_mean(member, features, what="features"))
        if not members:
            yield err(("groups", gname), "a group needs at least one feature")
    for i, task in enumerate(bp.tasks):
        yield from _check_task(task, i, features, doc, err)
    if not any(t.loss for t in bp.tasks):
        yield err(("tasks",), "no task has a loss", "set loss: true on at least one task")
    tasks = bp.task_names
    yield from _check_risks(bp, err)
    imputations = [t.risk.imputation for t in bp.tasks if t.risk and t.risk.imputation]
    for name in bp.outputs:
        if name not in tasks and name not in imputations:
            yield err(("outputs", name), f"'{name}' is not a task", did_you_mean(name, tasks, what="tasks"),
                      at_key=True)
    for t in tasks:
        if t not in bp.outputs:
            yield err(("outputs",), f"task '{t}' has no output", f"add '{t}: <block reference>'")
    if bp.scenarios is not None:
        f = bp.feature(bp.scenarios.feature)
        if f is None:
            yield err(("scenarios", "feature"), f"unknown feature '{bp.scenarios.feature}'",
                      did_you_mean(bp.scenarios.feature, features, what="features"))
        elif f.kind != "categorical":
            yield err(("scenarios", "feature"), f"scenario feature '{f.name}' must be categorical")
    for field in ("weights", "lower_bounds"):
        for t in getattr(bp.loss, field, {}):
            if t not in tasks:
                yield err(("loss", field, t), f"'{t}' is not a task", did_you_mean(t, tasks, what="tasks"),
                          at_key=True)
    if bp.loss.fusion == "metabalance":
        loss_tasks = [t.name for t in bp.tasks if t.loss]
        if bp.loss.main not in loss_tasks:
            yield err(("loss", "main"), f"'{bp.loss.main}' is not a task with a loss",
                      did_you_mean(bp.loss.main, loss_tasks, what="tasks with a loss"))
    if bp.loss.fusion == "pareto":
        loss_tasks = [t.name for t in bp.tasks if t.loss]
        total = sum(bp.loss.lower_bounds.get(t, bp.loss.default_lower_bound) for t in loss_tasks)
        if total >= 1:
            yield err(("loss",), f"the lower bounds of the {len(loss_tasks)} trained tasks sum to {total:g}",
                      "PE-LTR needs sum of lower bounds < 1 (weights sum to 1)")
    monitors = ["auc", "loss", *(f"auc_{t}" for t in tasks)]
    if bp.training.monitor not in monitors:
        yield err(("training", "monitor"), f"'{bp.training.monitor}' is not a metric",
                  did_you_mean(bp.training.monitor, monitors, what="metrics"))
    for name, block in bp.blocks.items():
        if (name in tasks or name in imputations) and bp.outputs.get(name) != name:
            # the model's outputs are Keras layers named after the tasks; a block of that name
            # would be a second layer with the same name
            what = "task" if name in tasks else "model output"
            yield err(("blocks", name), f"block '{name}' has the name of a {what}", f"rename the block "
                      f"(e.g. '{name}_block'): the model's output '{name}' is named after the {what}",
                      at_key=True)
        group = getattr(block, "group", None)
        if block.type == "embed" and group not in bp.groups:
            yield err(("blocks", name, "group"), f"unknown group '{group}'",
                      did_you_mean(group, bp.groups, what="groups"))
        if block.for_each == "scenario" and bp.scenarios is None:
            yield err(("blocks", name, "for_each"), "for_each: scenario needs a 'scenarios:' section")
        if block.composite and block.for_each:
            yield err(("blocks", name, "for_each"), f"'{block.type}' is composite and stamps per task itself",
                      "remove for_each")
        if block.tasks is not None:
            yield from _check_block_tasks(name, block, tasks, err)


def _check_block_tasks(name, block, tasks, err):
    """``tasks`` names the blueprint's tasks, once each, on a block that stamps or expands per task."""
    if not (block.for_each == "task" or (block.composite and block.takes_tasks)):
        what = (f"'{block.type}' does not take a task subset" if block.composite
                else "tasks is for a block with for_each: task or a composite with per-task ports")
        yield err(("blocks", name, "tasks"), what, "remove tasks" if block.composite or block.for_each
                  else "add for_each: task, or remove tasks", at_key=True)
        return
    seen = set()
    for i, task in enumerate(block.tasks):
        if task not in tasks:
            yield err(("blocks", name, "tasks", i), f"'{task}' is not a task",
                      did_you_mean(task, tasks, what="tasks"))
        elif task in seen:
            yield err(("blocks", name, "tasks", i), f"task '{task}' is listed twice")
        seen.add(task)


def expression_position(doc: Document, path: tuple) -> tuple[str, int | None, int | None]:
    """(file, line, column of the expression's first character) for a string value; a quoted
    YAML scalar starts one column after its quote."""
    if doc is None:
        return "<blueprint>", None, None
    loc = doc.location(path)
    col = loc.column
    if loc.line is None:  # a --set value: no place in the file
        return loc.file, None, None
    try:
        with open(doc.file, encoding="utf-8") as fh:
            line_text = fh.read().splitlines()[loc.line - 1]
        if col and line_text[col - 1:col] in ("'", '"'):
            col += 1
    except (OSError, IndexError):
        pass
    return loc.file, loc.line, col


def _check_task(task, i, features, doc, err):
    from .expressions import ExpressionError, parse_label

    for field in ("label", "where"):
        text = getattr(task, field)
        if text is None:
            continue
        file, line, col = expression_position(doc, ("tasks", i, field))
        try:
            expr = parse_label(text, file=file, line=line, column=col, key=path_text(("tasks", i, field)))
        except ExpressionError as exc:
            yield exc
            continue
        for name in expr.names():
            if name in features:
                yield err(("tasks", i, field), f"label column '{name}' is also a feature",
                          "a label used as a feature leaks the answer; remove it from features")
    if task.label is None and task.name in features:
        yield err(("tasks", i, "name"), f"label column '{task.name}' is also a feature",
                  "a label used as a feature leaks the answer; remove it from features")


def _check_risks(bp, err):
    """A counterfactual risk (ESCM2) names another task as propensity, has the observed rows as
    its task's ``where``, and (dr only) an imputation output that is not a task."""
    tasks = bp.task_names
    owners = {}
    for i, task in enumerate(bp.tasks):
        risk = task.risk
        if risk is None:
            continue
        at = ("tasks", i, "risk")
        if risk.propensity == task.name:
            yield err(at + ("propensity",), f"task '{task.name}' cannot be its own propensity",
                      "name the task predicting the observation, e.g. the CTR task")
        elif risk.propensity not in tasks:
            yield err(at + ("propensity",), f"'{risk.propensity}' is not a task",
                      did_you_mean(risk.propensity, [t for t in tasks if t != task.name], what="tasks"))
        if not task.loss:
            yield err(("tasks", i, "loss"), f"task '{task.name}' has a risk, which is its loss",
                      "remove loss: false, or the risk")
        if task.where is None:
            yield err(at, f"task '{task.name}' has a risk but no `where`",
                      "the risk reweights the observed rows: add where (e.g. where: click)")
        if risk.type == "dr" and risk.imputation is None:
            yield err(at, "a dr risk needs `imputation`", "name an output predicting the task's error "
                      "(e.g. imputation: cvr_error, with cvr_error: <tower> in outputs)")
        elif risk.type == "ips" and risk.imputation is not None:
            yield err(at + ("imputation",), "an ips risk takes no imputation", "remove imputation, or use type: dr")
        elif risk.imputation is not None:
            if risk.imputation in tasks:
                yield err(at + ("imputation",), f"'{risk.imputation}' is a task",
                          "the imputation is an output of its own: name one in outputs that is not a task")
            elif risk.imputation not in bp.outputs:
                yield err(at + ("imputation",), f"no output '{risk.imputation}'",
                          f"add '{risk.imputation}: <tower>' to outputs")
            elif risk.imputation in owners:
                yield err(at + ("imputation",), f"'{risk.imputation}' is already the imputation of "
                          f"'{owners[risk.imputation]}'", "give each risk its own imputation output")
            owners.setdefault(risk.imputation, task.name)


def _check_features(features, err):
    """Shared tables and aligned sequences name features that exist and agree."""
    by_name = {f.name: f for f in features}
    ids = [f.name for f in features if f.kind != "numeric"]
    for i, f in enumerate(features):
        share = getattr(f, "share", None)
        if share is not None:
            target = by_name.get(share)
            if share == f.name:
                yield err(("features", i, "share"), f"'{f.name}' shares its own table",
                          "name another id feature, or remove share")
            elif target is None or target.kind == "numeric":
                what = "a numeric feature" if target is not None else "not a feature"
                yield err(("features", i, "share"), f"'{share}' is {what}; share needs an id feature "
                          "(categorical, multi or sequence)",
                          did_you_mean(share, [n for n in ids if n != f.name], what="id features"))
            else:
                owner, seen = target, [f.name]  # a list: the cycle is printed in order
                while owner.share is not None and owner.share in by_name and owner.name not in seen:
                    seen.append(owner.name)
                    owner = by_name[owner.share]
                if owner.name in seen:
                    yield err(("features", i, "share"), f"'{f.name}' shares a table in a cycle "
                              f"({' -> '.join([*seen, owner.name])})", "let one feature own the table")
                    continue
                for key in ("vocab_size", "hash_buckets"):
                    if getattr(f, key) is not None:
                        yield err(("features", i, key), f"'{f.name}' shares the table of '{owner.name}', "
                                  f"so its {key} is the owner's", f"remove {key} (set it on '{owner.name}')")
                if "dim" in f.model_fields_set and f.dim != owner.dim:
                    yield err(("features", i, "dim"), f"'{f.name}' shares the table of '{owner.name}' "
                              f"(dim {owner.dim}) but sets dim {f.dim}",
                              f"remove dim: a shared table has one width ({owner.dim})")
        if getattr(f, "hash_buckets", None) is not None and f.vocab_size is not None:
            yield err(("features", i, "vocab_size"), f"'{f.name}' sets both vocab_size and hash_buckets",
                      "hashing sizes the table itself; keep one")
        aligned = getattr(f, "aligned_with", None)
        if aligned is not None:
            target = by_name.get(aligned)
            if target is None or target.kind != "sequence" or aligned == f.name:
                yield err(("features", i, "aligned_with"), f"'{aligned}' is not another sequence feature",
                          did_you_mean(aligned, [g.name for g in features if g.kind == "sequence"
                                                 and g.name != f.name], what="sequences"))
            elif target.max_len != f.max_len:
                yield err(("features", i, "max_len"), f"'{f.name}' is aligned with '{aligned}' "
                          f"(max_len {target.max_len}) but has max_len {f.max_len}",
                          f"aligned sequences share one length: set max_len: {target.max_len}")


def _duplicates(names, section, what, err):
    seen = {}
    for i, name in enumerate(names):
        if name in seen:
            yield err((section, i, "name"), f"duplicate {what} '{name}'",
                      f"first declared as {section}[{seen[name]}]; names must be unique")
        else:
            seen[name] = i
