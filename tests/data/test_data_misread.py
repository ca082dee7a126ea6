"""Data that must never be silently mis-read (issue 17, item 10): a file is read the same way in
memory (composer/data/tables.py, files.py) and streamed (composer/data/streaming.py), or refused
with its line; scenario values are enforced by the data YAML itself; dates are not numbers."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from composer.blueprint import load_blueprint
from composer.data import files, registry
from composer.data.errors import DataError
from composer.data.streaming import ROW, open_stream

ROOT = Path(__file__).resolve().parents[2]


def _log(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": [f"u{i % 7}" for i in range(rows)], "item": [f"i{i % 11}" for i in range(rows)],
                         "tab": ["a", "b", "c"] * (rows // 3), "price": rng.random(rows).round(3),
                         "click": rng.integers(0, 2, rows), "like": rng.integers(0, 2, rows)})


def _write(tmp_path, text: str, yaml_extra: str = "", name: str = "log", source: str | None = None) -> str:
    if source is None:
        source = f"{name}.csv"
        (tmp_path / source).write_text(text)
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        source: {source}
        categorical: [user, item, tab]
        numeric: [price]
        labels: {{click: click, like: like}}
        missing_labels: mask
        split: {{hash: user, valid: 0.2, test: 0.2}}
        """) + yaml_extra)
    return str(tmp_path / f"{name}.yaml")


def _streamed(spec: str) -> pd.DataFrame:
    data = open_stream(spec, chunk_rows=16)
    try:
        parts = [f for split in ("train", "valid", "test") for f in data.frames(split)]
    finally:
        data.close()
    return pd.concat(parts).sort_values(ROW).drop(columns=[ROW]).reset_index(drop=True)


def _both_fail(spec: str) -> str:
    """The error of the file loaded whole and streamed: the same text (a bad cell's count is the
    chunk's when streamed, so that part is left out of the comparison)."""
    with pytest.raises(DataError) as whole:
        registry.load(spec)
    with pytest.raises(DataError) as streamed:
        open_stream(spec, chunk_rows=16)
    def count_free(text):
        return re.sub(r" \(\d+ rows like this[^)]*\)", "", text)
    assert count_free(str(streamed.value)) == count_free(str(whole.value))
    return str(whole.value)


def _csv(frame: pd.DataFrame, trailing_header=False, trailing_rows=True) -> str:
    lines = frame.to_csv(index=False).splitlines()
    head = lines[0] + ("," if trailing_header else "")
    return "\n".join([head] + [line + ("," if trailing_rows else "") for line in lines[1:]]) + "\n"


# -- every row ends with the delimiter ------------------------------------------------------------
@pytest.mark.parametrize("trailing_header", [False, True])
def test_rows_ending_with_the_delimiter_are_read_as_their_columns_in_memory_and_streamed(tmp_path, trailing_header):
    frame = _log()
    spec = _write(tmp_path, _csv(frame, trailing_header=trailing_header))
    whole = registry.load(spec)
    # before: pandas took `user` as the index and shifted every column left; `like` read the
    # empty trailing field and, with missing_labels: mask, became -1 on every row (exit 0)
    assert list(whole.frame["user"]) == list(frame["user"])
    assert list(whole.frame["like"]) == list(frame["like"])
    assert (whole.frame["like"] >= 0).all()
    np.testing.assert_allclose(whole.frame["price"], frame["price"], rtol=1e-6)
    streamed = _streamed(spec)
    pd.testing.assert_frame_equal(streamed[whole.frame.columns], whole.frame, check_dtype=False)


def test_a_value_after_the_last_column_is_refused_on_both_paths(tmp_path):
    text = _csv(_log()).splitlines()
    text[5] += "9"  # line 6: 'u4,i4,...,1,9' in a file whose rows end with an empty field
    message = _both_fail(_write(tmp_path, "\n".join(text) + "\n"))
    assert "log.csv:6: line holds '9' after its last column 'like'" in message
    assert "the field after the last column is empty" in message


def test_a_row_without_the_trailing_delimiter_is_refused_on_both_paths(tmp_path):
    text = _csv(_log()).splitlines()
    text[30] = text[30][:-1]  # line 31 ends without the delimiter
    message = _both_fail(_write(tmp_path, "\n".join(text) + "\n"))
    assert "log.csv:31: line has 6 fields; the rows of this file end with the delimiter, so each holds 7" in message


def test_a_first_row_longer_than_the_header_is_refused_not_taken_as_an_index(tmp_path):
    text = _csv(_log(), trailing_rows=False).splitlines()
    text[1] += ",7"  # one more value than the header on the first data row
    message = _both_fail(_write(tmp_path, "\n".join(text) + "\n"))
    assert "log.csv:2: line has 7 fields, the header has 6" in message


# -- scenario values ---------------------------------------------------------------------------------
def test_scenario_values_are_enforced_without_a_scenarios_section(tmp_path):
    spec = _write(tmp_path, _log().to_csv(index=False), "scenario: tab\nscenario_values: [a, b]\n")
    message = _both_fail(spec)
    # the first 'c' is data row 2 -> line 4; the message names the file's line, the values, the YAML key
    assert "log.csv:4: tab: 20 rows have a scenario value outside the declared set: 'c' (20 rows)" in message
    assert "add the value to scenario_values (" in message and "log.yaml:8:" in message
    assert "data row" not in message


def test_train_refuses_rows_outside_scenario_values_with_a_blueprint_without_scenarios(tmp_path, capsys):
    from composer.cli import main

    spec = _write(tmp_path, _log().to_csv(index=False), "scenario: tab\nscenario_values: [a, b]\n")
    code = main(["train", str(ROOT / "blueprints/mmoe.yaml"), "--data", spec, "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--verbose", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "log.csv:4: tab: 20 rows have a scenario value outside the declared set" in err
    assert not (tmp_path / "run").exists()


def test_a_blueprint_scenario_error_names_the_line_in_memory_and_streamed(tmp_path):
    from composer.data.preprocess import Preprocessor

    spec = _write(tmp_path, _log().to_csv(index=False), "scenario: tab\n")
    whole = registry.load(spec)
    pre = Preprocessor.fit(whole.part("train").frame, ["tab"], [], scenario=("tab", ["a", "b"]))
    with pytest.raises(DataError) as in_memory:
        pre.encode_scenario(whole.frame["tab"], source=whole.source, locate=files.row_locator(whole))
    data = open_stream(spec, chunk_rows=16)
    with pytest.raises(DataError) as streamed:
        data.fit_preprocessor(["tab"], [], scenario=("tab", ["a", "b"]))
    data.close()
    assert str(streamed.value) == str(in_memory.value)
    assert "log.csv:4: tab: 20 rows have a scenario value outside the declared set: 'c' (20 rows)" in str(in_memory.value)


def test_scenario_values_may_be_numbers(tmp_path):
    frame = _log().assign(tab=[1, 2, 3] * 20)
    spec = _write(tmp_path, frame.to_csv(index=False), "scenario: tab\nscenario_values: [3, 1, 2.0]\n")
    assert registry.describe(spec).scenario_values == ("3", "1", "2")
    assert len(registry.load(spec)) == 60
    (tmp_path / "bp.yaml").write_text((ROOT / "blueprints/split_merge.yaml").read_text())
    bp, _ = load_blueprint(str(tmp_path / "bp.yaml"), data=spec)
    assert bp.scenarios.ids == ["3", "1", "2"]  # scenarios: from_data, in the YAML's order
    frame.to_parquet(tmp_path / "log.parquet", index=False)  # integers in Parquet, too
    parquet = _write(tmp_path, "", "scenario: tab\nscenario_values: [1, 2, 3]\n", name="pq", source="log.parquet")
    assert len(registry.load(parquet)) == 60 and len(_streamed(parquet)) == 60


def test_booleans_and_repeats_are_not_scenario_values(tmp_path):
    for values, message in (("[yes, no]", "scenario_values[0]: expected text or a number (YAML reads yes, no, "
                                          "true and false as booleans: quote them), got True"),
                            ("[1, '1']", "scenario value '1' is listed twice")):
        spec = _write(tmp_path, "", f"scenario: tab\nscenario_values: {values}\n")
        with pytest.raises(DataError, match=None) as exc:
            files.read_yaml(spec)
        assert message in str(exc.value)


def test_a_blueprint_needing_scenario_values_points_at_the_data_yaml_key(tmp_path, capsys):
    from composer.cli import main

    spec = _write(tmp_path, _log().to_csv(index=False), "scenario: tab\n")
    assert main(["validate", str(ROOT / "blueprints/split_merge.yaml"), "--data", spec]) == 2
    err = capsys.readouterr().err
    assert "does not declare the values of its scenario column 'tab'" in err
    assert "scenario_values: [...] beside scenario: tab" in err


# -- dates are not numbers ----------------------------------------------------------------------------
def test_a_parquet_timestamp_declared_numeric_is_refused_on_both_paths(tmp_path):
    frame = _log().assign(price=pd.date_range("2024-05-01", periods=60, freq="h"))
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    message = _both_fail(_write(tmp_path, "", source="log.parquet"))
    # before: pd.to_numeric made nanoseconds since 1970 of every timestamp, silently
    assert "price: 'price' holds dates or times (datetime64" in message and "declared numeric" in message
    assert "in row 1" in message


def test_a_text_date_declared_numeric_names_the_column(tmp_path):
    frame = _log().assign(price=[f"2024-05-{d % 28 + 1:02d}" for d in range(60)])
    message = _both_fail(_write(tmp_path, frame.to_csv(index=False)))
    assert "log.csv:2: price: 'price' holds dates or times, declared numeric; got '2024-05-01'" in message
