"""Composer's scanned JAX loop (composer/training/jax_loop.py), in subprocesses under
KERAS_BACKEND=jax with 8 virtual CPU devices (the backend and the device count are fixed when JAX
starts): the batch sharded over 8 devices trains like one device; rows streamed to the device in
chunks train like rows resident on it; every loss plan runs in it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("jax_trainer_checks.py")
DATA = "synthetic:rows=6000"


def run(which: str, blueprint: str, data: str = DATA) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, str(SCRIPT), which, str(ROOT / "blueprints" / blueprint), data],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_batch_sharded_over_8_devices_trains_like_one_device():
    out = run("parallel", "mmoe.yaml")
    assert out["devices"] == 8
    one, sharded = out["one"], out["sharded"]
    # the same batches in the same order; only the all-reduce's summation order differs
    np.testing.assert_allclose(sharded["loss"], one["loss"], rtol=2e-4)
    np.testing.assert_allclose(sharded["val_auc"], one["val_auc"], atol=2e-3)
    for task in one["pred"]:
        np.testing.assert_allclose(sharded["pred"][task], one["pred"][task], rtol=2e-3, atol=1e-4)


def test_rows_streamed_in_chunks_train_like_resident_rows():
    out = run("chunks", "mmoe.yaml", "synthetic:rows=40000")
    assert "on the device" in out["resident"]["feed"]
    assert "chunks" in out["streamed"]["feed"]
    np.testing.assert_allclose(out["streamed"]["loss"], out["resident"]["loss"], rtol=1e-5)
    for task in out["resident"]["pred"]:
        np.testing.assert_allclose(out["streamed"]["pred"][task], out["resident"]["pred"][task], rtol=1e-5)


@pytest.mark.parametrize("blueprint, which", [("mmoe_uncertainty.yaml", "plan"), ("mmoe_gradnorm.yaml", "plan"),
                                              ("mmoe_pareto.yaml", "plan"), ("esmm.yaml", "chain"),
                                              ("mmoe.yaml", "mixed")])
def test_every_loss_plan_trains_in_the_scanned_loop(blueprint, which):
    """Uncertainty, GradNorm and PE-LTR (their JAX steps), ESMM's chained probabilities and a
    ``where`` (masked rows), mixed_bfloat16."""
    got = run(which, blueprint)["run"]
    assert np.all(np.isfinite(got["loss"])) and got["loss"][-1] < got["loss"][0]
    if blueprint not in ("esmm.yaml", "mmoe.yaml"):  # the fusion's weights move (fixed fusion keeps its own)
        first = {k: v[0] for k, v in got["weights"].items()}
        last = {k: v[-1] for k, v in got["weights"].items()}
        assert first != last
