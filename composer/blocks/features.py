"""Feature blocks: a feature group as one dense vector (or a stack of field embeddings)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Block, Out, ShapeError
from .registry import register


@register
class Embed(Block):
    """Embeds a feature group: categorical ids through the shared embedding tables, numeric
    columns standardised. ``mode: flat`` concatenates everything into one vector (categorical
    fields first, grouped by embedding width, then numerics); ``mode: fields`` stacks the field
    embeddings as (fields, dim) for blocks that weigh fields (all fields categorical, one width).
    Embedding tables are shared: two groups naming one feature use the same rows."""

    type: Literal["embed"] = "embed"
    group: str = Field(description="Name of a feature group from `groups`.")
    mode: Literal["flat", "fields"] = Field("flat", description="One vector, or (fields, dim).")
    family = "features"

    def _features(self, ctx):
        return [ctx.blueprint.feature(n) for n in ctx.blueprint.groups[self.group]]

    def infer(self, inputs, ctx) -> Out:
        feats = self._features(ctx)
        cats = [f for f in feats if f.kind == "categorical"]
        if self.mode == "fields":
            dims = {f.dim for f in cats}
            if len(cats) != len(feats) or len(dims) != 1:
                raise ShapeError("mode 'fields' needs categorical features of one embedding dim; "
                                 f"group '{self.group}' has dims {sorted(dims)} and "
                                 f"{len(feats) - len(cats)} numeric feature(s)", field="mode",
                                 hint="use mode: flat, or a group of same-width categorical features")
            return Out((len(cats), cats[0].dim), "fields")
        return Out((sum(f.dim for f in cats) + len(feats) - len(cats),))

    def label(self) -> str:
        return f"group={self.group}" + (", fields" if self.mode == "fields" else "")

    def build(self, inputs, ctx):
        from ..layers.features import SelectFields

        import keras

        layout = ctx.layout
        names = ctx.blueprint.groups[self.group]
        parts = []
        for dim, fields in layout.categorical_by_dim.items():
            idx = [fields.index(n) for n in names if n in fields]
            if not idx:
                continue
            flatten = self.mode == "flat"
            parts.append(SelectFields(idx, flatten=flatten, name=ctx.layer_name(f"d{dim}"))(ctx.embedded(dim)))
        if self.mode == "fields":
            return parts[0]
        idx = [layout.numeric.index(n) for n in names if n in layout.numeric]
        if idx:
            parts.append(SelectFields(idx, flatten=False, name=ctx.layer_name("num"))(ctx.numeric()))
        if len(parts) == 1:
            return parts[0]
        return keras.layers.Concatenate(name=ctx.layer_name())(parts)
