"""tf.data input pipeline (TensorFlow backend only): batch, then prefetch, from packed arrays."""
from __future__ import annotations


def make_dataset(x: dict, y: dict | None, sample_weight: dict | None, batch_size: int,
                 shuffle: bool, seed: int):
    import tensorflow as tf

    parts = (x,) if y is None else (x, y) if sample_weight is None else (x, y, sample_weight)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        n = len(next(iter(x.values())))
        ds = ds.shuffle(min(n, 1_000_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
