"""Sequence blocks: a behaviour sequence as (L, d) with its mask, masked pooling, target
attention (DIN) and multi-head attention (BST, M2M).

A `sequence` block is where a sequence enters the graph; it declares the mask of its output,
and every block reading a sequence takes that mask, so padding never changes a result.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .base import Block, Out, ShapeError, expect_rank, mlp_params
from .registry import register


def _expect_sequence(out: Out, field: str) -> None:
    if out.kind != "sequence" or len(out.shape) != 2:
        raise ShapeError(f"expects a sequence (B, L, d) from a `sequence` block or an `attention` "
                         f"block with pool: none, got {out} ({out.kind})", field=field,
                         hint="embed the history first: {type: sequence, features: [hist_item]}")


@register
class SequenceInput(Block):
    """A sequence (or multi-valued) feature as (L, d): its embeddings, position by position,
    with its mask. Several features read together are side fields of one sequence (each watched
    video and its author): their embeddings are concatenated at each position, grouped by
    embedding width in declaration order, as `embed` orders a candidate's fields, so the
    candidate [video_id, author_id] and its history [hist_video, hist_author] line up."""

    type: Literal["sequence"] = "sequence"
    features: list[str] = Field(min_length=1, description="Sequence or multi-valued features; "
                                "after the first, each must be `aligned_with` it.")
    family = "sequence"
    reads_features = True
    feature_field = "features"

    def _ordered(self, ctx):
        first = self.features[0]
        dims = ctx.layout.dims()
        return sorted(self.features, key=lambda n: (dims.index(ctx.layout.dim_of(n)), self.features.index(n))) \
            if first in ctx.layout.lists else self.features

    def infer(self, inputs, ctx) -> Out:
        lists = ctx.layout.lists
        for name in self.features:
            f = ctx.blueprint.feature(name)
            if f is None or name not in lists:
                options = list(lists)
                what = "not a feature" if f is None else f"a {f.kind} feature"
                from ..blueprint.errors import did_you_mean

                raise ShapeError(f"'{name}' is {what}; a sequence block reads sequence or multi-valued "
                                 "features", field="features",
                                 hint=did_you_mean(name, options, what="list features") if options
                                 else "declare it with kind: sequence (or multi)")
        first = ctx.blueprint.feature(self.features[0])
        for name in self.features[1:]:
            f = ctx.blueprint.feature(name)
            if getattr(f, "aligned_with", None) != first.name:
                raise ShapeError(f"'{name}' is not aligned with '{first.name}': their positions could "
                                 "hold different events", field="features",
                                 hint=f"declare '{name}' with aligned_with: {first.name}, or read it in "
                                 "a sequence block of its own")
        return Out((first.max_len, sum(lists[n].dim for n in self.features)), "sequence")

    def label(self) -> str:
        return ", ".join(self.features)

    def build(self, inputs, ctx):
        import keras

        names = self._ordered(ctx)
        parts = [ctx.list_embedded(n) for n in names]
        ctx.set_mask(ctx.list_mask(self.features[0]))
        if len(parts) == 1:
            return parts[0]
        return keras.layers.Concatenate(axis=-1, name=ctx.layer_name())(parts)


@register
class Pool(Block):
    """Masked pooling of a sequence into one vector: mean, sum or max over its real positions
    (an empty sequence gives zeros)."""

    type: Literal["pool"] = "pool"
    input: str = Field(description="Reference to a sequence (a `sequence` block).")
    mode: Literal["mean", "sum", "max"] = Field("mean", description="How positions are combined.")
    refs = ("input",)
    family = "sequence"

    def infer(self, inputs, ctx) -> Out:
        _expect_sequence(inputs["input"], "input")
        return Out((inputs["input"].shape[1],))

    def label(self) -> str:
        return self.mode

    def build(self, inputs, ctx):
        from ..layers.sequence import MaskedPooling

        return MaskedPooling(self.mode, name=ctx.layer_name())([inputs["input"], ctx.mask_of("input")])


@register
class TargetAttention(Block):
    """DIN's local activation unit: the candidate attends over the history; an MLP over
    [h, c, h - c, h * c] scores each position, padding scores nothing, and the output is the
    score-weighted sum of the history (unnormalised, as in the paper, unless `softmax`)."""

    type: Literal["target_attention"] = "target_attention"
    input: str = Field(description="Reference to the history (a `sequence` block).")
    query: str = Field(description="Reference to the candidate vector, as wide as a history position "
                       "(e.g. an `embed` of [video_id, author_id] for a history of [hist_video, hist_author]).")
    units: list[PositiveInt] = Field(default_factory=lambda: [80, 40],
                                     description="Hidden widths of the activation unit.")
    activation: Literal["sigmoid", "relu", "prelu", "dice"] = Field(
        "sigmoid", description="Activation of the unit's hidden layers.")
    softmax: bool = Field(False, description="Normalise the scores over the real positions.")
    refs = ("input", "query")
    family = "sequence"
    paper = 'Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018'

    def infer(self, inputs, ctx) -> Out:
        _expect_sequence(inputs["input"], "input")
        expect_rank(inputs["query"], 1, "query", "a vector")
        d, q = inputs["input"].shape[1], inputs["query"].shape[0]
        if d != q:
            raise ShapeError(f"the query is {q} wide but each history position is {d} wide", field="query",
                             hint="embed the candidate with the features its history mirrors (the same "
                             "shared tables, in the same order)")
        return Out((d,))

    def count_params(self, inputs, ctx) -> int:
        d = inputs["input"].shape[1]
        return mlp_params(4 * d, self.units) + self.units[-1] + 1

    def label(self) -> str:
        return f"units={self.units}" + (", softmax" if self.softmax else "")

    def build(self, inputs, ctx):
        from ..layers.sequence import TargetAttention as Layer

        return Layer(units=list(self.units), activation=self.activation, softmax=self.softmax,
                     name=ctx.layer_name())([inputs["query"], inputs["input"], ctx.mask_of("input")])


@register
class Attention(Block):
    """Multi-head attention over a sequence with its mask. Without `query`: a transformer layer
    of self-attention with learned positions (BST), giving the sequence back (`pool: none`) or
    pooled (`mean` over real positions, or `last`: the newest). With `query` (a candidate, a
    task or a scenario representation, as M2M needs): one attention of that vector over the
    sequence, giving one vector."""

    type: Literal["attention"] = "attention"
    input: str = Field(description="Reference to a sequence (a `sequence` block).")
    query: str | None = Field(None, description="Reference to a query vector; omit for self-attention.")
    heads: PositiveInt = Field(2, le=64, description="Attention heads.")
    key_dim: PositiveInt | None = Field(None, description="Width per head (default d / heads).")
    positions: bool = Field(True, description="Add learned position embeddings (counted back from the newest).")
    feed_forward: PositiveInt | None = Field(None, description="Self-attention: hidden width of the "
                                             "feed-forward layer (default 4d).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the attention output.")
    pool: Literal["none", "mean", "last"] = Field(
        "none", description="Self-attention: keep the sequence, or pool it to one vector.")
    refs = ("input", "query")
    family = "sequence"
    paper = ('Chen et al., "Behavior Sequence Transformer for E-commerce Recommendation in Alibaba", '
             'DLP-KDD 2019; Vaswani et al., "Attention Is All You Need", NeurIPS 2017')

    def infer(self, inputs, ctx) -> Out:
        _expect_sequence(inputs["input"], "input")
        L, d = inputs["input"].shape
        if self.query is not None:
            expect_rank(inputs["query"], 1, "query", "a vector")
            if self.pool != "none":
                raise ShapeError("pool applies to self-attention; with a query the output is already "
                                 "one vector", field="pool", hint="remove pool")
            return Out((d,))
        return Out((L, d), "sequence") if self.pool == "none" else Out((d,))

    def count_params(self, inputs, ctx) -> int:
        L, d = inputs["input"].shape
        k = self.key_dim or max(1, d // self.heads)
        hk = self.heads * k
        q_in = inputs["query"].shape[0] if self.query is not None else d
        total = (q_in * hk + hk) + 2 * (d * hk + hk) + (hk * d + d)
        if self.positions:
            total += L * d
        if self.query is None:
            ff = self.feed_forward or 4 * d
            total += 2 * (2 * d) + (d * ff + ff) + (ff * d + d)
        return total

    def label(self) -> str:
        what = "query" if self.query else "self"
        return f"{what}, heads={self.heads}" + (", positions" if self.positions else "") + \
            (f", pool={self.pool}" if self.pool != "none" else "")

    def build(self, inputs, ctx):
        from ..layers.sequence import SequenceAttention

        L = ctx.input_outs["input"].shape[0]
        layer = SequenceAttention(heads=self.heads, key_dim=self.key_dim, positions=self.positions,
                                  max_len=L, feed_forward=self.feed_forward, dropout=self.dropout,
                                  pool=self.pool, query=self.query is not None, name=ctx.layer_name())
        mask = ctx.mask_of("input")
        if self.query is not None:
            return layer([inputs["query"], inputs["input"], mask])
        out = layer([inputs["input"], mask])
        if self.pool == "none":
            ctx.set_mask(mask)
        return out
