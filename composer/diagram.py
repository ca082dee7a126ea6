"""Graphviz DOT from a validated block graph (no TensorFlow, no Keras build needed).

Clusters: the shared part, one per task (and per scenario); composite blocks draw their
primitives inside a sub-cluster named after them. Stop-gradient edges are dashed.
"""
from __future__ import annotations

import os
import shutil

import graphviz

from .graph import FEATURES, BlockGraph

_COLORS = {"shared": "#eef3fb", "task": "#fdf2e6", "scenario": "#eaf7ee"}


def _fmt(n) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}k" if n >= 1e4 else str(n))


def _total(graph) -> str:
    if graph.total_params is not None:
        return f"{_fmt(graph.total_params)} params"
    return f"{_fmt(graph.block_params)} params + embeddings"


def _embeddings(layout) -> str:
    n = layout.embedding_params()
    return "embedding rows fitted from the data" if n is None else f"embeddings {_fmt(n)} params"


def _node_label(node) -> str:
    b = node.block
    lines = [f"<b>{_esc(node.id)}</b>", f"{b.type}" + (f": {_esc(b.label())}" if b.label() else "")]
    lines.append(f"out {node.out} · {_fmt(node.params)} params")
    return "<" + "<br/>".join(lines) + ">"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_dot(graph: BlockGraph) -> graphviz.Digraph:
    bp = graph.blueprint
    dot = graphviz.Digraph(bp.name, graph_attr={"rankdir": "BT", "fontname": "Helvetica",
                                                 "label": f"{bp.name} · {_total(graph)}",
                                                 "labelloc": "t"},
                           node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "white",
                                      "fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    lay = graph.layout
    cats = sum(len(v) for v in lay.categorical_by_dim.values())
    dims = ", ".join(f"{len(v)}×d{d}" for d, v in lay.categorical_by_dim.items())
    lines = [f"{cats} categorical ({dims}) · {len(lay.numeric)} numeric"]
    for name, lf in lay.lists.items():
        kind = "sequence" if lf.ordered else "multi"
        table = f" · table of {lf.table}" if lf.table != name else ""
        lines.append(f"{_esc(name)}: {kind} (B, {lf.max_len}) → (B, {lf.max_len}, {lf.dim}){_esc(table)}")
    shared = [(n, o) for n, o in lay.shared().items() if n not in lay.lists]
    if shared:
        lines.append("shared tables: " + ", ".join(f"{_esc(n)} → {_esc(o)}" for n, o in shared))
    if lay.numeric_embed:
        lines.append("numeric embeddings: " + ", ".join(f"{_esc(n)} ({e.kind}, d{e.dim})"
                                                       for n, e in lay.numeric_embed.items()))
    dot.node(FEATURES, f"<<b>features</b><br/>{'<br/>'.join(lines)}<br/>{_embeddings(lay)}>", shape="cylinder",
             fillcolor="#f5f5f5")
    clusters: dict[tuple, list] = {}
    for nid in graph.order:
        node = graph.nodes[nid]
        part = ("task", node.task) if node.task else ("scenario", node.scenario) if node.scenario else ("shared", "")
        composite = nid.split("/")[0] if "/" in nid else None
        clusters.setdefault(part, []).append((composite, node))
    for (kind, member), items in clusters.items():
        name = f"cluster_{kind}_{member}"
        with dot.subgraph(name=name) as sub:
            sub.attr(label=f"{kind} {member}".strip() if kind != "shared" else "shared",
                     style="rounded,filled", fillcolor=_COLORS[kind], color="#999999")
            composites: dict = {}
            for composite, node in items:
                composites.setdefault(composite, []).append(node)
            for composite, nodes in composites.items():
                target = sub
                if composite:
                    ctx = sub.subgraph(name=f"{name}_{composite}")
                    target = ctx.__enter__()
                    target.attr(label=f"{composite} ({bp.blocks[composite].type})", style="dashed,rounded",
                                fillcolor="none")
                for node in nodes:
                    style = "rounded,filled,dashed" if node.block.type == "stop_gradient" else "rounded,filled"
                    target.node(node.id, _node_label(node), style=style)
                if composite:
                    ctx.__exit__(None, None, None)
    for task in graph.outputs:
        dot.node(f"output__{task}", f"<<b>{task}</b><br/>p(1)>", shape="ellipse", fillcolor="#fff7c2")
    for src, dst in graph.graph.edges:
        attrs = {}
        path = graph.graph.edges[src, dst].get("path", ())
        if src in graph.nodes and graph.nodes[src].block.type == "stop_gradient":
            attrs = {"style": "dashed", "label": "stop-grad"}
        elif dst in graph.nodes and len(path) > 2 and path[2] in graph.nodes[dst].block.stop_gradient_refs:
            attrs = {"style": "dashed", "label": graph.nodes[dst].block.stop_gradient_refs[path[2]]}
        shape = graph.nodes[src].out if src in graph.nodes else None
        if shape is not None and "label" not in attrs:
            attrs["label"] = str(shape)
        dot.edge(src, dst, **attrs)
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


def render(graph: BlockGraph, path: str) -> str:
    """Write DOT (``.dot``/``.gv``) or an image (``.svg``, ``.png``, ``.pdf``) to ``path``."""
    ext = check_format(path)
    dot = to_dot(graph)
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
