"""The review diagram of a ReviewDiff (``composer diff A B -o X.svg``): both blueprints in one
drawing. Nodes of the second blueprint sit in its clusters, removed nodes of the first in theirs.
Added blocks are green, removed red and dashed, changed orange with their old -> new values;
every node carries its parameters (old -> new where they differ), a composite's box its block's,
the title the whole model's before and after. Edges added or removed are coloured alike. The
clusters are near-grey here, so that colour speaks of the change only."""
from __future__ import annotations

import graphviz

from .diagram import (DEAD_NOTE, FEATURES, SCENARIO, add_clusters, composite_of, edge_attrs, esc, features_label,
                      fmt_count, new_digraph, node_lines, node_style, output_label, parts, routing_nodes,
                      scenario_edge, scenario_label, type_line, write)
from .review_diff import ADDED, CHANGED, REMOVED, SAME, field_text, line

GREEN, RED, ORANGE = "#2e7d32", "#c62828", "#e65100"
NODE = {ADDED: {"fillcolor": "#dcf2dc", "color": GREEN, "penwidth": "2"},
        REMOVED: {"fillcolor": "#fbdddb", "color": RED, "penwidth": "2", "style": "rounded,filled,dashed"},
        CHANGED: {"fillcolor": "#ffe0b2", "color": ORANGE, "penwidth": "2"},
        SAME: {}}
EDGE = {ADDED: {"color": GREEN, "fontcolor": GREEN, "penwidth": "1.5"},
        REMOVED: {"color": RED, "fontcolor": RED, "style": "dashed"}}
MARK = {ADDED: "+", REMOVED: "−", CHANGED: "~"}  # a minus sign, wider than the text's hyphen
CLUSTERS = {"shared": "#f3f5f8", "task": "#f7f6f3", "scenario": "#f3f7f3"}
MAX_LINE = 64  # characters of one value line in a node (Graphviz does not wrap labels)


def _short(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[:MAX_LINE - 1] + "…"


def _params(before, after) -> str:
    return f"{fmt_count(after)} params" if before == after else f"{fmt_count(before)} → {fmt_count(after)} params"


def _node_label(change, node, dead: bool) -> str:
    mark = f"{MARK[change.status]} " if change.status != SAME else ""
    if change.status != CHANGED:
        lines = node_lines(node, dead)
        lines[0] = f"<b>{mark}{esc(node.id)}</b>"
        return "<" + "<br/>".join(lines) + ">"
    values = {name: (old, new) for name, old, new in change.fields}
    old_out, new_out = values.pop("out", (str(node.out), str(node.out)))
    lines = [f"<b>{mark}{esc(node.id)}</b>", type_line(node.block)]
    lines += [f'<font color="{ORANGE}">{esc(_short(field_text(n, old, new, arrow="→")))}</font>'
              for n, (old, new) in values.items()]
    out = f"out {old_out} → {new_out}" if old_out != new_out else f"out {new_out}"
    lines.append(f"{out} · {_params(change.before, change.after)}")
    return "<" + "<br/>".join(lines + ([DEAD_NOTE] if dead else [])) + ">"


def _drawn_ids(diff) -> dict[str, str]:
    """Node ids of the first blueprint as drawn: a removed node whose id the second blueprint
    gives to a block of another type is drawn beside it under its own id."""
    retyped = diff.ids(REMOVED, "nodes") & diff.ids(ADDED, "nodes")
    return {nid: (f"removed__{nid}" if nid in retyped else nid) for nid in diff.before.nodes}


def _composite_label(diff):
    blocks = {c.id: [] for c in diff.blocks}
    for c in diff.blocks:
        blocks[c.id].append(c)

    def label(name: str) -> str:
        changes = blocks.get(name, [])
        types = [diff.before.blueprint.blocks[name].type] if name in diff.before.blueprint.blocks else []
        if name in diff.after.blueprint.blocks and diff.after.blueprint.blocks[name].type not in types:
            types.append(diff.after.blueprint.blocks[name].type)
        marks = "".join(dict.fromkeys(MARK[c.status] for c in changes if c.status != SAME))
        before = next((c.before for c in changes if c.status != ADDED), None)
        after = next((c.after for c in changes if c.status != REMOVED), None)
        params = (_params(before, after) if before is not None and after is not None
                  else f"{fmt_count(before if after is None else after)} params")
        return f"{marks + ' ' if marks else ''}{name} ({' → '.join(types)}) · {params}"

    return label


def _edges(graph, drawn=None) -> dict[tuple[str, str], dict]:
    ids = (lambda n: drawn.get(n, n)) if drawn else (lambda n: n)
    edges = {(ids(s), ids(d)): edge_attrs(graph, s, d) for s, d in graph.graph.edges}
    for nid in routing_nodes(graph):
        edges[(SCENARIO, ids(nid))] = {**scenario_edge(graph), "color": "#555555", "fontcolor": "#555555"}
    return edges


def _title(diff) -> str:
    said = esc(diff.params_line().replace(" -> ", " → "))
    legend = "   ".join(f'<font color="{color}">{mark} {what}</font>' for mark, what, color in
                       (("+", "added", GREEN), ("−", "removed", RED), ("~", "changed", ORANGE)))
    # what the drawing shows only indirectly: tasks, data, scenarios, loss and training settings
    others = [c for c in [*diff.tasks, *diff.settings]
              if c.status != SAME and not c.id.startswith(("outputs.", "groups."))]
    lines = [esc(_short(line(c).replace(" ", " task ", 1) if c in diff.tasks else line(c))) for c in others[:6]]
    if len(others) > 6:
        lines.append(f"... {len(others) - 6} more (the text summary has them)")
    head = f"<b>{esc(diff.names[0])} → {esc(diff.names[1])}</b>"
    return "<" + "<br/>".join([head, said, *lines, legend]) + ">"


def diff_to_dot(diff) -> graphviz.Digraph:
    a, b = diff.before, diff.after
    dot = new_digraph(f"{diff.names[0]}_to_{diff.names[1]}", _title(diff))
    changed_features = [c for c in diff.features if c.status != SAME]
    extra = [f'<font color="{ORANGE}">{esc(_short(line(c)))}</font>' for c in changed_features[:8]]
    if len(changed_features) > 8:
        extra.append(f"... {len(changed_features) - 8} more feature changes")
    dot.node(FEATURES, features_label(b, extra), shape="cylinder", fillcolor="#f5f5f5",
             **({"color": ORANGE, "penwidth": "2"} if changed_features else {}))
    drawn = _drawn_ids(diff)
    where_a, where_b = parts(a), parts(b)
    entries = []
    for change in diff.nodes:
        removed = change.status == REMOVED
        graph, where = (a, where_a) if removed else (b, where_b)
        node, dead = graph.nodes[change.id], change.id in graph.unused
        nid = drawn[change.id] if removed else change.id
        attrs = {**node_style(node), **NODE[change.status]}
        entries.append((where[change.id], composite_of(change.id), nid, _node_label(change, node, dead), attrs))
    add_clusters(dot, entries, _composite_label(diff), colors=CLUSTERS)
    for task in [*b.outputs, *(t for t in a.outputs if t not in b.outputs)]:
        status = ADDED if task not in a.outputs else REMOVED if task not in b.outputs else SAME
        dot.node(f"output__{task}", output_label(task), **{"shape": "ellipse", "fillcolor": "#fff7c2", **NODE[status]})
    routed_a, routed_b = routing_nodes(a), routing_nodes(b)
    if routed_a or routed_b:
        scenarios = next((c for c in diff.settings if c.id == "scenarios"), None)
        status = (REMOVED if not routed_b else ADDED if not routed_a
                  else CHANGED if scenarios is not None and scenarios.status == CHANGED else SAME)
        dot.node(SCENARIO, scenario_label(b if routed_b else a),
                 **{"shape": "cylinder", "fillcolor": "#f5f5f5", **NODE[status]})
    edges_a, edges_b = _edges(a, drawn), _edges(b)
    for edge, attrs in edges_b.items():
        if edge not in edges_a:
            attrs = {**attrs, **EDGE[ADDED]}
        elif edges_a[edge].get("label") != attrs.get("label") and edges_a[edge].get("label"):
            attrs = {**attrs, "label": f"{edges_a[edge]['label']} → {attrs.get('label')}"}
        dot.edge(*edge, **attrs)
    for edge, attrs in edges_a.items():
        if edge not in edges_b:
            dot.edge(*edge, **{**attrs, **EDGE[REMOVED]})
    return dot


def render_diff(diff, path: str) -> str:
    """Write the review diagram to ``path`` (.svg, .png, .pdf with Graphviz; .dot always)."""
    return write(diff_to_dot(diff), path)
