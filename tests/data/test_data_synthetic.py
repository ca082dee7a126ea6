"""Tests for composer/data/synthetic.py: the table's shape, its planted structure, and the names.

Named test_data_synthetic.py so it cannot clash with another test_synthetic.py under pytest's
default (rootdir-less) module naming.
"""
import numpy as np
import pandas as pd
import pytest

from composer.data import synthetic
from composer.data.dataset import DataSpec, Dataset
from composer.data.errors import DataError
from composer.data.synthetic import Options, describe, generate, load

ROWS = 50_000
LABELS = ("click", "like", "conversion")


@pytest.fixture(scope="module")
def default():
    """The default dataset (200,000 rows), generated once."""
    return load("synthetic")


@pytest.fixture(scope="module")
def small():
    return generate(Options(rows=ROWS))


# --- the table -----------------------------------------------------------------------------

def test_same_seed_same_table_other_seed_other_table():
    a, la = generate(Options(rows=5000, seed=7))
    b, lb = generate(Options(rows=5000, seed=7))
    c, _ = generate(Options(rows=5000, seed=8))
    pd.testing.assert_frame_equal(a, b)
    for task in la:
        np.testing.assert_array_equal(la[task], lb[task])
    assert not a.equals(c)


def test_columns_and_dtypes(default):
    frame = default.frame
    assert len(default) == 200_000
    assert list(frame.columns) == [
        "user_id", "item_id", "item_category", "user_segment", "scenario",
        "price", "user_activity", "day", "click", "like", "conversion"]
    for col, prefix, size in [("user_id", "u", 1000), ("item_id", "i", 2000),
                              ("item_category", "c", 50), ("user_segment", "s", 12)]:
        values = frame[col]
        assert pd.api.types.is_string_dtype(values), col
        assert values.str.fullmatch(prefix + r"\d+").all(), col
        ids = values.str.slice(1).astype(int)
        assert ids.min() >= 0 and ids.max() < size, col
        assert values.nunique() > 0.9 * size, col  # (nearly) every id occurs
    assert set(frame["scenario"]) == {"tab0", "tab1", "tab2"}
    for col in ("price", "user_activity"):
        assert frame[col].dtype == np.float64
        assert 0.005 < frame[col].isna().mean() < 0.015, col
        assert (frame[col].dropna() > 0).all(), col
    for col in LABELS:
        assert frame[col].dtype == np.int64
        assert set(frame[col].unique()) == {0, 1}
    assert frame["day"].between(0, 9).all()


def test_ids_have_fixed_attributes(small):
    frame, _ = small
    assert (frame.groupby("user_id")["user_segment"].nunique() == 1).all()
    assert (frame.groupby("item_id")["item_category"].nunique() == 1).all()


def test_conversion_only_on_clicked_rows(default):
    frame = default.frame
    assert ((frame["conversion"] == 1) <= (frame["click"] == 1)).all()
    assert frame.loc[frame["click"] == 1, "conversion"].mean() > 0.05


@pytest.fixture(scope="module")
def esm2():
    """The default table with ESM2's decisive-action label (synthetic-esm2), generated once."""
    return load("synthetic-esm2")


def test_esm2_action_is_planted_between_click_and_buy(default, esm2):
    frame = esm2.frame
    assert list(frame.columns) == [*default.frame.columns, "action"]
    pd.testing.assert_frame_equal(frame.drop(columns="action"), default.frame)  # nothing else moved
    assert esm2.spec.labels == {"click": "click", "action": "action", "conversion": "conversion"}
    click, action, buy = (frame[c].to_numpy() == 1 for c in ("click", "action", "conversion"))
    assert frame["action"].dtype == np.int64
    assert not (action & ~click).any()  # only clicked rows act
    assert 0.1 < action[click].mean() < 0.5
    after_action, after_other = buy[action].mean(), buy[click & ~action].mean()
    assert after_action > 0.3 and after_other < 0.1 and after_action > 5 * after_other
    assert buy[action].sum() > 0.6 * buy.sum()  # most buys follow an action
    # action has its own planted task: its noiseless logit ranks actions among clicked rows
    from sklearn.metrics import roc_auc_score

    part, logits = generate(Options(rows=ROWS), action=True)
    clicked = part["click"].to_numpy() == 1
    assert roc_auc_score(part["action"][clicked], logits["action"][clicked]) > 0.65
    assert abs(np.corrcoef(logits["action"], logits["click"])[0, 1]) < 0.95


def test_esm2_action_stream_is_separate():
    a, la = generate(Options(rows=5000, seed=7))
    b, lb = generate(Options(rows=5000, seed=7), action=True)
    pd.testing.assert_frame_equal(a, b.drop(columns="action"))
    assert set(lb) == set(la) | {"action"}
    for task in la:
        np.testing.assert_array_equal(la[task], lb[task])


def test_positive_rates(default):
    frame = default.frame
    click, like, conversion = (frame[c].mean() for c in LABELS)
    assert 0.10 <= click <= 0.30
    assert 0.03 <= like < click
    assert 0.01 <= conversion < like
    for _, part in frame.groupby("scenario"):
        assert 0.10 <= part["click"].mean() <= 0.35
        assert 0.02 <= part["like"].mean() < part["click"].mean()


def test_scenario_shares(default):
    shares = default.frame["scenario"].value_counts(normalize=True)
    for scenario, share in zip(synthetic.SCENARIOS, synthetic.SCENARIO_SHARES):
        assert shares[scenario] == pytest.approx(share, abs=0.01)


def test_split_by_day(default):
    day = default.frame["day"].to_numpy()
    np.testing.assert_array_equal(default.split == "train", day <= 7)
    np.testing.assert_array_equal(default.split == "valid", day == 8)
    np.testing.assert_array_equal(default.split == "test", day == 9)
    counts = default.counts()
    assert sum(counts.values()) == len(default)
    assert counts["train"] / len(default) == pytest.approx(0.8, abs=0.01)
    assert counts["valid"] / len(default) == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / len(default) == pytest.approx(0.1, abs=0.01)
    test = default.part("test")
    assert len(test) == counts["test"] and set(test.split) == {"test"}


# --- planted structure ---------------------------------------------------------------------

def _pearson(correlation, scenario_shift=0.0):
    frame, logits = generate(Options(rows=ROWS, correlation=correlation,
                                     scenario_shift=scenario_shift))
    # One scenario, one base rate: the logits' spread is the planted scores'.
    tab0 = (frame["scenario"] == "tab0").to_numpy()
    return np.corrcoef(logits["click"][tab0], logits["like"][tab0])[0, 1]


def test_task_correlation_follows_the_option():
    measured = {c: _pearson(c) for c in (0.0, 0.1, 0.5, 0.9)}
    assert measured[0.1] < measured[0.5] < measured[0.9]
    for c, r in measured.items():
        assert r == pytest.approx(c, abs=0.1)
    assert _pearson(0.9, scenario_shift=0.6) > _pearson(0.1, scenario_shift=0.6) + 0.5


def test_options_other_than_rows_and_seed_change_only_the_labels(small):
    frame, logits = small
    other, other_logits = generate(Options(rows=ROWS, correlation=0.1, scenario_shift=1.0,
                                           noise=1.0))
    features = [c for c in frame.columns if c not in LABELS]
    pd.testing.assert_frame_equal(frame[features], other[features])
    assert not frame["like"].equals(other["like"])


def test_scenarios_rotate_the_task_function(small):
    frame, logits = small
    _, flat = generate(Options(rows=ROWS, scenario_shift=0.0))
    scenario = frame["scenario"].to_numpy()
    tab0, tab2 = scenario == "tab0", scenario == "tab2"
    # tab0 keeps the base task vectors; tab2 turns them by 0.6 * pi/2 (cosine 0.59).
    np.testing.assert_allclose(logits["click"][tab0], flat["click"][tab0])
    assert np.corrcoef(logits["click"][tab2], flat["click"][tab2])[0, 1] < 0.9
    # ... and scenarios have their own base rates.
    rates = frame.groupby("scenario")["click"].mean()
    assert rates["tab2"] > rates["tab0"] > rates["tab1"]


def test_scenario_shift_2_turns_tab2_against_tab0():
    """At scenario_shift=2 tab2's task vectors are tab0's negated (a half turn): its click
    logits run against those its rows would have under tab0's rule (the sinusoids are not odd,
    so the correlation is strongly negative, not -1)."""
    _, flat = generate(Options(rows=ROWS, scenario_shift=0.0))
    frame, opposite = generate(Options(rows=ROWS, scenario_shift=2.0))
    tab2 = frame["scenario"].to_numpy() == "tab2"
    assert np.corrcoef(opposite["click"][tab2], flat["click"][tab2])[0, 1] < -0.5


def test_scenario_rotation_has_the_stated_cosine():
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))[0]
    rotation = synthetic.scenario_rotation(0.7, basis)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(8), atol=1e-12)
    for x in np.random.default_rng(1).normal(size=(5, 8)):
        assert x @ rotation @ x == pytest.approx(np.cos(0.7) * x @ x)


@pytest.mark.parametrize("shared", [0, 1])
def test_shared_planes_put_tab2s_task_vector_in_the_span_of_tab0s_and_tab1s(shared):
    rng = np.random.default_rng(4)
    planes = [np.linalg.qr(rng.normal(size=(8, 8)))[0] for _ in synthetic.SCENARIOS]
    rotations = synthetic.scenario_rotations(Options(shared_planes=shared), planes)
    for w in rng.normal(size=(3, 8)):
        tab0, tab1, tab2 = rotations @ w
        span = np.stack([tab0, tab1], axis=1)
        residual = tab2 - span @ np.linalg.lstsq(span, tab2, rcond=None)[0]
        if shared:
            assert np.linalg.norm(residual) < 1e-10 * np.linalg.norm(w)
        else:  # planes of its own: tab2 needs a direction tab0 and tab1 never show
            assert np.linalg.norm(residual) > 0.1 * np.linalg.norm(w)


def test_shared_planes_change_only_tab1_and_tab2_labels(small):
    frame, logits = small
    other, other_logits = generate(Options(rows=ROWS, shared_planes=1))
    features = [c for c in frame.columns if c not in LABELS]
    pd.testing.assert_frame_equal(frame[features], other[features])
    tab0 = frame["scenario"].to_numpy() == "tab0"  # angle 0: no rotation, whatever the planes
    np.testing.assert_allclose(other_logits["click"][tab0], logits["click"][tab0])
    assert not np.allclose(other_logits["click"][~tab0], logits["click"][~tab0])


def test_a_linear_model_on_one_hot_ids_finds_signal(small):
    """Sanity that each label carries learnable signal: no neural net needed."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import OneHotEncoder

    frame, logits = small
    train, test = (frame["day"] <= 7).to_numpy(), (frame["day"] == 9).to_numpy()
    categorical = ["user_id", "item_id", "item_category", "user_segment", "scenario"]
    encoder = OneHotEncoder(handle_unknown="ignore").fit(frame.loc[train, categorical])
    numeric = frame[["price", "user_activity"]]
    numeric = np.log(numeric.fillna(numeric[train].median()))
    numeric = (numeric - numeric[train].mean()) / numeric[train].std()
    x = sparse.hstack([encoder.transform(frame[categorical]),
                       sparse.csr_matrix(numeric.to_numpy())]).tocsr()
    for task in LABELS:
        y = frame[task].to_numpy()
        model = LogisticRegression(C=0.1, max_iter=1000).fit(x[train], y[train])
        auc = roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])
        assert auc > 0.65, (task, auc)
        if task != "conversion":  # conversion's planted logit is conditional on a click
            assert roc_auc_score(y[test], logits[task][test]) > auc, task  # the truth is better


# --- names, specs, options -----------------------------------------------------------------

def test_specs():
    spec = describe("synthetic")
    assert spec == DataSpec(
        name="synthetic", categorical=("user_id", "item_id", "item_category", "user_segment"),
        numeric=("price", "user_activity"), labels={"click": "click", "like": "like"},
        scenario=None, group="user_id", description=spec.description)
    msl = describe("synthetic-msl")
    assert msl.categorical == spec.categorical + ("scenario",)
    assert msl.scenario == "scenario" and msl.labels == {"click": "click"}
    chain = describe("synthetic-chain")
    assert chain.labels == {"click": "click", "conversion": "conversion"} and chain.scenario is None
    esm2 = describe("synthetic-esm2")
    assert esm2.labels == {"click": "click", "action": "action", "conversion": "conversion"}
    assert esm2.features == chain.features and esm2.scenario is None
    named = describe("synthetic:correlation=0.1,rows=50000")
    assert named.name == "synthetic:correlation=0.1,rows=50000"
    assert "correlation=0.1" in named.description


def test_every_spec_column_is_in_the_table():
    for name in synthetic.VIEWS:
        data = load(f"{name}:rows=2000")
        spec = data.spec
        columns = set(spec.features) | set(spec.labels.values()) | {spec.group}
        columns |= {spec.scenario} if spec.scenario else set()
        assert columns <= set(data.frame.columns), name


def test_options_on_the_name():
    data = load("synthetic:correlation=0.1, rows=3000,seed=3")
    assert isinstance(data, Dataset) and len(data) == 3000
    assert data.meta["options"] == {"rows": 3000, "seed": 3, "correlation": 0.1,
                                    "scenario_shift": 0.6, "noise": 0.5, "shared_planes": 0}
    assert len(load("synthetic:rows=1e3")) == 1000
    assert len(load("synthetic:rows=3000", rows=500)) == 500  # the argument wins
    same, _ = generate(Options(rows=3000, seed=3, correlation=0.1))
    pd.testing.assert_frame_equal(data.frame, same)


@pytest.mark.parametrize("name, pattern", [
    ("synthetic:corelation=0.1", r"corelation: unknown option .*did you mean 'correlation'"),
    ("synthetic:rows", r"rows: option 'rows' needs a value"),
    ("synthetic:rows=ten", r"rows: option 'rows' must be an integer, got 'ten'"),
    ("synthetic:rows=1.5", r"must be an integer"),
    ("synthetic:correlation=high", r"must be a number"),
    ("synthetic:correlation=nan", r"must be a number"),
    ("synthetic:correlation=1.5", r"correlation: must be in \[-1, 1\], got 1.5"),
    ("synthetic:rows=0", r"rows: must be a positive integer"),
    ("synthetic:seed=-1", r"seed: must be >= 0"),
    ("synthetic:noise=-1", r"noise: must be >= 0"),
    ("synthetic:scenario_shift=2.5", r"scenario_shift: must be in \[0, 2\]"),
    ("synthetic:shared_planes=2", r"shared_planes: must be 0 or 1, got 2"),
    ("synthetic:shared_planes=0.5", r"shared_planes.* must be an integer"),
    ("synthetic:rows=10,rows=20", r"given twice"),
    ("synthetic-msi", r"unknown synthetic dataset 'synthetic-msi'.*did you mean 'synthetic-msl'"),
])
def test_bad_names_are_data_errors(name, pattern):
    with pytest.raises(DataError, match=pattern):
        describe(name)
    with pytest.raises(DataError, match=pattern):
        load(name)


def test_register_all():
    seen = []
    synthetic.register_all(lambda name, describe_fn, load_fn:
                           seen.append((name, describe_fn, load_fn)))
    assert [name for name, _, _ in seen] == ["synthetic", "synthetic-msl", "synthetic-chain",
                                             "synthetic-esm2", "synthetic-mtl"]
    assert all(d is describe and lo is load for _, d, lo in seen)


# --- synthetic-mtl: the MMoE paper's dense synthetic tasks ----------------------------------

MTL_ROWS = 40_000


def test_mtl_spec_and_columns():
    spec = describe("synthetic-mtl")
    assert spec.categorical == () and spec.scenario is None and spec.group is None
    assert spec.numeric == tuple(f"x{i:02d}" for i in range(32))
    assert spec.labels == {"click": "click", "like": "like"}
    assert describe("synthetic-mtl:inputs=8").numeric == tuple(f"x{i:02d}" for i in range(8))
    assert describe("synthetic-mtl:inputs=120").numeric[-1] == "x119"
    assert "correlation=0.1" in describe("synthetic-mtl:correlation=0.1").description
    data = load(f"synthetic-mtl:rows={MTL_ROWS},inputs=8")
    assert list(data.frame.columns) == [*data.spec.numeric, "day", "click", "like"]
    assert data.meta["options"] == {"rows": MTL_ROWS, "seed": 2018, "correlation": 0.5,
                                    "inputs": 8, "noise": 0.5}
    x = data.frame[list(data.spec.numeric)].to_numpy()
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02
    for task, rate in synthetic.MTL_RATE.items():
        assert data.frame[task].dtype == np.int64
        assert data.frame[task].mean() == pytest.approx(rate, abs=0.01)
    counts = data.counts()
    assert counts["test"] / MTL_ROWS == pytest.approx(0.1, abs=0.01)


def test_mtl_same_seed_same_table_and_options_change_only_the_labels():
    a, la = synthetic.generate_mtl(synthetic.MtlOptions(rows=5000, seed=3))
    b, lb = synthetic.generate_mtl(synthetic.MtlOptions(rows=5000, seed=3))
    pd.testing.assert_frame_equal(a, b)
    c, _ = synthetic.generate_mtl(synthetic.MtlOptions(rows=5000, seed=3, correlation=0.9,
                                                       noise=1.0))
    features = [col for col in a.columns if col not in ("click", "like")]
    pd.testing.assert_frame_equal(a[features], c[features])
    assert not a["like"].equals(c["like"])


def _task_vectors_from_scores(frame, scores):
    """Least-squares fit of each task's score on x recovers w_t up to scale (E[x g(w·x)] ∝ w)."""
    x = frame[[c for c in frame.columns if c.startswith("x")]].to_numpy()
    return {t: np.linalg.lstsq(x, s, rcond=None)[0] for t, s in scores.items()}


@pytest.mark.parametrize("correlation", [0.0, 0.1, 0.5, 0.9])
def test_mtl_task_vectors_have_the_stated_cosine(correlation):
    frame, scores = synthetic.generate_mtl(synthetic.MtlOptions(rows=MTL_ROWS, inputs=16,
                                                                correlation=correlation))
    w = _task_vectors_from_scores(frame, scores)
    cosine = w["click"] @ w["like"] / np.linalg.norm(w["click"]) / np.linalg.norm(w["like"])
    assert cosine == pytest.approx(correlation, abs=0.05)


def test_mtl_labels_follow_the_scores():
    from sklearn.metrics import roc_auc_score

    frame, scores = synthetic.generate_mtl(synthetic.MtlOptions(rows=MTL_ROWS))
    for task in ("click", "like"):
        assert roc_auc_score(frame[task], scores[task]) > 0.9
    # the tasks are (nearly) exchangeable at correlation 1: same scores, labels differ by noise
    same, same_scores = synthetic.generate_mtl(synthetic.MtlOptions(rows=MTL_ROWS, correlation=1.0))
    np.testing.assert_allclose(same_scores["click"], same_scores["like"], atol=1e-9)


@pytest.mark.parametrize("name, pattern", [
    ("synthetic-mtl:inputs=1", r"inputs: must be >= 2"),
    ("synthetic-mtl:inputs=2.5", r"must be an integer"),
    ("synthetic-mtl:correlation=-2", r"correlation: must be in \[-1, 1\]"),
    ("synthetic-mtl:scenario_shift=0.5", r"unknown option 'scenario_shift'"),
    ("synthetic-mt", r"unknown synthetic dataset 'synthetic-mt'"),
])
def test_mtl_bad_names_are_data_errors(name, pattern):
    with pytest.raises(DataError, match=pattern):
        describe(name)


# --- the planted truth: each view's noiseless score, for a ceiling row in compare -------------

@pytest.mark.parametrize("name, planted, hidden", [
    ("synthetic", ["click", "like"], True),  # the score reads the scenario, which this view hides
    ("synthetic-msl", ["click"], False),
    ("synthetic-chain", ["click"], True),  # conversion's score is conditional on the click: none
    ("synthetic-esm2", ["click"], True),
    ("synthetic-mtl", ["click", "like"], False),
])
def test_each_view_carries_the_best_score_its_columns_allow(name, planted, hidden):
    data = load(f"{name}:rows=6000")
    assert sorted(data.meta["planted"]) == sorted(planted)
    if name == "synthetic-mtl":
        _, truth = synthetic.generate_mtl(synthetic.MtlOptions(rows=6000))
    else:
        out = generate(Options(rows=6000), hidden_scenario=True)
        truth = out[2] if hidden else out[1]  # averaged over the hidden scenario, or the row's own
    for label in planted:
        np.testing.assert_array_equal(data.meta["planted"][label], truth[label])
        assert len(data.meta["planted"][label]) == len(data.frame)


def test_the_hidden_scenario_ceiling_is_the_shares_average_of_each_scenarios_probability():
    # no rotation, no noise: each scenario's logit is the row's score plus that scenario's base
    frame, logits, visible = generate(Options(rows=3000, scenario_shift=0.0, noise=0.0), hidden_scenario=True)
    sid = frame["scenario"].map({s: i for i, s in enumerate(synthetic.SCENARIOS)}).to_numpy()
    for task in ("click", "like"):
        base = np.asarray(synthetic.BASE_LOGIT[task])
        score = logits[task] - base[sid]
        expected = sum(share / (1 + np.exp(-(b + score))) for share, b in zip(synthetic.SCENARIO_SHARES, base))
        np.testing.assert_allclose(visible[task], expected, rtol=1e-12)
    # with noise, E[σ(l + ε)] is pulled towards 1/2 and keeps its order
    p = synthetic._expected_sigmoid(np.array([-3.0, 0.0, 3.0]), 1.0)
    assert p[1] == pytest.approx(0.5) and 1 / (1 + np.exp(3)) < p[0] < p[2] < 1 / (1 + np.exp(-3))


def test_the_hidden_scenario_ceiling_is_below_the_rows_own_logit():
    from sklearn.metrics import roc_auc_score

    frame, logits, visible = generate(Options(rows=40_000), hidden_scenario=True)
    for task in ("click", "like"):
        own, seen = roc_auc_score(frame[task], logits[task]), roc_auc_score(frame[task], visible[task])
        assert 0.75 < seen < own - 0.01, task  # own reads the hidden scenario


def test_the_noiseless_score_ranks_its_labels_well_and_stays_aligned_in_each_split():
    from sklearn.metrics import roc_auc_score

    data = load("synthetic-msl:rows=20000")
    score = data.meta["planted"]["click"]
    assert 0.75 < roc_auc_score(data.frame["click"], score) < 0.95
    test = data.part("test")
    np.testing.assert_array_equal(test.meta["planted"]["click"], score[data.split == "test"])
    assert len(test.meta["planted"]["click"]) == len(test.frame)
