"""NumPy reference tests for composer/layers/sequence.py (MaskedPooling, TargetAttention,
SequenceAttention, PeriodicEmbedding, QuantileEmbedding).

Sequences follow the project convention: ``seq (B, L, d)`` plus a float ``mask (B, L)``,
right-aligned (padding first, newest item at ``L - 1``). Every batch here mixes full, partial
and single-item rows with one all-padding row.
"""
import keras
import numpy as np
import pytest
from backend_grad import gradients
from keras import ops
from layer_helpers import randomise_biases

from composer.layers.sequence import (MaskedPooling, PeriodicEmbedding, QuantileEmbedding,
                                      SequenceAttention, TargetAttention)

TOL = dict(rtol=1e-5, atol=1e-5)
B, L, D = 5, 6, 8
# valid items per row: full, partial, one, none (an empty history), partial
LENGTHS = [6, 3, 1, 0, 4]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def _mask(lengths=LENGTHS, length=L):
    return np.stack([np.r_[np.zeros(length - n), np.ones(n)] for n in lengths]).astype("float32")


def _seq(mask, d=D, seed=0):
    """Real values at valid positions, zeros at padding (as the input pipeline gives them)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(*mask.shape, d)) * mask[..., None]).astype("float32")


def _garbage(seq, mask, seed=9):
    """``seq`` with large random values (and an inf) in every padded position."""
    rng = np.random.default_rng(seed)
    noisy = np.where(mask[..., None] > 0, seq, rng.normal(scale=1e4, size=seq.shape)).astype("float32")
    pad = np.argwhere(mask == 0)[0]
    noisy[pad[0], pad[1], 0] = np.inf
    return noisy


def _query(width=D, seed=5):
    return np.random.default_rng(seed).normal(size=(B, width)).astype("float32")


def _np(x):
    return ops.convert_to_numpy(x)


def _weights(layer):
    """Variable path inside the layer (``attention/query/kernel``) -> NumPy value."""
    return {v.path.split("/", 1)[1]: _np(v) for v in layer.weights}


def _randomise(layer, seed=3):
    """Random biases, LayerNorm scales and position vectors, so a reference checks them all."""
    randomise_biases(layer, seed)
    rng = np.random.default_rng(seed + 1)
    for v in layer.weights:
        name = v.path.rsplit("/", 1)[-1]
        if name in ("gamma", "beta", "position_embeddings", "frequencies"):
            v.assign(rng.normal(scale=0.5, size=v.shape).astype("float32"))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _relu(x):
    return np.maximum(x, 0.0)


def _softmax_rows(scores, allowed):
    """Softmax over the allowed entries of the last axis; a row with none gives zeros."""
    s = np.where(allowed, scores, -np.inf)
    top = s.max(-1, keepdims=True)
    e = np.where(allowed, np.exp(s - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = e.sum(-1, keepdims=True)
    return e / np.where(total > 0, total, 1.0)


def _layer_norm(x, w, name, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[f"{name}/gamma"] + w[f"{name}/beta"]


# -- MaskedPooling ---------------------------------------------------------------------------
def _pool_reference(seq, mask, mode):
    out = np.zeros((seq.shape[0], seq.shape[-1]), "float32")
    for b in range(seq.shape[0]):
        rows = seq[b][mask[b] > 0]
        if len(rows):
            out[b] = {"mean": rows.mean(0), "sum": rows.sum(0), "max": rows.max(0)}[mode]
    return out


@pytest.mark.parametrize("mode", ["mean", "sum", "max"])
def test_masked_pooling_matches_numpy(mode):
    mask = _mask()
    seq = _seq(mask) - 3.0 * mask[..., None]  # all valid values negative: a 0 at padding would win max
    out = _np(MaskedPooling(mode)([seq, mask]))
    assert out.shape == (B, D)
    np.testing.assert_allclose(out, _pool_reference(seq, mask, mode), **TOL)
    np.testing.assert_array_equal(out[LENGTHS.index(0)], 0.0)


def test_masked_pooling_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        MaskedPooling("median")


# -- TargetAttention -------------------------------------------------------------------------
def _target_attention_reference(layer, query, seq, mask):
    w = _weights(layer)
    act = {"sigmoid": _sigmoid, "relu": _relu}[layer.activation]
    c = np.broadcast_to(query[:, None], seq.shape)
    h = np.concatenate([seq, c, seq - c, seq * c], axis=-1)
    for i in range(len(layer.units)):
        h = act(h @ w[f"dense_{i}/kernel"] + w[f"dense_{i}/bias"])
    scores = (h @ w["score/kernel"] + w["score/bias"])[..., 0]
    valid = mask > 0
    weights = _softmax_rows(scores, valid) if layer.softmax else np.where(valid, scores, 0.0)
    return np.einsum("bl,bld->bd", weights, seq)


@pytest.mark.parametrize("softmax", [False, True], ids=["unnormalised", "softmax"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_target_attention_matches_numpy(softmax, activation):
    mask = _mask()
    seq, query = _seq(mask), _query()
    layer = TargetAttention((6, 4), activation=activation, softmax=softmax)
    layer.build([(None, D), (None, L, D), (None, L)])
    randomise_biases(layer)
    out = _np(layer([query, seq, mask]))
    assert out.shape == (B, D)
    np.testing.assert_allclose(out, _target_attention_reference(layer, query, seq, mask), **TOL)


def test_target_attention_unnormalised_weights_keep_scale():
    """Without softmax the weights are the raw scores: doubling the history (every item twice)
    doubles the output, where a softmax would leave it unchanged."""
    short = _mask([3] * B, 3)
    seq3, query = _seq(short), _query()
    seq6 = np.concatenate([seq3, seq3], axis=1)
    full = _mask([6] * B, 6)
    for softmax, factor in ((False, 2.0), (True, 1.0)):
        layer = TargetAttention((6, 4), softmax=softmax)
        once = _np(layer([query, seq3, short]))
        np.testing.assert_allclose(_np(layer([query, seq6, full])), factor * once, **TOL)


def test_target_attention_rejects_query_of_another_width():
    mask = _mask()
    with pytest.raises(ValueError, match="query width 5, item width 8"):
        TargetAttention((4,))([_query(5), _seq(mask), mask])


# -- SequenceAttention -----------------------------------------------------------------------
def _mha_reference(w, query, kv, allowed, key_dim):
    """keras.layers.MultiHeadAttention's math from its EinsumDense kernels (d, heads, key_dim)
    and output kernel (heads, key_dim, out)."""
    q = np.einsum("btd,dnh->btnh", query, w["attention/query/kernel"]) + w["attention/query/bias"]
    k = np.einsum("bsd,dnh->bsnh", kv, w["attention/key/kernel"]) + w["attention/key/bias"]
    v = np.einsum("bsd,dnh->bsnh", kv, w["attention/value/kernel"]) + w["attention/value/bias"]
    scores = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(key_dim)
    probs = _softmax_rows(scores, allowed[:, None])
    o = np.einsum("bnts,bsnh->btnh", probs, v)
    return (np.einsum("btnh,nhd->btd", o, w["attention/attention_output/kernel"])
            + w["attention/attention_output/bias"])


def _embed_reference(layer, w, seq, valid):
    x = seq
    if layer.positions:
        x = seq + w["position_embeddings"][:seq.shape[1]][::-1]  # newest item: row 0
    return np.where(valid[..., None], x, 0.0)


def _self_attention_reference(layer, seq, mask):
    w = _weights(layer)
    valid = mask > 0
    key_dim = layer.key_dim or max(1, seq.shape[-1] // layer.heads)
    x = _embed_reference(layer, w, seq, valid)
    a = _mha_reference(w, x, x, valid[:, :, None] & valid[:, None, :], key_dim)
    y = _layer_norm(x + a, w, "norm_attention")
    f = _relu(y @ w["ffn_hidden/kernel"] + w["ffn_hidden/bias"])
    f = f @ w["ffn_output/kernel"] + w["ffn_output/bias"]
    y = np.where(valid[..., None], _layer_norm(y + f, w, "norm_ffn"), 0.0)
    if layer.pool == "mean":
        return y.sum(1) / np.maximum(valid.sum(1, keepdims=True), 1)
    if layer.pool == "last":
        return y[:, -1]
    return y


def _query_attention_reference(layer, query, seq, mask):
    w = _weights(layer)
    valid = mask > 0
    key_dim = layer.key_dim or max(1, seq.shape[-1] // layer.heads)
    x = _embed_reference(layer, w, seq, valid)
    out = _mha_reference(w, query[:, None], x, valid[:, None, :], key_dim)[:, 0]
    return np.where(valid.any(1, keepdims=True), out, 0.0)


@pytest.mark.parametrize("kwargs", [
    dict(heads=2),
    dict(heads=2, key_dim=3, feed_forward=10, max_len=9, pool="mean"),
    dict(heads=2, positions=False, pool="last"),
], ids=["none", "mean_key_dim_max_len", "last_no_positions"])
def test_self_attention_matches_numpy(kwargs):
    mask = _mask()
    seq = _seq(mask)
    layer = SequenceAttention(**kwargs)
    layer.build([(None, L, D), (None, L)])
    _randomise(layer)
    out = _np(layer([seq, mask]))
    assert out.shape == ((B, L, D) if layer.pool == "none" else (B, D))
    np.testing.assert_allclose(out, _self_attention_reference(layer, seq, mask), **TOL)
    empty = LENGTHS.index(0)
    np.testing.assert_array_equal(out[empty], 0.0)
    if layer.pool == "none":
        np.testing.assert_array_equal(out[mask == 0], 0.0)


@pytest.mark.parametrize("query_width, kwargs", [
    (D, dict(heads=2)),
    (5, dict(heads=2, positions=False)),
], ids=["same_width", "narrow_query_no_positions"])
def test_query_attention_matches_numpy(query_width, kwargs):
    mask = _mask()
    seq, query = _seq(mask), _query(query_width)
    layer = SequenceAttention(query=True, **kwargs)
    layer.build([(None, query_width), (None, L, D), (None, L)])
    _randomise(layer)
    out = _np(layer([query, seq, mask]))
    assert out.shape == (B, D)
    np.testing.assert_allclose(out, _query_attention_reference(layer, query, seq, mask), **TOL)
    np.testing.assert_array_equal(out[LENGTHS.index(0)], 0.0)


def test_self_attention_newest_item_position_is_independent_of_padding_length():
    """Positions count from the newest item: the same history, padded to 6 or not padded at
    all, gives the same outputs at its items."""
    lengths = [3] * B
    long_mask, short_mask = _mask(lengths, 6), _mask(lengths, 3)
    short = _seq(short_mask)
    long = np.concatenate([np.zeros((B, 3, D), "float32"), short], axis=1)
    layer = SequenceAttention(heads=2, max_len=6)
    layer.build([(None, 6, D), (None, 6)])
    _randomise(layer)
    np.testing.assert_allclose(_np(layer([long, long_mask]))[:, 3:], _np(layer([short, short_mask])),
                               **TOL)


def test_self_attention_positions_change_the_output():
    """The position table is used (a reversed history is not a permutation of the output)."""
    mask = _mask([L] * B)
    seq = _seq(mask)
    layer = SequenceAttention(heads=2, pool="mean")
    layer.build([(None, L, D), (None, L)])
    _randomise(layer)
    forward, backward = _np(layer([seq, mask])), _np(layer([seq[:, ::-1], mask]))
    assert not np.allclose(forward, backward, atol=1e-3)
    plain = SequenceAttention(heads=2, pool="mean", positions=False)
    np.testing.assert_allclose(_np(plain([seq, mask])), _np(plain([seq[:, ::-1], mask])), **TOL)


def test_sequence_attention_argument_errors():
    with pytest.raises(ValueError, match="pool"):
        SequenceAttention(pool="max")
    with pytest.raises(ValueError, match="query mode"):
        SequenceAttention(query=True, pool="mean")
    mask = _mask()
    with pytest.raises(ValueError, match="max_len=4 is shorter than the sequence length 6"):
        SequenceAttention(max_len=4)([_seq(mask), mask])


def test_sequence_attention_dropout_acts_only_in_training():
    mask = _mask()
    seq = _seq(mask)
    layer = SequenceAttention(heads=2, dropout=0.5)
    out = _np(layer([seq, mask]))
    np.testing.assert_allclose(out, _self_attention_reference(layer, seq, mask), **TOL)
    trained = _np(layer([seq, mask], training=True))
    assert not np.allclose(trained, out)
    np.testing.assert_array_equal(trained[mask == 0], 0.0)


# -- padding: invariance and gradients, every sequence layer and mode -------------------------
SEQUENCE_LAYERS = {
    "pool_mean": (lambda: MaskedPooling("mean"), None),
    "pool_sum": (lambda: MaskedPooling("sum"), None),
    "pool_max": (lambda: MaskedPooling("max"), None),
    "din": (lambda: TargetAttention((6, 4)), D),
    "din_softmax": (lambda: TargetAttention((6,), softmax=True), D),
    "self_none": (lambda: SequenceAttention(heads=2), None),
    "self_mean": (lambda: SequenceAttention(heads=2, pool="mean"), None),
    "self_last": (lambda: SequenceAttention(heads=2, pool="last", positions=False), None),
    "query": (lambda: SequenceAttention(heads=2, query=True), 5),
}


def _call(layer, query, seq, mask):
    return layer([seq, mask] if query is None else [query, seq, mask])


@pytest.mark.parametrize("name", list(SEQUENCE_LAYERS))
def test_padding_content_changes_nothing(name):
    make, query_width = SEQUENCE_LAYERS[name]
    mask = _mask()
    seq = _seq(mask)
    query = None if query_width is None else _query(query_width)
    layer = make()
    _call(layer, query, seq, mask)  # builds
    _randomise(layer)
    clean = _np(_call(layer, query, seq, mask))
    noisy = _np(_call(layer, query, _garbage(seq, mask), mask))
    assert np.isfinite(noisy).all()
    np.testing.assert_array_equal(noisy, clean)
    np.testing.assert_array_equal(noisy[LENGTHS.index(0)], 0.0)
    assert np.abs(noisy).sum() > 0


@pytest.mark.parametrize("name", list(SEQUENCE_LAYERS))
def test_gradient_is_zero_at_padding(name):
    make, query_width = SEQUENCE_LAYERS[name]
    mask = _mask()
    seq = _garbage(_seq(mask), mask)
    seq[~np.isfinite(seq)] = 1e4  # the gradient helpers need a finite point to differentiate at
    query = None if query_width is None else _query(query_width)
    layer = make()
    out = _call(layer, query, seq, mask)  # builds
    _randomise(layer)
    probe = np.random.default_rng(4).normal(size=out.shape).astype("float32")
    (grad,) = gradients(lambda s: ops.sum(_call(layer, query, s, mask) * probe), [seq])
    assert np.isfinite(grad).all()
    np.testing.assert_array_equal(grad[mask == 0], 0.0)
    for b, n in enumerate(LENGTHS):  # max: some valid item of each row; else every valid item
        reached = np.abs(grad[b, L - n:]).sum(-1) > 0
        assert (reached.any() or n == 0) if name == "pool_max" else reached.all(), (b, reached)


# -- PeriodicEmbedding -----------------------------------------------------------------------
def _periodic_reference(layer, x):
    w = _weights(layer)
    angles = 2 * np.pi * x[..., None] * w["frequencies"]
    v = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
    return _relu(np.einsum("bnf,nfd->bnd", v, w["kernel"]) + w["bias"])


def test_periodic_embedding_matches_numpy():
    x = np.random.default_rng(0).normal(size=(7, 3)).astype("float32")
    layer = PeriodicEmbedding(frequencies=4, dim=5, sigma=0.5)
    layer.build((None, 3))
    _randomise(layer)
    out = _np(layer(x))
    assert out.shape == (7, 3, 5)
    assert layer.compute_output_shape((None, 3)) == (None, 3, 5)
    np.testing.assert_allclose(out, _periodic_reference(layer, x), **TOL)


def test_periodic_embedding_columns_have_their_own_weights():
    layer = PeriodicEmbedding(frequencies=4, dim=5)
    layer.build((None, 3))
    shapes = {v.path.rsplit("/", 1)[-1]: tuple(v.shape) for v in layer.weights}
    assert shapes == {"frequencies": (3, 4), "kernel": (3, 8, 5), "bias": (3, 5)}
    x = np.full((1, 3), 0.7, "float32")  # the same value in every column
    out = _np(layer(x))[0]
    assert not np.allclose(out[0], out[1]) and not np.allclose(out[1], out[2])


def test_periodic_embedding_frequency_scale_follows_sigma():
    layer = PeriodicEmbedding(frequencies=64, dim=2, sigma=3.0)
    layer.build((None, 50))
    std = float(np.std(_np(layer.coefficients)))
    assert 2.7 < std < 3.3, std


# -- QuantileEmbedding -----------------------------------------------------------------------
EDGES = [[-1.0, 0.0, 2.5], [10.0], []]


def test_quantile_embedding_bucket_at_edges_and_beyond():
    layer = QuantileEmbedding(EDGES, 3)
    x = np.array([
        [-5.0, 3.0, 0.0],     # below the first edge: bucket 0
        [-1.0, 10.0, 1e9],    # exactly an edge: the bucket above it
        [-0.5, 9.99, -1e9],   # between edges
        [0.0, 11.0, 0.0],
        [2.5, 1e30, 0.0],     # the last edge, and far beyond it: the last bucket
        [1e30, -1e30, 0.0],
    ], "float32")
    layer.build(x.shape)
    table = _np(layer.embeddings)
    assert table.shape == (4 + 2 + 1, 3)
    expected_buckets = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0], [2, 1, 0], [3, 1, 0], [3, 0, 0]])
    reference = np.stack([np.searchsorted(np.array(e, "float32"), x[:, j], side="right")
                          for j, e in enumerate(EDGES)], axis=1)
    np.testing.assert_array_equal(reference, expected_buckets)
    offsets = np.array([0, 4, 6])
    np.testing.assert_array_equal(_np(layer(x)), table[expected_buckets + offsets])
    assert layer.compute_output_shape((None, 3)) == (None, 3, 3)


def test_quantile_embedding_matches_numpy_on_random_values():
    rng = np.random.default_rng(2)
    edges = [sorted(rng.normal(size=k).round(2).tolist()) for k in (4, 7, 1)]
    x = rng.normal(size=(50, 3)).round(2).astype("float32")  # rounded: many values on an edge
    x[:3] = np.array([e[0] for e in edges], "float32")
    layer = QuantileEmbedding(edges, 4)
    out = _np(layer(x))
    table = _np(layer.embeddings)
    offsets = np.cumsum([0] + [len(e) + 1 for e in edges[:-1]])
    ids = np.stack([np.searchsorted(np.array(e, "float32"), x[:, j], side="right")
                    for j, e in enumerate(edges)], axis=1) + offsets
    np.testing.assert_array_equal(out, table[ids])


def test_quantile_embedding_compares_in_float32_under_mixed_precision():
    """0.999 is 1.0 in bfloat16: an autocast input would land above the edge 1.0."""
    layer = QuantileEmbedding([[1.0]], 2, dtype="mixed_bfloat16")
    out = layer(np.array([[0.999], [1.0]], "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    table = _np(ops.cast(ops.cast(layer.embeddings, "bfloat16"), "float32"))
    np.testing.assert_array_equal(_np(ops.cast(out, "float32")), table[[[0], [1]]])


def test_quantile_embedding_rejects_bad_edges():
    with pytest.raises(ValueError, match="column 1 are not sorted"):
        QuantileEmbedding([[0.0, 1.0], [2.0, 1.0]], 4)
    with pytest.raises(ValueError, match="edges for 2 columns, the input has 3"):
        QuantileEmbedding([[0.0], [1.0]], 4)(np.zeros((2, 3), "float32"))


# -- serialisation ---------------------------------------------------------------------------
def _seq_inputs(query_width=None):
    mask = _mask()
    data = [_garbage(_seq(mask), mask), mask]
    if query_width is not None:
        data = [_query(query_width)] + data
    return data


SAVED = {
    "pool_max": (lambda: MaskedPooling("max", name="pool"), _seq_inputs),
    "din_softmax": (lambda: TargetAttention((6, 4), activation="relu", softmax=True, name="din"),
                    lambda: _seq_inputs(D)),
    "self_mean": (lambda: SequenceAttention(heads=2, key_dim=3, max_len=9, feed_forward=10,
                                            dropout=0.1, pool="mean", name="bst"), _seq_inputs),
    "self_none": (lambda: SequenceAttention(heads=2, name="bst"), _seq_inputs),
    "query": (lambda: SequenceAttention(heads=2, query=True, name="att"), lambda: _seq_inputs(5)),
    "periodic": (lambda: PeriodicEmbedding(4, 3, sigma=0.3, name="plr"),
                 lambda: [np.random.default_rng(1).normal(size=(B, 3)).astype("float32")]),
    "quantile": (lambda: QuantileEmbedding(EDGES, 3, embeddings_initializer="glorot_uniform",
                                           name="quantile"),
                 lambda: [np.array([[-1.0, 10.0, 0.0], [3.0, 0.0, 0.0]], "float32")]),
}


@pytest.mark.parametrize("name", list(SAVED))
def test_config_roundtrip_and_safe_reload(name, tmp_path):
    make, data = SAVED[name]
    data = data()
    layer = make()
    inputs = [keras.Input(shape=x.shape[1:]) for x in data]
    inputs = inputs if len(inputs) > 1 else inputs[0]
    model = keras.Model(inputs, layer(inputs))
    _randomise(layer)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.get_layer(layer.name)) is type(layer)
    feed = data if len(data) > 1 else data[0]
    expected = _np(model(feed))
    assert np.isfinite(expected).all()
    np.testing.assert_array_equal(_np(loaded(feed)), expected)
