"""Gradient isolation of compiled CGC and PLE blueprints (Tang et al., RecSys 2020).

Task t's gate sees only the shared experts and t's own, so another task's experts must get
exactly zero gradient from t's loss, while the shared experts and t's experts get some. Gradients
come from tests/backend_grad.py, so the tests run on every Keras backend.
"""
from pathlib import Path

import keras
import numpy as np
import pytest
from backend_grad import gradients

from composer.compiler import BuildContext, compile_blueprint

# the shipped blueprints take features from the data; fixed vocabulary sizes stand in for it
VOCAB = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13}

BLUEPRINTS = Path(__file__).resolve().parents[1] / "blueprints"
BATCH = 32


def _batch(model, graph, seed=0):
    rng = np.random.default_rng(seed)
    layout = graph.layout
    data = {}
    for dim, names in layout.categorical_by_dim.items():
        data[layout.input_name(dim)] = np.stack(
            [rng.integers(0, layout.vocab_sizes[n], size=BATCH) for n in names], axis=1).astype("int32")
    if layout.numeric:
        data["numeric"] = rng.normal(size=(BATCH, len(layout.numeric))).astype("float32")
    assert set(data) == set(model.input)
    labels = {t: rng.integers(0, 2, size=(BATCH, 1)).astype("float32") for t in model.output}
    return data, labels


def _loss(model, data, labels, tasks):
    """The summed BCE losses of ``tasks``: a closure for backend_grad.gradients."""
    def loss():
        probs = model(data, training=True)
        return sum(keras.ops.mean(keras.losses.binary_crossentropy(labels[t], probs[t])) for t in tasks)
    assert np.isfinite(keras.ops.convert_to_numpy(loss()))
    return loss


def _layer(model, node):
    """The Keras layer of a graph node (``cgc/experts.like``), named as the compiler names it."""
    return model.get_layer(BuildContext.layer_name_of(node))


def _gradients(model, data, labels, task):
    """Layer name -> [gradient per trainable variable] of ``task``'s BCE loss (zeros where the
    loss does not reach)."""
    layers = [layer for layer in model.layers if layer.trainable_variables]
    grads = iter(gradients(_loss(model, data, labels, [task]), [],
                           [v for layer in layers for v in layer.trainable_variables]))
    return {layer.name: [next(grads) for _ in layer.trainable_variables] for layer in layers}


def _is_zero(grads):
    return all(not np.any(g) for g in grads)


def _every_expert_gets_gradient(grads):
    """Each variable, and each expert's slice of a (K, ...) einsum kernel, has a non-zero entry."""
    for g in grads:
        if not np.any(g):
            return False
        if g.ndim == 3 and not all(np.any(g[k]) for k in range(g.shape[0])):
            return False
    return True


@pytest.fixture(scope="module")
def cgc():
    model, graph = compile_blueprint(str(BLUEPRINTS / "cgc.yaml"), vocab_sizes=VOCAB)
    return model, *_batch(model, graph)


@pytest.fixture(scope="module")
def ple():
    model, graph = compile_blueprint(str(BLUEPRINTS / "ple.yaml"), vocab_sizes=VOCAB)
    return model, *_batch(model, graph)


@pytest.mark.parametrize("task, other", [("click", "like"), ("like", "click")])
def test_cgc_task_loss_never_reaches_other_tasks_experts(cgc, task, other):
    model, data, labels = cgc
    grads = _gradients(model, data, labels, task)
    for node in (f"cgc/experts.{other}", f"cgc/gate.{other}", f"tower.{other}"):
        layer = _layer(model, node)
        assert layer.trainable_variables, node
        assert _is_zero(grads[layer.name]), f"{task} loss reaches {node}"
    for node in ("cgc/shared", f"cgc/experts.{task}", f"cgc/gate.{task}", f"tower.{task}"):
        assert _every_expert_gets_gradient(grads[_layer(model, node).name]), f"{task} loss misses {node}"
    assert _every_expert_gets_gradient(grads["embedding_d8"]), f"{task} loss misses the embeddings"


@pytest.mark.parametrize("task, other", [("click", "like"), ("like", "click")])
def test_ple_level2_task_loss_never_reaches_other_tasks_experts(ple, task, other):
    model, data, labels = ple
    grads = _gradients(model, data, labels, task)
    # level 1's task-t output feeds only level 2's task-t experts and gate
    for node in (f"ple/level2/experts.{other}", f"ple/level2/gate.{other}",
                 f"ple/level1/gate.{other}", f"tower.{other}"):
        layer = _layer(model, node)
        assert layer.trainable_variables, node
        assert _is_zero(grads[layer.name]), f"{task} loss reaches {node}"
    # level 1's shared gate mixes every expert, so the other task's level-1 experts still learn
    for node in ("ple/level2/shared", f"ple/level2/experts.{task}", f"ple/level2/gate.{task}",
                 "ple/level1/shared", "ple/level1/gate.shared", f"ple/level1/experts.{task}",
                 f"ple/level1/experts.{other}", f"ple/level1/gate.{task}", f"tower.{task}"):
        assert _every_expert_gets_gradient(grads[_layer(model, node).name]), f"{task} loss misses {node}"


def test_cgc_both_losses_reach_every_expert(cgc):
    model, data, labels = cgc
    variables = model.trainable_variables
    grads = gradients(_loss(model, data, labels, ["click", "like"]), [], variables)
    for v, g in zip(variables, grads):
        assert np.any(g), f"no gradient reaches {v.path}"
