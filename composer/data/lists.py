"""List-valued cells (multi-valued fields, behaviour sequences) to padded id matrices.

In a loaded frame a list column holds one 1-D array (or list) of raw values per row, oldest
first for sequences; an empty array when there is nothing. A text cell is split on commas
(``"39,43"``), so raw rows typed by hand or read from CSV work as well; a missing cell (None,
NaN, an empty string) is an empty list, never a value. Inside a list a missing value keeps its
position (``"a,,b"`` is three values, the middle one missing and encoded as the
out-of-vocabulary id), so a side sequence stays aligned with its sequence; the serving export
splits delimited text by the same rule.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..layout import PADDING


def split_text(values: pd.Series, separator: str = ",") -> pd.Series:
    """Delimited text cells as arrays of stripped strings ('' and missing -> empty)."""
    def cell(v):
        if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
            return np.array([], dtype=object)
        return _split(str(v), separator)

    return pd.Series([cell(v) for v in values.tolist()], index=values.index, dtype=object)


def _split(text: str, separator: str) -> np.ndarray:
    """'' (or blanks) -> no values; otherwise every part, blank parts kept as missing values."""
    if not text.strip():
        return np.array([], dtype=object)
    return np.array([p.strip() for p in text.split(separator)], dtype=object)


def cell_values(v):
    if isinstance(v, np.ndarray):
        return v.reshape(-1)
    if isinstance(v, (list, tuple)):
        return np.asarray(v, dtype=object) if v else np.array([], dtype=object)
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return np.array([], dtype=object)
    if isinstance(v, str):
        return _split(v, ",")
    return np.asarray([v], dtype=object)  # one bare value: a list of one


def flatten(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Every value of every cell, in row order (a pandas Series), and each row's length."""
    cells = [cell_values(v) for v in values.tolist()]
    lengths = np.fromiter((len(c) for c in cells), dtype=np.int64, count=len(cells))
    if lengths.sum() == 0:
        return pd.Series([], dtype="string"), lengths
    flat = np.concatenate([c for c in cells if len(c)])
    return pd.Series(flat), lengths


def pad(codes: np.ndarray, lengths: np.ndarray, max_len: int, ordered: bool) -> np.ndarray:
    """(rows, max_len) int32 ids, PADDING where a row has fewer values. A sequence (``ordered``)
    keeps its newest ``max_len`` values, right-aligned (the newest at the last position); a
    multi-valued field keeps its first ``max_len`` values, left-aligned."""
    n = len(lengths)
    out = np.full((n, max_len), PADDING, dtype=np.int32)
    keep = np.minimum(lengths, max_len)
    total = int(keep.sum())
    if total == 0:
        return out
    starts = np.cumsum(lengths) - lengths
    rows = np.repeat(np.arange(n), keep)
    within = np.arange(total) - np.repeat(np.cumsum(keep) - keep, keep)
    if ordered:
        src = np.repeat(starts + lengths - keep, keep) + within
        col = np.repeat(max_len - keep, keep) + within
    else:
        src = np.repeat(starts, keep) + within
        col = within
    out[rows, col] = codes[src]
    return out
