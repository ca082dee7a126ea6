"""Exact AUC and GAUC against scikit-learn, and reports that never crash or print NaN."""
import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from composer.metrics import Report, auc, compare_table, evaluate_predictions, gauc


def reference_gauc(y, s, groups, weighting="impressions"):
    """Slow but obvious: sklearn per group, in a Python loop."""
    num = den = 0.0
    valid = excluded = 0
    for g in pd.unique(groups):
        rows = groups == g
        yg = y[rows]
        if yg.min() == yg.max():
            excluded += 1
            continue
        w = {"impressions": rows.sum(), "uniform": 1, "clicks": yg.sum()}[weighting]
        num += w * roc_auc_score(yg, s[rows])
        den += w
        valid += 1
    return (num / den if valid else None), valid, excluded


def data(n=5000, groups=300, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    y = (rng.random(n) < 0.15 + 0.3 * (g % 3 == 0)).astype(int)
    s = rng.random(n) + 0.3 * y
    if ties:
        s = np.round(s, 1)  # heavy ties, also across classes
    return y, s, g


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_sklearn(seed, ties):
    y, s, _ = data(seed=seed, ties=ties)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auc(y.astype(bool), s.astype(np.float32)) == pytest.approx(
        roc_auc_score(y, s.astype(np.float32)), abs=1e-12)


def test_auc_edge_cases():
    assert auc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert auc([1, 1], [0.1, 0.2]) is None
    assert auc([], []) is None
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    assert auc([0, 1], [0.2, 0.7]) == 1.0
    assert auc(np.array([[0], [1]]), np.array([[0.9], [0.1]])) == 0.0  # Keras (n, 1) shapes
    with pytest.raises(ValueError, match="0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="rows"):
        auc([0, 1], [0.1])


@pytest.mark.parametrize("weighting", ["impressions", "uniform", "clicks"])
@pytest.mark.parametrize("ties", [False, True])
def test_gauc_equals_reference_loop(weighting, ties):
    y, s, g = data(ties=ties, groups=400)
    value, valid, excluded = gauc(y, s, g, weighting=weighting)
    ref, ref_valid, ref_excluded = reference_gauc(y, s, g, weighting)
    assert value == pytest.approx(ref, abs=1e-12)
    assert (valid, excluded) == (ref_valid, ref_excluded)
    assert excluded > 0 and valid + excluded == len(np.unique(g))


def test_gauc_weightings_differ_and_are_explicit():
    # Group a: 4 rows, 1 positive, AUC 1. Group b: 2 rows, 1 positive, AUC 0.
    y = np.array([1, 0, 0, 0, 1, 0])
    s = np.array([0.9, 0.1, 0.2, 0.3, 0.1, 0.9])
    g = np.array(["a", "a", "a", "a", "b", "b"])
    assert gauc(y, s, g)[0] == pytest.approx(4 / 6)
    assert gauc(y, s, g, weighting="uniform")[0] == pytest.approx(0.5)
    assert gauc(y, s, g, weighting="clicks")[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="impressions, uniform, clicks"):
        gauc(y, s, g, weighting="users")


def test_gauc_groups_any_column_and_missing_groups():
    y = np.array([1, 0, 1, 0, 1, 1, 0])
    s = np.array([0.9, 0.1, 0.2, 0.8, 0.5, 0.5, 0.5])
    g = pd.Series(["u1", "u1", "u2", "u2", "u3", None, None])  # None: row in no group
    value, valid, excluded = gauc(y, s, g)
    assert (value, valid, excluded) == (pytest.approx(0.5), 2, 1)
    assert gauc([0, 0], [0.1, 0.2], [1, 2]) == (None, 0, 2)


def test_gauc_is_fast_on_a_million_rows():
    rng = np.random.default_rng(0)
    n = 1_000_000
    g, y, s = rng.integers(0, 100_000, n), rng.random(n) < 0.2, rng.random(n)
    start = time.perf_counter()
    value, valid, excluded = gauc(y, s, g)
    assert time.perf_counter() - start < 3.0
    assert 0.49 < value < 0.51 and valid + excluded == len(np.unique(g))


def two_task_frame(seed=0, n=3000):
    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.3).astype(int)
    buy = np.where(click == 1, (rng.random(n) < 0.3).astype(int), 0)
    return pd.DataFrame({
        "user": rng.integers(0, 200, n),
        "scenario": rng.integers(0, 3, n),
        "click": click,
        "buy": buy,
        "p_click": rng.random(n) + 0.2 * click,
        "p_buy": rng.random(n) + 0.2 * buy,
    })


def test_report_matches_sklearn_per_task_and_scenario():
    df = two_task_frame()
    r = evaluate_predictions(df, {"click": "p_click", "buy": "p_buy"}, group="user",
                             scenario="scenario", masks={"buy": "click"})
    clicked = df[df.click == 1]
    assert r.tasks["click"].auc == pytest.approx(roc_auc_score(df.click, df.p_click), abs=1e-12)
    assert r.tasks["buy"].auc == pytest.approx(roc_auc_score(clicked.buy, clicked.p_buy), abs=1e-12)
    assert r.tasks["buy"].n == len(clicked) and r.tasks["buy"].positives == clicked.buy.sum()
    ref = reference_gauc(clicked.buy.to_numpy(), clicked.p_buy.to_numpy(), clicked.user.to_numpy())
    assert r.tasks["buy"].gauc == pytest.approx(ref[0], abs=1e-12)
    assert (r.tasks["buy"].valid_groups, r.tasks["buy"].excluded_groups) == ref[1:]
    assert r.macro()["auc"] == pytest.approx((r.tasks["click"].auc + r.tasks["buy"].auc) / 2)
    assert list(r.scenarios) == [0, 1, 2]
    part = df[df.scenario == 1]
    assert r.scenarios[1]["click"].auc == pytest.approx(
        roc_auc_score(part.click, part.p_click), abs=1e-12)
    assert r.scenarios[1]["click"].n == len(part)


def test_same_report_from_dicts_of_arrays():
    df = two_task_frame()
    from_frame = evaluate_predictions(df, {"click": "p_click"}, group="user")
    from_arrays = evaluate_predictions({"click": df.click.to_numpy()},
                                       {"click": df.p_click.to_numpy()[:, None]},
                                       group=df.user.to_numpy())
    assert from_frame.tasks == from_arrays.tasks


def test_missing_labels_and_masks_are_excluded():
    y = np.array([1, 0, -1, 1, 0, np.nan])
    p = np.array([0.9, 0.1, 0.0, 0.2, 0.8, 0.5])
    r = evaluate_predictions({"t": y}, {"t": p})
    assert (r.tasks["t"].n, r.tasks["t"].positives) == (4, 2)
    assert r.tasks["t"].auc == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.9, 0.1, 0.2, 0.8]))
    m = np.array([True, True, True, False, False, True])
    r = evaluate_predictions({"t": y}, {"t": p}, masks={"t": m})
    assert (r.tasks["t"].n, r.tasks["t"].auc) == (2, 1.0)
    # Predictions on rows that are not evaluated may be anything, NaN included.
    r = evaluate_predictions({"t": y}, {"t": np.where(m, p, np.nan)}, masks={"t": m})
    assert r.tasks["t"].auc == 1.0


def test_task_without_any_valid_label_gives_none_not_nan():
    n = 6
    r = evaluate_predictions({"click": [1, 0, 1, 0, 1, 0], "like": [-1] * n},
                             {"click": np.linspace(0, 1, n), "like": np.full(n, 0.5)},
                             group=np.arange(n) % 2, scenario=np.zeros(n, dtype=int))
    like = r.tasks["like"]
    assert (like.n, like.positives, like.auc, like.gauc) == (0, 0, None, None)
    assert (like.valid_groups, like.excluded_groups) == (0, 0)
    assert r.macro()["auc"] == r.tasks["click"].auc  # macro over tasks where AUC exists
    text = json.dumps(r.to_dict(), allow_nan=False)  # no NaN anywhere
    assert '"auc": null' in text
    assert "nan" not in r.table().lower() and "n/a" in r.table()


def test_single_class_task_is_na():
    r = evaluate_predictions({"click": [1, 0, 1, 0], "buy": [0, 0, 0, 0]},
                             {"click": [0.9, 0.1, 0.8, 0.3], "buy": [0.1, 0.2, 0.3, 0.4]})
    assert r.tasks["buy"].auc is None and r.tasks["buy"].n == 4
    row = next(line for line in r.table().splitlines() if line.startswith("buy"))
    assert "n/a" in row
    assert "GAUC" not in r.table()  # no group column: AUC only
    assert r.macro() == {"auc": 1.0, "gauc": None}


def test_scenario_with_only_negatives_does_not_crash():
    df = two_task_frame()
    df.loc[df.scenario == 2, ["click", "buy"]] = 0
    r = evaluate_predictions(df, {"click": "p_click", "buy": "p_buy"}, group="user",
                             scenario="scenario", masks={"buy": "click"})
    s2 = r.scenarios[2]
    assert s2["click"].auc is None and s2["click"].gauc is None and s2["click"].valid_groups == 0
    assert s2["click"].n == (df.scenario == 2).sum() and s2["click"].positives == 0
    assert s2["buy"].n == 0 and s2["buy"].auc is None
    assert r.macro(2) == {"auc": None, "gauc": None}
    table = r.table(by="scenario")
    rows = [line for line in table.splitlines() if line.startswith("2 ")]
    assert len(rows) == 3 and all("n/a" in line for line in rows)  # click, buy, macro
    assert r.scenarios[0]["click"].auc is not None


def test_table_shape():
    df = two_task_frame()
    r = evaluate_predictions(df, {"click": "p_click", "buy": "p_buy"}, group="user")
    lines = r.table().splitlines()
    for column in ("task", "AUC", "GAUC", "valid groups", "excluded groups", "n", "positives"):
        assert column in lines[0]
    assert [line.split()[0] for line in lines[2:5]] == ["click", "buy", "macro"]
    assert f"{r.tasks['click'].auc:.4f}" in lines[2]
    assert "weighted by impressions" in lines[-1]
    with pytest.raises(ValueError, match="no scenario"):
        r.table(by="scenario")


def test_save_and_load(tmp_path):
    df = two_task_frame()
    r = evaluate_predictions(df, {"click": "p_click", "buy": "p_buy"}, group="user",
                             scenario="scenario", masks={"buy": "click"}, weighting="uniform")
    paths = r.save(tmp_path / "run")
    assert sorted(p.name for p in paths) == ["metrics.csv", "metrics.json",
                                             "metrics_by_scenario.csv"]
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert data["weighting"] == "uniform" and data["group"] == "user"
    assert data["tasks"]["click"]["auc"] == r.tasks["click"].auc
    csv = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(csv.task) == ["click", "buy", "macro"]
    assert csv.auc.iloc[0] == r.tasks["click"].auc
    by = pd.read_csv(tmp_path / "run" / "metrics_by_scenario.csv")
    assert len(by) == 3 * 3 and list(by.columns[:2]) == ["scenario", "task"]
    back = Report.load(tmp_path / "run")
    assert back.tasks == r.tasks and back.macro() == r.macro()
    plain = evaluate_predictions(df, {"click": "p_click"})
    assert [p.name for p in plain.save(tmp_path / "plain")] == ["metrics.json", "metrics.csv"]


def test_bad_inputs_are_named():
    df = two_task_frame()
    with pytest.raises(ValueError, match="labels\\['click'\\].*0 or 1"):
        evaluate_predictions({"click": [0, 2]}, {"click": [0.1, 0.2]})
    with pytest.raises(ValueError, match="no labels for task 'buy'"):
        evaluate_predictions({"click": [0, 1]}, {"buy": [0.1, 0.2]})
    with pytest.raises(ValueError, match="rows"):
        evaluate_predictions({"click": [0, 1, 1]}, {"click": [0.1, 0.2]})
    with pytest.raises(ValueError, match="no column 'usr'"):
        evaluate_predictions(df, {"click": "p_click"}, group="usr")
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_predictions(df, {"click": "p_click"}, masks={"cvr": "click"})
    with pytest.raises(ValueError, match="NaN"):
        evaluate_predictions({"click": [0, 1]}, {"click": [0.1, np.nan]})


def make_report(click, like):
    return Report(tasks={"click": _tm(click), "like": _tm(like)}, group="user")


def _tm(v):
    from composer.metrics import TaskMetrics
    return TaskMetrics(n=10, positives=3, auc=v, gauc=None if v is None else v - 0.01,
                       valid_groups=2, excluded_groups=1)


def test_compare_table_with_seeds():
    reports = {
        "shared_bottom": [make_report(0.70, 0.60), make_report(0.72, 0.62),
                          make_report(0.74, 0.64)],
        "mmoe": make_report(0.75, None),
    }
    text = compare_table(reports)
    lines = text.splitlines()
    head = lines[0]
    for column in ("model", "seeds", "click AUC", "like AUC", "macro AUC", "click GAUC",
                   "macro GAUC"):
        assert column in head
    assert head.index("macro AUC") < head.index("click GAUC")
    sb = next(line for line in lines if line.startswith("shared_bottom"))
    assert "0.7200 ± 0.0200" in sb  # sample std over seeds
    assert "0.6600 ± 0.0200" in sb  # macro AUC per seed, then mean ± std
    mmoe = next(line for line in lines if line.startswith("mmoe"))
    assert "0.7500" in mmoe and "n/a" in mmoe and "±" not in mmoe
    only_auc = compare_table(reports, metrics=("auc",))
    assert "GAUC" not in only_auc
    with pytest.raises(ValueError, match="unknown metric"):
        compare_table(reports, metrics=("logloss",))


def test_compare_table_single_runs_without_groups():
    r = evaluate_predictions({"click": [1, 0, 1, 0]}, {"click": [0.9, 0.1, 0.8, 0.3]})
    text = compare_table({"a": r, "b": r})
    assert "seeds" not in text and "GAUC" not in text  # nothing to show for GAUC
    assert text.splitlines()[0].split() == ["model", "click", "AUC", "macro", "AUC"]


def test_compare_scenario_table_gives_mean_and_std_per_scenario_and_task():
    from composer.metrics import compare_scenario_table

    labels = {"click": [1, 0, 1, 0, 1, 0, 0, 0]}
    scenario = ["a", "a", "a", "a", "b", "b", "b", "b"]
    r1 = evaluate_predictions(labels, {"click": [0.9, 0.1, 0.8, 0.3, 0.6, 0.7, 0.2, 0.1]}, scenario=scenario)
    r2 = evaluate_predictions(labels, {"click": [0.9, 0.1, 0.2, 0.3, 0.9, 0.7, 0.2, 0.1]}, scenario=scenario)
    one_class = evaluate_predictions({"click": [1, 1, 0, 0]}, {"click": [0.9, 0.8, 0.1, 0.2]},
                                     scenario=["a", "a", "b", "b"])
    text = compare_scenario_table({"m": [r1, r2], "n": one_class})
    head, _, row_m, row_n = text.splitlines()
    assert head.split() == ["model", "a", "click", "AUC", "b", "click", "AUC"]
    # a: AUC 1.0 and 0.75 -> 0.875 ± 0.1768; b: 2/3 and 1.0 -> 0.8333 ± 0.2357
    assert row_m.split() == ["m", "0.8750", "±", "0.1768", "0.8333", "±", "0.2357"]
    assert row_n.split() == ["n", "n/a", "n/a"]  # one class per scenario: no AUC, no crash
