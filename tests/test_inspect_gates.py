"""Gate observability (issue 18, item 3): the weights ``composer inspect`` and the report show are
the gates' own softmax on the rows, summarised right (mean per expert, entropy, top share); a
collapsed gate and two identical experts are warned about; experts start different."""
from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from composer import training
from composer.cli import main
from composer.inspect_gates import (GateReport, Inspection, PoolSimilarity, WeightStats, expert_cosine,
                                    inspect)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gates") / "mmoe"
    code = main(["train", str(ROOT / "blueprints/mmoe.yaml"), "--data", "synthetic:rows=3000", "--epochs", "1",
                 "--batch-size", "256", "--out", str(out), "--verbose", "0"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def exp(run):
    return training.load_run(str(run))


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _direct_gate_weights(exp, task, rows):
    """NumPy: softmax(h W + b) of the task's gate, h the gate's input on these rows."""
    gate = exp.model.get_layer(f"moe-gate-{task}")
    h = keras.Model(exp.model.input, gate.input)(exp.pre.pack(rows, exp.graph.layout))
    kernel, bias = (np.asarray(w) for w in gate.get_weights())
    return _softmax(np.asarray(h, dtype=np.float64) @ kernel + bias)


def test_weights_are_the_gates_own_softmax_per_task(exp):
    rows = exp.dataset.head("valid", 7)
    ins = inspect(exp, "valid", rows=7)
    assert ins.rows == 7 and [g.node for g in ins.gates] == [f"moe/gate.{t}" for t in exp.tasks]
    matrix, branches, cols = ins.heatmap("moe/gate")  # what the report's task x expert heatmap draws
    assert branches == list(exp.tasks) and cols == [f"experts:{k}" for k in range(4)]
    for i, (task, gate) in enumerate(zip(exp.tasks, ins.gates)):
        w = _direct_gate_weights(exp, task, rows)
        np.testing.assert_allclose(gate.overall.mean, w.mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(matrix[i], w.mean(axis=0), atol=1e-5)
        entropy = -(w * np.log(w)).sum(axis=1).mean()
        assert gate.overall.entropy == pytest.approx(entropy, abs=1e-5)
        assert gate.overall.top_share == pytest.approx(float((w.max(axis=1) > 0.9).mean()))
        assert gate.branch == task
    # the two tasks' gates are different layers: their weights differ
    assert not np.allclose(ins.gates[0].overall.mean, ins.gates[1].overall.mean, atol=1e-7)


def test_inspect_prints_a_table_per_gate_family(run, capsys):
    assert main(["inspect", str(run), "--rows", "50"]) == 0
    out = capsys.readouterr().out
    assert "moe/gate.click" in out and "moe/gate.like" in out and "experts:3" in out
    assert "(50 rows)" in out and "moe/experts" in out  # the pool's cosine table
    assert "no collapse" in out


def test_entropy_and_top_share_of_constructed_weights():
    even = WeightStats.of(np.full((5, 4), 0.25))
    assert even.entropy == pytest.approx(math.log(4)) and even.top_share == 0
    one = WeightStats.of(np.tile([0.0, 1.0, 0.0], (3, 1)))
    assert one.entropy == pytest.approx(0.0, abs=1e-9) and one.top_share == 1
    np.testing.assert_allclose(one.mean, [0, 1, 0])
    mixed = WeightStats.of(np.array([[0.95, 0.05], [0.5, 0.5]]))
    assert mixed.top_share == 0.5
    assert mixed.entropy == pytest.approx((-(0.95 * math.log(0.95) + 0.05 * math.log(0.05)) + math.log(2)) / 2)


def _inspection(mean, cosine, scenarios=None):
    gate = GateReport("moe/gate.click", "gate", "moe/gate", "click", [f"experts:{k}" for k in range(len(mean))],
                      WeightStats(100, np.array(mean), 0.3, 0.9),
                      {s: WeightStats(50, np.array(m), 0.3, 0.9) for s, m in (scenarios or {}).items()})
    return Inspection("m", "d", "valid", 100, None, [gate], [PoolSimilarity("moe/experts", np.array(cosine))])


def test_collapse_warnings_on_constructed_cases():
    healthy = _inspection([0.4, 0.3, 0.3], np.eye(3) * 0.5 + 0.5)
    assert healthy.warnings == []
    one_expert = _inspection([0.93, 0.04, 0.03], np.eye(3) * 0.5 + 0.5)
    [w] = one_expert.warnings
    assert "moe/gate.click" in w and "experts:0" in w and "0.93" in w
    alike = np.eye(3) * 0.5 + 0.5
    alike[0, 2] = alike[2, 0] = 0.97
    [w] = _inspection([0.4, 0.3, 0.3], alike).warnings
    assert "experts 0 and 2 of moe/experts" in w and "0.970" in w
    assert "warning: collapse" in one_expert.table()
    # one line per gate, however many scenarios; a collapse in one scenario only is named
    everywhere = _inspection([0.93, 0.04, 0.03], np.eye(3), {"a": [0.92, 0.04, 0.04], "b": [0.94, 0.03, 0.03]})
    [w] = everywhere.warnings
    assert "(so in 2 of 2 scenarios)" in w
    [w] = _inspection([0.6, 0.2, 0.2], np.eye(3), {"a": [0.3, 0.4, 0.3], "b": [0.05, 0.02, 0.93]}).warnings
    assert w.endswith("weight in scenario b (expert experts:2 0.930)")


def test_a_collapsed_gate_and_copied_experts_are_found_in_a_real_model(run):
    exp = training.load_run(str(run))  # its own copy: the weights are edited
    gate = exp.model.get_layer("moe-gate-click")
    kernel, bias = gate.get_weights()
    bias = bias.copy()
    bias[2] = 50.0  # expert 2 takes all of click's weight
    gate.set_weights([kernel, bias])
    pool = exp.model.get_layer("moe-experts")
    if pool.implementation == "stacks":
        pool._stacks[3].set_weights(pool._stacks[1].get_weights())
    else:
        pool.set_weights([np.concatenate([w[:3], w[1:2]]) for w in pool.get_weights()])
    ins = inspect(exp, "valid", rows=64)
    click = next(g for g in ins.gates if g.branch == "click")
    assert click.overall.mean[2] > 0.99 and click.overall.top_share == 1.0
    text = "\n".join(ins.warnings)
    assert "gate moe/gate.click (click) gives expert experts:2" in text
    assert "experts 1 and 3 of moe/experts" in text
    assert "moe/gate.like" not in text  # the other task's gate is untouched


def test_expert_cosine_by_hand():
    e = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
                  [[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])  # row 1: expert 2 outputs zeros (a dead ReLU)
    cos = expert_cosine(e)
    assert cos[0, 1] == pytest.approx((1.0 + 1 / math.sqrt(2)) / 2)
    assert cos[0, 2] == pytest.approx(0.0)  # only row 0 counts for expert 2
    np.testing.assert_allclose(np.diag(cos), 1.0)


@pytest.mark.parametrize("implementation", ["einsum", "stacks"])
def test_experts_start_different(implementation):
    from composer.layers.experts import ExpertPool

    keras.utils.set_random_seed(0)
    pool = ExpertPool(4, [8, 4], implementation=implementation)
    pool.build((None, 6))
    if implementation == "einsum":
        layers = [np.asarray(k) for k in pool.kernels]  # (K, in, out) each
    else:
        layers = [np.stack([np.asarray(mlp.weights[2 * i]) for mlp in pool._stacks]) for i in range(2)]
    for kernels in layers:
        assert kernels.shape[0] == 4
        for a in range(4):
            for b in range(a + 1, 4):
                assert not np.allclose(kernels[a], kernels[b]), (implementation, a, b)
    out = np.asarray(pool(np.random.default_rng(0).normal(size=(32, 6)).astype("float32")))
    cos = expert_cosine(out)
    assert np.nanmax(cos[~np.eye(4, dtype=bool)]) < 0.95  # and their outputs differ too


def test_a_compiled_mmoe_starts_with_different_experts():
    exp = training.prepare(str(ROOT / "blueprints/mmoe.yaml"), data="synthetic:rows=500")
    pool = exp.model.get_layer("moe-experts")
    weights = [np.asarray(w) for w in pool.get_weights()]
    if pool.implementation == "einsum":
        kernels = [w for w in weights if w.ndim == 3]
    else:
        kernels = [np.stack([np.asarray(mlp.weights[0]) for mlp in pool._stacks])]
    for k in kernels:
        for a in range(len(k)):
            for b in range(a + 1, len(k)):
                assert not np.allclose(k[a], k[b])


M2M_SMALL = """
name: m2m_small
data: synthetic-msl
features: {from_data: true, dim: 4}
groups:
  all: ["*"]
  scene: ["*scenario", "*numeric"]
tasks: from_data
scenarios: from_data
blocks:
  x:         {type: embed, group: all}
  scene:     {type: embed, group: scene}
  scene_rep: {type: mlp, input: scene, units: [8]}
  experts:   {type: expert_pool, input: x, experts: 3, units: [8]}
  attention: {type: meta_attention, for_each: task, experts: experts, scenario: scene_rep, task_dim: 4, units: [8]}
  tower:     {type: meta_tower, for_each: task, input: "attention.{task}", scenario: scene_rep, layers: 1}
outputs: "tower.{task}"
training: {epochs: 1, batch_size: 256, seed: 1}
"""


def _probe(exp, layer, x):
    out = keras.Model(exp.model.input, {"in": layer.input, "out": layer.output})(x)
    return [np.asarray(t, dtype=np.float64) for t in out["in"]], np.asarray(out["out"], dtype=np.float64)


def test_meta_attention_reports_the_weights_it_sums_the_experts_with(tmp_path):
    from composer.inspect_gates import gate_weights

    file = tmp_path / "m2m_small.yaml"
    file.write_text(M2M_SMALL)
    exp = training.prepare(str(file), data="synthetic-msl:rows=600")
    rows = exp.dataset.head("valid", 40)
    x = exp.pre.pack(rows, exp.graph.layout)
    weights, pools = gate_weights(exp, x)
    w = weights["attention.click"]
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    (experts, _), out = _probe(exp, exp.model.get_layer("attention-click"), x)
    np.testing.assert_allclose(np.einsum("bk,bkd->bd", w, experts), out, atol=1e-5)
    np.testing.assert_allclose(pools["experts"], experts, atol=1e-6)
    ins = inspect(exp, "valid", rows=40)
    [gate] = ins.gates
    assert (gate.kind, gate.branch, gate.experts) == ("meta_attention", "click", ["experts:0", "experts:1", "experts:2"])
    np.testing.assert_allclose(gate.overall.mean, w.mean(axis=0), atol=1e-6)
    scenario = rows["scenario"].astype(str).to_numpy()
    assert set(gate.scenarios) == set(scenario)
    for value, stats in gate.scenarios.items():  # what the scenario x expert heatmap draws
        np.testing.assert_allclose(stats.mean, w[scenario == value].mean(axis=0), atol=1e-6)
    matrix, values, _ = ins.scenario_heatmap(gate)
    np.testing.assert_allclose(matrix[values.index(scenario[0])], w[scenario == scenario[0]].mean(axis=0), atol=1e-6)


def test_hmoe_reports_its_gates_and_the_fusion_weights_it_mixes_the_towers_with():
    from composer.inspect_gates import gate_weights

    exp = training.prepare(str(ROOT / "blueprints/hmoe.yaml"), data="synthetic-msl:rows=600")
    rows = exp.dataset.head("valid", 40)
    x = exp.pre.pack(rows, exp.graph.layout)
    weights, _ = gate_weights(exp, x)
    (h, _, *logits), out = _probe(exp, exp.model.get_layer("hmoe-fusion-click"), x)
    w = weights["hmoe/fusion.click"]
    scores = 1 / (1 + np.exp(-np.concatenate(logits, axis=1)))
    np.testing.assert_allclose((w * scores).sum(axis=1, keepdims=True), out, atol=1e-5)
    ins = inspect(exp, "valid", rows=40)
    scenarios = list(exp.bp.scenarios.names)
    assert [g.node for g in ins.gates] == [f"hmoe/gate.{s}" for s in scenarios] + ["hmoe/fusion.click"]
    assert [g.branch for g in ins.gates[:-1]] == [f"scenario {s}" for s in scenarios]
    assert ins.gates[-1].experts == [f"tower {s}" for s in scenarios]
    assert list(ins.families()) == ["hmoe/gate", "hmoe/fusion"]
