"""PCGrad, CAGrad, MGDA-UB, Nash-MTL, Aligned-MTL and MetaBalance: the TensorFlow and the JAX step
each give the weights of applying the NumPy rule (composer/gradient_math.py) to the per-task
gradients; rows outside a task's ``where`` mask change nothing; ``composer train`` logs the task
weights and cosines on both backends; torch is refused in one sentence.

Each backend runs in its own subprocess (the backend is chosen at Keras import): this file run as
a script takes one SGD step per strategy on a small MMoE (the ``like`` task masked by ``where:
click``), computes the reference per-task gradients with the backend's own autodiff, one task at
a time, and prints the largest deviations as JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
STRATEGIES = {"pcgrad": "{fusion: pcgrad, seed: 3}", "cagrad": "{fusion: cagrad, c: 0.4}",
              "mgda": "{fusion: mgda}", "nash_mtl": "{fusion: nash_mtl, max_norm: 0.5}",
              "aligned_mtl": "{fusion: aligned_mtl}", "metabalance": "{fusion: metabalance, main: like, relax: 0.7}"}
LR = 0.5
# deviation of the step's update from the float64 NumPy rule, relative to the largest update
# component: the steps run in float32 (CAGrad's and MGDA's iterative solvers round too)
TOLERANCE = 2e-3


TASKS = {2: "[{name: click}, {name: like, where: click}]",
         3: "[{name: click}, {name: like, where: click}, {name: both, label: 'click & like'}]"}


def blueprint_text(loss: str, tasks: int = 2) -> str:
    text = (ROOT / "blueprints" / "mmoe.yaml").read_text()
    text = text.replace("tasks: from_data", f"tasks: {TASKS[tasks]}")
    assert "loss: {fusion: fixed}" in text
    return text.replace("loss: {fusion: fixed}", f"loss: {loss}")


# -- the script side (one backend per process) ---------------------------------------------------
def _reference_grads(trainer, x, y, w):
    """Per task: (gradients of every trainable variable, gradient w.r.t. the shared representation)."""
    import keras
    import numpy as np

    from composer.training.gradient_strategies import representation_hook

    layer = trainer.shared_layers[-1]
    n = len(trainer.tasks)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        out = []
        for t in range(n):
            seen = []
            with tf.GradientTape() as tape:
                with representation_hook(layer, lambda z: seen.append(z) or z):
                    pred = trainer(x, training=True)
                loss = trainer.task_losses(y, pred, w)[t]
            grads = tape.gradient(loss, trainer.trainable_variables + seen[-1:])
            out.append(([np.zeros(v.shape) if g is None else np.asarray(tf.convert_to_tensor(g), "float64")
                         for g, v in zip(grads[:-1], trainer.trainable_variables)],
                        np.asarray(grads[-1], "float64").reshape(-1)))
        return out
    import jax
    import jax.numpy as jnp

    values = [v.value for v in trainer.trainable_variables]
    non_trainable = [v.value for v in trainer.non_trainable_variables]
    seen = []
    with representation_hook(layer, lambda z: seen.append(z) or z):
        trainer.stateless_call(values, non_trainable, x, training=True)
    shift0 = jnp.zeros(seen[-1].shape, seen[-1].dtype)

    def loss_of(vals, shift, t):
        with representation_hook(layer, lambda z: z + shift):
            pred, _ = trainer.stateless_call(vals, non_trainable, x, training=True)
        return trainer.task_losses(y, pred, w)[t]

    out = []
    for t in range(n):
        gv, gs = jax.grad(loss_of, argnums=(0, 1))(values, shift0, t)
        out.append(([np.asarray(g, "float64") for g in gv], np.asarray(gs, "float64").reshape(-1)))
    return out


def _one_step(trainer, x, y, w):
    """(new trainable weights, logged task weights) after one train_step on (x, y, w)."""
    import keras
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        trainer.train_step((x, y, w))
        weights = [np.asarray(v.numpy(), "float64") for v in trainer.trainable_variables]
        return weights, np.asarray(trainer.task_weights.numpy())
    import jax

    state = ([v.value for v in trainer.trainable_variables], [v.value for v in trainer.non_trainable_variables],
             [v.value for v in trainer.optimizer.variables], [v.value for v in trainer.metrics_variables])
    _, new = jax.jit(trainer.train_step)(state, (x, y, w))
    index = [i for i, v in enumerate(trainer.non_trainable_variables) if v is trainer.task_weights][0]
    return [np.asarray(v, "float64") for v in new[0]], np.asarray(new[1][index])


def _expected_update(fusion, params, trainer, ref, shared):
    """The update the NumPy rule gives, per trainable variable."""
    import numpy as np

    from composer import gradient_math as gm

    n = len(ref)
    per_var = [np.stack([ref[t][0][i] for t in range(n)]) for i in range(len(ref[0][0]))]  # (T, *shape)
    flat = np.concatenate([per_var[i].reshape(n, -1) for i in shared], axis=1)
    if fusion in ("mgda", "nash_mtl", "aligned_mtl"):
        if fusion == "mgda":
            a = gm.mgda_weights(np.stack([r[1] for r in ref]))
        elif fusion == "nash_mtl":
            a = gm.nash_weights(flat)
        else:
            a = gm.aligned_weights(flat)
        update = [np.tensordot(a, g, axes=1) for g in per_var]
        if fusion == "nash_mtl":
            norm = np.sqrt(sum(np.sum(update[i] ** 2) for i in shared))
            for i in shared:
                update[i] = update[i] * min(1.0, params["max_norm"] / (norm + 1e-6))
        return update, a
    update = [g.sum(axis=0) for g in per_var]
    if fusion == "metabalance":
        main = trainer.tasks.index(params["main"])
        aux = [t for t in range(n) if t != main]
        for i in shared:
            combined, *_ = gm.metabalance(per_var[i][main], per_var[i][aux], 0.0, np.zeros(len(aux)),
                                          relax=params["relax"])
            update[i] = combined
        return update, None
    if fusion == "pcgrad":
        combined = gm.pcgrad(flat, gm.pcgrad_orders(n, params["seed"])[0])
    else:
        combined = gm.cagrad(flat, params["c"], 1)
    sizes = np.cumsum([0] + [per_var[i][0].size for i in shared])
    for k, i in enumerate(shared):
        update[i] = combined[sizes[k]:sizes[k + 1]].reshape(per_var[i].shape[1:])
    return update, None


def check(fusion: str, tasks: int, tmp: str) -> dict:
    import keras
    import numpy as np

    from composer import training
    from composer.training.loop import _shared_layers
    from composer.training.plan_trainer import PlanTrainer

    path = Path(tmp) / f"{fusion}_{tasks}.yaml"
    path.write_text(blueprint_text(STRATEGIES[fusion], tasks))
    exp = training.prepare(str(path), data="synthetic:rows=400")
    keras.utils.set_random_seed(0)
    trainer = PlanTrainer(exp.model, exp.plan, shared_layers=_shared_layers(exp))
    trainer.compile(optimizer=keras.optimizers.SGD(LR))
    x, y, w = exp.arrays("train")
    assert 0 < w["like"].sum() < len(w["like"])  # the mask leaves rows out
    trainer._symbolic_build(data_batch=(x, y, w))  # variables and optimizer slots, as fit builds them
    before = [np.asarray(keras.ops.convert_to_numpy(v), "float64") for v in trainer.trainable_variables]
    start = [keras.ops.convert_to_numpy(v) for v in trainer.trainable_variables]
    shared_ids = {id(v) for layer in trainer.shared_layers for v in layer.trainable_variables}
    shared = [i for i, v in enumerate(trainer.trainable_variables) if id(v) in shared_ids]
    ref = _reference_grads(trainer, x, y, w)
    update, weights = _expected_update(fusion, exp.plan.params, trainer, ref, shared)
    after, logged = _one_step(trainer, x, y, w)
    scale = max(np.abs(u).max() for u in update) * LR
    deviation = max(np.abs(a - (b - LR * u)).max() for a, b, u in zip(after, before, update)) / scale
    # the same step with the labels of masked-out rows flipped: nothing may change
    for v, s in zip(trainer.trainable_variables, start):
        v.assign(s)
    for v in trainer.non_trainable_variables:
        if v is trainer.step_counter or v is getattr(trainer, "norm_averages", None):
            v.assign(np.zeros(v.shape, v.dtype))
    flipped = {**y, "like": np.where(w["like"][:, None] > 0, y["like"], 1 - y["like"])}
    again, _ = _one_step(trainer, x, flipped, w)
    masked = max(np.abs(a - b).max() for a, b in zip(again, after)) / scale
    plain = [sum(r[0][i] for r in ref) for i in range(len(update))]
    moved = max(np.abs(update[i] - plain[i]).max() for i in shared) * LR / scale  # the rule did something
    flat = np.concatenate([np.stack([r[0][i] for r in ref]).reshape(len(ref), -1) for i in shared], axis=1)
    conflict = bool(np.min(flat @ flat.T) < 0)  # some pair of task gradients conflicts
    return {"deviation": float(deviation), "masked": float(masked), "moved": float(moved), "conflict": conflict,
            "weights": None if weights is None else [float(v) for v in weights],
            "logged": [float(v) for v in logged], "shared": len(shared)}


def _run_script(backend: str, tmp_path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_step_applies_the_numpy_rule_and_ignores_masked_rows(backend, tmp_path):
    pytest.importorskip(backend if backend == "jax" else "tensorflow")
    results = _run_script(backend, tmp_path)
    assert sorted(results) == sorted(f"{f}/{t}" for f in STRATEGIES for t in TASKS)
    for fusion, r in results.items():
        assert r["shared"] > 0, fusion
        assert r["deviation"] < TOLERANCE, (fusion, r)
        assert r["masked"] < 1e-6, (fusion, r)
        if fusion.startswith("pcgrad"):  # PCGrad is the plain sum exactly when nothing conflicts
            assert (r["moved"] > 1e-9) == r["conflict"], (fusion, r)
        else:
            assert r["moved"] > 1e-3, (fusion, r)  # the rule is not the plain sum
        if r["weights"] is not None:  # the logged task weights are the rule's
            assert max(abs(a - b) for a, b in zip(r["weights"], r["logged"])) < 1e-3 * max(r["weights"]), (fusion, r)
    assert any(r["conflict"] for f, r in results.items() if f.startswith("pcgrad"))  # a projection was tested


# -- composer train, as a user runs it ------------------------------------------------------------
def train_all(tmp: str) -> None:
    """``composer train`` (its in-process entry point: one Keras import for the six runs) on each
    strategy's blueprint, 2 epochs; the run folders go under ``tmp``."""
    from composer.cli import main

    for fusion in STRATEGIES:
        path = Path(tmp) / f"{fusion}.yaml"
        path.write_text(blueprint_text(STRATEGIES[fusion]))
        code = main(["train", str(path), "--data", "synthetic", "--rows", "1500", "--epochs", "2",
                     "--batch-size", "256", "--verbose", "0", "--out", str(Path(tmp) / fusion)])
        assert code == 0, fusion


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_composer_train_logs_weights_and_cosines(backend, tmp_path):
    import numpy as np
    import pandas as pd

    pytest.importorskip(backend if backend == "jax" else "tensorflow")
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, "train", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for fusion in STRATEGIES:
        history = pd.read_csv(tmp_path / fusion / "history.csv")
        assert len(history) == 2, fusion
        for key in ("weight_click", "weight_like", "cos_click_like", "loss_click", "loss_like"):
            assert key in history and np.isfinite(history[key]).all(), (fusion, key, list(history))
        assert (history["cos_click_like"].abs() <= 1 + 1e-6).all(), fusion
        if fusion != "pcgrad":  # PCGrad's weights stay 1; every other rule moves them
            assert (history[["weight_click", "weight_like"]] != 1.0).any().any(), fusion


@pytest.mark.parametrize("loss, message", [
    ("{fusion: metabalance, main: clik}", "loss.main: 'clik' is not a task with a loss; did you mean 'click'?"),
    ("{fusion: mgda, shared_layer: tower.click}", "loss.shared_layer: 'tower.click' is not shared: like does not "
                                                  "depend on it"),
    ("{fusion: cagrad, c: -1}", "loss.c: must be greater than or equal to 0"),
    ("{fusion: pcgrad, sed: 1}", "loss: unknown key 'sed'; did you mean 'seed'?"),
])
def test_blueprint_mistakes_are_one_located_line(loss, message, tmp_path):
    from cli_helpers import composer, one_error_line

    path = tmp_path / "bad.yaml"
    path.write_text(blueprint_text(loss))
    line = one_error_line(composer("validate", path))
    assert line.startswith(f"{path}:") and message in line, line


def test_torch_is_refused_in_one_sentence(monkeypatch):
    import keras

    from composer.blueprint.errors import BlueprintError
    from composer.training.plan_trainer import GRADIENT_STRATEGIES, check_backend

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    for fusion, name in [("pcgrad", "PCGrad"), ("cagrad", "CAGrad"), ("mgda", "MGDA-UB"),
                         ("nash_mtl", "Nash-MTL"), ("aligned_mtl", "Aligned-MTL"), ("metabalance", "MetaBalance")]:
        assert fusion in GRADIENT_STRATEGIES
        with pytest.raises(BlueprintError) as err:
            check_backend(fusion)
        assert str(err.value).count("\n") == 0
        assert f"{name} fusion needs KERAS_BACKEND=tensorflow or jax (now 'torch')" in str(err.value)
    check_backend("fixed")  # loss-only fusion runs everywhere


if __name__ == "__main__":
    from backend_smoke import use_fast_compiles  # this folder is sys.path[0] for a script

    use_fast_compiles()
    if sys.argv[1] == "train":
        train_all(sys.argv[2])
        sys.exit(0)
    print(json.dumps({f"{fusion}/{tasks}": check(fusion, tasks, sys.argv[1])
                      for fusion in STRATEGIES for tasks in TASKS}))
