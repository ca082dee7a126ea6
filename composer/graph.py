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
    unused: list[str] = field(default_factory=list)  # nodes no output depends on (not in the model)

    def shared_nodes(self, tasks) -> list[str]:
        """Nodes every given task's output depends on (in topological order): the shared part."""
        sets = [nx.ancestors(self.graph, self.outputs[t]) | {self.outputs[t]} for t in tasks]
        common = set.intersection(*sets) if sets else set()
        return [n for n in self.order if n in common]

    def last_shared_layer(self, tasks) -> str | None:
        """GradNorm's default W: the last node with weights every given task depends on that is
        not one task's own (see ``shared_layer_choice``)."""
        return self.shared_layer_choice(tasks)[0]

    def shared_layer_choice(self, tasks) -> tuple[str | None, str]:
        """GradNorm's default W and why. Through a chain a task depends on another task's head
        (ESMM's CTCVR reads the CTR tower), so a head (a logit or probability) and a copy or
        branch made for one task are skipped: their gradient is one task's, not shared."""
        with_weights = [n for n in self.shared_nodes(tasks) if self.nodes[n].params]
        own = [n for n in with_weights if self.owned_by_one_task(n)]
        shared = [n for n in with_weights if n not in own]
        names = ", ".join(tasks)
        if not shared and own:
            return None, (f"every block with weights that every task with a loss ({names}) depends "
                          f"on is one task's own ({', '.join(own)})")
        if not shared:
            return None, f"every task with a loss ({names}) shares no block with weights, only the embeddings"
        why = f"the last block with weights that every task with a loss ({names}) depends on"
        later = [n for n in own if self.order.index(n) > self.order.index(shared[-1])]
        if later:
            shown = ", ".join(later[:4]) + (", ..." if len(later) > 4 else "")
            why += f"; after it come one task's own blocks ({shown}), not shared"
        return shared[-1], why

    def owned_by_one_task(self, nid: str) -> bool:
        node = self.nodes[nid]
        return node.task is not None or (node.out is not None and node.out.kind in ("logit", "prob"))

    @property
    def block_params(self) -> int | None:
        """Parameters of the blocks the model holds: Keras leaves out a layer no output reads."""
        counts = [n.params for nid, n in self.nodes.items() if nid not in self.unused]
        return None if any(c is None for c in counts) else sum(counts)

    @property
    def total_params(self) -> int | None:
        blocks, embeddings = self.block_params, self.layout.embedding_params()
        return None if blocks is None or embeddings is None else blocks + embeddings


def build_graph(bp, doc: Document | None = None, vocab_sizes: dict[str, int] | None = None) -> BlockGraph:
    return _Builder(bp, doc, FeatureLayout.from_blueprint(bp, vocab_sizes)).run()


class _Builder:
    def __init__(self, bp, doc, layout):
        self.bp, self.doc, self.layout = bp, doc, layout
        self.nodes: dict[str, Node] = {}
        self.aliases: dict[str, str] = {}
        self.stamped: dict[str, list[str]] = {}
        self.ports: dict[str, list[str]] = {}
        self.subsets: dict[str, list[str]] = {}  # block -> its `tasks`, where it has some
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
        self._check_shared_layer(graph)
        self._raise()
        self._warn_unused(graph)
        self._warn_one_task(graph)
        return graph

    def _raise(self):
        if self.problems:
            raise BlueprintError.many(self.problems)

    # -- stamping and expansion ------------------------------------------------------------
    def _add(self, name: str, block: Block, source: str | None = None, task: str | None = None):
        source = source or name
        if block.for_each and source == name:
            groups = (block.task_names(Context(self.bp, self.layout)) if block.for_each == "task"
                      else self._scenario_names())
            if block.tasks is not None:
                self.subsets[name] = groups
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
            if block.tasks is not None:
                self.subsets[nid] = block.task_names(ctx)
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
            stamp = self._stamp_ref(ref, path, consumer)
            self.problems.append(self._error(path, f"'{ref}' has several outputs{where}", (
                f"reference a port: {choices}, or '{stamp}' (each copy of this block reads its own)"
                if stamp else f"reference a port: {choices} (or '{ref}.{{task}}' in a block stamped per task)")))
        elif ref.rpartition(".")[0] in self.subsets and ref.rpartition(".")[2] in self.bp.task_names:
            self.problems.append(self._outside_subset(ref, path))
        else:
            base = ref.split(".")[0]
            if base in self.ports or base in self.stamped:
                valid = [f"{base}.{p}" for p in self.ports.get(base, [])] + self.stamped.get(base, [])
                stamp = self._stamp_ref(base, path, consumer)
                if stamp:  # in words of the stamped block, so that its copies give one message
                    ref, valid = self._written(path, consumer), valid + [stamp]
                self.problems.append(self._error(path, f"'{base}' has no port '{ref[len(base) + 1:]}'{where}",
                                                 did_you_mean(ref, valid, what="ports")))
            else:
                visible = [n for n in [*self.nodes, *self.aliases] if "/" not in n]
                self.problems.append(self._error(path, f"unknown reference '{ref}'{where}",
                                                 did_you_mean(ref, visible, what="blocks")))
        return None

    def _written(self, path, consumer: Node | None) -> str | None:
        """The reference as a stamped block writes it, before '{task}' is replaced: the same
        text for every copy. None outside a stamped block."""
        block = self.bp.blocks.get(consumer.source) if consumer is not None else None
        if block is None or not block.for_each or path[:2] != ("blocks", consumer.source):
            return None
        value = getattr(block, path[2], None)
        for part in path[3:]:
            value = value[part] if isinstance(value, (list, dict)) else None
        return value if isinstance(value, str) else None

    def _stamp_ref(self, base: str, path, consumer: Node | None) -> str | None:
        """'moe.{task}' where a block stamped per task reads ``base``, which has one port per task."""
        block = self.bp.blocks.get(consumer.source) if consumer is not None else None
        if block is None or not block.for_each or self._written(path, consumer) is None:
            return None
        members = [copy.rpartition(".")[2] for copy in self.stamped.get(consumer.source, [])]
        valid = {f"{base}.{p}" for p in self.ports.get(base, [])} | set(self.stamped.get(base, []))
        if members and all(f"{base}.{m}" in valid for m in members):
            return f"{base}.{{{block.for_each}}}"
        return None

    def _outside_subset(self, ref, path):
        base, _, task = ref.rpartition(".")
        subset = self.subsets[base]
        source = base.split("/")[0]
        what = "copy" if base in self.stamped else "port"
        reader = self.bp.blocks.get(path[1]) if path[0] == "blocks" else None
        if reader is not None and reader.for_each == "task":
            other = f"or give blocks.{path[1]} tasks: [{', '.join(subset)}] too"
        else:
            other = "or read one of: " + ", ".join(f"{base}.{t}" for t in subset)
        return self._error(path, f"'{base}' has no {what} '{task}': blocks.{source}.tasks is "
                           f"[{', '.join(subset)}]", f"add {task} to blocks.{source}.tasks, {other}")

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

    def _check_shared_layer(self, graph):
        """GradNorm's W (MGDA-UB's shared representation) names a block with weights every task
        with a loss depends on."""
        loss = self.bp.loss
        if loss.fusion not in ("gradnorm", "mgda") or self.problems:
            return
        tasks = [t.name for t in self.bp.tasks if t.loss]
        name = loss.shared_layer
        if name is None:
            if graph.last_shared_layer(tasks) is None:
                _, why = graph.shared_layer_choice(tasks)
                own = [n for n in graph.shared_nodes(tasks) if graph.nodes[n].params]
                self.problems.append(self._error(
                    ("loss", "fusion"), f"{loss.fusion} needs a shared layer W, but {why}",
                    ("set loss.shared_layer to one of them to use it anyway, or " if own else "")
                    + "use fusion: fixed or uncertainty"))
            return
        weighted = [n for n in graph.order if graph.nodes[n].params != 0]
        if name not in weighted:
            what = f"'{name}' has no weights" if name in graph.nodes else f"unknown block '{name}'"
            self.problems.append(self._error(("loss", "shared_layer"), what,
                                             did_you_mean(name, weighted, what="blocks with weights")))
            return
        missing = [t for t in tasks if name not in graph.shared_nodes([t])]
        if missing:
            default = graph.last_shared_layer(tasks)
            self.problems.append(self._error(
                ("loss", "shared_layer"), f"'{name}' is not shared: {', '.join(missing)} "
                f"{'does' if len(missing) == 1 else 'do'} not depend on it",
                f"{'GradNorm' if loss.fusion == 'gradnorm' else 'MGDA-UB'} compares every task's gradient on W"
                + (f"; the default is '{default}' (remove shared_layer)" if default else "")))

    def _warn_one_task(self, graph):
        """Gates per task over a single task: valid, but nothing is shared between tasks, which is
        what these blocks are for (a dataset with one label, as synthetic-msl, bound with
        ``tasks: from_data``)."""
        if len(self.bp.task_names) != 1:
            return
        task = self.bp.task_names[0]
        from_data = self.doc is not None and isinstance(self.doc.data, dict) and self.doc.data.get("tasks") == "from_data"
        why = (f"tasks: from_data and the bound dataset has one label, '{task}'" if from_data
               else f"the blueprint has one task, '{task}'")
        same = {"mmoe": "its one gate has no other task to share the experts with: the same model as an omoe",
                "cgc": "its gate has no other task to share the shared experts with: one mixture of "
                       "shared and task experts",
                "ple": "its gates have no other task to share the shared experts with: stacked mixtures "
                       "for one task",
                "gate": "one gate, no other task to share its experts with"}
        for name, block in self.bp.blocks.items():
            if block.type not in same or (block.type == "gate" and block.for_each != "task"):
                continue
            loc = self.doc.location(("blocks", name), at_key=True) if self.doc else ""
            graph.warnings.append(f"{loc}: blocks.{name}: {block.type} over one task ({why}): {same[block.type]}; "
                                  "bind data with two labels or more for a multi-task model "
                                  "(`composer datasets` lists each dataset's tasks)")

    def _warn_unused(self, graph):
        used = set()
        for nid in graph.outputs.values():
            used |= nx.ancestors(graph.graph, nid) | {nid}
        graph.unused = [n for n in graph.order if n not in used]
        sources = {}
        for nid in graph.unused:
            sources.setdefault(self.nodes[nid].source, []).append(nid)
        for source, unused in sources.items():
            loc = self.doc.location(("blocks", source), at_key=True) if self.doc else ""
            if all(n.source != source or n.id in unused for n in self.nodes.values()):
                graph.warnings.append(f"{loc}: blocks.{source}: not used by any output")
                continue
            # used, but some per-task branches feed no output (an ESMM chain's task on a PLE)
            params = sum(self.nodes[n].params or 0 for n in unused)
            copies = self.stamped.get(source) or [f"{source}.{p}" for p in self.ports.get(source, [])]
            idle = [c for c in copies if self._target(c) not in used]
            tasks = [c.rpartition(".")[2] for c in copies if c not in idle]
            tasks = [t for t in tasks if t in self.bp.task_names]
            what = idle or unused
            verb = "feeds no output, so its" if len(what) == 1 else "feed no output, so their"
            fix = f"; give it tasks: [{', '.join(tasks)}]" if idle and tasks else ""
            graph.warnings.append(f"{loc}: blocks.{source}: {', '.join(what)} {verb} {params:,} "
                                  f"parameters are left out of the model{fix}")

    def _target(self, ref: str) -> str:
        while ref in self.aliases:
            ref = self.aliases[ref]
        return ref


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
