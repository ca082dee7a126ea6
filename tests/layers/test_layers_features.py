"""NumPy reference tests for composer/layers/features.py (PackedEmbedding, SelectFields).

Named test_layers_features.py, not test_features.py, so it cannot clash with
tests/blocks/test_features.py under pytest's default (rootdir-less) module naming.
"""
import keras
import numpy as np
import pytest

from composer.layers.features import PackedEmbedding, SelectFields

TOL = dict(rtol=1e-5, atol=1e-6)
VOCABS = [7, 3, 5]


def _ids(batch=6, vocabs=VOCABS, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.integers(0, v, size=batch) for v in vocabs], axis=1).astype("int32")
    ids[0] = [v - 1 for v in vocabs]  # every field's last row: the offsets' edge
    ids[1] = 0
    return ids


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


# -- PackedEmbedding -------------------------------------------------------------------------
def test_packed_embedding_equals_per_field_lookup():
    layer = PackedEmbedding(VOCABS, 4)
    ids = _ids()
    out = keras.ops.convert_to_numpy(layer(ids))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    assert table.shape == (sum(VOCABS), 4)
    assert out.shape == (6, 3, 4)
    offsets = np.concatenate([[0], np.cumsum(VOCABS)[:-1]])
    for f, (start, vocab) in enumerate(zip(offsets, VOCABS)):
        field_table = table[start:start + vocab]  # field f's own table
        np.testing.assert_array_equal(out[:, f], field_table[ids[:, f]])
    np.testing.assert_array_equal(out, table[ids + offsets])


def test_packed_embedding_fields_use_disjoint_rows():
    layer = PackedEmbedding(VOCABS, 4)
    ids = np.zeros((1, 3), "int32")  # id 0 of every field
    out = keras.ops.convert_to_numpy(layer(ids))[0]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.allclose(out[a], out[b]), f"fields {a} and {b} share row 0"


def test_packed_embedding_accepts_int64_ids_and_shape():
    layer = PackedEmbedding(VOCABS, 2)
    ids = _ids()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(ids.astype("int64"))),
                                  keras.ops.convert_to_numpy(layer(ids)))
    assert layer.compute_output_shape((None, 3)) == (None, 3, 2)


def test_packed_embedding_initializer_is_configurable():
    layer = PackedEmbedding([2, 2], 3, embeddings_initializer="ones")
    layer.build((None, 2))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.embeddings), 1.0)


def test_packed_embedding_under_mixed_precision_gathers_from_the_float32_table():
    """Under mixed_bfloat16 the lookup returns bfloat16 rows taken from the float32 table (not
    from a bfloat16 copy of it), so the gradient's scatter-add runs in float32: on a GPU a
    bfloat16 scatter-add into a small table is emulated and was 4.6x slower (bench/README.md).
    Under JAX the traced gradient is checked for the dtype of its scatter-add."""
    layer = PackedEmbedding(VOCABS, 4, dtype="mixed_bfloat16")
    ids = _ids()
    out = layer(ids)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.embeddings.dtype) == "float32"
    table = keras.ops.convert_to_numpy(layer.embeddings.value)
    want = np.stack([table[ids[:, f] + sum(VOCABS[:f])] for f in range(len(VOCABS))], axis=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")),
                                  keras.ops.convert_to_numpy(keras.ops.cast(
                                      keras.ops.cast(want, "bfloat16"), "float32")))
    if keras.backend.backend() == "jax":
        import jax

        inputs = keras.Input((len(VOCABS),), dtype="int32")
        model = keras.Model(inputs, layer(inputs))  # autocasting happens in Layer.__call__

        def loss(table):
            values, _ = model.stateless_call([table], [], ids)
            return keras.ops.sum(keras.ops.cast(values, "float32"))

        jaxpr = str(jax.make_jaxpr(jax.grad(loss))(layer.embeddings.value))
        scatters = [line for line in jaxpr.splitlines() if "scatter" in line]
        assert scatters and all("bf16" not in line for line in scatters), scatters


# -- SelectFields ----------------------------------------------------------------------------
def _fields(shape=(4, 5, 3), seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("indices", [[0, 1, 2, 3, 4], [3, 1], [2], [4, 4, 0]],
                         ids=["all", "reordered", "one", "repeated"])
def test_select_fields_without_flatten(indices):
    x = _fields()
    layer = SelectFields(indices)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(out, x[:, indices])
    assert layer.compute_output_shape((None, 5, 3)) == (None, len(indices), 3)


@pytest.mark.parametrize("indices", [[0, 1, 2, 3, 4], [3, 1], [2]], ids=["all", "reordered", "one"])
def test_select_fields_with_flatten(indices):
    x = _fields()
    layer = SelectFields(indices, flatten=True)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(out, x[:, indices].reshape(4, -1))
    assert layer.compute_output_shape((None, 5, 3)) == (None, 3 * len(indices))


def test_select_fields_on_numeric_columns():
    x = _fields((4, 5))
    out = keras.ops.convert_to_numpy(SelectFields([4, 0])(x))
    np.testing.assert_array_equal(out, x[:, [4, 0]])
    out = keras.ops.convert_to_numpy(SelectFields([4, 0], flatten=True)(x))
    np.testing.assert_array_equal(out, x[:, [4, 0]])


def test_embedding_then_select_in_a_model():
    ids = _ids()
    inp = keras.Input(shape=(3,), dtype="int32")
    table = PackedEmbedding(VOCABS, 4)
    out = SelectFields([2, 0], flatten=True)(table(inp))
    model = keras.Model(inp, out)
    emb = keras.ops.convert_to_numpy(table.embeddings)
    offsets = np.concatenate([[0], np.cumsum(VOCABS)[:-1]])
    expected = emb[ids + offsets][:, [2, 0]].reshape(len(ids), -1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(ids)), expected, **TOL)


# -- serialisation ---------------------------------------------------------------------------
@pytest.mark.parametrize("make, x", [
    (lambda: PackedEmbedding(VOCABS, 4, name="emb"), _ids()),
    (lambda: PackedEmbedding(VOCABS, 4, embeddings_initializer="glorot_uniform", name="emb"),
     _ids()),
    (lambda: SelectFields([3, 1], name="sel"), _fields()),
    (lambda: SelectFields([3, 1], flatten=True, name="sel"), _fields()),
], ids=["embedding", "embedding_glorot", "select", "select_flatten"])
def test_config_roundtrip_and_reload(make, x, tmp_path):
    layer = make()
    layer.build(x.shape)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)),
                                  keras.ops.convert_to_numpy(layer(x)))
    inp = keras.Input(shape=x.shape[1:], dtype=x.dtype.name)
    model = keras.Model(inp, layer(inp))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.get_layer(layer.name)) is type(layer)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)),
                                  keras.ops.convert_to_numpy(model(x)))
