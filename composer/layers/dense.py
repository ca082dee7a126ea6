"""Dense layers: the MLP used by mlp, tower and gate blocks, the DCN-v2 cross network, and
stop-gradient."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="composer")
class MLP(keras.layers.Layer):
    """Dense -> [BatchNormalization] -> activation -> [Dropout], once per width.

    Args:
        units: widths of the layers.
        activation: activation of every layer (and of the last unless ``output_activation``).
        dropout: dropout rate after each hidden layer.
        batch_norm: batch normalisation before each hidden activation.
        l2: L2 penalty on every kernel.
        output_activation: ``"same"`` treats the last layer like the others; any activation
            name makes the last layer a plain Dense with that activation (``"linear"`` for logits).

    Input shape: ``(batch, d)``. Output shape: ``(batch, units[-1])``.

    Example:
        >>> MLP([16, 1], output_activation="linear")(np.ones((2, 4))).shape
        (2, 1)
    """

    def __init__(self, units, activation="relu", dropout=0.0, batch_norm=False, l2=0.0,
                 output_activation="same", **kwargs):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.l2 = float(l2)
        self.output_activation = output_activation

    def build(self, input_shape):
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        self._steps = []
        shape = tuple(input_shape)
        for i, width in enumerate(self.units):
            plain = i == len(self.units) - 1 and self.output_activation != "same"
            steps = []
            if plain:
                steps.append(keras.layers.Dense(width, activation=self.output_activation,
                                                kernel_regularizer=reg, dtype=self.dtype_policy, name=f"dense_{i}"))
            else:
                steps.append(keras.layers.Dense(width, kernel_regularizer=reg, dtype=self.dtype_policy, name=f"dense_{i}"))
                if self.batch_norm:
                    steps.append(keras.layers.BatchNormalization(dtype=self.dtype_policy, name=f"batch_norm_{i}"))
                steps.append(keras.layers.Activation(self.activation, dtype=self.dtype_policy, name=f"activation_{i}"))
                if self.dropout:
                    steps.append(keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name=f"dropout_{i}"))
            for step in steps:
                step.build(shape)
                shape = step.compute_output_shape(shape)
            self._steps.extend(steps)

    def call(self, x, training=None):
        for step in self._steps:
            if isinstance(step, (keras.layers.Dropout, keras.layers.BatchNormalization)):
                x = step(x, training=training)
            else:
                x = step(x)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "dropout": self.dropout, "batch_norm": self.batch_norm, "l2": self.l2,
                "output_activation": self.output_activation}


@keras.saving.register_keras_serializable(package="composer")
class CrossNetwork(keras.layers.Layer):
    """DCN-v2's cross network (Wang et al., "DCN V2", WWW 2021): explicit feature crosses of
    bounded degree, ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` for ``l = 0..layers-1``.

    With ``low_rank = r`` each ``W_l`` is the product ``U_l V_l^T`` of two ``(d, r)`` matrices
    (the paper's cost-efficient form), so a layer has ``2 d r + d`` weights instead of
    ``d^2 + d``. Written here, not taken from a library: Keras has no cross layer, and
    TensorFlow Recommenders' ``Cross`` is TensorFlow-only.

    Args:
        layers: number of cross layers (the crosses' highest degree is ``layers + 1``).
        low_rank: rank of each ``W_l``; ``None`` for full ``(d, d)`` matrices.
        l2: L2 penalty on the kernels.

    Input shape: ``(batch, d)``. Output shape: ``(batch, d)``.

    Example:
        >>> CrossNetwork(2)(np.ones((3, 5))).shape
        (3, 5)
    """

    def __init__(self, layers=2, low_rank=None, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(layers)  # not `self.layers`: Keras reads that as a list of sub-layers
        self.low_rank = None if low_rank is None else int(low_rank)
        self.l2 = float(l2)

    def build(self, input_shape):
        d = int(input_shape[-1])
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        self.kernels, self.biases = [], []
        for i in range(self.num_layers):
            if self.low_rank is None:
                kernel = [self.add_weight(name=f"kernel_{i}", shape=(d, d), initializer="glorot_uniform",
                                          regularizer=reg)]
            else:
                kernel = [self.add_weight(name=f"{part}_{i}", shape=(d, self.low_rank),
                                          initializer="glorot_uniform", regularizer=reg)
                          for part in ("v", "u")]
            self.kernels.append(kernel)
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(d,), initializer="zeros"))

    def call(self, x0):
        x = x0
        for kernel, bias in zip(self.kernels, self.biases):
            if len(kernel) == 1:
                wx = ops.matmul(x, kernel[0])
            else:
                v, u = kernel
                wx = ops.matmul(ops.matmul(x, v), ops.transpose(u))
            x = x0 * (wx + bias) + x
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "layers": self.num_layers, "low_rank": self.low_rank, "l2": self.l2}


@keras.saving.register_keras_serializable(package="composer")
class StopGradient(keras.layers.Layer):
    """Identity in the forward pass; blocks every gradient in the backward pass."""

    def call(self, x):
        return ops.stop_gradient(x)

    def compute_output_shape(self, input_shape):
        return input_shape
