"""Gradients in tests, on whichever Keras backend runs them (Keras 3 has no backend-neutral
gradient API): ``tf.GradientTape`` under TensorFlow, ``jax.grad`` under JAX with the variables
passed in through a ``keras.StatelessScope``, ``torch.autograd.grad`` under PyTorch.

``tests/conftest.py`` puts this folder on ``sys.path``, so ``from backend_grad import gradients``
works from every test folder.
"""
from __future__ import annotations

import keras
import numpy as np


def gradients(fn, inputs, variables=()):
    """d fn(*inputs) / d (each input, then each variable), as NumPy arrays; zeros where the
    scalar ``fn`` does not depend on one. ``fn`` uses ``keras.ops``; ``variables`` are
    ``keras.Variable`` s that ``fn`` reads (e.g. ``layer.trainable_variables``)."""
    inputs = [np.asarray(x, dtype="float32") for x in inputs]
    variables = list(variables)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xs = [tf.constant(x) for x in inputs]
        with tf.GradientTape() as tape:
            for x in xs:
                tape.watch(x)
            out = fn(*xs)
        # the raw tf.Variables: UnconnectedGradients.ZERO fails on keras.Variable sources
        sources = [*xs, *(v.value for v in variables)]
        grads = tape.gradient(out, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        # an embedding table's gradient is a tf.IndexedSlices: densify it
        return [tf.convert_to_tensor(g).numpy() for g in grads]
    if backend == "jax":
        import jax

        def scalar(xs, values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(*xs)

        gx, gv = jax.grad(scalar, argnums=(0, 1))([*inputs], [v.value for v in variables])
        return [np.asarray(g) for g in (*gx, *gv)]
    if backend == "torch":
        import torch

        xs = [keras.ops.convert_to_tensor(x).requires_grad_(True) for x in inputs]
        # a Keras variable's value is the torch.nn.Parameter its layer reads
        sources = [*xs, *(v.value for v in variables)]
        out = fn(*xs)
        # autograd refuses a non-trainable source, and an output that depends on no source
        live = [s for s in sources if s.requires_grad] if out.requires_grad else []
        grads = dict(zip(map(id, live), torch.autograd.grad(out, live, allow_unused=True) if live else []))
        return [np.zeros(tuple(s.shape), dtype="float32") if grads.get(id(s)) is None
                else grads[id(s)].detach().cpu().numpy() for s in sources]
    raise NotImplementedError(f"no gradient helper for the {backend} backend")
