"""``distribution: model_parallel``: the model laid out on a (batch, model) device mesh through
Keras's own distribution API (``keras.distribution.ModelParallel`` with a ``LayoutMap``).

Each embedding width is one stacked table (``embedding_d<width>/embeddings``, see
composer.layers.features.PackedEmbedding). A stacked table of at least
``training.shard_min_rows`` rows gets the layout ``(model, None)``: its rows are split over the
mesh's model axis (the table padded up to a multiple of the axis, so the shards are equal), and
the optimizer's slots follow it (Keras gives a slot its variable's layout). Every other variable
(small tables, dense layers) is replicated; the batch is split over the batch axis. The packed
inputs do not change: the one gather per width reads a row-sharded table, and XLA's SPMD
partitioner turns it into a local gather on each shard and a sum over the model axis.
"""
from __future__ import annotations

from .memory_plan import mesh_shape, sharded_widths

MESH_AXES = ("batch", "model")


def table_path(dim: int) -> str:
    """The Keras variable path of the stacked table of width ``dim`` (compiler.BuildContext)."""
    return f"embedding_d{dim}/embeddings"


def device_mesh(devices, model_axis: int | None):
    """A ``keras.distribution.DeviceMesh`` of shape (batch, model) over ``devices`` (every
    process's, process 0's first, so a model axis within one machine keeps each process's devices
    on whole rows of the mesh)."""
    import keras

    shape = mesh_shape(len(devices), model_axis)
    return keras.distribution.DeviceMesh(shape, MESH_AXES, devices=devices)


def layout_map(mesh, widths):
    """Row-sharded layouts for the stacked tables of ``widths``; every other variable replicated
    (ModelParallel's default for a path the map does not name)."""
    import keras

    layouts = keras.distribution.LayoutMap(mesh)
    for dim in widths:
        layouts[table_path(dim)] = keras.distribution.TensorLayout((MESH_AXES[1], None), mesh)
    return layouts


def model_parallel(layout, mesh, training):
    """``(ModelParallel, sharded widths)`` for a fitted ``FeatureLayout``; sets the row padding of
    the sharded tables on ``layout`` (``row_multiple``), which the compiler hands to their layer."""
    import keras

    widths = sharded_widths(layout, "model_parallel", training.shard_min_rows)
    model = mesh.shape[1]
    layout.row_multiple = {d: model for d in widths}
    # Composer feeds each process its own part of every batch (distributed.ShardedBatches)
    distribution = keras.distribution.ModelParallel(layout_map=layout_map(mesh, widths),
                                                    batch_dim_name=MESH_AXES[0], auto_shard_dataset=False)
    return distribution, widths
