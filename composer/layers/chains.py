"""The probability-chain layer: an expression over probabilities, evaluated with keras.ops."""
from __future__ import annotations

import keras
from keras import ops

from ..blueprint.expressions import evaluate, parse_probability


@keras.saving.register_keras_serializable(package="composer")
class ProbabilityChain(keras.layers.Layer):
    """``expression`` over named probabilities, e.g. ``ctr * cvr``.

    Args:
        expression: a probability expression (numbers, names, ``+ - *``, parentheses).
        names: the input names, in the order the inputs are passed.
        logits: per input, whether it is a logit (a sigmoid is applied first).

    Input: a list of tensors of shape ``(batch, 1)``. Output shape: ``(batch, 1)``.

    Example:
        >>> ProbabilityChain("a * b", ["a", "b"], [False, False])([np.full((2, 1), .5)] * 2)
    """

    def __init__(self, expression, names, logits, **kwargs):
        super().__init__(**kwargs)
        self.expression = str(expression)
        self.names = [str(n) for n in names]
        self.logits = [bool(v) for v in logits]
        self._expr = parse_probability(self.expression)

    def call(self, inputs):
        env = {n: ops.sigmoid(x) if is_logit else x for n, x, is_logit in zip(self.names, inputs, self.logits)}
        out = evaluate(self._expr, env, ops)  # keras.ops has every op evaluate needs
        if not hasattr(out, "shape") or len(getattr(out, "shape", ())) == 0:
            out = ops.ones_like(inputs[0]) * out  # a constant expression
        return out

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "expression": self.expression, "names": self.names,
                "logits": self.logits}
