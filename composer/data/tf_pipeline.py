"""tf.data input pipeline (TensorFlow backend only).

Batch, then gather: the pipeline shuffles and batches row *indices* and gathers each batch from
the in-memory arrays with one ``tf.gather`` per input, instead of shuffling and batching rows
one element at a time. ``bench/input_pipeline.py`` measured the per-element pipeline as the
bottleneck (training waited for input 53% of an epoch on the synthetic data).
"""
from __future__ import annotations


def to_tensors(parts):
    """The arrays as TensorFlow tensors, converted once and reused by every epoch's dataset."""
    import tensorflow as tf

    return tf.nest.map_structure(tf.convert_to_tensor, tuple(p for p in parts if p is not None))


def make_dataset(x: dict, y: dict | None, sample_weight: dict | None, batch_size: int,
                 shuffle: bool, seed: int, epoch: int = 0, tensors=None):
    """One epoch of batches. The order is a stateless shuffle of the row indices seeded by
    (seed, epoch): the same on every run and after a resume, whatever came before."""
    import tensorflow as tf

    parts = (x,) if y is None else (x, y) if sample_weight is None else (x, y, sample_weight)
    tensors = tensors if tensors is not None else to_tensors(parts)
    n = int(next(iter(x.values())).shape[0])
    if shuffle:
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=[seed, epoch])
        rows = tf.data.Dataset.from_tensor_slices(order)
    else:
        rows = tf.data.Dataset.range(n)
    batches = rows.batch(batch_size)

    def gather(index):
        return tf.nest.map_structure(lambda t: tf.gather(t, index), tensors)

    return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
