"""Dense building blocks: MLPs, towers, the cross network, joins, the sigmoid head and
stop-gradient."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .base import Block, Out, ShapeError, expect_rank, mlp_params
from .registry import register

Activation = Literal["relu", "gelu", "silu", "tanh", "sigmoid", "elu", "selu", "leaky_relu", "linear"]


class _MlpOptions(Block):
    units: list[PositiveInt] = Field(min_length=1, description="Width of each hidden layer.")
    activation: Activation = Field("relu", description="Activation after each hidden layer.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout rate after each hidden layer.")
    batch_norm: bool = Field(False, description="Batch normalisation before each activation.")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty on the kernels.")

    def _mlp(self, ctx, units, output_activation="same", suffix=None):
        from ..layers.dense import MLP

        return MLP(units=list(units), activation=self.activation, dropout=self.dropout,
                   batch_norm=self.batch_norm, l2=self.l2, output_activation=output_activation, name=ctx.layer_name(suffix))


@register
class Mlp(_MlpOptions):
    """A stack of Dense layers: Dense -> [BatchNorm] -> activation -> [Dropout] per width."""

    type: Literal["mlp"] = "mlp"
    input: str = Field(description="Reference to the input block.")
    refs = ("input",)
    family = "dense"

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        return Out((self.units[-1],))

    def count_params(self, inputs, ctx) -> int:
        return mlp_params(inputs["input"].shape[0], self.units, self.batch_norm)

    def label(self) -> str:
        return f"units={self.units}, {self.activation}" + (f", dropout={self.dropout}" if self.dropout else "")

    def build(self, inputs, ctx):
        return self._mlp(ctx, self.units)(inputs["input"])


@register
class Tower(_MlpOptions):
    """A task tower: hidden layers as in `mlp`, then one linear unit giving a logit."""

    type: Literal["tower"] = "tower"
    input: str = Field(description="Reference to the input block.")
    units: list[PositiveInt] = Field(default_factory=list, description="Hidden widths before the logit.")
    refs = ("input",)
    family = "dense"

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        return Out((1,), "logit")

    def count_params(self, inputs, ctx) -> int:
        hidden = mlp_params(inputs["input"].shape[0], self.units, self.batch_norm)
        return hidden + (self.units[-1] if self.units else inputs["input"].shape[0]) + 1

    def label(self) -> str:
        return f"units={self.units} -> logit"

    def build(self, inputs, ctx):
        return self._mlp(ctx, [*self.units, 1], output_activation="linear")(inputs["input"])


@register
class Cross(Block):
    """DCN-v2's cross network: explicit feature crosses, x_{l+1} = x_0 * (W_l x_l + b_l) + x_l,
    the same width as its input. Stack it before an MLP or an expert block (DCN-v2's "stacked"
    form), or concat it with one ("parallel")."""

    type: Literal["cross"] = "cross"
    input: str = Field(description="Reference to the input block (a vector).")
    layers: PositiveInt = Field(2, description="Cross layers; crosses reach degree layers + 1.")
    low_rank: PositiveInt | None = Field(
        None, description="Rank r of each layer's matrix, as U V^T with U, V of shape (d, r): 2dr + d "
        "weights per layer instead of d^2 + d. Unset: full matrices.")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty on the cross kernels.")
    refs = ("input",)
    family = "dense"
    paper = "Wang et al., DCN V2: Improved Deep & Cross Network, WWW 2021"

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        d = inputs["input"].shape[0]
        if self.low_rank is not None and 2 * self.low_rank >= d:
            raise ShapeError(f"low_rank {self.low_rank} on an input of width {d} gives 2*{d}*{self.low_rank} "
                             f"weights per layer, no fewer than the full {d}x{d}", field="low_rank",
                             hint=f"use a rank below {-(-d // 2)}, or drop low_rank for full matrices")
        return Out(inputs["input"].shape)

    def count_params(self, inputs, ctx) -> int:
        d = inputs["input"].shape[0]
        kernel = d * d if self.low_rank is None else 2 * d * self.low_rank
        return self.layers * (kernel + d)

    def label(self) -> str:
        return f"layers={self.layers}" + (f", rank={self.low_rank}" if self.low_rank else "")

    def build(self, inputs, ctx):
        from ..layers.dense import CrossNetwork

        return CrossNetwork(layers=self.layers, low_rank=self.low_rank, l2=self.l2,
                            name=ctx.layer_name())(inputs["input"])


class _Join(Block):
    inputs: list[str] = Field(min_length=2, description="References to the blocks to join.")
    refs = ("inputs",)
    family = "dense"


@register
class Concat(_Join):
    """Concatenates vectors along the feature axis."""

    type: Literal["concat"] = "concat"

    def infer(self, inputs, ctx) -> Out:
        for i, out in enumerate(inputs["inputs"]):
            if len(out.shape) != 1:
                raise ShapeError(f"inputs[{i}] has shape {out}; concat joins vectors", field="inputs")
        return Out((sum(o.shape[0] for o in inputs["inputs"]),))

    def build(self, inputs, ctx):
        import keras

        return keras.layers.Concatenate(name=ctx.layer_name())(inputs["inputs"])


@register
class Add(_Join):
    """Element-wise sum of inputs of one shape (e.g. a main logit plus a scenario logit)."""

    type: Literal["add"] = "add"

    def infer(self, inputs, ctx) -> Out:
        first = inputs["inputs"][0]
        for i, out in enumerate(inputs["inputs"][1:], start=1):
            if out.shape != first.shape:
                raise ShapeError(f"inputs[{i}] has shape {out} but inputs[0] has {first}",
                                 field="inputs", hint="add needs inputs of one shape")
        kinds = {o.kind for o in inputs["inputs"]}
        return Out(first.shape, "logit" if kinds == {"logit"} else "hidden")

    def build(self, inputs, ctx):
        import keras

        return keras.layers.Add(name=ctx.layer_name())(inputs["inputs"])


@register
class Predict(Block):
    """Sigmoid of a logit: the probability of a binary task."""

    type: Literal["predict"] = "predict"
    input: str = Field(description="Reference to a block giving a logit of shape (B, 1).")
    refs = ("input",)
    family = "dense"

    def infer(self, inputs, ctx) -> Out:
        if inputs["input"].shape != (1,):
            raise ShapeError(f"expects a logit of shape (B, 1), got {inputs['input']}", field="input",
                             hint="feed it a tower (which ends in one unit)")
        return Out((1,), "prob")

    def build(self, inputs, ctx):
        import keras

        return keras.layers.Activation("sigmoid", name=ctx.layer_name())(inputs["input"])


@register
class StopGradient(Block):
    """Identity forward; no gradient flows back through it."""

    type: Literal["stop_gradient"] = "stop_gradient"
    input: str = Field(description="Reference to the block whose gradient is cut.")
    refs = ("input",)
    family = "dense"

    def infer(self, inputs, ctx) -> Out:
        return inputs["input"]

    def build(self, inputs, ctx):
        from ..layers.dense import StopGradient as Layer

        return Layer(name=ctx.layer_name())(inputs["input"])
