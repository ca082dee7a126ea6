"""composer/data/ali.py on the AliExpress and Ali-CCP fixtures (skipped when ../shared/data is absent)."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from composer.data import ali, registry
from composer.data.errors import DataError
from composer.data.tables import data_root

FOLDER = data_root() / "fixtures"
needs_data = pytest.mark.skipif(
    not FOLDER.is_dir(), reason=f"real data not found at {FOLDER}: expected ../shared/data next to the "
    "project root (or set COMPOSER_DATA_DIR)")


@needs_data
def test_aliexpress():
    data = registry.load("aliexpress")
    spec = data.spec
    assert len(spec.categorical) == 16 and len(spec.numeric) == 63
    assert spec.labels == {"click": "click", "conversion": "conversion"}
    assert spec.scenario is None and "search_id" not in spec.features
    counts = data.counts()
    assert counts["test"] == 20 and counts["train"] + counts["valid"] == 100
    raw = pd.read_csv(FOLDER / "aliexpress" / "aliexpress_train_sample.csv")
    valid = [int(hashlib.md5(str(s).encode()).hexdigest()[:8], 16) % 10 == 8 for s in raw["search_id"]]
    assert counts["valid"] == sum(valid) > 0
    train = data.frame[data.split != "test"]
    assert train["click"].tolist() == raw["click"].tolist()
    assert (data.frame["conversion"] <= data.frame["click"]).all()  # conversion only on clicked rows
    assert data.frame["numerical_1"].dtype == np.float32


@needs_data
@pytest.mark.parametrize("name", ["ali-ccp", "ali-ccp-scenarios"])
def test_ali_ccp(name):
    data = registry.load(name)
    spec = data.spec
    assert data.counts() == {"train": 100, "valid": 50, "test": 50}
    assert spec.labels == {"click": "click", "purchase": "purchase"}
    assert spec.group == "f101" and "f101" in spec.categorical and "f109_14" in spec.categorical
    assert set(spec.numeric) == {"D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"}
    assert all(c[0].isalpha() for c in spec.features)  # every name is a valid blueprint identifier
    assert (data.frame["purchase"] <= data.frame["click"]).all()
    scenarios = set(data.frame["f301"])
    if name == "ali-ccp-scenarios":
        assert spec.scenario == "f301" and scenarios == {"1", "2", "3"}
    else:
        assert spec.scenario is None and scenarios == {"1"}


@needs_data
def test_rows_per_file():
    data = registry.load("ali-ccp", rows=10)
    assert data.counts() == {"train": 10, "valid": 10, "test": 10}


def test_missing_test_file(tmp_path):
    (tmp_path / "x_train.csv").write_text("click,purchase\n0,0\n")
    with pytest.raises(DataError, match="no test file in the folder"):
        ali.load("ali-ccp", directory=tmp_path)


def test_missing_field_is_located(tmp_path):
    header = ["click", "purchase"] + list(ali.CCP_SPARSE) + list(ali.CCP_DENSE)
    row = ["0", "0"] + ["1"] * len(ali.CCP_SPARSE) + ["0.5"] * len(ali.CCP_DENSE)
    for split in ("train", "val"):
        (tmp_path / f"ccp_{split}.csv").write_text(",".join(header) + "\n" + ",".join(row) + "\n")
    broken = [h if h != "purchase" else "purchse" for h in header]
    (tmp_path / "ccp_test.csv").write_text(",".join(broken) + "\n" + ",".join(row) + "\n")
    with pytest.raises(DataError, match=r"ccp_test\.csv:1: purchase: column 'purchase' is not in the file; did you mean 'purchse'\?"):
        ali.load("ali-ccp", directory=tmp_path)
