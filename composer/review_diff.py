"""What changed between two blueprints, for a review: the blocks, their primitive nodes, the
features, the tasks and the settings added, removed or changed, with parameter counts before and
after. Pure Python over two BlockGraphs (no TensorFlow, no Keras, no Graphviz):
``composer diff`` prints ``ReviewDiff.text()`` and composer/review_diagram.py draws the diff.

Items are matched by id (a block's name, a node's id, a feature's or task's name). Same id and
same kind (a block's type): changed where a value differs, else the same. An id only in the
second blueprint is added, only in the first removed; the same id with another kind is one item
removed and one added (a `ple` block replaced by a `cgc` block of the same name).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

ADDED, REMOVED, CHANGED, SAME = "added", "removed", "changed", "same"
MARKS = {ADDED: "+", REMOVED: "-", CHANGED: "~", SAME: "="}
PARAMS = "params"  # the pseudo-field of a block's or node's parameter count


@dataclass(frozen=True)
class Change:
    """One matched item and how it differs from the first blueprint to the second."""

    id: str
    status: str  # added, removed, changed or same
    kind: str  # a block's type, a feature's kind, or what the item is ('task', 'output', ...)
    fields: tuple[tuple[str, object, object], ...] = ()  # (name, before, after) of what differs
    before: int | None = None  # parameters in the first blueprint (blocks and nodes)
    after: int | None = None  # ... and in the second
    summary: str = ""  # what an added or removed item is, in words

    @property
    def mark(self) -> str:
        return MARKS[self.status]


@dataclass
class ReviewDiff:
    before: object  # BlockGraph of the first blueprint
    after: object  # BlockGraph of the second
    names: tuple[str, str]  # what the text and the diagram call them
    blocks: list[Change] = field(default_factory=list)  # blueprint blocks, as written
    nodes: list[Change] = field(default_factory=list)  # primitive nodes, as drawn
    features: list[Change] = field(default_factory=list)
    tasks: list[Change] = field(default_factory=list)
    settings: list[Change] = field(default_factory=list)  # data, scenarios, groups, outputs, loss, training

    def ids(self, status: str, of: str = "blocks") -> set[str]:
        """Ids of ``of`` (blocks, nodes, features, tasks, settings) with this status."""
        return {c.id for c in getattr(self, of) if c.status == status}

    @property
    def changed_anything(self) -> bool:
        return any(c.status != SAME for c in [*self.blocks, *self.features, *self.tasks, *self.settings])

    def params_line(self) -> str:
        """'params: 16,962 + embeddings -> 19,738 + embeddings (blocks +2,776)', as `composer summary`
        counts them (what Keras builds; embeddings where the vocabularies are known)."""
        a, b = self.before, self.after
        line = f"params: {total_text(a)} -> {total_text(b)}"
        if a.total_params is not None and b.total_params is not None:
            return line + f" ({b.total_params - a.total_params:+,})"
        if a.block_params is not None and b.block_params is not None:
            return line + f" (blocks {b.block_params - a.block_params:+,})"
        return line

    def text(self) -> str:
        out = [f"{self.names[0]} -> {self.names[1]}"]
        for title, changes in (("blocks", self.blocks), ("features", self.features), ("tasks", self.tasks),
                               ("settings", self.settings)):
            shown = [c for c in changes if c.status != SAME]
            if not shown:
                continue
            out.append(f"{title}:")
            out += [f"  {line(c)}" for c in shown]
            same = [c.id for c in changes if c.status == SAME]
            if same and title == "blocks":
                out.append(f"  unchanged: {', '.join(same)}")
        if not self.changed_anything:
            out.append("no differences: the same blocks, features, tasks and settings")
        out.append(self.params_line())
        return "\n".join(out)


def total_text(graph) -> str:
    """The model's parameters as `composer summary`'s total row writes them."""
    if graph.total_params is not None:
        return f"{graph.total_params:,}"
    return f"{graph.block_params:,} + embeddings" if graph.block_params is not None else "?"


def count(n) -> str:
    return "?" if n is None else f"{n:,}"


def show(value) -> str:
    """A value as a blueprint writes it: [64, 32], {ctr: ctr_tower}, true, none."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def field_text(name: str, before, after, arrow: str = "->") -> str:
    """One difference: 'units [64] -> [128, 64]'; a group's members as '+scenario, -price'."""
    said = f"{show(before)} {arrow} {show(after)}"
    if name == "members":
        gone = [m for m in before if m not in after]
        new = [m for m in after if m not in before]
        return ", ".join([*(f"+{m}" for m in new), *(f"-{m}" for m in gone)]) or said
    return said if name in ("value", "ref") else f"{name} {said}"


def params_text(change: Change) -> str:
    delta = (f" ({change.after - change.before:+,})" if change.before is not None and change.after is not None
             else "")
    return f"params {count(change.before)} -> {count(change.after)}{delta}"


def line(change: Change) -> str:
    """'+ moe (mmoe: K=4, units=[64, 32], 17,560 params)' or '~ tower: input bottom.{task} ->
    moe.{task}; params 4,226 -> 2,178 (-2,048)'."""
    if change.status != CHANGED:
        return f"{change.mark} {change.id}" + (f" ({change.summary})" if change.summary else "")
    said = ", ".join(field_text(*f) for f in change.fields)
    if change.before != change.after:
        said = f"{said}; {params_text(change)}" if said else params_text(change)
    return f"~ {change.id}: {said}"


# -- the items of one blueprint: id -> (kind, values compared, what the item is in words) ------
def _plain(value):
    """Pydantic models and tuples as plain dicts and lists, so that values compare and print."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _fields(model: BaseModel, *drop: str) -> dict:
    return {k: v for k, v in model.model_dump(mode="json").items() if k not in drop}


def _params(nodes, unused) -> int | None:
    """What Keras builds of these nodes: a node no output reads is left out (as in the totals)."""
    counts = [n.params for n in nodes if n.id not in unused]
    return None if any(c is None for c in counts) else sum(counts)


def _what(block, params) -> str:
    """'mmoe: K=4, units=[64, 32], 11,808 params'; 'tower per task: ...' for a stamped block."""
    per = f" per {block.for_each}" if block.for_each else ""
    label = block.label()
    return f"{block.type}{per}" + (f": {label}" if label else "") + f", {count(params)} params"


def _block_items(graph) -> dict:
    by_source: dict[str, list] = {}
    for nid in graph.order:
        by_source.setdefault(graph.nodes[nid].source, []).append(graph.nodes[nid])
    items = {}
    for name, block in graph.blueprint.blocks.items():
        nodes = by_source.get(name, [])
        values = _fields(block, "type")
        if block.for_each:  # the copies stamped: the tasks (or scenarios) may differ
            values[f"per {block.for_each}"] = list(dict.fromkeys(n.task or n.scenario for n in nodes))
        if len(nodes) == 1 and nodes[0].id == name:
            values["out"] = str(nodes[0].out)
        values[PARAMS] = _params(nodes, graph.unused)
        items[name] = (block.type, values, _what(block, values[PARAMS]))
    return items


def _node_items(graph) -> dict:
    items = {}
    for nid in graph.order:
        node = graph.nodes[nid]
        # a node's own count, drawn beside "feeds no output" where no output reads it
        values = {**_fields(node.block, "type"), "out": str(node.out), "feeds an output": nid not in graph.unused,
                  PARAMS: node.params}
        items[nid] = (node.block.type, values, _what(node.block, values[PARAMS]))
    return items


def _feature_items(bp) -> dict:
    return {f.name: (f.kind, _fields(f, "name", "kind"), f.kind + (f", dim {f.dim}" if getattr(f, "dim", None) else ""))
            for f in bp.features}


def _task_items(bp) -> dict:
    return {t.name: ("task", _fields(t, "name"), f"label {t.label}" + (f", where {t.where}" if t.where else ""))
            for t in bp.tasks}


def _setting_items(bp) -> dict:
    items = {"data": ("data", {"value": bp.data}, show(bp.data))}
    if bp.scenarios is not None:
        sc = bp.scenarios
        items["scenarios"] = ("scenarios", _fields(sc), f"feature {sc.feature}, {len(sc.ids)} scenarios {show(sc.ids)}")
    for g, members in bp.groups.items():
        items[f"groups.{g}"] = ("group", {"members": _plain(members)}, show(_plain(members)))
    items.update({f"outputs.{t}": ("output", {"ref": ref}, ref) for t, ref in bp.outputs.items()})
    for name in ("loss", "training"):
        values = _fields(getattr(bp, name))
        items[name] = (name, values, ", ".join(f"{k} {show(v)}" for k, v in values.items()))
    return items


# -- matching ------------------------------------------------------------------------------------
def match(before: dict, after: dict) -> list[Change]:
    """Changes of items given as id -> (kind, values, summary): in the first blueprint's order,
    then the ids new in the second."""
    out = []
    for key in [*before, *(k for k in after if k not in before)]:
        if key in before and key in after and before[key][0] == after[key][0]:
            (kind, a, _), (_, b, _) = before[key], after[key]
            fields = tuple((n, a.get(n), b.get(n)) for n in [*a, *(n for n in b if n not in a)]
                           if n != PARAMS and a.get(n) != b.get(n))
            status = CHANGED if fields or a.get(PARAMS) != b.get(PARAMS) else SAME
            out.append(Change(key, status, kind, fields, a.get(PARAMS), b.get(PARAMS)))
            continue
        if key in before:
            kind, a, summary = before[key]
            out.append(Change(key, REMOVED, kind, before=a.get(PARAMS), summary=summary))
        if key in after:
            kind, b, summary = after[key]
            out.append(Change(key, ADDED, kind, after=b.get(PARAMS), summary=summary))
    return out


def diff_graphs(before, after, files: tuple[str, str] | None = None) -> ReviewDiff:
    """The review diff of two validated block graphs (``composer.graph.build_graph``), named by
    their blueprints' names, or by ``files`` where the names are the same."""
    a, b = before.blueprint, after.blueprint
    names = (a.name, b.name) if a.name != b.name else tuple(files or ("before", "after"))
    return ReviewDiff(before, after, names,
                      blocks=match(_block_items(before), _block_items(after)),
                      nodes=match(_node_items(before), _node_items(after)),
                      features=match(_feature_items(a), _feature_items(b)),
                      tasks=match(_task_items(a), _task_items(b)),
                      settings=match(_setting_items(a), _setting_items(b)))
