"""composer/data/census.py on the real UCI file (skipped when ../shared/data is absent)."""
import gzip
import hashlib
import time

import numpy as np
import pandas as pd
import pytest

from composer.data import census
from composer.data.errors import DataError
from composer.data.tables import data_root

FOLDER = data_root() / "census_income_kdd"
needs_data = pytest.mark.skipif(
    not FOLDER.is_dir(), reason=f"real data not found at {FOLDER}: expected ../shared/data next to the "
    "project root (or set COMPOSER_DATA_DIR)")


@pytest.fixture(scope="module")
def loaded():
    t0 = time.perf_counter()
    data = census.load("census-mtl")
    return data, time.perf_counter() - t0


@needs_data
def test_rows_splits_and_rates(loaded):
    data, seconds = loaded
    assert seconds < 10, f"loading census took {seconds:.1f} s"
    assert len(data) == 99_762
    assert data.counts() == {"train": 79_718, "valid": 9_941, "test": 10_103}
    assert data.frame["income"].sum() == 6_186  # 6.2 %, as census-income.names says
    assert data.frame["income"].mean() == pytest.approx(0.062, abs=0.001)
    assert data.frame["never_married"].mean() == pytest.approx(0.4325, abs=0.001)


@needs_data
def test_split_is_the_md5_rule_on_raw_lines(loaded):
    data, _ = loaded
    lines = [line for line in gzip.open(FOLDER / "census-income.test.gz", "rt", encoding="utf-8").read().split("\n")
             if line]
    b = np.array([int(hashlib.md5(line.encode("utf-8")).hexdigest()[:8], 16) % 10 for line in lines])
    expected = np.where(b <= 7, "train", np.where(b == 8, "valid", "test"))
    assert (data.split == expected).all()
    income = np.array([line.endswith("50000+.") for line in lines])
    assert (data.frame["income"].to_numpy() == income).all()


@needs_data
def test_roles_and_values(loaded):
    data, _ = loaded
    spec = data.spec
    assert len(spec.numeric) == 7 and len(spec.categorical) == 32
    for gone in ("marital_stat", "instance_weight", "income_class"):
        assert gone not in spec.features and gone not in data.frame.columns
    assert spec.labels == {"income": "income", "never_married": "never_married"}
    assert spec.scenario is None and spec.group is None
    frame = data.frame
    assert set(frame.columns) == set(spec.features) | {"income", "never_married"}
    for col in spec.numeric:
        assert frame[col].dtype == np.float32
    for col in spec.categorical:
        assert pd.api.types.is_string_dtype(frame[col])
    assert frame["age"].iloc[0] == 38 and frame["class_of_worker"].iloc[0] == "Private"
    # padding stripped on both sides, '?' is missing
    assert not frame["citizenship"].dropna().str.match(r"^\s|.*\s$").any()
    assert frame["migration_code_change_in_msa"].isna().sum() > 0
    assert "?" not in set(frame["country_of_birth_self"].dropna())
    assert set(frame["year"]) == {"94", "95"}
    assert frame["income"].dtype == np.int64 and set(frame["income"]) == {0, 1}


@needs_data
def test_msl_variant_and_rows():
    data = census.load("census-msl", rows=500)
    assert len(data) == 500
    assert data.spec.scenario == "sex" and "sex" in data.spec.categorical
    assert set(data.frame["sex"]) == {"Female", "Male"}


def _write_census(tmp_path, lines):
    folder = tmp_path / "census_income_kdd"
    folder.mkdir()
    with gzip.open(folder / "census-income.test.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return tmp_path


GOOD = ("38, Private, 6, 36, 1st 2nd 3rd or 4th grade, 0, Not in universe, Married-civilian spouse present, "
        "Manufacturing-durable goods, Machine operators assmblrs & inspctrs, White, Mexican (Mexicano), Female, "
        "Not in universe, Not in universe, Full-time schedules, 0, 0, 0, Joint one under 65 & one 65+, "
        "Not in universe, Not in universe, Spouse of householder, Spouse of householder, 1032.38, ?, ?, ?, "
        "Not in universe under 1 year old, ?, 4, Not in universe, Mexico, Mexico, Mexico, "
        "Foreign born- Not a citizen of U S , 0, Not in universe, 2, 12, 95, - 50000.")


def test_bad_census_lines_are_located(tmp_path):
    root = _write_census(tmp_path, [GOOD, GOOD.replace("6, 36,", "6,"), GOOD])
    with pytest.raises(DataError, match=r"census-income\.test\.gz:2: line has 41 fields, expected 42"):
        census.load("census-mtl", root=root)


def test_unknown_income_class_is_located(tmp_path):
    root = _write_census(tmp_path, [GOOD, GOOD, GOOD.replace("- 50000.", "maybe")])
    with pytest.raises(DataError, match=r":3: income_class: unknown income class 'maybe'"):
        census.load("census-mtl", root=root)


def test_non_numeric_age_is_located(tmp_path):
    root = _write_census(tmp_path, [GOOD, "x" + GOOD[2:]])
    with pytest.raises(DataError, match=r":2: age: expected a number, got 'x'"):
        census.load("census-mtl", root=root)


def test_missing_folder_says_where(tmp_path):
    with pytest.raises(DataError, match=r"data folder not found: .*census_income_kdd.*shared data"):
        census.load("census-mtl", root=tmp_path)
