"""Preprocessing fitted on the train split only, saved beside the model, applied identically at
evaluation and (as lookup tables) inside the serving export.

- categorical: a vocabulary of the train values seen at least ``min_count`` times, most frequent
  first; index 0 is the out-of-vocabulary bucket (unseen, rare and missing values all land there).
  A table shared by several features (a candidate and its history) is fitted on the values of
  all of them. A hashed feature has no vocabulary: FarmHash64(text) mod (N - 1) + 1, the
  function TensorFlow's ``to_hash_bucket_fast`` computes, so the exported model hashes alike.
- lists (multi-valued, sequences): each value encoded as above, padded to ``max_len`` with -1
  (see composer.data.lists).
- admission (``Preprocessor.admission``, per table): how many distinct train values, and how
  many of their train occurrences, each rule turned away: ``min_count`` sends rare values to the
  out-of-vocabulary row, hashing merges values that land in one bucket.
- numeric: missing values are imputed with the train mean; the mean and variance are handed to
  the model's own Normalization layer, so the model standardises and serving sees raw numbers.
  Heavy-tailed non-negative columns (skew > 5, e.g. capital gains) are log1p-transformed first,
  recorded per column.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .lists import flatten, pad

OOV = 0
SKEW_FOR_LOG = 5.0


def hash_ids(text: pd.Series, buckets: int) -> np.ndarray:
    """Ids 1..buckets-1 from FarmHash64 of each value's text (TensorFlow's to_hash_bucket_fast
    over buckets - 1, plus one); missing and empty values -> 0. Each distinct value is hashed
    once."""
    import farmhash

    values = text.fillna("")
    uniques, inverse = np.unique(values.to_numpy(dtype=object).astype(str), return_inverse=True)
    ids = np.array([0 if u == "" else farmhash.fingerprint64(u) % (buckets - 1) + 1 for u in uniques],
                   dtype=np.int64)
    return ids[inverse].astype("int32").reshape(-1)


def admission_counts(counts: pd.Series, features, min_count: int, buckets: int | None) -> dict:
    """What admission did to one table's train values (``counts``: occurrences per distinct
    value): a fitted vocabulary drops the values seen fewer than ``min_count`` times to the
    out-of-vocabulary row; hashing into ``buckets`` rows merges the values that share a bucket
    (``collisions``: distinct values minus buckets used)."""
    out = {"features": list(features), "distinct": int(len(counts)), "occurrences": int(counts.sum())}
    if buckets:
        ids = hash_ids(pd.Series(counts.index, dtype="string"), buckets)
        per_bucket = pd.Series(counts.to_numpy(), index=ids)
        shared = per_bucket.index.duplicated(keep=False)
        used = int(len(np.unique(ids)))
        out.update(rule="hash", buckets=int(buckets), buckets_used=used, collisions=int(len(counts) - used),
                   merged_ids=int(shared.sum()), merged_rows=int(per_bucket[shared].sum()))
    else:
        rare = counts < min_count
        out.update(rule="vocabulary", min_count=int(min_count), kept=int((~rare).sum()),
                   dropped_ids=int(rare.sum()), dropped_rows=int(counts[rare].sum()))
    return out


def admission_table(admission: dict) -> str:
    """One line per table where min_count dropped or hashing merged something (text)."""
    from tabulate import tabulate

    rows = []
    for owner, a in admission.items():
        if a["rule"] == "hash" and a["collisions"]:
            rows.append([owner, f"{a['distinct']:,}", f"hash {a['buckets']:,} rows", f"{a['collisions']:,} collisions: "
                         f"{a['merged_ids']:,} ids share a row", f"{a['merged_rows']:,} of {a['occurrences']:,}"])
        elif a["rule"] == "vocabulary" and a["dropped_ids"]:
            rows.append([owner, f"{a['distinct']:,}", f"min_count {a['min_count']}", f"{a['dropped_ids']:,} ids to OOV "
                         f"({a['kept']:,} kept)", f"{a['dropped_rows']:,} of {a['occurrences']:,}"])
    if not rows:
        return "admission: every distinct train id has its own row (nothing dropped by min_count or merged by hashing)"
    return "admission (train split):\n" + tabulate(rows, headers=["table", "distinct ids", "rule", "ids", "values"],
                                                   tablefmt="simple", disable_numparse=True)


def quantile_edges(values: np.ndarray, buckets: int) -> list[float]:
    """The distinct inner quantiles at 1/buckets .. (buckets-1)/buckets of the train values
    (ties collapse, so a column with many zeros gets fewer buckets)."""
    if len(values) == 0:
        return []
    edges = np.quantile(values, np.arange(1, buckets) / buckets)
    return [float(e) for e in np.unique(edges)]


def scenario_error(column: str, declared, counts: pd.Series, location, where: str, hint: str | None = None):
    """The error for rows whose scenario is not declared: the values and their row counts, and
    where the first such row is (``location``: the file and, for a CSV, the line; ``where``
    says 'row 6' where there is no line)."""
    from .errors import DataError

    shown = ", ".join(f"'{v}' ({n} row{'s' if n != 1 else ''})" for v, n in list(counts.items())[:5])
    at = "" if location is not None and location.line is not None else f" (the first in {where})"
    return DataError(f"{int(counts.sum())} rows have a scenario value outside the declared set: {shown}{at}",
                     key=column, location=location,
                     hint=f"declared: {', '.join(declared)}; " + (hint or "fix the data, or add the value to "
                     "the scenario values (the blueprint's scenarios: values, or scenario_values in the data YAML)"))


def scenario_codes(values: pd.Series, column: str, declared, locate, hint: str | None = None) -> np.ndarray:
    """Ids 0..S-1 of ``values`` in the ``declared`` order; a value outside it (or a missing one)
    raises ``scenario_error`` at ``locate(first bad row) -> (Location, 'line 7')``."""
    text = as_text(values)
    codes = pd.Index(declared, dtype="string").get_indexer(text)
    bad = codes < 0
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        location, where = locate(first)
        raise scenario_error(column, declared, text[bad].fillna("<missing>").value_counts(), location, where, hint)
    return codes.astype("int32")


def as_text(values: pd.Series) -> pd.Series:
    """Categorical values as strings, ints and int-valued floats alike ('3', never '3.0');
    missing stays missing."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if len(whole) and np.all(np.mod(whole, 1) == 0):
            return values.astype("Int64").astype("string")
    return values.astype("string")


@dataclass
class Preprocessor:
    vocabularies: dict[str, list[str]] = field(default_factory=dict)  # index 0 = OOV, not listed
    numeric: dict[str, dict] = field(default_factory=dict)  # name -> {mean, variance, log1p}; mean fills NaN
    min_count: int = 1
    scenario: dict | None = None  # {"column": name, "values": [...]} declared, never fitted
    tables: dict[str, str] = field(default_factory=dict)  # id feature -> the table owner it reads
    hashed: dict[str, int] = field(default_factory=dict)  # table owner -> hash buckets N
    lists: dict[str, dict] = field(default_factory=dict)  # name -> {max_len, ordered}
    admission: dict[str, dict] = field(default_factory=dict)  # table owner -> what min_count / hashing did

    @classmethod
    def fit(cls, frame: pd.DataFrame, categorical, numeric, min_count: int = 1,
            scenario: tuple[str, list[str]] | None = None, *, lists: dict | None = None,
            tables: dict | None = None, hashed: dict | None = None,
            quantiles: dict | None = None) -> "Preprocessor":
        """``categorical``: single-valued id columns; ``lists``: list columns -> {max_len,
        ordered}; ``tables``: id feature -> the owner whose table it reads (default itself);
        ``hashed``: owner -> buckets; ``quantiles``: numeric -> number of buckets."""
        pre = cls(min_count=min_count, tables=dict(tables or {}), hashed=dict(hashed or {}),
                  lists={n: dict(v) for n, v in (lists or {}).items()})
        if scenario is not None:
            pre.scenario = {"column": scenario[0], "values": list(scenario[1])}
        readers: dict[str, list[str]] = {}
        for name in [*categorical, *pre.lists]:
            readers.setdefault(pre.tables.get(name, name), []).append(name)
        for owner, names in readers.items():
            counts = None
            for name in names:
                values = flatten(frame[name])[0] if name in pre.lists else frame[name]
                c = as_text(values).dropna()
                c = c[c != ""].value_counts(sort=False)
                counts = c if counts is None else counts.add(c, fill_value=0)
            pre.admission[owner] = admission_counts(counts, names, min_count, pre.hashed.get(owner))
            if owner in pre.hashed:
                continue
            counts = counts[counts >= min_count]
            # most frequent first, ties broken by value so the order is reproducible
            order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            pre.vocabularies[owner] = [str(k) for k, _ in order]
        for name in numeric:
            col = pd.to_numeric(frame[name], errors="raise").astype("float64")
            present = col.dropna()
            use_log = bool(len(present) and present.min() >= 0 and present.skew() > SKEW_FOR_LOG)
            if use_log:
                present = np.log1p(present)
            mean = float(present.mean()) if len(present) else 0.0
            var = float(present.var(ddof=0)) if len(present) > 1 else 1.0
            pre.numeric[name] = {"mean": mean, "variance": var if var > 1e-12 else 1.0,
                                 "log1p": use_log}
            if quantiles and name in quantiles:
                pre.numeric[name]["edges"] = quantile_edges(present.to_numpy(), quantiles[name])
        return pre

    def vocab_sizes(self) -> dict[str, int]:
        sizes = {name: len(vocab) + 1 for name, vocab in self.vocabularies.items()}
        sizes.update(self.hashed)
        # a quantile-embedded numeric's rows: its fitted edges + 1 (names are unique across features)
        sizes.update({n: len(s["edges"]) + 1 for n, s in self.numeric.items() if "edges" in s})
        return sizes

    def numeric_edges(self) -> dict[str, list[float]]:
        return {n: s["edges"] for n, s in self.numeric.items() if "edges" in s}

    def numeric_stats(self, layout) -> tuple[list[float], list[float]]:
        stats = [self.numeric[n] for n in layout.numeric]
        return [s["mean"] for s in stats], [s["variance"] for s in stats]

    def encode_categorical(self, name: str, values: pd.Series) -> np.ndarray:
        owner = self.tables.get(name, name)
        if owner in self.hashed:
            return hash_ids(as_text(values), self.hashed[owner])
        codes = self._index(owner).get_indexer(as_text(values))
        return (codes + 1).astype("int32")  # unknown and missing (-1) -> OOV (0)

    def encode_list(self, name: str, values: pd.Series) -> np.ndarray:
        """(rows, max_len) int32 ids of a list column, -1 at padding."""
        spec = self.lists[name]
        flat, lengths = flatten(values)
        codes = self.encode_categorical(name, flat) if len(flat) else np.zeros(0, dtype="int32")
        return pad(codes, lengths, spec["max_len"], spec["ordered"])

    def _index(self, name: str) -> pd.Index:
        """The vocabulary as a hashed pandas Index, built once (streaming encodes chunk by chunk)."""
        cache = self.__dict__.setdefault("_indexes", {})
        if name not in cache:
            cache[name] = pd.Index(self.vocabularies[name], dtype="string")
        return cache[name]

    def encode_numeric(self, name: str, values: pd.Series) -> np.ndarray:
        s = self.numeric[name]
        col = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        if s["log1p"]:
            col = np.log1p(np.maximum(col, 0.0))
        return np.where(np.isnan(col), s["mean"], col).astype("float32")

    def pack(self, frame: pd.DataFrame, layout) -> dict[str, np.ndarray]:
        """The model's packed inputs for these rows (see composer.layout)."""
        out = {}
        for dim, names in layout.categorical_by_dim.items():
            out[layout.input_name(dim)] = np.stack([self.encode_categorical(n, frame[n]) for n in names], axis=1)
        for name in layout.lists:
            out[layout.list_input(name)] = self.encode_list(name, frame[name])
        if layout.numeric:
            out["numeric"] = np.stack([self.encode_numeric(n, frame[n]) for n in layout.numeric], axis=1)
        if layout.scenario:
            out["scenario"] = self.encode_scenario(frame[layout.scenario]).reshape(-1, 1)
        return out

    def encode_scenario(self, values: pd.Series, source: str = "", locate=None) -> np.ndarray:
        """Scenario ids 0..S-1 in the declared order. A value outside the declared set (or a
        missing one) is an error naming the values, how many rows carry them and where the first
        is (``locate(row)`` -> (Location, 'line 7'), e.g. the file line of a data YAML's row),
        never an out-of-vocabulary bucket: routing a row to another scenario's parameters would
        be silent."""
        from .errors import Location

        def locate_first(row):
            return locate(row) if locate is not None else \
                ((Location(source) if source else None), f"row {row + 1} of the data")

        return scenario_codes(values, self.scenario["column"], self.scenario["values"], locate_first)

    def oov_rate(self, frame: pd.DataFrame) -> dict[str, float]:
        return {n: float((self.encode_categorical(n, frame[n]) == OOV).mean()) for n in self.vocabularies
                if n in frame and n not in self.lists}

    def save(self, path: str) -> None:
        with open(path, "w") as fh:
            json.dump(asdict(self), fh)

    @classmethod
    def load(cls, path: str) -> "Preprocessor":
        with open(path) as fh:
            return cls(**json.load(fh))
