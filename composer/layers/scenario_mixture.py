"""Layers of HAMUR's hyper adapter and of M3oE's scenario-routed gate and two-level fusion.

Every layer routes by the batch's scenario ids (``(batch, 1)`` int, 0..S-1) without splitting
or reordering the batch, as the layers of :mod:`composer.layers.scenario` do.
"""
from __future__ import annotations

import keras
from keras import ops

from .scenario import ROUTINGS, PartitionedNorm, route_dense, scenario_one_hot


def _own(x, kernel, one_hot):
    """x (B, i) times each sample's own slice of kernel (S, i, o): every slice, then the own one."""
    return ops.einsum("bs,bso->bo", one_hot, ops.einsum("bi,sio->bso", x, kernel))


def balance_weights(one_hot, own_logits):
    """``β·one_hot + (1 − β)/(N − 1)·(1 − one_hot)`` over N ≥ 2 experts, with
    ``β = softmax(own_logits)[0]``: the own expert gets β, the others share the rest equally;
    without logits (no balance, or one expert) the own expert alone."""
    if own_logits is None:
        return one_hot
    own = ops.softmax(own_logits)[0]
    return own * one_hot + (1.0 - own) / (one_hot.shape[-1] - 1) * (1.0 - one_hot)


@keras.saving.register_keras_serializable(package="composer")
class HyperAdapter(keras.layers.Layer):
    """HAMUR's hyper adapter (Li, Yan, Zhao, Wang, Chen, Guo, Tang, "HAMUR: Hyper Adapter for
    Multi-Domain Recommendation", CIKM 2023).

    A bottleneck adapter whose weights are generated per sample: with the instance matrix
    ``Z`` (``rank x rank``, from the shared hyper-network) and the sample's scenario s,
    ``down = act(((h U_s) Z) V_s + b_s)`` (width ``bottleneck``), ``up = ((down U'_s) Z) V'_s +
    b'_s`` (width of h), so the adapter's weights are ``U_s Z V_s`` and ``U'_s Z V'_s`` (the
    paper's low-rank factorisation) and no ``d x bottleneck`` matrix exists per sample. The
    up-projection goes through the domain norm (per-scenario batch statistics in training,
    per-scenario moving statistics at inference: :class:`PartitionedNorm`) and is added to
    ``h``: ``out = h + DN(up)``.

    Args:
        scenarios: number of scenarios S.
        bottleneck: width of the down-projection.
        per_scenario: one set of factors and biases per scenario (a domain-specific adapter);
            ``False`` shares them (the official code's choice, whose backbone is per domain).
        activation: activation between the projections (the official code: sigmoid).
        domain_norm: normalise the up-projection per scenario before the residual sum.
        momentum, epsilon: the domain norm's moving-average momentum and variance epsilon.

    Inputs: ``[h (batch, d), instance (batch, rank * rank), scenario (batch, 1) int]``.
    Output: ``(batch, d)``.

    Example:
        >>> HyperAdapter(3, 8)([np.ones((2, 16)), np.ones((2, 16)), np.array([[0], [2]])]).shape
        (2, 16)
    """

    def __init__(self, scenarios, bottleneck, per_scenario=True, activation="sigmoid",
                 domain_norm=True, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.scenarios = int(scenarios)
        self.bottleneck = int(bottleneck)
        self.per_scenario = bool(per_scenario)
        self.activation = activation
        self.domain_norm = bool(domain_norm)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        d, square = int(input_shape[0][-1]), int(input_shape[1][-1])
        k = int(round(square ** 0.5))
        if k * k != square:
            raise ValueError(f"the instance input has width {square}, not a square rank * rank")
        self.rank = k
        s = self.scenarios if self.per_scenario else 1
        b = self.bottleneck

        def factor(name, shape):
            return self.add_weight(name=name, shape=(s, *shape), initializer="glorot_uniform")

        self.down_u, self.down_v = factor("down_u", (d, k)), factor("down_v", (k, b))
        self.down_bias = self.add_weight(name="down_bias", shape=(s, b), initializer="zeros")
        self.up_u, self.up_v = factor("up_u", (b, k)), factor("up_v", (k, d))
        self.up_bias = self.add_weight(name="up_bias", shape=(s, d), initializer="zeros")
        self._act = keras.activations.get(self.activation)
        self._norm = None
        if self.domain_norm:
            self._norm = PartitionedNorm(self.scenarios, momentum=self.momentum, epsilon=self.epsilon,
                                         dtype=self.dtype_policy, name="domain_norm")
            self._norm.build([(None, d), (None, 1)])

    def _project(self, x, u, z, v, bias, one_hot):
        if not self.per_scenario:
            return ops.matmul(ops.einsum("bk,bkj->bj", ops.matmul(x, u[0]), z), v[0]) + bias[0]
        a = ops.einsum("bk,bkj->bj", _own(x, u, one_hot), z)
        return _own(a, v, one_hot) + ops.matmul(one_hot, bias)

    def call(self, inputs, training=None):
        h, instance, scenario = inputs
        z = ops.reshape(instance, (-1, self.rank, self.rank))
        one_hot = scenario_one_hot(scenario, self.scenarios, h.dtype)
        down = self._act(self._project(h, self.down_u, z, self.down_v, self.down_bias, one_hot))
        up = self._project(down, self.up_u, z, self.up_v, self.up_bias, one_hot)
        if self._norm is not None:
            up = self._norm([up, scenario], training=training)
        return h + up

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "scenarios": self.scenarios, "bottleneck": self.bottleneck,
                "per_scenario": self.per_scenario, "activation": self.activation,
                "domain_norm": self.domain_norm, "momentum": self.momentum, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="composer")
class ScenarioGate(keras.layers.Layer):
    """One softmax gate per scenario: ``softmax((x W_s + c_s) / temperature)`` for a sample of
    scenario s (M3oE's gate per domain and task over the shared experts).

    Args:
        scenarios: number of scenarios S.
        experts: number of experts K the weights cover.
        temperature: softmax temperature.
        routing: ``all_then_own`` or ``per_sample`` (as :class:`composer.layers.scenario.ScenarioTowers`).

    Inputs: ``[x (batch, d), scenario (batch, 1) int]``. Output: ``(batch, K)``, rows summing to 1.

    Example:
        >>> ScenarioGate(3, 4)([np.ones((2, 5)), np.array([[0], [2]])]).shape
        (2, 4)
    """

    def __init__(self, scenarios, experts, temperature=1.0, routing="all_then_own", **kwargs):
        super().__init__(**kwargs)
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
        self.scenarios = int(scenarios)
        self.experts = int(experts)
        self.temperature = float(temperature)
        self.routing = routing

    def build(self, input_shape):
        d = int(input_shape[0][-1])
        self.kernel = self.add_weight(name="kernel", shape=(self.scenarios, d, self.experts),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.scenarios, self.experts), initializer="zeros")

    def call(self, inputs):
        x, scenario = inputs
        one_hot = scenario_one_hot(scenario, self.scenarios, x.dtype)
        logits = route_dense(x, self.kernel, self.bias, scenario, one_hot, self.routing)
        return ops.softmax(logits / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.experts)

    def get_config(self):
        return {**super().get_config(), "scenarios": self.scenarios, "experts": self.experts,
                "temperature": self.temperature, "routing": self.routing}


@keras.saving.register_keras_serializable(package="composer")
class M3oEFusion(keras.layers.Layer):
    """M3oE's two-level fusion for one task (Zhang, Liu, Yu, Cai, Zhao, Zhang, Liu, Liu, Zhao,
    Hu, Jiang, Gai, "M3oE: Multi-Domain Multi-Task Mixture-of Experts Recommendation
    Framework", SIGIR 2024).

    Level 1 balances each expert mixture between the sample's own expert and the others: the
    domain mixture of a scenario-s sample is ``β_d D_s + (1 − β_d)/(S − 1) Σ_{j≠s} D_j`` and the
    task mixture of task t ``β_t T_t + (1 − β_t)/(T − 1) Σ_{j≠t} T_j``, with
    ``β = softmax([own, others])[0]`` learned. Level 2 fuses the three mixtures,
    ``α_1 shared + α_2 domain + α_3 task`` with ``α = softmax(fusion_logits)`` learned. The
    paper searches α and β by bilevel AutoML; here they are ordinary weights trained with the
    model (see ``m3oe`` in :mod:`composer.blocks.scenario_mixture`).

    Args:
        task_index: this task's own expert in the task experts.
        domain_balance: learn β_d; ``False`` reads only the own domain expert (β_d = 1).
        task_balance: learn β_t; ``False`` reads only the own task expert (β_t = 1).

    Inputs: ``[shared (batch, u), domain experts (batch, S, u), task experts (batch, T, u),
    scenario (batch, 1) int]``. Output: ``(batch, u)``.

    Example:
        >>> M3oEFusion(0)([np.ones((2, 4)), np.ones((2, 3, 4)), np.ones((2, 2, 4)), np.array([[0], [2]])]).shape
        (2, 4)
    """

    def __init__(self, task_index, domain_balance=True, task_balance=True, **kwargs):
        super().__init__(**kwargs)
        self.task_index = int(task_index)
        self.domain_balance = bool(domain_balance)
        self.task_balance = bool(task_balance)

    def build(self, input_shape):
        self.scenarios, self.tasks = int(input_shape[1][1]), int(input_shape[2][1])
        self.fusion_logits = self.add_weight(name="fusion_logits", shape=(3,), initializer="zeros")
        self.domain_logits = self.task_logits = None
        if self.domain_balance and self.scenarios > 1:
            self.domain_logits = self.add_weight(name="domain_balance_logits", shape=(2,), initializer="zeros")
        if self.task_balance and self.tasks > 1:
            self.task_logits = self.add_weight(name="task_balance_logits", shape=(2,), initializer="zeros")

    def weights_by_level(self):
        """The learned weights as numbers: α (shared, domain, task) and β_d, β_t (own share)."""
        alpha = ops.softmax(self.fusion_logits)
        own = {name: (ops.softmax(logits)[0] if logits is not None else ops.ones(()))
               for name, logits in (("domain", self.domain_logits), ("task", self.task_logits))}
        return alpha, own["domain"], own["task"]

    def call(self, inputs):
        shared, domain, task, scenario = inputs
        d_hot = scenario_one_hot(scenario, self.scenarios, shared.dtype)
        t_hot = ops.one_hot(ops.full((1,), self.task_index, "int32"), self.tasks, dtype=shared.dtype)
        d_w, t_w = balance_weights(d_hot, self.domain_logits), balance_weights(t_hot, self.task_logits)
        alpha = ops.softmax(self.fusion_logits)
        return (alpha[0] * shared + alpha[1] * ops.einsum("bs,bsu->bu", d_w, domain)
                + alpha[2] * ops.einsum("t,btu->bu", t_w[0], task))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "task_index": self.task_index,
                "domain_balance": self.domain_balance, "task_balance": self.task_balance}
