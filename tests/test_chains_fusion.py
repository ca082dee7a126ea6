"""Probability chains (ESMM, ESM2) and the loss-fusion strategies, end to end on small data.

Gradients come from tests/backend_grad.py, so every test runs on every Keras backend except the
gradient fusions' (GradNorm, PE-LTR), which need a backend in composer.training.plan_trainer.GRADIENT_BACKENDS.
"""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from backend_grad import gradients  # noqa: E402

from composer import training  # noqa: E402
from composer.cli import main  # noqa: E402
from composer.training.plan_trainer import GRADIENT_BACKENDS  # noqa: E402
from composer.layers.chains import ProbabilityChain  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ESMM = (ROOT / "blueprints" / "esmm.yaml").read_text()
ESM2 = ROOT / "blueprints" / "esm2.yaml"


def test_chain_layer_matches_the_esm2_formula():
    rng = np.random.default_rng(0)
    y = [rng.uniform(0.01, 0.99, size=(7, 1)).astype("float32") for _ in range(4)]
    layer = ProbabilityChain("y1 * (y2 * y3 + (1 - y2) * y4)", ["y1", "y2", "y3", "y4"], [False] * 4)
    got = np.asarray(layer(y))
    y1, y2, y3, y4 = y
    np.testing.assert_allclose(got, y1 * (y2 * y3 + (1 - y2) * y4), rtol=1e-6)


def test_esm2_chain_on_fixed_probabilities():
    """y1=.5, y2=.4, y3=.5, y4=.1: CTAVR = .2, CVR = .4*.5 + .6*.1 = .26, CTCVR = .13."""
    y = [np.array([[v]], "float32") for v in (0.5, 0.4, 0.5, 0.1)]
    names = ["y1", "y2", "y3", "y4"]
    ctcvr = ProbabilityChain("y1 * (y2 * y3 + (1 - y2) * y4)", names, [False] * 4)(y)
    ctavr = ProbabilityChain("y1 * y2", names[:2], [False] * 2)(y[:2])
    np.testing.assert_allclose(np.asarray(ctcvr), [[0.13]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ctavr), [[0.2]], rtol=1e-6)


def _esm2_model():
    from composer.blueprint import load_blueprint
    from composer.compiler import compile_graph
    from composer.graph import build_graph

    bp, doc = load_blueprint(str(ESM2))
    vocab = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13}
    return compile_graph(build_graph(bp, doc, vocab_sizes=vocab))


def test_esm2_blueprint_outputs_equal_the_formula_over_its_towers():
    """The compiled esm2.yaml on fixed inputs: every chain output is the paper's formula of the
    tower probabilities y1 = ctr, y2 = avr, y3 = cvr_action, y4 = cvr_other it also outputs."""
    rng = np.random.default_rng(1)
    model = _esm2_model()
    for layer in model.layers:  # spread the towers' outputs so the check is not near 0.5 only
        for v in layer.trainable_variables:
            v.assign(rng.normal(scale=0.3, size=v.shape).astype("float32"))
    batch = {"ids_d8": rng.integers(0, 13, size=(64, 4)).astype("int32"),
             "numeric": rng.normal(size=(64, 2)).astype("float32")}
    out = {k: np.asarray(v, "float64") for k, v in model.predict(batch, verbose=0).items()}
    y1, y2, y3, y4 = (out[k] for k in ("ctr", "avr", "cvr_action", "cvr_other"))
    assert y1.std() > 0.05 and y3.std() > 0.05
    np.testing.assert_allclose(out["ctavr"], y1 * y2, rtol=1e-5)
    np.testing.assert_allclose(out["cvr"], y2 * y3 + (1 - y2) * y4, rtol=1e-5)
    np.testing.assert_allclose(out["ctcvr"], y1 * (y2 * y3 + (1 - y2) * y4), rtol=1e-5)
    np.testing.assert_allclose(out["ctcvr"], out["ctr"] * out["cvr"], rtol=1e-5)
    assert np.all(out["ctcvr"] <= out["ctr"]) and np.all(out["ctavr"] <= out["ctr"])


def test_esm2_labels_masks_and_entire_space_gradients(tmp_path):
    from composer.training.plan_trainer import PlanTrainer

    exp = training.prepare(str(ESM2), data="synthetic-esm2:rows=3000")
    rows = exp.dataset.part("train").frame
    labels, masks = exp.labels(rows)
    click, action = rows["click"].to_numpy() == 1, rows["action"].to_numpy() == 1
    # action implies a click, so "click & action" is the action column itself
    np.testing.assert_array_equal(labels["ctavr"], rows["action"].to_numpy())
    np.testing.assert_array_equal(masks["avr"], click)
    np.testing.assert_array_equal(masks["cvr_action"], action)
    np.testing.assert_array_equal(masks["cvr_other"], click & ~action)
    assert masks["ctr"].all() and masks["ctcvr"].all()
    assert [t.task for t in exp.plan.trained] == ["ctr", "ctavr", "ctcvr"]
    # y2, y3, y4 have no loss of their own, yet unclicked rows reach them through the products
    x, y, w = exp.arrays("train")
    pick = np.where(~click)[0][:256]
    trainer = PlanTrainer(exp.model, exp.plan)
    towers = [exp.model.get_layer(n) for n in ("y2", "y3", "y4")]

    def loss():
        pred = trainer({k: v[pick] for k, v in x.items()}, training=False)
        return trainer.fuse(trainer.task_losses({k: v[pick] for k, v in y.items()}, pred,
                                                {k: v[pick] for k, v in w.items()}))

    grads = iter(gradients(loss, [], [v for t in towers for v in t.trainable_variables]))
    for tower in towers:
        gs = [next(grads) for _ in tower.trainable_variables]
        assert max(float(np.abs(g).max()) for g in gs) > 0, tower.name


def test_chain_layer_applies_sigmoid_to_logits_not_products_of_logits():
    logits = [np.array([[2.0], [-1.0]], "float32"), np.array([[0.5], [3.0]], "float32")]
    got = np.asarray(ProbabilityChain("a * b", ["a", "b"], [True, True])(logits))
    sig = [1 / (1 + np.exp(-v)) for v in logits]
    np.testing.assert_allclose(got, sig[0] * sig[1], rtol=1e-6)
    assert np.all((got > 0) & (got < 1))


def test_chain_layer_round_trips_config():
    layer = ProbabilityChain("1 - a * b", ["a", "b"], [True, False])
    again = ProbabilityChain.from_config(layer.get_config())
    x = [np.array([[0.3]], "float32"), np.array([[0.6]], "float32")]
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(again(x)))


def _experiment(tmp_path, text, rows=3000):
    path = tmp_path / "bp.yaml"
    path.write_text(text)
    return training.prepare(str(path), data=f"synthetic-chain:rows={rows}")


def _cvr_tower_gradient(exp, clicked: bool):
    """Gradient of the fused loss on the CVR tower's kernels from clicked or unclicked rows."""
    from composer.training.plan_trainer import PlanTrainer

    x, y, w = exp.arrays("train")
    rows = np.where((y["ctr"][:, 0] == 1) == clicked)[0][:256]
    pick = lambda d: {k: v[rows] for k, v in d.items()}  # noqa: E731
    trainer = PlanTrainer(exp.model, exp.plan)
    layer = exp.model.get_layer("cvr_tower")

    def loss():
        pred = trainer(pick(x), training=False)
        return trainer.fuse(trainer.task_losses(pick(y), pred, pick(w)))

    return max(float(np.abs(g).max()) for g in gradients(loss, [], layer.trainable_variables))


def test_esmm_cvr_learns_from_unclicked_rows_but_the_masked_baseline_does_not(tmp_path):
    esmm = _experiment(tmp_path, ESMM)
    assert _cvr_tower_gradient(esmm, clicked=False) > 0  # entire space: CTCVR reaches CVR
    naive = ESMM.replace("{name: cvr, label: conversion, where: click, loss: false}",
                         "{name: cvr, label: conversion, where: click}")
    naive = naive.replace("{ctr: 1.0, ctcvr: 1.0}", "{ctr: 1.0, cvr: 1.0, ctcvr: 0.0}")
    base = _experiment(tmp_path, naive)
    assert _cvr_tower_gradient(base, clicked=False) == 0.0  # CVR loss only on clicked rows
    assert _cvr_tower_gradient(base, clicked=True) > 0


def test_ctcvr_label_is_derived_and_cvr_is_evaluated_on_clicks(tmp_path):
    exp = _experiment(tmp_path, ESMM)
    rows = exp.dataset.part("test").frame
    labels, masks = exp.labels(rows)
    np.testing.assert_array_equal(labels["ctcvr"], (rows["click"] & rows["conversion"]).to_numpy())
    np.testing.assert_array_equal(masks["cvr"], rows["click"].to_numpy() == 1)
    assert masks["ctcvr"].all()


def test_a_batch_without_valid_labels_gives_zero_loss_not_nan(tmp_path):
    from composer.training.plan_trainer import PlanTrainer

    exp = _experiment(tmp_path, ESMM)
    x, y, w = exp.arrays("train")
    w = {k: np.zeros_like(v) for k, v in w.items()}
    trainer = PlanTrainer(exp.model, exp.plan)
    losses = trainer.task_losses(y, trainer(x, training=False), w)
    assert all(float(keras.ops.convert_to_numpy(v)) == 0.0 for v in losses)


@pytest.mark.parametrize("bad,pattern", [
    ('expression: "ctr * cvr"', ('expression: "ctr * cvrr"', r"esmm\.yaml:\d+:\d+: .*unknown .*'cvrr'.*did you mean 'cvr'")),
    ('expression: "ctr * cvr"', ('expression: "ctr * (cvr"', r"esmm\.yaml:\d+:\d+: .*unmatched '\('")),
    ('expression: "ctr * cvr"', ('expression: "ctr / cvr"', r"esmm\.yaml:\d+:\d+: .*division")),
    ('label: "click & conversion"', ('label: "click && conversion"', r"esmm\.yaml:\d+:\d+: ")),
])
def test_expression_errors_are_located(tmp_path, capsys, bad, pattern):
    import re

    old, (new, regex) = bad, pattern
    path = tmp_path / "esmm.yaml"
    path.write_text(ESMM.replace(old, new))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert re.search(regex, err), err
    line_no = next(i for i, line in enumerate(ESMM.replace(old, new).splitlines(), 1) if new in line)
    assert f"esmm.yaml:{line_no}:" in err


def test_expression_error_column_points_inside_the_expression(tmp_path, capsys):
    text = ESMM.replace('expression: "ctr * cvr"', 'expression: "ctr * cvrr"')
    path = tmp_path / "esmm.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    line_no, line = next((i, l) for i, l in enumerate(text.splitlines(), 1) if "cvrr" in l)
    assert err.startswith(f"{path}:{line_no}:{line.index('cvrr') + 1}:"), err


def _fit(tmp_path, blueprint, rows=6000, epochs=2):
    exp = training.prepare(str(ROOT / "blueprints" / blueprint), data=f"synthetic:rows={rows}",
                           training={"epochs": epochs, "patience": 10})
    history = training.fit(exp, verbose=0)
    return exp, history.history


def test_uncertainty_log_variances_are_trainable_and_change(tmp_path):
    exp, hist = _fit(tmp_path, "mmoe_uncertainty.yaml")
    s = keras.ops.convert_to_numpy(exp.trainer.log_variance)
    assert exp.trainer.log_variance.trainable
    assert np.all(np.abs(s) > 1e-4)  # started at 0
    assert hist["weight_click"][-1] != pytest.approx(1.0)


needs_gradient_backend = pytest.mark.skipif(
    keras.backend.backend() not in GRADIENT_BACKENDS,
    reason=f"GradNorm and PE-LTR train only under KERAS_BACKEND in {GRADIENT_BACKENDS} "
           f"(tests/test_backends.py checks the refusal elsewhere)")


@needs_gradient_backend
def test_gradnorm_weights_sum_to_task_count(tmp_path):
    exp, hist = _fit(tmp_path, "mmoe_gradnorm.yaml")
    w = keras.ops.convert_to_numpy(exp.trainer.task_weights)
    assert w.sum() == pytest.approx(2.0, abs=1e-5)
    assert not np.allclose(w, 1.0)


@needs_gradient_backend
def test_pareto_weights_respect_bounds_and_sum_to_one(tmp_path):
    exp, hist = _fit(tmp_path, "mmoe_pareto.yaml")
    w = keras.ops.convert_to_numpy(exp.trainer.task_weights)
    assert w.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(w >= 0.2 - 1e-6)
