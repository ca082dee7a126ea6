"""Input-stage layers: one stacked embedding table per width, and field selection."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="composer")
class PackedEmbedding(keras.layers.Layer):
    """Embeds F categorical fields of one width with one table and one gather.

    The fields' tables are stacked row-wise into one ``(sum(vocab_sizes), dim)`` table; field f's
    ids are shifted by the rows of the fields before it, so the lookup is a single ``take``.

    Args:
        vocab_sizes: rows of each field's table, in column order.
        dim: embedding width.

    Input shape: ``(batch, F)`` integer ids, field f's in ``[0, vocab_sizes[f])``.
    Output shape: ``(batch, F, dim)``.

    Example:
        >>> PackedEmbedding([10, 3], 4)(np.array([[1, 2]])).shape
        (1, 2, 4)
    """

    def __init__(self, vocab_sizes, dim, embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.dim = int(dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
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
        self.embeddings = self.add_weight(name="embeddings", shape=(self._rows, self.dim),
                                          initializer=self.embeddings_initializer, autocast=False)

    def call(self, ids):
        ids = ops.cast(ids, "int32") + ops.convert_to_tensor(self._offsets, dtype="int32")
        return ops.cast(ops.take(self.embeddings, ids, axis=0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return {**super().get_config(), "vocab_sizes": self.vocab_sizes, "dim": self.dim,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}


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
