"""Dynamic-weight layers: PEPNet's Gate NU, EPNet and PPNet towers, APG's adaptive-parameter
dense stack, and generated-weight MLPs (the M2M meta unit, meta attention and meta tower)."""
from __future__ import annotations

import keras
from keras import ops

from .dense import MLP


def _is_shape_list(shape) -> bool:
    return isinstance(shape, (list, tuple)) and len(shape) > 0 and isinstance(shape[0], (list, tuple))


def _width(shape) -> int:
    """The summed last dimension of one shape or a list of shapes (inputs concatenated)."""
    return sum(int(s[-1]) for s in shape) if _is_shape_list(shape) else int(shape[-1])


def _built(layer, shape):
    layer.build(shape)
    return layer


@keras.saving.register_keras_serializable(package="composer")
class GateNU(keras.layers.Layer):
    """PEPNet's gate neural unit: ``delta = gamma * sigmoid(W2 relu(W1 x + b1) + b2)``.

    Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with
    Personalized Prior Information, KDD 2023. With ``gamma = 2`` a neutral gate (logit 0) scales
    by 1 and the gate can amplify a signal up to twice.

    Args:
        units: width of ``delta``.
        hidden: width of the relu layer (defaults to ``units``).
        gamma: the scale's upper bound.

    Input shape: ``(batch, d)`` or a list of ``(batch, d_i)`` (concatenated).
    Output shape: ``(batch, units)``, values in ``(0, gamma)``.

    Example:
        >>> GateNU(4)([np.ones((2, 3)), np.ones((2, 5))]).shape
        (2, 4)
    """

    def __init__(self, units, hidden=None, gamma=2.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.hidden = int(hidden) if hidden else self.units
        self.gamma = float(gamma)

    def build(self, input_shape):
        d = _width(input_shape)
        self._hidden = _built(keras.layers.Dense(self.hidden, activation="relu", dtype=self.dtype_policy, name="hidden"), (None, d))
        self._scale = _built(keras.layers.Dense(self.units, dtype=self.dtype_policy, name="scale"), (None, self.hidden))

    def call(self, x):
        if isinstance(x, (list, tuple)):
            x = ops.concatenate(list(x), axis=-1) if len(x) > 1 else x[0]
        return self.gamma * ops.sigmoid(self._scale(self._hidden(x)))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0] if _is_shape_list(input_shape) else input_shape[0]
        return (batch, self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "hidden": self.hidden, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="composer")
class EPNet(keras.layers.Layer):
    """Embedding personalisation: ``delta = GateNU([domain, sg(E)])``, output ``delta * E``.

    Chang et al., PEPNet, KDD 2023 (section 3.3). The gate reads the shared embedding ``E``
    through a stop-gradient, so ``E`` is trained only through the scaled path
    (``d out / d E = delta``), never through the gate.

    Args:
        hidden: width of the gate's relu layer (defaults to the width of ``E``).
        gamma: the gate's upper bound.

    Input: ``[domain (batch, s), E (batch, d)]``. Output shape: ``(batch, d)``.

    Example:
        >>> EPNet()([np.ones((2, 8)), np.ones((2, 16))]).shape
        (2, 16)
    """

    def __init__(self, hidden=None, gamma=2.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden) if hidden else None
        self.gamma = float(gamma)

    def build(self, input_shape):
        domain, emb = input_shape
        d = int(emb[-1])
        self._gate = _built(GateNU(d, hidden=self.hidden or d, gamma=self.gamma, dtype=self.dtype_policy, name="gate"),
                            (None, int(domain[-1]) + d))

    def call(self, inputs):
        domain, emb = inputs
        delta = self._gate(ops.concatenate([domain, ops.stop_gradient(emb)], axis=-1))
        return delta * emb

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="composer")
class PPNetTower(keras.layers.Layer):
    """A PPNet task tower: ``H^{l+1} = delta^{(l)} * f_l(H^l)``, then a linear logit.

    Chang et al., PEPNet, KDD 2023 (section 3.4). Layer ``l`` of the tower has its own Gate NU
    over ``[persona, sg(input)]`` whose output (width ``units[l]``) scales that layer's
    activations. The paper computes all gates of all task towers with one Gate NU whose output
    is split per task and layer; here each tower layer has its own Gate NU, so a tower stamped
    per task is self-contained (same function class, separate first gate layers). The tower's
    input reaches the gates only through a stop-gradient: the gates never train it.

    Args:
        units: widths of the gated hidden layers.
        gate_hidden: width of each gate's relu layer (defaults to the layer's width).
        gamma: the gates' upper bound.
        activation: activation ``f_l`` of the hidden layers.
        dropout: dropout after each gated layer.

    Input: ``[persona (batch, p), input (batch, d)]``. Output shape: ``(batch, 1)`` (a logit).

    Example:
        >>> PPNetTower([16, 8])([np.ones((2, 8)), np.ones((2, 12))]).shape
        (2, 1)
    """

    def __init__(self, units, gate_hidden=None, gamma=2.0, activation="relu", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.gate_hidden = int(gate_hidden) if gate_hidden else None
        self.gamma = float(gamma)
        self.activation = activation
        self.dropout = float(dropout)

    def build(self, input_shape):
        persona, x = input_shape
        gate_in = int(persona[-1]) + int(x[-1])
        self._dense, self._gates = [], []
        prev = int(x[-1])
        for i, width in enumerate(self.units):
            self._dense.append(_built(keras.layers.Dense(width, activation=self.activation,
                                                         dtype=self.dtype_policy, name=f"dense_{i}"), (None, prev)))
            self._gates.append(_built(GateNU(width, hidden=self.gate_hidden or width, gamma=self.gamma,
                                             dtype=self.dtype_policy, name=f"gate_{i}"), (None, gate_in)))
            prev = width
        self._drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout") if self.dropout else None
        self._logit = _built(keras.layers.Dense(1, dtype=self.dtype_policy, name="logit"), (None, prev))

    def call(self, inputs, training=None):
        persona, x = inputs
        gate_in = ops.concatenate([persona, ops.stop_gradient(x)], axis=-1)
        h = x
        for dense, gate in zip(self._dense, self._gates):
            h = gate(gate_in) * dense(h)
            if self._drop is not None:
                h = self._drop(h, training=training)
        return self._logit(h)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], 1)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "gate_hidden": self.gate_hidden,
                "gamma": self.gamma, "activation": self.activation, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="composer")
class APG(keras.layers.Layer):
    """A stack of adaptive-parameter dense layers: ``h' = act(((h U) S(z)) V + b)``.

    Yan et al., APG: Adaptive Parameter Generation Network for Click-Through Rate Prediction,
    NeurIPS 2022. Layer ``l`` maps width ``N`` to ``M`` with the sample-specific weight
    ``W = U S V``: ``U (N, K)`` and ``V (K, M)`` shared, ``S (K, K)`` generated per sample from
    a condition ``z`` by an MLP. The product is applied right to left, so no ``(N, M)`` matrix
    exists per sample: per sample the layer holds ``K * K`` generated numbers, not ``N * M``.
    With ``overparam = P`` the shared factors are products ``U = U1 U2`` (``N x P``, ``P x K``)
    and ``V = V1 V2`` (``K x P``, ``P x M``), the paper's over-parameterisation.

    Args:
        units: output width of each layer.
        rank: ``K``, the width of the generated ``S``.
        self_condition: ``True`` conditions each layer on its own input (self-wise); ``False``
            takes ``z`` as a second input (group-wise or mix-wise: which features ``z`` holds).
        overparam: inner width ``P`` of the over-parameterised factors, or ``None``.
        generator_hidden: hidden widths of each layer's ``S`` generator MLP.
        activation: activation after every layer.

    Input: ``x (batch, N)``, or ``[x (batch, N), z (batch, c)]`` without ``self_condition``.
    Output shape: ``(batch, units[-1])``.

    Example:
        >>> APG([32, 16], rank=8)([np.ones((2, 24)), np.ones((2, 8))]).shape
        (2, 16)
    """

    def __init__(self, units, rank=8, self_condition=False, overparam=None, generator_hidden=(),
                 activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.rank = int(rank)
        self.self_condition = bool(self_condition)
        self.overparam = int(overparam) if overparam else None
        self.generator_hidden = [int(u) for u in generator_hidden]
        self.activation = activation

    def build(self, input_shape):
        x_shape = input_shape if self.self_condition else input_shape[0]
        cond = None if self.self_condition else int(input_shape[1][-1])
        self._act = keras.activations.get(self.activation)
        k, p = self.rank, self.overparam
        self._factors, self._generators, self.biases = [], [], []
        prev = int(x_shape[-1])
        for i, width in enumerate(self.units):
            if p:
                shapes = {"u1": (prev, p), "u2": (p, k), "v1": (k, p), "v2": (p, width)}
            else:
                shapes = {"u": (prev, k), "v": (k, width)}
            self._factors.append({name: self.add_weight(name=f"{name}_{i}", shape=shape,
                                                        initializer="glorot_uniform")
                                  for name, shape in shapes.items()})
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(width,), initializer="zeros"))
            gen = MLP([*self.generator_hidden, k * k], output_activation="linear", dtype=self.dtype_policy, name=f"generator_{i}")
            self._generators.append(_built(gen, (None, prev if self.self_condition else cond)))
            # S starts near the identity (W = U V, a plain low-rank layer), not near zero, where
            # the layer would pass no signal and U, V would get no gradient
            gen._steps[-1].bias.assign(ops.reshape(ops.eye(k), (-1,)))
            prev = width

    def shared_factors(self, i):
        """``(U, V)`` of layer ``i`` (products of the factors when over-parameterised)."""
        f = self._factors[i]
        if self.overparam:
            return ops.matmul(f["u1"], f["u2"]), ops.matmul(f["v1"], f["v2"])
        return f["u"], f["v"]

    def call(self, inputs, training=None):
        h, z = (inputs, None) if self.self_condition else inputs
        for i, gen in enumerate(self._generators):
            s = ops.reshape(gen(h if self.self_condition else z, training=training), (-1, self.rank, self.rank))
            u, v = self.shared_factors(i)
            low = ops.einsum("bk,bkj->bj", ops.matmul(h, u), s)
            h = self._act(ops.matmul(low, v) + self.biases[i])
        return h

    def compute_output_shape(self, input_shape):
        x_shape = input_shape if self.self_condition else input_shape[0]
        return (x_shape[0], self.units[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "rank": self.rank,
                "self_condition": self.self_condition, "overparam": self.overparam,
                "generator_hidden": self.generator_hidden, "activation": self.activation}


@keras.saving.register_keras_serializable(package="composer")
class DynamicMLP(keras.layers.Layer):
    """An MLP whose weights and biases are generated per sample from a condition.

    A Dense generator maps the condition ``c`` to one vector of all the MLP's parameters, which
    is cut into ``(in, out)`` kernels and ``(out,)`` biases per layer, in order (e.g. for an input
    of 32 and ``units = [16, 8]``: 32*16 + 16 + 16*8 + 8 = 664 numbers). This is also the M2M
    meta unit (Zhang et al., Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning
    Approach for Advertiser Modeling, WSDM 2022), with the scenario representation as ``c``.

    Args:
        units: widths of the generated layers.
        activation: activation of every generated layer.
        output_activation: ``"same"`` treats the last layer like the others; an activation name
            (``"linear"`` for scores) applies that to the last layer instead.

    Input: ``[condition (batch, c), x (batch, d)]`` or ``x (batch, n, d)`` (one MLP per sample,
    applied to each of its ``n`` rows). Output shape: ``x``'s with the last axis ``units[-1]``.

    Example:
        >>> DynamicMLP([16, 8])([np.ones((2, 4)), np.ones((2, 32))]).shape
        (2, 8)
    """

    def __init__(self, units, activation="relu", output_activation="same", **kwargs):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.output_activation = output_activation

    def _layout(self, d):
        """[(fan_in, fan_out)] per generated layer."""
        sizes, prev = [], d
        for width in self.units:
            sizes.append((prev, width))
            prev = width
        return sizes

    def build(self, input_shape):
        cond, x = input_shape
        self._sizes = self._layout(int(x[-1]))
        total = sum(i * o + o for i, o in self._sizes)
        self._generator = _built(keras.layers.Dense(total, dtype=self.dtype_policy, name="generator"), (None, int(cond[-1])))
        # the generator's bias starts as a Glorot-initialised MLP (zero biases): the generated
        # layers start at a usable scale and the condition perturbs them, instead of starting
        # near zero (a condition of small embeddings times a small kernel)
        parts = []
        for fan_in, fan_out in self._sizes:
            kernel = keras.initializers.GlorotUniform()((fan_in, fan_out))
            parts += [ops.reshape(kernel, (-1,)), ops.zeros((fan_out,))]
        self._generator.bias.assign(ops.concatenate(parts))
        last = self.activation if self.output_activation == "same" else self.output_activation
        self._acts = [keras.activations.get(self.activation)] * (len(self.units) - 1) + [
            keras.activations.get(last)]

    def call(self, inputs):
        cond, h = inputs
        params = self._generator(cond)
        pattern = "bi,bio->bo" if len(h.shape) == 2 else "bni,bio->bno"
        offset = 0
        for (fan_in, fan_out), act in zip(self._sizes, self._acts):
            kernel = ops.reshape(params[:, offset:offset + fan_in * fan_out], (-1, fan_in, fan_out))
            offset += fan_in * fan_out
            bias = params[:, offset:offset + fan_out]
            offset += fan_out
            if len(h.shape) == 3:
                bias = ops.expand_dims(bias, 1)
            h = act(ops.einsum(pattern, h, kernel) + bias)
        return h

    def compute_output_shape(self, input_shape):
        return (*input_shape[1][:-1], self.units[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "output_activation": self.output_activation}


@keras.saving.register_keras_serializable(package="composer")
class MetaAttention(keras.layers.Layer):
    """M2M meta attention: ``a_i = softmax_i(meta([E_i, T]))``, output ``R = sum_i a_i E_i``.

    Zhang et al., Leaving No One Behind (M2M), WSDM 2022. ``T`` is this task's learned embedding;
    the meta unit (a :class:`DynamicMLP` ending in one linear score) has its weights generated
    from the scenario representation, so scenarios weigh the experts differently.

    Args:
        task_dim: width of the task embedding ``T``.
        units: hidden widths of the meta unit before its score.
        activation: activation of the meta unit's hidden layers.

    Input: ``[experts (batch, K, d), scenario (batch, s)]``. Output shape: ``(batch, d)``.

    Example:
        >>> MetaAttention(4)([np.ones((2, 3, 8)), np.ones((2, 5))]).shape
        (2, 8)
    """

    def __init__(self, task_dim=8, units=(16,), activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.task_dim = int(task_dim)
        self.units = [int(u) for u in units]
        self.activation = activation

    def build(self, input_shape):
        experts, scenario = input_shape
        self.task_embedding = self.add_weight(name="task_embedding", shape=(self.task_dim,),
                                              initializer="random_normal")
        self._meta = _built(DynamicMLP([*self.units, 1], activation=self.activation,
                                       output_activation="linear", dtype=self.dtype_policy, name="meta_unit"),
                            [tuple(scenario), (None, experts[1], int(experts[-1]) + self.task_dim)])

    def call(self, inputs):
        return ops.einsum("bk,bkd->bd", self.expert_weights(inputs), inputs[0])

    def expert_weights(self, inputs):
        """``(batch, K)`` weights ``a_i`` over the experts (rows sum to 1); inputs as for ``call``."""
        experts, scenario = inputs
        task = ops.zeros_like(experts[..., :1]) + self.task_embedding
        scores = self._meta([scenario, ops.concatenate([experts, task], axis=-1)])
        return ops.softmax(ops.squeeze(scores, axis=-1), axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "task_dim": self.task_dim, "units": self.units,
                "activation": self.activation}


@keras.saving.register_keras_serializable(package="composer")
class MetaTower(keras.layers.Layer):
    """M2M meta tower: ``h_{l+1} = h_l + meta_l(h_l)`` for ``layers`` meta units, then a logit.

    Zhang et al., Leaving No One Behind (M2M), WSDM 2022. Each meta unit is one generated
    ``d -> d`` layer (a :class:`DynamicMLP`) conditioned on the scenario representation; the
    residual connections keep the input ``R_t`` reachable from the logit.

    Args:
        layers: number of residual meta units.
        activation: activation of each meta unit.

    Input: ``[input (batch, d), scenario (batch, s)]``. Output shape: ``(batch, 1)`` (a logit).

    Example:
        >>> MetaTower(2)([np.ones((2, 8)), np.ones((2, 5))]).shape
        (2, 1)
    """

    def __init__(self, layers=2, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(layers)  # not `self.layers`: Keras reads that as a list of sub-layers
        self.activation = activation

    def build(self, input_shape):
        x, scenario = input_shape
        d = int(x[-1])
        self._metas = [_built(DynamicMLP([d], activation=self.activation, dtype=self.dtype_policy, name=f"meta_unit_{i}"),
                              [tuple(scenario), (None, d)]) for i in range(self.num_layers)]
        self._logit = _built(keras.layers.Dense(1, dtype=self.dtype_policy, name="logit"), (None, d))

    def call(self, inputs):
        h, scenario = inputs
        for meta in self._metas:
            h = h + meta([scenario, h])
        return self._logit(h)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "layers": self.num_layers, "activation": self.activation}
