"""Block graph -> keras.Model: a thin loop over the topological order.

The model takes packed inputs (see :mod:`composer.layout`) and returns a dict of per-task
probabilities named after the tasks.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from .blueprint.errors import BlueprintError
from .graph import BlockGraph, Context, map_inputs


@dataclass
class BuildContext(Context):
    """What a block's ``build`` may use: the shared input stage and unique layer names."""

    inputs: dict = field(default_factory=dict)
    _embedded: dict = field(default_factory=dict)
    _numeric: object = None
    numeric_stats: tuple | None = None  # (mean, variance) per numeric column

    def layer_name(self, suffix: str | None = None) -> str:
        base = self.layer_name_of(self.node)
        return f"{base}-{suffix}" if suffix else base

    def embedded(self, dim: int):
        """(B, F_dim, dim) embeddings of every `dim`-wide field: one table, one gather."""
        if dim not in self._embedded:
            from .layers.features import PackedEmbedding

            names = self.layout.categorical_by_dim[dim]
            layer = PackedEmbedding([self.layout.vocab_sizes[n] for n in names], dim,
                                    name=f"embedding_d{dim}")
            self._embedded[dim] = layer(self.inputs[self.layout.input_name(dim)])
        return self._embedded[dim]

    @staticmethod
    def layer_name_of(node: str) -> str:
        # Keras refuses "/" in a layer name and PyTorch "." in a parameter name (the torch
        # backend registers each variable under its path); "-" never occurs in a block id
        return node.replace("/", "-").replace(".", "-")

    def scenario(self):
        """(B, 1) int32 scenario ids of the batch (0..S-1); shape rules already checked, with
        ``scenario_count``, that the blueprint declares scenarios."""
        return self.inputs["scenario"]

    def numeric(self):
        """(B, N) numeric columns, standardised with the training split's statistics."""
        if self._numeric is None:
            import keras

            n = len(self.layout.numeric)
            mean, var = self.numeric_stats or ([0.0] * n, [1.0] * n)
            # float32 under mixed precision too: x - mean on raw values needs more than
            # bfloat16's 8 significant bits (the year 1995 is 1992 in bfloat16)
            self._numeric = keras.layers.Normalization(mean=mean, variance=var, name="numeric_norm",
                                                       dtype="float32")(self.inputs["numeric"])
        return self._numeric


@contextmanager
def dtype_policy(name: str):
    """Keras layers created inside use the dtype policy ``name`` (``float32``,
    ``mixed_bfloat16``); the global policy is restored on exit."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def compile_graph(graph: BlockGraph, numeric_stats=None):
    """Build the keras.Model for a validated graph, under its ``training.precision``."""
    import keras

    from . import layers  # noqa: F401  (registers the layers)

    missing = graph.layout.missing_vocab()
    if missing:
        raise BlueprintError(
            f"categorical feature(s) {', '.join(missing)} have no vocab_size",
            location=graph.doc.location(("features",)) if graph.doc else None, key="features",
            hint="set vocab_size in the blueprint, or train on data so vocabularies are fitted")
    keras.utils.set_random_seed(graph.blueprint.training.seed)
    inputs = {name: keras.Input(shape=shape, dtype=dtype, name=name)
              for name, (shape, dtype) in graph.layout.inputs().items()}
    ctx = BuildContext(graph.blueprint, graph.layout, inputs=inputs, numeric_stats=numeric_stats)
    tensors = {}
    # under mixed precision the output blocks stay float32: bfloat16 logits (8 significant bits)
    # would tie scores in the AUC, and the losses and metrics read them
    heads = set(graph.outputs.values())
    with dtype_policy(graph.blueprint.training.precision):
        for nid in graph.order:
            node = graph.nodes[nid]
            ctx.node, ctx.source = nid, node.source
            ctx.input_outs = map_inputs(graph.inputs[nid], lambda t: graph.nodes[t].out)
            with dtype_policy("float32") if nid in heads else nullcontext():
                tensors[nid] = node.block.build(map_inputs(graph.inputs[nid], tensors.__getitem__), ctx)
    outputs = {}
    for task, nid in graph.outputs.items():
        out = tensors[nid]
        if graph.nodes[nid].out.kind == "logit":
            out = keras.layers.Activation("sigmoid", name=task, dtype="float32")(out)
        elif ctx.layer_name_of(nid) != task:  # outputs are named after their tasks
            out = keras.layers.Identity(name=task, dtype="float32")(out)
        outputs[task] = out
    return keras.Model(inputs=inputs, outputs=outputs, name=graph.blueprint.name)


def compile_blueprint(file: str, vocab_sizes=None, numeric_stats=None):
    """Load, validate and compile a blueprint file: returns (keras.Model, BlockGraph)."""
    from .blueprint import load_blueprint
    from .graph import build_graph

    bp, doc = load_blueprint(file)
    graph = build_graph(bp, doc, vocab_sizes)
    return compile_graph(graph, numeric_stats), graph
