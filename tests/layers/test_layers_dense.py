"""NumPy reference tests for composer/layers/dense.py (MLP, StopGradient).

Named test_layers_dense.py, not test_dense.py, so it cannot clash with tests/blocks/test_dense.py
under pytest's default (rootdir-less) module naming.
"""
import keras
import numpy as np
import pytest
from backend_grad import gradients
from keras import ops

from composer.layers.dense import MLP, CrossNetwork, StopGradient

TOL = dict(rtol=1e-5, atol=1e-6)


def _weights(layer):
    """Variable path inside the layer (``dense_0/kernel``) -> NumPy value."""
    return {v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v) for v in layer.weights}


def _relu(x):
    return np.maximum(x, 0.0)


ACTS = {"relu": _relu, "tanh": np.tanh, "linear": lambda x: x}


def _mlp_reference(layer, x):
    w = _weights(layer)
    h = x
    for i in range(len(layer.units)):
        h = h @ w[f"dense_{i}/kernel"] + w[f"dense_{i}/bias"]
        plain = i == len(layer.units) - 1 and layer.output_activation != "same"
        if plain:
            h = ACTS[layer.output_activation](h)
            continue
        if layer.batch_norm:
            eps = 1e-3  # keras.layers.BatchNormalization's default epsilon
            h = (w[f"batch_norm_{i}/gamma"] * (h - w[f"batch_norm_{i}/moving_mean"])
                 / np.sqrt(w[f"batch_norm_{i}/moving_variance"] + eps) + w[f"batch_norm_{i}/beta"])
        h = ACTS[layer.activation](h)
    return h


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("output_activation", ["same", "linear", "relu"])
def test_mlp_matches_numpy(activation, output_activation):
    layer = MLP([8, 6, 3], activation=activation, output_activation=output_activation)
    x = _inputs((5, 4))
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out, _mlp_reference(layer, x), **TOL)


def test_mlp_linear_output_is_not_clipped():
    layer = MLP([8, 1], output_activation="linear")
    out = keras.ops.convert_to_numpy(layer(_inputs((64, 4))))
    assert (out < 0).any(), "a linear logit must be able to go negative"


def test_mlp_same_applies_activation_to_last_layer():
    layer = MLP([8, 4], activation="relu")
    out = keras.ops.convert_to_numpy(layer(_inputs((64, 4))))
    assert (out >= 0).all()


def test_mlp_batch_norm_inference_uses_moving_statistics():
    layer = MLP([6, 5, 2], batch_norm=True, output_activation="linear")
    layer.build((None, 4))
    rng = np.random.default_rng(1)
    for v in layer.weights:
        name = v.path.rsplit("/", 1)[-1]
        if name in ("gamma", "beta", "moving_mean"):
            v.assign(rng.normal(size=v.shape).astype("float32"))
        elif name == "moving_variance":
            v.assign(rng.uniform(0.5, 2.0, size=v.shape).astype("float32"))
    x = _inputs((5, 4))
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_allclose(out, _mlp_reference(layer, x), **TOL)
    assert [v.path.rsplit("/", 1)[0] for v in layer.weights if v.name == "gamma"] == [
        f"{layer.name}/batch_norm_0", f"{layer.name}/batch_norm_1"]  # no BN on the linear output


def test_mlp_dropout_inactive_at_inference():
    layer = MLP([32, 16], dropout=0.5)
    x = _inputs((8, 4))
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_allclose(out, _mlp_reference(layer, x), **TOL)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), out)
    trained = keras.ops.convert_to_numpy(layer(x, training=True))
    assert not np.allclose(trained, out), "dropout should act in training"


def test_mlp_l2_adds_one_loss_per_kernel():
    layer = MLP([4, 2], l2=0.01, output_activation="linear")
    layer(_inputs((2, 3)))
    w = _weights(layer)
    expected = sum(0.01 * np.sum(w[f"dense_{i}/kernel"] ** 2) for i in range(2))
    np.testing.assert_allclose(sum(float(l) for l in layer.losses), expected, rtol=1e-5)


def test_mlp_compute_output_shape():
    assert MLP([8, 3]).compute_output_shape((None, 5)) == (None, 3)


def test_stop_gradient_forward_identity():
    x = _inputs((3, 4))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(StopGradient()(x)), x)
    assert StopGradient().compute_output_shape((None, 4)) == (None, 4)


def test_stop_gradient_blocks_gradient():
    dense = keras.layers.Dense(3)
    stop = StopGradient()
    x = _inputs((5, 4))
    dense.build((None, 4))
    variables = dense.trainable_variables
    for g in gradients(lambda x: ops.sum(stop(dense(x)) ** 2), [x], variables):
        np.testing.assert_array_equal(g, 0.0)
    for g in gradients(lambda x: ops.sum(dense(x) ** 2), [x], variables):
        assert np.abs(g).sum() > 0


def _roundtrip_config(layer, x):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)),
                                  keras.ops.convert_to_numpy(layer(x)))


def _roundtrip_saved(layer, x, tmp_path):
    inp = keras.Input(shape=x.shape[1:])
    model = keras.Model(inp, layer(inp))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.layers[-1]) is type(layer)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)),
                                  keras.ops.convert_to_numpy(model(x)))


def _cross_reference(layer, x0):
    """DCN-v2: x_{l+1} = x0 * (W_l x_l + b_l) + x_l, W_l = V_l U_l^T when low-rank."""
    w = _weights(layer)
    x = x0
    for i in range(layer.num_layers):
        kernel = w[f"kernel_{i}"] if layer.low_rank is None else w[f"v_{i}"] @ w[f"u_{i}"].T
        x = x0 * (x @ kernel + w[f"bias_{i}"]) + x
    return x


@pytest.mark.parametrize("low_rank", [None, 2])
@pytest.mark.parametrize("layers", [1, 3])
def test_cross_network_matches_numpy(layers, low_rank):
    x = _inputs((5, 6))
    layer = CrossNetwork(layers, low_rank=low_rank)
    layer(x)
    rng = np.random.default_rng(3)
    for v in layer.weights:  # every weight its own values (non-zero biases too), so a swapped
        v.assign(rng.normal(size=v.shape).astype("float32") * 0.5)  # or dropped one shows
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), _cross_reference(layer, x), rtol=1e-4,
                               atol=1e-5)
    d = 6
    per_layer = d * d + d if low_rank is None else 2 * d * low_rank + d
    assert sum(int(np.prod(v.shape)) for v in layer.weights) == layers * per_layer


def test_cross_network_is_degree_two_per_layer():
    """One layer with W = I, b = 0 gives x * x + x: the cross of each input with itself."""
    x = _inputs((3, 4))
    layer = CrossNetwork(1)
    layer(x)
    layer.kernels[0][0].assign(np.eye(4, dtype="float32"))
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), x * x + x, **TOL)


def test_cross_network_in_a_nested_model_summary():
    """Keras's summary reads ``layer.layers`` as a list of sub-layers: the count lives elsewhere."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, CrossNetwork(2, name="cross")(inputs))
    lines = []
    model.summary(expand_nested=True, print_fn=lambda line, **kw: lines.append(line))
    assert any("cross" in line for line in lines)


def test_cross_network_l2_adds_one_loss_per_kernel():
    layer = CrossNetwork(2, low_rank=3, l2=0.1)
    layer(_inputs((2, 5)))
    assert len(layer.losses) == 4  # u and v of each layer; biases are not penalised


@pytest.mark.parametrize("make", [
    lambda: CrossNetwork(2, name="cross"),
    lambda: CrossNetwork(2, low_rank=2, l2=0.01, name="cross_low_rank"),
    lambda: MLP([6, 5, 2], activation="tanh", dropout=0.25, batch_norm=True, l2=0.01,
                output_activation="linear", name="mlp"),
    lambda: MLP([4], name="plain"),
    lambda: StopGradient(name="sg"),
], ids=["cross", "cross_low_rank", "mlp_all_options", "mlp_plain", "stop_gradient"])
def test_config_roundtrip_and_reload(make, tmp_path):
    x = _inputs((4, 3))
    layer = make()
    layer(x)
    for v in layer.weights:  # non-default values, so reloading the wrong tensor would show
        if v.name in ("gamma", "beta", "moving_mean", "bias"):
            v.assign(np.random.default_rng(2).uniform(0.5, 1.5, size=v.shape).astype("float32"))
    _roundtrip_config(layer, x)
    _roundtrip_saved(layer, x, tmp_path)
