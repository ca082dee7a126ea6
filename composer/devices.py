"""Whether the active Keras backend computes on an accelerator (a GPU or TPU).

Compile-time choices that depend on the hardware (``implementation: auto`` of an expert pool)
ask here. Each backend answers through its own library, imported only when that backend is the
active one (TensorFlow only under ``KERAS_BACKEND=tensorflow``, where Keras has imported it).
"""
from __future__ import annotations

import functools


def on_accelerator() -> bool:
    import keras

    return _on_accelerator(keras.backend.backend())


@functools.cache  # keyed by the backend, so keras.config.set_backend in-process is answered anew
def _on_accelerator(backend: str) -> bool:
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        return torch_device() != "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    return False


def torch_device() -> str:
    """The device Keras's torch backend puts its tensors on (``KERAS_TORCH_DEVICE``, else MPS,
    CUDA or XPU where present, else ``cpu``), as ``cuda``, ``mps``, ``cpu``..."""
    from keras.src.backend.torch.core import get_device  # Keras's own choice; no public API

    return str(get_device()).split(":")[0]
