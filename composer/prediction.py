"""Predictions of a trained run on raw rows: one probability per task.

The compiled model takes packed matrices (``ids_d8``, ``seq_<name>``, ``numeric``; see
composer.layout), so ``run.model.predict(raw_frame)`` cannot work. ``predict(run, frame)``
packs raw rows with the run's own fitted preprocessing (``Preprocessor.pack``, the code
training used) and returns one column per task, on the frame's index:

>>> import composer, pandas as pd
>>> rows = pd.DataFrame({"user_id": ["u1", "never-seen"], "item_id": ["7", None],
...                      "item_category": ["c3", "c3"], "user_segment": ["s1", "s1"],
...                      "price": [3.5, float("nan")], "user_activity": [0.2, 1.0]})
>>> composer.predict("runs/mmoe", rows)  # doctest: +SKIP  (a DataFrame: click, like; index 0, 1)

Raw means what the data held: categorical values as strings or numbers (unseen, rare and missing
ones use the out-of-vocabulary row), numeric values as numbers or numeric text (NaN: the train
mean), list features as lists or arrays per row or delimited text (``"i1,i2"``, oldest first;
empty or NaN for none), the scenario column as its declared values. The outputs equal the
exported SavedModel's on the same rows (tests/test_predict.py). Used by ``composer predict``.

The module is ``prediction``, not ``predict``: ``composer.predict`` is the function, and
importing a submodule of that name would replace it on the package.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data.errors import DataError, Location

OUTPUT_SUFFIXES = (".parquet", ".csv")
SPLIT_COLUMN = "split"


class Predictor:
    """A run folder opened once (model, preprocessing, blueprint), to predict many frames.

    Example:
        >>> p = Predictor.open("runs/mmoe")                 # doctest: +SKIP
        >>> p.columns                                       # the raw columns it reads
        >>> p(frame)                                        # DataFrame: one column per task
    """

    def __init__(self, exp, run: str = ""):
        self.exp = exp
        self.run = str(run)

    @classmethod
    def open(cls, run) -> "Predictor":
        """Load a run folder written by ``composer train`` (no data is read)."""
        from .quiet import import_backend
        from .training import check_run_folder, load_run

        check_run_folder(run)  # a wrong path fails before Keras starts
        import_backend()
        return cls(load_run(str(run), with_data=False), run)

    @property
    def tasks(self) -> list[str]:
        return list(self.exp.tasks)

    @property
    def columns(self) -> list[str]:
        """The raw columns a frame must hold: every feature the model reads, then the scenario
        column of a multi-scenario model (the SavedModel's signature takes the same names)."""
        layout = self.exp.graph.layout
        names = [n for names in layout.categorical_by_dim.values() for n in names]
        names += [*layout.lists, *layout.numeric]
        if layout.scenario and layout.scenario not in names:
            names.append(layout.scenario)
        return names

    def check(self, frame: pd.DataFrame, source: str = "") -> None:
        """Every column present (one error naming all the missing ones) and every numeric cell a
        finite number or missing."""
        self.check_columns(frame, source)
        for name in self.exp.graph.layout.numeric:
            raw = frame[name]
            values = pd.to_numeric(raw, errors="coerce").astype("float64")
            bad = (raw.notna() & values.isna()).to_numpy() | np.isinf(values.to_numpy())
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise DataError(f"expected a finite number, got {raw.iloc[first]!r} at index {frame.index[first]}"
                                + (f" ({int(bad.sum())} rows like this)" if bad.sum() > 1 else ""),
                                location=Location(source) if source else None, key=name,
                                hint="a numeric feature holds numbers; NaN or None for a missing value "
                                "(the train mean stands in for it)")

    def check_columns(self, frame: pd.DataFrame, source: str = "", what: str = "the input") -> None:
        """One error naming every column the model reads that ``frame`` lacks."""
        import difflib

        missing = [c for c in self.columns if c not in frame.columns]
        if not missing:
            return
        plural = "s" if len(missing) > 1 else ""
        present = [str(c) for c in frame.columns]
        close = {m: difflib.get_close_matches(m, present, n=1, cutoff=0.75) for m in missing}
        guesses = [f"'{found[0]}' for '{m}'" for m, found in close.items() if found]
        trained = f" (trained on {self.exp.data_name})" if self.exp.data_name else ""
        hint = (f"did you mean {', '.join(guesses)}? " if guesses else "") + \
            f"the run{trained} reads {len(self.columns)} columns: {_shown(self.columns)}"
        raise DataError(f"{len(missing)} column{plural} the model reads {'are' if plural else 'is'} "
                        f"not in {what}: {_shown(missing)}", location=Location(source) if source else None,
                        key="columns", hint=hint)

    def __call__(self, frame, batch_size: int = 8192) -> pd.DataFrame:
        """One probability per task for each row of ``frame`` (a DataFrame, or a mapping of
        column -> values), on the frame's index."""
        if not isinstance(frame, pd.DataFrame):
            try:
                frame = pd.DataFrame(frame)
            except (TypeError, ValueError) as exc:
                raise DataError(f"expected a pandas DataFrame of raw features, got {type(frame).__name__} "
                                f"({exc})", key="frame") from None
        self.check(frame)
        if len(frame) == 0:
            return pd.DataFrame({t: pd.Series(dtype="float32") for t in self.tasks}, index=frame.index)
        exp = self.exp
        x = exp.pre.pack(frame, exp.graph.layout)
        out = exp.model.predict(x, batch_size=batch_size, verbose=0)
        return pd.DataFrame({t: np.asarray(out[t], dtype="float32").reshape(-1) for t in self.tasks},
                            index=frame.index)


def _shown(names, limit: int = 30) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def predict(run, frame, *, batch_size: int = 8192) -> pd.DataFrame:
    """Probabilities per task for raw rows: ``run`` is a run folder (or a ``Predictor``),
    ``frame`` a pandas DataFrame of raw feature values. Returns a DataFrame with one column per
    task, indexed like ``frame``. Missing columns, non-numeric text in a numeric column and an
    undeclared scenario value are DataErrors naming them; a missing or damaged run folder a
    BlueprintError naming the folder or file."""
    predictor = run if isinstance(run, Predictor) else Predictor.open(run)
    return predictor(frame, batch_size=batch_size)


# -- composer predict RUN --data D -o FILE ------------------------------------------------------

def check_output(path: str) -> str:
    """The output's format ('parquet' or 'csv') from its extension; anything else is an error."""
    lower = str(path).lower()
    for suffix in OUTPUT_SUFFIXES:
        if lower.endswith(suffix):
            return suffix[1:]
    raise DataError(f"cannot write predictions to '{path}': the file name must end in "
                    f"{' or '.join(OUTPUT_SUFFIXES)}", key="-o")


def is_table_file(data: str) -> bool:
    """A plain CSV or Parquet file of raw rows (not a dataset name or data YAML)."""
    from .data.tables import CSV_SUFFIXES, PARQUET_SUFFIXES

    return str(data).lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)


def read_rows(predictor: Predictor, data: str, rows: int | None = None, split: str | None = None):
    """The rows to predict: ``(frame, each row's split or None, the DataSpec or None)``. ``data``
    is a dataset name or data YAML (every split, or the one asked for) or a CSV / Parquet file of
    raw rows (no labels needed; categorical and list columns read as text exactly as written)."""
    if is_table_file(data):
        if split is not None:
            raise DataError("a data file has no splits", key="--split",
                            hint="--split selects rows of a dataset name or data YAML; leave it out")
        return _read_file(predictor, data, rows), None, None
    from .data.registry import load

    dataset = load(data, rows=rows)
    predictor.check_columns(dataset.frame, what=f"dataset '{data}'")
    frame, parts = dataset.frame, dataset.split
    if split is not None:
        keep = parts == split
        frame, parts = frame.loc[keep].reset_index(drop=True), parts[keep]
    return frame, np.asarray(parts), dataset.spec


def _read_file(predictor: Predictor, path: str, rows: int | None) -> pd.DataFrame:
    from .data.tables import read_table

    layout = predictor.exp.graph.layout
    text = [c for c in predictor.columns if c not in layout.numeric]
    table = read_table(path, rows=rows, text_columns=text)
    predictor.check_columns(table.frame, source=path, what="the file")
    frame = table.frame.copy()
    for name in layout.numeric:
        frame[name] = table.numeric(name)  # a bad cell located at its file line
    for name in layout.lists:
        frame[name] = table.lists(name)
    return frame


def key_columns(frame: pd.DataFrame, predictor: Predictor, spec=None, keep=()) -> list[str]:
    """The input columns written beside the predictions: those asked for (``keep``), the
    dataset's GAUC group column (the user), its scenario column, and every column named ``id``
    or ``*_id`` (user_id, item_id, video_id, request_id ...); never a column named like a task."""
    wanted = list(keep)
    if spec is not None:
        wanted += [c for c in (spec.group, spec.scenario) if c]
    layout = predictor.exp.graph.layout
    if layout.scenario:
        wanted.append(layout.scenario)
    wanted += [c for c in frame.columns if isinstance(c, str) and (c == "id" or c.endswith("_id"))]
    out = []
    for c in wanted:
        if c in frame.columns and c not in out and c not in predictor.tasks and c != SPLIT_COLUMN:
            out.append(c)
    return out


def table(frame, predictions: pd.DataFrame, keys: list[str], split=None) -> pd.DataFrame:
    """Key columns (as text, so ids keep their spelling), the split, then one column per task."""
    out = {}
    if split is not None:
        out[SPLIT_COLUMN] = np.asarray(split, dtype=object)
    for c in keys:
        values = frame[c]
        out[c] = values if pd.api.types.is_numeric_dtype(values) else values.astype("string")
    result = pd.DataFrame({k: pd.Series(v).reset_index(drop=True) for k, v in out.items()})
    for task in predictions.columns:
        result[task] = predictions[task].to_numpy()
    return result


def write(result: pd.DataFrame, path: str) -> None:
    """``result`` as Parquet or CSV, by the file name's extension (its folder exists)."""
    kind = check_output(path)
    if kind == "parquet":
        result.to_parquet(path, index=False)
    else:
        result.to_csv(path, index=False)
