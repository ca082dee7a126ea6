"""Diagrams for reviews (issue 18, item 5), read from the DOT text: the scenario input has an edge,
labelled with the scenario count, to each block that routes by scenario; a composite branch that
feeds no output is drawn grey and dotted, not as live; chain outputs and their towers sit in
their tasks' clusters, not in "shared"."""
import inspect
import re
from pathlib import Path

import pytest

from composer.blocks import all_blocks
from composer.cli import _load_graph
from composer.diagram import SCENARIO, parts, to_dot

ROOT = Path(__file__).resolve().parents[1]
ESMM_ON_PLE = ROOT / "tests" / "diagrams" / "esmm_on_ple.yaml"


def dot_of(path) -> tuple[object, str]:
    graph = _load_graph(str(path))
    return graph, to_dot(graph).source


def blueprint(name: str) -> Path:
    return ROOT / "blueprints" / f"{name}.yaml"


def node_line(source: str, nid: str) -> str:
    found = re.search(rf'^\s*"?{re.escape(nid)}"? \[label=.*$', source, re.M)
    assert found, f"no node {nid}"
    return found.group(0)


def edge_lines(source: str, src: str) -> dict[str, str]:
    """dst -> the attributes of the edge src -> dst."""
    out = {}
    for m in re.finditer(rf'^\s*"?{re.escape(src)}"? -> "?([^"\s]+)"? \[(.*)\]$', source, re.M):
        out[m.group(1)] = m.group(2)
    return out


def clusters_of(source: str) -> dict[str, list[str]]:
    """Node id -> the clusters it is drawn in, outermost first (read from the DOT text's nesting)."""
    stack, out = [], {}
    for line in source.splitlines():
        text = line.strip()
        opened = re.match(r"subgraph (\S+) \{$", text)
        if opened:
            stack.append(opened.group(1))
        elif text == "}":
            if stack:
                stack.pop()
        else:
            node = re.match(r'^("[^"]+"|[A-Za-z_][\w.]*) \[', text)
            if node and "->" not in text:
                out[node.group(1).strip('"')] = list(stack)
    return out


# -- scenario routing -------------------------------------------------------------------------
@pytest.mark.parametrize("name,routed", [("star", {"pn", "fcn.click"}), ("hmoe", {"hmoe/fusion.click"}),
                                         ("split_merge", {"tower.click"})])
def test_the_scenario_input_has_an_edge_with_the_count_to_each_routing_block(name, routed):
    graph, source = dot_of(blueprint(name))
    assert "column scenario: 3 scenarios" in node_line(source, SCENARIO)
    edges = edge_lines(source, SCENARIO)
    assert set(edges) == routed
    assert all('label="3 scenarios"' in attrs for attrs in edges.values())


@pytest.mark.parametrize("name", ["m2m", "apg", "mmoe", "scenario_tower"])
def test_no_scenario_input_where_no_block_routes_by_scenario(name):
    """M2M and APG condition on scenario features (an embedding), they do not route by the id."""
    _, source = dot_of(blueprint(name))
    assert SCENARIO not in source


@pytest.mark.parametrize("block_type", sorted(all_blocks()))
def test_routes_by_scenario_says_which_blocks_read_the_scenario_ids(block_type):
    cls = all_blocks()[block_type]
    reads = "ctx.scenario()" in inspect.getsource(cls.build)
    assert cls.routes_by_scenario == reads, f"{block_type}: routes_by_scenario should be {reads}"


# -- a branch no output reads -----------------------------------------------------------------
def test_a_composite_branch_feeding_no_output_is_not_drawn_as_live():
    graph, source = dot_of(ESMM_ON_PLE)
    dead = ["ple/level1/gate.ctcvr", "ple/level1/mix.ctcvr", "ple/level2/experts.ctcvr",
            "ple/level2/gate.ctcvr", "ple/level2/mix.ctcvr"]
    assert graph.unused == dead
    for nid in dead:
        line = node_line(source, nid)
        assert 'style="rounded,filled,dotted"' in line and "feeds no output: not in the model" in line, line
    for nid in set(graph.nodes) - set(dead):  # level 1's ctcvr experts still feed the shared gate
        line = node_line(source, nid)
        assert "dotted" not in line and "feeds no output" not in line, line
    into_dead = edge_lines(source, "ple/level1/mix.ctcvr")
    assert set(into_dead) == {"ple/level2/experts.ctcvr", "ple/level2/gate.ctcvr"}
    assert all("style=dotted" in attrs for attrs in into_dead.values())
    assert "style=dotted" not in edge_lines(source, "ple/level1/experts.ctcvr")["ple/level1/mix.shared"]
    assert "62.7k params + embeddings" in source  # the title counts what Keras builds


# -- chains and their towers ------------------------------------------------------------------
def test_esmm_chain_and_towers_sit_in_their_tasks_clusters():
    _, source = dot_of(blueprint("esmm"))
    where = clusters_of(source)
    assert where["ctr_tower"] == ["cluster_task_ctr"]
    assert where["cvr_tower"] == ["cluster_task_cvr"]
    assert where["ctcvr"] == ["cluster_task_ctcvr"]
    assert where["x"] == ["cluster_shared_"]


def test_esm2_every_tower_and_chain_is_its_tasks():
    graph, source = dot_of(blueprint("esm2"))
    where = clusters_of(source)
    for task, nid in graph.outputs.items():
        assert where[nid] == [f"cluster_task_{task}"], nid
    assert where["x"] == ["cluster_shared_"]


def test_chain_over_a_ple_towers_in_task_clusters_experts_shared():
    graph, source = dot_of(ESMM_ON_PLE)
    where = clusters_of(source)
    assert where["ctr_tower"] == ["cluster_task_ctr"] and where["cvr_tower"] == ["cluster_task_cvr"]
    assert where["ctcvr_p"] == ["cluster_task_ctcvr"]
    assert where["ple/level1/shared"] == ["cluster_shared_", "cluster_shared__ple"]
    assert where["ple/level2/gate.ctr"] == ["cluster_task_ctr", "cluster_task_ctr_ple"]


def test_shared_blocks_stay_shared():
    """Only a task's output and heads only it reads move: a one-task model keeps its shared part."""
    for name, shared in (("star", {"x", "pn", "d", "aux_in"}), ("mmoe", {"x", "moe/experts"}),
                         ("split_merge", {"x", "bottom"})):
        graph = _load_graph(str(blueprint(name)))
        assert {n for n, part in parts(graph).items() if part == ("shared", "")} == shared, name


def test_a_head_two_tasks_read_stays_shared():
    text = blueprint("esmm").read_text()
    # CTR's output becomes a predict over the tower: the tower is read by two tasks' blocks
    text = text.replace("  ctcvr:      {type: chain,", "  ctr_p:      {type: predict, input: ctr_tower}\n"
                        "  ctcvr:      {type: chain,").replace("  ctr: ctr_tower\n", "  ctr: ctr_p\n")
    from composer.blueprint import load_blueprint_text
    from composer.graph import build_graph

    graph = build_graph(*load_blueprint_text(text, "esmm_predict.yaml"))
    where = parts(graph)
    assert where["ctr_p"] == ("task", "ctr") and where["ctcvr"] == ("task", "ctcvr")
    assert where["ctr_tower"] == ("shared", "")
    assert where["cvr_tower"] == ("task", "cvr")
