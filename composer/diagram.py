"""Graphviz DOT from a validated block graph (no TensorFlow, no Keras build needed).

Clusters: the shared part, one per task (and per scenario). A block that is one task's output,
and a head (a logit or probability) read only inside one task's cluster, sit in that task's
cluster: ESMM's chained CTCVR and its towers are tasks' own, not shared. Composite blocks draw
their primitives inside a sub-cluster named after them. Stop-gradient edges are dashed. The
scenario input has an edge, labelled with the scenario count, to every block that routes by it.
A block no output reads is grey and dotted: Keras leaves it out of the model.
"""
from __future__ import annotations

import os
import shutil

import graphviz

from .graph import FEATURES, BlockGraph

SCENARIO = "scenario__input"  # the node of the batch's scenario ids
_COLORS = {"shared": "#eef3fb", "task": "#fdf2e6", "scenario": "#eaf7ee"}
SCENARIO_COLOR = "#2e7d32"
# a node or edge no output reads: drawn, but visibly not part of the model
DEAD_NODE = {"style": "rounded,filled,dotted", "fillcolor": "#f2f2f2", "color": "#9e9e9e",
             "fontcolor": "#8a8a8a"}
DEAD_EDGE = {"style": "dotted", "color": "#9e9e9e", "fontcolor": "#8a8a8a"}
DEAD_NOTE = "<i>feeds no output: not in the model</i>"


def fmt_count(n) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}k" if n >= 1e4 else str(n))


def _total(graph) -> str:
    if graph.total_params is not None:
        return f"{fmt_count(graph.total_params)} params"
    return f"{fmt_count(graph.block_params)} params + embeddings"


def _embeddings(layout) -> str:
    n = layout.embedding_params()
    return "embedding rows fitted from the data" if n is None else f"embeddings {fmt_count(n)} params"


def type_line(block) -> str:
    """'tower: units=[32] -> logit': the block's type and key parameters, escaped for a label."""
    return f"{block.type}" + (f": {esc(block.label())}" if block.label() else "")


def node_lines(node, dead: bool = False) -> list[str]:
    """The lines of a node's label (HTML-like, escaped)."""
    lines = [f"<b>{esc(node.id)}</b>", type_line(node.block), f"out {node.out} · {fmt_count(node.params)} params"]
    return lines + [DEAD_NOTE] if dead else lines


def _node_label(node, dead: bool = False) -> str:
    return "<" + "<br/>".join(node_lines(node, dead)) + ">"


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parts(graph: BlockGraph) -> dict[str, tuple[str, str]]:
    """Node id -> the cluster it is drawn in: ('task', t), ('scenario', s) or ('shared', '').

    Stamped copies and composite branches know their task or scenario. A block that is exactly
    one task's output is that task's; a head (logit or probability) whose readers all sit in one
    task's cluster is that task's too (a tower only a chain reads). Readers come first, so the
    walk runs against the topological order."""
    outputs_of: dict[str, list[str]] = {}
    for task, nid in graph.outputs.items():
        outputs_of.setdefault(nid, []).append(task)
    out: dict[str, tuple[str, str]] = {}
    for nid in reversed(graph.order):
        node = graph.nodes[nid]
        part = ("shared", "")
        if node.task:
            part = ("task", node.task)
        elif node.scenario:
            part = ("scenario", node.scenario)
        elif nid in outputs_of:
            if len(outputs_of[nid]) == 1:
                part = ("task", outputs_of[nid][0])
        elif node.out is not None and node.out.kind in ("logit", "prob"):
            readers = {out[r] for r in graph.graph.successors(nid) if r in out}
            if len(readers) == 1 and next(iter(readers))[0] == "task":
                part = readers.pop()
        out[nid] = part
    return out


def routing_nodes(graph: BlockGraph) -> list[str]:
    """Nodes that route by each sample's scenario id (they read the scenario input)."""
    if graph.blueprint.scenarios is None:
        return []
    return [nid for nid in graph.order if graph.nodes[nid].block.routes_by_scenario]


def scenario_count(graph: BlockGraph) -> int:
    return len(graph.blueprint.scenarios.ids) if graph.blueprint.scenarios else 0


def scenario_label(graph: BlockGraph) -> str:
    sc = graph.blueprint.scenarios
    ids = sc.ids if len(sc.ids) <= 6 else [*sc.ids[:4], "...", sc.ids[-1]]
    return (f"<<b>scenario</b><br/>column {esc(sc.feature)}: {len(sc.ids)} scenarios<br/>"
            f"{esc(', '.join(ids))}>")


def scenario_edge(graph: BlockGraph) -> dict:
    n = scenario_count(graph)
    return {"label": f"{n} scenarios", "color": SCENARIO_COLOR, "fontcolor": SCENARIO_COLOR, "penwidth": "1.5"}


def features_label(graph: BlockGraph, extra: list[str] = ()) -> str:
    lay = graph.layout
    cats = sum(len(v) for v in lay.categorical_by_dim.values())
    dims = ", ".join(f"{len(v)}×d{d}" for d, v in lay.categorical_by_dim.items())
    lines = [f"{cats} categorical ({dims}) · {len(lay.numeric)} numeric"]
    for name, lf in lay.lists.items():
        kind = "sequence" if lf.ordered else "multi"
        table = f" · table of {lf.table}" if lf.table != name else ""
        lines.append(f"{esc(name)}: {kind} (B, {lf.max_len}) → (B, {lf.max_len}, {lf.dim}){esc(table)}")
    shared = [(n, o) for n, o in lay.shared().items() if n not in lay.lists]
    if shared:
        lines.append("shared tables: " + ", ".join(f"{esc(n)} → {esc(o)}" for n, o in shared))
    if lay.numeric_embed:
        lines.append("numeric embeddings: " + ", ".join(f"{esc(n)} ({e.kind}, d{e.dim})"
                                                       for n, e in lay.numeric_embed.items()))
    return f"<<b>features</b><br/>{'<br/>'.join([*lines, _embeddings(lay), *extra])}>"


def output_label(task: str) -> str:
    return f"<<b>{esc(task)}</b><br/>p(1)>"


def edge_attrs(graph: BlockGraph, src: str, dst: str) -> dict:
    """Dashed with its reason for a stop-gradient; the tensor's shape as the label; dotted grey
    into or out of a node no output reads."""
    attrs = {}
    path = graph.graph.edges[src, dst].get("path", ())
    if src in graph.nodes and graph.nodes[src].block.type == "stop_gradient":
        attrs = {"style": "dashed", "label": "stop-grad"}
    elif dst in graph.nodes and len(path) > 2 and path[2] in graph.nodes[dst].block.stop_gradient_refs:
        attrs = {"style": "dashed", "label": graph.nodes[dst].block.stop_gradient_refs[path[2]]}
    shape = graph.nodes[src].out if src in graph.nodes else None
    if shape is not None and "label" not in attrs:
        attrs["label"] = str(shape)
    if src in graph.unused or dst in graph.unused:
        attrs.update(DEAD_EDGE)
    return attrs


def new_digraph(name: str, label: str) -> graphviz.Digraph:
    return graphviz.Digraph(name, graph_attr={"rankdir": "BT", "fontname": "Helvetica", "label": label,
                                              "labelloc": "t"},
                            node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "white",
                                       "fontname": "Helvetica", "fontsize": "10"},
                            edge_attr={"fontname": "Helvetica", "fontsize": "9"})


def add_clusters(dot: graphviz.Digraph, entries, composite_label, colors=None) -> None:
    """Draw ``entries`` -- (part, composite or None, node id, label, attrs) -- in their clusters,
    a composite's primitives inside a dashed sub-cluster labelled ``composite_label(name)``."""
    colors = colors or _COLORS
    clusters: dict[tuple, dict] = {}
    for part, composite, nid, label, attrs in entries:
        clusters.setdefault(part, {}).setdefault(composite, []).append((nid, label, attrs))
    for (kind, member), composites in clusters.items():
        name = f"cluster_{kind}_{member}"
        with dot.subgraph(name=name) as sub:
            sub.attr(label=f"{kind} {member}".strip() if kind != "shared" else "shared",
                     style="rounded,filled", fillcolor=colors[kind], color="#999999")
            for composite, nodes in composites.items():
                if composite is None:
                    _add_nodes(sub, nodes)
                    continue
                with sub.subgraph(name=f"{name}_{composite}") as box:
                    box.attr(label=composite_label(composite), style="dashed,rounded", fillcolor="none")
                    _add_nodes(box, nodes)


def _add_nodes(target, nodes) -> None:
    for nid, label, attrs in nodes:
        target.node(nid, label, **attrs)


def composite_of(nid: str) -> str | None:
    return nid.split("/")[0] if "/" in nid else None


def node_style(node) -> dict:
    return {"style": "rounded,filled,dashed" if node.block.type == "stop_gradient" else "rounded,filled"}


def to_dot(graph: BlockGraph) -> graphviz.Digraph:
    bp = graph.blueprint
    dot = new_digraph(bp.name, f"{bp.name} · {_total(graph)}")
    dot.node(FEATURES, features_label(graph), shape="cylinder", fillcolor="#f5f5f5")
    where = parts(graph)
    entries = []
    for nid in graph.order:
        node, dead = graph.nodes[nid], nid in graph.unused
        attrs = {**node_style(node), **(DEAD_NODE if dead else {})}
        entries.append((where[nid], composite_of(nid), nid, _node_label(node, dead), attrs))
    add_clusters(dot, entries, lambda c: f"{c} ({bp.blocks[c].type})")
    for task in graph.outputs:
        dot.node(f"output__{task}", output_label(task), shape="ellipse", fillcolor="#fff7c2")
    routed = routing_nodes(graph)
    if routed:
        dot.node(SCENARIO, scenario_label(graph), shape="cylinder", fillcolor=_COLORS["scenario"],
                 color=SCENARIO_COLOR)
    for src, dst in graph.graph.edges:
        dot.edge(src, dst, **edge_attrs(graph, src, dst))
    for nid in routed:
        dot.edge(SCENARIO, nid, **scenario_edge(graph), **(DEAD_EDGE if nid in graph.unused else {}))
    return dot


def has_dot() -> bool:
    return shutil.which("dot") is not None


FORMATS = ("svg", "png", "pdf", "dot", "gv")


def check_format(path: str) -> str:
    """The format named by ``path``'s extension; a BlueprintError for any other."""
    from .blueprint.errors import BlueprintError, Location

    ext = os.path.splitext(path)[1][1:].lower()
    if ext not in FORMATS:
        said = f"'.{ext}' is not a diagram format" if ext else "the file name has no extension"
        raise BlueprintError(f"{said}: write .svg, .png or .pdf (with Graphviz) or .dot",
                             location=Location(path), key="-o")
    return ext


def write(dot: graphviz.Digraph, path: str) -> str:
    """Write ``dot`` as DOT text (``.dot``/``.gv``) or an image (``.svg``, ``.png``, ``.pdf``)."""
    ext = check_format(path)
    if ext in ("dot", "gv"):
        with open(path, "w") as fh:
            fh.write(dot.source)
        return path
    if not has_dot():
        raise RuntimeError("Graphviz 'dot' is not installed; write a .dot file instead, or install "
                           "graphviz (apt-get install graphviz / brew install graphviz)")
    data = dot.pipe(format=ext)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def render(graph: BlockGraph, path: str) -> str:
    """Write the graph's diagram to ``path`` (DOT text or an image, by its extension)."""
    check_format(path)
    return write(to_dot(graph), path)
