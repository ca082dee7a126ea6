"""composer/data/kuairand_pure.py: the ``kuairand-pure`` protocol of DATA.md on the shared
KuaiRand-Pure files: split counts, outcomes never features, list columns, histories against a
brute-force reference, scenarios and options, and a describe that reads nothing."""
import os
import time

import numpy as np
import pandas as pd
import pytest

from composer.data import kuairand_pure as kp
from composer.data import registry
from composer.data.dataset import ListSpec
from composer.data.errors import DataError
from composer.data.tables import data_root

FOLDER = data_root() / "kuairand_pure"
FEATURES = data_root() / "kuairand"
needs_data = pytest.mark.skipif(
    not (FOLDER.is_dir() and FEATURES.is_dir()),
    reason=f"real data not found at {FOLDER} (and {FEATURES}): expected ../shared/data next to the project "
    "root (or set COMPOSER_DATA_DIR)")

# DATA.md, "kuairand_pure/": every column it names as an outcome, never a feature
DATA_MD_OUTCOMES = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "is_profile_enter",
                    "long_view", "play_time_ms", "profile_stay_time", "comment_stay_time", "watch_ratio", "finish",
                    "like", "long_watch", "is_positive", "duration_ms")


@pytest.fixture(scope="module")
def data():
    return registry.load("kuairand-pure")


@pytest.fixture(scope="module")
def raw():
    """The log as the files hold it, in the loader's row order, and the pre-window lists."""
    logs = sorted(FOLDER.glob("log_pure_*.parquet"))
    log = pd.concat([pd.read_parquet(p) for p in logs], ignore_index=True)
    pre = pd.read_parquet(FOLDER / "user_histories_before_2022-04-25.parquet").set_index("user_id")
    videos = pd.read_csv(FEATURES / "video_features_basic_pure.csv")
    return log, pre, videos.set_index("video_id")["author_id"]


@needs_data
def test_split_counts_follow_data_md(data):
    assert data.counts() == {"train": 171_671, "valid": 27_224, "test": 29_434} == kp.SPLIT_ROWS
    assert len(data.frame) == len(data.split) == 228_329


@needs_data
def test_outcomes_are_never_features(data, raw):
    spec = data.spec
    assert set(DATA_MD_OUTCOMES) <= set(spec.outcomes)
    assert {c for c in raw[0].columns if c.startswith("is_")} <= set(spec.outcomes)  # is_rand too
    assert not set(spec.features) & set(spec.outcomes)
    # the frame carries outcomes only as the labels of the three tasks
    assert set(data.frame.columns) & set(spec.outcomes) == set(spec.labels.values()) == {
        "is_click", "long_view", "is_like"}
    assert all(len(reason) > 20 and "\n" not in reason for reason in spec.outcomes.values())
    assert list(data.frame.columns) == list(spec.features) + list(spec.labels.values())


@needs_data
def test_list_columns_types_and_lengths(data, raw):
    frame, spec = data.frame, data.spec
    assert spec.lists["tag"] == ListSpec(ordered=False, max_len=4)
    assert spec.lists["hist_author"].aligned_with == "hist_video"
    assert {spec.lists[c].share for c in ("hist_video", "long_video", "like_video")} == {"video_id"}
    for name, ls in spec.lists.items():
        cells = frame[name]
        assert cells.dtype == object
        assert cells.map(lambda c: isinstance(c, np.ndarray) and c.ndim == 1).all(), name
        lengths = cells.map(len)
        assert lengths.max() <= ls.max_len, name
        kind = cells.map(lambda c: c.dtype.kind)
        assert set(kind[lengths > 0]) == ({"O"} if name == "tag" else {"i"}), name
    assert (frame["hist_video"].map(len) == frame["hist_author"].map(len)).all()
    assert frame["hist_video"].map(len).max() == 50 and frame["like_video"].map(len).max() == kp.LIKE_LEN
    # tags: the comma-separated text split, 'unknown' -> empty
    log = raw[0]
    text = log["tag"].astype(str)
    assert all(c.tolist() == ["39", "43"] for c in frame["tag"][text == "39,43"])
    assert frame["tag"][text == "unknown"].map(len).eq(0).all() and (text == "unknown").sum() > 1000
    assert frame["tag"].map(len).between(1, 3)[text != "unknown"].all()
    # ids are the log's ints, the same values as in the lists
    assert frame["video_id"].dtype == np.int64 and (frame["video_id"].to_numpy() == log["video_id"].to_numpy()).all()
    assert frame["hourmin"].isin([str(h) for h in range(24)]).all()
    assert (frame["hourmin"].astype(int).to_numpy() == log["hourmin"].to_numpy() // 100).all()


def _reference(log, pre, author_of, i):
    """Row i's histories and counts, by definition: the same user, strictly earlier time_ms,
    in (time, row) order, after the pre-window lists (unless they end at or after the row)."""
    row = log.iloc[i]
    u, t = row["user_id"], row["time_ms"]
    mine = log[(log["user_id"] == u) & (log["time_ms"] < t)]
    mine = mine.assign(_pos=mine.index).sort_values(["time_ms", "_pos"])
    p = pre.loc[u] if u in pre.index and t > pre.loc[u, "last_time_ms"] else None

    def seq(older, newer, n):
        return (list(older) + list(newer))[-n:]

    watch = [] if p is None else list(p["watch_seq"])
    out = {
        "hist_video": seq(watch, mine["video_id"], 50),
        "hist_author": seq([author_of[v] for v in watch], mine["author_id"], 50),
        "long_video": seq([] if p is None else p["long_watch_seq"], mine[mine["long_view"] == 1]["video_id"], 50),
        "like_video": seq([] if p is None else p["like_seq"], mine[mine["is_like"] == 1]["video_id"], 20),
        "user_n": len(mine),
        "user_prewindow_n": pre.loc[u, "history_len"] if u in pre.index else 0,
    }
    vid = log[(log["video_id"] == row["video_id"]) & (log["time_ms"] < t)]
    out["video_n"] = len(vid)
    for label in ("is_click", "long_view", "is_like"):
        out[f"user_{label}_rate"] = mine[label].astype(float).mean() if len(mine) else np.nan
        out[f"video_{label}_rate"] = vid[label].astype(float).mean() if len(vid) else np.nan
    return out


@needs_data
def test_histories_match_brute_force_on_sampled_rows(data, raw):
    log, pre, author_of = raw
    rng = np.random.default_rng(7)
    sample = list(rng.choice(len(log), 200, replace=False))
    # rows that share their time with an earlier-logged row of the same user (ties), and the rows
    # whose pre-window list ends at their own time
    tied = np.flatnonzero(log.duplicated(["user_id", "time_ms"], keep=False).to_numpy())
    sample += list(rng.choice(tied, 20, replace=False))
    overlap = log["time_ms"].to_numpy() <= pre["last_time_ms"].reindex(log["user_id"]).fillna(-1).to_numpy()
    assert 0 < overlap.sum() < 10
    sample += list(np.flatnonzero(overlap))
    frame = data.frame
    for i in sample:
        want = _reference(log, pre, author_of, i)
        for name in ("hist_video", "hist_author", "long_video", "like_video"):
            assert frame[name].iloc[i].tolist() == [int(v) for v in want[name]], (i, name)
        for name, value in want.items():
            if not name.endswith(("_video", "_author")):
                got = frame[name].iloc[i]
                assert (np.isnan(got) and np.isnan(value)) or got == pytest.approx(value, rel=1e-6), (i, name)
    # the candidate itself is never in its own history on the rows where the release logs it twice
    for i in np.flatnonzero(overlap):
        assert frame["hist_video"].iloc[i].tolist() == []


@needs_data
def test_scenario_values_stated_statically_match_the_data(data, raw):
    log = raw[0]
    train = data.split == "train"
    counted = log["tab"][train].astype(int).astype(str).value_counts()
    assert counted.to_dict() == kp.TRAIN_TAB_ROWS
    assert data.spec.scenario_values == tuple(counted.index) == tuple(kp.TRAIN_TAB_ROWS)
    assert (data.frame["tab"].to_numpy() == log["tab"].astype(int).astype(str).to_numpy()).all()
    assert data.spec.scenario == "tab" and "tab" in data.spec.categorical and data.spec.group == "user_id"


@needs_data
def test_merge_tabs_and_no_histories(raw):
    log = raw[0]
    spec = registry.describe("kuairand-pure:merge_tabs=1100,histories=0")
    assert spec.scenario_values == ("1", "0", "4", "6", "2", "small")
    data = registry.load("kuairand-pure:merge_tabs=1100,histories=0")
    small = log["tab"].astype(int).isin([8, 5, 12, 3, 11, 9, 7, 13, 10, 14]).to_numpy()
    assert (data.frame["tab"][small] == "small").all() and not (data.frame["tab"][~small] == "small").any()
    assert set(data.frame["tab"]) == set(spec.scenario_values)
    # histories=0: the same rows, no history list and no point-in-time column
    assert list(spec.lists) == ["tag"] and not set(kp.HISTORY_NUMERIC) & set(spec.numeric)
    assert not set(kp.HISTORIES) & set(data.frame.columns) and "user_n" not in data.frame.columns
    assert data.counts() == kp.SPLIT_ROWS
    # merge_tabs=0 merges nothing; a threshold above every tab merges all of them
    assert registry.describe("kuairand-pure:merge_tabs=0").scenario_values == tuple(kp.TRAIN_TAB_ROWS)
    assert registry.describe("kuairand-pure:merge_tabs=200000").scenario_values == ("small",)
    # 'small' takes its place by its total: 13, 10 and 14 hold 54 + 42 + 12 = 108 train rows
    assert registry.describe("kuairand-pure:merge_tabs=100").scenario_values == (
        "1", "0", "4", "6", "2", "8", "5", "12", "3", "11", "9", "small", "7")


def test_bad_options_are_data_errors():
    with pytest.raises(DataError, match=r"unknown option 'histries' of dataset 'kuairand-pure'.*did you mean "
                                        r"'histories'"):
        registry.describe("kuairand-pure:histries=0")
    with pytest.raises(DataError, match=r"histories: must be 0 or 1, got 2"):
        registry.describe("kuairand-pure:histories=2")
    with pytest.raises(DataError, match=r"merge_tabs: must be >= 0"):
        registry.describe("kuairand-pure:merge_tabs=-5")
    with pytest.raises(DataError, match=r"option 'merge_tabs' must be an integer, got 'many'"):
        registry.describe("kuairand-pure:merge_tabs=many")
    with pytest.raises(DataError, match=r"option 'histories' needs a value"):
        registry.describe("kuairand-pure:histories")
    with pytest.raises(DataError, match=r"given twice"):
        registry.describe("kuairand-pure:histories=0,histories=1")


def test_describe_reads_nothing(monkeypatch, tmp_path):
    """No data folder, and every reader rigged to fail: describe still answers, fast."""
    import pyarrow.parquet as pq

    from composer.data import tables

    def refuse(*args, **kwargs):
        raise AssertionError("describe read data")

    monkeypatch.setenv("COMPOSER_DATA_DIR", str(tmp_path))
    for module, attr in ((pd, "read_parquet"), (pd, "read_csv"), (pq, "ParquetFile"), (pq, "read_table"),
                         (tables, "read_table")):
        monkeypatch.setattr(module, attr, refuse)
    start = time.perf_counter()
    spec = registry.describe("kuairand-pure:merge_tabs=1100")
    assert time.perf_counter() - start < 0.5
    assert spec.labels == {"is_click": "is_click", "long_view": "long_view", "is_like": "is_like"}
    assert spec.scenario_values[-1] == "small" and "hist_video" in spec.lists and "video_n" in spec.numeric
    assert "kuairand-pure" in registry.names()
    with pytest.raises(DataError, match=r"data folder not found: .*kuairand_pure.*COMPOSER_DATA_DIR"):
        monkeypatch.undo()
        monkeypatch.setenv("COMPOSER_DATA_DIR", str(tmp_path))
        registry.load("kuairand-pure")


@needs_data
def test_quick_look_reads_the_first_rows(raw):
    log = raw[0]
    data = registry.load("kuairand-pure", rows=3000)
    assert len(data.frame) == 3000 and data.counts()["train"] == 3000
    assert (data.frame["video_id"].to_numpy() == log["video_id"].to_numpy()[:3000]).all()
    # same rules on fewer rows: histories see only those rows (after the pre-window lists)
    i = int(np.flatnonzero(data.frame["user_n"].to_numpy() > 0)[0])
    assert data.frame["hist_video"].iloc[i].tolist()[-1] in set(log["video_id"][:3000])


def _small_copy(tmp_path, log_rows, edit=None):
    """A data root holding the first log rows (edited) and the real feature and pre-window files."""
    root = tmp_path / "data"
    (root / "kuairand_pure").mkdir(parents=True)
    (root / "kuairand").mkdir()
    log = pd.read_parquet(sorted(FOLDER.glob("log_pure_*.parquet"))[0]).head(log_rows)
    if edit:
        log = edit(log)
    log.to_parquet(root / "kuairand_pure" / "log_pure_2022-04-25_to_04-30.parquet")
    os.symlink(FOLDER / kp.PREWINDOW_FILE, root / "kuairand_pure" / kp.PREWINDOW_FILE)
    for name in ("user_features_pure.csv", "video_features_basic_pure.csv"):
        os.symlink(FEATURES / name, root / "kuairand" / name)
    return root


@needs_data
def test_log_row_without_feature_row_is_an_error(tmp_path, monkeypatch):
    def orphan(log):
        log = log.copy()
        log.loc[[5, 9], "user_id"] = 99_999_999
        return log

    monkeypatch.setenv("COMPOSER_DATA_DIR", str(_small_copy(tmp_path, 40, orphan)))
    with pytest.raises(DataError, match=r"log_pure_2022-04-25_to_04-30\.parquet: user_id: user_id '99999999' has "
                                        r"no row in user_features_pure\.csv in row 6 \(2 rows like this"):
        registry.load("kuairand-pure")


@needs_data
def test_bad_cells_are_located(tmp_path, monkeypatch):
    def bad(log):
        log = log.copy()
        log.loc[3, "date"] = 20220601
        return log

    monkeypatch.setenv("COMPOSER_DATA_DIR", str(_small_copy(tmp_path, 40, bad)))
    with pytest.raises(DataError, match=r"date: date 20220601 is outside the protocol's days in row 4"):
        registry.load("kuairand-pure")
