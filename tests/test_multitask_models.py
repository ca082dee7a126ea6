"""Gradients of the compiled issue-19 blueprints (composer/blocks/multitask.py), on whichever
Keras backend runs the tests (tests/backend_grad.py):

- STEM (Su et al., AAAI 2024): task t's loss reaches the shared embeddings and task t's own, and
  exactly nothing of another task's embeddings or experts (All Forward Task-specific Backward);
- AITM (Xi et al., KDD 2021): the calibrator alpha * mean(max(p_t - p_{t-1}, 0)) is the network's
  own loss, with the analytic gradient on both tasks' logits;
- DSelect-k and DBMTL: each task's loss reaches what it should (a relation edge carries like's
  gradient into click's relation MLP, never the reverse).
"""
from pathlib import Path

import keras
import numpy as np
import pytest
from backend_grad import gradients

from composer.compiler import BuildContext, compile_blueprint

VOCAB = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13}
BLUEPRINTS = Path(__file__).resolve().parents[1] / "blueprints"
BATCH = 32


def _batch(model, graph, seed=0):
    rng = np.random.default_rng(seed)
    layout = graph.layout
    data = {layout.input_name(dim): np.stack([rng.integers(0, layout.vocab_sizes[n], size=BATCH) for n in names],
                                             axis=1).astype("int32")
            for dim, names in layout.categorical_by_dim.items()}
    data["numeric"] = rng.normal(size=(BATCH, len(layout.numeric))).astype("float32")
    labels = {t: rng.integers(0, 2, size=(BATCH, 1)).astype("float32") for t in model.output}
    return data, labels


def _compiled(name):
    model, graph = compile_blueprint(str(BLUEPRINTS / f"{name}.yaml"), vocab_sizes=VOCAB)
    return model, *_batch(model, graph)


def _layer(model, node):
    return model.get_layer(BuildContext.layer_name_of(node))


def _task_gradients(model, data, labels, task):
    """Layer name -> [gradient per trainable variable] of ``task``'s BCE loss."""
    layers = [layer for layer in model.layers if layer.trainable_variables]

    def loss():
        probs = model(data, training=True)
        return keras.ops.mean(keras.losses.binary_crossentropy(labels[task], probs[task]))

    grads = iter(gradients(loss, [], [v for layer in layers for v in layer.trainable_variables]))
    return {layer.name: [next(grads) for _ in layer.trainable_variables] for layer in layers}


def _zero(grads):
    return all(not np.any(g) for g in grads)


# -- STEM -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stem():
    return _compiled("stem")


@pytest.mark.parametrize("task, other", [("click", "like"), ("like", "click")])
def test_stem_task_loss_reaches_only_shared_and_own_embeddings(stem, task, other):
    model, data, labels = stem
    grads = _task_gradients(model, data, labels, task)
    own, others = f"x_task-{task}-embedding_d8", f"x_task-{other}-embedding_d8"
    assert not _zero(grads["embedding_d8"])  # the shared tables
    assert not _zero(grads[own])
    assert _zero(grads[others])  # exactly 0: stop-gradient on the other task's experts
    assert _zero(grads[_layer(model, f"stem/experts.{other}").name])
    assert _zero(grads[_layer(model, f"stem/gate.{other}").name])
    for node in ("stem/shared", f"stem/experts.{task}", f"stem/gate.{task}"):
        assert not _zero(grads[_layer(model, node).name]), node


def test_stem_other_tasks_experts_still_count_forward(stem):
    """Forward, task t's mixture reads every expert: changing the other task's experts changes
    task t's prediction (only the gradient is cut)."""
    model, data, _ = stem
    before = keras.ops.convert_to_numpy(model(data)["click"])
    layer = _layer(model, "stem/experts.like")
    saved = [keras.ops.convert_to_numpy(v) for v in layer.weights]
    for v in layer.weights:
        v.assign(keras.ops.convert_to_numpy(v) + 0.5)
    try:
        after = keras.ops.convert_to_numpy(model(data)["click"])
    finally:
        for v, s in zip(layer.weights, saved):
            v.assign(s)
    assert not np.allclose(before, after)


# -- AITM -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aitm():
    model, data, labels = _compiled("aitm")
    # the conversion step above the click step on every row, so the calibrator's hinge is active
    _layer(model, "aitm/logit.ctcvr").weights[1].assign(np.array([3.0], "float32"))
    _layer(model, "aitm/logit.ctr").weights[1].assign(np.array([-3.0], "float32"))
    return model, data, labels


@pytest.fixture
def no_dropout_aitm(tmp_path):
    text = (BLUEPRINTS / "aitm.yaml").read_text().replace("dropout: 0.1, ", "")
    path = tmp_path / "aitm.yaml"
    path.write_text(text)
    model, graph = compile_blueprint(str(path), vocab_sizes=VOCAB)
    _layer(model, "aitm/logit.ctcvr").weights[1].assign(np.array([3.0], "float32"))
    _layer(model, "aitm/logit.ctr").weights[1].assign(np.array([-3.0], "float32"))
    return model, *_batch(model, graph)


def _calibrator(model, data):
    """The network's own losses of one training call (``add_loss``), through stateless_call so
    every backend collects them: a closure for backend_grad.gradients."""
    def loss():
        _, _, losses = model.stateless_call([v.value for v in model.trainable_variables],
                                            [v.value for v in model.non_trainable_variables], data,
                                            training=True, return_losses=True)
        assert len(losses) == 1
        return losses[0]
    return loss


def _logits(model, data):
    """(ctr, ctcvr) logits of an inference call (dropout off), from a model cut at the heads."""
    heads = keras.Model(model.inputs, [_layer(model, f"aitm/logit.{t}").output for t in ("ctr", "ctcvr")])
    return [keras.ops.convert_to_numpy(v).reshape(-1) for v in heads(data)]


def test_aitm_calibrator_is_the_networks_own_loss_with_its_gradient(no_dropout_aitm):
    model, data, _ = no_dropout_aitm  # without dropout the training call is the inference call
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    l_ctr, l_ctcvr = _logits(model, data)
    active = sig(l_ctcvr) > sig(l_ctr)
    assert active.all()
    value = keras.ops.convert_to_numpy(_calibrator(model, data)())
    np.testing.assert_allclose(value, 0.6 * np.mean(np.maximum(sig(l_ctcvr) - sig(l_ctr), 0)), rtol=1e-5)
    ctr_bias = _layer(model, "aitm/logit.ctr").weights[1]
    ctcvr_bias = _layer(model, "aitm/logit.ctcvr").weights[1]
    g_ctr, g_ctcvr = gradients(_calibrator(model, data), [], [ctr_bias, ctcvr_bias])
    d = lambda v: sig(v) * (1 - sig(v))  # noqa: E731
    np.testing.assert_allclose(g_ctcvr, [0.6 * np.mean(d(l_ctcvr) * active)], rtol=1e-4)
    np.testing.assert_allclose(g_ctr, [-0.6 * np.mean(d(l_ctr) * active)], rtol=1e-4)


def test_aitm_conversion_loss_reaches_the_click_tower_through_the_transfer(aitm):
    model, data, labels = aitm
    grads = _task_gradients(model, data, labels, "ctcvr")
    for node in ("aitm/tower.ctr", "aitm/info.ctr", "aitm/ait.ctcvr", "aitm/tower.ctcvr"):
        assert not _zero(grads[_layer(model, node).name]), node
    assert _zero(grads[_layer(model, "aitm/logit.ctr").name])  # the click head is click's alone
    click = _task_gradients(model, data, labels, "ctr")
    for node in ("aitm/info.ctr", "aitm/ait.ctcvr", "aitm/tower.ctcvr"):
        assert _zero(click[_layer(model, node).name]), node  # transfer runs forward along the funnel


def test_plan_trainer_trains_on_the_calibrator(no_dropout_aitm):
    from composer.blueprint import load_blueprint
    from composer.losses import LossPlan
    from composer.training.plan_trainer import PlanTrainer

    model, data, labels = no_dropout_aitm
    bp, _ = load_blueprint(str(BLUEPRINTS / "aitm.yaml"))
    trainer = PlanTrainer(model, LossPlan.from_blueprint(bp))
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = trainer.fit(data, {t: v.reshape(-1) for t, v in labels.items()}, batch_size=BATCH, epochs=1,
                       verbose=0, shuffle=False).history
    expected = keras.ops.convert_to_numpy(_calibrator(model, data)())
    assert expected > 0.1
    np.testing.assert_allclose(logs["loss"][0] - logs["loss_ctr"][0] - logs["loss_ctcvr"][0], expected, rtol=1e-4)


# -- DSelect-k and DBMTL ----------------------------------------------------------------------
def test_dselect_k_gates_sum_to_one_and_each_task_trains_its_own_gate():
    model, data, labels = _compiled("dselect_k")
    for task, other in (("click", "like"), ("like", "click")):
        gate = _layer(model, f"moe/gate.{task}")
        weights = keras.ops.convert_to_numpy(keras.Model(model.inputs, gate.output)(data))
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        grads = _task_gradients(model, data, labels, task)
        assert not _zero(grads[gate.name]) and not _zero(grads[_layer(model, "moe/experts").name])
        assert _zero(grads[_layer(model, f"moe/gate.{other}").name])


def test_dbmtl_relation_edge_carries_like_gradient_into_click_relation_only():
    model, data, labels = _compiled("dbmtl")
    like = _task_gradients(model, data, labels, "like")
    for node in ("dbmtl/relation.click", "dbmtl/tower.click", "dbmtl/relation.like", "bottom"):
        assert not _zero(like[_layer(model, node).name]), node
    assert _zero(like[_layer(model, "dbmtl/logit.click").name])
    click = _task_gradients(model, data, labels, "click")
    for node in ("dbmtl/relation.like", "dbmtl/tower.like", "dbmtl/logit.like"):
        assert _zero(click[_layer(model, node).name]), node


# -- errors -----------------------------------------------------------------------------------
def _graph_error(tmp_path, name, old, new):
    from composer.blueprint import load_blueprint
    from composer.blueprint.errors import BlueprintError
    from composer.graph import build_graph

    text = (BLUEPRINTS / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new))
    with pytest.raises(BlueprintError) as err:
        build_graph(*load_blueprint(str(path)), vocab_sizes=VOCAB)
    return str(err.value)


@pytest.mark.parametrize("name, old, new, words", [
    ("dselect_k", "experts: 8, k: 2", "experts: 6, k: 2",
     ["blocks.moe", "experts 6 is not a power of 2", "also reach 2 expert(s) that do not exist", "use 4 or 8 experts"]),
    ("dselect_k", "experts: 8, k: 2", "experts: 4, k: 5", ["k 5 is more than the 4 experts", "use k <= 4"]),
    ("dbmtl", "relations: {like: [click]}", "relations: {click: [like]}",
     ["blocks.dbmtl", "relations.click names 'like', which does not come before 'click'"]),
    ("dbmtl", "relations: {like: [click]}", "relations: {like: [clik]}",
     ["relations.like names 'clik', not a task of this block", "did you mean 'click'"]),
    ("aitm", "input: x, units", "input: x, tasks: [ctr], units",
     ["aitm transfers along a sequence of tasks but covers 1 (ctr)", "two tasks or more"]),
    ("stem", 'task_input: "x_task.{task}"', 'task_input: "x"',
     ["task_input 'x' has no '{task}'", "every task would read the same input"]),
    ("stem", "{type: task_embed, for_each: task, group: all}", "{type: task_embed, for_each: task, group: al}",
     ["unknown group 'al'", "did you mean 'all'"]),
])
def test_mistakes_name_the_block_and_the_fix(tmp_path, name, old, new, words):
    message = _graph_error(tmp_path, name, old, new)
    for w in words:
        assert w in message, (w, message)
