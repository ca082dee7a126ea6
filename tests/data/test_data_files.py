"""composer/data/files.py: a data YAML over a CSV / gzip CSV / Parquet file. Every bad file is
written for real in tmp_path and must give one located DataError."""
import gzip
import io
import textwrap

import numpy as np
import pandas as pd
import pytest

from composer.data import registry
from composer.data.errors import DataError

CSV = """\
user_id,item_id,price,click,like,split,day
u1,007,1.5,1,0,train,2022-01-01
u2,008,2.5,0,1,train,2022-01-02
u1,009,,0,0,valid,2022-01-05
u3,,4.0,1,1,test,2022-01-09
"""

YAML = """\
source: data.csv
categorical: [user_id, item_id]
numeric: [price]
labels: {click: click, like: like}
group: user_id
split: {column: split}
"""


def write(tmp_path, csv=CSV, yaml=YAML, name="data.csv"):
    data = tmp_path / name
    if isinstance(csv, bytes):
        data.write_bytes(csv)
    elif name.endswith(".gz"):
        with gzip.open(data, "wt", encoding="utf-8") as fh:
            fh.write(csv)
    else:
        data.write_text(csv)
    spec = tmp_path / "data.yaml"
    spec.write_text(textwrap.dedent(yaml))
    return str(spec)


def error(tmp_path, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        registry.load(write(tmp_path, **kw))
    return info.value


# -- a good file ------------------------------------------------------------------------------
def test_good_file(tmp_path):
    data = registry.load(write(tmp_path))
    spec = data.spec
    assert spec.name == "data" and spec.group == "user_id"
    assert spec.categorical == ("user_id", "item_id") and spec.numeric == ("price",)
    assert spec.labels == {"click": "click", "like": "like"}
    assert data.split.tolist() == ["train", "train", "valid", "test"]
    frame = data.frame
    assert frame["item_id"].tolist()[:3] == ["007", "008", "009"]  # categorical text kept as written
    assert pd.isna(frame["item_id"].iloc[3]) and np.isnan(frame["price"].iloc[2])
    assert frame["price"].dtype == np.float32 and frame["click"].dtype == np.int64
    assert frame["click"].tolist() == [1, 0, 0, 1]


def test_describe_reads_only_the_yaml(tmp_path):
    spec = tmp_path / "d.yaml"
    spec.write_text(YAML.replace("data.csv", "not_there.csv"))
    assert registry.describe(str(spec)).labels == {"click": "click", "like": "like"}


def test_gzip_and_rows(tmp_path):
    data = registry.load(write(tmp_path, name="data.csv.gz", yaml=YAML.replace("data.csv", "data.csv.gz")), rows=2)
    assert len(data) == 2 and data.frame["item_id"].tolist() == ["007", "008"]


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(io.StringIO(CSV), dtype={"item_id": str})
    frame.to_parquet(tmp_path / "data.parquet")
    spec = tmp_path / "data.yaml"
    spec.write_text(YAML.replace("data.csv", "data.parquet"))
    data = registry.load(str(spec))
    assert data.frame["item_id"].tolist()[:3] == ["007", "008", "009"]
    assert data.split.tolist() == ["train", "train", "valid", "test"]
    frame["price"] = frame["price"].astype(str)
    frame.loc[1, "price"] = "cheap"
    frame.to_parquet(tmp_path / "data.parquet")
    with pytest.raises(DataError, match=r"data\.parquet: price: expected a number, got 'cheap' in row 2"):
        registry.load(str(spec))


# -- the bad-file kinds -----------------------------------------------------------------------
def test_empty_file(tmp_path):
    e = error(tmp_path, csv="")
    assert e.location.file.endswith("data.csv") and e.location.line == 1
    assert "file is empty" in e.message


def test_blank_file_is_empty(tmp_path):
    assert "file is empty" in error(tmp_path, csv="\n\n  \n").message


def test_header_only(tmp_path):
    e = error(tmp_path, csv="user_id,item_id,price,click,like,split\n")
    assert e.location.line == 2 and "header but no data rows" in e.message


def test_declared_column_missing(tmp_path):
    e = error(tmp_path, yaml=YAML.replace("numeric: [price]", "numeric: [prcie]"))
    assert str(e).startswith(f"{tmp_path / 'data.yaml'}:3:11: prcie: column 'prcie' is not in data.csv; "
                             "did you mean 'price'?")


def test_label_column_missing(tmp_path):
    e = error(tmp_path, yaml=YAML.replace("like: like", "like: liked"))
    assert e.location.file.endswith("data.yaml") and e.location.line == 4
    assert e.key == "liked" and "did you mean 'like'?" in e.hint


def test_non_binary_label(tmp_path):
    e = error(tmp_path, csv=CSV.replace("u2,008,2.5,0,1", "u2,008,2.5,2,1"))
    assert str(e) == (f"{tmp_path / 'data.csv'}:3: click: a label must be 0 or 1, got '2'; "
                      "labels are binary: 0 (no) or 1 (yes)")


def test_non_numeric_string_in_numeric_column(tmp_path):
    e = error(tmp_path, csv=CSV.replace("4.0", "four").replace("2.5", "n/a"))
    assert e.location.line == 3 and e.key == "price"
    assert "expected a number, got 'n/a' (2 rows like this; the first is shown)" in e.message


def test_unknown_split_value(tmp_path):
    e = error(tmp_path, csv=CSV.replace("valid,", "vaild,"))
    assert e.location.line == 4 and e.key == "split"
    assert "unknown split value 'vaild'" in e.message and "did you mean 'valid'?" in e.hint


def test_missing_split_value(tmp_path):
    e = error(tmp_path, csv=CSV.replace("1,1,test", "1,1,"))
    assert e.location.line == 5 and "missing split value" in e.message


def test_duplicate_column_name(tmp_path):
    e = error(tmp_path, csv=CSV.replace("split,day", "split,price"))
    assert e.location.line == 1 and e.key == "price"
    assert "duplicate column name 'price' in the header (columns 3 and 7)" in e.message


def test_nonexistent_file(tmp_path):
    spec = tmp_path / "data.yaml"
    spec.write_text(YAML.replace("data.csv", "nope/data.csv"))
    with pytest.raises(DataError, match=r"nope/data\.csv: cannot read file: no such file; 'source: nope/data\.csv' "
                                        r"is relative to the data YAML"):
        registry.load(str(spec))


def test_unknown_yaml_key(tmp_path):
    e = error(tmp_path, yaml=YAML.replace("numeric:", "numerc:"))
    assert str(e).startswith(f"{tmp_path / 'data.yaml'}:3:1: unknown key 'numerc'; did you mean 'numeric'?")


def test_unknown_nested_yaml_key(tmp_path):
    e = error(tmp_path, yaml=YAML.replace("{column: split}", "{colum: split}"))
    assert (e.location.line, e.location.column) == (6, 9)
    assert "unknown key 'colum'; did you mean 'column'?" in str(e)


def test_missing_label_is_an_error_unless_masked(tmp_path):
    csv = CSV.replace("u2,008,2.5,0,1", "u2,008,2.5,,1")
    e = error(tmp_path, csv=csv)
    assert e.location.line == 3 and e.key == "click" and "missing label" in e.message
    assert "missing_labels: mask" in e.hint
    data = registry.load(write(tmp_path, csv=csv, yaml=YAML + "missing_labels: mask\n"))
    assert data.frame["click"].tolist() == [1, -1, 0, 1]


def test_short_row(tmp_path):
    e = error(tmp_path, csv=CSV.replace("u2,008,2.5,0,1,train,2022-01-02", "u2,008,2.5,0,1"))
    assert e.location.line == 3 and "line has 5 fields, the header has 7" in e.message


def test_long_row(tmp_path):
    e = error(tmp_path, csv=CSV.replace("u2,008,2.5,0,1,train,2022-01-02", "u2,008,2.5,0,1,train,2022-01-02,x"))
    assert e.location.line == 3 and "line has 8 fields, the header has 7" in e.message


def test_not_utf8(tmp_path):
    e = error(tmp_path, csv=CSV.replace("u3", "caf\xe9").encode("latin-1"))
    assert e.location.line == 5 and "not UTF-8" in e.message


def test_unknown_file_type(tmp_path):
    e = error(tmp_path, yaml=YAML.replace("data.csv", "data.xlsx"))
    assert e.location.line == 1 and "unknown file type" in e.message


def test_label_that_is_a_feature(tmp_path):
    e = error(tmp_path, yaml=YAML.replace("numeric: [price]", "numeric: [price, click]"))
    assert e.location.line == 4 and "label column 'click' is also a feature (numeric[1])" in e.message


def test_scenario_must_be_categorical(tmp_path):
    e = error(tmp_path, yaml=YAML + "scenario: price\n")
    assert e.location.line == 7 and "not a categorical feature" in e.message


def test_two_split_kinds(tmp_path):
    e = error(tmp_path, yaml=YAML.replace("{column: split}", "{column: split, hash: user_id}"))
    assert e.location.line == 6 and "exactly one of column, hash or time (got column and hash)" in e.message


def test_empty_yaml(tmp_path):
    spec = tmp_path / "data.yaml"
    spec.write_text("")
    with pytest.raises(DataError, match=r"data\.yaml:1:1: file is empty; a data YAML is a mapping"):
        registry.describe(str(spec))


def test_yaml_reports_every_problem(tmp_path):
    e = error(tmp_path, yaml=YAML.replace("numeric:", "numerc:") + "missing_labels: drop\n")
    assert len(e.problems) == 2
    assert "'drop' is not allowed; valid values: error, mask" in str(e)


# -- the split rules --------------------------------------------------------------------------
def test_time_split(tmp_path):
    yaml = YAML.replace("{column: split}", "{time: day, valid_from: 2022-01-05, test_from: 2022-01-08}")
    assert registry.load(write(tmp_path, yaml=yaml)).split.tolist() == ["train", "train", "valid", "test"]
    yaml = YAML.replace("{column: split}", "{time: day, valid_from: 2022-01-05}")
    assert "a time split needs 'test_from'" in error(tmp_path, yaml=yaml).message
    e = error(tmp_path, csv=CSV.replace("2022-01-02", "yesterday"),
              yaml=YAML.replace("{column: split}", "{time: day, valid_from: 2022-01-05, test_from: 2022-01-08}"))
    assert e.location.line == 3 and "expected a date or time, got 'yesterday'" in e.message


def test_numeric_time_split(tmp_path):
    csv = "u,t,click\na,1,0\nb,5,1\nc,9,0\n"
    yaml = "source: data.csv\ncategorical: [u]\nlabels: {click: click}\nsplit: {time: t, valid_from: 5, test_from: 9}\n"
    assert registry.load(write(tmp_path, csv=csv, yaml=yaml)).split.tolist() == ["train", "valid", "test"]


def test_hash_split_keeps_a_group_together(tmp_path):
    rows = "".join(f"user{i % 50},{i},{i % 2}\n" for i in range(2000))
    csv = "user_id,item_id,click\n" + rows
    yaml = "source: data.csv\ncategorical: [user_id, item_id]\nlabels: {click: click}\n" \
           "split: {hash: user_id, valid: 0.2, test: 0.2}\n"
    data = registry.load(write(tmp_path, csv=csv, yaml=yaml))
    per_user = pd.Series(data.split).groupby(data.frame["user_id"]).nunique()
    assert (per_user == 1).all() and set(data.split) == {"train", "valid", "test"}


def test_default_split_hashes_each_line(tmp_path):
    rows = "".join(f"u{i},{i % 2}\n" for i in range(3000))
    yaml = "source: data.csv\ncategorical: [u]\nlabels: {click: click}\n"
    data = registry.load(write(tmp_path, csv="u,click\n" + rows, yaml=yaml))
    shares = pd.Series(data.split).value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.03) and shares["test"] == pytest.approx(0.1, abs=0.02)
    again = registry.load(write(tmp_path, csv="u,click\n" + rows, yaml=yaml))
    assert (again.split == data.split).all()
