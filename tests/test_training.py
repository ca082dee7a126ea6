"""Train -> evaluate -> export on the bundled synthetic data, end to end, kept tiny."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from composer import training
from composer.cli import main

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))
DATA = "synthetic:rows=4000"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def mmoe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "mmoe"
    assert main(["train", str(ROOT / "blueprints/mmoe.yaml"), "--data", DATA, "--epochs", "2",
                 "--out", str(out), "--verbose", "0"]) == 0
    return out


def test_run_folder_holds_everything(mmoe_run):
    for name in ("model.keras", "preprocessing.json", "blueprint.json", "data.json",
                 "loss_plan.json", "history.csv", "metrics.json", "metrics.csv"):
        assert (mmoe_run / name).exists(), name
    data = json.loads((mmoe_run / "data.json").read_text())
    assert data["name"] == DATA and data["rows"]["test"] > 0
    history = (mmoe_run / "history.csv").read_text()
    assert "val_auc_click" in history and "val_auc_like" in history


def test_reported_auc_is_the_exact_auc_of_the_predictions(mmoe_run):
    exp = training.load_run(str(mmoe_run))
    preds = training.predict(exp, "test")
    rep = training.report(exp, "test", preds)
    rows = exp.dataset.part("test").frame
    for task in ("click", "like"):
        assert rep.tasks[task].auc == pytest.approx(roc_auc_score(rows[task], preds[task]), abs=1e-12)
    saved = json.loads((mmoe_run / "metrics.json").read_text())
    assert json.dumps(saved)  # valid JSON, no NaN
    # metrics differ per task (not one column reused for every task)
    assert rep.tasks["click"].auc != rep.tasks["like"].auc


def test_evaluate_command(mmoe_run, capsys):
    assert main(["evaluate", str(mmoe_run)]) == 0
    out = capsys.readouterr().out
    assert "macro" in out and "GAUC" in out and "valid groups" in out
    assert (mmoe_run / "eval-test" / "metrics.json").exists()


def test_evaluate_rejects_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_preprocessing_is_fitted_on_train_only(mmoe_run):
    exp = training.load_run(str(mmoe_run))
    train_ids = set(exp.dataset.part("train").frame["item_id"].astype(str))
    assert set(exp.pre.vocabularies["item_id"]) <= train_ids
    test_ids = set(exp.dataset.part("test").frame["item_id"].astype(str))
    assert test_ids - train_ids, "the tiny split should have unseen test items (OOV path exercised)"


@pytest.mark.parametrize("blueprint", BLUEPRINTS, ids=[p.stem for p in BLUEPRINTS])
def test_train_export_reload_in_fresh_process(tmp_path, blueprint):
    run = tmp_path / "run"
    from composer.blueprint import load_blueprint

    data = f"{load_blueprint(str(blueprint))[0].data}:rows=4000"  # the blueprint's own data, small
    assert main(["train", str(blueprint), "--data", data, "--epochs", "1", "--out", str(run),
                 "--verbose", "0"]) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "export")]) == 0
    exp = training.load_run(str(run))
    rows = exp.dataset.part("test").frame.head(300).copy()
    rows.loc[rows.index[:5], "item_id"] = "never-seen-item"  # raw strings unseen in training
    rows.loc[rows.index[5:8], "price"] = np.nan  # missing numerics
    expected = exp.model.predict(exp.pre.pack(rows, exp.graph.layout), verbose=0)
    from composer.export_tf import raw_features

    np.savez(tmp_path / "raw.npz", **raw_features(rows, exp.graph.layout))
    script = (
        "import sys, numpy as np, tensorflow as tf, composer\n"
        "raw = dict(np.load(sys.argv[2], allow_pickle=False))\n"
        "serve = tf.saved_model.load(sys.argv[1] + '/saved_model').signatures['serving_default']\n"
        "out = serve(**{k: tf.constant(v) for k, v in raw.items()})\n"
        "np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "export"), str(tmp_path / "raw.npz"),
                           str(tmp_path / "served.npz")], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    served = dict(np.load(tmp_path / "served.npz"))
    assert set(served) == set(exp.tasks)
    for task in served:
        np.testing.assert_allclose(served[task], np.asarray(expected[task]).reshape(-1), rtol=1e-6, atol=1e-7)


def test_planted_report_is_the_exact_auc_of_the_generators_noiseless_score():
    exp = training.prepare(str(ROOT / "blueprints/star.yaml"), data="synthetic-msl:rows=6000")
    rep = training.planted_report(exp)
    test = exp.dataset.split == "test"
    rows = exp.dataset.frame[test]
    score = exp.dataset.meta["planted"]["click"][test]
    assert rep.tasks["click"].auc == pytest.approx(roc_auc_score(rows["click"], score), abs=1e-12)
    for tab in ("tab0", "tab1", "tab2"):
        mine = (rows["scenario"] == tab).to_numpy()
        assert rep.scenarios[tab]["click"].auc == pytest.approx(
            roc_auc_score(rows["click"][mine], score[mine]), abs=1e-12)


@pytest.mark.parametrize("blueprint, data, has_one", [
    ("esmm.yaml", "synthetic-chain:rows=4000", False),  # a label expression and a `where`
    ("mmoe.yaml", "synthetic:rows=4000", True),  # averaged over the hidden scenario
    ("star.yaml", "synthetic-msl:rows=4000", True),
    ("mmoe.yaml", "adult", False),  # real data has no planted truth
])
def test_planted_report_only_where_every_task_has_a_noiseless_score(blueprint, data, has_one):
    if data == "adult" and not (ROOT.parent / "shared/data/adult").is_dir():
        pytest.skip("../shared/data/adult is absent")
    exp = training.prepare(str(ROOT / "blueprints" / blueprint), data=data, rows=3000)
    assert (training.planted_report(exp) is not None) == has_one
