"""Loss-level task weighting (DWA, RLW, FAMO) and ESCM2's counterfactual CVR risks.

Everything here is ``keras.ops`` and runs inside ``PlanTrainer.compute_loss``, so it trains on
every Keras backend (TensorFlow and torch through ``fit``, JAX through ``fit`` or Composer's
scanned loop). A strategy's state lives in the trainer's non-trainable variables, assigned during
the step (JAX's stateless step hands the new values on, as for dropout's seed): it persists
across the scanned loop's dispatches and goes into every checkpoint, so ``--resume`` continues
exactly. DWA's state changes between epochs, in ``PlanTrainer.end_epoch`` (called by
composer/training/epochs.py after each epoch with the epoch's logs). The logged ``weight_<task>``
is the weight the step gave each task's loss. NumPy references: tests/test_loss_strategies.py.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

LOSS_STRATEGIES = ("dwa", "rlw", "famo")
EPS = 1e-8  # FAMO's offset inside the logarithms (the official code's), and a safe divisor


# -- the rules --------------------------------------------------------------------------------
def dwa_weights(last, before, temperature: float):
    """DWA (Liu, Johns, Davison, CVPR 2019): K softmax(r / T) with r = L(e-1) / L(e-2), the ratio
    of each task's mean training loss over the last two epochs."""
    n = ops.shape(last)[0]
    rate = last / ops.maximum(before, EPS)
    return n * ops.softmax(rate / temperature)


def rlw_weights(n: int, seed):
    """RLW (Lin et al., TMLR 2022): K softmax(z), z ~ N(0, I) drawn from ``seed`` (a
    keras.random.SeedGenerator). Scaled to sum K, not 1 (the paper's code): the mean weight is 1,
    as fixed fusion's default weights, so swapping fixed for rlw keeps the loss's scale and the
    learning rate that goes with it."""
    return n * ops.softmax(keras.random.normal((n,), seed=seed))


def famo_objective(losses, xi):
    """FAMO (Liu, Liang, Chen, Liu, NeurIPS 2023) with minimum losses 0: (sum_t z_t log L_t / c,
    the gradient weights z_t / (c L_t)), z = softmax(xi), c = sum_t z_t / L_t held constant. The
    weights sum to 1: the model's gradient is their weighted sum of the task gradients."""
    z = ops.softmax(xi)
    d = losses + EPS
    c = ops.stop_gradient(ops.sum(z / d))
    return ops.sum(ops.log(d) * z / c), ops.stop_gradient(z / (c * d))


def famo_logit_gradient(xi, delta):
    """The gradient of xi: softmax's Jacobian (diag(z) - z z^T, symmetric) times delta, the
    decrease of the log task losses (the official code's autograd.grad(softmax(w), w, delta))."""
    z = ops.softmax(xi)
    return z * (delta - ops.sum(z * delta))


def adam_step(x, grad, m, v, t, learning_rate: float, weight_decay: float, beta1=0.9, beta2=0.999, eps=1e-8):
    """torch.optim.Adam's update (the official FAMO code's optimizer for xi): weight decay added
    to the gradient, bias-corrected moments. ``t`` counts steps (float), the new one included."""
    g = grad + weight_decay * x
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return x - learning_rate * m_hat / (ops.sqrt(v_hat) + eps), m, v


def counterfactual_risk(kind: str, label, prob, observed, rows, propensity, clip: float, imputed=None):
    """ESCM2's CVR risk over the exposure space (Wang et al., SIGIR 2022), e_i the BCE of the
    task's probability on row i, o_i ``observed`` (the task's own weight: its ``where``, e.g. a
    click, and its sample weight), d_i ``rows`` (the propensity task's weight: the exposures), p_i
    the propensity with no gradient, floored at ``clip``; sums over the batch, divided by sum d:

    - ips: sum o_i e_i / p_i;
    - dr: sum [d_i e^_i + o_i (e_i - e^_i) / p_i] (e^ held constant: the risk trains the task) plus
      the imputation loss sum o_i (e_i - e^_i)^2 / p_i (e held constant: it trains e^, ``imputed``).
    """
    error = keras.losses.binary_crossentropy(ops.expand_dims(label, -1), ops.expand_dims(prob, -1))
    p = ops.maximum(ops.stop_gradient(propensity), clip)
    count = ops.maximum(ops.sum(rows), 1.0)
    if kind == "ips":
        return ops.sum(observed * error / p) / count
    fixed_imputed, fixed_error = ops.stop_gradient(imputed), ops.stop_gradient(error)
    risk = ops.sum(rows * fixed_imputed + observed * (error - fixed_imputed) / p) / count
    imputation = ops.sum(observed * ops.square(fixed_error - imputed) / p) / count
    return risk + imputation


def risk_loss(risk: dict, task: str, y, y_pred, sample_weight):
    """The term of a task with a ``risk`` (composer.losses.LossTerm.risk), from a batch."""
    flat = lambda v: ops.reshape(ops.cast(v, "float32"), (-1,))  # noqa: E731
    label, prob = flat(y[task]), flat(y_pred[task])
    if sample_weight is None:
        observed = rows = ops.ones_like(label)
    else:
        observed, rows = flat(sample_weight[task]), flat(sample_weight[risk["propensity"]])
    imputed = flat(y_pred[risk["imputation"]]) if risk["type"] == "dr" else None
    return counterfactual_risk(risk["type"], label, prob, observed, rows, flat(y_pred[risk["propensity"]]),
                               float(risk["clip"]), imputed)


# -- the strategies on a trainer ----------------------------------------------------------------
class Strategy:
    """A loss-level weighting: its state as the trainer's non-trainable variables, the fused
    loss of a step (``training``: the step may update its state and logs its weights in
    ``trainer.task_weights``), and what happens between epochs."""

    def __init__(self, trainer, params: dict):
        self.trainer, self.params, self.n = trainer, params, len(trainer.tasks)

    def _state(self, name, value, dtype="float32"):
        return self.trainer.add_weight(name=name, shape=np.shape(value), dtype=dtype, trainable=False,
                                       initializer=keras.initializers.Constant(value))

    def fuse(self, losses, training: bool):
        return ops.sum(self.trainer.task_weights * ops.stack(losses))

    def end_epoch(self, logs: dict) -> bool:
        """After an epoch, with its logs; True when the state changed."""
        return False


class DWA(Strategy):
    """The weights are set between epochs from the logged epoch means ``loss_<task>``."""

    def __init__(self, trainer, params):
        super().__init__(trainer, params)
        trainer.task_weights.assign(np.ones(self.n, "float32"))
        self.history = self._state("dwa_loss_history", np.zeros((2, self.n), "float32"))  # L(e-1), L(e-2)
        self.epochs = self._state("dwa_epochs", 0, dtype="int32")

    def end_epoch(self, logs):
        last = np.array([logs[f"loss_{t}"] for t in self.trainer.tasks], dtype="float32")
        before = ops.convert_to_numpy(self.history)[0]
        epochs = int(ops.convert_to_numpy(self.epochs)) + 1
        self.history.assign(np.stack([last, before]))
        self.epochs.assign(epochs)
        if epochs >= 2:
            weights = dwa_weights(ops.convert_to_tensor(last), ops.convert_to_tensor(before),
                                  float(self.params.get("temperature", 2.0)))
            self.trainer.task_weights.assign(ops.convert_to_numpy(weights))
        return True


class RLW(Strategy):
    def __init__(self, trainer, params):
        super().__init__(trainer, params)
        trainer.task_weights.assign(np.ones(self.n, "float32"))
        # an attribute of the trainer, so Keras tracks its state with the non-trainable variables
        trainer.rlw_seed = keras.random.SeedGenerator(name="rlw_seed")

    def fuse(self, losses, training):
        if not training:  # the valid loss: the expected weights, and no draw
            return ops.sum(ops.stack(losses))
        weights = rlw_weights(self.n, self.trainer.rlw_seed)
        self.trainer.task_weights.assign(weights)
        return ops.sum(weights * ops.stack(losses))


class FAMO(Strategy):
    def __init__(self, trainer, params):
        super().__init__(trainer, params)
        zeros = np.zeros(self.n, "float32")
        self.xi = self._state("famo_logits", zeros)
        self.m, self.v = self._state("famo_adam_m", zeros), self._state("famo_adam_v", zeros)
        self.t = self._state("famo_adam_steps", 0.0)
        self.previous = self._state("famo_previous_losses", zeros)  # 0: no step yet

    def fuse(self, losses, training):
        stacked = ops.stack(losses)
        if not training:
            return famo_objective(stacked, self.xi)[0]
        now = ops.stop_gradient(stacked)
        before = ops.convert_to_tensor(self.previous)
        # the decrease from the previous step's batch to this one (one forward pass per step);
        # 0 for a task that had no valid row in either batch (its loss is 0, not a measurement)
        known = ops.logical_and(before > 0, now > 0)
        delta = ops.where(known, ops.log(before + EPS) - ops.log(now + EPS), 0.0)
        started = ops.any(before > 0)
        t = self.t + ops.cast(started, "float32")
        xi, m, v = adam_step(self.xi, famo_logit_gradient(self.xi, delta), self.m, self.v, ops.maximum(t, 1.0),
                             float(self.params.get("learning_rate", 0.025)),
                             float(self.params.get("weight_decay", 1e-3)))
        for var, new in ((self.xi, xi), (self.m, m), (self.v, v)):
            var.assign(ops.where(started, new, var.value))
        self.t.assign(t)
        self.previous.assign(now)
        total, weights = famo_objective(stacked, self.xi)
        self.trainer.task_weights.assign(weights)
        return total


STRATEGIES = {"dwa": DWA, "rlw": RLW, "famo": FAMO}


def strategy_for(trainer):
    """The trainer's loss-level strategy object (its variables created), or None."""
    cls = STRATEGIES.get(trainer.fusion)
    return None if cls is None else cls(trainer, trainer.plan.params)
