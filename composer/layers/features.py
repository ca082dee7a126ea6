"""Input-stage layers: one stacked embedding table per width, and field selection."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="composer")
class PackedEmbedding(keras.layers.Layer):
    """Embeds every id input of one width with one stacked table and one gather.

    The tables of the width's table owners are stacked row-wise into one
    ``(sum(vocab_sizes), dim)`` table; an id of table t is shifted by the rows of the tables
    before it, so the lookup is a single ``take``. The flat input's column c reads table
    ``columns[c]``; each list input (a multi-valued or sequence feature, padded with -1) reads
    table ``sequences[k]``, so a history and its candidate share rows. Padding positions come
    out as zeros and take no gradient.

    Args:
        vocab_sizes: rows of each table, in stacking order.
        dim: embedding width.
        columns: the table of each flat column (default: column c reads table c).
        sequences: the table of each list input, in input order (default: none).
        flat: whether the first input is the flat (B, F) id matrix (False: list inputs only).
        row_multiple: the table's rows padded up to a multiple of this (a table split by rows over
            a device mesh needs equal shards); the padding rows are zeros and never looked up.

    Input shape: ``(batch, F)`` ids; with ``sequences``, a list: the flat ids (when ``flat``) then
    one ``(batch, L_k)`` id matrix per list input.
    Output shape: ``(batch, F, dim)``; with ``sequences``, a list of ``(batch, F, dim)`` and
    ``(batch, L_k, dim)`` in input order.

    Example:
        >>> PackedEmbedding([10, 3], 4)(np.array([[1, 2]])).shape
        (1, 2, 4)
    """

    def __init__(self, vocab_sizes, dim, embeddings_initializer="uniform", columns=None, sequences=None,
                 flat=True, row_multiple=1, **kwargs):
        super().__init__(**kwargs)
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.dim = int(dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.columns = None if columns is None else [int(c) for c in columns]
        self.sequences = [int(t) for t in (sequences or [])]
        self.flat = bool(flat)
        self.row_multiple = int(row_multiple)
        offsets, total = [], 0
        for v in self.vocab_sizes:
            offsets.append(total)
            total += v
        self._offsets = offsets
        self._rows = total

    def build(self, input_shape):
        # autocast=False, as keras.layers.Embedding: under mixed precision the gather reads the
        # float32 table and casts the rows it took. An autocast table would be cast whole to
        # bfloat16 each step, and its gradient (a scatter-add of every looked-up row) summed in
        # bfloat16, which GPUs do with slow emulated atomics: on an H200 that made PLE train 4.6x
        # slower in mixed_bfloat16 than in float32 at batch 32768 (bench/README.md).
        padded = -(-self._rows // self.row_multiple) * self.row_multiple
        initializer = self.embeddings_initializer
        if padded != self._rows:
            initializer = _PaddedRows(self.embeddings_initializer, self._rows)
        self.embeddings = self.add_weight(name="embeddings", shape=(padded, self.dim),
                                          initializer=initializer, autocast=False)

    def _flat_offsets(self, width):
        tables = self.columns if self.columns is not None else list(range(width))
        return ops.convert_to_tensor([self._offsets[t] for t in tables], dtype="int32")

    def call(self, ids):
        if not self.sequences:
            ids = ops.cast(ids, "int32") + self._flat_offsets(ids.shape[-1])
            return ops.cast(ops.take(self.embeddings, ids, axis=0), self.compute_dtype)
        inputs = list(ids)
        shifted, valid, widths = [], [], []
        if self.flat:
            flat = ops.cast(inputs.pop(0), "int32")
            shifted.append(flat + self._flat_offsets(flat.shape[-1]))
            valid.append(ops.ones_like(flat, dtype=self.compute_dtype))
            widths.append(flat.shape[-1])
        for table, seq in zip(self.sequences, inputs):
            seq = ops.cast(seq, "int32")
            keep = seq >= 0  # -1 pads
            shifted.append(ops.where(keep, seq, 0) + self._offsets[table])
            valid.append(ops.cast(keep, self.compute_dtype))
            widths.append(seq.shape[-1])
        # one gather for every input of this width (the candidate and its history alike)
        rows = ops.take(self.embeddings, ops.concatenate(shifted, axis=1), axis=0)
        rows = ops.cast(rows, self.compute_dtype) * ops.expand_dims(ops.concatenate(valid, axis=1), -1)
        cuts, at = [], 0
        for w in widths[:-1]:
            at += w
            cuts.append(at)
        return list(ops.split(rows, cuts, axis=1)) if cuts else [rows]

    def compute_output_shape(self, input_shape):
        if not self.sequences:
            return (*input_shape, self.dim)
        return [(*shape, self.dim) for shape in input_shape]

    def get_config(self):
        return {**super().get_config(), "vocab_sizes": self.vocab_sizes, "dim": self.dim,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "columns": self.columns, "sequences": self.sequences, "flat": self.flat,
                "row_multiple": self.row_multiple}


class _PaddedRows(keras.initializers.Initializer):
    """The first ``rows`` rows drawn as ``initializer`` draws an unpadded table (so a table padded
    for sharding starts where the one-device table does), zeros after them. Used only while a
    layer builds (the saved config keeps the layer's own initializer)."""

    def __init__(self, initializer, rows):
        self.initializer, self.rows = initializer, int(rows)

    def __call__(self, shape, dtype=None):
        real = self.initializer((self.rows, *shape[1:]), dtype=dtype)
        return ops.pad(real, [[0, shape[0] - self.rows], [0, 0]])


@keras.saving.register_keras_serializable(package="composer")
class PaddingMask(keras.layers.Layer):
    """1.0 where a padded id matrix holds an id, 0.0 at padding (-1).

    Input shape: ``(batch, L)`` ids. Output shape: ``(batch, L)`` float32.
    """

    def call(self, ids):
        return ops.cast(ops.cast(ids, "int32") >= 0, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="composer")
class SelectFields(keras.layers.Layer):
    """Takes the columns ``indices`` of axis 1, optionally flattening what follows the batch.

    Input shape: ``(batch, F, ...)``. Output shape: ``(batch, len(indices), ...)``, or
    ``(batch, len(indices) * prod(...))`` when ``flatten``.
    """

    def __init__(self, indices, flatten=False, **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]
        self.flatten = bool(flatten)

    def call(self, x):
        if self.indices != list(range(x.shape[1])):
            x = ops.take(x, ops.convert_to_tensor(self.indices, dtype="int32"), axis=1)
        if self.flatten:
            x = ops.reshape(x, (-1, int(_prod(x.shape[1:]))))
        return x

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape[2:])
        if self.flatten:
            return (input_shape[0], len(self.indices) * int(_prod(rest)))
        return (input_shape[0], len(self.indices), *rest)

    def get_config(self):
        return {**super().get_config(), "indices": self.indices, "flatten": self.flatten}


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out
