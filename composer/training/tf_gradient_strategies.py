"""PCGrad, CAGrad, MGDA-UB, Nash-MTL, Aligned-MTL and MetaBalance: the training step under
``KERAS_BACKEND=tensorflow`` (the JAX one is jax_gradient_strategies.py; the rules both apply are
gradient_strategies.py).

One forward pass under a persistent tape; each task's gradient on every variable by one backward
pass per task; the rule's coefficients from their Gram matrix on the shared tensors; each
variable's update combined from its per-task gradients (gradient_strategies.combine), so no
further backward pass (MGDA-UB takes the per-task gradients on the shared representation only,
then one backward pass of the weighted losses).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from . import gradient_strategies as rules


def _dense(grads, variables):
    return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]


def train_step(trainer, data):
    x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
    variables = trainer.net.trainable_variables
    shared_ids = {id(v) for v in rules.shared_variables(trainer)}
    shared = [i for i, v in enumerate(variables) if id(v) in shared_ids]  # in variable order, as JAX's
    n = len(trainer.tasks)
    mgda = trainer.fusion == "mgda"
    represented = []
    with tf.GradientTape(persistent=True) as tape:
        if mgda:
            with rules.representation_hook(trainer.shared_layers[-1], lambda z: represented.append(z) or z):
                y_pred = trainer(x, training=True)
        else:
            y_pred = trainer(x, training=True)
        loss_list = trainer.task_losses(y, y_pred, sw)  # per task, taken on the tape
        losses = tf.stack(loss_list)
        extra = tf.add_n(trainer.losses) if trainer.losses else None  # add_loss terms
    # each task's gradient on every variable (MGDA-UB: on Z), one backward pass per task
    targets = tf.nest.flatten(represented[-1:]) if mgda else variables
    per_task = [_dense(tape.gradient(loss_list[t], targets), targets) for t in range(n)]
    all_rows = [tf.stack([per_task[t][k] for t in range(n)]) for k in range(len(targets))]
    rows = all_rows if mgda else [all_rows[i] for i in shared]
    gram = rules.gram_of(rows)
    step = trainer.step_counter
    norms = rules.tensor_norms(rows) if trainer.fusion == "metabalance" else None
    averages = trainer.norm_averages if trainer.fusion == "metabalance" else None
    if trainer.fusion == "nash_mtl":
        every = int(trainer.plan.params.get("every", 1))
        kept = tf.convert_to_tensor(trainer.task_weights)
        a = tf.cond(step % every == 0, lambda: rules.coefficients(trainer, gram, losses, step)[0], lambda: kept)
        logged, new_averages = a, None
    else:
        a, logged, new_averages = rules.coefficients(trainer, gram, losses, step, norms, averages)
    a = tf.stop_gradient(a)
    if mgda:  # the rows were Z's: one backward pass of sum_t a_t L_t (+ the add_loss terms)
        targets, weights = ([losses, extra], [a, tf.ones_like(extra)]) if extra is not None else (losses, a)
        grads = _dense(tape.gradient(targets, variables, output_gradients=weights), variables)
    else:
        position = {i: k for k, i in enumerate(shared)}
        grads = [rules.combine(trainer.fusion, a, g, position.get(i)) for i, g in enumerate(all_rows)]
        if extra is not None:
            grads = [g + e for g, e in zip(grads, _dense(tape.gradient(extra, variables), variables))]
    if trainer.fusion == "nash_mtl":
        clipped = rules.clip_by_global_norm([grads[i] for i in shared], trainer.plan.params.get("max_norm", 1.0))
        for i, g in zip(shared, clipped):
            grads[i] = g
    total = tf.reduce_sum(losses) if trainer.fusion in rules.SURGERY else tf.reduce_sum(a * losses)
    if extra is not None:
        total = total + extra
    del tape
    trainer.optimizer.apply_gradients(zip(grads, variables))
    trainer.task_weights.assign(logged)
    if new_averages is not None:
        trainer.norm_averages.assign(new_averages)
    trainer.step_counter.assign_add(1)
    trainer._track(total, [losses[i] for i in range(n)])
    rules.track_cosines(trainer, gram)
    return trainer.get_metrics_result()
