"""Multi-valued and sequence features end to end: composer/data/lists.py (flatten, pad), the
Preprocessor's shared tables, hashing, list encoding and quantile edges, PackedEmbedding with
list inputs, and one tiny model (candidate, shared-table history, aligned side sequence, hashed
tags, quantile and periodic numerics; sequence, target_attention, pool and attention blocks)
trained from a data YAML over a CSV and a Parquet file, reloaded, exported and served raw rows.
"""

import keras
import numpy as np
import pandas as pd
import pytest
from backend_grad import gradients

from composer.data.lists import flatten, pad, split_text
from composer.data.preprocess import Preprocessor, hash_ids, quantile_edges
from composer.layout import PADDING

TF = keras.backend.backend() == "tensorflow"


# -- lists.pad -------------------------------------------------------------------------------
def _pad_reference(rows, max_len, ordered):
    out = np.full((len(rows), max_len), PADDING, dtype=np.int32)
    for r, row in enumerate(rows):
        if ordered:  # the newest max_len, right-aligned
            keep = row[max(0, len(row) - max_len):]
            out[r, max_len - len(keep):] = keep
        else:  # the first max_len, left-aligned
            keep = row[:max_len]
            out[r, :len(keep)] = keep
    return out


@pytest.mark.parametrize("ordered", [True, False], ids=["sequence", "multi"])
@pytest.mark.parametrize("seed", range(4))
def test_pad_matches_a_per_row_reference(ordered, seed):
    rng = np.random.default_rng(seed)
    max_len = int(rng.integers(1, 6))
    # empty rows, short rows, rows of exactly max_len and rows longer than it
    lengths = np.r_[0, max_len, max_len + 3, rng.integers(0, 2 * max_len + 2, size=40), 0]
    rows = [rng.integers(0, 100, size=n).astype(np.int32) for n in lengths]
    codes = np.concatenate(rows).astype(np.int32)
    got = pad(codes, lengths, max_len, ordered)
    assert got.dtype == np.int32 and got.shape == (len(rows), max_len)
    np.testing.assert_array_equal(got, _pad_reference(rows, max_len, ordered))


def test_pad_of_nothing_is_all_padding():
    got = pad(np.zeros(0, np.int32), np.zeros(3, np.int64), 4, True)
    np.testing.assert_array_equal(got, np.full((3, 4), PADDING))


def test_pad_sequence_keeps_the_newest_at_the_last_position():
    got = pad(np.array([1, 2, 3, 4, 5, 6], np.int32), np.array([5, 1]), 3, ordered=True)
    np.testing.assert_array_equal(got, [[3, 4, 5], [-1, -1, 6]])
    got = pad(np.array([1, 2, 3, 4, 5, 6], np.int32), np.array([5, 1]), 3, ordered=False)
    np.testing.assert_array_equal(got, [[1, 2, 3], [6, -1, -1]])


# -- lists.flatten and split_text ------------------------------------------------------------
def test_flatten_every_kind_of_cell():
    cells = pd.Series([np.array(["a", "b"], dtype=object), ["c"], "39, 43", "", None, np.nan, [],
                       np.array([[1, 2]]), ("x", "y"), 7], dtype=object)
    flat, lengths = flatten(cells)
    assert lengths.tolist() == [2, 1, 2, 0, 0, 0, 0, 2, 2, 1]
    assert [str(v) for v in flat.tolist()] == ["a", "b", "c", "39", "43", "1", "2", "x", "y", "7"]


def test_flatten_of_only_empty_cells():
    flat, lengths = flatten(pd.Series(["", None, np.nan, []], dtype=object))
    assert len(flat) == 0 and lengths.tolist() == [0, 0, 0, 0]


def test_a_missing_value_inside_a_list_cell_keeps_its_position():
    # a history collected from a column with gaps holds NaN there: it stays a position (id 0,
    # the OOV row), so a side sequence stays aligned with its sequence
    cells = pd.Series([np.array(["a", None, "b"], dtype=object), ["c", np.nan], "a,,b"], dtype=object)
    flat, lengths = flatten(cells)
    assert lengths.tolist() == [3, 2, 3]  # text "a,,b" too: three values, the middle one missing
    pre = Preprocessor.fit(pd.DataFrame({"h": cells}), [], [], lists={"h": {"max_len": 3, "ordered": True}})
    a, b, c = (pre.vocabularies["h"].index(v) + 1 for v in "abc")
    np.testing.assert_array_equal(pre.encode_list("h", cells), [[a, 0, b], [-1, c, 0], [a, 0, b]])


def test_split_text_cells():
    got = split_text(pd.Series(["39,43", " a , b ", "", None, np.nan, "x,,y,", "solo"], dtype=object))
    assert [list(v) for v in got] == [["39", "43"], ["a", "b"], [], [], [], ["x", "", "y", ""], ["solo"]]
    assert list(got.index) == list(range(7))
    assert [list(v) for v in split_text(pd.Series(["a|b", "c,d"]), "|")] == [["a", "b"], ["c,d"]]


# -- the Preprocessor -------------------------------------------------------------------------
def test_a_shared_table_is_fitted_on_the_owner_and_every_sharer():
    frame = pd.DataFrame({
        "item_id": ["i1", "i2", "i1", "i3"],
        "hist_item": [["i2", "h9"], [], ["h9", "h9", "i1"], ["h8"]],  # h8, h9: never a candidate
        "tags": [["t1"], ["t2", "t1"], [], ["t1"]],
    })
    lists = {"hist_item": {"max_len": 3, "ordered": True}, "tags": {"max_len": 2, "ordered": False}}
    pre = Preprocessor.fit(frame, ["item_id"], [], lists=lists, tables={"hist_item": "item_id"})
    # one vocabulary for the owner, on the summed counts, most frequent first, ties by value
    counts = {"i1": 3, "h9": 3, "i2": 2, "i3": 1, "h8": 1}
    assert pre.vocabularies["item_id"] == sorted(counts, key=lambda v: (-counts[v], v))
    assert "hist_item" not in pre.vocabularies and pre.vocabularies["tags"] == ["t1", "t2"]
    assert pre.vocab_sizes() == {"item_id": 6, "tags": 3}
    vocab = pre.vocabularies["item_id"]
    # a history item never seen as a candidate is a real row, and the same row as a candidate
    hist = pre.encode_list("hist_item", pd.Series([["h8", "i1", "unseen"]]))
    np.testing.assert_array_equal(hist, [[vocab.index("h8") + 1, vocab.index("i1") + 1, 0]])
    assert pre.encode_categorical("item_id", pd.Series(["h8"]))[0] == vocab.index("h8") + 1


def test_encode_list_pads_with_minus_one_and_keeps_zero_for_unknown_values():
    frame = pd.DataFrame({"tags": [["a", "b"], ["b"]], "hist": [["b"], []]})
    pre = Preprocessor.fit(frame, [], [], lists={"tags": {"max_len": 3, "ordered": False},
                                                 "hist": {"max_len": 3, "ordered": True}},
                           tables={"hist": "tags"})
    got = pre.encode_list("tags", pd.Series([["b", "zzz"], [], "a,b,b,a", None], dtype=object))
    np.testing.assert_array_equal(got, [[1, 0, -1], [-1, -1, -1], [2, 1, 1], [-1, -1, -1]])
    got = pre.encode_list("hist", pd.Series([["b", "zzz"], "a,b,b,a"], dtype=object))
    np.testing.assert_array_equal(got, [[-1, 1, 0], [1, 1, 2]])
    assert got.dtype == np.int32


def _tf_hash(texts, buckets):
    tf = pytest.importorskip("tensorflow")
    return tf.strings.to_hash_bucket_fast(np.asarray(texts, dtype=object).astype(str), buckets - 1).numpy() + 1


def test_hash_ids_are_tensorflows_to_hash_bucket_fast_plus_one():
    rng = np.random.default_rng(0)
    texts = [f"user{k}" for k in rng.integers(0, 10**9, size=200)] + ["39", "a,b", "é ü 漢字", " x "]
    for buckets in (2, 17, 1000, 1 << 31):
        got = hash_ids(pd.Series(texts), buckets)
        np.testing.assert_array_equal(got, _tf_hash(texts, buckets))
        assert got.min() >= 1 and got.max() <= buckets - 1
    got = hash_ids(pd.Series(["", None, "user7", np.nan], dtype=object), 50)
    assert got[0] == 0 and got[1] == 0 and got[3] == 0 and got[2] == _tf_hash(["user7"], 50)[0]


def test_a_hashed_owner_hashes_its_sharers_lists_and_pads_them():
    pre = Preprocessor.fit(pd.DataFrame({"user": ["u1"], "friends": [["u2"]]}), ["user"], [],
                           lists={"friends": {"max_len": 3, "ordered": False}},
                           tables={"friends": "user"}, hashed={"user": 64})
    assert pre.vocabularies == {} and pre.vocab_sizes() == {"user": 64}
    got = pre.encode_list("friends", pd.Series([["u9", "", "u3"], [], "u3"], dtype=object))
    u9, u3 = _tf_hash(["u9", "u3"], 64)
    np.testing.assert_array_equal(got, [[u9, 0, u3], [-1, -1, -1], [u3, -1, -1]])  # '' -> row 0


def test_quantile_edges_are_the_distinct_quantiles():
    values = np.r_[np.zeros(60), np.arange(1.0, 41.0)]
    edges = quantile_edges(values, 4)
    assert edges == sorted(set(np.quantile(values, [0.25, 0.5, 0.75]).tolist()))
    assert edges == [0.0, 15.25]  # ties collapse: the zeros give one edge, not two
    assert quantile_edges(np.arange(100.0), 5) == pytest.approx([19.8, 39.6, 59.4, 79.2])
    assert quantile_edges(np.array([]), 5) == []


# -- PackedEmbedding with list inputs ---------------------------------------------------------
VOCABS, DIM = [5, 7, 3], 4
COLUMNS = [0, 2]  # the flat matrix's columns read tables 0 and 2
SEQUENCES = [0, 1]  # a list sharing table 0 (the candidate's), a list of table 1


def _packed_inputs(seed=0, batch=6):
    rng = np.random.default_rng(seed)
    flat = np.stack([rng.integers(0, VOCABS[t], batch) for t in COLUMNS], axis=1).astype("int32")
    seqs = []
    for t, length in zip(SEQUENCES, (5, 3)):
        ids = rng.integers(0, VOCABS[t], (batch, length)).astype("int32")
        keep = rng.integers(0, length + 1, batch)
        keep[0], keep[1] = 0, length  # an empty row and a full one
        ids[np.arange(length)[None, :] < (length - keep)[:, None]] = PADDING  # right-aligned
        seqs.append(ids)
    return flat, seqs


def _layer(flat=True):
    from composer.layers.features import PackedEmbedding

    keras.utils.set_random_seed(7)
    layer = PackedEmbedding(VOCABS, DIM, columns=COLUMNS, sequences=SEQUENCES, flat=flat)
    return layer


def _lookup_reference(table, flat, seqs):
    offsets = np.r_[0, np.cumsum(VOCABS)[:-1]]
    rows = [table[offsets[COLUMNS] + flat]] if flat is not None else []
    for t, ids in zip(SEQUENCES, seqs):
        rows.append(np.where(ids[..., None] >= 0, table[offsets[t] + np.maximum(ids, 0)], 0.0))
    return rows


@pytest.mark.parametrize("with_flat", [True, False], ids=["flat_and_lists", "lists_only"])
def test_packed_embedding_lists_equal_separate_lookups_in_their_owners_rows(with_flat):
    flat, seqs = _packed_inputs()
    layer = _layer(flat=with_flat)
    outs = layer(([flat] if with_flat else []) + seqs)
    table = keras.ops.convert_to_numpy(layer.embeddings)
    assert table.shape == (sum(VOCABS), DIM)
    want = _lookup_reference(table, flat if with_flat else None, seqs)
    assert len(outs) == len(want)
    for got, ref in zip(outs, want):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), ref)
    for got, ids in zip(outs[-2:], seqs):  # padding positions are exactly zero
        got = keras.ops.convert_to_numpy(got)
        assert (ids < 0).any() and np.all(got[ids < 0] == 0.0)
        assert np.all(np.abs(got[ids >= 0]).sum(-1) > 0)


def test_packed_embedding_gradient_is_zero_on_rows_only_padding_touches():
    flat, seqs = _packed_inputs(seed=1)
    # no real id 0 in the second list: its table's row 0 is read only by padding (as -1 -> 0)
    seqs[1] = np.where(seqs[1] == 0, 1, seqs[1]).astype("int32")
    layer = _layer()
    layer.build(None)
    weights = [np.random.default_rng(2).normal(size=(flat.shape[0], w, DIM)).astype("float32")
               for w in (flat.shape[1], *(s.shape[1] for s in seqs))]

    def loss():
        outs = layer([flat, *seqs])
        return sum(keras.ops.sum(o * w) for o, w in zip(outs, weights))

    (grad,) = gradients(loss, [], [layer.embeddings])
    offsets = np.r_[0, np.cumsum(VOCABS)[:-1]]
    touched = set((offsets[COLUMNS] + flat).ravel().tolist())
    for t, ids in zip(SEQUENCES, seqs):
        touched |= set((offsets[t] + ids[ids >= 0]).tolist())
    untouched = sorted(set(range(sum(VOCABS))) - touched)
    assert offsets[1] in untouched  # the row padding would read
    np.testing.assert_array_equal(grad[untouched], 0.0)
    # the touched rows get exactly the sum of their positions' weights
    expected = np.zeros_like(grad)
    np.add.at(expected, (offsets[COLUMNS] + flat).ravel(), weights[0].reshape(-1, DIM))
    for t, ids, w in zip(SEQUENCES, seqs, weights[1:]):
        np.add.at(expected, offsets[t] + ids[ids >= 0], w[ids >= 0])
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6)


def test_packed_embedding_with_lists_saves_and_reloads(tmp_path):
    flat, seqs = _packed_inputs()
    inputs = [keras.Input((flat.shape[1],), dtype="int32")] + [keras.Input((s.shape[1],), dtype="int32")
                                                               for s in seqs]
    model = keras.Model(inputs, _layer()(inputs))
    model.save(tmp_path / "m.keras")
    from composer import load_model

    again = load_model(str(tmp_path / "m.keras"), safe_mode=True)
    for a, b in zip(model.predict([flat, *seqs], verbose=0), again.predict([flat, *seqs], verbose=0)):
        np.testing.assert_array_equal(a, b)


# -- one model, end to end --------------------------------------------------------------------
MAX_LEN = 6
DATA_YAML = """\
source: {source}
categorical: [user_id, item_id]
numeric: [price, age]
multi:
  tags: {{max_len: 4}}
sequences:
  hist_item: {{max_len: {max_len}, share: item_id}}
  hist_cat: {{max_len: {max_len}, aligned_with: hist_item}}
labels: {{click: click, like: like}}
outcomes: {{play_time: known only after the impression}}
split: {{hash: user_id, valid: 0.2, test: 0.2}}
"""

BLUEPRINT = f"""\
name: seq_end_to_end
data: data_csv.yaml
features:
  - {{name: user_id, kind: categorical, dim: 4}}
  - {{name: item_id, kind: categorical, dim: 8}}
  - {{name: hist_item, kind: sequence, share: item_id, max_len: {MAX_LEN}}}
  - {{name: hist_cat, kind: sequence, aligned_with: hist_item, max_len: {MAX_LEN}, dim: 4}}
  - {{name: tags, kind: multi, max_len: 4, hash_buckets: 16, dim: 4}}
  - {{name: price, kind: numeric, embed: {{kind: quantile, buckets: 4, dim: 4}}}}
  - {{name: age, kind: numeric, embed: {{kind: periodic, frequencies: 3, dim: 4}}}}
groups:
  cand: [item_id]
  ctx: [user_id, tags, price, age]
tasks:
  - {{name: click, label: click}}
  - {{name: like, label: like}}
blocks:
  q:      {{type: embed, group: cand}}
  c:      {{type: embed, group: ctx}}
  hist:   {{type: sequence, features: [hist_item]}}
  side:   {{type: sequence, features: [hist_item, hist_cat]}}
  din:    {{type: target_attention, input: hist, query: q, units: [8]}}
  pooled: {{type: pool, input: side, mode: mean}}
  self:   {{type: attention, input: side, heads: 2, pool: none}}
  asked:  {{type: attention, input: self, query: c, heads: 1}}
  cat:    {{type: concat, inputs: [q, c, din, pooled, asked]}}
  top:    {{type: mlp, input: cat, units: [16]}}
  tower:  {{type: tower, for_each: task, input: top, units: [8]}}
outputs: {{click: tower.click, like: tower.like}}
training: {{batch_size: 64, epochs: 1, seed: 3}}
"""


def make_log(rows=300, seed=0) -> pd.DataFrame:
    """A tiny log: histories of 0..9 items (h* items are never candidates), the aligned
    categories, 0..3 tags, a skewed and a normal numeric, two labels and an outcome."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(rows):
        n = int(rng.integers(0, 10))
        hist = [f"h{k}" if k % 5 == 0 else f"i{k % 30}" for k in rng.integers(0, 40, n).tolist()]
        out.append(dict(user_id=f"u{r % 25}", item_id=f"i{int(rng.integers(0, 30))}", hist_item=hist,
                        hist_cat=[f"c{len(h) % 4}{h[-1]}" for h in hist],
                        tags=[f"t{k}" for k in rng.integers(0, 12, int(rng.integers(0, 4))).tolist()],
                        price=float(rng.gamma(2.0, 3.0)), age=float(rng.normal(40, 10)),
                        click=int(rng.random() < 0.3), like=int(rng.random() < 0.2),
                        play_time=float(rng.random() * 100)))
    return pd.DataFrame(out)


def write_data(folder, frame=None):
    """data_csv.yaml over a CSV (list cells as "a,b" text) and data_pq.yaml over a Parquet file
    (list cells), the same rows."""
    frame = make_log() if frame is None else frame
    frame.to_parquet(folder / "data.parquet")
    text = frame.copy()
    for col in ("hist_item", "hist_cat", "tags"):
        text[col] = [",".join(v) for v in text[col]]
    text.to_csv(folder / "data.csv", index=False)
    (folder / "data_csv.yaml").write_text(DATA_YAML.format(source="data.csv", max_len=MAX_LEN))
    (folder / "data_pq.yaml").write_text(DATA_YAML.format(source="data.parquet", max_len=MAX_LEN))
    (folder / "bp.yaml").write_text(BLUEPRINT)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from composer import training

    folder = write_data(tmp_path_factory.mktemp("seq"))
    exp = training.prepare(str(folder / "bp.yaml"), data=str(folder / "data_csv.yaml"))
    history = training.fit(exp, verbose=0, epochs=1)
    assert len(history.history["loss"]) == 1
    training.save_run(exp, str(folder / "run"), history)
    return exp, folder


@pytest.fixture(scope="module")
def serve(run, tmp_path_factory):
    """The run's SavedModel signature (exported once)."""
    if not TF:
        pytest.skip("the serving export is a TensorFlow SavedModel")
    import tensorflow as tf

    from composer.export_tf import export_saved_model, raw_features

    exp, _ = run
    signature = tf.saved_model.load(str(export_saved_model(exp, str(tmp_path_factory.mktemp("sm") / "sm")))
                                    ).signatures["serving_default"]

    def call(rows):
        raw = raw_features(rows, exp.graph.layout)
        return raw, {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in raw.items()}).items()}

    return call


def _predict(exp, rows):
    out = exp.model.predict(exp.pre.pack(rows, exp.graph.layout), verbose=0)
    return {t: np.asarray(out[t]).reshape(-1) for t in exp.tasks}


def test_params_of_the_model_equal_the_graphs_count(run):
    exp, _ = run
    assert exp.graph.total_params is not None
    assert exp.model.count_params() == exp.graph.total_params
    layout = exp.graph.layout
    assert layout.table_of["hist_item"] == "item_id" and layout.table_of["hist_cat"] == "hist_cat"
    assert set(exp.model.input) == {"ids_d4", "ids_d8", "seq_hist_item", "seq_hist_cat", "seq_tags", "numeric"}
    assert exp.pre.hashed == {"tags": 16} and "hist_item" not in exp.pre.vocabularies


def test_fitted_on_train_only_and_shared_with_the_history(run):
    exp, _ = run
    train = exp.dataset.part("train").frame
    seen = set(train["item_id"]) | {v for cell in train["hist_item"] for v in cell}
    assert set(exp.pre.vocabularies["item_id"]) == seen
    assert any(v.startswith("h") for v in exp.pre.vocabularies["item_id"])  # history-only items
    prices = train["price"].to_numpy(dtype="float64")
    edges = exp.pre.numeric["price"]["edges"]
    assert edges == quantile_edges(prices, 4)
    assert edges == np.unique(np.quantile(prices, [0.25, 0.5, 0.75])).tolist()


def test_quantile_edges_never_read_valid_or_test_values(run):
    from composer import training
    from composer.blueprint import load_blueprint
    from composer.data.dataset import Dataset

    exp, folder = run
    bp, doc = load_blueprint(str(folder / "bp.yaml"), data=str(folder / "data_csv.yaml"))
    ds = exp.dataset

    def edges_with(price):
        frame = ds.frame.copy()
        frame["price"] = price
        pre = training.fit_preprocessing(bp, doc, Dataset(ds.spec, frame, ds.split, ds.source))
        return pre.numeric["price"]["edges"]

    price = ds.frame["price"].to_numpy(dtype="float64")
    held_out = ds.split != "train"
    assert edges_with(price) == exp.pre.numeric["price"]["edges"]
    assert edges_with(np.where(held_out, price * 1000 + 7, price)) == exp.pre.numeric["price"]["edges"]
    assert edges_with(np.where(held_out, price, price * 2)) != exp.pre.numeric["price"]["edges"]


def test_csv_text_lists_and_parquet_list_cells_pack_alike(run):
    from composer.data import registry

    exp, folder = run
    csv = registry.load(str(folder / "data_csv.yaml"))
    parquet = registry.load(str(folder / "data_pq.yaml"))
    np.testing.assert_array_equal(csv.split, parquet.split)
    a = exp.pre.pack(csv.frame, exp.graph.layout)
    b = exp.pre.pack(parquet.frame, exp.graph.layout)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    lengths = np.array([len(v) for v in parquet.frame["hist_item"]])
    packed = a["seq_hist_item"]
    assert packed.shape == (len(lengths), MAX_LEN)
    np.testing.assert_array_equal((packed >= 0).sum(1), np.minimum(lengths, MAX_LEN))
    np.testing.assert_array_equal(a["seq_hist_cat"] >= 0, packed >= 0)  # one mask for aligned sequences


def test_reload_with_safe_mode_predicts_identically(run):
    from composer import load_model

    exp, folder = run
    rows = exp.dataset.part("test").frame
    again = load_model(str(folder / "run" / "model.keras"), safe_mode=True)
    x = exp.pre.pack(rows, exp.graph.layout)
    # called directly, both alike: the trained model's `predict` runs the function training
    # compiled (XLA on CPU), which rounds differently in the last bit
    before, after = exp.model(x, training=False), again(x, training=False)
    for task in exp.tasks:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(before[task]),
                                      keras.ops.convert_to_numpy(after[task]))
    assert Preprocessor.load(str(folder / "run" / "preprocessing.json")) == exp.pre


def _new_rows(exp):
    """Raw rows the model never saw: unseen ids everywhere, an empty history (as an empty list
    and as empty text), missing numerics, unknown tags."""
    base = exp.dataset.part("test").frame.head(3).copy()
    base["user_id"] = ["nobody", "u1", "u2"]
    base["item_id"] = ["never-seen-item", "i3", "i4"]
    base["hist_item"] = pd.Series([[], np.array(["i1", "never-seen", "h5"], dtype=object), ""], dtype=object)
    base["hist_cat"] = pd.Series([[], np.array(["c1", "c9", "c0"], dtype=object), ""], dtype=object)
    base["tags"] = pd.Series([["brand-new-tag"], [], None], dtype=object)
    base["price"] = [np.nan, 1e6, -5.0]
    return base.reset_index(drop=True)


def test_new_rows_with_unseen_ids_and_empty_histories_are_predicted(run):
    exp, _ = run
    rows = _new_rows(exp)
    x = exp.pre.pack(rows, exp.graph.layout)
    np.testing.assert_array_equal(x["seq_hist_item"][0], [PADDING] * MAX_LEN)
    np.testing.assert_array_equal(x["seq_hist_item"][1][-3:] >= 0, [True, True, True])
    assert x["seq_hist_item"][1][-2] == 0  # unseen in a history: the OOV row, not padding
    for p in _predict(exp, rows).values():
        assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))


def test_items_older_than_max_len_never_change_a_prediction(run):
    exp, _ = run
    row = exp.dataset.part("test").frame.head(1)
    kept = [f"i{k}" for k in range(MAX_LEN)]
    cats = [f"c{k}" for k in range(MAX_LEN)]
    rows = pd.concat([row] * 4, ignore_index=True)
    rows["hist_item"] = pd.Series([kept, ["h0", "i7", *kept], ["i9", "i2", "h5", "i4", *kept],
                                   [*kept[:-1], "i29"]], dtype=object)
    rows["hist_cat"] = pd.Series([cats, ["c1", "c2", *cats], ["c3", "c0", "c1", "c2", *cats],
                                  cats], dtype=object)
    x = exp.pre.pack(rows, exp.graph.layout)
    for name in ("seq_hist_item", "seq_hist_cat"):
        np.testing.assert_array_equal(x[name][1], x[name][0])
        np.testing.assert_array_equal(x[name][2], x[name][0])
    pred = _predict(exp, rows)
    for task, p in pred.items():
        assert p[1] == p[0] and p[2] == p[0], task
        assert p[3] != p[0], task  # the newest item is read: the check above could fail


def test_saved_model_serves_raw_lists_like_the_model(run, serve):
    exp, _ = run
    rows = pd.concat([exp.dataset.part("test").frame, _new_rows(exp)], ignore_index=True)
    raw, served = serve(rows)
    assert raw["hist_item"].dtype.kind == "U" and raw["hist_item"][-3] == ""  # one delimited string per row
    expected = _predict(exp, rows)
    assert set(served) == set(exp.tasks)
    for task in exp.tasks:
        np.testing.assert_allclose(served[task], expected[task], rtol=1e-6, atol=1e-6)


def test_saved_model_serves_a_missing_value_inside_a_list_like_the_model(run, serve):
    exp, _ = run
    rows = exp.dataset.part("test").frame.head(1).copy()
    rows["hist_item"] = pd.Series([np.array(["i1", "i2", "i3"], dtype=object)], dtype=object)
    rows["hist_cat"] = pd.Series([np.array(["c1", None, "c0"], dtype=object)], dtype=object)  # a gap
    _, served = serve(rows)
    expected = _predict(exp, rows)
    for task in exp.tasks:
        np.testing.assert_allclose(served[task], expected[task], rtol=1e-6, atol=1e-6)


def test_diagram_shows_the_sequence_inputs_and_their_tables(run):
    from composer.diagram import to_dot

    exp, _ = run
    source = to_dot(exp.graph).source
    assert f"hist_item: sequence (B, {MAX_LEN}) → (B, {MAX_LEN}, 8) · table of item_id" in source
    assert f"hist_cat: sequence (B, {MAX_LEN}) → (B, {MAX_LEN}, 4)" in source
    assert "tags: multi (B, 4) → (B, 4, 4)" in source
    assert "table of hist_cat" not in source and "table of tags" not in source
    assert "price (quantile, d4)" in source and "age (periodic, d4)" in source
