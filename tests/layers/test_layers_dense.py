"""NumPy reference tests for composer/layers/dense.py (MLP, StopGradient).

Named test_layers_dense.py, not test_dense.py, so it cannot clash with tests/blocks/test_dense.py
under pytest's default (rootdir-less) module naming.
"""
import keras
import numpy as np
import pytest
from backend_grad import gradients
from keras import ops

from composer.layers.dense import MLP, StopGradient

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


@pytest.mark.parametrize("make", [
    lambda: MLP([6, 5, 2], activation="tanh", dropout=0.25, batch_norm=True, l2=0.01,
                output_activation="linear", name="mlp"),
    lambda: MLP([4], name="plain"),
    lambda: StopGradient(name="sg"),
], ids=["mlp_all_options", "mlp_plain", "stop_gradient"])
def test_config_roundtrip_and_reload(make, tmp_path):
    x = _inputs((4, 3))
    layer = make()
    layer(x)
    for v in layer.weights:  # non-default values, so reloading the wrong tensor would show
        if v.name in ("gamma", "beta", "moving_mean", "bias"):
            v.assign(np.random.default_rng(2).uniform(0.5, 1.5, size=v.shape).astype("float32"))
    _roundtrip_config(layer, x)
    _roundtrip_saved(layer, x, tmp_path)
