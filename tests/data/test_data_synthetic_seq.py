"""synthetic-seq: behaviour histories whose labels need target attention, and a planted ceiling."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from composer.data import synthetic_seq as seq
from composer.data.dataset import DataSpec, Dataset, ListSpec
from composer.data.errors import DataError
from composer.data.synthetic_seq import Options, describe, generate, load


@pytest.fixture(scope="module")
def default():
    """The default dataset (its full size: the AUC margins are measured on it)."""
    return load("synthetic-seq")


def _frames_equal(a, b):
    lists = ["hist_item", "hist_cat"]
    pd.testing.assert_frame_equal(a.drop(columns=lists), b.drop(columns=lists))
    for column in lists:
        assert all(np.array_equal(x, y) for x, y in zip(a[column], b[column]))


def test_same_seed_same_table_and_noise_changes_only_the_labels():
    a, ta = generate(Options(rows=4000, seed=3))
    b, tb = generate(Options(rows=4000, seed=3))
    _frames_equal(a, b)
    for label in seq.LABELS:
        np.testing.assert_array_equal(ta[label], tb[label])
    c, _ = generate(Options(rows=4000, seed=4))
    assert not a["item_id"].equals(c["item_id"])
    d, _ = generate(Options(rows=4000, seed=3, noise=1.5))
    _frames_equal(a.drop(columns=list(seq.LABELS)), d.drop(columns=list(seq.LABELS)))
    assert not a["click"].equals(d["click"])


def test_list_columns_are_id_arrays_within_max_len_some_empty(default):
    frame = default.frame
    lengths = frame["hist_item"].map(len).to_numpy()
    for h, c in zip(frame["hist_item"], frame["hist_cat"]):
        assert isinstance(h, np.ndarray) and h.ndim == 1 and h.dtype == np.int64
        assert isinstance(c, np.ndarray) and c.shape == h.shape and c.dtype == np.int64
    assert lengths.max() == Options().max_len and lengths.min() == 0
    assert 0.05 < (lengths == 0).mean() < 0.12  # padding is exercised, full rows too
    assert (lengths == Options().max_len).mean() > 0.01
    short = load("synthetic-seq:rows=3000,max_len=5").frame["hist_item"].map(len)
    assert short.max() == 5 and short.min() == 0


def test_history_ids_are_item_ids_and_hist_cat_is_their_category(default):
    frame = default.frame
    flat = np.concatenate(frame["hist_item"].to_list())
    cats = np.concatenate(frame["hist_cat"].to_list())
    assert flat.min() >= 0 and flat.max() < seq.ITEMS
    # every history item is also a candidate of some train row: its embedding is learnt
    train = frame.loc[default.split == "train"]
    assert set(flat) <= set(train["item_id"])
    category = dict(zip(frame["item_id"], frame["item_cat"]))  # one category per item id
    assert len(set(zip(frame["item_id"], frame["item_cat"]))) == frame["item_id"].nunique()
    np.testing.assert_array_equal(cats, [category[i] for i in flat])


def test_histories_run_oldest_first(default):
    """like reads the newest items: its planted score follows the candidate's similarity to the
    last item of the history far more than to the first."""
    frame = default.frame
    w, hist, length = seq._rebuild(Options(), frame)
    long = length >= 4 * seq.RECENT
    item = frame["item_id"].to_numpy()[long]
    rows = np.arange(len(frame))[long]
    last = np.einsum("nd,nd->n", w.latent[item], w.latent[hist[rows, length[long] - 1]])
    first = np.einsum("nd,nd->n", w.latent[item], w.latent[hist[rows, 0]])
    like = default.meta["planted"]["like"][long]
    assert np.corrcoef(like, last)[0, 1] > np.corrcoef(like, first)[0, 1] + 0.2


def test_planted_truth_is_the_rows_probability_and_stays_aligned(default):
    frame, planted = default.frame, default.meta["planted"]
    assert sorted(planted) == ["click", "like"]
    for label in seq.LABELS:
        assert len(planted[label]) == len(frame)
        # a probability: calibrated on average
        assert planted[label].mean() == pytest.approx(frame[label].mean(), abs=0.01)
    test = default.part("test")
    np.testing.assert_array_equal(test.meta["planted"]["click"], planted["click"][default.split == "test"])
    # recomputed from the columns alone (the world of the seed, the frame's histories)
    w, hist, length = seq._rebuild(Options(), test.frame)
    logit = seq.logits(w, test.frame["user_id"].to_numpy(), test.frame["item_id"].to_numpy(),
                       np.log(test.frame["price"].to_numpy()),
                       *seq.relevance(w, test.frame["item_id"].to_numpy(), hist, length))
    for label in seq.LABELS:
        np.testing.assert_allclose(test.meta["planted"][label],
                                   seq._expected_sigmoid(logit[label], Options().noise), atol=1e-3)


def test_the_planted_score_beats_the_mean_pooling_oracle(default):
    """The gap target attention can close: the planted score (max over the history) against the
    same formula on the mean of the history latents, and against the best a fitted model does
    from the mean (its similarity and norm), the biases, price and length."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    frame = default.frame
    test = default.split == "test"
    train = (default.split == "train") & (np.arange(len(frame)) % 3 == 0)  # 40k rows: enough
    pooled = seq.mean_pooled_scores(Options(), frame)
    w, hist, length = seq._rebuild(Options(), frame)
    item, user = frame["item_id"].to_numpy(), frame["user_id"].to_numpy()
    mean = seq.history_means(w, hist)
    x = np.c_[np.einsum("nd,nd->n", w.latent[item], mean), np.linalg.norm(mean, axis=1), length,
              w.item_bias[item], w.item_quality[item], w.user_click[user], w.user_like[user],
              np.log(frame["price"].to_numpy())]
    for label in seq.LABELS:
        y = frame[label].to_numpy()
        planted = roc_auc_score(y[test], default.meta["planted"][label][test])
        formula = roc_auc_score(y[test], pooled[label][test])
        with threadpool_limits(1):  # the machine's cores are shared
            model = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x[train], y[train])
        fitted = roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])
        assert planted > 0.8, label
        assert planted > formula + 0.06, (label, planted, formula)
        assert planted > fitted + 0.03, (label, planted, fitted)


def test_one_interest_leaves_less_for_attention():
    gaps = {}
    for interests in (1, 4):
        options = Options(rows=40_000, interests=interests)
        frame, truth = generate(options)
        pooled = seq.mean_pooled_scores(options, frame)
        y = frame["click"].to_numpy()
        gaps[interests] = roc_auc_score(y, truth["click"]) - roc_auc_score(y, pooled["click"])
    assert gaps[4] > gaps[1] + 0.03, gaps


# --- names, specs, options -----------------------------------------------------------------

def test_spec_declares_the_lists_without_reading_data(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("describe generated data")

    monkeypatch.setattr(seq, "generate", boom)
    spec = describe("synthetic-seq")
    assert spec == DataSpec(
        name="synthetic-seq", categorical=("user_id", "item_id", "item_cat"), numeric=("price",),
        labels={"click": "click", "like": "like"}, group="user_id",
        lists={"hist_item": ListSpec(ordered=True, max_len=30, share="item_id"),
               "hist_cat": ListSpec(ordered=True, max_len=30, share="item_cat",
                                    aligned_with="hist_item")},
        description=spec.description)
    assert spec.features == ("user_id", "item_id", "item_cat", "hist_item", "hist_cat", "price")
    named = describe("synthetic-seq:max_len=12,interests=3")
    assert named.lists["hist_item"].max_len == 12 and named.lists["hist_cat"].max_len == 12
    assert "max_len=12" in named.description and "interests=3" in named.description


def test_every_spec_column_is_in_the_table():
    data = load("synthetic-seq:rows=2000")
    spec = data.spec
    assert set(spec.features) | set(spec.labels.values()) | {spec.group} <= set(data.frame.columns)
    assert data.counts()["test"] == pytest.approx(200, abs=60)


def test_options_on_the_name():
    data = load("synthetic-seq:rows=3000, seed=3,max_len=10")
    assert isinstance(data, Dataset) and len(data) == 3000
    assert data.meta["options"] == {"rows": 3000, "seed": 3, "max_len": 10, "interests": 4,
                                    "noise": 0.5}
    assert len(load("synthetic-seq:rows=1e3")) == 1000
    assert len(load("synthetic-seq:rows=3000", rows=500)) == 500  # the argument wins
    same, _ = generate(Options(rows=3000, seed=3, max_len=10))
    _frames_equal(data.frame, same)


@pytest.mark.parametrize("name, pattern", [
    ("synthetic-seq:max_lne=5", r"max_lne: unknown option .*did you mean 'max_len'"),
    ("synthetic-seq:rows", r"rows: option 'rows' needs a value"),
    ("synthetic-seq:rows=ten", r"rows: option 'rows' must be an integer, got 'ten'"),
    ("synthetic-seq:max_len=2.5", r"must be an integer"),
    ("synthetic-seq:noise=loud", r"must be a number"),
    ("synthetic-seq:rows=0", r"rows: must be a positive integer"),
    ("synthetic-seq:seed=-1", r"seed: must be >= 0"),
    ("synthetic-seq:noise=-1", r"noise: must be >= 0"),
    ("synthetic-seq:max_len=0", r"max_len: must be in \[1, 200\], got 0"),
    ("synthetic-seq:interests=9", r"interests: must be in \[1, 8\], got 9"),
    ("synthetic-seq:correlation=0.5", r"unknown option 'correlation'"),
    ("synthetic-seq:rows=10,rows=20", r"given twice"),
    ("synthetic-sq", r"unknown synthetic dataset 'synthetic-sq'.*did you mean 'synthetic-seq'"),
])
def test_bad_names_are_data_errors(name, pattern):
    with pytest.raises(DataError, match=pattern):
        describe(name)
    with pytest.raises(DataError, match=pattern):
        load(name)


def test_several_bad_options_are_reported_together():
    with pytest.raises(DataError) as info:
        describe("synthetic-seq:max_len=0,interests=0")
    assert {p.key for p in info.value.problems} == {"max_len", "interests"}


def test_register():
    seen = []
    seq.register(lambda name, describe_fn, load_fn: seen.append((name, describe_fn, load_fn)))
    assert seen == [("synthetic-seq", describe, load)]
