"""GradNorm and PE-LTR training step under ``KERAS_BACKEND=jax``; the TensorFlow one is
``PlanTrainer.train_step`` in composer/training/plan_trainer.py, and the two compute the same thing.

Keras's JAX trainer calls ``train_step(state, data)`` with ``state = (trainable,
non_trainable, optimizer, metrics)`` variable values and takes ``(logs, new_state)`` back
(keras/src/backend/jax/trainer.py); while it runs the model's own variables hold no values, so
everything is read from ``state`` and written to the new state, never assigned. This is the only
module that imports JAX.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np

from ..fusion_math import pareto_weights


def _positions(variables, wanted) -> list[int]:
    # by identity: keras.Variable's == is elementwise
    ids = {id(v) for v in wanted}
    return [i for i, v in enumerate(variables) if id(v) in ids]


def train_step(trainer, state, data):
    """One model step on sum_t w_t L_t (+ the network's own losses) and one task-weight step
    (GradNorm every step, PE-LTR every ``every`` steps), as ``PlanTrainer.train_step``."""
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
    nt_index = {name: _positions(trainer.non_trainable_variables, [getattr(trainer, name)])[0]
                for name in ("task_weights", "step_counter", "initial_losses") if hasattr(trainer, name)}
    shared = _positions(trainer.trainable_variables,
                        [v for layer in trainer.shared_layers for v in layer.trainable_variables])
    weights = non_trainable[nt_index["task_weights"]]
    step = non_trainable[nt_index["step_counter"]]
    n = len(trainer.tasks)

    def forward(values):
        y_pred, new_non_trainable, net_losses = trainer.stateless_call(
            values, non_trainable, x, return_losses=True, training=True)
        losses = jnp.stack(trainer.task_losses(y, y_pred, sw))
        extra = jnp.sum(jnp.stack(net_losses)) if net_losses else jnp.zeros((), losses.dtype)
        return (losses, extra), new_non_trainable

    # One forward pass, then one backward pass per cotangent: (w, 1) gives the fused loss's
    # gradient for the model step; the unit vectors give each task's own gradient (its Jacobian
    # row, vmapped) where a weight step needs them, as TensorFlow's persistent tape does.
    (losses, extra), pullback, new_non_trainable = jax.vjp(forward, list(trainable), has_aux=True)
    total = jnp.sum(weights * losses) + extra
    (grads,) = pullback((weights.astype(losses.dtype), jnp.ones_like(extra)))

    def per_task_shared_grads():
        (rows,) = jax.vmap(pullback)((jnp.eye(n, dtype=losses.dtype), jnp.zeros((n,), extra.dtype)))
        return [rows[i] for i in shared]  # each (T, *shape of the shared variable)

    new_trainable, new_optimizer_vars = trainer.optimizer.stateless_apply(
        optimizer_vars, grads, trainable)
    new_non_trainable = list(new_non_trainable)
    if trainer.fusion == "gradnorm":
        initial = jnp.where(step == 0, losses, non_trainable[nt_index["initial_losses"]])
        new_non_trainable[nt_index["initial_losses"]] = initial
        new_weights = _gradnorm_weights(trainer, weights, losses, initial, per_task_shared_grads())
    else:
        every = int(trainer.plan.params.get("every", 10))
        lower = np.array([trainer.plan.params["lower_bounds"][t] for t in trainer.tasks], dtype="float64")
        new_weights = jax.lax.cond(step % every == 0,
                                   lambda: _pareto_weights(per_task_shared_grads(), lower, weights.dtype),
                                   lambda: weights)
    new_non_trainable[nt_index["task_weights"]] = new_weights
    new_non_trainable[nt_index["step_counter"]] = step + 1

    # the trackers see the updated weights, as after TensorFlow's assign
    mapping = list(zip(trainer.metrics_variables, metrics_vars)) + [(trainer.task_weights, new_weights)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        trainer._track(total, [losses[i] for i in range(n)])
        logs = trainer.get_metrics_result()
    new_metrics_vars = [scope.get_current_value(v) for v in trainer.metrics_variables]
    new_metrics_vars = [old if new is None else new for old, new in zip(metrics_vars, new_metrics_vars)]
    return logs, (new_trainable, new_non_trainable, new_optimizer_vars, new_metrics_vars)


def _gradnorm_weights(trainer, weights, losses, initial, shared_grads):
    """GradNorm (Chen et al., ICML 2018): G_t = w_t ||grad_W L_t||; one gradient step of
    sum_t |G_t - mean(G) r_t^alpha| on w (the target held constant), then renormalise to sum T."""
    n = len(trainer.tasks)
    params = trainer.plan.params
    norms = jnp.sqrt(sum(jnp.sum(jnp.reshape(g, (n, -1)) ** 2, axis=1) for g in shared_grads))
    ratio = losses / jnp.maximum(initial, 1e-12)
    rate = ratio / jnp.mean(ratio)

    def gradnorm_loss(w):
        g = w * norms
        target = jax.lax.stop_gradient(jnp.mean(g) * rate ** params.get("alpha", 1.5))
        return jnp.sum(jnp.abs(g - target))

    new = jnp.maximum(weights - params.get("learning_rate", 0.025) * jax.grad(gradnorm_loss)(weights), 1e-4)
    return new * n / jnp.sum(new)


def _pareto_weights(shared_grads, lower, dtype):
    """PE-LTR (Lin et al., RecSys 2019): the exact minimum-norm weights over the shared
    parameters, from the NumPy solver in composer/fusion_math.py."""
    n = lower.shape[0]
    flat = jnp.concatenate([jnp.reshape(g, (n, -1)) for g in shared_grads], axis=1)
    # pure_callback, not a jnp port: the solver enumerates the 2**T - 1 active sets with
    # data-dependent tie-breaking and float64 least squares (brute-force tested in
    # tests/test_fusion_math.py); one host round trip every `every` steps costs less than a
    # second copy of that logic drifting from the tested one. No gradient flows through it.
    return jax.pure_callback(
        lambda g: pareto_weights(np.asarray(g, dtype="float64"), lower).astype(dtype),
        jax.ShapeDtypeStruct((n,), dtype), flat, vmap_method="sequential")
