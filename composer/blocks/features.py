"""Feature blocks: a feature group as one dense vector (or a stack of field embeddings)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Block, Out, ShapeError
from .registry import register


@register
class Embed(Block):
    """Embeds a feature group: categorical ids through the shared embedding tables, numeric
    columns standardised (or embedded, for a numeric with `embed`), multi-valued and sequence
    features pooled with their mask by their `pool` (mean, sum or max). ``mode: flat``
    concatenates everything into one vector (categorical fields first, grouped by embedding
    width, then pooled lists, then numerics, then numeric embeddings); ``mode: fields`` stacks
    the field embeddings as (fields, dim) for blocks that weigh fields (categorical and list
    fields of one width). Embedding tables are shared: two groups naming one feature use the
    same rows, and so do features declared with `share`."""

    type: Literal["embed"] = "embed"
    group: str = Field(description="Name of a feature group from `groups`.")
    mode: Literal["flat", "fields"] = Field("flat", description="One vector, or (fields, dim).")
    family = "features"
    reads_features = True

    def _features(self, ctx):
        return [ctx.blueprint.feature(n) for n in ctx.blueprint.groups[self.group]]

    def infer(self, inputs, ctx) -> Out:
        feats = self._features(ctx)
        ids = [f for f in feats if f.kind != "numeric"]
        dims = [ctx.layout.dim_of(f.name) for f in ids]
        if self.mode == "fields":
            if len(ids) != len(feats) or len(set(dims)) != 1:
                raise ShapeError("mode 'fields' needs categorical features of one embedding dim; "
                                 f"group '{self.group}' has dims {sorted(set(dims))} and "
                                 f"{len(feats) - len(ids)} numeric feature(s)", field="mode",
                                 hint="use mode: flat, or a group of same-width categorical features")
            return Out((len(ids), dims[0]), "fields")
        nums = [f for f in feats if f.kind == "numeric"]
        return Out((sum(dims) + sum(f.embed.dim if f.embed else 1 for f in nums),))

    def label(self) -> str:
        return f"group={self.group}" + (", fields" if self.mode == "fields" else "")

    def build(self, inputs, ctx):
        from ..layers.features import SelectFields

        import keras

        layout = ctx.layout
        names = ctx.blueprint.groups[self.group]
        parts = []
        flatten = self.mode == "flat"
        for dim in layout.dims():
            fields = layout.categorical_by_dim.get(dim, [])
            idx = [fields.index(n) for n in names if n in fields]
            if not idx:
                continue
            parts.append(SelectFields(idx, flatten=flatten, name=ctx.layer_name(f"d{dim}"))(ctx.embedded(dim)))
        for n in names:
            if n in layout.lists:
                from ..layers.sequence import MaskedPooling

                pooled = MaskedPooling(layout.lists[n].pool, name=ctx.layer_name(f"pool_{ctx.layer_name_of(n)}"))(
                    [ctx.list_embedded(n), ctx.list_mask(n)])
                if not flatten:
                    pooled = keras.layers.Reshape((1, layout.lists[n].dim),
                                                  name=ctx.layer_name(f"field_{ctx.layer_name_of(n)}"))(pooled)
                parts.append(pooled)
        if self.mode == "fields":
            return parts[0] if len(parts) == 1 else keras.layers.Concatenate(axis=1, name=ctx.layer_name())(parts)
        idx = [layout.numeric.index(n) for n in names if n in layout.numeric and n not in layout.numeric_embed]
        if idx:
            parts.append(SelectFields(idx, flatten=False, name=ctx.layer_name("num"))(ctx.numeric()))
        parts += [ctx.numeric_embedding(n) for n in names if n in layout.numeric_embed]
        if len(parts) == 1:
            return parts[0]
        return keras.layers.Concatenate(name=ctx.layer_name())(parts)
