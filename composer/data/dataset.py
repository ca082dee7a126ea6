"""A dataset: a table, the role of each column, and the split of each row.

``DataSpec`` is the static description (known without reading the data, so blueprints bound to
a dataset validate fast); ``Dataset`` is the loaded table. Raw values stay raw here: categorical
columns hold strings (or ints), numeric columns floats with NaN for missing, label columns 0/1
ints. Vocabularies and scaling are fitted later, on the train split only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ListSpec:
    """A list-valued feature column: each cell a 1-D array (or list) of raw ids, empty for none.

    ``ordered`` lists are sequences (oldest first, newest last: behaviour histories); the others
    are multi-valued fields (tags). ``share`` names the categorical column whose embedding table
    the list's ids are looked up in (the candidate and its history in one space);
    ``aligned_with`` names the sequence a side sequence runs beside (same length on every row)."""

    ordered: bool
    max_len: int
    share: str | None = None
    aligned_with: str | None = None

    @property
    def kind(self) -> str:
        return "sequence" if self.ordered else "multi"


@dataclass(frozen=True)
class DataSpec:
    name: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    labels: dict[str, str]  # task name -> label column (binary 0/1)
    scenario: str | None = None  # a categorical column whose value is the scenario
    scenario_values: tuple[str, ...] | None = None  # its values in id order, when known statically
    group: str | None = None  # GAUC group column (a user id); need not be a feature
    description: str = ""
    lists: dict[str, ListSpec] = field(default_factory=dict)  # list-valued feature columns
    outcomes: dict[str, str] = field(default_factory=dict)  # column -> why it is never a feature

    @property
    def features(self) -> tuple[str, ...]:
        return self.categorical + tuple(self.lists) + self.numeric


@dataclass
class Dataset:
    spec: DataSpec
    frame: "object"  # pandas.DataFrame with every feature, label, scenario and group column
    split: np.ndarray  # one of SPLITS per row
    source: str = ""  # file(s) it came from, for messages
    meta: dict = field(default_factory=dict)  # "planted": label -> the best score per row (synthetic)

    def part(self, name: str) -> "Dataset":
        mask = self.split == name
        meta = dict(self.meta)
        if "planted" in meta:  # one score per row: keep it aligned with the rows kept
            meta["planted"] = {k: np.asarray(v)[mask] for k, v in meta["planted"].items()}
        return Dataset(self.spec, self.frame.loc[mask].reset_index(drop=True), self.split[mask],
                       self.source, meta)

    def head(self, name: str, n: int):
        """The first ``n`` rows of one split (a streamed dataset answers this too)."""
        return self.part(name).frame.head(n)

    def __len__(self) -> int:
        return len(self.frame)

    def counts(self) -> dict[str, int]:
        return {s: int((self.split == s).sum()) for s in SPLITS}
