"""Executes a LossPlan: per-task masked losses and their fusion during training.

``PlanTrainer`` wraps the compiled (functional) model for training only; the saved and served
artefact stays the plain functional model. Loss-only strategies (fixed, uncertainty; DWA, RLW,
FAMO and ESCM2's counterfactual risks from composer/training/loss_strategies.py) live in
``compute_loss``, which every Keras backend runs; gradient strategies (GradNorm, PE-LTR) need
per-task gradients, so they have their own ``train_step``: TensorFlow's below, JAX's in
composer/training/jax_steps.py (the same math); under another backend ``PlanTrainer`` refuses them with a
BlueprintError before training starts. Per-task raw losses and the task weights are logged every
epoch (``loss_<task>``, ``weight_<task>``).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ..fusion_math import pareto_weights
from . import loss_strategies

GRADIENT_STRATEGIES = ("gradnorm", "pareto", "pcgrad", "cagrad", "mgda", "nash_mtl", "aligned_mtl", "metabalance")
GRADIENT_BACKENDS = ("tensorflow", "jax")  # backends with a per-task gradient train_step
_STRATEGY_NAMES = {"gradnorm": "GradNorm", "pareto": "PE-LTR (pareto)", "pcgrad": "PCGrad", "cagrad": "CAGrad",
                   "mgda": "MGDA-UB", "nash_mtl": "Nash-MTL", "aligned_mtl": "Aligned-MTL",
                   "metabalance": "MetaBalance"}
# their steps: composer/training/{tf,jax}_gradient_strategies.py
_GRADIENT_RULES = ("pcgrad", "cagrad", "mgda", "nash_mtl", "aligned_mtl", "metabalance")


def check_backend(fusion: str) -> None:
    """Raise a BlueprintError when ``fusion`` has no train step on the current Keras backend."""
    backend = keras.backend.backend()
    if fusion in GRADIENT_STRATEGIES and backend not in GRADIENT_BACKENDS:
        from ..blueprint.errors import BlueprintError

        raise BlueprintError(
            f"{_STRATEGY_NAMES[fusion]} fusion needs KERAS_BACKEND=tensorflow or jax (now "
            f"'{backend}'), the backends with its per-task gradient step; fixed and uncertainty "
            f"fusion run on every backend", key="loss.fusion")


def _per_replica(total):
    """The loss a replica differentiates: under TensorFlow's MirroredStrategy the replicas'
    gradients are summed, so each replica's mean is divided by their count (Keras's own losses
    do the same); the identity on one device and on every other backend."""
    if keras.backend.backend() != "tensorflow":
        return total
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return total / replicas if replicas > 1 else total


class PlanTrainer(keras.Model):
    def __init__(self, net, plan, shared_layers=(), **kwargs):
        check_backend(plan.fusion)
        super().__init__(name=f"{net.name}_trainer", **kwargs)
        self.net = net
        self.plan = plan
        self.tasks = [t.task for t in plan.trained]
        self.fusion = plan.fusion
        self.shared_layers = list(shared_layers)
        n = len(self.tasks)
        fixed = [t.weight for t in plan.trained]
        if self.fusion == "uncertainty":
            init = plan.params.get("initial_log_variance", 0.0)
            self.log_variance = self.add_weight(name="log_variance", shape=(n,),
                                                initializer=keras.initializers.Constant(init))
        start = (fixed if self.fusion == "fixed" else [1.0] * n if self.fusion in ("gradnorm",) + _GRADIENT_RULES
                 else [1.0 / n] * n)
        self.task_weights = self.add_weight(name="task_weights", shape=(n,), trainable=False,
                                            initializer=keras.initializers.Constant(start))
        if self.fusion == "gradnorm":
            self.initial_losses = self.add_weight(name="initial_losses", shape=(n,), trainable=False,
                                                  initializer="zeros")
        self.step_counter = self.add_weight(name="step", shape=(), dtype="int32", trainable=False,
                                            initializer="zeros")
        self.strategy = loss_strategies.strategy_for(self)  # DWA, RLW, FAMO: their state; else None
        self.risks = {t.task: t.risk for t in plan.trained if t.risk}  # ESCM2's counterfactual risks
        self.trackers = {"loss": keras.metrics.Mean(name="loss")}
        for t in self.tasks:
            self.trackers[f"loss_{t}"] = keras.metrics.Mean(name=f"loss_{t}")
            self.trackers[f"weight_{t}"] = keras.metrics.Mean(name=f"weight_{t}")
        if self.fusion in _GRADIENT_RULES:
            from . import gradient_strategies

            gradient_strategies.add_state(self)  # MetaBalance's norm averages; cos_<a>_<b> trackers

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, x, training=False):
        return self.net(x, training=training)

    # -- the plan ------------------------------------------------------------------------
    def task_losses(self, y, y_pred, sample_weight):
        """Masked mean BCE per trained task; 0 (not NaN) for a batch without valid labels."""
        out = []
        for t in self.tasks:
            if t in self.risks:
                out.append(loss_strategies.risk_loss(self.risks[t], t, y, y_pred, sample_weight))
                continue
            label = ops.reshape(ops.cast(y[t], "float32"), (-1,))
            prob = ops.reshape(y_pred[t], (-1,))
            bce = keras.losses.binary_crossentropy(ops.expand_dims(label, -1), ops.expand_dims(prob, -1))
            w = ops.ones_like(label) if sample_weight is None else ops.reshape(sample_weight[t], (-1,))
            out.append(ops.sum(bce * w) / ops.maximum(ops.sum(w), 1.0))
        return out

    def weights_now(self):
        if self.fusion == "uncertainty":
            return ops.exp(-self.log_variance)
        return self.task_weights

    @property
    def outputs_read(self) -> list[str]:
        """The model outputs the plan reads: the trained tasks', and a risk's propensity and imputation."""
        extra = [r[k] for r in self.risks.values() for k in ("propensity", "imputation") if r.get(k)]
        return list(dict.fromkeys(self.tasks + extra))

    def fuse(self, losses, training=False):
        if self.strategy is not None:  # training: a step (may draw or update the strategy's state)
            return self.strategy.fuse(losses, training)
        stacked = ops.stack(losses)
        if self.fusion == "uncertainty":
            # Kendall et al. classification form: exp(-s) L + s / 2 (can be negative)
            return ops.sum(ops.exp(-self.log_variance) * stacked + 0.5 * self.log_variance)
        if self.fusion in ("pcgrad", "cagrad", "metabalance"):  # their logged weights are diagnostics
            return ops.sum(stacked)
        return ops.sum(self.task_weights * stacked)

    def plan_loss(self, y, y_pred, sample_weight, training=False):
        """(fused total with the model's regularization terms, per-task losses): the loss the
        plan trains on, for a training batch or, from predictions, the valid split."""
        losses = self.task_losses(y, y_pred, sample_weight)
        total = self.fuse(losses, training)
        # the trainer's own `losses`, not `self.net.losses`: under JAX, Keras hands the forward
        # pass's add_loss terms (AITM's calibrator, DSelect-k's entropy, AdaSparse's sparsity) to
        # the outer model being trained, so the net's list reads empty inside the stateless step
        net_losses = self.losses
        if net_losses:
            total = total + ops.sum(ops.stack(net_losses))
        return total, losses

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total, losses = self.plan_loss(y, y_pred, sample_weight, training=training)
        self._track(total, losses)  # the replica's own mean, as logged
        return _per_replica(total)

    def _track(self, total, losses):
        self.trackers["loss"].update_state(total)
        weights = self.weights_now()
        for i, t in enumerate(self.tasks):
            self.trackers[f"loss_{t}"].update_state(losses[i])
            self.trackers[f"weight_{t}"].update_state(weights[i])

    def end_epoch(self, logs: dict) -> bool:
        """Between epochs, with the epoch's logs: a loss strategy's epoch-boundary step (DWA's
        weights); True when the trainer's variables changed."""
        return self.strategy is not None and self.strategy.end_epoch(logs)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()

    # -- gradient strategies ----------------------------------------------------------------
    def train_step(self, *args):
        # TensorFlow and torch call train_step(data); JAX calls train_step(state, data)
        if self.fusion not in GRADIENT_STRATEGIES:
            return super().train_step(*args)
        check_backend(self.fusion)
        if self.fusion in _GRADIENT_RULES:
            if keras.backend.backend() == "jax":
                from .jax_gradient_strategies import train_step
            else:
                from .tf_gradient_strategies import train_step
            return train_step(self, *args)
        if keras.backend.backend() == "jax":
            from .jax_steps import train_step

            return train_step(self, *args)
        import tensorflow as tf

        (data,) = args
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        shared = [v for layer in self.shared_layers for v in layer.trainable_variables]
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self(x, training=True)
            losses = self.task_losses(y, y_pred, sw)
            total = self.fuse(losses)
            if self.net.losses:
                total = total + tf.add_n(self.net.losses)
        variables = self.net.trainable_variables
        grads = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        if self.fusion == "gradnorm":
            self._gradnorm_update(tape, losses, shared)
        else:
            tf.cond(self.step_counter % int(self.plan.params.get("every", 10)) == 0,
                    lambda: self._pareto_update(tape, losses, shared), lambda: tf.constant(0.0))
        del tape
        self.step_counter.assign_add(1)
        self._track(total, losses)
        return self.get_metrics_result()

    def _gradnorm_update(self, tape, losses, shared):
        """GradNorm (Chen et al., ICML 2018): G_t = w_t ||grad_W L_t||; move w toward
        mean(G) * r_t^alpha (a constant target), then renormalise to sum T."""
        import tensorflow as tf

        n = len(self.tasks)
        loss_vec = tf.stack(losses)
        self.initial_losses.assign(tf.where(self.step_counter == 0, loss_vec, self.initial_losses))
        norms = tf.stack([tf.linalg.global_norm([g for g in tape.gradient(l, shared) if g is not None])
                          for l in losses])
        with tf.GradientTape() as wtape:
            weights = tf.convert_to_tensor(self.task_weights)
            wtape.watch(weights)
            g = weights * norms
            ratio = loss_vec / tf.maximum(self.initial_losses, 1e-12)
            rate = ratio / tf.reduce_mean(ratio)
            target = tf.stop_gradient(tf.reduce_mean(g) * rate ** self.plan.params.get("alpha", 1.5))
            gn_loss = tf.reduce_sum(tf.abs(g - target))
        grad = wtape.gradient(gn_loss, weights)
        lr = self.plan.params.get("learning_rate", 0.025)
        new = tf.maximum(self.task_weights - lr * grad, 1e-4)
        self.task_weights.assign(new * n / tf.reduce_sum(new))

    def _pareto_update(self, tape, losses, shared):
        """PE-LTR (Lin et al., RecSys 2019): weights minimising ||sum_t w_t grad_theta L_t||^2
        on the shared parameters, sum w = 1, w_t >= c_t; solved exactly in closed form per
        active set (composer/fusion_math.py)."""
        import tensorflow as tf

        flat = []
        for l in losses:
            gs = tape.gradient(l, shared)
            flat.append(tf.concat([tf.reshape(g if g is not None else tf.zeros_like(v), [-1])
                                   for g, v in zip(gs, shared)], axis=0))
        grads = tf.stack(flat)
        lower = np.array([self.plan.params["lower_bounds"][t] for t in self.tasks], dtype="float64")
        w = tf.numpy_function(lambda g: pareto_weights(g.astype("float64"), lower).astype("float32"),
                              [grads], tf.float32)
        w.set_shape((len(self.tasks),))
        self.task_weights.assign(w)
        return tf.constant(0.0)

    def task_weight_values(self) -> dict[str, float]:
        return {t: float(v) for t, v in zip(self.tasks, ops.convert_to_numpy(self.weights_now()))}
