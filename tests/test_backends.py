"""Every blueprint builds, fits one tiny epoch and predicts under KERAS_BACKEND=jax.

One subprocess (the backend is chosen at Keras import) runs tests/backend_smoke.py over all
blueprints, each on its own ``data:`` with ``:rows=600``; the test reads its JSON lines and
names every blueprint that failed. GradNorm and PE-LTR have no JAX train step yet: they must
stop with a BlueprintError naming TensorFlow, and their networks are then fitted with
uncertainty fusion.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="jax is not installed (pip install -e '.[jax]')")


def _problems(runs: list[dict]) -> list[str]:
    """What is wrong with one blueprint's runs (empty when it built, fitted and predicted)."""
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        return errors
    fitted = [r for r in runs if "loss" in r]
    if len(fitted) != 1:
        return [f"expected one fitted run, got {runs}"]
    r = fitted[0]
    out = []
    if not (r["loss_finite"] and r["pred_finite"]):
        out.append(f"non-finite loss or predictions: {r}")
    if not r["pred_in_0_1"]:
        out.append(f"predictions outside (0, 1): {r}")
    refused = [x for x in runs if "refused" in x]
    if refused:  # a gradient fusion: one clear sentence, then trained with uncertainty instead
        if not refused[0]["refused"] or "KERAS_BACKEND=tensorflow" not in refused[0]["refused"]:
            out.append(f"{refused[0]['fusion']} was not refused with a message naming TensorFlow: {refused[0]}")
        if r["fusion"] != "uncertainty":
            out.append(f"fitted with {r['fusion']}, expected uncertainty: {r}")
    return out


def test_every_blueprint_builds_fits_and_predicts_under_jax():
    # one test, one subprocess: under pytest-xdist a parametrized module fixture would run the
    # whole subprocess once per worker
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "backend_smoke.py"), *map(str, BLUEPRINTS)],
                          capture_output=True, text=True, env=env, timeout=900)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines and lines[-1] == "DONE", proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in lines[:-1]]
    assert records[0] == {"backend": "jax"}
    runs = {}
    for r in records[1:]:
        runs.setdefault(r["blueprint"], []).append(r)
    assert sorted(runs) == sorted(p.stem for p in BLUEPRINTS)
    problems = {name: _problems(rs) for name, rs in runs.items()}
    problems = {name: p for name, p in problems.items() if p}
    assert not problems, "\n".join(f"{name}: {'; '.join(p)}" for name, p in problems.items())
    fusions = {r["fusion"] for rs in runs.values() for r in rs if "loss" in r}
    assert {"fixed", "uncertainty"} <= fusions
