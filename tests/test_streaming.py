"""composer/data/streaming.py and composer/data/feed.py: training on a file read in chunks gives
what training on the file loaded whole gives. Every file is written for real in tmp_path; chunks
are made small so that a few thousand rows cross many chunk boundaries."""
import textwrap

import numpy as np
import pandas as pd
import pytest

from composer import training
from composer.data import files, registry
from composer.data.errors import DataError
from composer.data.preprocess import Preprocessor
from composer.data.streaming import Moments, StreamFit, open_stream

BLUEPRINT = "blueprints/shared_bottom.yaml"


def clicks(rows: int, seed: int = 0) -> pd.DataFrame:
    """A click log with a planted signal: per-user and per-category effects and two numerics;
    missing cells in every feature kind; a heavy-tailed column (log1p) and a row serial."""
    rng = np.random.default_rng(seed)
    users, cats = rng.integers(0, 300, rows), rng.integers(0, 30, rows)
    user_effect, cat_effect = rng.normal(size=300), rng.normal(size=30)
    x1, x2 = rng.normal(size=rows), rng.exponential(size=rows)
    logit = 1.5 * user_effect[users] + cat_effect[cats] + x1 - 0.7 * x2
    frame = pd.DataFrame({
        "user": [f"u{u}" for u in users], "cat": [f"{c:03d}" for c in cats],
        "x1": x1.round(4), "x2": x2.round(4),
        "gains": np.where(rng.random(rows) < 0.9, 0.0, rng.lognormal(5, 2, rows)).round(1),
        "serial": np.arange(rows, dtype=float),
        "day": rng.integers(0, 10, rows),
        "click": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        "like": (rng.random(rows) < 1 / (1 + np.exp(-(0.5 * logit - 1 + cat_effect[cats])))).astype(int),
    })
    frame["split"] = np.where(frame["day"] == 9, "test", np.where(frame["day"] == 8, "valid", "train"))
    frame["date"] = [f"2022-01-{d + 1:02d}" for d in frame["day"]]
    for col, every in (("user", 97), ("x1", 89), ("gains", 83)):
        frame[col] = frame[col].astype(object)
        frame.loc[frame.index % every == 5, col] = None
    return frame


SPLITS = {
    "time": "{time: day, valid_from: 8, test_from: 9}",
    "column": "{column: split}",
    "hash": "{hash: user, valid: 0.1, test: 0.1}",
    "lines": "{hash: null, valid: 0.1, test: 0.1}",
    "dates": "{time: date, valid_from: 2022-01-09, test_from: 2022-01-10}",
}


def write(tmp_path, frame, fmt="csv", split="time", extra="", name="d"):
    source = tmp_path / f"{name}.{fmt}"
    if fmt.startswith("csv"):
        frame.to_csv(source, index=False)
    else:
        frame.to_parquet(source, index=False)
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        source: {source.name}
        categorical: [user, cat]
        numeric: [x1, x2, gains, serial]
        labels: {{click: click, like: like}}
        group: user
        split: {SPLITS[split]}
        """) + extra)
    return str(spec)


def streamed(spec, split, chunk_rows=100):
    data = open_stream(spec, chunk_rows=chunk_rows)
    try:
        frames = list(data.frames(split))
        return pd.concat(frames, ignore_index=True).drop(columns="_row"), len(frames), data.counts()
    finally:
        data.close()


# -- the same rows, split and converted alike ------------------------------------------------------
@pytest.mark.parametrize("fmt,split", [("csv", "time"), ("csv", "column"), ("csv", "hash"), ("csv", "lines"),
                                       ("csv", "dates"), ("csv.gz", "lines"), ("parquet", "time"),
                                       ("parquet", "lines"), ("parquet", "dates")])
def test_streamed_rows_are_the_in_memory_rows(tmp_path, fmt, split):
    spec = write(tmp_path, clicks(3000), fmt, split)
    whole = registry.load(spec)
    for part in ("train", "valid", "test"):
        rows, chunks, counts = streamed(spec, part)
        expected = whole.part(part).frame
        assert counts == whole.counts()
        assert chunks > 1 or len(expected) < 100
        pd.testing.assert_frame_equal(rows, expected, check_dtype=True)


def test_rows_limit_reads_the_first_rows(tmp_path):
    spec = write(tmp_path, clicks(3000), "csv", "lines")
    data = open_stream(spec, rows=1234, chunk_rows=100)
    assert data.counts() == registry.load(spec, rows=1234).counts()
    data.close()


def test_the_cache_is_removed_on_close(tmp_path):
    data = open_stream(write(tmp_path, clicks(500)))
    assert any(data.cache.iterdir())
    data.close()
    assert not data.cache.exists()


# -- preprocessing fitted in one pass --------------------------------------------------------------
@pytest.mark.parametrize("min_count", [1, 3])
def test_fitted_preprocessing_equals_in_memory(tmp_path, min_count):
    spec = write(tmp_path, clicks(5000))
    cats, nums = ["user", "cat"], ["x1", "x2", "gains", "serial"]
    expected = Preprocessor.fit(registry.load(spec).part("train").frame, cats, nums, min_count=min_count)
    data = open_stream(spec, chunk_rows=128)
    fitted = data.fit_preprocessor(cats, nums, min_count=min_count)
    data.close()
    assert fitted.vocabularies == expected.vocabularies  # same values, same order, same OOV rule
    assert len(fitted.vocabularies["user"]) > 100
    assert {n: s["log1p"] for n, s in fitted.numeric.items()} == {n: s["log1p"] for n, s in expected.numeric.items()}
    assert fitted.numeric["gains"]["log1p"] and not fitted.numeric["x1"]["log1p"]
    for name in nums:  # the same up to float rounding of the sums
        for stat in ("mean", "variance"):
            assert fitted.numeric[name][stat] == pytest.approx(expected.numeric[name][stat], rel=1e-9, abs=1e-12)


def test_merged_moments_are_the_two_pass_moments():
    rng = np.random.default_rng(3)
    x = rng.lognormal(0, 1.5, 10_001)
    m = Moments()
    for part in np.array_split(x, [1, 2, 700, 701, 5000]):
        m.add(part)
    assert m.n == len(x)
    assert m.mean == pytest.approx(x.mean(), rel=1e-12)
    assert m.variance() == pytest.approx(x.var(), rel=1e-10)
    assert m.skew() == pytest.approx(pd.Series(x).skew(), rel=1e-9)


def test_stream_fit_of_a_column_without_values():
    fit = StreamFit(["c"], ["n"])
    fit.add(pd.DataFrame({"c": pd.Series([None, None], dtype="str"), "n": [np.nan, np.nan]}))
    pre = fit.result()
    assert pre == Preprocessor.fit(pd.DataFrame({"c": pd.Series([None, None], dtype="str"),
                                                 "n": [np.nan, np.nan]}), ["c"], ["n"])


# -- chunk boundaries: every row once per epoch ------------------------------------------------------
def _exp(spec, **train):
    return training.prepare(BLUEPRINT, data=spec, training={"stream": True, "batch_size": 64, **train})


def test_every_row_once_per_pass_whatever_the_chunks(tmp_path):
    from composer.training.streamed import StreamBatches, packed

    spec = write(tmp_path, clicks(3000))
    exp = _exp(spec, chunk_rows=70, shuffle_buffer=300)
    layout = exp.graph.layout
    serial = layout.numeric.index("serial")
    expected = np.sort(exp.arrays_of(registry.load(spec).part("train").frame)[0]["numeric"][:, serial])
    n = exp.dataset.counts()["train"]
    orders = []
    for seed in (5, 5, 6):
        feed = StreamBatches(lambda: packed(exp, "train"), n, 64, shuffle_rows=300, seed=seed)
        for _ in range(2):  # two passes (epochs) of the same feed
            batches = [feed[i] for i in range(len(feed))]
            got = np.concatenate([b[0]["numeric"][:, serial] for b in batches])
            assert len(batches) == -(-n // 64) and all(len(b[1]["click"]) == 64 for b in batches[:-1])
            np.testing.assert_array_equal(np.sort(got), expected)  # none lost, none twice
            orders.append(got)
        feed.close()
    assert not np.array_equal(orders[0], orders[1])  # each pass reshuffles
    np.testing.assert_array_equal(orders[0], orders[2])  # the same seed, the same order
    assert not np.array_equal(orders[0], orders[4])
    exp.dataset.close()


def test_fit_counts_the_rows_of_every_epoch(tmp_path):
    spec = write(tmp_path, clicks(2000))
    exp = _exp(spec, chunk_rows=90, epochs=2, patience=5)
    history = training.fit(exp, verbose=0)
    n = exp.dataset.counts()["train"]
    assert exp.timings["stream_rows_per_epoch"][:2] == [n, n]
    assert set(exp.timings["stream_rows_per_epoch"]) == {n}
    assert len(history.history["rows_per_s"]) == 2 and all(v > 0 for v in history.history["rows_per_s"])
    assert all(0 <= v < 1 for v in history.history["input_wait"])
    exp.dataset.close()


# -- streamed and in-memory training ------------------------------------------------------------------
@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """The same blueprint, seed and file trained in memory and streamed."""
    spec = write(tmp_path_factory.mktemp("twins"), clicks(20_000))
    runs = {}
    for stream in (False, True):
        exp = training.prepare(BLUEPRINT, data=spec, training={
            "stream": stream, "seed": 1, "epochs": 3, "batch_size": 256, "patience": 10,
            "chunk_rows": 1000, "shuffle_buffer": 4096})
        training.fit(exp, verbose=0)
        runs[stream] = exp
    yield runs
    runs[True].dataset.close()


def test_streamed_and_in_memory_training_give_the_same_test_auc(twin_runs):
    in_memory = training.report(twin_runs[False]).macro()["auc"]
    streamed_auc = training.report(twin_runs[True]).macro()["auc"]
    assert in_memory > 0.8 and streamed_auc > 0.8  # both learned the planted signal
    assert abs(streamed_auc - in_memory) < 0.002


def test_streamed_predictions_are_the_in_memory_predictions(twin_runs):
    exp = twin_runs[False]
    expected = training.predict(exp, "test")
    saved = exp.dataset
    exp.dataset = twin_runs[True].dataset  # the same model, its test rows streamed
    try:
        got = training.predict(exp, "test")
        streamed_report = training.report(exp)
    finally:
        exp.dataset = saved
    for task in exp.tasks:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-6)
    report = training.report(exp)
    for task, metrics in report.tasks.items():  # the same rows, labels and groups
        assert (streamed_report.tasks[task].n, streamed_report.tasks[task].positives) == (metrics.n, metrics.positives)
        assert streamed_report.tasks[task].auc == pytest.approx(metrics.auc, abs=1e-6)
        assert streamed_report.tasks[task].gauc == pytest.approx(metrics.gauc, abs=1e-6)


# -- bad rows are reported as in memory ----------------------------------------------------------------
def _bad_csv(tmp_path, edit, split="time"):
    lines = clicks(2000).to_csv(index=False).splitlines()
    edit(lines)
    source = tmp_path / "d.csv"
    spec = write(tmp_path, clicks(10), "csv", split)  # the YAML; the file is replaced below
    source.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    return spec


def _cell(lines, row, col, value):
    header = lines[0].split(",")
    fields = lines[row + 1].split(",")
    fields[header.index(col)] = value
    lines[row + 1] = ",".join(fields)


def same_error(spec) -> DataError:
    """The error of loading ``spec`` whole, checked to be the one streaming it in chunks gives."""
    with pytest.raises(DataError) as whole:
        registry.load(spec)
    with pytest.raises(DataError) as chunked:
        open_stream(spec, chunk_rows=100)
    assert str(chunked.value) == str(whole.value)
    return whole.value


BAD = {
    "not a number": lambda ls: _cell(ls, 1500, "x2", "abc"),
    "infinite": lambda ls: _cell(ls, 1400, "x2", "inf"),
    "label not 0/1": lambda ls: _cell(ls, 1200, "click", "2"),
    "missing label": lambda ls: _cell(ls, 900, "like", ""),
    "missing time": lambda ls: _cell(ls, 1800, "day", ""),
    "long row": lambda ls: ls.__setitem__(1701, ls[1701] + ",7"),
    "short row": lambda ls: ls.__setitem__(1101, ls[1101].rsplit(",", 1)[0]),
    "not UTF-8": lambda ls: _cell(ls, 1000, "user", "u\udcff"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_rows_are_reported_as_in_memory(tmp_path, case):
    spec = _bad_csv(tmp_path, BAD[case])
    error = same_error(spec)
    assert error.location.line is not None and error.location.line > 100  # a later chunk


def test_unknown_split_value_is_reported_as_in_memory(tmp_path):
    spec = _bad_csv(tmp_path, lambda ls: _cell(ls, 1300, "split", "tset"), split="column")
    assert ":1302:" in str(same_error(spec))


def test_bad_parquet_cell_is_reported_with_its_row(tmp_path):
    frame = clicks(2000)
    frame.loc[1600, "click"] = 3
    spec = write(tmp_path, frame, "parquet")
    assert "row 1601" in str(same_error(spec))


def test_several_bad_rows_in_a_chunk_are_counted_there(tmp_path):
    def edit(lines):
        for row in (1510, 1520):
            _cell(lines, row, "x2", "abc")

    spec = _bad_csv(tmp_path, edit)
    with pytest.raises(DataError) as chunked:
        open_stream(spec, chunk_rows=100)
    assert ":1512: x2: expected a number, got 'abc' (2 rows like this in rows" in str(chunked.value)


def test_scenario_values_are_checked_in_every_split(tmp_path):
    frame = clicks(2000)
    frame["cat"] = np.where(frame.index % 2, "a", "b")
    frame.loc[[700, 1900], "cat"] = "c"
    spec = write(tmp_path, frame)
    scenario = ("cat", ["a", "b"])
    whole = registry.load(spec)
    pre = Preprocessor.fit(whole.part("train").frame, ["cat"], [], scenario=scenario)
    with pytest.raises(DataError) as expected:
        pre.encode_scenario(whole.frame["cat"], source=whole.source, locate=files.row_locator(whole))
    data = open_stream(spec, chunk_rows=100)
    with pytest.raises(DataError) as got:
        data.fit_preprocessor(["cat"], [], scenario=scenario)
    data.close()
    assert str(got.value) == str(expected.value)


def test_built_in_datasets_are_not_streamed():
    with pytest.raises(DataError, match="cannot be streamed"):
        open_stream("synthetic")


# -- the command line ---------------------------------------------------------------------------------
def test_train_and_evaluate_streamed(tmp_path, capsys):
    from composer.cli import main

    spec = write(tmp_path, clicks(3000))
    run = tmp_path / "run"
    assert main(["train", BLUEPRINT, "--data", spec, "--stream", "--chunk-rows", "500", "--epochs", "1",
                 "--batch-size", "256", "--verbose", "2", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "rows_per_s:" in out and "input_wait:" in out
    assert main(["evaluate", str(run)]) == 0
    assert "test split" in capsys.readouterr().out


def test_stream_flag_with_a_built_in_dataset_exits_2(capsys):
    from composer.cli import main

    assert main(["train", BLUEPRINT, "--data", "synthetic", "--stream"]) == 2
    assert "cannot be streamed" in capsys.readouterr().err


def test_an_unmatched_quote_is_reported_not_read_to_the_end_of_the_file(tmp_path):
    """A '"' inside an unquoted value makes every later newline look quoted; the reader stops
    after ROW_LIMIT_BLOCKS blocks with the line, instead of holding the rest of the file."""
    from composer.data.errors import DataError
    from composer.data.streaming import ROW_LIMIT_BLOCKS, _byte_chunks

    rows = [f"{i},item {i},1" for i in range(2000)]
    rows[10] = '10,12" screen,1'
    path = tmp_path / "quote.csv"
    path.write_text("id,name,click\n" + "\n".join(rows) + "\n")
    block = 256
    chunks = []
    with pytest.raises(DataError) as err:
        for first, chunk in _byte_chunks(str(path), block):
            chunks.append(chunk)
    assert "unmatched" in str(err.value) and err.value.location.line == 2 + sum(c.count(b"\n") for c in chunks)
    assert len(b"".join(chunks)) < ROW_LIMIT_BLOCKS * block * 2  # stopped early, not at the end

    ok = tmp_path / "ok.csv"  # the same file quoted properly streams whole
    rows[10] = '10,"12"" screen",1'
    ok.write_text("id,name,click\n" + "\n".join(rows) + "\n")
    assert sum(c.count(b"\n") for _, c in _byte_chunks(str(ok), block)) == 2000


def test_true_false_labels_stream_as_they_load_in_memory(tmp_path):
    """pandas reads a CSV column of True/False as bool; a streamed chunk reaches the label check
    as text. Both must give the same 0/1 labels."""
    frame = clicks(600)
    frame["click"] = frame["click"].map({1: "True", 0: "False"})
    spec = write(tmp_path, frame)
    whole = registry.load(spec)
    assert set(whole.frame["click"].unique()) == {0, 1}
    for part in ("train", "valid", "test"):
        rows, _, _ = streamed(spec, part)
        np.testing.assert_array_equal(rows["click"].to_numpy(), whole.part(part).frame["click"].to_numpy())
        np.testing.assert_array_equal(rows["click"].to_numpy(), (frame.loc[rows["serial"].astype(int), "click"] == "True").astype(int).to_numpy())
