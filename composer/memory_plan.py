"""How much memory each device needs for a model's weights and optimizer slots (pure Python:
no TensorFlow, Keras or JAX).

Every embedding width is one stacked table (composer.layout): ``rows x width`` float32 values,
plus the optimizer's slots, one more copy per slot (Adam and AdamW 2: first and second moments;
Adagrad and RMSprop 1: accumulator / velocity; SGD 0, without momentum, Keras's default). Under
``distribution: model_parallel`` a stacked table of at least ``training.shard_min_rows`` rows is
split by rows over the mesh's model axis (padded up to a multiple of it, so every device holds
the same number of rows); everything else (smaller tables, numeric embeddings, dense layers) is
replicated on every device. Under the other distributions everything is replicated.

The figures count the model's variables only: not the activations of a batch, the training rows
on the device (``training.device_budget_mb``) or the framework's own buffers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .blueprint.errors import BlueprintError

FLOAT_BYTES = 4  # weights and slots are float32 (mixed_bfloat16 keeps float32 weights too)
SLOTS = {"adam": 2, "adamw": 2, "adagrad": 1, "rmsprop": 1, "sgd": 0}
MIB = 2 ** 20


def padded_rows(rows: int, multiple: int) -> int:
    """``rows`` rounded up to a multiple of ``multiple`` (a row-sharded table's rows)."""
    return math.ceil(rows / multiple) * multiple


def mesh_shape(devices: int, model_axis: int | None, key: str = "training.model_axis") -> tuple[int, int]:
    """(batch, model) axis sizes of a model_parallel mesh over ``devices`` devices."""
    model = devices if model_axis is None else int(model_axis)
    if model > devices:
        raise BlueprintError(f"{model} devices on the model axis, but only {devices} device(s) to lay out",
                             key=key, hint=f"use at most {devices}")
    if devices % model:
        divisors = [d for d in range(1, devices + 1) if devices % d == 0]
        raise BlueprintError(f"{model} does not divide the {devices} devices into a (batch, model) mesh",
                             key=key, hint=f"use one of {', '.join(map(str, divisors))}")
    return devices // model, model


def sharded_widths(layout, distribution: str, shard_min_rows: int) -> list[int]:
    """The embedding widths whose stacked table is split by rows (model_parallel only)."""
    if distribution != "model_parallel" or layout.missing_vocab():
        return []
    return [d for d in layout.dims() if stacked_rows(layout, d) >= shard_min_rows]


def stacked_rows(layout, dim: int) -> int:
    return sum(layout.vocab_sizes[n] for n in layout.tables_by_dim[dim])


@dataclass
class TableLine:
    name: str  # the stacked table's layer, e.g. embedding_d8
    owners: list[str]
    rows: int  # padded where sharded
    width: int
    sharded: bool

    @property
    def weight_bytes(self) -> int:
        return self.rows * self.width * FLOAT_BYTES


@dataclass
class MemoryPlan:
    """Per stacked table: rows x width x bytes, its optimizer slots, and where it lives."""

    tables: list[TableLine]
    other_params: int | None  # dense layers and numeric embeddings (replicated)
    optimizer: str
    distribution: str
    devices: int
    model_axis: int  # 1 unless model_parallel
    missing: list[str] = field(default_factory=list)  # tables whose rows are not known

    @classmethod
    def of(cls, graph, training, devices: int = 1) -> "MemoryPlan":
        """The plan of a built graph (``graph.layout`` with its vocabulary sizes) under a
        blueprint's ``training`` section, on ``devices`` devices."""
        layout = graph.layout
        model = 1
        if training.distribution == "model_parallel":
            model = mesh_shape(devices, training.model_axis)[1]
        split = sharded_widths(layout, training.distribution, training.shard_min_rows)
        tables = []
        for dim in layout.dims():
            owners = layout.tables_by_dim[dim]
            if any(layout.vocab_sizes[n] is None for n in owners):
                continue
            rows = stacked_rows(layout, dim)
            tables.append(TableLine(f"embedding_d{dim}", list(owners),
                                    padded_rows(rows, model) if dim in split else rows, dim, dim in split))
        emb = layout.embedding_params()
        other = None
        if emb is not None:
            other = graph.block_params + emb - sum(layout.vocab_sizes[n] * d for d, names in
                                                   layout.tables_by_dim.items() for n in names)
        return cls(tables, other, training.optimizer, training.distribution, devices, model,
                   missing=layout.missing_vocab())

    @property
    def copies(self) -> int:
        """The weight and its optimizer slots."""
        return 1 + SLOTS[self.optimizer]

    def device_bytes(self, line: TableLine) -> int:
        """What one device holds of ``line``, slots included."""
        total = line.weight_bytes * self.copies
        return total // self.model_axis if line.sharded else total

    @property
    def complete(self) -> bool:
        return not self.missing and self.other_params is not None

    def per_device(self) -> int | None:
        if not self.complete:
            return None
        return sum(self.device_bytes(t) for t in self.tables) + self.other_params * FLOAT_BYTES * self.copies

    def replicated_per_device(self) -> int | None:
        """The same model with every table replicated (what data_parallel or one device needs)."""
        if not self.complete:
            return None
        return (sum(t.weight_bytes for t in self.tables) + self.other_params * FLOAT_BYTES) * self.copies

    def layout_text(self) -> str:
        if self.distribution == "model_parallel":
            return (f"model_parallel on a ({self.devices // self.model_axis} batch x {self.model_axis} model) mesh "
                    f"of {self.devices} device(s)")
        where = "one device" if self.distribution == "none" else f"{self.distribution}, replicated on every device"
        return where

    def table(self) -> str:
        from tabulate import tabulate

        slots = SLOTS[self.optimizer]
        rows = []
        for t in self.tables:
            rows.append([t.name, ", ".join(t.owners), f"{t.rows:,}", t.width, _mib(t.weight_bytes),
                         _mib(t.weight_bytes * slots), f"sharded / {self.model_axis}" if t.sharded else "replicated",
                         _mib(self.device_bytes(t))])
        for name in self.missing:
            rows.append([f"({name})", name, "?", "", "", "", "", "fitted from data"])
        if self.other_params is not None:
            b = self.other_params * FLOAT_BYTES
            rows.append(["dense + numeric", f"{self.other_params:,} params", "", "", _mib(b), _mib(b * slots),
                         "replicated", _mib(b * self.copies)])
        per = self.per_device()
        rows.append(["per device", "", "", "", "", "", "", _mib(per) if per is not None else "?"])
        head = ["table", "features", "rows", "width", "weights MiB", f"{self.optimizer} slots MiB ({slots})",
                "layout", "per device MiB"]
        return f"memory plan: {self.layout_text()}, float32\n" + tabulate(rows, headers=head, tablefmt="simple",
                                                                          disable_numparse=True)

    def check(self, budget_mb: int | None, key: str = "training.device_memory_mb") -> None:
        """Refuse a layout that does not fit ``budget_mb`` MiB per device, with the figures."""
        if budget_mb is None:
            return
        per = self.per_device()
        if per is None:
            raise BlueprintError(f"cannot check the {budget_mb:,} MiB per device: the rows of "
                                 f"{', '.join(self.missing)} are fitted from the data", key=key,
                                 hint="give vocab_size or hash_buckets in the blueprint, or pass --run RUN_DIR "
                                 "(a run trained on this data)")
        if per <= budget_mb * MIB:
            return
        largest = max(self.tables, key=lambda t: t.weight_bytes, default=None)
        if self.distribution == "model_parallel":
            hint = (f"shard over more devices (a larger model axis), lower training.shard_min_rows, "
                    f"hash to fewer rows, or use a lighter optimizer ({self.optimizer} keeps "
                    f"{SLOTS[self.optimizer]} slot(s) per weight)")
        else:
            hint = "shard the large tables: distribution: model_parallel (KERAS_BACKEND=jax), or hash to fewer rows"
        what = f"; largest table {largest.name}: {largest.rows:,} x {largest.width}" if largest else ""
        raise BlueprintError(f"the model needs {_mib(per)} MiB per device under {self.layout_text()} "
                             f"(weights and {self.optimizer} slots{what}), over the budget of {budget_mb:,} MiB",
                             key=key, hint=hint)


def _mib(n: int) -> str:
    return f"{n / MIB:,.2f}"
