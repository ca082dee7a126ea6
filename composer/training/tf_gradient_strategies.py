"""PCGrad, CAGrad, MGDA-UB, Nash-MTL, Aligned-MTL and MetaBalance: the training step under
``KERAS_BACKEND=tensorflow`` (the JAX one is jax_gradient_strategies.py; the rules both apply are
gradient_strategies.py).

One forward pass under a persistent tape; each task's gradient on the shared tensors (MGDA-UB: on
the shared representation) by one backward pass per task; the rule's coefficients from their Gram
matrix; then one backward pass of the losses weighted by the coefficients (weighting rules) or of
their sum, the shared part corrected to the rule's combination (surgery rules).
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
    shared = rules.shared_variables(trainer)
    shared_ids = {id(v): i for i, v in enumerate(shared)}
    n = len(trainer.tasks)
    represented = []
    with tf.GradientTape(persistent=True) as tape:
        if trainer.fusion == "mgda":
            with rules.representation_hook(trainer.shared_layers[-1], lambda z: represented.append(z) or z):
                y_pred = trainer(x, training=True)
        else:
            y_pred = trainer(x, training=True)
        loss_list = trainer.task_losses(y, y_pred, sw)  # per task, taken on the tape
        losses = tf.stack(loss_list)
        extra = tf.add_n(trainer.net.losses) if trainer.net.losses else tf.zeros((), losses.dtype)
    targets = represented[-1:] if trainer.fusion == "mgda" else shared
    flat_targets = tf.nest.flatten(targets)
    per_task = [_dense(tape.gradient(loss_list[t], flat_targets), flat_targets) for t in range(n)]
    rows = [tf.stack([per_task[t][k] for t in range(n)]) for k in range(len(flat_targets))]
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
    if trainer.fusion in rules.WEIGHTING:
        grads = _dense(tape.gradient([losses, extra], variables, output_gradients=[a, tf.ones_like(extra)]),
                       variables)
        total = tf.reduce_sum(a * losses) + extra
        if trainer.fusion == "nash_mtl":
            idx = [i for i, v in enumerate(variables) if id(v) in shared_ids]
            clipped = rules.clip_by_global_norm([grads[i] for i in idx], trainer.plan.params.get("max_norm", 1.0))
            for i, g in zip(idx, clipped):
                grads[i] = g
    else:
        grads = _dense(tape.gradient([losses, extra], variables,
                                     output_gradients=[tf.ones_like(losses), tf.ones_like(extra)]), variables)
        grads = [g + rules.surgery_correction(a, rows[shared_ids[id(v)]], shared_ids[id(v)])
                 if id(v) in shared_ids else g for g, v in zip(grads, variables)]
        total = tf.reduce_sum(losses) + extra
    del tape
    trainer.optimizer.apply_gradients(zip(grads, variables))
    trainer.task_weights.assign(logged)
    if new_averages is not None:
        trainer.norm_averages.assign(new_averages)
    trainer.step_counter.assign_add(1)
    trainer._track(total, [losses[i] for i in range(n)])
    rules.track_cosines(trainer, gram)
    return trainer.get_metrics_result()
