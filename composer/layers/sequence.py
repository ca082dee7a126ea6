"""Sequence and numeric-feature layers: masked pooling, DIN target attention, BST-style
multi-head attention over a behaviour sequence, and PLR / quantile numeric embeddings.

A sequence is ``seq (batch, L, d)`` plus ``mask (batch, L)`` (1.0 a real position, 0.0
padding), right-aligned: padding first, the newest item at ``L - 1``. Every layer first replaces
the padded rows of ``seq`` with zeros (``ops.where``, not a product, so even inf or NaN there
cannot leak), so no result and no gradient depends on what padding holds, and an all-padding row
gives exact zeros.
"""
from __future__ import annotations

import math

import keras
from keras import ops


def _valid(mask):
    """``(batch, L)`` boolean: the real positions."""
    return ops.greater(mask, 0)


def _clean(seq, valid):
    """``seq`` with its padded rows set to zero."""
    return ops.where(ops.expand_dims(valid, -1), seq, ops.zeros_like(seq))


def _masked_mean(seq, valid):
    """Mean over the valid rows of an already cleaned ``seq``; zeros for an empty row."""
    count = ops.sum(ops.cast(valid, seq.dtype), axis=1, keepdims=True)
    return ops.sum(seq, axis=1) / ops.maximum(count, 1)


def _built(layer, *shapes):
    layer.build(*shapes)
    return layer


@keras.saving.register_keras_serializable(package="composer")
class MaskedPooling(keras.layers.Layer):
    """Pools a padded sequence over its real positions only.

    ``mean`` is the sum of the valid rows over ``max(count, 1)``; ``max`` is the element-wise
    maximum of the valid rows; ``sum`` their sum. A row with no valid position gives zeros in
    every mode.

    Args:
        mode: ``"mean"``, ``"sum"`` or ``"max"``.

    Input: ``[seq (batch, L, d), mask (batch, L)]``. Output shape: ``(batch, d)``.

    Example:
        >>> MaskedPooling("mean")([np.ones((2, 3, 4)), np.array([[0, 1, 1], [0, 0, 0]])]).shape
        (2, 4)
    """

    MODES = ("mean", "sum", "max")

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"MaskedPooling mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        seq, mask = inputs
        valid = _valid(mask)
        if self.mode == "max":
            # -inf, not a large finite number, so valid values of any size keep their max
            low = ops.where(ops.expand_dims(valid, -1), seq, ops.full_like(seq, float("-inf")))
            top = ops.max(low, axis=1)
            return ops.where(ops.any(valid, axis=1, keepdims=True), top, ops.zeros_like(top))
        seq = _clean(seq, valid)
        if self.mode == "sum":
            return ops.sum(seq, axis=1)
        return _masked_mean(seq, valid)

    def compute_output_shape(self, input_shape):
        seq_shape = input_shape[0]
        return (seq_shape[0], seq_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="composer")
class TargetAttention(keras.layers.Layer):
    """DIN's activation unit (Zhou et al., "Deep Interest Network for Click-Through Rate
    Prediction", KDD 2018): the candidate ``c`` weighs each behaviour ``h_l`` of the history.

    ``a_l = MLP([h_l, c, h_l - c, h_l * c])`` (``units`` hidden Dense layers with ``activation``,
    then a linear ``Dense(1)``). Without ``softmax`` (the paper's choice, which keeps the
    intensity of the user's interest) ``w_l = a_l`` at valid positions and 0 at padding; with
    ``softmax`` the scores are normalised over the valid positions (an empty row gets all-zero
    weights). Output ``sum_l w_l h_l``.

    Args:
        units: widths of the hidden Dense layers of the activation unit.
        activation: their activation.
        softmax: normalise the scores over the valid positions.

    Input: ``[query (batch, d), seq (batch, L, d), mask (batch, L)]``; the query must be as
    wide as the sequence items. Output shape: ``(batch, d)``.

    Example:
        >>> TargetAttention([8])([np.ones((2, 4)), np.ones((2, 3, 4)), np.ones((2, 3))]).shape
        (2, 4)
    """

    def __init__(self, units=(80, 40), activation="sigmoid", softmax=False, **kwargs):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.softmax = bool(softmax)

    def build(self, input_shape):
        query_shape, seq_shape, _ = input_shape
        d = int(seq_shape[-1])
        if int(query_shape[-1]) != d:
            raise ValueError(f"TargetAttention needs the query as wide as the sequence items: "
                             f"query width {query_shape[-1]}, item width {d}")
        self._hidden = []
        prev = 4 * d
        for i, width in enumerate(self.units):
            self._hidden.append(_built(keras.layers.Dense(width, activation=self.activation,
                                                          dtype=self.dtype_policy, name=f"dense_{i}"),
                                       (None, None, prev)))
            prev = width
        self._score = _built(keras.layers.Dense(1, dtype=self.dtype_policy, name="score"),
                             (None, None, prev))
        self._normalise = keras.layers.Softmax(axis=-1, dtype=self.dtype_policy, name="normalise")

    def call(self, inputs):
        query, seq, mask = inputs
        valid = _valid(mask)
        return self._attend(query, _clean(seq, valid), valid)

    def _attend(self, query, seq, valid):
        """The activation unit's masked, weighted sum over a history already zero at padding."""
        c = ops.broadcast_to(ops.expand_dims(query, 1), ops.shape(seq))
        h = ops.concatenate([seq, c, seq - c, seq * c], axis=-1)
        for layer in self._hidden:
            h = layer(h)
        scores = ops.squeeze(self._score(h), -1)
        if self.softmax:
            # Keras's masked softmax gives an empty row uniform weights: zeroed by the where
            weights = ops.where(valid, self._normalise(scores, mask=valid), ops.zeros_like(scores))
        else:
            weights = ops.where(valid, scores, ops.zeros_like(scores))
        return ops.einsum("bl,bld->bd", weights, seq)

    def compute_output_shape(self, input_shape):
        seq_shape = input_shape[1]
        return (seq_shape[0], seq_shape[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "softmax": self.softmax}


@keras.saving.register_keras_serializable(package="composer")
class SequenceAttention(keras.layers.Layer):
    """Multi-head attention over a padded sequence, as a Transformer encoder layer (BST: Chen
    et al., "Behavior Sequence Transformer for E-commerce Recommendation in Alibaba", DLP-KDD
    2019) or as one query attending to the sequence.

    Self mode (``query=False``): ``x = seq + P`` with ``P`` a learned position embedding counted
    from the newest item (position ``L - 1`` gets row 0 of the table, ``L - 2`` row 1, ...), so
    the newest item has the same position vector whatever the history length;
    ``a = MHA(x, x, x)`` with position pairs attended only when both are valid;
    ``y = LayerNorm(x + Dropout(a))``; ``y = LayerNorm(y + Dropout(FFN(y)))`` with
    ``FFN = Dense(feed_forward or 4 d, relu) -> Dense(d)``; padded rows of ``y`` set to 0.
    ``pool`` then keeps ``y`` (``"none"``), takes its masked mean (``"mean"``) or its newest
    row ``L - 1`` (``"last"``; zeros for an empty history).

    Query mode (``query=True``): the query attends once to the (position-embedded) sequence,
    padding masked, through ``keras.layers.MultiHeadAttention`` with output width ``d``; a row
    with no valid position gives zeros. No residual and no feed-forward: the query may be of a
    different kind (a task or scenario representation, a candidate item) and width.

    Stack layers with ``pool="none"`` and ``positions=False`` after the first.

    Args:
        heads: attention heads.
        key_dim: width of each head's queries, keys and values; default ``max(1, d // heads)``.
        positions: add the learned position embedding to the sequence.
        max_len: rows of the position table; default the sequence length ``L``, and at least
            ``L``.
        feed_forward: hidden width of the feed-forward network (self mode); default ``4 d``.
        dropout: dropout rate on the attention output (and the feed-forward output).
        pool: ``"none"``, ``"mean"`` or ``"last"`` (self mode only).
        query: query mode.

    Input: ``[seq (batch, L, d), mask (batch, L)]``, or in query mode
    ``[query (batch, dq), seq (batch, L, d), mask (batch, L)]``.
    Output shape: ``(batch, L, d)`` for ``pool="none"``, else ``(batch, d)``; ``(batch, d)`` in
    query mode.

    Example:
        >>> SequenceAttention(heads=2, pool="mean")([np.ones((2, 5, 8)), np.ones((2, 5))]).shape
        (2, 8)
    """

    POOLS = ("none", "mean", "last")

    def __init__(self, heads=2, key_dim=None, positions=True, max_len=None, feed_forward=None,
                 dropout=0.0, pool="none", query=False, **kwargs):
        super().__init__(**kwargs)
        self.heads = int(heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.positions = bool(positions)
        self.max_len = None if max_len is None else int(max_len)
        self.feed_forward = None if feed_forward is None else int(feed_forward)
        self.dropout = float(dropout)
        self.pool = pool
        self.query = bool(query)
        if pool not in self.POOLS:
            raise ValueError(f"SequenceAttention pool must be one of {self.POOLS}, got {pool!r}")
        if self.query and (pool != "none" or self.feed_forward is not None):
            raise ValueError("SequenceAttention in query mode returns one vector per row: "
                             "pool and feed_forward apply to self mode only")

    def build(self, input_shape):
        query_shape, seq_shape = (input_shape[0], input_shape[1]) if self.query else (None, input_shape[0])
        length, d = seq_shape[1], int(seq_shape[-1])
        key_dim = self.key_dim or max(1, d // self.heads)
        if self.positions:
            if length is None and self.max_len is None:
                raise ValueError("SequenceAttention with positions needs a fixed sequence length "
                                 "or max_len")
            rows = self.max_len or int(length)
            if length is not None and int(length) > rows:
                raise ValueError(f"SequenceAttention max_len={rows} is shorter than the sequence "
                                 f"length {length}")
            self.position_embeddings = self.add_weight(name="position_embeddings", shape=(rows, d),
                                                       initializer="uniform")
        q_shape = (None, 1, int(query_shape[-1])) if self.query else (None, length, d)
        self._attention = _built(
            keras.layers.MultiHeadAttention(self.heads, key_dim, output_shape=d,
                                            dtype=self.dtype_policy, name="attention"),
            q_shape, (None, length, d))
        self._dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")
        if self.query:
            return
        self._norm_attention = _built(keras.layers.LayerNormalization(
            epsilon=1e-5, dtype=self.dtype_policy, name="norm_attention"), (None, length, d))
        hidden = self.feed_forward or 4 * d
        self._ffn_hidden = _built(keras.layers.Dense(hidden, activation="relu",
                                                     dtype=self.dtype_policy, name="ffn_hidden"),
                                  (None, length, d))
        self._ffn_output = _built(keras.layers.Dense(d, dtype=self.dtype_policy, name="ffn_output"),
                                  (None, length, hidden))
        self._norm_ffn = _built(keras.layers.LayerNormalization(
            epsilon=1e-5, dtype=self.dtype_policy, name="norm_ffn"), (None, length, d))

    def _embed(self, seq, valid):
        """The cleaned sequence plus its position vectors (zero rows at padding)."""
        if self.positions:
            table = ops.flip(self.position_embeddings[:ops.shape(seq)[1]], axis=0)  # newest: row 0
            seq = seq + ops.expand_dims(ops.cast(table, seq.dtype), 0)
        return _clean(seq, valid)

    def call(self, inputs, training=None):
        if self.query:
            query, seq, mask = inputs
        else:
            seq, mask = inputs
        valid = _valid(mask)
        x = self._embed(seq, valid)
        if self.query:
            out = self._attention(ops.expand_dims(query, 1), x, x,
                                  attention_mask=ops.expand_dims(valid, 1))
            out = self._dropout(ops.squeeze(out, 1), training=training)
            return ops.where(ops.any(valid, axis=1, keepdims=True), out, ops.zeros_like(out))
        pairs = ops.logical_and(ops.expand_dims(valid, 2), ops.expand_dims(valid, 1))
        a = self._attention(x, x, x, attention_mask=pairs)
        y = self._norm_attention(x + self._dropout(a, training=training))
        f = self._ffn_output(self._ffn_hidden(y))
        y = self._norm_ffn(y + self._dropout(f, training=training))
        y = _clean(y, valid)
        if self.pool == "mean":
            return _masked_mean(y, valid)
        if self.pool == "last":
            return y[:, -1, :]
        return y

    def compute_output_shape(self, input_shape):
        seq_shape = input_shape[1] if self.query else input_shape[0]
        if self.query or self.pool != "none":
            return (seq_shape[0], seq_shape[-1])
        return tuple(seq_shape)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "key_dim": self.key_dim,
                "positions": self.positions, "max_len": self.max_len,
                "feed_forward": self.feed_forward, "dropout": self.dropout, "pool": self.pool,
                "query": self.query}


@keras.saving.register_keras_serializable(package="composer")
class PeriodicEmbedding(keras.layers.Layer):
    """PLR numeric embeddings (Gorishniy et al., "On Embeddings for Numerical Features in
    Tabular Deep Learning", NeurIPS 2022): periodic features, then a per-column linear layer and
    ReLU.

    For column ``j``: ``v = [sin(2 pi c_j x_j), cos(2 pi c_j x_j)]`` with trained frequencies
    ``c_j`` (``frequencies`` of them, initialised ``N(0, sigma)``), then
    ``ReLU(v W_j + b_j)``; every column has its own ``c_j``, ``W_j`` and ``b_j``. ``W`` and
    ``b`` start ``U(-1/sqrt(2k), 1/sqrt(2k))``, as the paper's per-feature linear layers.

    Args:
        frequencies: ``k``, frequencies per column.
        dim: embedding width.
        sigma: standard deviation of the initial frequencies (the paper tunes it; larger
            values fit sharper functions of ``x``).

    Input shape: ``(batch, n)`` standardised numbers. Output shape: ``(batch, n, dim)``.

    Example:
        >>> PeriodicEmbedding(frequencies=4, dim=3)(np.zeros((2, 5))).shape
        (2, 5, 3)
    """

    def __init__(self, frequencies=16, dim=8, sigma=1.0, **kwargs):
        super().__init__(**kwargs)
        self.frequencies = int(frequencies)
        self.dim = int(dim)
        self.sigma = float(sigma)

    def build(self, input_shape):
        n, k = int(input_shape[-1]), self.frequencies
        bound = 1.0 / math.sqrt(2 * k)
        linear_init = keras.initializers.RandomUniform(-bound, bound)
        self.coefficients = self.add_weight(
            name="frequencies", shape=(n, k),
            initializer=keras.initializers.RandomNormal(stddev=self.sigma))
        self.kernel = self.add_weight(name="kernel", shape=(n, 2 * k, self.dim), initializer=linear_init)
        self.bias = self.add_weight(name="bias", shape=(n, self.dim), initializer=linear_init)

    def call(self, x):
        angles = 2 * math.pi * ops.expand_dims(x, -1) * self.coefficients
        v = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)
        return ops.relu(ops.einsum("bnf,nfd->bnd", v, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return {**super().get_config(), "frequencies": self.frequencies, "dim": self.dim,
                "sigma": self.sigma}


@keras.saving.register_keras_serializable(package="composer")
class QuantileEmbedding(keras.layers.Layer):
    """Embeds each numeric column by the bucket its value falls in, between fitted edges.

    Column ``j``'s bucket is the number of its edges ``<= x`` (so a value equal to an edge goes
    to the bucket above it, as ``np.searchsorted(edges, x, side="right")``; below the first edge
    is bucket 0, at or beyond the last is bucket ``len(edges_j)``). It is counted with one
    comparison against all columns' edges padded to the longest, not with ``ops.digitize``,
    which takes one edge list and would need one op per column. The comparison is in float32
    whatever the dtype policy, so no value changes bucket by rounding; a NaN goes to bucket 0.
    The columns' tables (``len(edges_j) + 1`` rows each) are stacked into one, so the lookup is a
    single gather.

    Args:
        edges: one sorted list of bucket edges per column (fitted elsewhere, e.g. quantiles).
        dim: embedding width.

    Input shape: ``(batch, n)`` raw numbers, ``n = len(edges)``. Output shape:
    ``(batch, n, dim)``.

    Example:
        >>> QuantileEmbedding([[0.0, 1.0], [5.0]], 4)(np.array([[0.5, 7.0]])).shape
        (1, 2, 4)
    """

    def __init__(self, edges, dim, embeddings_initializer="uniform", **kwargs):
        kwargs.pop("autocast", None)
        # autocast=False: a mixed-precision policy must not round the input before the
        # comparison, and the table is gathered in float32, as in PackedEmbedding
        super().__init__(autocast=False, **kwargs)
        self.edges = [[float(e) for e in column] for column in edges]
        self.dim = int(dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        for j, column in enumerate(self.edges):
            if any(b < a for a, b in zip(column, column[1:])):
                raise ValueError(f"QuantileEmbedding edges of column {j} are not sorted: {column}")
        self._offsets, total = [], 0
        for column in self.edges:
            self._offsets.append(total)
            total += len(column) + 1
        self._rows = total
        width = max([len(column) for column in self.edges] + [0])
        self._padded = [column + [0.0] * (width - len(column)) for column in self.edges]
        self._real = [[1] * len(column) + [0] * (width - len(column)) for column in self.edges]

    def build(self, input_shape):
        if int(input_shape[-1]) != len(self.edges):
            raise ValueError(f"QuantileEmbedding has edges for {len(self.edges)} columns, the "
                             f"input has {input_shape[-1]}")
        self.embeddings = self.add_weight(name="embeddings", shape=(self._rows, self.dim),
                                          initializer=self.embeddings_initializer, autocast=False)

    def call(self, x):
        x = ops.expand_dims(ops.cast(x, "float32"), -1)
        edges = ops.convert_to_tensor(self._padded, dtype="float32")
        real = ops.convert_to_tensor(self._real, dtype="int32")
        buckets = ops.sum(ops.cast(ops.greater_equal(x, edges), "int32") * real, axis=-1)
        ids = buckets + ops.convert_to_tensor(self._offsets, dtype="int32")
        return ops.cast(ops.take(self.embeddings, ids, axis=0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return {**super().get_config(), "edges": self.edges, "dim": self.dim,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}
