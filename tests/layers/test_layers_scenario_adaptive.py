"""NumPy references, stop-gradients and reload tests for composer/layers/scenario_adaptive.py
(SAR-Net, AdaSparse, AdaptDHM)."""
import keras
import numpy as np
import pytest
from backend_grad import gradients

from composer.layers.scenario_adaptive import (AdaSparseMLP, DistributionTowers, ScenarioAwareAttention,
                                               ScenarioExperts, ScenarioTransform)

TOL = dict(rtol=1e-5, atol=1e-5)
S = 3


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(7)


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _ids(n, seed=1):
    return np.random.default_rng(seed).integers(0, S, size=(n, 1)).astype("int32")


def _np(t):
    return keras.ops.convert_to_numpy(t)


def _randomise(layer, seed=3, skip=()):
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        if not any(s in v.path for s in skip):
            v.assign(rng.normal(size=v.shape).astype("float32"))


def _w(layer):
    return {v.path.split("/", 1)[1]: _np(v) for v in layer.weights}


def _relu(x):
    return np.maximum(x, 0.0)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------- SAR-Net


def _attention_reference(w, items, scenario, candidate=None, mask=None, heads=2, k=4):
    n, length, _ = items.shape
    q_in = scenario if candidate is None else np.concatenate([scenario, candidate], axis=1)
    out = np.zeros((n, heads * k), "float32")
    for i in range(n):
        q = (q_in[i] @ w["query_kernel"] + w["query_bias"]).reshape(heads, k)
        keys = np.concatenate([items[i], np.repeat(scenario[i][None], length, 0)], axis=1)
        kk = (keys @ w["key_kernel"] + w["key_bias"]).reshape(length, heads, k)
        v = (items[i] @ w["value_kernel"] + w["value_bias"]).reshape(length, heads, k)
        valid = np.ones(length, bool) if mask is None else mask[i] > 0
        for h in range(heads):
            if not valid.any():
                continue
            scores = kk[valid, h] @ q[h] / np.sqrt(k)
            a = _softmax(scores)
            out[i, h * k:(h + 1) * k] = a @ v[valid, h]
    return out


def test_scenario_attention_over_fields_matches_numpy():
    layer = ScenarioAwareAttention(heads=2, key_dim=4)
    items, scenario = _x((6, 5, 8)), _x((6, 3), seed=2)
    layer([items, scenario])
    _randomise(layer)
    np.testing.assert_allclose(_np(layer([items, scenario])), _attention_reference(_w(layer), items, scenario),
                               **TOL)


def test_scenario_attention_over_a_masked_sequence_with_a_candidate_matches_numpy():
    layer = ScenarioAwareAttention(heads=2, key_dim=4, candidate=True, masked=True)
    items, scenario, cand = _x((6, 5, 8)), _x((6, 3), seed=2), _x((6, 8), seed=4)
    mask = (np.random.default_rng(5).random((6, 5)) < 0.6).astype("float32")
    mask[0] = 0.0  # an empty history
    layer([items, scenario, cand, mask])
    _randomise(layer)
    out = _np(layer([items, scenario, cand, mask]))
    np.testing.assert_allclose(out, _attention_reference(_w(layer), items, scenario, cand, mask), **TOL)
    np.testing.assert_array_equal(out[0], 0.0)
    # what sits at a padded position never changes a result
    noisy = np.where(mask[..., None] > 0, items, 100.0).astype("float32")
    np.testing.assert_allclose(_np(layer([noisy, scenario, cand, mask])), out, **TOL)


def test_scenario_attention_keys_depend_on_the_scenario():
    layer = ScenarioAwareAttention(heads=1, key_dim=4)
    items = _x((1, 5, 8))
    layer([items, _x((1, 3))])
    a = _np(layer.attention_weights([items, _x((1, 3), seed=1)]))
    b = _np(layer.attention_weights([items, _x((1, 3), seed=2)]))
    assert not np.allclose(a, b)


def test_scenario_transform_matches_numpy():
    layer = ScenarioTransform(S)
    x, ids = _x((9, 4)), _ids(9)
    np.testing.assert_allclose(_np(layer([x, ids])), x, **TOL)  # starts as the identity
    _randomise(layer)
    w = _w(layer)
    np.testing.assert_allclose(_np(layer([x, ids])), x * w["scale"][ids[:, 0]] + w["shift"][ids[:, 0]], **TOL)


def test_scenario_experts_match_numpy():
    layer = ScenarioExperts(S, shared=3, specific=2, units=[6, 5])
    x, g, ids = _x((8, 4)), _x((8, 3), seed=2), _ids(8)
    layer([x, g, ids])
    _randomise(layer)
    w = _w(layer)

    def mlp(v, pool, e):
        h = _relu(v @ w[f"{pool}/kernel_0"][e] + w[f"{pool}/bias_0"][e])
        return _relu(h @ w[f"{pool}/kernel_1"][e] + w[f"{pool}/bias_1"][e])

    expected = []
    for i, s in enumerate(ids[:, 0]):
        experts = [mlp(x[i], "shared", e) for e in range(3)] + [mlp(x[i], "specific", s * 2 + j) for j in range(2)]
        gate = _softmax(g[i] @ w["gate_kernel"] + w["gate_bias"])
        expected.append(gate @ np.stack(experts))
    np.testing.assert_allclose(_np(layer([x, g, ids])), np.stack(expected), **TOL)


def test_scenario_experts_never_train_another_scenarios_experts():
    layer = ScenarioExperts(S, shared=2, specific=2, units=[4])
    x, g = _x((6, 4)), _x((6, 3), seed=2)
    ids = np.zeros((6, 1), "int32")  # every sample is scenario 0
    layer([x, g, ids])
    kernel = layer.specific_experts.kernels[0]  # (S * specific, in, out): scenario s owns rows 2s, 2s+1
    (grad,) = gradients(lambda: keras.ops.sum(layer([x, g, ids])), [], [kernel])
    assert np.abs(grad[:2]).sum() > 0
    np.testing.assert_array_equal(grad[2:], 0.0)


# ---------------------------------------------------------------------------- AdaSparse


def _pi(form, v, beta=1.0, alpha=1.0, epsilon=0.1):
    if form == "scaling":
        return beta * _sigmoid(v)
    if form == "binarization":
        return (v >= 0).astype("float32")
    pi = beta * _sigmoid(alpha * v)
    return pi * (pi >= epsilon)


@pytest.mark.parametrize("form", ["scaling", "binarization", "fusion"])
def test_adasparse_matches_numpy(form):
    layer = AdaSparseMLP([6, 5], form=form, beta=2.0, alpha=3.0, epsilon=0.3)
    x, cond = _x((8, 4)), _x((8, 3), seed=2)
    layer([x, cond])
    _randomise(layer)
    w = _w(layer)
    h = x
    for i in range(2):
        pi = _pi(form, cond @ w[f"pruner_kernel_{i}"] + w[f"pruner_bias_{i}"], 2.0, 3.0, 0.3)
        h = pi * _relu(h @ w[f"kernel_{i}"] + w[f"bias_{i}"])
    np.testing.assert_allclose(_np(layer([x, cond])), h, **TOL)
    factors = [_np(f) for f in layer.pruning_factors([x, cond])]
    assert [f.shape for f in factors] == [(8, 6), (8, 5)]
    if form != "scaling":
        assert all(np.any(f == 0) for f in factors)  # pruned exactly


def test_adasparse_regulariser_matches_numpy_and_only_in_training():
    layer = AdaSparseMLP([6, 5], form="scaling", epsilon=0.4, target=0.5, tolerance=0.05, sparsity_weight=0.7)
    x, cond = _x((16, 4)), _x((16, 3), seed=2)
    layer([x, cond])
    _randomise(layer)
    w = _w(layer)
    layer([x, cond], training=False)
    assert layer.losses == []
    layer([x, cond], training=True)
    (loss,) = layer.losses
    expected = 0.0
    for i in range(2):
        pi = _sigmoid(cond @ w[f"pruner_kernel_{i}"] + w[f"pruner_bias_{i}"])
        gap = 0.5 - (pi < 0.4).mean()
        expected += (np.sign(gap) if abs(gap) > 0.05 else 0.0) * pi.mean()
    np.testing.assert_allclose(float(_np(loss)), 0.7 * expected, **TOL)
    assert expected != 0.0


def test_adasparse_regulariser_pushes_factors_toward_the_target():
    """Sparsity below the target: the regulariser's gradient lowers every factor (pushes the
    pruner's logits down); above it, it raises them."""
    for target, direction in ((0.9, 1.0), (0.0, -1.0)):
        layer = AdaSparseMLP([6], form="scaling", epsilon=0.05, target=target, tolerance=0.01, sparsity_weight=1.0)
        x, cond = _x((16, 4)), _x((16, 3), seed=2)
        layer([x, cond])
        if target == 0.0:  # start with most neurons pruned
            layer.pruner_biases[0].assign(np.full((6,), -6.0, "float32"))

        (grad,) = gradients(lambda: layer.sparsity_loss(layer.pruning_factors([x, cond])), [],
                            [layer.pruner_biases[0]])
        assert np.all(direction * grad > 0), grad


def test_adasparse_binarization_passes_the_sigmoid_gradient_straight_through():
    layer = AdaSparseMLP([4], form="binarization", alpha=2.0)
    x, cond = _x((5, 3)), _x((5, 2), seed=2)
    layer([x, cond])
    _randomise(layer)
    bias = layer.pruner_biases[0]
    (grad,) = gradients(lambda: keras.ops.sum(layer.pruning_factors([x, cond])[0]), [], [bias])
    v = cond @ _np(layer.pruner_kernels[0]) + _np(bias)
    s = _sigmoid(2.0 * v)
    np.testing.assert_allclose(grad, (2.0 * s * (1 - s)).sum(axis=0), **TOL)


# ---------------------------------------------------------------------------- AdaptDHM


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


@pytest.mark.parametrize("tower", ["star", "separate"])
def test_distribution_towers_match_numpy(tower):
    layer = DistributionTowers(4, [6, 1], output_activation="linear", tower=tower)
    x, r = _x((10, 5)), _x((10, 3), seed=2)
    layer([x, r])
    _randomise(layer)
    w = _w(layer)
    cluster = np.argmax(_unit(r) @ _unit(w["centroids"]).T, axis=1)
    np.testing.assert_array_equal(_np(layer.cluster_of([x, r]))[:, 0], cluster)
    expected = []
    for i, k in enumerate(cluster):
        if tower == "star":
            k0 = w["towers/scenario_kernel_0"][k] * w["towers/shared_kernel_0"]
            b0 = w["towers/scenario_bias_0"][k] + w["towers/shared_bias_0"]
            k1 = w["towers/scenario_kernel_1"][k] * w["towers/shared_kernel_1"]
            b1 = w["towers/scenario_bias_1"][k] + w["towers/shared_bias_1"]
        else:
            k0, b0 = w["towers/kernel_0"][k], w["towers/bias_0"][k]
            k1, b1 = w["towers/kernel_1"][k], w["towers/bias_1"][k]
        expected.append(_relu(x[i] @ k0 + b0) @ k1 + b1)
    np.testing.assert_allclose(_np(layer([x, r])), np.stack(expected), **TOL)


def test_distribution_towers_update_centroids_by_ema_in_training_only():
    layer = DistributionTowers(3, [4, 1], output_activation="linear", momentum=0.8, temperature=0.5)
    x, r = _x((12, 5)), _x((12, 3), seed=2)
    layer([x, r])
    before = _np(layer.centroids).copy()
    out_before = _np(layer([x, r], training=False))
    np.testing.assert_array_equal(_np(layer.centroids), before)
    out_train = _np(layer([x, r], training=True))
    np.testing.assert_allclose(out_train, out_before, **TOL)  # routed on the centroids before the batch
    u, c = _unit(r), _unit(before)
    q = _softmax(u @ c.T / 0.5, axis=1)
    means = q.T @ u / q.sum(axis=0)[:, None]
    np.testing.assert_allclose(_np(layer.centroids), _unit(0.8 * c + 0.2 * means), **TOL)
    assert [v.path.split("/")[-1] for v in layer.non_trainable_weights] == ["centroids"]


def test_distribution_towers_route_without_gradient():
    """The clustering reads the representation through a stop-gradient: the routing input gets
    no gradient, the towers' input does."""
    layer = DistributionTowers(3, [4, 1], output_activation="linear")
    x, r = _x((8, 5)), _x((8, 3), seed=2)
    gx, gr = gradients(lambda x, r: keras.ops.sum(layer([x, r])), [x, r])
    assert np.abs(gx).sum() > 0
    np.testing.assert_array_equal(gr, 0.0)


def test_distribution_towers_centroids_move_toward_their_clusters():
    """Two well-separated groups: after some training batches each centroid that serves a group
    points at it, and the groups are routed to different towers."""
    layer = DistributionTowers(2, [4, 1], output_activation="linear", momentum=0.5, temperature=0.1)
    rng = np.random.default_rng(0)
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    r = np.concatenate([a + 0.05 * rng.normal(size=(32, 3)), b + 0.05 * rng.normal(size=(32, 3))]).astype("float32")
    x = _x((64, 5))
    layer([x, r])
    layer.centroids.assign(np.array([[1.0, 0.2, 0.0], [0.2, 1.0, 0.0]], "float32"))
    for _ in range(20):
        layer([x, r], training=True)
    c = _unit(_np(layer.centroids))
    assert c[0] @ a > 0.99 and c[1] @ b > 0.99
    ids = _np(layer.cluster_of([x, r]))[:, 0]
    assert set(ids[:32]) == {0} and set(ids[32:]) == {1}


# ---------------------------------------------------------------------------- reload


@pytest.mark.parametrize("make,batch", [
    (lambda: ScenarioAwareAttention(2, 4, candidate=True, masked=True),
     lambda: [_x((6, 5, 8)), _x((6, 3), 2), _x((6, 8), 4), (np.arange(30).reshape(6, 5) % 3 > 0).astype("float32")]),
    (lambda: ScenarioTransform(S), lambda: [_x((6, 4)), _ids(6)]),
    (lambda: ScenarioExperts(S, shared=2, specific=2, units=[4]), lambda: [_x((6, 4)), _x((6, 3), 2), _ids(6)]),
    (lambda: AdaSparseMLP([5, 4], form="fusion", beta=2.0), lambda: [_x((6, 4)), _x((6, 3), 2)]),
    (lambda: DistributionTowers(3, [4, 1], output_activation="linear"), lambda: [_x((6, 4)), _x((6, 3), 2)]),
])
def test_save_and_reload_with_safe_mode(make, batch, tmp_path):
    data = batch()
    ins = [keras.Input(a.shape[1:], dtype=a.dtype.name) for a in data]
    model = keras.Model(ins, make()(ins))
    rng = np.random.default_rng(2)
    for v in model.weights:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    expected = _np(model(data))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(_np(loaded(data)), expected)
