"""Import TensorFlow without its C++ start-up chatter (oneDNN, CUDA probing) on stderr.

TensorFlow 2.21 prints these through absl before TF_CPP_MIN_LOG_LEVEL takes effect, so the CLI
silences file descriptor 2 for the import and the device probe only; a failing import still
raises, and its traceback prints after stderr is restored.
"""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_backend() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("COMPOSER_VERBOSE_TF"):
        return
    with _stderr_silenced():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()
