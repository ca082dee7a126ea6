"""How named features are packed into the model's inputs (pure Python).

Categorical ids arrive as one integer matrix per embedding width (``ids_d8`` holds every
8-wide single-valued field, in declaration order); numerics arrive as one float matrix
``numeric``. A multi-valued or sequence feature arrives as its own padded id matrix
``seq_<name>`` of shape (B, max_len), with -1 as padding (0 stays the out-of-vocabulary row, so
an unseen item in a history is a real, unknown item, not padding). Every width has one stacked
table: the rows of each table *owner* (a feature without ``share``) stacked, and every input of
that width, flat or list, is looked up in it with one gather. A feature with ``share`` reads its
owner's rows. A multi-scenario blueprint adds ``scenario``: each row's scenario id (0..S-1, the
declared values' order) as an int32 column. The data pipeline packs with the same layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PADDING = -1


@dataclass(frozen=True)
class ListField:
    """A multi-valued or sequence feature as the model sees it."""

    name: str
    dim: int
    max_len: int
    ordered: bool  # sequence (right-aligned, newest last) or multi-valued (left-aligned)
    pool: str  # how an `embed` group pools it
    table: str  # the table owner whose rows it reads


@dataclass
class FeatureLayout:
    categorical_by_dim: dict[int, list[str]] = field(default_factory=dict)  # flat id columns
    vocab_sizes: dict[str, int | None] = field(default_factory=dict)  # per table owner
    numeric: list[str] = field(default_factory=list)
    scenario: str | None = None  # the scenario column
    scenario_values: list[str] = field(default_factory=list)  # in id order
    tables_by_dim: dict[int, list[str]] = field(default_factory=dict)  # table owners, row order
    table_of: dict[str, str] = field(default_factory=dict)  # id feature -> its table owner
    lists: dict[str, ListField] = field(default_factory=dict)
    hash_buckets: dict[str, int] = field(default_factory=dict)  # hashed table owners
    numeric_embed: dict[str, object] = field(default_factory=dict)  # numeric -> NumericEmbedding
    numeric_rows: dict[str, int | None] = field(default_factory=dict)  # quantile numeric -> fitted buckets
    row_multiple: dict[int, int] = field(default_factory=dict)  # width -> rows padded to a multiple (sharded tables)

    @classmethod
    def from_blueprint(cls, bp, vocab_sizes: dict[str, int] | None = None) -> "FeatureLayout":
        layout = cls()
        by_name = {f.name: f for f in bp.features}
        for f in bp.features:
            if f.kind == "numeric":
                layout.numeric.append(f.name)
                if f.embed is not None:
                    layout.numeric_embed[f.name] = f.embed
                    if f.embed.kind == "quantile":
                        layout.numeric_rows[f.name] = (vocab_sizes or {}).get(f.name)
                continue
            owner = table_owner(f.name, by_name)
            layout.table_of[f.name] = owner
            dim = by_name[owner].dim
            if owner == f.name:
                layout.tables_by_dim.setdefault(dim, []).append(f.name)
                size = f.hash_buckets or (vocab_sizes or {}).get(f.name, f.vocab_size)
                layout.vocab_sizes[f.name] = size
                if f.hash_buckets:
                    layout.hash_buckets[f.name] = f.hash_buckets
            if f.kind == "categorical":
                layout.categorical_by_dim.setdefault(dim, []).append(f.name)
            else:
                layout.lists[f.name] = ListField(f.name, dim, f.max_len, f.kind == "sequence", f.pool, owner)
        if bp.scenarios is not None:
            layout.scenario, layout.scenario_values = bp.scenarios.feature, bp.scenarios.ids
        return layout

    @staticmethod
    def input_name(dim: int) -> str:
        return f"ids_d{dim}"

    @staticmethod
    def list_input(name: str) -> str:
        return f"seq_{name}"

    def dims(self) -> list[int]:
        """Every embedding width, in the order its table was first declared."""
        return list(self.tables_by_dim)

    def lists_of_dim(self, dim: int) -> list[str]:
        return [n for n, lf in self.lists.items() if lf.dim == dim]

    def dim_of(self, name: str) -> int:
        owner = self.table_of[name]
        return next(d for d, owners in self.tables_by_dim.items() if owner in owners)

    def inputs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Model input name -> (shape without batch, dtype)."""
        out = {self.input_name(d): ((len(names),), "int32") for d, names in self.categorical_by_dim.items()}
        out.update({self.list_input(n): ((lf.max_len,), "int32") for n, lf in self.lists.items()})
        if self.numeric:
            out["numeric"] = ((len(self.numeric),), "float32")
        if self.scenario:
            out["scenario"] = ((1,), "int32")
        return out

    def missing_vocab(self) -> list[str]:
        return [name for name, v in self.vocab_sizes.items() if v is None]

    def embedding_params(self) -> int | None:
        """Rows x width of every table, numeric embeddings included (None until fitted)."""
        if self.missing_vocab() or any(v is None for v in self.numeric_rows.values()):
            return None
        total = sum(self.vocab_sizes[n] * d for d, names in self.tables_by_dim.items() for n in names)
        for name, e in self.numeric_embed.items():
            if e.kind == "quantile":
                total += self.numeric_rows[name] * e.dim
            else:  # frequencies c, then a per-column Linear(2k -> dim)
                total += e.frequencies + 2 * e.frequencies * e.dim + e.dim
        return total

    def shared(self) -> dict[str, str]:
        """Feature -> the owner whose table it reads, for features that share one."""
        return {n: o for n, o in self.table_of.items() if n != o}


def table_owner(name: str, by_name: dict) -> str:
    """The feature whose table ``name`` reads, following ``share`` (validation has refused
    chains through unknown features and cycles)."""
    seen = {name}
    while by_name[name].share is not None and by_name[name].share in by_name:
        name = by_name[name].share
        if name in seen:
            break
        seen.add(name)
    return name
