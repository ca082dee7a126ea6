"""NumPy reference tests for composer/layers/experts.py (ExpertPool, Gate, Mixture).

Named test_layers_experts.py, not test_experts.py, so it cannot clash with
tests/blocks/test_experts.py under pytest's default (rootdir-less) module naming.
"""
import itertools
import math

import keras
import numpy as np
import pytest
from layer_helpers import randomise_biases

from composer.layers.experts import ExpertPool, Gate, Mixture

TOL = dict(rtol=1e-5, atol=1e-6)


def _weights(layer):
    """Variable path inside the layer (``kernel_0``, ``expert_1/dense_0/kernel``) -> NumPy."""
    return {v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v) for v in layer.weights}


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _relu(x):
    return np.maximum(x, 0.0)


ACTS = {"relu": _relu, "tanh": np.tanh}


def _expert_params(layer):
    """[(kernels, biases)] per layer, kernels (K, in, out) and biases (K, out), either lowering."""
    w = _weights(layer)
    out = []
    for i in range(len(layer.units)):
        if layer.implementation == "einsum":
            out.append((w[f"kernel_{i}"], w[f"bias_{i}"]))
        else:
            out.append((np.stack([w[f"expert_{k}/dense_{i}/kernel"] for k in range(layer.experts)]),
                        np.stack([w[f"expert_{k}/dense_{i}/bias"] for k in range(layer.experts)])))
    return out


def _pool_reference(layer, x):
    act = ACTS[layer.activation]
    experts = []
    for k in range(layer.experts):
        h = x
        for kernels, biases in _expert_params(layer):
            h = act(h @ kernels[k] + biases[k])
        experts.append(h)
    return np.stack(experts, axis=1)


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _gate_reference(layer, x):
    w = _weights(layer)
    h = x
    for i in range(len(layer.hidden)):
        h = _relu(h @ w[f"logits/dense_{i}/kernel"] + w[f"logits/dense_{i}/bias"])
    last = len(layer.hidden)
    logits = h @ w[f"logits/dense_{last}/kernel"] + w[f"logits/dense_{last}/bias"]
    return _softmax(logits / layer.temperature)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)




# -- ExpertPool ------------------------------------------------------------------------------
@pytest.mark.parametrize("implementation", ["einsum", "stacks"])
@pytest.mark.parametrize("units", [[6], [7, 5]], ids=["1_layer", "2_layers"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_expert_pool_matches_numpy(implementation, units, activation):
    layer = ExpertPool(3, units, activation=activation, implementation=implementation)
    x = _inputs((4, 5))
    layer.build(x.shape)
    randomise_biases(layer)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (4, 3, units[-1])
    assert layer.compute_output_shape((None, 5)) == (None, 3, units[-1])
    np.testing.assert_allclose(out, _pool_reference(layer, x), **TOL)


@pytest.mark.parametrize("implementation", ["einsum", "stacks"])
def test_expert_pool_dropout_inactive_at_inference(implementation):
    layer = ExpertPool(2, [16, 8], dropout=0.5, implementation=implementation)
    x = _inputs((6, 5))
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_allclose(out, _pool_reference(layer, x), **TOL)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), out)
    assert not np.allclose(keras.ops.convert_to_numpy(layer(x, training=True)), out)


@pytest.mark.parametrize("implementation", ["einsum", "stacks"])
def test_expert_pool_lowerings_agree_on_same_weights(implementation):
    x = _inputs((4, 5))
    a = ExpertPool(3, [6, 4], implementation=implementation)
    b = ExpertPool(3, [6, 4], implementation="stacks" if implementation == "einsum" else "einsum")
    a.build(x.shape)
    b.build(x.shape)
    randomise_biases(a)
    for i, (kernels, biases) in enumerate(_expert_params(a)):
        if b.implementation == "einsum":
            b.kernels[i].assign(kernels)
            b.biases[i].assign(biases)
        else:
            for k, mlp in enumerate(b._stacks):
                dense = [v for v in mlp.weights if v.path.split("/")[-2] == f"dense_{i}"]
                dense[0].assign(kernels[k])
                dense[1].assign(biases[k])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(a(x)), keras.ops.convert_to_numpy(b(x)),
                               **TOL)


@pytest.mark.parametrize("implementation", ["einsum", "stacks"])
def test_experts_start_different_at_glorot_scale(implementation):
    experts, d, units = 4, 48, [32, 16]
    layer = ExpertPool(experts, units, implementation=implementation)
    layer.build((None, d))
    for (kernels, biases), fan_in, fan_out in zip(_expert_params(layer), [d, *units], units):
        assert kernels.shape == (experts, fan_in, fan_out)
        np.testing.assert_array_equal(biases, 0.0)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        target = math.sqrt(2.0 / (fan_in + fan_out))  # Glorot std of one expert, not of the stack
        for k in range(experts):
            assert np.abs(kernels[k]).max() <= limit + 1e-7
            np.testing.assert_allclose(kernels[k].std(), target, rtol=0.1)
            np.testing.assert_allclose(kernels[k].mean(), 0.0, atol=0.2 * target)
        for a, b in itertools.combinations(range(experts), 2):
            assert not np.allclose(kernels[a], kernels[b]), f"experts {a} and {b} start equal"


def test_expert_pool_rejects_unknown_implementation():
    with pytest.raises(ValueError, match="implementation"):
        ExpertPool(2, [4], implementation="loop")


# -- Gate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [[], [6], [6, 5]], ids=["linear", "hidden_1", "hidden_2"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_gate_matches_numpy_softmax(hidden, temperature):
    layer = Gate(4, hidden=hidden, temperature=temperature)
    x = _inputs((5, 3))
    layer.build(x.shape)
    randomise_biases(layer)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (5, 4)
    assert layer.compute_output_shape((None, 3)) == (None, 4)
    np.testing.assert_allclose(out, _gate_reference(layer, x), **TOL)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, **TOL)
    assert (out > 0).all()


def test_gate_temperature_flattens_weights():
    x = _inputs((8, 3)) * 5
    cold, hot = Gate(4, temperature=1.0), Gate(4, temperature=4.0)
    cold.build(x.shape)
    hot.build(x.shape)
    hot.set_weights(cold.get_weights())
    spread = [keras.ops.convert_to_numpy(g(x)).max(axis=-1) for g in (cold, hot)]
    assert (spread[1] <= spread[0] + 1e-7).all()


# -- Mixture ---------------------------------------------------------------------------------
def test_mixture_one_pool_matches_einsum():
    rng = np.random.default_rng(4)
    weights = _softmax(rng.normal(size=(5, 3))).astype("float32")
    pool = rng.normal(size=(5, 3, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(Mixture()([weights, pool]))
    np.testing.assert_allclose(out, np.einsum("bk,bku->bu", weights, pool), **TOL)
    np.testing.assert_allclose(out, (weights[:, :, None] * pool).sum(axis=1), **TOL)


def test_mixture_two_pools_concatenated_in_order():
    rng = np.random.default_rng(5)
    weights = _softmax(rng.normal(size=(5, 5))).astype("float32")
    first = rng.normal(size=(5, 2, 4)).astype("float32")
    second = rng.normal(size=(5, 3, 4)).astype("float32")
    layer = Mixture()
    out = keras.ops.convert_to_numpy(layer([weights, first, second]))
    expected = np.einsum("bk,bku->bu", weights, np.concatenate([first, second], axis=1))
    np.testing.assert_allclose(out, expected, **TOL)
    onehot = np.zeros((5, 5), "float32")
    onehot[:, 2] = 1.0  # the first expert of the second pool
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer([onehot, first, second])),
                               second[:, 0], **TOL)
    assert layer.compute_output_shape([(None, 5), (None, 2, 4), (None, 3, 4)]) == (None, 4)


# -- serialisation ---------------------------------------------------------------------------
def _roundtrip_config(layer, x):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)),
                                  keras.ops.convert_to_numpy(layer(x)))


@pytest.mark.parametrize("make", [
    lambda: ExpertPool(3, [6, 4], activation="tanh", dropout=0.2, implementation="einsum",
                       name="pool_einsum"),
    lambda: ExpertPool(3, [6, 4], activation="tanh", dropout=0.2, implementation="stacks",
                       name="pool_stacks"),
    lambda: Gate(4, hidden=[6], temperature=2.0, name="gate"),
], ids=["pool_einsum", "pool_stacks", "gate"])
def test_config_roundtrip_and_reload(make, tmp_path):
    x = _inputs((4, 5))
    layer = make()
    layer.build(x.shape)
    randomise_biases(layer)
    _roundtrip_config(layer, x)
    inp = keras.Input(shape=(5,))
    model = keras.Model(inp, layer(inp))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.get_layer(layer.name)) is type(layer)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)),
                                  keras.ops.convert_to_numpy(model(x)))


def test_mixture_config_roundtrip_and_reload(tmp_path):
    rng = np.random.default_rng(6)
    arrays = [_softmax(rng.normal(size=(4, 5))).astype("float32"),
              rng.normal(size=(4, 2, 3)).astype("float32"),
              rng.normal(size=(4, 3, 3)).astype("float32")]
    layer = Mixture(name="mix")
    config = layer.get_config()
    assert Mixture.from_config(config).get_config() == config
    inputs = [keras.Input(shape=a.shape[1:]) for a in arrays]
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("mix")) is Mixture
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(arrays)),
                                  keras.ops.convert_to_numpy(model(arrays)))
