"""Scenario-routed layers: every sample uses its own scenario's parameters, in batch order.

Each layer takes the batch's scenario ids (``(batch, 1)`` int, 0..S-1) as its last input. Routing
never splits or reorders the batch (no boolean masks): a layer either computes every scenario's
result and keeps each sample's own (``all_then_own``, a one-hot contraction) or gathers each
sample's parameters (``per_sample``). Both are fixed-shape, so they compile under XLA.
``bench/star_routing.py`` measures them against a per-scenario masked loop.
"""
from __future__ import annotations

import keras
from keras import ops

ROUTINGS = ("all_then_own", "per_sample")


def scenario_one_hot(scenario, count, dtype="float32"):
    """(B, 1) or (B,) integer ids -> (B, S) one-hot rows."""
    return ops.one_hot(ops.reshape(ops.cast(scenario, "int32"), (-1,)), count, dtype=dtype)


def route_dense(x, kernel, bias, scenario, one_hot, routing):
    """x (B, i) through each sample's own scenario slice of kernel (S, i, o) and bias (S, o)."""
    if routing == "per_sample":
        ids = ops.reshape(ops.cast(scenario, "int32"), (-1,))
        return ops.einsum("bi,bio->bo", x, ops.take(kernel, ids, axis=0)) + ops.take(bias, ids, axis=0)
    every = ops.einsum("bi,sio->bso", x, kernel) + bias[None]
    return ops.einsum("bs,bso->bo", one_hot, every)


class _Routed(keras.layers.Layer):
    """Shared bits: the scenario count, the routing and a stack of routed dense layers."""

    def __init__(self, scenarios, units, activation="relu", output_activation="same",
                 routing="all_then_own", **kwargs):
        super().__init__(**kwargs)
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
        self.scenarios = int(scenarios)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.output_activation = output_activation
        self.routing = routing

    def _activation(self, i):
        last = i == len(self.units) - 1
        name = self.activation if not last or self.output_activation == "same" else self.output_activation
        return keras.activations.get(name)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units[-1])

    def get_config(self):
        return {**super().get_config(), "scenarios": self.scenarios, "units": self.units,
                "activation": self.activation, "output_activation": self.output_activation,
                "routing": self.routing}


@keras.saving.register_keras_serializable(package="composer")
class ScenarioTowers(_Routed):
    """Split & Merge: one MLP per scenario, each sample through its own scenario's MLP, outputs
    in the original batch order. The S MLPs are stored as stacked kernels ``(S, in, out)``.

    Args:
        scenarios: number of scenarios S.
        units: widths of the layers (the last is the output width; 1 for a logit).
        activation: activation of the hidden layers.
        output_activation: ``"same"`` or an activation for the last layer (``"linear"``).
        routing: ``all_then_own`` or ``per_sample`` (same result; see the module docstring).

    Inputs: ``[x (batch, d), scenario (batch, 1) int]``. Output: ``(batch, units[-1])``.

    Example:
        >>> ScenarioTowers(3, [8, 1], output_activation="linear")([np.ones((2, 4)), np.array([[0], [2]])]).shape
        (2, 1)
    """

    def build(self, input_shape):
        prev = input_shape[0][-1]
        self.kernels, self.biases = [], []
        for i, width in enumerate(self.units):
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(self.scenarios, prev, width),
                                                initializer="glorot_uniform"))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(self.scenarios, width),
                                               initializer="zeros"))
            prev = width

    def call(self, inputs):
        x, scenario = inputs
        one_hot = scenario_one_hot(scenario, self.scenarios, x.dtype)
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            x = self._activation(i)(route_dense(x, kernel, bias, scenario, one_hot, self.routing))
        return x


@keras.saving.register_keras_serializable(package="composer")
class StarFCN(_Routed):
    """STAR's star-topology fully-connected network (Sheng et al., "One Model to Serve All:
    Star Topology Adaptive Recommender for Multi-Domain CTR Prediction", CIKM 2021).

    Layer l of scenario p uses the weight ``W_p ⊙ W`` (scenario ⊙ shared) and the bias
    ``b_p + b``: ``out = act((W_p ⊙ W)ᵀ in + b_p + b)``. Scenario weights start at one and
    scenario biases at zero, so training starts from the shared network.

    Args:
        scenarios: number of scenarios S.
        units: widths of the layers (end with 1 for a logit).
        activation, output_activation, routing: as in :class:`ScenarioTowers`.

    Inputs: ``[x (batch, d), scenario (batch, 1) int]``. Output: ``(batch, units[-1])``.
    """

    def build(self, input_shape):
        prev = input_shape[0][-1]
        self.shared_kernels, self.shared_biases = [], []
        self.scenario_kernels, self.scenario_biases = [], []
        for i, width in enumerate(self.units):
            self.shared_kernels.append(self.add_weight(name=f"shared_kernel_{i}", shape=(prev, width),
                                                       initializer="glorot_uniform"))
            self.shared_biases.append(self.add_weight(name=f"shared_bias_{i}", shape=(width,),
                                                      initializer="zeros"))
            self.scenario_kernels.append(self.add_weight(
                name=f"scenario_kernel_{i}", shape=(self.scenarios, prev, width), initializer="ones"))
            self.scenario_biases.append(self.add_weight(
                name=f"scenario_bias_{i}", shape=(self.scenarios, width), initializer="zeros"))
            prev = width

    def effective_weights(self, i):
        """Layer i's per-scenario (kernel (S, in, out), bias (S, out))."""
        return (self.scenario_kernels[i] * self.shared_kernels[i][None],
                self.scenario_biases[i] + self.shared_biases[i][None])

    def call(self, inputs):
        x, scenario = inputs
        one_hot = scenario_one_hot(scenario, self.scenarios, x.dtype)
        for i in range(len(self.units)):
            kernel, bias = self.effective_weights(i)
            x = self._activation(i)(route_dense(x, kernel, bias, scenario, one_hot, self.routing))
        return x


@keras.saving.register_keras_serializable(package="composer")
class PartitionedNorm(keras.layers.Layer):
    """STAR's partitioned normalization: ``(γ ⊙ γ_p)(x − E_p)/√(Var_p + ε) + (β + β_p)``.

    In training, E_p and Var_p are the batch statistics of the batch's scenario-p rows (every
    scenario present in a mixed batch gets its own); each scenario keeps its own moving mean and
    variance, updated only from batches that hold its rows, and used at inference.

    Args:
        scenarios: number of scenarios S.
        momentum: moving-average momentum (as ``keras.layers.BatchNormalization``).
        epsilon: added to the variance.

    Inputs: ``[x (batch, d), scenario (batch, 1) int]``. Output: ``(batch, d)``.
    """

    def __init__(self, scenarios, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.scenarios = int(scenarios)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        d, s = input_shape[0][-1], self.scenarios
        self.gamma = self.add_weight(name="gamma", shape=(d,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(d,), initializer="zeros")
        self.scenario_gamma = self.add_weight(name="scenario_gamma", shape=(s, d), initializer="ones")
        self.scenario_beta = self.add_weight(name="scenario_beta", shape=(s, d), initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(s, d), initializer="zeros",
                                           trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(s, d), initializer="ones",
                                               trainable=False)

    def call(self, inputs, training=None):
        x, scenario = inputs
        one_hot = scenario_one_hot(scenario, self.scenarios, x.dtype)
        if training:
            count = ops.sum(one_hot, axis=0)[:, None]  # (S, 1)
            per = ops.maximum(count, 1.0)
            mean = ops.matmul(ops.transpose(one_hot), x) / per
            centred = x - ops.matmul(one_hot, mean)
            variance = ops.matmul(ops.transpose(one_hot), ops.square(centred)) / per
            present = count > 0
            m = self.momentum
            # tensors, not the variables: JAX refuses a Variable as an argument of ops.where
            old_mean = ops.convert_to_tensor(self.moving_mean)
            old_variance = ops.convert_to_tensor(self.moving_variance)
            self.moving_mean.assign(ops.where(present, m * old_mean + (1 - m) * mean, old_mean))
            self.moving_variance.assign(ops.where(present, m * old_variance + (1 - m) * variance,
                                                  old_variance))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        mean_b, var_b = ops.matmul(one_hot, mean), ops.matmul(one_hot, variance)
        gamma = self.gamma[None] * ops.matmul(one_hot, self.scenario_gamma)
        beta = self.beta[None] + ops.matmul(one_hot, self.scenario_beta)
        return gamma * (x - mean_b) / ops.sqrt(var_b + self.epsilon) + beta

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "scenarios": self.scenarios, "momentum": self.momentum,
                "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="composer")
class HmoeFusion(keras.layers.Layer):
    """HMoE's fusion of every scenario's score (Li et al., "Improving Multi-Scenario Learning to
    Rank in E-commerce by Exploiting Task Relationships in the Label Space", CIKM 2020).

    For a sample of scenario s: ``out = W_s(x)·S_s + Σ_{j≠s} W_j(x)·sg(S_j)`` with
    ``S_j = σ(logit_j)`` the scenario-j tower's probability and ``W(x) = softmax(x A + c)`` over
    scenarios; with ``per_scenario_weights`` each scenario has its own A, c. The stop-gradient
    means a scenario-s sample never updates another scenario's tower.

    Args:
        scenarios: number of scenarios S.
        per_scenario_weights: one fusion-weight net per scenario instead of one shared.

    Inputs: ``[x (batch, d), scenario (batch, 1) int, logit_0 (batch, 1), ..., logit_{S-1}]``.
    Output: ``(batch, 1)`` probability.
    """

    def __init__(self, scenarios, per_scenario_weights=False, **kwargs):
        super().__init__(**kwargs)
        self.scenarios = int(scenarios)
        self.per_scenario_weights = bool(per_scenario_weights)

    def build(self, input_shape):
        s, d = self.scenarios, input_shape[0][-1]
        nets = s if self.per_scenario_weights else 1
        self.kernel = self.add_weight(name="kernel", shape=(nets, d, s), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(nets, s), initializer="zeros")

    def call(self, inputs):
        x, scenario, *logits = inputs
        one_hot = scenario_one_hot(scenario, self.scenarios, x.dtype)
        weights = self.fusion_weights(inputs)
        scores = ops.sigmoid(ops.concatenate(logits, axis=-1))  # (B, S)
        scores = one_hot * scores + (1.0 - one_hot) * ops.stop_gradient(scores)
        return ops.sum(weights * scores, axis=-1, keepdims=True)

    def fusion_weights(self, inputs):
        """``(batch, S)`` softmax weights ``W(x)`` over the scenario towers; inputs as for ``call``
        (the logits are not read)."""
        x, scenario = inputs[0], inputs[1]
        if self.per_scenario_weights:
            one_hot = scenario_one_hot(scenario, self.scenarios, x.dtype)
            return ops.softmax(route_dense(x, self.kernel, self.bias, scenario, one_hot, "all_then_own"))
        return ops.softmax(ops.matmul(x, self.kernel[0]) + self.bias[0])

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "scenarios": self.scenarios,
                "per_scenario_weights": self.per_scenario_weights}


@keras.saving.register_keras_serializable(package="composer")
class Lhuc(keras.layers.Layer):
    """LHUC-style scenario scaling (Swietojanski & Renals, "Learning Hidden Unit Contributions
    for Unsupervised Speaker Adaptation of Neural Network Acoustic Models", SLT 2014, as used in
    industrial multi-scenario rankers): a generator net over the condition (scenario features)
    gives one scale in [0, 2] (``2·σ``) per field (input ``(batch, F, dim)``) or per unit (input
    ``(batch, D)``); the input is multiplied by its scales and returned flat.

    Args:
        hidden: widths of the generator's hidden ReLU layers.

    Inputs: ``[x (batch, F, dim) or (batch, D), condition (batch, c)]``.
    Output: ``(batch, F·dim)`` or ``(batch, D)``.
    """

    def __init__(self, hidden=(), **kwargs):
        super().__init__(**kwargs)
        self.hidden = [int(u) for u in hidden]

    def build(self, input_shape):
        x_shape, c_shape = input_shape
        scales = x_shape[1]
        self._generator = [keras.layers.Dense(u, activation="relu", dtype=self.dtype_policy, name=f"hidden_{i}")
                        for i, u in enumerate(self.hidden)]
        self._generator.append(keras.layers.Dense(scales, dtype=self.dtype_policy, name="scales"))
        shape = tuple(c_shape)
        for layer in self._generator:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs):
        x, condition = inputs
        h = condition
        for layer in self._generator:
            h = layer(h)
        scale = 2.0 * ops.sigmoid(h)
        if len(x.shape) == 3:
            return ops.reshape(x * scale[:, :, None], (-1, x.shape[1] * x.shape[2]))
        return x * scale

    def compute_output_shape(self, input_shape):
        x_shape = input_shape[0]
        if len(x_shape) == 3:
            return (x_shape[0], x_shape[1] * x_shape[2])
        return tuple(x_shape)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}
