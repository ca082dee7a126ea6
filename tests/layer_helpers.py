"""Helpers shared by the layer reference tests (``tests/conftest.py`` puts this folder on
``sys.path``)."""
from __future__ import annotations

import numpy as np


def randomise_biases(layer, seed=3):
    """Biases start at zero (or at a fixed pattern); random ones make a NumPy reference check
    the bias broadcast too."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        if v.path.endswith("bias") or v.path.rsplit("/", 1)[-1].startswith("bias"):
            v.assign(rng.normal(scale=0.5, size=v.shape).astype("float32"))
