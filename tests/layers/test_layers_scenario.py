"""NumPy references, gradient isolation and reload tests for composer/layers/scenario.py."""
import keras
import numpy as np
import pytest
from backend_grad import gradients

from composer.layers.scenario import HmoeFusion, Lhuc, PartitionedNorm, ScenarioTowers, StarFCN

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


def _randomise(layer, seed=3):
    """Non-default values everywhere (scenario kernels start at one, biases at zero)."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign(rng.normal(size=v.shape).astype("float32"))


def _relu(x):
    return np.maximum(x, 0.0)


@pytest.mark.parametrize("routing", ["all_then_own", "per_sample"])
def test_scenario_towers_match_numpy(routing):
    layer = ScenarioTowers(S, [6, 1], output_activation="linear", routing=routing)
    x, ids = _x((9, 4)), _ids(9)
    layer([x, ids])
    _randomise(layer)
    k0, b0, k1, b1 = (_np(w) for w in (layer.kernels[0], layer.biases[0], layer.kernels[1], layer.biases[1]))
    expected = np.stack([_relu(x[i] @ k0[s] + b0[s]) @ k1[s] + b1[s] for i, s in enumerate(ids[:, 0])])
    np.testing.assert_allclose(_np(layer([x, ids])), expected, **TOL)


def test_split_merge_keeps_batch_order():
    layer = ScenarioTowers(S, [5, 1], output_activation="linear")
    x, ids = _x((12, 4)), _ids(12)
    out = _np(layer([x, ids]))
    perm = np.random.default_rng(5).permutation(12)
    np.testing.assert_allclose(_np(layer([x[perm], ids[perm]])), out[perm], **TOL)
    # one row alone gives what it gave inside the mixed batch
    np.testing.assert_allclose(_np(layer([x[3:4], ids[3:4]])), out[3:4], **TOL)


@pytest.mark.parametrize("routing", ["all_then_own", "per_sample"])
def test_star_effective_weight_is_shared_times_scenario(routing):
    layer = StarFCN(S, [6, 1], output_activation="linear", routing=routing)
    x, ids = _x((10, 4)), _ids(10)
    layer([x, ids])
    _randomise(layer)
    w = {v.path.split("/")[-1]: _np(v) for v in layer.weights}
    kernel, bias = layer.effective_weights(0)
    np.testing.assert_allclose(_np(kernel), w["scenario_kernel_0"] * w["shared_kernel_0"][None], **TOL)
    np.testing.assert_allclose(_np(bias), w["scenario_bias_0"] + w["shared_bias_0"][None], **TOL)
    expected = []
    for i, s in enumerate(ids[:, 0]):
        h = _relu(x[i] @ (w["scenario_kernel_0"][s] * w["shared_kernel_0"]) + w["scenario_bias_0"][s]
                  + w["shared_bias_0"])
        expected.append(h @ (w["scenario_kernel_1"][s] * w["shared_kernel_1"]) + w["scenario_bias_1"][s]
                        + w["shared_bias_1"])
    np.testing.assert_allclose(_np(layer([x, ids])), np.stack(expected), **TOL)


def test_star_starts_as_the_shared_network():
    layer = StarFCN(S, [4], output_activation="same")
    x = _x((6, 3))
    a = _np(layer([x, np.zeros((6, 1), "int32")]))
    b = _np(layer([x, np.full((6, 1), 2, "int32")]))
    np.testing.assert_allclose(a, b, **TOL)


def test_partitioned_norm_training_uses_each_scenarios_batch_statistics():
    layer = PartitionedNorm(S, epsilon=1e-3)
    x, ids = _x((16, 4)), _ids(16)
    layer([x, ids])
    _randomise(layer)
    w = {v.path.split("/")[-1]: _np(v) for v in layer.weights}
    out = _np(layer([x, ids], training=True))
    for s in range(S):
        rows = ids[:, 0] == s
        mean, var = x[rows].mean(0), x[rows].var(0)
        ref = (w["gamma"] * w["scenario_gamma"][s] * (x[rows] - mean) / np.sqrt(var + 1e-3)
               + w["beta"] + w["scenario_beta"][s])
        np.testing.assert_allclose(out[rows], ref, **TOL)


def test_partitioned_norm_inference_uses_each_scenarios_moving_statistics():
    """Two scenarios with very different means: each is normalised with its own statistics."""
    layer = PartitionedNorm(2, momentum=0.5)
    rng = np.random.default_rng(0)
    for _ in range(40):  # mixed batches: both scenarios in every batch
        ids = rng.integers(0, 2, size=(64, 1)).astype("int32")
        x = np.where(ids == 0, rng.normal(-5, 1, (64, 3)), rng.normal(8, 3, (64, 3))).astype("float32")
        layer([x, ids], training=True)
    mean = _np(layer.moving_mean)
    np.testing.assert_allclose(mean[0], -5, atol=0.6)
    np.testing.assert_allclose(mean[1], 8, atol=1.2)
    ids = np.array([[0]] * 200 + [[1]] * 200, "int32")
    x = np.concatenate([rng.normal(-5, 1, (200, 3)), rng.normal(8, 3, (200, 3))]).astype("float32")
    out = _np(layer([x, ids], training=False))
    for s in (0, 1):
        part = out[ids[:, 0] == s]
        assert abs(part.mean()) < 0.3 and 0.7 < part.std() < 1.3


def test_partitioned_norm_leaves_absent_scenarios_moving_statistics_alone():
    layer = PartitionedNorm(S, momentum=0.5)
    x = _x((8, 2)) + 10
    layer([x, np.zeros((8, 1), "int32")], training=True)
    mean, var = _np(layer.moving_mean), _np(layer.moving_variance)
    assert np.all(mean[0] > 4)
    np.testing.assert_array_equal(mean[1:], 0.0)
    np.testing.assert_array_equal(var[1:], 1.0)


@pytest.mark.parametrize("per_scenario", [False, True])
def test_hmoe_fusion_matches_numpy(per_scenario):
    layer = HmoeFusion(S, per_scenario_weights=per_scenario)
    x, ids = _x((7, 5)), _ids(7)
    logits = [_x((7, 1), seed=10 + j) for j in range(S)]
    layer([x, ids, *logits])
    _randomise(layer)
    k, b = _np(layer.kernel), _np(layer.bias)
    scores = 1 / (1 + np.exp(-np.concatenate(logits, axis=1)))
    expected = []
    for i, s in enumerate(ids[:, 0]):
        net = s if per_scenario else 0
        z = x[i] @ k[net] + b[net]
        w = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        expected.append([w @ scores[i]])
    np.testing.assert_allclose(_np(layer([x, ids, *logits])), np.array(expected), **TOL)


def test_hmoe_fusion_stops_gradient_into_other_scenarios_scores():
    layer = HmoeFusion(S, per_scenario_weights=True)
    x = _x((6, 4))
    ids = np.zeros((6, 1), "int32")  # every sample is scenario 0
    logits = [_x((6, 1), seed=20 + j) for j in range(S)]
    grads = gradients(lambda *logits: keras.ops.sum(layer([x, ids, *logits])), logits)
    assert np.abs(grads[0]).sum() > 0
    for g in grads[1:]:
        np.testing.assert_array_equal(g, 0.0)


@pytest.mark.parametrize("shape", [(6, 3, 4), (6, 5)])
def test_lhuc_scales_fields_or_units_in_0_2(shape):
    layer = Lhuc(hidden=[4])
    x, cond = _x(shape), _x((6, 2), seed=9)
    out = _np(layer([x, cond]))
    w = {v.path.split("/", 1)[1]: _np(v) for v in layer.weights}
    h = _relu(cond @ w["hidden_0/kernel"] + w["hidden_0/bias"])
    scale = 2 / (1 + np.exp(-(h @ w["scales/kernel"] + w["scales/bias"])))
    assert np.all((scale > 0) & (scale < 2))
    ref = (x * scale[:, :, None]).reshape(6, -1) if len(shape) == 3 else x * scale
    np.testing.assert_allclose(out, ref, **TOL)


def _model(layer, x_dim=4, extra=0):
    x = keras.Input((x_dim,), name="x")
    sc = keras.Input((1,), dtype="int32", name="scenario")
    logits = [keras.Input((1,), name=f"l{j}") for j in range(extra)]
    out = layer([x, sc, *logits])
    return keras.Model([x, sc, *logits], out)


@pytest.mark.parametrize("make,extra", [
    (lambda: ScenarioTowers(S, [4, 1], output_activation="linear", routing="per_sample"), 0),
    (lambda: StarFCN(S, [4, 1], output_activation="linear"), 0),
    (lambda: PartitionedNorm(S, momentum=0.9), 0),
    (lambda: HmoeFusion(S, per_scenario_weights=True), S),
])
def test_save_and_reload_with_safe_mode(make, extra, tmp_path):
    model = _model(make(), extra=extra)
    for v in model.weights:
        v.assign(np.random.default_rng(2).normal(size=v.shape).astype("float32") ** 2 + 0.1)
    batch = [_x((8, 4)), _ids(8)] + [_x((8, 1), seed=30 + j) for j in range(extra)]
    expected = _np(model(batch))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(_np(loaded(batch)), expected)


def test_lhuc_save_and_reload(tmp_path):
    f = keras.Input((3, 4))
    c = keras.Input((2,))
    model = keras.Model([f, c], Lhuc(hidden=[5])([f, c]))
    batch = [_x((4, 3, 4)), _x((4, 2), seed=3)]
    expected = _np(model(batch))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(_np(loaded(batch)), expected)
