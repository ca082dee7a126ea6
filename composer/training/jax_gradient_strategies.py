"""PCGrad, CAGrad, MGDA-UB, Nash-MTL, Aligned-MTL and MetaBalance: the training step under
``KERAS_BACKEND=jax`` (the TensorFlow one is tf_gradient_strategies.py; the rules both apply are
gradient_strategies.py). Stateless like composer/training/jax_steps.py: values come from
``state`` and go to the new state, never assigned.

One forward pass (``jax.vjp``), then each task's gradient on every variable (and, for MGDA-UB, on
the shared representation Z, reached by adding a zero input to Z and differentiating by it) by
one pullback per unit cotangent, vmapped; the rule's coefficients combine them per variable
(gradient_strategies.combine), so no further backward pass is needed (one more, only for a model
with add_loss terms, gives their own gradient).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import keras

from . import gradient_strategies as rules
from .jax_steps import _positions


def train_step(trainer, state, data):
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
    names = ("task_weights", "step_counter", "norm_averages")
    nt_index = {name: _positions(trainer.non_trainable_variables, [getattr(trainer, name)])[0]
                for name in names if hasattr(trainer, name)}
    shared = _positions(trainer.trainable_variables, rules.shared_variables(trainer))
    weights = non_trainable[nt_index["task_weights"]]
    step = non_trainable[nt_index["step_counter"]]
    n = len(trainer.tasks)
    mgda = trainer.fusion == "mgda"
    has_extra = [False]  # set while tracing: does the model have add_loss terms?

    def forward(values, shift):
        def run():
            y_pred, new_nt, net_losses = trainer.stateless_call(values, non_trainable, x, return_losses=True,
                                                               training=True)
            losses = jnp.stack(trainer.task_losses(y, y_pred, sw))
            extra = jnp.sum(jnp.stack(net_losses)) if net_losses else jnp.zeros((), losses.dtype)
            has_extra[:] = [bool(net_losses)]
            return (losses, extra), new_nt

        if shift is None:
            return run()
        with rules.representation_hook(trainer.shared_layers[-1], lambda z: jax.tree.map(jnp.add, z, shift)):
            return run()

    shift = None
    if mgda:  # Z's shape: trace the layer once, abstractly
        seen = []

        def capture():
            with rules.representation_hook(trainer.shared_layers[-1], lambda z: seen.append(z) or z):
                trainer.stateless_call(list(trainable), non_trainable, x, training=True)
            return seen[-1]

        shift = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(capture))
    (losses, extra), pullback, new_non_trainable = jax.vjp(forward, list(trainable), shift, has_aux=True)
    units = (jnp.eye(n, dtype=losses.dtype), jnp.zeros((n,), extra.dtype))
    param_rows, shift_rows = jax.vmap(pullback)(units)  # each task's gradient on every variable (and Z)
    rows = jax.tree.leaves(shift_rows) if mgda else [param_rows[i] for i in shared]
    gram = rules.gram_of(rows)
    if trainer.fusion == "metabalance":
        a, logged, new_averages = rules.coefficients(trainer, gram, losses, step, rules.tensor_norms(rows),
                                                     non_trainable[nt_index["norm_averages"]])
    elif trainer.fusion == "nash_mtl":
        every = int(trainer.plan.params.get("every", 1))
        a = jax.lax.cond(step % every == 0, lambda: rules.coefficients(trainer, gram, losses, step)[0],
                         lambda: weights.astype(gram.dtype))
        logged, new_averages = a, None
    else:
        a, logged, new_averages = rules.coefficients(trainer, gram, losses, step)
    a = jax.lax.stop_gradient(a).astype(losses.dtype)
    if mgda:  # the rows were Z's (XLA drops the unused parameter rows): one pullback of sum_t a_t L_t
        grads = list(pullback((a, jnp.ones_like(extra)))[0])
    else:
        position = {i: k for k, i in enumerate(shared)}
        grads = [rules.combine(trainer.fusion, a, g, position.get(i)) for i, g in enumerate(param_rows)]
        if has_extra[0]:  # the add_loss terms' own gradient: one more pullback, only where a model has them
            extra_grads, _ = pullback((jnp.zeros_like(losses), jnp.ones_like(extra)))
            grads = [g + e for g, e in zip(grads, extra_grads)]
    if trainer.fusion == "nash_mtl":
        clipped = rules.clip_by_global_norm([grads[i] for i in shared], trainer.plan.params.get("max_norm", 1.0))
        for i, g in zip(shared, clipped):
            grads[i] = g
    total = (jnp.sum(losses) if trainer.fusion in rules.SURGERY else jnp.sum(a * losses)) + extra

    new_trainable, new_optimizer_vars = trainer.optimizer.stateless_apply(optimizer_vars, grads, trainable)
    new_non_trainable = list(new_non_trainable)
    new_weights = logged.astype(weights.dtype)
    new_non_trainable[nt_index["task_weights"]] = new_weights
    new_non_trainable[nt_index["step_counter"]] = step + 1
    if new_averages is not None:
        new_non_trainable[nt_index["norm_averages"]] = new_averages

    mapping = list(zip(trainer.metrics_variables, metrics_vars)) + [(trainer.task_weights, new_weights)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        trainer._track(total, [losses[i] for i in range(n)])
        rules.track_cosines(trainer, gram)
        logs = trainer.get_metrics_result()
    new_metrics_vars = [scope.get_current_value(v) for v in trainer.metrics_variables]
    new_metrics_vars = [old if new is None else new for old, new in zip(metrics_vars, new_metrics_vars)]
    return logs, (new_trainable, new_non_trainable, new_optimizer_vars, new_metrics_vars)
