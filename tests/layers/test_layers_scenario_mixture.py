"""NumPy references, gradient isolation and reload tests for composer/layers/scenario_mixture.py."""
import keras
import numpy as np
import pytest
from backend_grad import gradients

from composer.layers.scenario_mixture import HyperAdapter, M3oEFusion, ScenarioGate

TOL = dict(rtol=1e-5, atol=1e-5)
S = 3


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(7)


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _ids(n, seed=1):
    ids = np.random.default_rng(seed).integers(0, S, size=(n, 1)).astype("int32")
    ids[:S, 0] = np.arange(S)  # every scenario present
    return ids


def _np(t):
    return keras.ops.convert_to_numpy(t)


def _randomise(layer, seed=3):
    """Non-default values everywhere (biases start at zero, norm scales at one); variances stay
    positive."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        value = rng.normal(size=v.shape).astype("float32")
        v.assign(np.abs(value) + 0.5 if "variance" in v.path else value)


def _w(layer):
    return {v.path.split("/", 1)[1]: _np(v) for v in layer.weights}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _adapter_reference(w, h, inst, ids, per_scenario, rank, norm, training):
    out = []
    for i, s in enumerate(ids[:, 0]):
        f = s if per_scenario else 0
        z = inst[i].reshape(rank, rank)
        down = _sigmoid(h[i] @ w["down_u"][f] @ z @ w["down_v"][f] + w["down_bias"][f])
        out.append(down @ w["up_u"][f] @ z @ w["up_v"][f] + w["up_bias"][f])
    up = np.stack(out)
    if not norm:
        return h + up
    n = {k.split("/")[-1]: v for k, v in w.items() if k.startswith("domain_norm")}
    normed = np.empty_like(up)
    for s in range(S):
        rows = ids[:, 0] == s
        mean, var = ((up[rows].mean(0), up[rows].var(0)) if training
                     else (n["moving_mean"][s], n["moving_variance"][s]))
        normed[rows] = (n["gamma"] * n["scenario_gamma"][s] * (up[rows] - mean) / np.sqrt(var + 1e-3)
                        + n["beta"] + n["scenario_beta"][s])
    return h + normed


@pytest.mark.parametrize("per_scenario", [True, False])
@pytest.mark.parametrize("norm,training", [(False, False), (True, False), (True, True)])
def test_hyper_adapter_matches_numpy(per_scenario, norm, training):
    rank = 3
    layer = HyperAdapter(S, 5, per_scenario=per_scenario, domain_norm=norm)
    h, inst, ids = _x((12, 6)), _x((12, rank * rank), seed=4), _ids(12)
    layer([h, inst, ids])
    _randomise(layer)
    w = _w(layer)
    assert w["down_u"].shape == ((S if per_scenario else 1), 6, rank)
    expected = _adapter_reference(w, h, inst, ids, per_scenario, rank, norm, training)
    np.testing.assert_allclose(_np(layer([h, inst, ids], training=training)), expected, **TOL)


def test_hyper_adapter_weights_are_the_low_rank_product():
    """The adapter's down-projection of a sample equals h @ (U_s Z V_s): the paper's factorised
    weight, applied without building it."""
    layer = HyperAdapter(S, 4, domain_norm=False, activation="linear")
    h, inst, ids = _x((5, 6)), _x((5, 4), seed=2), _ids(5)
    layer([h, inst, ids])
    _randomise(layer)
    w = _w(layer)
    for i, s in enumerate(ids[:, 0]):
        z = inst[i].reshape(2, 2)
        down_weight = w["down_u"][s] @ z @ w["down_v"][s]  # (6, 4)
        up_weight = w["up_u"][s] @ z @ w["up_v"][s]  # (4, 6)
        ref = h[i] + (h[i] @ down_weight + w["down_bias"][s]) @ up_weight + w["up_bias"][s]
        np.testing.assert_allclose(_np(layer([h[i:i + 1], inst[i:i + 1], ids[i:i + 1]]))[0], ref, **TOL)


def test_hyper_adapter_refuses_an_instance_that_is_not_square():
    with pytest.raises(ValueError, match="not a square"):
        HyperAdapter(S, 4)([_x((4, 6)), _x((4, 5)), _ids(4)])


def test_hyper_adapter_a_scenario_0_batch_never_updates_other_scenarios_factors():
    layer = HyperAdapter(S, 4)
    h, inst = _x((8, 6)), _x((8, 9), seed=2)
    ids = np.zeros((8, 1), "int32")
    layer([h, inst, ids])
    _randomise(layer)
    per = [v for v in layer.trainable_variables if v.shape[0] == S]
    assert len(per) == 8  # down/up U, V, biases and the domain norm's scenario scale and shift
    grads = gradients(lambda: keras.ops.sum(layer([h, inst, ids], training=True) ** 2), [], per)
    for v, g in zip(per, grads):
        assert np.abs(g[0]).sum() > 0, v.path
        np.testing.assert_array_equal(g[1:], 0.0, err_msg=v.path)


@pytest.mark.parametrize("routing", ["all_then_own", "per_sample"])
def test_scenario_gate_matches_numpy(routing):
    layer = ScenarioGate(S, 4, temperature=2.0, routing=routing)
    x, ids = _x((9, 5)), _ids(9)
    layer([x, ids])
    _randomise(layer)
    k, b = _np(layer.kernel), _np(layer.bias)
    expected = np.stack([_softmax((x[i] @ k[s] + b[s]) / 2.0) for i, s in enumerate(ids[:, 0])])
    out = _np(layer([x, ids]))
    np.testing.assert_allclose(out, expected, **TOL)
    np.testing.assert_allclose(out.sum(-1), 1.0, **TOL)


def _fusion_inputs(n=7, tasks=2, width=4):
    return [_x((n, width)), _x((n, S, width), seed=5), _x((n, tasks, width), seed=6), _ids(n)]


def _fusion_reference(layer, inputs, task_index):
    shared, domain, task, ids = inputs
    logits = {v.path.split("/")[-1]: _np(v) for v in layer.weights}
    alpha = _softmax(logits["fusion_logits"])
    t_count = task.shape[1]
    out = []
    for i, s in enumerate(ids[:, 0]):
        if "domain_balance_logits" in logits:
            own = _softmax(logits["domain_balance_logits"])[0]
            d_mix = own * domain[i, s] + (1 - own) / (S - 1) * (domain[i].sum(0) - domain[i, s])
        else:
            d_mix = domain[i, s]
        if "task_balance_logits" in logits:
            own = _softmax(logits["task_balance_logits"])[0]
            t_mix = own * task[i, task_index] + (1 - own) / (t_count - 1) * (task[i].sum(0) - task[i, task_index])
        else:
            t_mix = task[i, task_index]
        out.append(alpha[0] * shared[i] + alpha[1] * d_mix + alpha[2] * t_mix)
    return np.stack(out)


@pytest.mark.parametrize("task_index,tasks", [(0, 3), (2, 3), (0, 1)])
@pytest.mark.parametrize("balance", [True, False])
def test_m3oe_fusion_matches_numpy(task_index, tasks, balance):
    layer = M3oEFusion(task_index, domain_balance=balance, task_balance=balance)
    inputs = _fusion_inputs(tasks=tasks)
    layer(inputs)
    _randomise(layer)
    names = {v.path.split("/")[-1] for v in layer.weights}
    assert ("domain_balance_logits" in names) == balance
    assert ("task_balance_logits" in names) == (balance and tasks > 1)
    np.testing.assert_allclose(_np(layer(inputs)), _fusion_reference(layer, inputs, task_index), **TOL)


def test_m3oe_fusion_starts_at_uniform_weights():
    layer = M3oEFusion(0)
    layer(_fusion_inputs())
    alpha, own_domain, own_task = (_np(w) for w in layer.weights_by_level())
    np.testing.assert_allclose(alpha, [1 / 3] * 3, **TOL)
    np.testing.assert_allclose([own_domain, own_task], [0.5, 0.5], **TOL)


def test_m3oe_fusion_without_domain_balance_reads_only_the_own_domain_expert():
    """A scenario-0 sample sends no gradient into another scenario's domain expert."""
    layer = M3oEFusion(1, domain_balance=False)
    shared, domain, task, _ = _fusion_inputs()
    ids = np.zeros((7, 1), "int32")
    layer([shared, domain, task, ids])
    _, g_domain, _ = gradients(lambda s, d, t: keras.ops.sum(layer([s, d, t, ids]) ** 2),
                               [shared, domain, task])
    assert np.abs(g_domain[:, 0]).sum() > 0
    np.testing.assert_array_equal(g_domain[:, 1:], 0.0)


def _model(layer, shapes):
    ins = [keras.Input(s, name=f"in{i}") for i, s in enumerate(shapes)]
    sc = keras.Input((1,), dtype="int32", name="scenario")
    return keras.Model([*ins, sc], layer([*ins, sc]))


@pytest.mark.parametrize("make,shapes", [
    (lambda: HyperAdapter(S, 4, momentum=0.9), [(6,), (9,)]),
    (lambda: HyperAdapter(S, 4, per_scenario=False, domain_norm=False, activation="relu"), [(6,), (9,)]),
    (lambda: ScenarioGate(S, 4, temperature=0.5, routing="per_sample"), [(6,)]),
    (lambda: M3oEFusion(1, task_balance=False), [(4,), (S, 4), (2, 4)]),
])
def test_save_and_reload_with_safe_mode(make, shapes, tmp_path):
    model = _model(make(), shapes)
    for v in model.weights:
        v.assign(np.random.default_rng(2).normal(size=v.shape).astype("float32") ** 2 + 0.1)
    batch = [_x((8, *s), seed=10 + i) for i, s in enumerate(shapes)] + [_ids(8)]
    expected = _np(model(batch))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(_np(loaded(batch)), expected)
