"""Mixed-scenario routing of the shipped SAR-Net, AdaSparse and AdaptDHM blueprints, in training
and inference: in one batch mixing every scenario each sample gets what a batch of only its own
scenario gives it, and changing one scenario's (or distribution group's) parameters changes only
its own samples. Also: AdaSparse's sparsity regulariser reaches the loss the trainer minimises.
"""
from pathlib import Path

import keras
import numpy as np
import pytest

from composer import training

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def experiments():
    return {}


def _exp(experiments, name):
    if name not in experiments:
        experiments[name] = training.prepare(str(ROOT / "blueprints" / f"{name}.yaml"), data="synthetic-msl:rows=1500")
    return experiments[name]


def _batch(exp, n=240):
    x, _, _ = exp.arrays("train")
    x = {k: v[:n] for k, v in x.items()}
    assert set(np.unique(x["scenario"])) == {0, 1, 2}  # the batch mixes every scenario
    return x


def _predict(model, x, training):
    return {t: keras.ops.convert_to_numpy(p) for t, p in model(x, training=training).items()}


def _centroid_layers(model):
    return [v for v in model.non_trainable_weights if v.path.endswith("centroids")]


def _run(model, x, training):
    """The model's outputs on x, with any AdaptDHM centroids put back afterwards (a training call
    moves them), so every call routes on the same centroids."""
    saved = [keras.ops.convert_to_numpy(v) for v in _centroid_layers(model)]
    out = _predict(model, x, training)
    for v, value in zip(_centroid_layers(model), saved):
        v.assign(value)
    return out


@pytest.mark.parametrize("training_mode", [False, True])
@pytest.mark.parametrize("name", ["sarnet", "adasparse", "adaptdhm"])
def test_each_sample_gets_what_a_batch_of_its_own_scenario_gives_it(experiments, name, training_mode):
    exp = _exp(experiments, name)
    x = _batch(exp)
    mixed = _run(exp.model, x, training_mode)
    scenario = x["scenario"][:, 0]
    for s in range(3):
        rows = np.where(scenario == s)[0]
        own = _run(exp.model, {k: v[rows] for k, v in x.items()}, training_mode)
        for task, value in own.items():
            np.testing.assert_allclose(mixed[task][rows], value, **TOL)


def _perturbed(model, x, assign):
    """Outputs before and after ``assign(rng)`` changes some weights (then restored)."""
    before = _run(model, x, False)
    saved = [keras.ops.convert_to_numpy(v) for v in model.weights]
    assign(np.random.default_rng(0))
    after = _run(model, x, False)
    for v, value in zip(model.weights, saved):
        v.assign(value)
    return before, after


def _changed_rows(before, after):
    return np.concatenate([np.abs(before[t] - after[t]).reshape(len(before[t]), -1).max(axis=1)[:, None]
                           for t in before], axis=1).max(axis=1) > 0


def _bump_index(variable, index, rng, axis=0):
    value = keras.ops.convert_to_numpy(variable).copy()
    where = [slice(None)] * value.ndim
    where[axis] = index
    value[tuple(where)] += rng.normal(size=value[tuple(where)].shape).astype(value.dtype)
    variable.assign(value)


def test_sarnet_scenario_2s_parameters_reach_only_scenario_2s_samples(experiments):
    exp = _exp(experiments, "sarnet")
    x = _batch(exp)
    model = exp.model
    transform, experts = model.get_layer("transform"), model.get_layer("experts")
    towers = [layer for layer in model.layers if layer.name.startswith("tower")]
    specific = experts.specific

    def assign(rng):
        for v in (transform.scale, transform.shift):
            _bump_index(v, 2, rng)
        for v in experts.specific_experts.kernels + experts.specific_experts.biases:
            _bump_index(v, slice(2 * specific, 3 * specific), rng)
        for tower in towers:
            for v in tower.kernels + tower.biases:
                _bump_index(v, 2, rng)

    before, after = _perturbed(model, x, assign)
    changed = _changed_rows(before, after)
    scenario = x["scenario"][:, 0]
    assert changed[scenario == 2].all()
    assert not changed[scenario != 2].any()


def test_adasparse_scenario_2s_embedding_reaches_only_scenario_2s_samples(experiments):
    """AdaSparse's per-scenario structure comes from the scenario's embedding (the pruners'
    condition): changing scenario 2's row changes scenario 2's samples only."""
    exp = _exp(experiments, "adasparse")
    x = _batch(exp)
    layout = exp.graph.layout
    col = layout.categorical_by_dim[8].index(exp.bp.scenarios.feature)
    scenario = x["scenario"][:, 0]
    (value_id,) = np.unique(x["ids_d8"][scenario == 2, col])
    table = exp.model.get_layer("embedding_d8")
    t = table.columns[col] if table.columns is not None else col
    row = table._offsets[t] + int(value_id)

    before, after = _perturbed(exp.model, x, lambda rng: _bump_index(table.embeddings, row, rng))
    changed = _changed_rows(before, after)
    assert changed[scenario == 2].all()
    assert not changed[scenario != 2].any()


def test_adaptdhm_routes_by_distribution_group_not_scenario(experiments):
    """Each group's tower reaches only the samples routed to that group; the groups are the
    centroids' (nearest unit-norm centroid of the stop-gradient representation)."""
    exp = _exp(experiments, "adaptdhm")
    x = _batch(exp)
    layer = exp.model.get_layer("dhm-click")
    probe = keras.Model(exp.model.input, layer.input)
    ins = probe(x)
    groups = keras.ops.convert_to_numpy(layer.cluster_of(ins))[:, 0]
    present = np.unique(groups)
    assert len(present) >= 2, groups
    towers = layer._towers
    for k in present:
        def assign(rng, k=k):
            for v in towers.scenario_kernels + towers.scenario_biases:
                _bump_index(v, int(k), rng)

        before, after = _perturbed(exp.model, x, assign)
        changed = _changed_rows(before, after)
        assert changed[groups == k].all()
        assert not changed[groups != k].any()


def test_adasparse_regulariser_reaches_the_training_loss(tmp_path):
    """The regulariser is a Keras ``add_loss``: the trainer's loss on a batch is the task loss
    plus it (here made large: weight 100, target 0.9, so the factors' mean is pushed down), under
    JAX too (PlanTrainer reads its own ``losses``, where Keras's JAX trainer puts them)."""
    from composer.training.plan_trainer import PlanTrainer

    text = (ROOT / "blueprints" / "adasparse.yaml").read_text()
    text = text.replace("sparsity_weight: 0.1", "sparsity_weight: 100.0").replace(
        "target_sparsity: 0.3", "target_sparsity: 0.9")
    path = tmp_path / "adasparse.yaml"
    path.write_text(text)
    exp = training.prepare(str(path), data="synthetic-msl:rows=1500")
    x, y, w = exp.arrays("train")
    trainer = PlanTrainer(exp.model, exp.plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = trainer.train_on_batch({k: v[:256] for k, v in x.items()}, {k: v[:256] for k, v in y.items()},
                                  {k: v[:256] for k, v in w.items()}, return_dict=True)
    layer = exp.model.get_layer("sparse")
    probe = keras.Model(exp.model.input, layer.input)
    factors = layer.pruning_factors(probe({k: v[:256] for k, v in x.items()}))
    expected = float(keras.ops.convert_to_numpy(layer.sparsity_loss(factors)))
    assert expected > 10
    np.testing.assert_allclose(logs["loss"] - logs["loss_click"], expected, rtol=1e-4)


def test_inspect_reports_adasparse_sparsity_per_scenario_and_layer(tmp_path):
    """`composer inspect RUN` on an AdaSparse run: per layer, the share of neurons whose factor is
    below epsilon, over the split's rows and per scenario, as NumPy computes it from the factors."""
    from composer.cli import main
    from composer.inspect_gates import inspect, split_rows

    out = tmp_path / "run"
    assert main(["train", str(ROOT / "blueprints" / "adasparse.yaml"), "--data", "synthetic-msl:rows=1500",
                 "--epochs", "1", "--out", str(out), "--verbose", "0"]) == 0
    exp = training.load_run(str(out))
    layer = exp.model.get_layer("sparse")
    rng = np.random.default_rng(0)
    for bias in layer.pruner_biases:  # factors on both sides of epsilon, differing by scenario
        bias.assign(rng.normal(-2.0, 2.0, size=bias.shape).astype("float32"))
    ins = inspect(exp, "valid")
    [report] = ins.sparsity
    frame = split_rows(exp, "valid")
    cond = keras.ops.convert_to_numpy(keras.Model(exp.model.input, layer.input[1])(
        exp.pre.pack(frame, exp.graph.layout)))
    shares = [(1 / (1 + np.exp(-(cond @ keras.ops.convert_to_numpy(k) + keras.ops.convert_to_numpy(b)))) < 0.1)
              .mean(axis=1) for k, b in zip(layer.pruner_kernels, layer.pruner_biases)]
    assert report.node == "sparse" and report.widths == [64, 32] and report.rows == len(frame)
    np.testing.assert_allclose(report.overall, [s.mean() for s in shares], atol=1e-6)
    values = frame["scenario"].astype("string").to_numpy()
    assert list(report.scenarios) == ["tab0", "tab1", "tab2"]
    for v, (n, got) in report.scenarios.items():
        assert n == int((values == v).sum())
        np.testing.assert_allclose(got, [s[values == v].mean() for s in shares], atol=1e-6)
    assert 0 < min(report.overall) and max(report.overall) < 1
    text = ins.table()
    assert "model 'adasparse' has no gates" in text
    assert "pruned neurons of sparse (adasparse): share of each layer's neurons whose factor pi is below epsilon 0.1" in text
    assert "layer 1 (64)" in text and "scenario=tab2" in text


def test_inspect_reports_the_sarnet_scenario_gate(tmp_path):
    """SAR-Net's gate is a gate: `composer inspect` shows its mean weight on the shared experts
    and the sample's own scenario's experts, per scenario: softmax(W_g d + b_g) on the rows."""
    from composer.cli import main
    from composer.inspect_gates import inspect, split_rows

    out = tmp_path / "run"
    assert main(["train", str(ROOT / "blueprints" / "sarnet.yaml"), "--data", "synthetic-msl:rows=1500",
                 "--epochs", "1", "--out", str(out), "--verbose", "0"]) == 0
    exp = training.load_run(str(out))
    ins = inspect(exp, "valid")
    [gate] = ins.gates
    assert (gate.node, gate.kind) == ("experts", "scenario_experts")
    assert gate.experts == ["shared:0", "shared:1", "shared:2", "shared:3", "own scenario:0", "own scenario:1"]
    layer = exp.model.get_layer("experts")
    frame = split_rows(exp, "valid")
    d = keras.ops.convert_to_numpy(keras.Model(exp.model.input, layer.input[1])(exp.pre.pack(frame, exp.graph.layout)))
    z = d @ keras.ops.convert_to_numpy(layer.gate_kernel) + keras.ops.convert_to_numpy(layer.gate_bias)
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(gate.overall.mean, w.mean(axis=0), atol=1e-6)
    values = frame["scenario"].astype("string").to_numpy()
    for v, stats in gate.scenarios.items():
        np.testing.assert_allclose(stats.mean, w[values == v].mean(axis=0), atol=1e-6)
