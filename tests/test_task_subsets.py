"""Blocks over some tasks (`tasks: [ctr, cvr]` on a composite or a `for_each: task` block) and
GradNorm's shared layer W on chain blueprints: ESMM's CTCVR on a PLE grows no expert branch of its
own, the summary counts what Keras builds, and W is a shared block, not the CTR tower."""
import pytest

from composer.blueprint import BlueprintError, load_blueprint_text
from composer.cli import main
from composer.graph import build_graph

from test_blueprints_golden import VOCAB

# ESMM on a PLE (the shipped ple.yaml's PLE, towers of 32): CTCVR is a chain over the CTR and
# CVR towers, so it reads no PLE port of its own
ESMM_PLE = """\
name: esmm_ple
data: synthetic-chain
features: {from_data: true, dim: 8}
groups:
  all: ["*"]
tasks:
  - {name: ctr, label: click}
  - {name: cvr, label: conversion, where: click, loss: false}
  - {name: ctcvr, label: "click & conversion"}
blocks:
  x:          {type: embed, group: all}
  ple:        {type: ple, input: x, levels: 2, shared_experts: 2, task_experts: 2, units: [64, 32]SUBSET}
  ctr_tower:  {type: tower, input: ple.ctr, units: [32]}
  cvr_tower:  {type: tower, input: ple.cvr, units: [32]}
  ctcvr_p:    {type: chain, inputs: {ctr: ctr_tower, cvr: cvr_tower}, expression: "ctr * cvr"}
outputs: {ctr: ctr_tower, cvr: cvr_tower, ctcvr: ctcvr_p}
loss: LOSS
"""
# What no output reads without a subset: ctcvr's level-1 gate (34 -> 4 experts) and its level-2
# experts (two of 32 -> 64 -> 32) and gate (32 -> 4). Its level-1 experts still feed level 2
# through the shared gate, so Keras keeps them.
ORPHAN = (34 * 4 + 4) + 2 * (32 * 64 + 64 + 64 * 32 + 32) + (32 * 4 + 4)
assert ORPHAN == 8_656


def _esmm_ple(subset="", loss="{fusion: fixed}", replace=(), file="esmm_ple.yaml"):
    text = ESMM_PLE.replace("SUBSET", subset).replace("LOSS", loss)
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    return load_blueprint_text(text, file)


def _graph(*args, **kwargs):
    bp, doc = _esmm_ple(*args, **kwargs)
    return build_graph(bp, doc, vocab_sizes=VOCAB)


def _error(*args, **kwargs) -> str:
    with pytest.raises(BlueprintError) as exc:
        _graph(*args, **kwargs)
    return str(exc.value)


def test_without_a_subset_the_orphan_branch_is_named_and_left_out_of_the_count():
    graph = _graph()
    # before: 95,898 counted (the orphan ctcvr branch included) against Keras's 87,242
    built = sum(n.params for n in graph.nodes.values()) + graph.layout.embedding_params()
    assert built == 95_898
    assert graph.total_params == 87_242 == built - ORPHAN
    assert graph.unused == ["ple/level1/gate.ctcvr", "ple/level1/mix.ctcvr", "ple/level2/experts.ctcvr",
                            "ple/level2/gate.ctcvr", "ple/level2/mix.ctcvr"]
    [warning] = graph.warnings
    assert "not used by any output" not in warning  # the PLE is used
    assert "blocks.ple: ple.ctcvr feeds no output, so its 8,656 parameters are left out" in warning
    assert "give it tasks: [ctr, cvr]" in warning and "esmm_ple.yaml:12:" in warning


def test_a_subset_builds_no_branch_for_the_chained_task_and_keras_agrees():
    from composer.compiler import compile_graph

    graph = _graph(", tasks: [ctr, cvr]")
    assert graph.warnings == [] and graph.unused == []
    assert not [n for n in graph.nodes if n.startswith("ple/") and "ctcvr" in n]
    assert graph.nodes["ple/level1/gate.shared"].block.experts == 2 + 2 * 2  # shared + ctr's + cvr's
    assert graph.total_params == 78_532  # ple.yaml's two-task PLE with its towers (golden)
    assert compile_graph(graph).count_params() == graph.total_params


def test_a_stamped_block_over_some_tasks_has_those_copies():
    graph = _graph(", tasks: [ctr, cvr]", replace=[
        ("  ctr_tower:  {type: tower, input: ple.ctr, units: [32]}\n"
         "  cvr_tower:  {type: tower, input: ple.cvr, units: [32]}\n",
         "  tower:      {type: tower, for_each: task, tasks: [cvr, ctr], input: \"ple.{task}\", units: [32]}\n"),
        ("{ctr: ctr_tower, cvr: cvr_tower}", "{ctr: tower.ctr, cvr: tower.cvr}"),
        ("ctr: ctr_tower, cvr: cvr_tower, ctcvr", "ctr: tower.ctr, cvr: tower.cvr, ctcvr")])
    assert [n for n in graph.nodes if n.startswith("tower.")] == ["tower.ctr", "tower.cvr"]  # task order
    assert graph.warnings == [] and graph.total_params == 78_532


def test_a_typo_in_a_subset_is_located_with_did_you_mean():
    err = _error(", tasks: [ctr, cvt]")
    assert err.startswith("esmm_ple.yaml:12:")
    assert "blocks.ple.tasks[1]: 'cvt' is not a task; did you mean 'cvr'?" in err


def test_a_task_listed_twice_is_an_error():
    assert "blocks.ple.tasks[1]: task 'ctr' is listed twice" in _error(", tasks: [ctr, ctr]")


def test_a_port_outside_the_subset_names_the_subset():
    err = _error(", tasks: [ctr, cvr]", replace=[("input: ple.cvr", "input: ple.ctcvr")])
    assert "esmm_ple.yaml:14:" in err
    assert "blocks.cvr_tower.input: 'ple' has no port 'ctcvr': blocks.ple.tasks is [ctr, cvr]" in err


def test_a_stamped_reader_of_a_subset_is_told_to_take_the_subset_too():
    err = _error(", tasks: [ctr, cvr]", replace=[
        ("  ctr_tower:  {type: tower, input: ple.ctr, units: [32]}\n",
         "  tower:      {type: tower, for_each: task, input: \"ple.{task}\"}\n"
         "  ctr_tower:  {type: tower, input: ple.ctr, units: [32]}\n")])
    assert "blocks.tower.input: 'ple' has no port 'ctcvr'" in err
    assert "give blocks.tower tasks: [ctr, cvr] too" in err


def test_a_copy_outside_the_subset_is_an_error():
    err = _error(replace=[("  cvr_tower:  {type: tower, input: ple.cvr, units: [32]}\n",
                           "  cvr_tower:  {type: tower, for_each: task, tasks: [cvr], input: ple.cvr}\n"),
                          ("cvr: cvr_tower}", "cvr: cvr_tower.ctr}")])
    assert "'cvr_tower' has no copy 'ctr': blocks.cvr_tower.tasks is [cvr]" in err


@pytest.mark.parametrize("block,message", [
    ("{type: tower, input: x, tasks: [ctr]}", "tasks is for a block with for_each: task"),
    ("{type: tower, for_each: scenario, input: x, tasks: [ctr]}", "tasks is for a block with for_each: task"),
])
def test_a_subset_where_nothing_is_per_task_is_an_error(block, message):
    err = _error(replace=[("  ctr_tower:  {type: tower, input: ple.ctr, units: [32]}\n",
                           f"  extra:      {block}\n  ctr_tower:  {{type: tower, input: ple.ctr, units: [32]}}\n")])
    assert "blocks.extra.tasks: " + message in err


# -- GradNorm's W ------------------------------------------------------------------------------
def test_gradnorm_w_on_a_chain_is_the_last_shared_block_not_the_ctr_tower(tmp_path, capsys):
    graph = _graph(", tasks: [ctr, cvr]", loss="{fusion: gradnorm}")
    assert graph.last_shared_layer(["ctr", "ctcvr"]) == "ple/level2/shared"  # was ctr_tower
    text = ESMM_PLE.replace("SUBSET", ", tasks: [ctr, cvr]").replace("LOSS", "{fusion: gradnorm}")
    (tmp_path / "esmm_ple.yaml").write_text(text)
    assert main(["plan", str(tmp_path / "esmm_ple.yaml")]) == 0
    out = capsys.readouterr().out
    assert ("GradNorm's W (last shared layer): ple/level2/shared (the last block with weights that "
            "every task with a loss (ctr, ctcvr) depends on; after it come one task's own blocks "
            "(ple/level2/experts.ctr, ple/level2/gate.ctr, ctr_tower), not shared)") in out


def test_gradnorm_without_a_shared_block_is_refused_at_validate():
    from pathlib import Path

    from composer.blueprint import load_blueprint

    esmm = Path(__file__).resolve().parents[1] / "blueprints" / "esmm.yaml"
    text = esmm.read_text().replace("loss: {fusion: fixed, weights: {ctr: 1.0, ctcvr: 1.0}}",
                                    "loss: {fusion: gradnorm}")
    bp, doc = load_blueprint_text(text, "esmm_gradnorm.yaml")
    with pytest.raises(BlueprintError) as exc:
        build_graph(bp, doc)
    err = str(exc.value)
    assert "esmm_gradnorm.yaml:" in err and "loss.fusion: gradnorm needs a shared layer W" in err
    assert "is one task's own (ctr_tower)" in err and "set loss.shared_layer to one of them" in err
    assert load_blueprint(str(esmm))  # the shipped one (fixed weights) is unaffected


def test_a_typo_in_shared_layer_is_located_with_did_you_mean():
    err = _error(", tasks: [ctr, cvr]", loss="{fusion: gradnorm, shared_layer: ple/level2/shard}")
    assert err.startswith("esmm_ple.yaml:17:")
    assert "loss.shared_layer: unknown block 'ple/level2/shard'; did you mean 'ple/level2/shared'?" in err


def test_shared_layer_without_weights_or_not_shared_is_an_error():
    assert "loss.shared_layer: 'x' has no weights" in _error(loss="{fusion: gradnorm, shared_layer: x}")
    err = _error(loss="{fusion: gradnorm, shared_layer: cvr_tower}")
    assert "loss.shared_layer: 'cvr_tower' is not shared: ctr does not depend on it" in err
    assert "the default is 'ple/level2/shared'" in err
    graph = _graph(loss="{fusion: gradnorm, shared_layer: ctr_tower}")  # every loss reads it: allowed
    assert graph.blueprint.loss.shared_layer == "ctr_tower"


def test_a_composite_that_ignores_subsets_refuses_one():
    text = """\
name: bad
features:
  - {name: user_id, kind: categorical, dim: 8, vocab_size: 100}
  - {name: price, kind: numeric}
groups: {all: [user_id, price], user: [user_id]}
tasks: [{name: click}, {name: like}]
blocks:
  x: {type: embed, group: all}
  u: {type: embed, group: user}
  p: {type: pepnet, domain: u, persona: u, input: x, units: [8], tasks: [click]}
outputs: "p.{task}"
"""
    with pytest.raises(BlueprintError) as exc:
        load_blueprint_text(text, "bad.yaml")
    err = str(exc.value)
    assert "bad.yaml:10:" in err and "blocks.p.tasks: 'pepnet' does not take a task subset" in err
