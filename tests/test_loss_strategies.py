"""Loss-level strategies (DWA, RLW, FAMO) and ESCM2's counterfactual risks
(composer/training/loss_strategies.py): each rule against a NumPy reference, the propensity's
stop-gradient by a gradient check, masks and sample weights, located blueprint errors, and
training on TensorFlow and JAX (each in its own subprocess: this file run as a script trains and
prints JSON) with the weights in the run's history and a resumed run equal to an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
FAMO_LINE = "loss: {fusion: famo, learning_rate: 0.025, weight_decay: 0.001}"
STRATEGY_LINES = {"dwa": "loss: {fusion: dwa, temperature: 2.0}", "rlw": "loss: {fusion: rlw}", "famo": FAMO_LINE}
EPOCHS = 4


# -- NumPy references ---------------------------------------------------------------------------
def softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def dwa_reference(epoch_losses, temperature):
    """Liu et al.: weights 1 in epochs 1 and 2; then K softmax(r / T), r = L(e-1) / L(e-2)."""
    k = len(epoch_losses[0])
    out = []
    for e in range(len(epoch_losses) + 1):
        if e < 2:
            out.append(np.ones(k))
        else:
            r = np.asarray(epoch_losses[e - 1]) / np.asarray(epoch_losses[e - 2])
            out.append(k * softmax(r / temperature))
    return out


def famo_reference(loss_steps, lr, decay, eps=1e-8):
    """The official FAMO code (Adam on xi, weight decay in the gradient), the decrease measured
    from one step's losses to the next step's; returns xi and the gradient weights per step."""
    k = len(loss_steps[0])
    xi, m, v, t = np.zeros(k), np.zeros(k), np.zeros(k), 0
    previous, weights = None, []
    for losses in map(np.asarray, loss_steps):
        if previous is not None:
            delta = np.log(previous + eps) - np.log(losses + eps)
            z = softmax(xi)
            g = (np.diag(z) - np.outer(z, z)).T @ delta + decay * xi
            t += 1
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            xi = xi - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        z = softmax(xi)
        d = losses + eps
        weights.append(z / d / np.sum(z / d))
        previous = losses
    return xi, weights


def bce(label, prob, eps=1e-7):
    prob = np.clip(prob, eps, 1 - eps)
    return -(label * np.log(prob) + (1 - label) * np.log(1 - prob))


def risk_reference(kind, label, prob, observed, rows, propensity, clip, imputed=None):
    e = bce(label, prob)
    p = np.maximum(propensity, clip)
    n = max(rows.sum(), 1.0)
    if kind == "ips":
        return np.sum(observed * e / p) / n
    return (np.sum(rows * imputed + observed * (e - imputed) / p) + np.sum(observed * (e - imputed) ** 2 / p)) / n


# -- a small trainer ----------------------------------------------------------------------------
def _trainer(fusion="fixed", params=None, risks=None, tasks=("a", "b")):
    import keras

    from composer.losses import LossPlan, LossTerm
    from composer.training.plan_trainer import PlanTrainer

    keras.utils.set_random_seed(3)
    x = keras.Input((3,), name="x")
    names = list(tasks) + [r["imputation"] for r in (risks or {}).values() if r.get("imputation")]
    net = keras.Model(x, {t: keras.layers.Dense(1, activation="sigmoid", name=t)(x) for t in names})
    terms = [LossTerm(task=t, output=t, loss=(risks or {}).get(t, {}).get("type", "binary_crossentropy"),
                      label=t, where=None, weight=1.0, risk=(risks or {}).get(t)) for t in tasks]
    return PlanTrainer(net, LossPlan(fusion=fusion, terms=terms, params=params or {}))


def test_dwa_weights_from_a_fixed_loss_history():
    from composer.training.loss_strategies import dwa_weights

    history = [[0.7, 0.6, 0.9], [0.5, 0.55, 0.85], [0.45, 0.3, 0.8], [0.44, 0.2, 0.79]]
    for temperature in (2.0, 0.5):
        trainer = _trainer("dwa", {"temperature": temperature}, tasks=("a", "b", "c"))
        expected = dwa_reference(history, temperature)
        got = [np.asarray(trainer.task_weights)]
        for losses in history:
            assert trainer.end_epoch({f"loss_{t}": v for t, v in zip("abc", losses)})
            got.append(np.asarray(trainer.task_weights))
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-6)
        np.testing.assert_allclose(np.array(got).sum(axis=1), 3.0, rtol=1e-6)
    direct = dwa_weights(np.array([0.5, 1.0], "float32"), np.array([1.0, 1.0], "float32"), 2.0)
    np.testing.assert_allclose(np.asarray(direct), 2 * softmax(np.array([0.25, 0.5])), rtol=1e-6)


def test_rlw_weights_are_k_softmax_of_a_standard_normal_and_seeded():
    import keras

    from composer.training.loss_strategies import rlw_weights

    draws = np.array([np.asarray(rlw_weights(3, keras.random.SeedGenerator(s))) for s in range(2000)])
    np.testing.assert_allclose(draws.sum(axis=1), 3.0, rtol=1e-5)
    np.testing.assert_allclose(draws.mean(axis=0), 1.0, atol=0.05)  # E[K softmax(z)] = 1 by symmetry
    # log(w_i / w_j) = z_i - z_j ~ N(0, 2)
    gap = np.log(draws[:, 0] / draws[:, 1])
    assert abs(gap.mean()) < 0.1 and abs(gap.std() - np.sqrt(2)) < 0.1
    one, two = keras.random.SeedGenerator(7), keras.random.SeedGenerator(7)
    a = [np.asarray(rlw_weights(3, one)) for _ in range(3)]
    b = [np.asarray(rlw_weights(3, two)) for _ in range(3)]
    np.testing.assert_array_equal(a, b)  # same seed, same sequence
    assert not np.allclose(a[0], a[1])  # a new draw every step


def test_rlw_steps_draw_and_log_their_weights_and_validation_takes_ones():
    trainer = _trainer("rlw")
    losses = [np.float32(0.5), np.float32(0.25)]
    seen = []
    for _ in range(3):
        total = float(np.asarray(trainer.fuse(losses, training=True)))
        w = np.asarray(trainer.task_weights)
        np.testing.assert_allclose(total, w @ np.array([0.5, 0.25]), rtol=1e-6)
        seen.append(w)
    assert not np.allclose(seen[0], seen[1])
    np.testing.assert_allclose(float(np.asarray(trainer.fuse(losses, training=False))), 0.75, rtol=1e-6)
    assert any("rlw_seed" in v.path for v in trainer.non_trainable_variables)  # in every checkpoint


def test_famo_logit_update_on_fixed_losses():
    steps = [[0.9, 0.6], [0.8, 0.59], [0.6, 0.58], [0.55, 0.5], [0.5, 0.45], [0.52, 0.3]]
    for lr, decay in ((0.025, 1e-3), (0.5, 0.1)):
        trainer = _trainer("famo", {"learning_rate": lr, "weight_decay": decay})
        got = []
        for losses in steps:
            trainer.fuse([np.float32(v) for v in losses], training=True)
            got.append(np.asarray(trainer.task_weights))
        xi, expected = famo_reference(steps, lr, decay)
        # float32 against float64: Adam divides by sqrt(v), small in the first steps
        np.testing.assert_allclose(np.asarray(trainer.strategy.xi), xi, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-4)
        np.testing.assert_allclose(np.array(got).sum(axis=1), 1.0, rtol=1e-6)
    # the task that stopped improving (b, then a) gains weight; the first step is not an update
    assert np.asarray(trainer.strategy.t) == len(steps) - 1


def test_famo_gradients_are_its_logged_weights():
    """The objective's gradient on the task losses is z_t / (c L_t) (c held constant), the
    weights it logs; the softmax Jacobian of xi matches a finite difference."""
    from backend_grad import gradients

    from composer.training.loss_strategies import famo_logit_gradient, famo_objective

    xi = np.array([0.3, -0.2, 0.1], "float32")
    losses = np.array([0.7, 0.2, 0.4], "float32")
    (grad,) = gradients(lambda l: famo_objective(l, xi)[0], [losses])
    np.testing.assert_allclose(grad, np.asarray(famo_objective(losses, xi)[1]), rtol=1e-5)
    delta = np.array([0.05, -0.01, 0.02], "float32")
    numeric = np.array([(softmax(xi + h) @ delta - softmax(xi - h) @ delta) / 2e-3
                        for h in np.eye(3) * 1e-3])
    np.testing.assert_allclose(np.asarray(famo_logit_gradient(xi, delta)), numeric, rtol=1e-3, atol=1e-6)


def _risk_batch(seed=0, n=64):
    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.3).astype("float32")
    conversion = (click * (rng.random(n) < 0.4)).astype("float32")
    rows = (rng.random(n) < 0.9).astype("float32") * rng.choice([1.0, 2.0], n).astype("float32")  # a mask and weights
    observed = rows * click  # the cvr task's where: click, and the same sample weight
    return dict(label=conversion, prob=rng.uniform(0.02, 0.98, n).astype("float32"), observed=observed,
                rows=rows, propensity=rng.uniform(0.01, 0.9, n).astype("float32"),
                imputed=rng.uniform(0.05, 0.9, n).astype("float32"))


@pytest.mark.parametrize("kind", ["ips", "dr"])
def test_counterfactual_risks_on_fixed_predictions(kind):
    from composer.training.loss_strategies import counterfactual_risk

    b = _risk_batch()
    imputed = b["imputed"] if kind == "dr" else None
    got = counterfactual_risk(kind, b["label"], b["prob"], b["observed"], b["rows"], b["propensity"], 0.05, imputed)
    want = risk_reference(kind, b["label"], b["prob"], b["observed"], b["rows"], b["propensity"], 0.05, imputed)
    np.testing.assert_allclose(float(np.asarray(got)), want, rtol=1e-5)
    # rows outside the exposure space (weight 0) do not count, whatever their predictions
    moved = dict(b, prob=np.where(b["rows"] > 0, b["prob"], 0.5).astype("float32"),
                 propensity=np.where(b["rows"] > 0, b["propensity"], 0.9).astype("float32"))
    again = counterfactual_risk(kind, moved["label"], moved["prob"], moved["observed"], moved["rows"],
                                moved["propensity"], 0.05, imputed)
    np.testing.assert_allclose(float(np.asarray(again)), float(np.asarray(got)), rtol=1e-6)


def test_risk_gradients_leave_the_propensity_alone():
    """No gradient reaches pCTR; DR's risk trains the CVR probability exactly as IPS does (e^
    held constant there) and its imputation loss trains e^ only (e held constant there)."""
    from backend_grad import gradients

    from composer.training.loss_strategies import counterfactual_risk

    b = _risk_batch(1)
    args = lambda kind: (lambda prob, p, imp: counterfactual_risk(  # noqa: E731
        kind, b["label"], prob, b["observed"], b["rows"], p, 0.05, imp if kind == "dr" else None))
    ips = gradients(args("ips"), [b["prob"], b["propensity"], b["imputed"]])
    dr = gradients(args("dr"), [b["prob"], b["propensity"], b["imputed"]])
    for grads in (ips, dr):
        np.testing.assert_array_equal(grads[1], 0.0)
    assert np.abs(ips[0]).max() > 0
    np.testing.assert_allclose(dr[0], ips[0], rtol=1e-5, atol=1e-8)
    e = bce(b["label"], b["prob"])
    p = np.maximum(b["propensity"], 0.05)
    # d/de^ of the risk term is held at 0: only d of the imputation loss remains
    want = -2 * b["observed"] * (e - b["imputed"]) / p / b["rows"].sum()
    np.testing.assert_allclose(dr[2], want, rtol=1e-4, atol=1e-7)


def test_risk_terms_read_masks_and_sample_weights_in_the_trainer():
    """The plan's term: the cvr task's weight (its where: click, and a sample weight) as o, the
    propensity task's weight as the rows averaged over."""
    risks = {"cvr": {"type": "dr", "propensity": "ctr", "clip": 0.05, "imputation": "cvr_error"}}
    trainer = _trainer(risks=risks, tasks=("ctr", "cvr"))
    assert trainer.outputs_read == ["ctr", "cvr", "cvr_error"]
    b = _risk_batch(2)
    col = lambda v: v.reshape(-1, 1)  # noqa: E731
    y = {"ctr": col((b["observed"] > 0).astype("float32")), "cvr": col(b["label"])}
    y_pred = {"ctr": col(b["propensity"]), "cvr": col(b["prob"]), "cvr_error": col(b["imputed"])}
    sw = {"ctr": b["rows"], "cvr": b["observed"]}
    losses = trainer.task_losses(y, y_pred, sw)
    want = risk_reference("dr", b["label"], b["prob"], b["observed"], b["rows"], b["propensity"], 0.05, b["imputed"])
    np.testing.assert_allclose(float(np.asarray(losses[1])), want, rtol=1e-5)
    ctr = np.sum(b["rows"] * bce(y["ctr"][:, 0], b["propensity"])) / b["rows"].sum()
    np.testing.assert_allclose(float(np.asarray(losses[0])), ctr, rtol=1e-5)


# -- the blueprint language -----------------------------------------------------------------------
ESCM2 = (ROOT / "blueprints" / "escm2_dr.yaml").read_text()


@pytest.mark.parametrize("old, new, message", [
    ("propensity: ctr,", "propensity: ctrr,", "tasks[1].risk.propensity: 'ctrr' is not a task; did you mean 'ctr'?"),
    ("propensity: ctr,", "propensity: cvr,", "tasks[1].risk.propensity: task 'cvr' cannot be its own propensity"),
    ("imputation: cvr_error}", "imputation: cvr_eror}", "tasks[1].risk.imputation: no output 'cvr_eror'"),
    ("imputation: cvr_error}", "imputation: ctcvr}", "tasks[1].risk.imputation: 'ctcvr' is a task"),
    ("type: dr, propensity: ctr, clip: 0.05, imputation: cvr_error}", "type: dr, propensity: ctr}",
     "tasks[1].risk: a dr risk needs `imputation`"),
    ("    where: click\n", "", "tasks[1].risk: task 'cvr' has a risk but no `where`"),
    ("    where: click\n", "    where: click\n    loss: false\n", "tasks[1].loss: task 'cvr' has a risk, which is its loss"),
    ("type: dr,", "type: snips,", "tasks[1].risk.type"),
    ("clip: 0.05", "clip: 0", "tasks[1].risk.clip"),
])
def test_risk_mistakes_are_located(old, new, message):
    from composer.blueprint import load_blueprint_text
    from composer.blueprint.errors import BlueprintError

    assert old in ESCM2
    with pytest.raises(BlueprintError) as info:
        load_blueprint_text(ESCM2.replace(old, new, 1), file="escm2_dr.yaml")
    text = str(info.value)
    assert message in text and "escm2_dr.yaml:" in text, text


def test_an_ips_risk_takes_no_imputation_and_outputs_name_tasks_or_imputations():
    from composer.blueprint import load_blueprint_text
    from composer.blueprint.errors import BlueprintError

    with pytest.raises(BlueprintError, match="an ips risk takes no imputation"):
        load_blueprint_text(ESCM2.replace("type: dr,", "type: ips,"), file="x.yaml")
    with pytest.raises(BlueprintError, match="'cvr_error' is not a task"):
        load_blueprint_text(ESCM2.replace("imputation: cvr_error}", "imputation: null}").replace(
            "type: dr,", "type: ips,"), file="x.yaml")


def test_plan_prints_strategies_and_risks(capsys):
    from composer.cli import main

    assert main(["plan", str(ROOT / "blueprints" / "escm2_dr.yaml")]) == 0
    out = capsys.readouterr().out
    assert "DR risk (propensity ctr, clip 0.05, imputation cvr_error)" in out
    assert main(["plan", str(ROOT / "blueprints" / "mmoe_famo.yaml")]) == 0
    assert "loss fusion: famo {'learning_rate': 0.025, 'weight_decay': 0.001}" in capsys.readouterr().out


# -- training on TensorFlow and JAX -----------------------------------------------------------------
def _blueprint(name: str, tmp: str) -> str:
    if name in STRATEGY_LINES:
        text = (ROOT / "blueprints" / "mmoe_famo.yaml").read_text()
        assert FAMO_LINE in text
        text = text.replace(FAMO_LINE, STRATEGY_LINES[name])
    else:
        text = (ROOT / "blueprints" / f"{name}.yaml").read_text()
    path = Path(tmp) / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def _history(path, data, epochs, **kw):
    from composer import training

    exp = training.prepare(path, data=data, training={"epochs": EPOCHS, "patience": 1000, "batch_size": 256})
    hist = training.fit(exp, verbose=0, epochs=epochs, **kw).history
    return {k: [float(x) for x in v] for k, v in hist.items() if not k.startswith(("time_", "valid_share"))}


def run(tmp: str) -> dict:
    """Every strategy and both risks a few epochs; DWA, RLW and FAMO also interrupted after epoch
    2 and resumed from the checkpoint."""
    import keras

    from composer.training import checkpoint

    out = {"backend": keras.backend.backend()}
    for name in ("dwa", "rlw", "famo", "escm2_ips", "escm2_dr"):
        data = "synthetic-chain:rows=2000" if name.startswith("escm2") else "synthetic:rows=2000"
        path = _blueprint(name, tmp)
        out[name] = _history(path, data, EPOCHS)
        if name in STRATEGY_LINES:
            folder = Path(tmp) / f"{name}_run"
            _history(path, data, 2, checkpoint_dir=folder)
            out[f"{name}_resumed"] = _history(path, data, EPOCHS, checkpoint_dir=folder,
                                              resume=checkpoint.read(folder / checkpoint.FILE))
    return out


def _train(backend: str, tmp: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, tmp], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == backend
    return out


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_strategies_train_log_their_weights_and_resume(backend, tmp_path):
    out = _train(backend, str(tmp_path))
    for name, tasks in (("dwa", "click like"), ("rlw", "click like"), ("famo", "click like"),
                        ("escm2_ips", "ctr cvr ctcvr"), ("escm2_dr", "ctr cvr ctcvr")):
        hist = out[name]
        weights = np.array([hist[f"weight_{t}"] for t in tasks.split()])  # (tasks, epochs)
        losses = np.array([hist[f"loss_{t}"] for t in tasks.split()])
        assert weights.shape == losses.shape == (len(tasks.split()), EPOCHS), name
        assert np.all(np.isfinite(losses)) and np.all(np.isfinite(hist["val_loss"])), name
        if name == "dwa":  # 1 in the first two epochs, then from the logged epoch means
            np.testing.assert_array_equal(weights[:, :2], 1.0)
            want = dwa_reference(losses.T.tolist(), 2.0)
            np.testing.assert_allclose(weights.T, np.array(want[:EPOCHS]), rtol=1e-5)
        elif name == "rlw":  # an epoch's mean of draws summing to K
            np.testing.assert_allclose(weights.sum(axis=0), 2.0, rtol=1e-5)
            assert np.abs(weights - 1.0).max() > 1e-3
        elif name == "famo":
            np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=1e-5)
            assert np.abs(weights - 0.5).max() > 1e-3
        else:  # fixed weights; the risk is the cvr task's loss
            np.testing.assert_allclose(weights[:, 0], [1.0, 0.01, 1.0], rtol=1e-6)
            assert np.all(losses[1] > 0)
    for name in STRATEGY_LINES:  # a resumed run ends where the uninterrupted one does
        whole, resumed = out[name], out[f"{name}_resumed"]
        assert set(whole) == set(resumed)
        for key in whole:
            np.testing.assert_allclose(resumed[key], whole[key], rtol=1e-6, atol=1e-7, err_msg=f"{name}: {key}")
    # the DR imputation output does not change the metrics' tasks
    assert "val_auc_cvr_error" not in out["escm2_dr"]


if __name__ == "__main__":
    from backend_smoke import use_fast_compiles  # this folder is sys.path[0] for a script

    use_fast_compiles()
    print(json.dumps(run(sys.argv[1])))
