"""Blueprint -> block graph: stamping, composite expansion, references as edges, cycle
reports, topological order and shape inference. Pure Python (networkx); no TensorFlow."""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from .blocks import Block, Out, ShapeError
from .blueprint.errors import BlueprintError, did_you_mean
from .blueprint.loader import Document, path_text
from .layout import FeatureLayout

FEATURES = "features"  # the input stage node: packed inputs and embedding tables


@dataclass
class Node:
    id: str
    block: Block
    source: str  # the blueprint block this node came from (for positions and clusters)
    task: str | None = None
    scenario: str | None = None
    out: Out | None = None
    params: int | None = 0


@dataclass
class Context:
    """What shape rules and composites may read."""

    blueprint: object
    layout: FeatureLayout
    node: str = ""
    source: str = ""  # the blueprint block the node came from
    doc: Document | None = None
    input_outs: dict = field(default_factory=dict)  # field -> Out (or list / dict of Out)

    def expression_position(self, fname: str):
        from .blueprint.validate import expression_position

        return expression_position(self.doc, ("blocks", self.source, fname))

    def scenario_count(self, what: str = "this block") -> int:
        """S, for blocks that route by scenario; a clear error when none are declared."""
        if self.blueprint.scenarios is None:
            raise ShapeError(f"{what} routes by scenario but the blueprint declares no scenarios",
                             hint="add scenarios: from_data (or {feature: COLUMN, values: [...]})")
        return len(self.blueprint.scenarios.ids)

    def kind(self, fname: str, key=None) -> str:
        value = self.input_outs[fname]
        return (value[key] if key is not None else value).kind


@dataclass
class BlockGraph:
    blueprint: object
    doc: Document | None
    layout: FeatureLayout
    graph: nx.DiGraph
    nodes: dict[str, Node]
    aliases: dict[str, str]
    order: list[str]
    outputs: dict[str, str]  # task -> node id
    inputs: dict[str, list] = field(default_factory=dict)  # node id -> [(field, ref node id(s))]
    warnings: list[str] = field(default_factory=list)

    def shared_nodes(self, tasks) -> list[str]:
        """Nodes every given task's output depends on (in topological order): the shared part."""
        sets = [nx.ancestors(self.graph, self.outputs[t]) | {self.outputs[t]} for t in tasks]
        common = set.intersection(*sets) if sets else set()
        return [n for n in self.order if n in common]

    def last_shared_layer(self, tasks) -> str | None:
        """The last shared node holding weights (GradNorm's W)."""
        with_weights = [n for n in self.shared_nodes(tasks) if self.nodes[n].params]
        return with_weights[-1] if with_weights else None

    @property
    def block_params(self) -> int | None:
        counts = [n.params for n in self.nodes.values()]
        return None if any(c is None for c in counts) else sum(counts)

    @property
    def total_params(self) -> int | None:
        counts = [n.params for n in self.nodes.values()] + [self.layout.embedding_params()]
        return None if any(c is None for c in counts) else sum(counts)


def build_graph(bp, doc: Document | None = None, vocab_sizes: dict[str, int] | None = None) -> BlockGraph:
    return _Builder(bp, doc, FeatureLayout.from_blueprint(bp, vocab_sizes)).run()


class _Builder:
    def __init__(self, bp, doc, layout):
        self.bp, self.doc, self.layout = bp, doc, layout
        self.nodes: dict[str, Node] = {}
        self.aliases: dict[str, str] = {}
        self.stamped: dict[str, list[str]] = {}
        self.ports: dict[str, list[str]] = {}
        self.problems: list[BlueprintError] = []

    def _error(self, path, message, hint=None, at_key=False):
        loc = self.doc.location(path, at_key=at_key) if self.doc else None
        return BlueprintError(message, location=loc, key=path_text(path), hint=hint)

    def run(self) -> BlockGraph:
        for name, block in self.bp.blocks.items():
            self._add(name, block)
        self._raise()
        g = nx.DiGraph()
        g.add_node(FEATURES)
        g.add_nodes_from(self.nodes)
        inputs = {}
        for nid, node in self.nodes.items():
            inputs[nid] = self._connect(g, node)
            if node.block.reads_features:
                g.add_edge(FEATURES, nid, path=("blocks", node.source, node.block.feature_field))
        outputs = {}
        for task, ref in self.bp.outputs.items():
            target = self._resolve(ref, ("outputs", task))
            if target:
                outputs[task] = target
                g.add_edge(target, f"output__{task}", path=("outputs", task))
        self._raise()
        self._check_cycles(g)
        rank = {nid: i for i, nid in enumerate([FEATURES, *self.nodes, *(f"output__{t}" for t in outputs)])}
        order = [n for n in nx.lexicographical_topological_sort(g, key=rank.get)
                 if n in self.nodes]
        graph = BlockGraph(self.bp, self.doc, self.layout, g, self.nodes, self.aliases, order,
                           outputs, inputs)
        self._infer(graph)
        self._check_outputs(graph)
        self._raise()
        self._warn_unused(graph)
        return graph

    def _raise(self):
        if self.problems:
            raise BlueprintError.many(self.problems)

    # -- stamping and expansion ------------------------------------------------------------
    def _add(self, name: str, block: Block, source: str | None = None, task: str | None = None):
        source = source or name
        if block.for_each and source == name:
            groups = self.bp.task_names if block.for_each == "task" else self._scenario_names()
            ids = []
            for member in groups:
                copy = _substitute(block, block.for_each, member).model_copy(update={"for_each": None})
                nid = f"{name}.{member}"
                ids.append(nid)
                if block.for_each == "task":
                    self._add_one(nid, copy, source, member)
                else:
                    self._add_one(nid, copy, source, scenario=member)
            self.stamped[name] = ids
            return
        for refs in block.references().values():
            refs = list(refs.values()) if isinstance(refs, dict) else refs if isinstance(refs, list) else [refs]
            for ref in refs:
                if "{task}" in ref or "{scenario}" in ref:
                    self.problems.append(self._error(
                        ("blocks", source, "for_each"), f"reference '{ref}' uses a placeholder "
                        "but the block is not stamped", "add for_each: task (or scenario)"))
                    return
        self._add_one(name, block, source, task)

    def _add_one(self, nid, block, source, task=None, scenario=None):
        if block.composite:
            ctx = Context(self.bp, self.layout, nid, source, self.doc)
            try:
                children, ports = block.expand(nid, ctx)
            except ShapeError as exc:
                self.problems.append(self._error(("blocks", source), exc.message, exc.hint))
                return
            for child_id, child in children.items():
                self._add_one(child_id, child, source, _task_of(child_id, self.bp.task_names) or task,
                              _task_of(child_id, self._scenario_names()) or scenario)
            for port, ref in ports.items():
                self.aliases[f"{nid}.{port}"] = ref
            self.ports[nid] = list(ports)
            return
        self.nodes[nid] = Node(nid, block, source, task, scenario)

    def _scenario_names(self):
        return self.bp.scenarios.names if self.bp.scenarios else []

    # -- references ------------------------------------------------------------------------
    def _connect(self, g, node: Node):
        resolved = []
        for fname, refs in node.block.references().items():
            if isinstance(refs, dict):
                targets = {}
                for key, ref in refs.items():
                    path = ("blocks", node.source, fname, key)
                    target = self._resolve(ref, path, node)
                    if target:
                        g.add_edge(target, node.id, path=path)
                    targets[key] = target
                resolved.append((fname, targets))
                continue
            many = isinstance(refs, list)
            targets = []
            for i, ref in enumerate(refs if many else [refs]):
                path = ("blocks", node.source, fname) + ((i,) if many else ())
                target = self._resolve(ref, path, node)
                if target:
                    g.add_edge(target, node.id, path=path)
                    targets.append(target)
            resolved.append((fname, targets if many else (targets[0] if targets else None)))
        return resolved

    def _resolve(self, ref: str, path, consumer: Node | None = None, seen=()):
        if ref in self.nodes:
            return ref
        if ref in self.aliases and ref not in seen:
            return self._resolve(self.aliases[ref], path, consumer, seen + (ref,))
        where = ""
        if ref in self.stamped:
            choices = ", ".join(self.stamped[ref])
            kind = self.bp.blocks[ref].for_each  # task or scenario
            self.problems.append(self._error(path, f"'{ref}' is stamped per {kind}{where}",
                                             f"reference one copy: {choices}, or '{ref}.{{{kind}}}' in a "
                                             f"block stamped per {kind}"))
        elif ref in self.ports:
            choices = ", ".join(f"{ref}.{p}" for p in self.ports[ref])
            self.problems.append(self._error(path, f"'{ref}' has several outputs{where}",
                                             f"reference a port: {choices} (or '{ref}.{{task}}' in a block stamped per task)"))
        else:
            base = ref.split(".")[0]
            if base in self.ports or base in self.stamped:
                valid = [f"{base}.{p}" for p in self.ports.get(base, [])] + self.stamped.get(base, [])
                self.problems.append(self._error(path, f"'{base}' has no port '{ref[len(base) + 1:]}'{where}",
                                                 did_you_mean(ref, valid, what="ports")))
            else:
                visible = [n for n in [*self.nodes, *self.aliases] if "/" not in n]
                self.problems.append(self._error(path, f"unknown reference '{ref}'{where}",
                                                 did_you_mean(ref, visible, what="blocks")))
        return None

    def _check_cycles(self, g):
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            return
        steps = []
        for src, dst in cycle:
            path = g.edges[src, dst]["path"]
            line = self.doc.location(path).line if self.doc else "?"
            steps.append(f"{src} -> {dst} (line {line})")
        first = g.edges[cycle[0]]["path"]
        raise self._error(first, "blocks form a cycle: " + ", ".join(steps),
                          "a block cannot depend on its own output; break one of these references")

    # -- shapes ----------------------------------------------------------------------------
    def _infer(self, graph: BlockGraph):
        for nid in graph.order:
            node = self.nodes[nid]
            ins = map_inputs(graph.inputs[nid], lambda t: self.nodes[t].out if t else None)
            if any(v is None for v in _leaves(ins)):
                continue  # an upstream block already failed
            ctx = Context(self.bp, self.layout, nid, node.source, self.doc, ins)
            try:
                node.out = node.block.infer(ins, ctx)
                node.params = node.block.count_params(ins, ctx)
            except ShapeError as exc:
                where = f"'{nid}': " if nid != node.source else ""
                path = ("blocks", node.source) + ((exc.field,) if exc.field and nid == node.source else ())
                self.problems.append(self._error(path, where + exc.message, exc.hint))
            except BlueprintError as exc:  # e.g. an expression error, already located
                self.problems.append(exc)

    def _check_outputs(self, graph):
        for task, nid in graph.outputs.items():
            out = self.nodes[nid].out
            if out is not None and (out.shape != (1,) or out.kind not in ("logit", "prob")):
                self.problems.append(self._error(
                    ("outputs", task), f"'{nid}' gives {out} ({out.kind}), not a logit or probability of shape (B, 1)",
                    "point the output at a tower (logit) or a predict block"))

    def _warn_unused(self, graph):
        used = set()
        for nid in graph.outputs.values():
            used |= nx.ancestors(graph.graph, nid) | {nid}
        sources = {}
        for nid, node in self.nodes.items():
            if nid not in used:
                sources.setdefault(node.source, nid)
        for source in sources:
            loc = self.doc.location(("blocks", source), at_key=True) if self.doc else ""
            graph.warnings.append(f"{loc}: blocks.{source}: not used by any output")


def map_inputs(resolved, fn) -> dict:
    """Apply ``fn`` to every resolved node id of a node's inputs, keeping str/list/dict shape."""
    out = {}
    for fname, target in resolved:
        if isinstance(target, dict):
            out[fname] = {k: fn(t) for k, t in target.items()}
        elif isinstance(target, list):
            out[fname] = [fn(t) for t in target]
        else:
            out[fname] = fn(target)
    return out


def _leaves(ins: dict):
    for value in ins.values():
        if isinstance(value, dict):
            yield from value.values()
        elif isinstance(value, list):
            yield from value
        else:
            yield value


def _substitute(block: Block, kind: str, member: str) -> Block:
    mark = "{" + kind + "}"
    update = {}
    for fname in type(block).model_fields:
        value = getattr(block, fname)
        if isinstance(value, str) and mark in value:
            update[fname] = value.replace(mark, member)
        elif isinstance(value, list) and any(isinstance(v, str) and mark in v for v in value):
            update[fname] = [v.replace(mark, member) if isinstance(v, str) else v for v in value]
        elif isinstance(value, dict) and any(isinstance(v, str) and mark in v for v in value.values()):
            update[fname] = {k: v.replace(mark, member) if isinstance(v, str) else v for k, v in value.items()}
    return block.model_copy(update=update)


def _task_of(child_id: str, tasks) -> str | None:
    last = child_id.rsplit("/", 1)[-1]
    suffix = last.rsplit(".", 1)[-1] if "." in last else None
    return suffix if suffix in tasks else None
