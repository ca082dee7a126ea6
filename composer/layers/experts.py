"""Expert layers: a pool of K expert MLPs, a softmax gate, and the gated mixture."""
from __future__ import annotations

import math

import keras
from keras import ops

from .dense import MLP


@keras.saving.register_keras_serializable(package="composer")
class ExpertPool(keras.layers.Layer):
    """K expert MLPs over one input, stacked along axis 1.

    Args:
        experts: number of experts K.
        units: widths of each expert's layers.
        activation: activation of every layer.
        dropout: dropout rate after every layer.
        implementation: ``"einsum"`` (one batched matmul per layer over kernels of shape
            ``(K, in, out)``) or ``"stacks"`` (K separate Dense stacks).

    Each expert's kernel is drawn Glorot-uniform with its own fans (not the fans of the stacked
    tensor), so experts start different and at the scale of a plain Dense layer.

    Input shape: ``(batch, d)``. Output shape: ``(batch, K, units[-1])``.

    Example:
        >>> ExpertPool(4, [8])(np.ones((2, 3))).shape
        (2, 4, 8)
    """

    def __init__(self, experts, units, activation="relu", dropout=0.0, implementation="einsum",
                 **kwargs):
        super().__init__(**kwargs)
        self.experts = int(experts)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = float(dropout)
        if implementation not in ("einsum", "stacks"):
            raise ValueError(f"implementation must be 'einsum' or 'stacks', got {implementation!r}")
        self.implementation = implementation

    def build(self, input_shape):
        d = int(input_shape[-1])
        self._act = keras.activations.get(self.activation)
        self._drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout") if self.dropout else None
        if self.implementation == "stacks":
            self._stacks = []
            for k in range(self.experts):
                mlp = MLP(self.units, activation=self.activation, dropout=self.dropout,
                          dtype=self.dtype_policy, name=f"expert_{k}")
                mlp.build((None, d))
                self._stacks.append(mlp)
            return
        self.kernels, self.biases = [], []
        prev = d
        for i, width in enumerate(self.units):
            limit = math.sqrt(6.0 / (prev + width))
            self.kernels.append(self.add_weight(
                name=f"kernel_{i}", shape=(self.experts, prev, width),
                initializer=keras.initializers.RandomUniform(-limit, limit)))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(self.experts, width),
                                               initializer="zeros"))
            prev = width

    def call(self, x, training=None):
        if self.implementation == "stacks":
            return ops.stack([mlp(x, training=training) for mlp in self._stacks], axis=1)
        h = ops.einsum("bd,kdu->bku", x, self.kernels[0]) + self.biases[0]
        h = self._apply(h, training)
        for kernel, bias in zip(self.kernels[1:], self.biases[1:]):
            h = self._apply(ops.einsum("bkd,kdu->bku", h, kernel) + bias, training)
        return h

    def _apply(self, h, training):
        h = self._act(h)
        return self._drop(h, training=training) if self._drop is not None else h

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.experts, self.units[-1])

    def get_config(self):
        return {**super().get_config(), "experts": self.experts, "units": self.units,
                "activation": self.activation, "dropout": self.dropout,
                "implementation": self.implementation}


@keras.saving.register_keras_serializable(package="composer")
class Gate(keras.layers.Layer):
    """Softmax weights over K experts: ``softmax(Dense_K(MLP(x)) / temperature)``.

    Input shape: ``(batch, d)``. Output shape: ``(batch, K)``, rows summing to 1.

    Example:
        >>> Gate(3)(np.ones((2, 5))).shape
        (2, 3)
    """

    def __init__(self, experts, hidden=(), temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.experts = int(experts)
        self.hidden = [int(u) for u in hidden]
        self.temperature = float(temperature)

    def build(self, input_shape):
        self._mlp = MLP([*self.hidden, self.experts], activation="relu", output_activation="linear",
                        dtype=self.dtype_policy, name="logits")
        self._mlp.build(input_shape)

    def call(self, x, training=None):
        return ops.softmax(self._mlp(x, training=training) / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.experts)

    def get_config(self):
        return {**super().get_config(), "experts": self.experts, "hidden": self.hidden,
                "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="composer")
class Mixture(keras.layers.Layer):
    """``sum_k w_k e_k`` with the experts of several pools concatenated in order.

    Input: ``[weights (batch, K), pool_1 (batch, K_1, u), ...]`` with ``K = sum K_i``.
    Output shape: ``(batch, u)``.
    """

    def call(self, inputs):
        weights, pools = inputs[0], inputs[1:]
        experts = pools[0] if len(pools) == 1 else ops.concatenate(pools, axis=1)
        return ops.einsum("bk,bku->bu", weights, experts)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[1][-1])
