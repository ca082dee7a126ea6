"""composer/data/registry.py: names, paths, describe without data, registration."""
import numpy as np
import pandas as pd
import pytest

from composer.data import registry, tables
from composer.data.dataset import DataSpec, Dataset
from composer.data.errors import DataError

BUILTIN = ("census-mtl", "census-msl", "adult", "adult-msl", "kuairand", "aliexpress", "ali-ccp",
           "ali-ccp-scenarios")


def test_builtin_names():
    assert set(BUILTIN) <= set(registry.names())


@pytest.mark.parametrize("name", BUILTIN)
def test_describe_reads_no_data(name, monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("describe() read data")

    monkeypatch.setattr(pd, "read_csv", refuse)
    monkeypatch.setattr(pd, "read_parquet", refuse)
    monkeypatch.setattr(tables, "read_table", refuse)
    for root in (None, tmp_path):  # with the shared data, and with none at all
        if root is not None:
            monkeypatch.setenv("COMPOSER_DATA_DIR", str(root))
        spec = registry.describe(name)
        assert isinstance(spec, DataSpec) and spec.name == name
        assert spec.labels and spec.features
        assert not set(spec.labels.values()) & set(spec.features)
        if spec.scenario:
            assert spec.scenario in spec.categorical


@pytest.mark.parametrize("name", BUILTIN)
def test_missing_data_folder(name, monkeypatch, tmp_path):
    monkeypatch.setenv("COMPOSER_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"data folder not found: .*nowhere") as info:
        registry.load(name)
    assert "COMPOSER_DATA_DIR" in info.value.hint and info.value.key == name


def test_unknown_name():
    with pytest.raises(DataError, match=r"unknown dataset 'census'; did you mean 'census-mtl'\?"):
        registry.describe("census")
    with pytest.raises(DataError, match=r"unknown dataset 'ali_ccp'; did you mean 'ali-ccp'\?"):
        registry.load("ali_ccp")


def test_builtins_take_no_options():
    with pytest.raises(DataError, match=r"dataset 'adult' takes no options"):
        registry.describe("adult:rows=5")


def test_a_csv_is_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match=r"is not a data YAML"):
        registry.describe(str(tmp_path / "x.csv"))
    with pytest.raises(DataError, match=r"a folder is not a dataset"):
        registry.describe(str(tmp_path))


def test_rows_must_be_positive():
    with pytest.raises(DataError, match="rows must be a positive integer"):
        registry.load("adult", rows=0)


def test_register():
    spec = DataSpec("mine", ("a",), (), {"t": "t"})

    def load_fn(name, rows=None):
        return Dataset(spec, pd.DataFrame({"a": ["x"], "t": [1]}), np.array(["train"]))

    registry.register("mine-test", lambda name: spec, load_fn)
    try:
        assert "mine-test" in registry.names()
        assert registry.describe("mine-test") is spec
        assert len(registry.load("mine-test")) == 1
    finally:
        registry._REGISTRY.pop("mine-test")


def test_synthetic_registers_itself_when_present():
    pytest.importorskip("composer.data.synthetic", reason="composer/data/synthetic.py does not exist yet")
    assert "synthetic" in registry.names()
