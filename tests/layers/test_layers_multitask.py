"""NumPy reference tests for composer/layers/multitask.py: DSelect-k's gate (smooth-step,
binary-code selectors, entropy regulariser), AITM's attention transfer and calibrator, and STEM's
mixture with stop-gradient pools. Each layer also saves and reloads in safe mode."""
import math

import keras
import numpy as np
import pytest
from backend_grad import gradients
from layer_helpers import randomise_biases

from composer.layers.multitask import (AitAttention, AitmCalibrator, DSelectGate, StemMixture,
                                       binary_codes, smooth_step)

TOL = dict(rtol=1e-5, atol=1e-6)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _weights(layer):
    return {v.path.split("/", 1)[1]: _np(v) for v in layer.weights}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


# -- DSelect-k --------------------------------------------------------------------------------
def _smooth_step_reference(t, gamma):
    t = np.asarray(t, dtype="float64")
    cubic = -2 / gamma**3 * t**3 + 3 / (2 * gamma) * t + 0.5
    return np.where(t <= -gamma / 2, 0.0, np.where(t >= gamma / 2, 1.0, cubic))


@pytest.mark.parametrize("gamma", [1.0, 0.5, 4.0])
def test_smooth_step_matches_its_definition(gamma):
    t = np.linspace(-gamma, gamma, 41).astype("float32")
    np.testing.assert_allclose(_np(smooth_step(keras.ops.convert_to_tensor(t), gamma)),
                               _smooth_step_reference(t, gamma), **TOL)
    at = _np(smooth_step(keras.ops.convert_to_tensor(np.array([-gamma / 2, 0.0, gamma / 2], "float32")), gamma))
    np.testing.assert_allclose(at, [0.0, 0.5, 1.0], atol=1e-6)  # continuous at both ends


def test_binary_codes_most_significant_bit_first():
    np.testing.assert_array_equal(binary_codes(4), [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert binary_codes(8)[5].tolist() == [1, 0, 1]
    assert binary_codes(2).tolist() == [[0], [1]]


def _dselect_reference(layer, x):
    w = _weights(layer)
    n, k, m = layer.experts, layer.k, layer.bits
    z = (x @ w["z_logits/kernel"] + w["z_logits/bias"]).reshape(-1, k, 1, m)
    s = _smooth_step_reference(z, layer.gamma)
    codes = binary_codes(n)[None, None]  # (1, 1, n, m)
    r = np.prod(np.where(codes == 1, s, 1 - s), axis=-1)  # (B, k, n)
    if k == 1:
        assert "w_logits/kernel" not in w
        return r[:, 0], r
    sel = _softmax(x @ w["w_logits/kernel"] + w["w_logits/bias"])
    return np.einsum("bk,bkn->bn", sel, r), r


@pytest.mark.parametrize("experts, k, gamma", [(4, 2, 1.0), (8, 3, 0.5), (2, 1, 2.0)])
def test_dselect_gate_matches_numpy_and_sums_to_one(experts, k, gamma):
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    layer = DSelectGate(experts, k, gamma=gamma)
    layer.build(x.shape)
    rng = np.random.default_rng(1)
    for v in layer.weights:  # logits across the cubic region and past it
        v.assign(rng.normal(scale=0.4 * gamma, size=v.shape).astype("float32"))
    out = _np(layer(x))
    want, r = _dselect_reference(layer, x)
    np.testing.assert_allclose(out, want, **TOL)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.sum(axis=-1), 1.0, atol=1e-5)  # each selector alone sums to 1
    assert np.all(out >= 0)


def test_dselect_gate_is_exactly_k_sparse_once_the_bits_saturate():
    """Logits beyond ±gamma/2 make every selector one-hot: selector 0 codes 101 (expert 5),
    selector 1 codes 010 (expert 2); the weights are the selectors' softmax there, 0 elsewhere."""
    x = np.random.default_rng(2).normal(size=(4, 3)).astype("float32")
    layer = DSelectGate(8, 2, gamma=1.0)
    layer.build(x.shape)
    layer._z.kernel.assign(np.zeros((3, 6), "float32"))
    layer._z.bias.assign(np.array([3.0, -3.0, 3.0, -3.0, 3.0, -3.0], "float32"))
    out = _np(layer(x))
    assert np.all(np.count_nonzero(out, axis=1) == 2)
    sel = _softmax(x @ _np(layer._w.kernel) + _np(layer._w.bias))
    np.testing.assert_allclose(out[:, 5], sel[:, 0], **TOL)
    np.testing.assert_allclose(out[:, 2], sel[:, 1], **TOL)
    np.testing.assert_array_equal(out[:, [0, 1, 3, 4, 6, 7]], 0.0)


def test_dselect_gate_two_selectors_on_one_expert_give_one_non_zero():
    x = np.ones((2, 3), "float32")
    layer = DSelectGate(4, 2)
    layer.build(x.shape)
    layer._z.kernel.assign(np.zeros((3, 4), "float32"))
    layer._z.bias.assign(np.array([1.0, -1.0, 1.0, -1.0], "float32"))  # both select expert 2 (10)
    np.testing.assert_allclose(_np(layer(x)), [[0, 0, 1, 0]] * 2, atol=1e-6)


def test_dselect_gate_entropy_regulariser_in_training_only():
    x = np.random.default_rng(3).normal(size=(5, 4)).astype("float32")
    layer = DSelectGate(4, 2, gamma=1.0, entropy_weight=0.01)
    layer.build(x.shape)
    rng = np.random.default_rng(4)
    for v in layer.weights:
        v.assign(rng.normal(scale=0.3, size=v.shape).astype("float32"))
    layer(x)
    assert layer.losses == []  # inference adds nothing
    layer(x, training=True)
    _, r = _dselect_reference(layer, x)
    entropy = -(r * np.log(r + 1e-6)).sum(axis=(1, 2)).mean()
    (loss,) = layer.losses
    np.testing.assert_allclose(_np(loss), 0.01 * entropy, rtol=1e-5)
    plain = DSelectGate(4, 2)
    plain(x, training=True)
    assert plain.losses == []  # entropy_weight 0: no term


def test_dselect_gate_refuses_experts_not_a_power_of_two():
    with pytest.raises(ValueError, match="power of 2"):
        DSelectGate(6, 2)


# -- AITM -------------------------------------------------------------------------------------
def test_ait_attention_matches_numpy():
    rng = np.random.default_rng(5)
    q = rng.normal(size=(6, 4)).astype("float32")
    p = rng.normal(size=(6, 4)).astype("float32")
    layer = AitAttention()
    out = _np(layer([q, p]))
    w = _weights(layer)
    u = np.stack([q, p], axis=1)
    scores = ((u @ w["query"]) * (u @ w["key"])).sum(-1) / math.sqrt(4)
    want = (_softmax(scores, axis=1)[..., None] * (u @ w["value"])).sum(axis=1)
    np.testing.assert_allclose(out, want, **TOL)


@pytest.mark.parametrize("logits", [(True, True), (False, True), (False, False)])
def test_aitm_calibrator_passes_through_and_adds_the_hinge(logits):
    rng = np.random.default_rng(6)
    score = rng.normal(size=(8, 1)).astype("float32")
    previous = rng.normal(size=(8, 1)).astype("float32")
    if not logits[0]:
        score = _sigmoid(score).astype("float32")
    if not logits[1]:
        previous = _sigmoid(previous).astype("float32")
    layer = AitmCalibrator(0.6, logits=logits)
    np.testing.assert_array_equal(_np(layer([score, previous])), score)
    assert layer.losses == []
    np.testing.assert_array_equal(_np(layer([score, previous], training=True)), score)
    p_t = _sigmoid(score) if logits[0] else score
    p_prev = _sigmoid(previous) if logits[1] else previous
    want = 0.6 * np.maximum(p_t - p_prev, 0).mean()
    assert want > 0
    (loss,) = layer.losses
    np.testing.assert_allclose(_np(loss), want, rtol=1e-5)


def test_aitm_calibrator_is_zero_when_the_funnel_narrows():
    layer = AitmCalibrator(1.0)
    layer([np.full((4, 1), -2.0, "float32"), np.full((4, 1), 1.0, "float32")], training=True)
    assert float(_np(layer.losses[0])) == 0.0


# -- STEM -------------------------------------------------------------------------------------
def test_stem_mixture_matches_numpy_and_cuts_the_detached_gradient():
    rng = np.random.default_rng(7)
    weights = _softmax(rng.normal(size=(3, 5))).astype("float32")
    own = rng.normal(size=(3, 2, 4)).astype("float32")
    other = rng.normal(size=(3, 3, 4)).astype("float32")
    layer = StemMixture([False, True])
    want = np.einsum("bk,bku->bu", weights, np.concatenate([own, other], axis=1))
    np.testing.assert_allclose(_np(layer([weights, own, other])), want, **TOL)
    g_w, g_own, g_other = gradients(lambda w, a, b: keras.ops.sum(layer([w, a, b]) ** 2), [weights, own, other])
    assert np.any(g_w) and np.any(g_own)
    assert not np.any(g_other)  # forward only


# -- saving -----------------------------------------------------------------------------------
def _reload(model, tmp_path, x):
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    for layer in model.layers[len(model.inputs):]:
        assert type(loaded.get_layer(layer.name)) is type(layer)
    np.testing.assert_array_equal(_np(loaded(x)), _np(model(x)))
    return loaded


@pytest.mark.parametrize("make", [
    lambda: DSelectGate(8, 3, gamma=0.7, entropy_weight=0.02, name="gate"),
    lambda: DSelectGate(2, 1, name="gate"),
])
def test_dselect_gate_config_roundtrip_and_reload(make, tmp_path):
    x = np.random.default_rng(8).normal(size=(4, 5)).astype("float32")
    layer = make()
    layer.build(x.shape)
    randomise_biases(layer)
    config = layer.get_config()
    assert DSelectGate.from_config(config).get_config() == config
    inp = keras.Input(shape=(5,))
    loaded = _reload(keras.Model(inp, layer(inp)), tmp_path, x)
    assert loaded.get_layer("gate").entropy_weight == layer.entropy_weight


def test_aitm_and_stem_layers_reload(tmp_path):
    rng = np.random.default_rng(9)
    q, p = keras.Input(shape=(4,)), keras.Input(shape=(4,))
    prev = keras.Input(shape=(1,))
    w, a, b = keras.Input(shape=(3,)), keras.Input(shape=(1, 4)), keras.Input(shape=(2, 4))
    z = AitAttention(name="ait")([q, p])
    score = keras.layers.Dense(1, name="logit")(z)
    calibrated = AitmCalibrator(0.3, logits=(True, False), name="calibrator")([score, prev])
    mixed = StemMixture([False, True], name="mix")([w, a, b])
    model = keras.Model([q, p, prev, w, a, b], [calibrated, mixed])
    x = [rng.normal(size=(5, 4)).astype("float32"), rng.normal(size=(5, 4)).astype("float32"),
         rng.random(size=(5, 1)).astype("float32"), _softmax(rng.normal(size=(5, 3))).astype("float32"),
         rng.normal(size=(5, 1, 4)).astype("float32"), rng.normal(size=(5, 2, 4)).astype("float32")]
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    for name, cls in (("ait", AitAttention), ("calibrator", AitmCalibrator), ("mix", StemMixture)):
        assert type(loaded.get_layer(name)) is cls
    assert loaded.get_layer("calibrator").get_config()["logits"] == [True, False]
    for got, want in zip(loaded(x), model(x)):
        np.testing.assert_array_equal(_np(got), _np(want))
