"""composer/data/histories.py: point-in-time histories and counts against brute-force references
on small random logs with many ties, a planted future row, and chunked == whole."""
import numpy as np
import pandas as pd
import pytest

from composer.data.errors import DataError
from composer.data.histories import HistoryState, last_items, point_in_time_counts


def _log(seed, rows=300, keys=6, times=12, string_items=False):
    """A random log with many ties: few keys, few distinct times, rows in no particular order,
    and an index that is not 0..n-1 (outputs must follow the frame's own index)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user": rng.integers(0, keys, rows),
        "t": rng.integers(0, times, rows) * 10,
        "video": rng.integers(100, 100 + 5 * rows, rows),  # mostly distinct: positions are checkable
        "clicked": rng.integers(0, 2, rows),
        "liked": (rng.random(rows) < 0.3).astype(int),
    })
    frame["author"] = frame["video"] % 7 + 1000
    if string_items:
        frame["video"] = "v" + frame["video"].astype(str)
    frame.index = rng.permutation(rows) * 3 + 7
    return frame


def _before(seed, keys=6, n_max=7, missing=(2,)):
    """Pre-window parts for most keys (some empty, some longer than n): videos and their authors."""
    rng = np.random.default_rng(seed + 1000)
    video, author, last = {}, {}, {}
    for k in range(keys):
        if k in missing:
            continue
        v = rng.integers(1, 90, rng.integers(0, n_max + 1))
        video[k], author[k] = v, v % 7 + 1000
        last[k] = -5
    return video, author, last


def _brute_items(frame, key, time, items, n, where=None, before=None, before_time=None):
    """Per row, by definition: same key, strictly earlier time, where == 1, in (time, row order)."""
    positions = np.arange(len(frame))
    out = {name: [] for name in items}
    keys, times = frame[key].to_numpy(), frame[time].to_numpy()
    flags = frame[where].to_numpy() if where else np.ones(len(frame), dtype=int)
    for i in range(len(frame)):
        earlier = [j for j in positions if keys[j] == keys[i] and times[j] < times[i] and flags[j] == 1]
        earlier.sort(key=lambda j: (times[j], j))
        for name, col in items.items():
            seq = [frame[col].iloc[j] for j in earlier]
            k = keys[i]
            if before is not None and k in before[name]:
                if before_time is None or k not in before_time or times[i] > before_time[k]:
                    seq = list(before[name][k]) + seq
            out[name].append(seq[-n:] if n else [])
    return out


def _assert_same_items(got, expected, index):
    for name, cells in expected.items():
        series = got[name]
        assert series.dtype == object and list(series.index) == list(index)
        for cell, want in zip(series.to_numpy(), cells):
            assert isinstance(cell, np.ndarray) and cell.ndim == 1
            assert cell.tolist() == list(want), (name, cell, want)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 3, 8])
def test_last_items_matches_brute_force(seed, n):
    frame = _log(seed, string_items=seed % 2 == 1)
    items = {"hist_video": "video", "hist_author": "author"}
    got = last_items(frame, key="user", time="t", items=items, n=n)
    _assert_same_items(got, _brute_items(frame, "user", "t", items, n), frame.index)
    # aligned: same length per row
    assert (got["hist_video"].map(len) == got["hist_author"].map(len)).all()


@pytest.mark.parametrize("seed", range(3))
def test_last_items_where_and_before_match_brute_force(seed):
    frame = _log(seed)
    items = {"hist_video": "video", "hist_author": "author"}
    video, author, last = _before(seed)
    last_row_time = {0: 30, 3: 0}  # these keys' pre-window parts end AT (or after) some rows' times
    for k, v in last_row_time.items():
        last[k] = v
    before = {"hist_video": video, "hist_author": author}
    for n in (2, 5, 10):
        got = last_items(frame, key="user", time="t", items=items, n=n, where="clicked", before=before,
                         before_time=last)
        expected = _brute_items(frame, "user", "t", items, n, where="clicked", before=before, before_time=last)
        _assert_same_items(got, expected, frame.index)


def test_where_filtering_keeps_only_flagged_rows():
    frame = pd.DataFrame({"user": [1, 1, 1, 1, 1], "t": [1, 2, 3, 4, 5], "video": [10, 11, 12, 13, 14],
                          "clicked": [1, 0, 1, 0, 0]})
    got = last_items(frame, key="user", time="t", items={"click_video": "video"}, n=5, where="clicked")
    assert [c.tolist() for c in got["click_video"]] == [[], [10], [10], [10, 12], [10, 12]]
    # a row's own flag does not matter: only the earlier rows' flags do
    with pytest.raises(DataError, match=r"'clicked' must hold 0 or 1"):
        last_items(frame.assign(clicked=[1, 2, 0, 0, 0]), key="user", time="t", items={"h": "video"}, n=2,
                   where="clicked")


def test_before_is_prepended_oldest_first_and_cut_to_newest_n():
    frame = pd.DataFrame({"user": [7, 7, 7, 8], "t": [100, 200, 300, 100], "video": [1, 2, 3, 4]})
    before = {"h": {7: np.array([91, 92, 93, 94]), 8: np.array([81])}}
    got = last_items(frame, key="user", time="t", items={"h": "video"}, n=3, before=before)["h"]
    assert [c.tolist() for c in got] == [[92, 93, 94], [93, 94, 1], [94, 1, 2], [81]]
    # before_time: a row at (or before) the pre-window's last time does not see it
    got = last_items(frame, key="user", time="t", items={"h": "video"}, n=3, before=before,
                     before_time={7: 100, 8: 99})["h"]
    assert [c.tolist() for c in got] == [[], [93, 94, 1], [94, 1, 2], [81]]
    # keys of another type than the column are an error, not silently empty histories
    with pytest.raises(DataError, match=r"keys of another type"):
        last_items(frame, key="user", time="t", items={"h": "video"}, n=3, before={"h": {"7": [1]}})
    # the outputs of one call stay aligned: pre-window parts of different lengths are refused
    with pytest.raises(DataError, match=r"differ in length for user '7'"):
        last_items(frame.assign(a=0), key="user", time="t", items={"h": "video", "g": "a"}, n=3,
                   before={"h": {7: [1, 2]}, "g": {7: [5]}})
    with pytest.raises(DataError, match=r"pre-window part for every output"):
        last_items(frame.assign(a=0), key="user", time="t", items={"h": "video", "g": "a"}, n=3,
                   before={"h": {7: [1, 2]}})


def test_planted_future_row_never_leaks():
    """A marker item planted in the future, and one at exactly a row's time, must not appear in
    the history (or the counts) of any row at or before its time."""
    frame = _log(11, rows=400)
    marker_future, marker_now = 999_991, 999_992
    t_now = int(frame["t"].median())
    planted = pd.DataFrame({"user": [0, 0], "t": [frame["t"].max() + 1000, t_now],
                            "video": [marker_future, marker_now], "clicked": [1, 1], "liked": [1, 1],
                            "author": [marker_future, marker_now]}, index=[-1, -2])
    frame = pd.concat([frame, planted])
    hist = last_items(frame, key="user", time="t", items={"h": "video", "a": "author"}, n=1000)
    for name in ("h", "a"):
        has_future = hist[name].map(lambda c: marker_future in c.tolist())
        has_now = hist[name].map(lambda c: marker_now in c.tolist())
        assert not has_future.any()
        assert not has_now[frame["t"] <= t_now].any()
        # and it does reach the rows strictly after it (the test can fail)
        assert has_now[(frame["t"] > t_now) & (frame["user"] == 0)].all()
    counts = point_in_time_counts(frame, key="user", time="t", labels=["liked"])
    ref = point_in_time_counts(frame.drop(index=[-1, -2]), key="user", time="t", labels=["liked"])
    at_or_before = frame.drop(index=[-1, -2])["t"] <= t_now
    pd.testing.assert_frame_equal(counts.loc[ref.index[at_or_before]], ref.loc[at_or_before])
    # streamed, the same holds
    state = HistoryState(key="user", time="t", items={"h": "video"}, n=1000)
    ordered = frame.sort_values("t", kind="stable")
    edges = np.linspace(0, len(ordered), 8).astype(int)
    streamed = pd.concat([state.update(ordered.iloc[a:b]) for a, b in zip(edges, edges[1:])])
    assert not streamed["h"].map(lambda c: marker_future in c.tolist()).any()
    assert not streamed["h"][ordered["t"] <= t_now].map(lambda c: marker_now in c.tolist()).any()


def _brute_counts(frame, key, time, labels, prefix):
    out = {f"{prefix}_n": []}
    out.update({f"{prefix}_{lab}_rate": [] for lab in labels})
    for i in range(len(frame)):
        row = frame.iloc[i]
        earlier = frame[(frame[key] == row[key]) & (frame[time] < row[time])]
        out[f"{prefix}_n"].append(len(earlier))
        for lab in labels:
            vals = earlier[lab].dropna()
            out[f"{prefix}_{lab}_rate"].append(vals.mean() if len(vals) else np.nan)
    return pd.DataFrame(out, index=frame.index).astype("float32")


@pytest.mark.parametrize("seed", range(4))
def test_counts_and_rates_match_brute_force(seed):
    frame = _log(seed, rows=250)
    frame.loc[frame.index[::17], "liked"] = np.nan  # a missing label is left out of its mean
    got = point_in_time_counts(frame, key="user", time="t", labels=["clicked", "liked"])
    pd.testing.assert_frame_equal(got, _brute_counts(frame, "user", "t", ["clicked", "liked"], "user"))
    got = point_in_time_counts(frame, key="video", time="t", labels="clicked", prefix="vid")
    pd.testing.assert_frame_equal(got, _brute_counts(frame, "video", "t", ["clicked"], "vid"))
    assert np.isnan(got["vid_clicked_rate"]).any()  # rows with no earlier row: NaN, not 0


def _chunks_with_ties_at_the_edges(frame, rng, pieces):
    """Time-sorted chunks whose cut points fall inside runs of equal time."""
    ordered = frame.sort_values("t", kind="stable")
    t = ordered["t"].to_numpy()
    inside = np.flatnonzero(t[1:] == t[:-1]) + 1  # a cut here splits one time between two chunks
    cuts = np.sort(rng.choice(inside, size=min(pieces, len(inside)), replace=False))
    cuts = np.concatenate([cuts, [cuts[0]]])  # an empty chunk too
    return ordered, [ordered.iloc[a:b] for a, b in zip(np.r_[0, np.sort(cuts)], np.r_[np.sort(cuts), len(t)])]


@pytest.mark.parametrize("seed", range(5))
def test_chunked_equals_whole(seed):
    rng = np.random.default_rng(seed)
    frame = _log(seed, rows=500, keys=8, times=20)
    video, author, last = _before(seed, keys=8)
    last[1] = 40
    items = {"hist_video": "video", "hist_author": "author"}
    before = {"hist_video": video, "hist_author": author}
    ordered, chunks = _chunks_with_ties_at_the_edges(frame, rng, pieces=12)
    assert any(len(a) and len(b) and a["t"].iloc[-1] == b["t"].iloc[0] for a, b in zip(chunks, chunks[1:]))
    for n, where in ((3, None), (6, "clicked"), (50, "liked")):
        whole = last_items(ordered, key="user", time="t", items=items, n=n, where=where, before=before,
                           before_time=last)
        whole_counts = point_in_time_counts(ordered, key="user", time="t", labels=["clicked", "liked"])
        state = HistoryState(key="user", time="t", items=items, n=n, where=where, before=before,
                             before_time=last, labels=["clicked", "liked"])
        streamed = pd.concat([state.update(c) for c in chunks])
        assert list(streamed.columns) == list(items) + list(whole_counts.columns)
        assert list(streamed.index) == list(ordered.index)
        for name in items:
            for a, b in zip(streamed[name], whole[name]):
                assert a.tolist() == b.tolist()
        pd.testing.assert_frame_equal(streamed[whole_counts.columns], whole_counts)
    # counts for a second key, one row per chunk (every chunk boundary a tie or a step)
    state = HistoryState(key="video", time="t", labels=["clicked"], prefix="v")
    streamed = pd.concat([state.update(ordered.iloc[i:i + 1]) for i in range(len(ordered))])
    pd.testing.assert_frame_equal(streamed, point_in_time_counts(ordered, key="video", time="t",
                                                                  labels=["clicked"], prefix="v"))


def test_chunk_going_back_in_time_is_an_error():
    frame = _log(1)
    state = HistoryState(key="user", time="t", labels=[])
    state.update(frame[frame["t"] >= 50])
    with pytest.raises(DataError, match=r"chunk goes back in time"):
        state.update(frame[frame["t"] < 50])


def test_user_mistakes_are_data_errors():
    frame = _log(2)
    with pytest.raises(DataError, match=r"column 'vdeo' is not in the frame.*did you mean 'video'"):
        last_items(frame, key="user", time="t", items={"h": "vdeo"}, n=3)
    with pytest.raises(DataError, match=r"n must be a positive integer"):
        last_items(frame, key="user", time="t", items={"h": "video"}, n=0)
    with pytest.raises(DataError, match=r"key column 'user' is missing on 1 row"):
        point_in_time_counts(frame.assign(user=frame["user"].where(frame.index != frame.index[3])),
                             key="user", time="t")
    with pytest.raises(DataError, match=r"needs items .* or labels"):
        HistoryState(key="user", time="t")


def test_empty_history_is_an_empty_array_and_cells_are_read_only():
    frame = pd.DataFrame({"user": [1, 1, 2], "t": [5, 5, 6], "video": [3, 4, 5]})
    got = last_items(frame, key="user", time="t", items={"h": "video"}, n=4)["h"]
    assert all(isinstance(c, np.ndarray) and len(c) == 0 for c in got)
    assert got.iloc[0].dtype == np.int64
    frame = pd.DataFrame({"user": [1, 1], "t": [5, 6], "video": [3, 4]})
    cell = last_items(frame, key="user", time="t", items={"h": "video"}, n=4)["h"].iloc[1]
    with pytest.raises(ValueError):
        cell[0] = 9  # a view into one shared array: changing it would change other rows
