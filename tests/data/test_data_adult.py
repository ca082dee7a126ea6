"""composer/data/adult.py on UCI's own files (skipped when ../shared/data is absent)."""
import hashlib

import pandas as pd
import pytest

from composer.data import adult
from composer.data.errors import DataError
from composer.data.tables import data_root

FOLDER = data_root() / "adult"
needs_data = pytest.mark.skipif(
    not FOLDER.is_dir(), reason=f"real data not found at {FOLDER}: expected ../shared/data next to the "
    "project root (or set COMPOSER_DATA_DIR)")


@pytest.fixture(scope="module")
def data():
    return adult.load("adult")


@needs_data
def test_rows_and_splits(data):
    assert len(data) == 32_561 + 16_281
    counts = data.counts()
    assert counts["test"] == 16_281
    assert counts["train"] + counts["valid"] == 32_561
    lines = [line for line in (FOLDER / "adult_train.csv").read_text().split("\n") if line]
    b8 = sum(int(hashlib.md5(line.encode()).hexdigest()[:8], 16) % 10 == 8 for line in lines)
    assert counts["valid"] == b8 == 3_276


@needs_data
def test_labels(data):
    test = data.part("test").frame
    assert test["income"].sum() == 3_846  # '>50K.' rows of adult.test
    train = data.frame[data.split != "test"]
    assert train["income"].sum() == 7_841  # '>50K' rows of adult.data
    assert data.frame["never_married"].mean() == pytest.approx(0.33, abs=0.01)


@needs_data
def test_roles(data):
    spec = data.spec
    assert "marital_status" not in spec.features and "relationship" not in spec.features
    assert set(spec.numeric) == {"age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"}
    assert spec.scenario is None and spec.group is None
    assert pd.api.types.is_string_dtype(data.frame["workclass"])
    assert data.frame["workclass"].isna().sum() > 0  # '?' is missing
    assert not data.frame["workclass"].dropna().str.startswith(" ").any()


@needs_data
def test_msl_variant():
    data = adult.load("adult-msl", rows=300)
    assert len(data) == 600  # at most 300 rows from each file
    assert data.spec.scenario == "sex" and set(data.frame["sex"]) == {"Female", "Male"}


def test_bad_label_is_located(tmp_path):
    folder = tmp_path / "adult"
    folder.mkdir()
    row = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 0, 0, 40, United-States, {}"
    (folder / "adult_train.csv").write_text("\n".join([row.format("<=50K"), row.format(">50K")]) + "\n")
    (folder / "adult_test.csv").write_text("\n".join([row.format("<=50K."), row.format("50K+")]) + "\n")
    with pytest.raises(DataError, match=r"adult_test\.csv:2: income_class: unknown income class '50K\+'"):
        adult.load("adult", root=tmp_path)
