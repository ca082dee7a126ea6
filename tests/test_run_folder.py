"""A run folder keeps what is needed to read a run later (issue 17, item 7): the blueprint as
written (blueprint.yaml), its diagram (blueprint.dot; blueprint.svg where Graphviz is installed),
and a history with the valid loss and each task's valid AUC every epoch, whatever the monitor."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from composer import training
from composer.cli import main
from composer.diagram import has_dot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "mmoe"
    code = main(["train", str(ROOT / "blueprints/mmoe.yaml"), "--data", "synthetic:rows=3000", "--epochs", "2",
                 "--batch-size", "256", "--out", str(out), "--verbose", "0"])
    assert code == 0
    return out


def test_the_run_keeps_the_blueprint_as_written_and_its_diagram(run):
    assert (run / "blueprint.yaml").read_text() == (ROOT / "blueprints/mmoe.yaml").read_text()  # comments too
    dot = (run / "blueprint.dot").read_text()
    assert dot.startswith("digraph mmoe") and "moe" in dot and "tower" in dot
    assert (run / "blueprint.svg").exists() == has_dot()
    if has_dot():
        assert "<svg" in (run / "blueprint.svg").read_text()


def test_history_has_the_valid_loss_and_auc_of_every_epoch_with_monitor_auc(run):
    history = pd.read_csv(run / "history.csv")
    assert json.loads((run / "blueprint.json").read_text())["training"]["monitor"] == "auc"  # not loss
    assert len(history) == 2
    for column in ("loss", "val_loss", "val_loss_click", "val_loss_like", "val_auc_click", "val_auc_like",
                   "val_auc"):
        assert column in history and np.isfinite(history[column]).all(), column


@pytest.mark.parametrize("blueprint", ["mmoe", "mmoe_uncertainty"])
def test_val_loss_is_the_loss_keras_evaluates_on_the_valid_split(blueprint):
    """One epoch (the restored best weights are the last): val_loss, computed from the valid
    predictions the AUC callback makes, is what the trainer's own evaluate gives on the valid rows
    (one batch: they are fewer than 8192), and the fused masked-mean BCE written out here."""
    exp = training.prepare(str(ROOT / f"blueprints/{blueprint}.yaml"), data="synthetic:rows=3000",
                           training={"epochs": 1, "batch_size": 256})
    history = training.fit(exp, verbose=0)
    x, y, w = exp.arrays("valid")
    assert len(w["click"]) <= 8192
    evaluated = exp.trainer.evaluate(x, y, sample_weight=w, batch_size=8192, verbose=0, return_dict=True)
    assert history.history["val_loss"][0] == pytest.approx(evaluated["loss"], rel=1e-4, abs=1e-6)
    for task in exp.tasks:
        assert history.history[f"val_loss_{task}"][0] == pytest.approx(evaluated[f"loss_{task}"], rel=1e-4)
    if blueprint == "mmoe":  # fixed weights 1: the sum of the tasks' masked means
        pred = exp.model.predict(x, verbose=0)
        total = 0.0
        for task in exp.tasks:
            p = np.clip(np.asarray(pred[task]).reshape(-1), 1e-7, 1 - 1e-7)
            label = y[task].reshape(-1)
            bce = -(label * np.log(p) + (1 - label) * np.log(1 - p))
            total += float((bce * w[task]).sum() / max(w[task].sum(), 1.0))
        assert history.history["val_loss"][0] == pytest.approx(total, rel=1e-4)
