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
    numeric_edges: dict | None = None  # numeric -> quantile edges fitted on train
    input_refs: dict = field(default_factory=dict)  # field -> the node id(s) it reads
    _masks: dict = field(default_factory=dict)
    _node_masks: dict = field(default_factory=dict)
    _numeric_embedded: dict = field(default_factory=dict)

    def layer_name(self, suffix: str | None = None) -> str:
        base = self.layer_name_of(self.node)
        return f"{base}-{suffix}" if suffix else base

    def embedded(self, dim: int):
        """(B, F_dim, dim) embeddings of every flat `dim`-wide field: one table, one gather."""
        return self._embed_width(dim)["flat"]

    def list_embedded(self, name: str):
        """(B, max_len, dim) embeddings of a multi-valued or sequence feature (padding zeros),
        gathered from its table in the same gather as its width's other inputs."""
        return self._embed_width(self.layout.lists[name].dim)[name]

    def list_mask(self, name: str):
        """(B, max_len) float mask of a list feature: 1 at ids, 0 at padding."""
        if name not in self._masks:
            from .layers.features import PaddingMask

            self._masks[name] = PaddingMask(name=f"mask_{self.layer_name_of(name)}")(
                self.inputs[self.layout.list_input(name)])
        return self._masks[name]

    def set_mask(self, mask) -> None:
        """Declare the mask of the current node's sequence output."""
        self._node_masks[self.node] = mask

    def mask_of(self, fname: str):
        """The mask of the sequence a field of the current node reads."""
        ref = self.input_refs[fname]
        return self._node_masks[ref]

    def _embed_width(self, dim: int) -> dict:
        if dim not in self._embedded:
            from .layers.features import PackedEmbedding

            lay = self.layout
            owners = lay.tables_by_dim[dim]
            flat = lay.categorical_by_dim.get(dim, [])
            lists = lay.lists_of_dim(dim)
            columns = [owners.index(lay.table_of[n]) for n in flat]
            identity = columns == list(range(len(owners)))
            layer = PackedEmbedding([lay.vocab_sizes[n] for n in owners], dim,
                                    columns=None if identity else columns,
                                    sequences=[owners.index(lay.table_of[n]) for n in lists] or None,
                                    flat=bool(flat), row_multiple=lay.row_multiple.get(dim, 1),
                                    name=f"embedding_d{dim}")
            if not lists:
                self._embedded[dim] = {"flat": layer(self.inputs[lay.input_name(dim)])}
            else:
                ins = ([self.inputs[lay.input_name(dim)]] if flat else []) + \
                    [self.inputs[lay.list_input(n)] for n in lists]
                outs = layer(ins)
                names = (["flat"] if flat else []) + lists
                self._embedded[dim] = dict(zip(names, outs))
        return self._embedded[dim]

    def numeric_embedding(self, name: str):
        """(B, dim) learned embedding of one numeric column (quantile buckets of its raw value, or
        periodic features of its standardised value)."""
        if name not in self._numeric_embedded:
            from .layers.features import SelectFields
            from .layers.sequence import PeriodicEmbedding, QuantileEmbedding

            spec = self.layout.numeric_embed[name]
            idx = self.layout.numeric.index(name)
            safe = self.layer_name_of(name)
            if spec.kind == "quantile":
                raw = SelectFields([idx], name=f"numeric_raw_{safe}")(self.inputs["numeric"])
                edges = (self.numeric_edges or {}).get(name)
                if edges is None:
                    raise BlueprintError(f"numeric feature '{name}' has no fitted quantile edges",
                                         key="features", hint="train on data, so the edges are fitted "
                                         "on the train split")
                out = QuantileEmbedding([edges], spec.dim, name=f"numeric_embed_{safe}")(raw)
            else:
                col = SelectFields([idx], name=f"numeric_std_{safe}")(self.numeric())
                out = PeriodicEmbedding(spec.frequencies, spec.dim, spec.sigma, name=f"numeric_embed_{safe}")(col)
            self._numeric_embedded[name] = SelectFields([0], flatten=True, name=f"numeric_vec_{safe}")(out)
        return self._numeric_embedded[name]

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


def compile_graph(graph: BlockGraph, numeric_stats=None, numeric_edges=None):
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
    ctx = BuildContext(graph.blueprint, graph.layout, inputs=inputs, numeric_stats=numeric_stats,
                       numeric_edges=numeric_edges)
    tensors = {}
    # under mixed precision the output blocks stay float32: bfloat16 logits (8 significant bits)
    # would tie scores in the AUC, and the losses and metrics read them
    heads = set(graph.outputs.values())
    with dtype_policy(graph.blueprint.training.precision):
        for nid in graph.order:
            node = graph.nodes[nid]
            ctx.node, ctx.source = nid, node.source
            ctx.input_outs = map_inputs(graph.inputs[nid], lambda t: graph.nodes[t].out)
            ctx.input_refs = dict(graph.inputs[nid])
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
