"""Build, fit one tiny epoch and predict every blueprint under the current Keras backend.

Run as a script (``KERAS_BACKEND=jax python3 tests/backend_smoke.py [BLUEPRINT.yaml ...]``, or
``KERAS_BACKEND=torch``); ``tests/test_backends.py`` starts it once per backend in a subprocess
for all blueprints. Each blueprint
trains on its own ``data:`` with ``:rows=600``; a gradient fusion (GradNorm, PE-LTR) on a
backend without its train step must stop with a BlueprintError, and the same blueprint is then
trained with uncertainty fusion instead, so every network is fitted on every backend. Prints one
JSON line per run and a final ``DONE`` line.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
ROWS = 600
BATCH = 512  # one training step per epoch: one compilation of the train step under JAX


def _with_fusion(path: Path, fusion: str, tmp: str) -> str:
    """A copy of the blueprint (same folder semantics) with its loss line replaced."""
    lines = path.read_text().splitlines()
    lines = [f"loss: {{fusion: {fusion}}}" if ln.startswith("loss:") else ln for ln in lines]
    out = Path(tmp) / f"{path.stem}_{fusion}.yaml"
    out.write_text("\n".join(lines) + "\n")
    return str(out)


def _fit_predict(file: str, data: str) -> dict:
    import numpy as np

    from composer import training

    exp = training.prepare(file, data=data)
    history = training.fit(exp, verbose=0, epochs=1, batch_size=BATCH)
    preds = training.predict(exp, "test")
    losses = [float(v) for v in history.history["loss"]]
    return {"fusion": exp.plan.fusion, "loss": losses[-1],
            "loss_finite": all(math.isfinite(v) for v in losses),
            "pred_in_0_1": all(bool(np.all((p > 0) & (p < 1))) for p in preds.values()),
            "pred_finite": all(bool(np.all(np.isfinite(p))) for p in preds.values()),
            "tasks": sorted(preds)}


def run(path: Path, tmp: str) -> list[dict]:
    import keras

    from composer.blueprint import BlueprintError, load_blueprint
    from composer.training.plan_trainer import GRADIENT_BACKENDS, GRADIENT_STRATEGIES

    bp, _ = load_blueprint(str(path))
    data = f"{bp.data}:rows={ROWS}"
    results = []
    t0 = time.perf_counter()
    if bp.loss.fusion in GRADIENT_STRATEGIES and keras.backend.backend() not in GRADIENT_BACKENDS:
        try:
            _fit_predict(str(path), data)
            refused = None
        except BlueprintError as exc:
            refused = str(exc)
        results.append({"blueprint": path.stem, "fusion": bp.loss.fusion, "refused": refused})
        file = _with_fusion(path, "uncertainty", tmp)
    else:
        file = str(path)
    out = _fit_predict(file, data)
    out.update(blueprint=path.stem, seconds=round(time.perf_counter() - t0, 2))
    results.append(out)
    return results


# Compile fast rather than run fast: tests run tiny batches a few times, so XLA's CPU
# optimisation passes dominate them under JAX (the JAX layer and golden tests took 116 s with
# them, 59 s without, on 2 cores). Takes effect only before JAX starts.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def use_fast_compiles() -> None:
    """Add FAST_COMPILE_FLAGS to XLA_FLAGS under KERAS_BACKEND=jax (tests/conftest.py)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("KERAS_BACKEND") == "jax" and FAST_COMPILE_FLAGS not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE_FLAGS}".strip()


def main(argv: list[str]) -> int:
    use_fast_compiles()
    import keras

    paths = [Path(a) for a in argv] or sorted((ROOT / "blueprints").glob("*.yaml"))
    print(json.dumps({"backend": keras.backend.backend()}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            try:
                results = run(path, tmp)
            except Exception as exc:  # reported per blueprint; the test names the failing one
                results = [{"blueprint": path.stem, "error": f"{type(exc).__name__}: {exc}"}]
            for r in results:
                print(json.dumps(r), flush=True)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
