"""Multi-task layers beyond the expert family: DSelect-k's gate, AITM's attention transfer and
calibrator, and STEM's mixture that stops the gradient into other tasks' experts."""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

ENTROPY_EPSILON = 1e-6  # inside log(r + eps), as google-research's dselect_k_moe.py


def binary_codes(experts: int) -> np.ndarray:
    """(experts, m) 0/1 matrix, row j the m-bit binary code of j (most significant bit first)."""
    m = max(1, math.ceil(math.log2(experts)))
    return np.array([[int(c) for c in np.binary_repr(j, width=m)] for j in range(experts)], dtype="float32")


def smooth_step(t, gamma):
    """Cubic smooth-step: 0 below -gamma/2, 1 above gamma/2, -2t^3/gamma^3 + 3t/(2 gamma) + 1/2
    between (Hazimeh et al., NeurIPS 2020 and 2021)."""
    cubic = (-2.0 / gamma**3) * t**3 + (1.5 / gamma) * t + 0.5
    return ops.where(t <= -gamma / 2, ops.zeros_like(t), ops.where(t >= gamma / 2, ops.ones_like(t), cubic))


@keras.saving.register_keras_serializable(package="composer")
class DSelectGate(keras.layers.Layer):
    """DSelect-k's per-example gate: weights over n experts from k single-expert selectors.

    Selector i has m = log2(n) logits z_i = (Z x)_i; expert j's weight in it is
    ``r_ij = prod_b S(z_ib)`` if bit b of j is 1 else ``1 - S(z_ib)``, with S the cubic smooth-step
    of width ``gamma``; the gate is ``alpha = sum_i softmax(W x)_i r_i``. Each r_i sums to 1, so
    alpha does; once every |z_ib| >= gamma/2 each r_i is one-hot and alpha has at most k non-zeros.
    With k = 1 the gate is the one selector. In training, ``entropy_weight > 0`` adds ``entropy_weight * mean over the batch of
    sum_i H(r_i)`` (``H(r) = -sum_j r_j log(r_j + 1e-6)``) with ``add_loss``.

    Hazimeh et al., DSelect-k: Differentiable Selection in the Mixture of Experts with
    Applications to Multi-Task Learning, NeurIPS 2021.

    Args:
        experts: number of experts n (a power of 2).
        k: number of single-expert selectors (at most k experts at convergence).
        gamma: width of the smooth-step's cubic region.
        entropy_weight: weight of the selectors' entropy regulariser (0: none).

    Input shape: ``(batch, d)``. Output shape: ``(batch, n)``, rows summing to 1.

    Example:
        >>> DSelectGate(4, 2)(np.ones((3, 5))).shape
        (3, 4)
    """

    def __init__(self, experts, k, gamma=1.0, entropy_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        self.experts = int(experts)
        self.k = int(k)
        self.gamma = float(gamma)
        self.entropy_weight = float(entropy_weight)
        self.bits = max(1, math.ceil(math.log2(self.experts)))
        if 2 ** self.bits != self.experts:
            raise ValueError(f"experts must be a power of 2, got {self.experts}")

    def build(self, input_shape):
        # as google-research's dselect_k_moe.py: z near 0 (every selector starts uniform)
        z_init = keras.initializers.RandomUniform(-self.gamma / 100, self.gamma / 100)
        self._z = keras.layers.Dense(self.k * self.bits, kernel_initializer=z_init, bias_initializer=z_init,
                                     dtype=self.dtype_policy, name="z_logits")
        self._z.build(input_shape)
        self._w = None  # one selector needs no weights over the selectors
        if self.k > 1:
            self._w = keras.layers.Dense(self.k, kernel_initializer="random_uniform",
                                         bias_initializer="random_uniform", dtype=self.dtype_policy, name="w_logits")
            self._w.build(input_shape)

    def selectors(self, x):
        """(batch, k, n): each single-expert selector's weights over the experts."""
        z = ops.reshape(self._z(x), (-1, self.k, 1, self.bits))
        s = smooth_step(z, self.gamma)
        codes = ops.cast(ops.convert_to_tensor(binary_codes(self.experts)), s.dtype)
        return ops.prod(codes * s + (1.0 - codes) * (1.0 - s), axis=-1)

    def call(self, x, training=None):
        r = self.selectors(x)
        alpha = r[:, 0] if self._w is None else ops.einsum("bk,bkn->bn", ops.softmax(self._w(x), axis=-1), r)
        if training and self.entropy_weight > 0:
            r32 = ops.cast(r, "float32")
            entropy = -ops.sum(r32 * ops.log(r32 + ENTROPY_EPSILON), axis=(1, 2))
            self.add_loss(self.entropy_weight * ops.mean(entropy))
        return alpha

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.experts)

    def get_config(self):
        return {**super().get_config(), "experts": self.experts, "k": self.k, "gamma": self.gamma,
                "entropy_weight": self.entropy_weight}


@keras.saving.register_keras_serializable(package="composer")
class AitAttention(keras.layers.Layer):
    """AITM's Attention-based Information Transfer: self-attention over the two vectors
    u in {p, q} (the information p transferred from the previous task, the task's own tower
    output q): ``w_u = softmax_u(<h1(u), h2(u)> / sqrt(d))``, ``z = sum_u w_u h3(u)``, with h1, h2,
    h3 linear maps d -> d without bias.

    Xi et al., Modeling the Sequential Dependence among Audience Multi-step Conversions with
    Multi-task Learning in Targeted Display Advertising, KDD 2021.

    Input: ``[q (batch, d), p (batch, d)]``. Output shape: ``(batch, d)``.

    Example:
        >>> AitAttention()([np.ones((2, 4)), np.zeros((2, 4))]).shape
        (2, 4)
    """

    def build(self, input_shape):
        d = int(input_shape[0][-1])
        self.query = self.add_weight(name="query", shape=(d, d), initializer="glorot_uniform")
        self.key = self.add_weight(name="key", shape=(d, d), initializer="glorot_uniform")
        self.value = self.add_weight(name="value", shape=(d, d), initializer="glorot_uniform")

    def call(self, inputs):
        q, p = inputs
        u = ops.stack([q, p], axis=1)  # (B, 2, d)
        d = u.shape[-1]
        scores = ops.sum(ops.matmul(u, self.query) * ops.matmul(u, self.key), axis=-1) / math.sqrt(d)
        weights = ops.softmax(scores, axis=1)
        return ops.sum(ops.expand_dims(weights, -1) * ops.matmul(u, self.value), axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="composer")
class AitmCalibrator(keras.layers.Layer):
    """Passes task t's score through unchanged and, in training, adds AITM's behavioural
    expectation calibrator ``weight * mean(max(p_t - p_{t-1}, 0))`` with ``add_loss``: a later
    conversion step should not be predicted likelier than the step before it. The scores are
    probabilities, from logits through a sigmoid where ``logits`` says so.

    Xi et al., KDD 2021 (section 3.3; the authors' code sums over the batch, this takes the mean
    so the weight does not scale with the batch size).

    Args:
        weight: the calibrator's weight alpha.
        logits: for ``[score_t, score_{t-1}]``, whether each is a logit (else a probability).

    Input: ``[score_t (batch, 1), score_{t-1} (batch, 1)]``. Output: ``score_t``.
    """

    def __init__(self, weight, logits=(True, True), **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)
        self.logits = [bool(v) for v in logits]

    def call(self, inputs, training=None):
        score, previous = inputs
        if training and self.weight > 0:
            p_t, p_prev = (ops.sigmoid(ops.cast(s, "float32")) if logit else ops.cast(s, "float32")
                           for s, logit in zip((score, previous), self.logits))
            self.add_loss(self.weight * ops.mean(ops.relu(p_t - p_prev)))
        return score

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "logits": self.logits}


@keras.saving.register_keras_serializable(package="composer")
class StemMixture(keras.layers.Layer):
    """``sum_k w_k e_k`` over the experts of several pools concatenated in order, where the pools
    marked ``detached`` pass forward but no gradient flows back into them: STEM's All Forward
    Task-specific Backward mixture (Su et al., STEM, AAAI 2024).

    Args:
        detached: for each pool, whether its experts are stop-gradient.

    Input: ``[weights (batch, K), pool_1 (batch, K_1, u), ...]`` with ``K = sum K_i``.
    Output shape: ``(batch, u)``.
    """

    def __init__(self, detached, **kwargs):
        super().__init__(**kwargs)
        self.detached = [bool(v) for v in detached]

    def call(self, inputs):
        weights, pools = inputs[0], inputs[1:]
        pools = [ops.stop_gradient(p) if cut else p for p, cut in zip(pools, self.detached)]
        experts = pools[0] if len(pools) == 1 else ops.concatenate(pools, axis=1)
        return ops.einsum("bk,bku->bu", weights, experts)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[1][-1])

    def get_config(self):
        return {**super().get_config(), "detached": self.detached}
