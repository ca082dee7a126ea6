"""Scenario-adaptive layers: SAR-Net's scenario-aware attention, scenario transform and
scenario experts; AdaSparse's domain-pruned MLP; AdaptDHM's distribution-clustered towers.

Every routed layer keeps the batch in order and computes each sample from its own row only
(every scenario's or cluster's result, each sample keeping its own through a one-hot
contraction, as :mod:`composer.layers.scenario`), so a mixed batch gives each sample what a
batch of its own scenario gives it.
"""
from __future__ import annotations

import keras
from keras import ops

from .experts import ExpertPool
from .scenario import ScenarioTowers, StarFCN, scenario_one_hot

PRUNER_FORMS = ("scaling", "binarization", "fusion")
TOWER_KINDS = ("star", "separate")


@keras.saving.register_keras_serializable(package="composer")
class ScenarioAwareAttention(keras.layers.Layer):
    """SAR-Net's scenario-aware attention (Shen et al., "SAR-Net: A Scenario-Aware Ranking
    Network for Personalized Fair Recommendation in Hundreds of Travel Scenarios", CIKM 2021):
    the scenario embedding enters both the query and every key, so which behaviours (or feature
    fields) matter depends on the scenario the sample is shown in.

    Per head ``h``: ``q = W_q [s, c]``, ``k_j = W_k [e_j, s]``, ``v_j = W_v e_j``,
    ``a_j = softmax_j(q · k_j / sqrt(key_dim))`` over the unmasked positions, output
    ``sum_j a_j v_j``; the heads are concatenated. ``s`` is the scenario embedding, ``c`` an
    optional candidate (the target item), ``e_j`` the j-th behaviour (or field) embedding.
    A row with no unmasked position gives zeros.

    Args:
        heads: attention heads.
        key_dim: width of each head's queries, keys and values.
        candidate: a candidate vector ``c`` follows the scenario embedding in the inputs.
        masked: a ``(batch, L)`` mask (1 at real positions) comes last in the inputs; without
            it every position counts (feature fields).

    Inputs: ``[items (batch, L, d), scenario (batch, s)]``, then ``candidate (batch, c)`` with
    ``candidate``, then ``mask (batch, L)`` with ``masked``. Output: ``(batch, heads * key_dim)``.

    Example:
        >>> ScenarioAwareAttention(2, 4)([np.ones((2, 5, 8)), np.ones((2, 3))]).shape
        (2, 8)
    """

    def __init__(self, heads=2, key_dim=8, candidate=False, masked=False, **kwargs):
        super().__init__(**kwargs)
        self.heads = int(heads)
        self.key_dim = int(key_dim)
        self.candidate = bool(candidate)
        self.masked = bool(masked)

    def build(self, input_shape):
        items, scenario = input_shape[0], input_shape[1]
        d, s = int(items[-1]), int(scenario[-1])
        q_in = s + (int(input_shape[2][-1]) if self.candidate else 0)
        hk = self.heads * self.key_dim
        self.query_kernel = self.add_weight(name="query_kernel", shape=(q_in, hk), initializer="glorot_uniform")
        self.query_bias = self.add_weight(name="query_bias", shape=(hk,), initializer="zeros")
        self.key_kernel = self.add_weight(name="key_kernel", shape=(d + s, hk), initializer="glorot_uniform")
        self.key_bias = self.add_weight(name="key_bias", shape=(hk,), initializer="zeros")
        self.value_kernel = self.add_weight(name="value_kernel", shape=(d, hk), initializer="glorot_uniform")
        self.value_bias = self.add_weight(name="value_bias", shape=(hk,), initializer="zeros")

    def attention_weights(self, inputs):
        """``(batch, heads, L)`` attention weights; inputs as for ``call``."""
        items, scenario = inputs[0], inputs[1]
        length = items.shape[1]
        q_in = ops.concatenate([scenario, inputs[2]], axis=-1) if self.candidate else scenario
        q = ops.reshape(ops.matmul(q_in, self.query_kernel) + self.query_bias, (-1, self.heads, self.key_dim))
        tiled = ops.repeat(ops.expand_dims(scenario, 1), length, axis=1)
        k = ops.matmul(ops.concatenate([items, tiled], axis=-1), self.key_kernel) + self.key_bias
        k = ops.reshape(k, (-1, length, self.heads, self.key_dim))
        scores = ops.einsum("bhk,blhk->bhl", q, k) / (self.key_dim ** 0.5)
        if not self.masked:
            return ops.softmax(scores, axis=-1)
        valid = ops.expand_dims(ops.cast(inputs[-1], scores.dtype) > 0, 1)  # (B, 1, L)
        weights = ops.softmax(ops.where(valid, scores, ops.full_like(scores, -1e9)), axis=-1)
        return ops.where(valid, weights, ops.zeros_like(weights))  # an empty row: all zeros

    def call(self, inputs):
        items = inputs[0]
        weights = self.attention_weights(inputs)
        v = ops.matmul(items, self.value_kernel) + self.value_bias
        v = ops.reshape(v, (-1, items.shape[1], self.heads, self.key_dim))
        out = ops.einsum("bhl,blhk->bhk", weights, v)
        return ops.reshape(out, (-1, self.heads * self.key_dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.heads * self.key_dim)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "key_dim": self.key_dim,
                "candidate": self.candidate, "masked": self.masked}


@keras.saving.register_keras_serializable(package="composer")
class ScenarioTransform(keras.layers.Layer):
    """SAR-Net's scenario-specific linear transformation: ``x ⊙ w_s + b_s`` with the sample's
    own scenario's ``w_s`` (starts at one) and ``b_s`` (starts at zero).

    Args:
        scenarios: number of scenarios S.

    Inputs: ``[x (batch, d), scenario (batch, 1) int]``. Output: ``(batch, d)``.
    """

    def __init__(self, scenarios, **kwargs):
        super().__init__(**kwargs)
        self.scenarios = int(scenarios)

    def build(self, input_shape):
        d = int(input_shape[0][-1])
        self.scale = self.add_weight(name="scale", shape=(self.scenarios, d), initializer="ones")
        self.shift = self.add_weight(name="shift", shape=(self.scenarios, d), initializer="zeros")

    def call(self, inputs):
        x, scenario = inputs
        one_hot = scenario_one_hot(scenario, self.scenarios, x.dtype)
        return x * ops.matmul(one_hot, self.scale) + ops.matmul(one_hot, self.shift)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "scenarios": self.scenarios}


@keras.saving.register_keras_serializable(package="composer")
class ScenarioExperts(keras.layers.Layer):
    """SAR-Net's experts and gate: ``shared`` experts every sample uses, ``specific`` experts
    per scenario of which a sample uses only its own scenario's, and a gate over those
    ``shared + specific`` experts whose weights come from the gate input (the scenario
    embedding): ``out = sum_k softmax(W_g g + b_g)_k e_k``.

    The experts are two :class:`~composer.layers.experts.ExpertPool` s (the shared ones, and
    every scenario's side by side); every scenario's experts are computed and each sample keeps
    its own (one-hot), so another scenario's experts never get a sample's gradient.

    Args:
        scenarios: number of scenarios S.
        shared: number of shared experts.
        specific: number of experts per scenario.
        units: widths of each expert's layers.
        activation: activation of every expert layer.

    Inputs: ``[x (batch, d), gate (batch, g), scenario (batch, 1) int]``.
    Output: ``(batch, units[-1])``.
    """

    def __init__(self, scenarios, shared=4, specific=2, units=(32,), activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.scenarios = int(scenarios)
        self.shared = int(shared)
        self.specific = int(specific)
        self.units = [int(u) for u in units]
        self.activation = activation

    def build(self, input_shape):
        d, g = int(input_shape[0][-1]), int(input_shape[1][-1])
        self.shared_experts = ExpertPool(self.shared, self.units, activation=self.activation,
                                         dtype=self.dtype_policy, name="shared")
        self.specific_experts = ExpertPool(self.scenarios * self.specific, self.units, activation=self.activation,
                                           dtype=self.dtype_policy, name="specific")  # scenario s: s*specific, ...
        for pool in (self.shared_experts, self.specific_experts):
            pool.build((None, d))
        self.gate_kernel = self.add_weight(name="gate_kernel", shape=(g, self.shared + self.specific),
                                           initializer="glorot_uniform")
        self.gate_bias = self.add_weight(name="gate_bias", shape=(self.shared + self.specific,),
                                         initializer="zeros")

    def expert_weights(self, inputs):
        """``(batch, shared + specific)`` gate weights; inputs as for ``call``."""
        return ops.softmax(ops.matmul(inputs[1], self.gate_kernel) + self.gate_bias, axis=-1)

    def expert_outputs(self, inputs):
        """``(batch, shared + specific, units[-1])``: the shared experts, then the sample's own
        scenario's experts."""
        x, _, scenario = inputs
        every = ops.reshape(self.specific_experts(x), (-1, self.scenarios, self.specific, self.units[-1]))
        own = ops.einsum("bs,bsku->bku", scenario_one_hot(scenario, self.scenarios, x.dtype), every)
        return ops.concatenate([self.shared_experts(x), own], axis=1)

    def call(self, inputs):
        weights = self.expert_weights(inputs)
        return ops.einsum("bk,bku->bu", weights, self.expert_outputs(inputs))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units[-1])

    def get_config(self):
        return {**super().get_config(), "scenarios": self.scenarios, "shared": self.shared,
                "specific": self.specific, "units": self.units, "activation": self.activation}


@keras.saving.register_keras_serializable(package="composer")
class AdaSparseMLP(keras.layers.Layer):
    """AdaSparse's domain-adaptively pruned MLP (Yang et al., "AdaSparse: Learning Adaptively
    Sparse Structures for Multi-Domain Click-Through Rate Prediction", CIKM 2022).

    Layer ``l``: ``h_l = pi_l ⊙ act(W_l h_{l-1} + b_l)`` with one weighting factor per neuron from
    a lightweight pruner over the domain-aware condition ``z`` (e.g. the scenario embedding):
    ``v_l = P_l z + p_l`` and

    - ``scaling``: ``pi = beta * sigmoid(v)`` in ``[0, beta]``;
    - ``binarization``: ``pi = 1[v >= 0]`` in ``{0, 1}``, trained straight-through with the
      gradient of ``sigmoid(alpha * v)``;
    - ``fusion``: ``pi = beta * sigmoid(alpha * v)``, set to 0 where it falls below ``epsilon``
      (the soft threshold: those neurons are pruned exactly).

    A neuron counts as pruned where ``pi < epsilon``. In training, with ``sparsity_weight > 0``,
    the layer adds the regulariser ``sparsity_weight * sum_l c_l * mean(pi_l)`` (``add_loss``)
    with ``c_l = sign(target - r_l)`` when the batch's pruned fraction ``r_l`` is more than
    ``tolerance`` away from ``target``, else 0 (``r_l`` and ``c_l`` held constant): below the
    target it pushes the factors down, above it pushes them up. The paper's flexible sparsity
    regularisation, in this sign-switching L1 form.

    Args:
        units: widths of the layers.
        activation: activation of every layer.
        form: ``scaling``, ``binarization`` or ``fusion``.
        beta: upper bound of ``pi`` (scaling and fusion).
        alpha: sharpness of ``sigmoid(alpha * v)`` (binarization and fusion).
        epsilon: a factor below it is a pruned neuron (fusion: set to 0).
        target: the pruned fraction the regulariser pulls each layer toward.
        tolerance: no pull while ``|r_l - target| <= tolerance``.
        sparsity_weight: weight of the regulariser (0: none).

    Inputs: ``[x (batch, d), condition (batch, c)]``. Output: ``(batch, units[-1])``.
    """

    def __init__(self, units, activation="relu", form="scaling", beta=1.0, alpha=1.0, epsilon=0.1,
                 target=0.3, tolerance=0.05, sparsity_weight=0.01, **kwargs):
        super().__init__(**kwargs)
        if form not in PRUNER_FORMS:
            raise ValueError(f"form must be one of {PRUNER_FORMS}, got {form!r}")
        self.units = [int(u) for u in units]
        self.activation = activation
        self.form = form
        self.beta = float(beta)
        self.alpha = float(alpha)
        self.epsilon = float(epsilon)
        self.target = float(target)
        self.tolerance = float(tolerance)
        self.sparsity_weight = float(sparsity_weight)

    def build(self, input_shape):
        prev, c = int(input_shape[0][-1]), int(input_shape[1][-1])
        self.kernels, self.biases, self.pruner_kernels, self.pruner_biases = [], [], [], []
        for i, width in enumerate(self.units):
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(prev, width), initializer="glorot_uniform"))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(width,), initializer="zeros"))
            self.pruner_kernels.append(self.add_weight(name=f"pruner_kernel_{i}", shape=(c, width),
                                                       initializer="glorot_uniform"))
            self.pruner_biases.append(self.add_weight(name=f"pruner_bias_{i}", shape=(width,), initializer="zeros"))
            prev = width

    def _factor(self, v):
        if self.form == "scaling":
            return self.beta * ops.sigmoid(v)
        soft = ops.sigmoid(self.alpha * v)
        if self.form == "binarization":
            hard = ops.cast(v >= 0, soft.dtype)
            return soft + ops.stop_gradient(hard - soft)
        pi = self.beta * soft
        return pi * ops.cast(pi >= self.epsilon, pi.dtype)

    def pruning_factors(self, inputs):
        """The factors ``pi_l``, one ``(batch, units[l])`` tensor per layer; inputs as for ``call``."""
        condition = inputs[1]
        return [self._factor(ops.matmul(condition, k) + b)
                for k, b in zip(self.pruner_kernels, self.pruner_biases)]

    def call(self, inputs, training=None):
        h = inputs[0]
        act = keras.activations.get(self.activation)
        factors = self.pruning_factors(inputs)
        for kernel, bias, pi in zip(self.kernels, self.biases, factors):
            h = pi * act(ops.matmul(h, kernel) + bias)
        if training and self.sparsity_weight > 0:
            self.add_loss(self.sparsity_loss(factors))
        return h

    def sparsity_loss(self, factors):
        """The regulariser ``sparsity_weight * sum_l c_l * mean(pi_l)`` on the factors of a batch."""
        total = 0.0
        for pi in factors:
            pruned = ops.mean(ops.cast(ops.stop_gradient(pi) < self.epsilon, "float32"))
            gap = self.target - pruned
            sign = ops.where(ops.abs(gap) > self.tolerance, ops.sign(gap), ops.zeros_like(gap))
            total = total + sign * ops.mean(ops.cast(pi, "float32"))
        return self.sparsity_weight * total

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation, "form": self.form,
                "beta": self.beta, "alpha": self.alpha, "epsilon": self.epsilon, "target": self.target,
                "tolerance": self.tolerance, "sparsity_weight": self.sparsity_weight}


@keras.saving.register_keras_serializable(package="composer")
class DistributionTowers(keras.layers.Layer):
    """AdaptDHM's distribution-adaptive towers (Li et al., "AdaptDHM: Adaptive Distribution
    Hierarchical Model for Multi-Domain CTR Prediction", 2022, arXiv 2211.12105): samples are
    clustered into ``clusters`` distribution groups, whatever their scenario, and each group has
    its own tower.

    Routing: ``u = normalise(sg(r))`` (the routing representation ``r``, by default the input,
    with no gradient); the sample goes to ``k = argmax_k u · c_k`` over the unit-norm centroids
    ``c_k`` (non-trainable) as they stand before this batch. In training the batch then moves
    the centroids: soft assignments ``q = softmax(u C^T / temperature)``, batch means
    ``m_k = sum_i q_ik u_i / sum_i q_ik`` and ``c_k <- normalise(momentum c_k + (1 - momentum)
    m_k)``. (The paper's dynamic routing iterates assignment and update within a batch and routes
    on the updated centroids; here one update per batch, routing on the previous centroids, so a
    sample's output never depends on the rest of its batch.)

    Towers: ``star`` gives cluster k the weights ``W_k ⊙ W`` and biases ``b_k + b`` (as in the
    reference implementation; :class:`~composer.layers.scenario.StarFCN` with clusters for
    scenarios), ``separate`` one MLP per cluster (:class:`~composer.layers.scenario.ScenarioTowers`).

    Args:
        clusters: number of distribution groups K.
        units: tower widths (end with 1 for a logit).
        activation: activation of the hidden layers.
        output_activation: ``"same"`` or an activation for the last layer (``"linear"``).
        tower: ``star`` or ``separate``.
        momentum: centroid EMA momentum.
        temperature: softmax temperature of the soft assignments.

    Inputs: ``[x (batch, d), r (batch, e)]`` (pass ``x`` twice to route on the input).
    Output: ``(batch, units[-1])``.
    """

    def __init__(self, clusters, units, activation="relu", output_activation="same", tower="star",
                 momentum=0.99, temperature=0.1, **kwargs):
        super().__init__(**kwargs)
        if tower not in TOWER_KINDS:
            raise ValueError(f"tower must be one of {TOWER_KINDS}, got {tower!r}")
        self.clusters = int(clusters)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.output_activation = output_activation
        self.tower = tower
        self.momentum = float(momentum)
        self.temperature = float(temperature)

    def build(self, input_shape):
        x_shape, r_shape = input_shape
        self.centroids = self.add_weight(name="centroids", shape=(self.clusters, int(r_shape[-1])),
                                         initializer="random_normal", trainable=False)
        kind = StarFCN if self.tower == "star" else ScenarioTowers
        self._towers = kind(self.clusters, self.units, activation=self.activation,
                            output_activation=self.output_activation, dtype=self.dtype_policy, name="towers")
        self._towers.build([tuple(x_shape), (None, 1)])

    def _unit(self, v):
        v = ops.cast(v, "float32")
        return v / ops.maximum(ops.sqrt(ops.sum(ops.square(v), axis=-1, keepdims=True)), 1e-12)

    def cluster_of(self, inputs):
        """``(batch, 1)`` int32: each sample's distribution group; inputs as for ``call``."""
        sims = ops.matmul(self._unit(ops.stop_gradient(inputs[1])), ops.transpose(self._unit(self.centroids)))
        return ops.reshape(ops.cast(ops.argmax(sims, axis=-1), "int32"), (-1, 1))

    def call(self, inputs, training=None):
        x, r = inputs
        ids = self.cluster_of(inputs)
        out = self._towers([x, ids])
        if training:
            u = self._unit(ops.stop_gradient(r))
            centroids = self._unit(ops.convert_to_tensor(self.centroids))
            q = ops.softmax(ops.matmul(u, ops.transpose(centroids)) / self.temperature, axis=-1)
            means = ops.matmul(ops.transpose(q), u) / ops.maximum(ops.sum(q, axis=0)[:, None], 1e-12)
            m = self.momentum
            self.centroids.assign(self._unit(m * centroids + (1 - m) * means))
        return out

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units[-1])

    def get_config(self):
        return {**super().get_config(), "clusters": self.clusters, "units": self.units,
                "activation": self.activation, "output_activation": self.output_activation,
                "tower": self.tower, "momentum": self.momentum, "temperature": self.temperature}
