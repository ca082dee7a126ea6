"""NumPy reference tests for composer/layers/dynamic.py (GateNU, EPNet, PPNetTower, APG,
DynamicMLP, MetaAttention, MetaTower), the stop-gradients of PEPNet, and safe reloading.

Named test_layers_dynamic.py, not test_dynamic.py, so it cannot clash with
tests/blocks/test_dynamic.py under pytest's default (rootdir-less) module naming.
"""
import keras
import numpy as np
import pytest
from layer_helpers import randomise_biases
from backend_grad import gradients
from keras import ops

from composer.layers.dynamic import APG, DynamicMLP, EPNet, GateNU, MetaAttention, MetaTower, PPNetTower

TOL = dict(rtol=1e-5, atol=1e-5)


def _weights(layer):
    """Variable path inside the layer (``gate/hidden/kernel``, ``u_0``) -> NumPy value; the
    layer may itself sit inside another (``meta_attention/meta_unit/...``)."""
    return {v.path.split(f"{layer.name}/", 1)[1]: keras.ops.convert_to_numpy(v) for v in layer.weights}


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _relu(x):
    return np.maximum(x, 0.0)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTS = {"relu": _relu, "tanh": np.tanh, "linear": lambda x: x}


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)




def _gate_reference(w, prefix, x, gamma):
    h = _relu(x @ w[f"{prefix}hidden/kernel"] + w[f"{prefix}hidden/bias"])
    return gamma * _sigmoid(h @ w[f"{prefix}scale/kernel"] + w[f"{prefix}scale/bias"])


# -- GateNU ----------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [2.0, 1.0])
def test_gate_nu_matches_numpy_over_concatenated_inputs(gamma):
    a, b = _inputs((5, 3)), _inputs((5, 4), seed=1)
    layer = GateNU(6, hidden=7, gamma=gamma)
    layer([a, b])
    randomise_biases(layer)
    out = _np(layer([a, b]))
    assert out.shape == (5, 6)
    np.testing.assert_allclose(out, _gate_reference(_weights(layer), "", np.concatenate([a, b], 1), gamma), **TOL)
    assert np.all((out > 0) & (out < gamma))
    np.testing.assert_allclose(_np(layer(np.concatenate([a, b], 1))), out, **TOL)  # one tensor works too


def test_gate_nu_hidden_defaults_to_units():
    layer = GateNU(4)
    layer(_inputs((2, 9)))
    assert layer.hidden == 4 and _weights(layer)["hidden/kernel"].shape == (9, 4)
    assert layer.compute_output_shape([(None, 3), (None, 6)]) == (None, 4)


# -- EPNet -----------------------------------------------------------------------------------
def _epnet_delta(layer, domain, emb):
    return _gate_reference(_weights(layer), "gate/", np.concatenate([domain, emb], 1), layer.gamma)


def test_epnet_matches_numpy():
    domain, emb = _inputs((6, 4)), _inputs((6, 10), seed=1)
    layer = EPNet(hidden=5)
    layer([domain, emb])
    randomise_biases(layer)
    out = _np(layer([domain, emb]))
    assert out.shape == (6, 10)
    np.testing.assert_allclose(out, _epnet_delta(layer, domain, emb) * emb, **TOL)
    assert layer.compute_output_shape([(None, 4), (None, 10)]) == (None, 10)


def test_epnet_gate_gives_no_gradient_to_the_embedding():
    domain, emb = _inputs((6, 4)), _inputs((6, 10), seed=1)
    layer = EPNet()
    layer([domain, emb])
    randomise_biases(layer)
    cotangent = _inputs((6, 10), seed=2)
    (grad,) = gradients(lambda e: ops.sum(ops.multiply(layer([domain, e]), cotangent)), [emb])
    delta = _epnet_delta(layer, domain, emb)
    # d out / d E = delta exactly: the path through the gate contributes nothing
    np.testing.assert_allclose(grad, cotangent * delta, rtol=1e-6, atol=1e-7)
    # the same gate without the stop-gradient: a different gradient
    (ungated,) = gradients(lambda e: ops.sum(ops.multiply(layer._gate(ops.concatenate([domain, e], 1)) * e, cotangent)),
                           [emb])
    assert not np.allclose(ungated, grad, atol=1e-4)


def test_epnet_gate_still_trains_from_the_domain():
    domain, emb = _inputs((6, 4)), _inputs((6, 10), seed=1)
    layer = EPNet()
    layer([domain, emb])
    grads = gradients(lambda d: ops.sum(layer([d, emb]) ** 2), [domain], layer.trainable_variables)
    assert all(np.abs(g).sum() > 0 for g in grads)


# -- PPNet tower -----------------------------------------------------------------------------
def _ppnet_reference(layer, persona, x, deltas=None):
    """The tower in NumPy; ``deltas`` (per layer) replaces the gates when given."""
    w = _weights(layer)
    gate_in = np.concatenate([persona, x], 1)
    act = ACTS[layer.activation]
    h, used = x, []
    for i in range(len(layer.units)):
        delta = _gate_reference(w, f"gate_{i}/", gate_in, layer.gamma) if deltas is None else deltas[i]
        used.append(delta)
        h = delta * act(h @ w[f"dense_{i}/kernel"] + w[f"dense_{i}/bias"])
    return h @ w["logit/kernel"] + w["logit/bias"], used


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_ppnet_tower_matches_numpy(activation):
    persona, x = _inputs((5, 6)), _inputs((5, 9), seed=1)
    layer = PPNetTower([8, 4], gate_hidden=3, activation=activation)
    layer([persona, x])
    randomise_biases(layer)
    out = _np(layer([persona, x]))
    assert out.shape == (5, 1)
    np.testing.assert_allclose(out, _ppnet_reference(layer, persona, x)[0], **TOL)
    assert _weights(layer)["gate_1/hidden/kernel"].shape == (15, 3)  # [persona, input] -> gate


def test_ppnet_gates_give_no_gradient_to_the_tower_input():
    persona, x = _inputs((5, 6)), _inputs((5, 9), seed=1)
    layer = PPNetTower([8, 4])
    layer([persona, x])
    randomise_biases(layer)
    (grad,) = gradients(lambda x: ops.sum(layer([persona, x])), [x])
    _, deltas = _ppnet_reference(layer, persona, x)
    # the same tower with every gate frozen to its value: the input's gradient must not change
    # tensors, not NumPy arrays: under torch, `ndarray * tensor` would call the tensor's __array__
    w = {k: ops.convert_to_tensor(v) for k, v in _weights(layer).items()}
    deltas = [ops.convert_to_tensor(d) for d in deltas]

    def frozen(h):
        for i, delta in enumerate(deltas):
            h = delta * ops.relu(ops.matmul(h, w[f"dense_{i}/kernel"]) + w[f"dense_{i}/bias"])
        return ops.sum(ops.matmul(h, w["logit/kernel"]) + w["logit/bias"])

    np.testing.assert_allclose(grad, gradients(frozen, [x])[0], rtol=1e-5, atol=1e-6)


def test_ppnet_gates_train_from_the_persona():
    persona, x = _inputs((5, 6)), _inputs((5, 9), seed=1)
    layer = PPNetTower([8])
    layer([persona, x])
    gate_vars = [v for v in layer.trainable_variables if "gate_0" in v.path]
    grads = gradients(lambda p: ops.sum(layer([p, x])), [persona], gate_vars)
    assert len(gate_vars) == 4 and all(np.abs(g).sum() > 0 for g in grads)


# -- APG -------------------------------------------------------------------------------------
def _apg_reference(layer, x, z=None):
    """Materialises the per-sample W_i = U S_i V (batch, N, M), as the paper writes it."""
    w = _weights(layer)
    act = ACTS[layer.activation]
    k, h = layer.rank, x
    for i in range(len(layer.units)):
        if layer.overparam:
            u, v = w[f"u1_{i}"] @ w[f"u2_{i}"], w[f"v1_{i}"] @ w[f"v2_{i}"]
        else:
            u, v = w[f"u_{i}"], w[f"v_{i}"]
        g = h if layer.self_condition else z
        for j in range(len(layer.generator_hidden)):
            g = _relu(g @ w[f"generator_{i}/dense_{j}/kernel"] + w[f"generator_{i}/dense_{j}/bias"])
        last = len(layer.generator_hidden)
        s = (g @ w[f"generator_{i}/dense_{last}/kernel"] + w[f"generator_{i}/dense_{last}/bias"]).reshape(-1, k, k)
        per_sample = np.einsum("nk,bkj,jm->bnm", u, s, v)
        assert per_sample.shape == (len(x), u.shape[0], v.shape[1])
        h = act(np.einsum("bn,bnm->bm", h, per_sample) + w[f"bias_{i}"])
    return h


@pytest.mark.parametrize("self_condition", [False, True], ids=["group", "self"])
@pytest.mark.parametrize("overparam", [None, 12], ids=["plain", "overparam"])
@pytest.mark.parametrize("generator_hidden", [[], [5]], ids=["linear_gen", "mlp_gen"])
def test_apg_decomposed_equals_materialised_per_sample_weights(self_condition, overparam, generator_hidden):
    x, z = _inputs((6, 10)), _inputs((6, 4), seed=1)
    layer = APG([7, 3], rank=4, self_condition=self_condition, overparam=overparam,
                generator_hidden=generator_hidden, activation="tanh")
    args = x if self_condition else [x, z]
    layer(args)
    randomise_biases(layer)
    out = _np(layer(args))
    assert out.shape == (6, 3)
    np.testing.assert_allclose(out, _apg_reference(layer, x, z), **TOL)


def test_apg_weight_shapes_and_identity_start():
    layer = APG([8], rank=3, overparam=5)
    layer([_inputs((2, 6)), _inputs((2, 4))])
    w = _weights(layer)
    assert {k: v.shape for k, v in w.items() if not k.startswith("generator")} == {
        "u1_0": (6, 5), "u2_0": (5, 3), "v1_0": (3, 5), "v2_0": (5, 8), "bias_0": (8,)}
    np.testing.assert_array_equal(w["generator_0/dense_0/bias"], np.eye(3).ravel())
    assert layer.compute_output_shape([(None, 6), (None, 4)]) == (None, 8)


# -- DynamicMLP ------------------------------------------------------------------------------
def _dynamic_reference(layer, cond, x):
    w = _weights(layer)
    params = cond @ w["generator/kernel"] + w["generator/bias"]
    h, offset = x, 0
    acts = [layer.activation] * (len(layer.units) - 1) + [
        layer.activation if layer.output_activation == "same" else layer.output_activation]
    prev = x.shape[-1]
    for width, act in zip(layer.units, acts):
        kernel = params[:, offset:offset + prev * width].reshape(-1, prev, width)
        offset += prev * width
        bias = params[:, offset:offset + width]
        offset += width
        if x.ndim == 3:
            h = np.einsum("bni,bio->bno", h, kernel) + bias[:, None, :]
        else:
            h = np.einsum("bi,bio->bo", h, kernel) + bias
        h = ACTS[act](h)
        prev = width
    assert offset == params.shape[1]
    return h


@pytest.mark.parametrize("x_shape", [(5, 6), (5, 3, 6)], ids=["vector", "rows"])
@pytest.mark.parametrize("output_activation", ["same", "linear"])
def test_dynamic_mlp_matches_numpy(x_shape, output_activation):
    cond, x = _inputs((5, 4)), _inputs(x_shape, seed=1)
    layer = DynamicMLP([7, 2], activation="tanh", output_activation=output_activation)
    out = _np(layer([cond, x]))
    assert out.shape == (*x_shape[:-1], 2)
    np.testing.assert_allclose(out, _dynamic_reference(layer, cond, x), **TOL)
    assert _weights(layer)["generator/kernel"].shape == (4, 6 * 7 + 7 + 7 * 2 + 2)


def test_dynamic_mlp_weights_differ_per_sample():
    x = np.repeat(_inputs((1, 6)), 2, axis=0)  # one input, two conditions
    out = _np(DynamicMLP([3], activation="linear")([_inputs((2, 4)), x]))
    assert not np.allclose(out[0], out[1])


# -- M2M -------------------------------------------------------------------------------------
def test_meta_attention_matches_numpy():
    experts, scenario = _inputs((5, 3, 6)), _inputs((5, 4), seed=1)
    layer = MetaAttention(task_dim=2, units=[5])
    layer([experts, scenario])
    randomise_biases(layer)
    out = _np(layer([experts, scenario]))
    w = _weights(layer)
    task = np.broadcast_to(w["task_embedding"], (5, 3, 2))
    scores = _dynamic_reference(layer._meta, scenario, np.concatenate([experts, task], -1))[..., 0]
    weights = _softmax(scores)
    np.testing.assert_allclose(out, np.einsum("bk,bkd->bd", weights, experts), **TOL)
    assert layer.compute_output_shape([(None, 3, 6), (None, 4)]) == (None, 6)


def test_meta_tower_matches_numpy():
    x, scenario = _inputs((5, 6)), _inputs((5, 4), seed=1)
    layer = MetaTower(layers=2)
    layer([x, scenario])
    randomise_biases(layer)
    out = _np(layer([x, scenario]))
    h = x
    for meta in layer._metas:
        h = h + _dynamic_reference(meta, scenario, h)
    w = _weights(layer)
    np.testing.assert_allclose(out, h @ w["logit/kernel"] + w["logit/bias"], **TOL)


# -- config and safe reloading ---------------------------------------------------------------
CASES = {
    "gate_nu": (lambda: GateNU(5, hidden=3, gamma=1.5, name="layer"), [(4, 3), (4, 2)]),
    "epnet": (lambda: EPNet(hidden=4, name="layer"), [(4, 3), (4, 6)]),
    "ppnet": (lambda: PPNetTower([6, 3], gate_hidden=4, dropout=0.1, name="layer"), [(4, 3), (4, 6)]),
    "apg_group": (lambda: APG([6, 3], rank=2, overparam=4, generator_hidden=[3], name="layer"), [(4, 5), (4, 2)]),
    "apg_self": (lambda: APG([6], rank=3, self_condition=True, name="layer"), (4, 5)),
    "dynamic_mlp": (lambda: DynamicMLP([4, 2], output_activation="linear", name="layer"), [(4, 3), (4, 5)]),
    "meta_attention": (lambda: MetaAttention(task_dim=3, units=[4], name="layer"), [(4, 3, 5), (4, 2)]),
    "meta_tower": (lambda: MetaTower(layers=2, name="layer"), [(4, 5), (4, 2)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_roundtrip_and_safe_reload(case, tmp_path):
    make, shapes = CASES[case]
    many = isinstance(shapes, list)
    xs = [_inputs(s, seed=i) for i, s in enumerate(shapes if many else [shapes])]
    layer = make()
    arg = xs if many else xs[0]
    layer(arg)
    randomise_biases(layer)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(arg)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_np(clone(arg)), _np(layer(arg)))

    inputs = [keras.Input(shape=x.shape[1:]) for x in xs]
    model = keras.Model(inputs, layer(inputs if many else inputs[0]))
    assert model.output.shape == layer.compute_output_shape([(None, *x.shape[1:]) for x in xs] if many
                                                            else (None, *xs[0].shape[1:]))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.layers[-1]) is type(layer)
    np.testing.assert_array_equal(_np(loaded.predict(xs, verbose=0)), _np(model.predict(xs, verbose=0)))
