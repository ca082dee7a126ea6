"""Predictions on raw rows: ``composer.predict(run, frame)`` and ``composer predict RUN``.

One tiny run (categorical ids, a multi-valued and a sequence feature sharing the item table, a
skewed numeric, a scenario column) trained once; the API is checked against the exported
SavedModel on raw rows (strings, NaN, unseen ids, lists as arrays and as "a,b" text), and the
command is run as a user runs it, good input and bad.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import composer
from composer.blueprint.errors import BlueprintError
from composer.cli import main
from composer.data.errors import DataError
from composer.prediction import Predictor

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
TF = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"

DATA_YAML = """\
source: log.csv
categorical: [user_id, item_id, tab]
numeric: [price]
multi:
  tags: {max_len: 3}
sequences:
  hist_item: {max_len: 4, share: item_id}
labels: {click: click, like: like}
scenario: tab
scenario_values: [home, search]
group: user_id
split: {hash: user_id, valid: 0.2, test: 0.2}
"""

BLUEPRINT = """\
name: tiny_predict
data: data.yaml
features:
  - {name: user_id, kind: categorical, dim: 4}
  - {name: item_id, kind: categorical, dim: 4}
  - {name: tab, kind: categorical, dim: 4}
  - {name: tags, kind: multi, max_len: 3, dim: 4}
  - {name: hist_item, kind: sequence, share: item_id, max_len: 4}
  - {name: price, kind: numeric}
groups:
  all: [user_id, item_id, tab, tags, hist_item, price]
  domain: [tab]
tasks:
  - {name: click, label: click}
  - {name: like, label: like}
scenarios: from_data
blocks:
  x:      {type: embed, group: all}
  d:      {type: embed, group: domain}
  moe:    {type: mmoe, input: x, experts: 2, units: [8]}
  main:   {type: tower, for_each: task, input: "moe.{task}", units: [4]}
  bias:   {type: scenario_bias, for_each: task, input: d, units: [4]}
  logit:  {type: add, for_each: task, inputs: ["main.{task}", "bias.{task}"]}
outputs: "logit.{task}"
training: {batch_size: 64, epochs: 1, seed: 5}
"""


def make_log(rows=400, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    for r in range(rows):
        hist = [f"i{k}" for k in rng.integers(0, 30, int(rng.integers(0, 6))).tolist()]
        out.append(dict(user_id=f"u{r % 40}", item_id=f"i{int(rng.integers(0, 30))}",
                        tab=["home", "search"][r % 2],
                        tags=",".join(f"t{k}" for k in rng.integers(0, 8, int(rng.integers(0, 3))).tolist()),
                        hist_item=",".join(hist), price=float(rng.gamma(1.0, 30.0)),
                        click=int(rng.random() < 0.3), like=int(rng.random() < 0.2)))
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from composer import training

    folder = tmp_path_factory.mktemp("predict")
    make_log().to_csv(folder / "log.csv", index=False)
    (folder / "data.yaml").write_text(DATA_YAML)
    (folder / "bp.yaml").write_text(BLUEPRINT)
    exp = training.prepare(str(folder / "bp.yaml"))
    training.fit(exp, verbose=0, epochs=1)
    training.save_run(exp, str(folder / "run"))
    return exp, folder


def raw_rows() -> pd.DataFrame:
    """What a user hands over: text and numbers, NaN, unseen ids, lists as arrays and as text."""
    return pd.DataFrame({
        "user_id": ["u1", "never-seen-user", None, "u3", "u7"],
        "item_id": ["i3", "i999", "i4", np.nan, "i12"],
        "tab": ["home", "search", "home", "search", "home"],
        "tags": [["t1", "t2"], "t3", np.nan, [], "t1,,t4"],
        "hist_item": [np.array(["i1", "i2", "i3", "i4", "i5", "i6"], dtype=object), "i2,i9", "", None,
                      ["i999", "i3"]],
        "price": [3.5, np.nan, 0.0, 1200.0, 12.25],
    }, index=[10, 11, 12, 13, 14])


def test_raw_rows_equal_the_saved_model(run, tmp_path):
    if not TF:
        pytest.skip("the serving export is a TensorFlow SavedModel")
    import tensorflow as tf

    from composer.export_tf import export_saved_model, raw_features

    exp, folder = run
    rows = pd.concat([raw_rows(), exp.dataset.part("test").frame[raw_rows().columns]], ignore_index=True)
    signature = tf.saved_model.load(str(export_saved_model(exp, str(tmp_path / "sm")))).signatures["serving_default"]
    served = signature(**{k: tf.constant(v) for k, v in raw_features(rows, exp.graph.layout).items()})
    got = composer.predict(str(folder / "run"), rows)
    assert list(got.columns) == ["click", "like"] and got.index.equals(rows.index)
    for task in exp.tasks:
        np.testing.assert_allclose(got[task].to_numpy(), served[task].numpy(), rtol=0, atol=1e-6)


def test_lists_as_text_or_arrays_and_numbers_as_text_predict_alike(run):
    _, folder = run
    p = Predictor.open(folder / "run")
    rows = raw_rows()
    as_text = rows.copy()
    as_text["tags"] = ["t1,t2", "t3", "", "", "t1,,t4"]
    as_text["hist_item"] = ["i1,i2,i3,i4,i5,i6", "i2,i9", "", "", "i999,i3"]
    as_text["price"] = ["3.5", None, "0", "1200", "12.25"]
    pd.testing.assert_frame_equal(p(rows), p(as_text))
    assert p.columns == ["user_id", "item_id", "tab", "tags", "hist_item", "price"]


def test_predictions_equal_the_run_models_own_on_the_test_split(run):
    from composer import training

    exp, folder = run
    expected = training.predict(exp, "test")
    got = composer.predict(str(folder / "run"), exp.dataset.part("test").frame)
    for task in exp.tasks:
        np.testing.assert_allclose(got[task].to_numpy(), expected[task], rtol=0, atol=1e-6)


def test_missing_columns_are_one_error_naming_them(run):
    _, folder = run
    with pytest.raises(DataError) as info:
        composer.predict(str(folder / "run"), raw_rows().drop(columns=["price", "hist_item"]).rename(
            columns={"user_id": "userid"}))
    text = str(info.value)
    assert text.startswith("columns: 3 columns the model reads are not in the input: user_id, hist_item, price;")
    assert "did you mean 'userid' for 'user_id'?" in text and "\n" not in text


def test_bad_numbers_and_undeclared_scenarios_are_data_errors(run):
    _, folder = run
    rows = raw_rows()
    rows["price"] = ["3.5", "cheap", None, "inf", "1"]
    with pytest.raises(DataError, match=r"^price: expected a finite number, got 'cheap' at index 11 \(2 rows"):
        composer.predict(str(folder / "run"), rows)
    rows = raw_rows()
    rows["tab"] = ["home", "cart", "home", "home", "home"]
    with pytest.raises(DataError, match="tab: 1 rows have a scenario value outside the declared set: 'cart'"):
        composer.predict(str(folder / "run"), rows)


def test_an_empty_frame_gives_an_empty_table(run):
    _, folder = run
    got = composer.predict(str(folder / "run"), raw_rows().head(0))
    assert list(got.columns) == ["click", "like"] and len(got) == 0


def test_missing_and_damaged_run_folders_are_one_line(run, tmp_path, capsys):
    _, folder = run
    assert main(["predict", str(tmp_path / "nope"), "--data", str(folder / "data.yaml")]) == 2
    assert capsys.readouterr().err == (f"{tmp_path / 'nope'}: no such run folder; pass the folder `composer "
                                       "train` wrote (runs/NAME-DATA-TIME, or its --out)\n")
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty")]) == 2
    assert "not a run folder: model.keras, preprocessing.json, blueprint.json, data.json missing" in \
        capsys.readouterr().err
    damaged = tmp_path / "damaged"
    shutil.copytree(folder / "run", damaged)
    data = (damaged / "model.keras").read_bytes()
    (damaged / "model.keras").write_bytes(data[: len(data) // 2])
    assert main(["predict", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{damaged / 'model.keras'}: damaged run folder: model.keras does not read (")
    assert err.count("\n") == 1
    (damaged / "preprocessing.json").write_text("{not json")
    with pytest.raises(BlueprintError, match="preprocessing.json does not read"):
        Predictor.open(damaged)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "composer", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=ENV)


def test_command_on_a_data_yaml_keeps_split_and_keys(run, tmp_path):
    exp, folder = run
    out = tmp_path / "preds.parquet"
    proc = cli("predict", folder / "run", "--data", folder / "data.yaml", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert f"predicted 400 rows of {folder / 'data.yaml'} (test " in proc.stdout
    assert f"wrote {out}: columns split, user_id, tab, item_id, click, like" in proc.stdout
    got = pd.read_parquet(out)
    assert list(got.columns) == ["split", "user_id", "tab", "item_id", "click", "like"]
    assert (got["split"].to_numpy() == exp.dataset.split).all()
    assert (got["user_id"].to_numpy() == exp.dataset.frame["user_id"].to_numpy()).all()
    expected = composer.predict(str(folder / "run"), exp.dataset.frame)
    for task in exp.tasks:
        np.testing.assert_allclose(got[task].to_numpy(), expected[task].to_numpy(), rtol=0, atol=1e-6)


def test_command_on_a_csv_of_raw_rows(run, tmp_path):
    _, folder = run
    rows = raw_rows().drop(columns=["tags", "hist_item"])
    rows["tags"] = ["t1,t2", "t3", "", "", "t1,,t4"]
    rows["hist_item"] = ["i1,i2,i3,i4,i5,i6", "i2,i9", "", "", "i999,i3"]
    rows["request_id"] = ["r1", "r2", "r3", "r4", "r5"]
    rows["note"] = list("abcde")
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "new" / "p.csv"  # its folder is made
    proc = cli("predict", folder / "run", "--data", tmp_path / "rows.csv", "-o", out, "--keep", "note")
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out)
    assert list(got.columns) == ["note", "tab", "user_id", "item_id", "request_id", "click", "like"]
    expected = composer.predict(str(folder / "run"), raw_rows())
    np.testing.assert_allclose(got[["click", "like"]].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-6)
    # missing columns: exit 2, one line naming them
    rows.drop(columns=["price", "tab"]).to_csv(tmp_path / "short.csv", index=False)
    proc = cli("predict", folder / "run", "--data", tmp_path / "short.csv", "-o", tmp_path / "p.csv")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"{tmp_path / 'short.csv'}: columns: 2 columns the model reads are not in "
                                  "the file: tab, price;"), proc.stderr
    assert proc.stderr.count("\n") == 1
    # a bad number in the file: located at its line
    rows.assign(price=["1", "2", "x", "4", "5"]).to_csv(tmp_path / "bad.csv", index=False)
    proc = cli("predict", folder / "run", "--data", tmp_path / "bad.csv", "-o", tmp_path / "p.csv")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{tmp_path / 'bad.csv'}:4: price: expected a number, got 'x'"), proc.stderr


def test_command_refuses_a_bad_output_name_and_a_missing_run_before_loading_anything(run, tmp_path):
    _, folder = run
    proc = cli("predict", folder / "run", "-o", tmp_path / "p.json")
    assert proc.returncode == 2
    assert proc.stderr == (f"-o: cannot write predictions to '{tmp_path / 'p.json'}': the file name must end "
                           "in .parquet or .csv\n")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "composer", "predict", str(tmp_path / "missing")],
                          capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (f"{tmp_path / 'missing'}: no such run folder; pass the folder "
                                            "`composer train` wrote (runs/NAME-DATA-TIME, or its --out)")
    assert not [line for line in proc.stderr.splitlines() if line.rstrip().endswith(("| tensorflow", "| keras"))]


def test_help_documents_the_command():
    proc = cli("predict", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for words in ("RUN_DIR", "--data", ".parquet or .csv", "composer.predict(RUN_DIR, dataframe)",
                  "the split of each row", "--keep", "docs/predict.md"):
        assert words in text, words

