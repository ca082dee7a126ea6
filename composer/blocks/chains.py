"""Probability chains: task probabilities defined as expressions over other probabilities
(ESMM, ESM2 and longer behaviour chains), computed in probability space, never on logits."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Block, Out, ShapeError
from .registry import register


@register
class Chain(Block):
    """A probability from an expression over named inputs: ``ctr * cvr`` (ESMM) or
    ``y1 * (y2 * y3 + (1 - y2) * y4)`` (ESM2). Inputs that are logits (towers) pass through a
    sigmoid first; the expression takes numbers, names, ``+ - *`` and parentheses, parsed by
    Composer's own safe parser (never ``eval``). Output: a probability of shape (B, 1)."""

    type: Literal["chain"] = "chain"
    inputs: dict[str, str] = Field(min_length=1, description="Expression name -> reference to a "
                                   "logit (tower) or probability block.")
    expression: str = Field(description="Probability expression over the input names.")
    refs = ("inputs",)
    family = "chains"
    paper = ("Ma et al., Entire Space Multi-Task Model (ESMM), SIGIR 2018; Wen et al., ESM2, "
             "SIGIR 2020")

    def _parsed(self, ctx):
        from ..blueprint.expressions import check_names, parse_probability

        file, line, col = ctx.expression_position("expression")
        key = f"blocks.{ctx.source}.expression"
        expr = parse_probability(self.expression, file=file, line=line, column=col, key=key)
        check_names(expr, list(self.inputs), what="chain inputs", file=file, line=line, column=col, key=key)
        return expr

    def infer(self, inputs, ctx) -> Out:
        self._parsed(ctx)
        for name, out in inputs["inputs"].items():
            if out.shape != (1,) or out.kind not in ("logit", "prob"):
                raise ShapeError(f"input '{name}' gives {out} ({out.kind}); a chain multiplies "
                                 "probabilities of shape (B, 1)", field="inputs",
                                 hint="reference a tower (logit) or a predict/chain block")
        return Out((1,), "prob")

    def label(self) -> str:
        return self.expression

    def build(self, inputs, ctx):
        from ..layers.chains import ProbabilityChain

        names = list(self.inputs)
        logits = [ctx.kind("inputs", n) == "logit" for n in names]
        return ProbabilityChain(self.expression, names, logits, name=ctx.layer_name())(
            [inputs["inputs"][n] for n in names])
