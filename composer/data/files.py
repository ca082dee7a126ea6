"""Your own data: a CSV, gzip CSV or Parquet file described by a small data YAML.

```yaml
source: clicks.csv.gz          # relative to this YAML file
categorical: [user_id, item_id, tab]
numeric: [price]
labels: {click: is_click, like: is_like}   # task -> 0/1 label column
scenario: tab                  # optional; must be categorical
scenario_values: ["1", "2", "3"]   # optional: the scenarios in id order (`scenarios: from_data`)
group: user_id                 # optional GAUC group; need not be a feature
split: {hash: user_id, valid: 0.1, test: 0.1}
missing_labels: error          # or mask: an empty label cell becomes -1 (left out of that task's loss)
```
``split`` is one of ``{column: COL}`` (cells train / valid / test), ``{hash: COL or null, valid:
0.1, test: 0.1}`` (``u = int(md5(text)[:8], 16) / 16**8`` of the cell, or of the whole raw line
when null; the top ``test`` of [0, 1) is test, the ``valid`` below it valid), or ``{time: COL,
valid_from: V, test_from: V}`` (numbers, or dates/times). Without ``split``, the whole raw line is
hashed with valid 0.1 and test 0.1.

``describe`` reads only the YAML. ``load`` checks the file and reports the first bad cell of
every kind as ``FILE:LINE: column: ...``; no row is ever dropped.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from ..blueprint.errors import BlueprintError
from ..blueprint.schema import Strict
from .dataset import SPLITS, DataSpec, Dataset
from .errors import DataError, did_you_mean

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Boundary = Union[int, float, dt.datetime, dt.date, str]


class SplitSection(Strict):
    """How rows are assigned to train / valid / test: give exactly one of column, hash, time."""

    column: str | None = Field(None, description="A column whose cells say train, valid or test.")
    hash: str | None = Field(None, description="Hash this column's text (null: the whole raw line).")
    valid: float = Field(0.1, ge=0, lt=1, description="Share of rows for valid (hash split).")
    test: float = Field(0.1, ge=0, lt=1, description="Share of rows for test (hash split).")
    time: str | None = Field(None, description="A time column: split at valid_from and test_from.")
    valid_from: Boundary | None = Field(None, description="First time of the valid split (time split).")
    test_from: Boundary | None = Field(None, description="First time of the test split (time split).")


class ListColumn(Strict):
    """A list-valued column: list cells (Parquet) or delimited text cells (CSV: "39,43")."""

    max_len: int = Field(description="Most values a model keeps per row (a blueprint may lower it).", ge=1, le=4096)
    separator: str = Field(",", min_length=1, description="Separator of a text cell.")
    share: str | None = Field(None, description="A categorical column whose embedding table these ids "
                              "are looked up in (a history of video ids shares `video_id`'s table).")
    aligned_with: str | None = Field(None, description="sequences: the sequence this one runs beside "
                                     "(same length on every row).")


class HistorySection(Strict):
    """A point-in-time history built from the log itself: for every row, the last `max_len` rows
    of the same `key` strictly before the row's `time` (never a row at or after it)."""

    key: str = Field(description="Whose history (e.g. user_id).")
    time: str = Field(description="The time column (numbers or dates); rows at the same time never see each other.")
    items: dict[str, str] = Field(min_length=1, description="New sequence column -> the column it "
                                  "collects (first the item, then side fields aligned with it), e.g. "
                                  "{hist_video: video_id, hist_author: author_id}.")
    max_len: int = Field(50, ge=1, le=4096, description="Most earlier rows kept (the newest).")
    where: str | None = Field(None, description="Only earlier rows where this 0/1 column is 1 (clicked, liked).")


class CountSection(Strict):
    """Point-in-time counts: per row, the number of earlier rows of the same key and each
    label's rate among them (empty when there are none; imputed like any missing number)."""

    key: str = Field(description="The key counted (e.g. video_id for an item's popularity).")
    time: str = Field(description="The time column.")
    labels: list[str] = Field(default_factory=list, description="0/1 columns whose earlier rate is a feature.")
    prefix: str | None = Field(None, description="Names of the new numeric columns: PREFIX_n, "
                               "PREFIX_LABEL_rate (default: the key).")


def _not_boolean(value):
    # YAML reads yes/no/true/false as booleans: never what a scenario column holds
    if isinstance(value, bool):
        raise PydanticCustomError("scenario_value", "expected text or a number (YAML reads yes, no, true and "
                                  "false as booleans: quote them)")
    return value


ScenarioValue = Annotated[Union[str, int, float], BeforeValidator(_not_boolean)]


class DataFile(Strict):
    """A data YAML: one table file and the role of its columns."""

    name: str | None = Field(None, description="Dataset name (defaults to the YAML file's name).")
    description: str = Field("", description="Free text.")
    source: str = Field(description="The data file (.csv, .csv.gz, .tsv, .parquet), relative to this YAML.")
    categorical: list[str] = Field(default_factory=list, description="Columns embedded as ids.")
    numeric: list[str] = Field(default_factory=list, description="Float columns.")
    labels: dict[str, str] = Field(min_length=1, description="Task name -> its 0/1 label column.")
    scenario: str | None = Field(None, description="A categorical column whose value is the scenario.")
    scenario_values: list[ScenarioValue] | None = Field(
        None, min_length=2, description="The scenario values in id order (text or numbers: 1 and "
        "'1' are the same value); lets blueprints say `scenarios: from_data`. A row with another "
        "value is an error, whether or not the blueprint routes by scenario.")
    group: str | None = Field(None, description="GAUC group column (e.g. a user id).")
    split: SplitSection = Field(default_factory=SplitSection, description="How rows are split.")
    missing_labels: Literal["error", "mask"] = Field(
        "error", description="An empty label cell: an error, or kept as -1 (masked out of its task's loss).")
    missing_values: list[str] = Field(default_factory=lambda: [""], description="Cell texts that mean missing.")
    delimiter: str | None = Field(None, min_length=1, max_length=1,
                                  description="Field delimiter (default ',' or a tab for .tsv).")
    multi: dict[str, ListColumn] = Field(default_factory=dict, description="Multi-valued id columns "
                                         "(tags, genres): column -> {max_len, separator, share}.")
    sequences: dict[str, ListColumn] = Field(default_factory=dict, description="Sequence columns in the "
                                             "file, oldest first: column -> {max_len, share, aligned_with}.")
    histories: list[HistorySection] = Field(default_factory=list, description="Sequences built from the "
                                            "log, point in time.")
    counts: list[CountSection] = Field(default_factory=list, description="Point-in-time counts and rates.")
    outcomes: dict[str, str] = Field(default_factory=dict, description="Columns known only after the "
                                     "event (play time, dwell): column -> why; refused as features.")


    @field_validator("scenario_values")
    @classmethod
    def _as_text(cls, values):
        """Scenario values as the data's cells read as text: 2 and 2.0 are '2' (``as_text``)."""
        if values is None:
            return None
        return [v if isinstance(v, str) else str(int(v)) if float(v).is_integer() else repr(float(v))
                for v in values]


def is_data_yaml(name: str) -> bool:
    return str(name).lower().endswith((".yaml", ".yml"))


def read_yaml(file: str):
    """The checked DataFile and its YAML Document (for positions)."""
    from ..blueprint.loader import load_file
    from ..blueprint.validate import _located

    try:
        doc = load_file(str(file))
    except BlueprintError as exc:
        if isinstance(exc, DataError):
            raise
        if exc.message == "file is empty":
            exc.hint = "a data YAML is a mapping with source, categorical/numeric, labels and split"
        raise DataError(exc.message, location=exc.location, key=exc.key, hint=exc.hint) from None
    if not isinstance(doc.data, dict):
        raise DataError("a data YAML must be a mapping at the top level", location=doc.location(()),
                        hint="start with 'source:', then 'categorical:', 'numeric:', 'labels:'")
    try:
        model = DataFile.model_validate(doc.data)
    except ValidationError as exc:
        problems = [_located(err, doc, DataFile) for err in exc.errors()]
        raise DataError.many([DataError(p.message, location=p.location, key=p.key, hint=p.hint)
                              for p in problems]) from None
    problems = list(_cross_check(model, doc))
    if problems:
        raise DataError.many(problems)
    return model, doc


def _cross_check(m: DataFile, doc):
    def err(path, message, hint=None, key=None):
        return DataError(message, location=doc.location(path), key=key, hint=hint)

    if not (m.categorical or m.numeric or m.multi or m.sequences or m.histories or m.counts):
        yield err((), "no features", "list feature columns under 'categorical:' and/or 'numeric:'")
    seen: dict[str, tuple] = {}
    for section, path, col in _feature_columns(m):
        if col in seen:
            yield err(path, f"column '{col}' is listed twice (first as {_path(seen[col])})",
                      "give each column one role", key=col)
        else:
            seen[col] = path
        if col in m.outcomes:
            yield err(path, f"'{col}' is an outcome, never a feature: {m.outcomes[col]}",
                      "remove it from the features (it is known only after the event)", key=col)
    for section in ("multi", "sequences"):
        for col, spec in getattr(m, section).items():
            if spec.share is not None and spec.share not in m.categorical:
                yield err((section, col, "share"), f"'{spec.share}' is not a categorical column",
                          did_you_mean(spec.share, m.categorical, what="categorical columns"), key=spec.share)
            if spec.aligned_with is not None:
                other = m.sequences.get(spec.aligned_with) if section == "sequences" else None
                if other is None or spec.aligned_with == col:
                    yield err((section, col, "aligned_with"), f"'{spec.aligned_with}' is not another sequence column",
                              did_you_mean(spec.aligned_with, [c for c in m.sequences if c != col], what="sequences"),
                              key=spec.aligned_with)
                elif other.max_len != spec.max_len:
                    yield err((section, col, "max_len"), f"aligned with '{spec.aligned_with}' (max_len "
                              f"{other.max_len}) but max_len is {spec.max_len}", "aligned sequences share one max_len")
    for i, h in enumerate(m.histories):
        if h.where is not None and h.where in h.items.values():
            yield err(("histories", i, "where"), f"'{h.where}' is both collected and the filter",
                      "every collected value would be 1; collect another column, or drop where")
    for task, col in m.labels.items():
        if not NAME.match(task):
            yield err(("labels", task), f"'{task}' is not a valid task name",
                      "task names start with a letter or '_' and hold only letters, digits, '_'", key=task)
        if col in seen:
            yield err(("labels", task), f"label column '{col}' is also a feature ({_path(seen[col])})",
                      "a label used as a feature leaks the answer; remove it from the features", key=col)
    if m.scenario_values is not None and m.scenario is None:
        yield err(("scenario_values",), "scenario_values without a scenario column",
                  "add 'scenario: COLUMN'", key="scenario_values")
    if m.scenario_values is not None:
        twice = [v for i, v in enumerate(m.scenario_values) if v in m.scenario_values[:i]]
        if twice:
            yield err(("scenario_values",), f"scenario value '{twice[0]}' is listed twice (1 and '1' are one "
                      "value)", "list each value once; their order gives the scenario ids", key="scenario_values")
    if m.scenario is not None and m.scenario not in m.categorical:
        yield err(("scenario",), f"scenario column '{m.scenario}' is not a categorical feature",
                  "list it under 'categorical:' too", key=m.scenario)
    s, given = m.split, m.split.model_fields_set
    modes = [k for k in ("column", "hash", "time") if k in given]
    if "split" in m.model_fields_set and len(modes) != 1:
        what = "none" if not modes else " and ".join(modes)
        yield err(("split",), f"give exactly one of column, hash or time (got {what})",
                  "e.g. split: {hash: user_id, valid: 0.1, test: 0.1}")
    elif modes:
        mode = modes[0]
        allowed = {"column": set(), "hash": {"valid", "test"}, "time": {"valid_from", "test_from"}}[mode]
        for k in sorted(given - allowed - {mode}):
            yield err(("split", k), f"'{k}' does not apply to a {mode} split",
                      f"a {mode} split takes: {', '.join(sorted(allowed | {mode}))}", key=k)
        if mode == "hash" and s.valid + s.test >= 1:
            yield err(("split",), f"valid + test = {s.valid + s.test:g} leaves no rows for train",
                      "keep valid + test below 1")
        if mode == "time":
            for k in ("valid_from", "test_from"):
                if getattr(s, k) is None:
                    yield err(("split",), f"a time split needs '{k}'", "the first time of that split")
        if mode == "column" and s.column is None or mode == "time" and s.time is None:
            yield err(("split", mode), f"'{mode}' needs a column name")
    if not str(m.source).lower().endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".gz", ".parquet", ".pq")):
        yield err(("source",), f"unknown file type '{os.path.basename(m.source)}'",
                  "a data file is .csv, .csv.gz, .tsv or .parquet")


def _path(path: tuple) -> str:
    return f"{path[0]}[{path[1]}]" if isinstance(path[1], int) else f"{path[0]}.{path[1]}"


def _feature_columns(m: DataFile):
    """(section, YAML path, column) of every feature column, the built ones included."""
    for section in ("categorical", "numeric"):
        for i, col in enumerate(getattr(m, section)):
            yield section, (section, i), col
    for section in ("multi", "sequences"):
        for col in getattr(m, section):
            yield section, (section, col), col
    for i, h in enumerate(m.histories):
        for col in h.items:
            yield "histories", ("histories", i, "items", col), col
    for i, c in enumerate(m.counts):
        for col in count_columns(c):
            yield "counts", ("counts", i), col


def count_columns(c: CountSection) -> list[str]:
    prefix = c.prefix or c.key
    return [f"{prefix}_n", *(f"{prefix}_{label}_rate" for label in c.labels)]


def _lists(m: DataFile) -> dict:
    from .dataset import ListSpec

    out = {col: ListSpec(False, s.max_len, s.share) for col, s in m.multi.items()}
    out.update({col: ListSpec(True, s.max_len, s.share, s.aligned_with) for col, s in m.sequences.items()})
    for h in m.histories:
        first = next(iter(h.items))
        for col, source in h.items.items():
            out[col] = ListSpec(True, h.max_len, source if source in m.categorical else None,
                                None if col == first else first)
    return out


def describe(file: str) -> DataSpec:
    m, _ = read_yaml(file)
    return _spec(m, file)


def _spec(m: DataFile, file: str) -> DataSpec:
    name = m.name or Path(file).name.rsplit(".", 1)[0]
    numeric = tuple(m.numeric) + tuple(col for c in m.counts for col in count_columns(c))
    return DataSpec(name=name, categorical=tuple(m.categorical), numeric=numeric, labels=dict(m.labels),
                    scenario=m.scenario, group=m.group,
                    scenario_values=tuple(m.scenario_values) if m.scenario_values else None,
                    description=m.description or f"Data from {m.source}.", lists=_lists(m),
                    outcomes=dict(m.outcomes))


def load(file: str, rows: int | None = None) -> Dataset:
    from .tables import read_table

    m, doc = read_yaml(file)
    source = source_path(m, file)
    declared = _declarations(m)
    try:
        table = read_table(source, delimiter=delimiter(m, source), na_values=m.missing_values, rows=rows,
                           want_lines=whole_row_hash(m) and not source.name.lower().endswith((".parquet", ".pq")),
                           text_columns=text_columns(m))
    except DataError as exc:
        if exc.location is not None and exc.location.file == str(source) and "no such file" in exc.message:
            exc.hint = f"'source: {m.source}' is relative to the data YAML ({doc.file}); {exc.hint}"
            exc.args = (exc.render(),)
        raise
    table.require(declared, lambda col: doc.location(declared[col]))
    frame, split, rule = convert(table, m, doc)
    if m.scenario_values is not None:  # the data YAML's own set, whether a blueprint routes by it or not
        check_scenario_values(frame[m.scenario], m, doc, table.location, table.where)
    return Dataset(_spec(m, file), frame, split, source=str(source),
                   meta={"split": rule, "missing_labels": m.missing_labels, "yaml": str(file),
                         "table": {"file": str(source), "kind": table.kind, "delimiter": table.delimiter}})


def check_scenario_values(values, m: DataFile, doc, location, where) -> None:
    """Every row's scenario is one of the data YAML's ``scenario_values``; else the error names
    the values outside it, their rows and the first one's line (``location(row)``)."""
    from .preprocess import scenario_codes

    scenario_codes(values, m.scenario, m.scenario_values, lambda row: (location(row), where(row)),
                   scenario_values_hint(doc))


def scenario_values_hint(doc) -> str:
    return f"fix the data, or add the value to scenario_values ({doc.location(('scenario_values',))})"


def row_locator(dataset):
    """``locate(row) -> (Location, 'line 7')`` for the rows of a dataset read from one data YAML
    file (rows in file order); None for other datasets."""
    table = getattr(dataset, "meta", {}).get("table")
    if not table:
        return None
    from .tables import locate_row

    return lambda row: locate_row(table["file"], table["kind"], table["delimiter"], row)


def source_path(m: DataFile, file: str) -> Path:
    source = Path(m.source)
    return source if source.is_absolute() else Path(file).parent / source


def delimiter(m: DataFile, source: Path) -> str:
    return m.delimiter or ("\t" if ".tsv" in source.name.lower() else ",")


def split_mode(m: DataFile) -> str:
    return next((k for k in ("column", "hash", "time") if k in m.split.model_fields_set), "hash")


def whole_row_hash(m: DataFile) -> bool:
    """The split hashes each whole raw line (a hash split without a column)."""
    return split_mode(m) == "hash" and m.split.hash is None


def text_columns(m: DataFile) -> list[str]:
    """Columns read as text exactly as written (categorical, group, split and hash columns, the
    keys of histories and counts, and text list columns)."""
    s = m.split
    keys = [h.key for h in m.histories] + [c.key for c in m.counts]
    return list(dict.fromkeys(list(m.categorical) + [c for c in (m.group, s.column, s.hash) if c] + keys
                              + list(m.multi) + list(m.sequences)))


def convert(table, m: DataFile, doc) -> tuple:
    """The typed columns of a table, each row's split and the split rule in words. The first bad
    cell of a column raises a located DataError. ``composer.data.streaming`` calls this on every
    chunk of a file read in pieces, so both paths convert alike."""
    import numpy as np
    import pandas as pd

    from .tables import fraction_split

    s = m.split
    mode = split_mode(m)
    out = {}
    for col in m.categorical:
        out[col] = table.categorical(col)
    for col in m.numeric:
        out[col] = table.numeric(col)
    for section in ("multi", "sequences"):
        for col, spec in getattr(m, section).items():
            out[col] = table.lists(col, spec.separator)
    for task, col in m.labels.items():
        if col not in out:
            out[col] = table.label(col, m.missing_labels)
    if m.group and m.group not in out:
        out[m.group] = table.categorical(m.group)
    frame = pd.DataFrame(out)
    _check_aligned(frame, table, m)
    if m.histories or m.counts:
        frame = _point_in_time(frame, table, m)
    if mode == "column":
        split = _column_split(table, s.column)
        rule = f"the column '{s.column}'"
    elif mode == "time":
        split = _time_split(table, s, doc)
        rule = f"by {s.time}: < {s.valid_from} train, < {s.test_from} valid, the rest test"
    else:
        whole_row = s.hash is None
        if whole_row:
            texts = table.lines if table.lines is not None else \
                table.frame.astype("str").fillna("").agg(",".join, axis=1).tolist()
        else:
            texts = table.categorical(s.hash).fillna("").tolist()
        split = fraction_split(texts, s.valid, s.test)
        what = "each raw line" if whole_row else f"the column '{s.hash}'"
        rule = (f"md5 of {what}: u = int(md5[:8], 16) / 16**8; u >= {1 - s.test:g} test, "
                f">= {1 - s.test - s.valid:g} valid, else train")
    return frame, np.asarray(split), rule


def _check_aligned(frame, table, m: DataFile) -> None:
    """A side sequence holds one value per position of the sequence it is aligned with."""
    import numpy as np

    from .lists import flatten

    for col, spec in m.sequences.items():
        if spec.aligned_with is None or spec.aligned_with not in frame:
            continue
        _, mine = flatten(frame[col])
        _, theirs = flatten(frame[spec.aligned_with])
        bad = mine != theirs
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise table.bad_cell(col, bad, f"{int(mine[first])} values where '{spec.aligned_with}' has "
                                 f"{int(theirs[first])}: an aligned sequence holds one value per position",
                                 f"fix the row, or drop aligned_with: {spec.aligned_with}")


def _point_in_time(frame, table, m: DataFile):
    """Histories and counts from the log's own rows (all splits, in time order: a test row sees
    the earlier test rows, as it would when served), strictly before each row's time."""
    import pandas as pd

    from .histories import last_items, point_in_time_counts

    def column(col):
        if col in frame:
            return frame[col]
        return table.frame[col]

    extra = {}
    for h in m.histories:
        cols = {col: column(col) for col in {h.key, *h.items.values()}}
        if h.where is not None:  # a missing label (-1 under missing_labels: mask) is not a 1
            where = frame[h.where] if h.where in frame else table.label(h.where, m.missing_labels)
            cols[h.where] = where.clip(lower=0)
        cols[h.time] = _times(table, h.time)
        built = last_items(pd.DataFrame(cols), key=h.key, time=h.time, items=dict(h.items), n=h.max_len,
                           where=h.where)
        extra.update(built)
    for c in m.counts:
        cols = {c.key: column(c.key), c.time: _times(table, c.time)}
        for label in c.labels:  # a missing label (-1) is left out of the rate, not counted as 0
            values = frame[label] if label in frame else table.label(label, m.missing_labels)
            cols[label] = values.astype("float64").where(values >= 0)
        counts = point_in_time_counts(pd.DataFrame(cols), key=c.key, time=c.time, labels=list(c.labels),
                                      prefix=c.prefix or c.key)
        extra.update({col: counts[col].astype("float64") for col in counts.columns})
    return frame.assign(**extra)


def _times(table, col):
    """A time column as numbers, or as datetimes when it holds dates."""
    import pandas as pd

    raw = table.frame[col]
    if pd.api.types.is_numeric_dtype(raw):
        t = table.numeric(col)
    else:
        t = pd.to_datetime(raw, errors="coerce")
        bad = (raw.notna() & t.isna()).to_numpy()
        if bad.any():
            raise table.bad_cell(col, bad, "expected a time, got '{value}'",
                                 "write times as numbers or as YYYY-MM-DD HH:MM:SS")
    missing = t.isna().to_numpy()
    if missing.any():
        raise table.bad_cell(col, missing, "missing time", "every row needs a time to build point-in-time features")
    return t


def _declarations(m: DataFile) -> dict[str, tuple]:
    """Every column the YAML names -> the YAML path where it is first named."""
    out: dict[str, tuple] = {}
    for section in ("categorical", "numeric"):
        for i, col in enumerate(getattr(m, section)):
            out.setdefault(col, (section, i))
    for section in ("multi", "sequences"):
        for col in getattr(m, section):
            out.setdefault(col, (section, col))
    for i, h in enumerate(m.histories):
        out.setdefault(h.key, ("histories", i, "key"))
        out.setdefault(h.time, ("histories", i, "time"))
        for col, source in h.items.items():
            out.setdefault(source, ("histories", i, "items", col))
        if h.where:
            out.setdefault(h.where, ("histories", i, "where"))
    for i, c in enumerate(m.counts):
        out.setdefault(c.key, ("counts", i, "key"))
        out.setdefault(c.time, ("counts", i, "time"))
        for j, label in enumerate(c.labels):
            out.setdefault(label, ("counts", i, "labels", j))
    for task, col in m.labels.items():
        out.setdefault(col, ("labels", task))
    for key in ("scenario", "group"):
        if getattr(m, key):
            out.setdefault(getattr(m, key), (key,))
    for key in ("column", "hash", "time"):
        col = getattr(m.split, key)
        if col:
            out.setdefault(col, ("split", key))
    return out


def _column_split(table, col):
    import numpy as np

    values = table.categorical(col).str.strip()
    bad = (~values.isin(SPLITS)).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = values.iloc[first]
        if value != value:  # NaN: an empty cell
            raise table.bad_cell(col, bad, "missing split value", f"every row needs one of: {', '.join(SPLITS)}")
        raise table.bad_cell(col, bad, "unknown split value '{value}'", did_you_mean(value, SPLITS, what="valid splits"))
    return values.to_numpy(dtype=object).astype(str)


def _time_split(table, s: SplitSection, doc):
    import numpy as np
    import pandas as pd

    col = s.time
    numeric = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in (s.valid_from, s.test_from))
    if numeric:
        from .tables import _is_time, _looks_like_time

        raw = table.frame[col]
        present = raw.dropna()
        if _is_time(raw) or (len(present) and _looks_like_time(present.iloc[0])):
            raise DataError(f"'{col}' holds dates or times but valid_from / test_from are numbers",
                            location=doc.location(("split", "valid_from")), key=col,
                            hint="give valid_from and test_from as dates (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)")
        t = table.numeric(col).to_numpy(dtype="float64")
        lo, hi = float(s.valid_from), float(s.test_from)
        absent = np.isnan(t)
    else:
        raw = table.frame[col]
        if pd.api.types.is_numeric_dtype(raw):
            raise DataError(f"'{col}' holds numbers but valid_from / test_from are not numbers",
                            location=doc.location(("split", "valid_from")), key=col,
                            hint="give valid_from and test_from as numbers in the column's unit")
        parsed = pd.to_datetime(raw, errors="coerce")
        bad = (raw.notna() & parsed.isna()).to_numpy()
        if bad.any():
            raise table.bad_cell(col, bad, "expected a date or time, got '{value}'",
                             "write times as YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, or as numbers")
        bounds = []
        for key in ("valid_from", "test_from"):
            try:
                bounds.append(pd.Timestamp(getattr(s, key)))
            except (ValueError, TypeError):
                raise DataError(f"'{getattr(s, key)}' is not a date or time", location=doc.location(("split", key)),
                                key=key, hint="write YYYY-MM-DD or YYYY-MM-DD HH:MM:SS") from None
        lo, hi = bounds
        absent = parsed.isna().to_numpy()
        t = parsed
    if lo > hi:
        raise DataError(f"valid_from ({s.valid_from}) is after test_from ({s.test_from})",
                        location=doc.location(("split", "valid_from")), key="valid_from",
                        hint="valid comes before test")
    if absent.any():
        raise table.bad_cell(col, absent, "missing time", "every row needs a time to be split")
    t = np.asarray(t)
    lo, hi = (np.datetime64(lo), np.datetime64(hi)) if not numeric else (lo, hi)
    try:
        return np.where(t >= hi, "test", np.where(t >= lo, "valid", "train"))
    except TypeError as exc:
        raise DataError(f"cannot compare '{col}' with valid_from / test_from: {exc}",
                        location=doc.location(("split", "valid_from")), key=col) from None
