"""Whether the active Keras backend computes on an accelerator (a GPU or TPU).

Compile-time choices that depend on the hardware (``implementation: auto`` of an expert pool)
ask here. Each backend answers through its own library, imported only when that backend is the
active one: this is the one place outside the TensorFlow-only modules that may import
TensorFlow, and only under ``KERAS_BACKEND=tensorflow``, where Keras has already imported it.
"""
from __future__ import annotations

import functools


@functools.cache
def on_accelerator() -> bool:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()  # Keras's torch backend puts everything on CUDA then
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    return False
