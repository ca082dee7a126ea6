"""Every blueprint builds, fits one tiny epoch and predicts under KERAS_BACKEND=jax and torch.

One subprocess per backend (the backend is chosen at Keras import) runs tests/backend_smoke.py
over all blueprints, each on its own ``data:`` with ``:rows=600``; the test reads its JSON lines
and names every blueprint that failed. On a backend without their train step (not in
composer.training.plan_trainer.GRADIENT_BACKENDS) GradNorm and PE-LTR must stop with a BlueprintError naming
TensorFlow, and their networks are then fitted with uncertainty fusion. Each test is skipped when
its backend's package is not installed (CI installs JAX, not PyTorch).
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer.blueprint import load_blueprint
from composer.training.plan_trainer import GRADIENT_BACKENDS, GRADIENT_STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))


def _installed(module: str, extra: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{module} is not installed ({extra})")


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


def _smoke(backend: str, **env) -> dict[str, list[dict]]:
    """Run backend_smoke.py over every blueprint under ``backend``: blueprint -> its runs."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
           **env}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "backend_smoke.py"), *map(str, BLUEPRINTS)],
                          capture_output=True, text=True, env=env, timeout=900)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines and lines[-1] == "DONE", proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in lines[:-1]]
    assert records[0] == {"backend": backend}
    runs = {}
    for r in records[1:]:
        runs.setdefault(r["blueprint"], []).append(r)
    assert sorted(runs) == sorted(p.stem for p in BLUEPRINTS)
    return runs


def _check(backend: str, runs: dict[str, list[dict]]) -> None:
    problems = {name: _problems(rs) for name, rs in runs.items()}
    problems = {name: p for name, p in problems.items() if p}
    assert not problems, "\n".join(f"{name}: {'; '.join(p)}" for name, p in problems.items())
    fusions = {r["fusion"] for rs in runs.values() for r in rs if "loss" in r}
    assert {"fixed", "uncertainty"} <= fusions
    # every gradient-fusion blueprint is refused exactly where its train step is missing
    gradient = {p.stem for p in BLUEPRINTS if load_blueprint(str(p))[0].loss.fusion in GRADIENT_STRATEGIES}
    refused = {name for name, rs in runs.items() if any("refused" in r for r in rs)}
    assert gradient, "no shipped blueprint uses GradNorm or PE-LTR"
    assert refused == (set() if backend in GRADIENT_BACKENDS else gradient)


# one test per backend, one subprocess each: under pytest-xdist a parametrized module fixture
# would run the whole subprocess once per worker
@_installed("jax", "pip install -e '.[jax]'")
def test_every_blueprint_builds_fits_and_predicts_under_jax():
    _check("jax", _smoke("jax", JAX_PLATFORMS="cpu"))


@_installed("torch", "CI does not install PyTorch; pip install torch (a CPU build is enough)")
def test_every_blueprint_builds_fits_and_predicts_under_torch():
    _check("torch", _smoke("torch"))
