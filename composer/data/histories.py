"""Point-in-time features built from a log: what a row could have known at its own time.

A row sees only rows of the same key (a user, a video) whose time is STRICTLY earlier than its
own: rows sharing its time (itself included) are not "before" it and never count. Everything is
vectorised: the rows are sorted once by (key, time) and each row's earlier rows are found with
``numpy.searchsorted`` on that order (history windows, cumulative sums for counts); no Python
work per key, and per row only the creation of its output cell.

List columns (the representation every loader shares): an object ``pandas.Series`` whose cells
are 1-D numpy arrays of raw ids, OLDEST FIRST, newest last, and an empty array when there is
nothing (never None). The cells ``last_items`` returns are read-only views into one array per
column (no copy per row): copy a cell before changing it.

- ``last_items``: the ids of the last ``n`` earlier rows (optionally only rows where a 0/1
  column is 1: clicked, liked), with an optional pre-window history prepended.
- ``point_in_time_counts``: the number of earlier rows and the mean of each label over them.
- ``HistoryState``: the same columns for a log read in time-ordered chunks (streaming).

Earlier rows that share one time keep the frame's row order (the order of arrival when
streaming), so "the last n" is well defined when ties straddle the cut.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .errors import DataError, did_you_mean

__all__ = ["last_items", "point_in_time_counts", "HistoryState"]


# -- inputs ------------------------------------------------------------------------------------

def _require(frame: pd.DataFrame, columns, what: str) -> None:
    for col in columns:
        if col not in frame.columns:
            raise DataError(f"column '{col}' is not in the frame", key=col,
                            hint=f"{what}; " + did_you_mean(col, list(map(str, frame.columns)), what="columns"))


def _values(series: pd.Series) -> np.ndarray:
    """A column as a plain numpy array: nullable ints without missing values become int64."""
    dtype = series.dtype
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        numpy_dtype = getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is not None and numpy_dtype.kind in "iufb" and not series.isna().any():
            return series.to_numpy(dtype=numpy_dtype)
        return series.to_numpy(dtype=object)
    return series.to_numpy()


def _present(values: pd.Series, what: str, column: str, hint: str) -> pd.Series:
    """``values``, or an error naming how many rows miss one and the first of them."""
    missing = values.isna()
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise DataError(f"{what} is missing on {int(missing.sum())} row(s) (the first is row {row})",
                        key=column, hint=hint)
    return values


def _keys_and_times(frame: pd.DataFrame, key: str, time: str):
    """(key code per row, key values by code, time rank per row, number of distinct times,
    raw times). Missing keys or times are errors: such a row has no place in time."""
    keys = _present(frame[key], f"key column '{key}'", key,
                    "every row needs its key to have a history; fill or drop those rows first")
    times = _present(frame[time], f"time column '{time}'", time,
                     "every row needs its time: histories only look at strictly earlier rows")
    codes, uniques = pd.factorize(keys, sort=False)
    raw_t = _values(times)
    _, rank = np.unique(raw_t, return_inverse=True)
    n_times = int(rank.max()) + 1 if len(rank) else 1
    if len(uniques) and len(uniques) * n_times >= 2**62:
        raise DataError("too many distinct keys x times to index", key=key)  # ~10^9 rows: not reached
    return codes.astype(np.int64), uniques, rank.astype(np.int64).reshape(-1), n_times, raw_t


def _flag(frame: pd.DataFrame, where: str | None) -> np.ndarray:
    """The rows a history may take items from: all, or those whose 0/1 column ``where`` is 1."""
    if where is None:
        return np.ones(len(frame), dtype=bool)
    values = frame[where]
    numeric = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & ~numeric.isin([0, 1])
    if bad.any():
        first = values[bad].iloc[0]
        raise DataError(f"'{where}' must hold 0 or 1 to filter a history, got '{first}'", key=where,
                        hint="name a 0/1 column (clicked, liked): a row is kept where it is 1")
    return (numeric == 1).to_numpy(dtype=bool, na_value=False)


class _Order:
    """Rows sorted by (key, time), stable, with per-row lookups into that order."""

    def __init__(self, codes, rank, n_times):
        self.codes = codes
        self.n_times = n_times
        self.comp = codes * n_times + rank  # one sortable integer per (key, time)
        self.order = np.argsort(self.comp, kind="stable")
        self.comp_sorted = self.comp[self.order]
        self.codes_sorted = codes[self.order]

    def unsort(self, values_sorted: np.ndarray) -> np.ndarray:
        """Per-row values given in sorted order, back in the frame's order (searchsorted is
        several times faster on sorted queries)."""
        out = np.empty_like(values_sorted)
        out[self.order] = values_sorted
        return out


# -- last_items --------------------------------------------------------------------------------

def _kind(index: pd.Index) -> str:
    inferred = pd.api.types.infer_dtype(index, skipna=True)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "number"
    return "text" if inferred == "string" else inferred


def _as_before_series(before, dtype=object) -> pd.Series:
    return before if isinstance(before, pd.Series) else pd.Series(dict(before), dtype=dtype)


def _before_arrays(before: Mapping | pd.Series, uniques, name: str, key: str):
    """The pre-window arrays of the frame's keys, in key-code order: (lengths, concatenated)."""
    series = _as_before_series(before)
    if len(series) and len(uniques) and _kind(series.index) != _kind(pd.Index(uniques)):
        sample_key = series.index[0]
        raise DataError(f"before['{name}'] has keys of another type than column '{key}'", key=name,
                        hint=f"its keys look like {str(sample_key)!r} ({type(sample_key).__name__}), the column's "
                        f"like {str(uniques[0])!r} ({type(uniques[0]).__name__}): use the same type")
    cells = series.reindex(pd.Index(uniques)).to_numpy(dtype=object)
    arrays = [np.asarray(c) if isinstance(c, (np.ndarray, list, tuple)) else np.empty(0) for c in cells]
    lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
    present = [a.reshape(-1) for a in arrays if len(a)]
    flat = np.concatenate(present) if present else np.empty(0, dtype=np.int64)
    return lengths, flat


def _window_plan(frame, key, time, n, source, before_lengths=None, before_time=None, prep=None):
    """Where each row's history sits in the stream laid out as, per key: the pre-window part,
    then the in-log source rows in (time, row) order. Returns (start, end) per row in that
    stream, the stream position of each source row (sorted order) and of each pre-window item,
    and the lengths kept of the pre-window parts."""
    codes, uniques, rank, n_times, raw_t = prep or _keys_and_times(frame, key, time)
    o = _Order(codes, rank, n_times)
    src_sorted = o.order[source[o.order]]  # frame rows that feed histories, in stream order
    comp_src = o.comp[src_sorted]
    k = len(uniques)
    end = o.unsort(np.searchsorted(comp_src, o.comp_sorted, side="left"))  # source rows before (key, time)
    key_start = np.searchsorted(comp_src, np.arange(k, dtype=np.int64) * n_times, side="left")
    if before_lengths is None:
        kept = np.zeros(k, dtype=np.int64)
    else:
        kept = np.minimum(before_lengths, n)  # only the newest n of a pre-window part can show
    cum_incl = np.cumsum(kept)
    cum_excl = cum_incl - kept
    row_key = codes
    stream_end = end + cum_incl[row_key]
    lower = key_start[row_key] + cum_excl[row_key]
    if before_time is not None and before_lengths is not None:
        bt = _as_before_series(before_time, dtype=None).reindex(pd.Index(uniques)).to_numpy()
        limit = bt[row_key]
        known = ~pd.isna(limit)
        hidden = np.zeros(len(codes), dtype=bool)
        hidden[known] = raw_t[known] <= limit[known].astype(raw_t.dtype)
        lower = lower + np.where(hidden, kept[row_key], 0)  # not strictly after the pre-window's end
    start = np.maximum(stream_end - n, lower)
    src_pos = np.arange(len(src_sorted), dtype=np.int64) + cum_incl[codes[src_sorted]]
    rep = np.repeat(np.arange(k, dtype=np.int64), kept)
    within = np.arange(int(kept.sum()), dtype=np.int64) - np.repeat(cum_excl, kept)
    before_pos = key_start[rep] + cum_excl[rep] + within
    return start, stream_end, src_sorted, src_pos, before_pos, kept


def _cells(flat: np.ndarray, start: np.ndarray, end: np.ndarray, rows=None) -> np.ndarray:
    """An object array of read-only views ``flat[start:end]`` (one per row, or per ``rows``)."""
    flat.flags.writeable = False
    if rows is not None:
        start, end = start[rows], end[rows]
    out = np.fromiter((flat[a:b] for a, b in zip(start.tolist(), end.tolist())), dtype=object,
                      count=len(start))
    return out


def _check_items(items: Mapping[str, str], n: int, before, frame, where) -> None:
    if not items:
        raise DataError("last_items needs at least one items column", key="items",
                        hint="items={'hist_video': 'video_id'} maps an output name to a source column")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise DataError(f"n must be a positive integer, got {n!r}", key="n")
    _require(frame, list(items.values()), "an items source column")
    if where is not None:
        _require(frame, [where], "the 'where' filter column")
    if before is not None:
        missing = [name for name in items if name not in before]
        extra = [name for name in before if name not in items]
        if missing or extra:
            raise DataError(f"before must give a pre-window part for every output of the call "
                            f"(missing: {missing}, unknown: {extra})", key="before",
                            hint="the outputs of one call are aligned (same length per row): give "
                            "every one a pre-window part, or none")


def _assemble(frame_items: dict[str, np.ndarray], before_flat: dict, plan, rows=None) -> dict:
    """One flat stream per output (pre-window items and source items at their positions)."""
    start, end, src_sorted, src_pos, before_pos, kept = plan
    total = len(src_pos) + len(before_pos)
    out = {}
    for name, values in frame_items.items():
        src_vals = values[src_sorted]
        bvals = before_flat.get(name)
        dtype = src_vals.dtype if bvals is None or not len(bvals) else np.result_type(src_vals.dtype, bvals.dtype)
        flat = np.empty(total, dtype=dtype)
        flat[src_pos] = src_vals
        if bvals is not None and len(before_pos):
            flat[before_pos] = bvals
        out[name] = _cells(flat, start, end, rows)
    return out


def _before_parts(before, items, uniques, key, n):
    """Per output, the kept (newest n) pre-window items in key order; the common kept lengths."""
    if before is None:
        return None, {}
    lengths, flats = None, {}
    for name in items:
        lens, flat = _before_arrays(before[name], uniques, name, key)
        if lengths is None:
            lengths = lens
        elif not np.array_equal(lengths, lens):
            bad = int(np.flatnonzero(lengths != lens)[0])
            first = next(iter(items))
            raise DataError(f"before['{name}'] and before['{first}'] differ in length for {key} "
                            f"'{uniques[bad]}'", key="before",
                            hint="aligned outputs need pre-window parts of the same length for every key")
        # keep the newest n of each key's part
        cum_excl = np.cumsum(lengths) - lengths
        within = np.arange(len(flat), dtype=np.int64) - np.repeat(cum_excl, lengths)
        flats[name] = flat[within >= np.repeat(lengths - np.minimum(lengths, n), lengths)]
    return lengths, flats


def last_items(frame: pd.DataFrame, *, key: str, time: str, items: Mapping[str, str], n: int,
               where: str | None = None, before: Mapping[str, Mapping] | None = None,
               before_time: Mapping | None = None) -> dict[str, pd.Series]:
    """For every row, the ``items`` columns (output name -> source column) of the last ``n`` rows
    with the same ``key`` and a STRICTLY smaller ``time`` (optionally only rows whose 0/1 column
    ``where`` is 1), oldest first. The outputs of one call are aligned (same length per row).

    ``before``: output name -> {key -> array of older ids, oldest first} (a pre-window history),
    put before the in-log items; the combination is cut to the newest ``n``. ``before_time``:
    key -> the time of the newest pre-window entry; a row at or before it does not see that
    key's pre-window part (it would not be strictly earlier). Each Series is indexed like
    ``frame``, rows in the frame's order."""
    _require(frame, [key, time], "the key and time columns")
    _check_items(items, n, before, frame, where)
    prep = _keys_and_times(frame, key, time)
    lengths, before_flat = _before_parts(before, items, prep[1], key, n)
    plan = _window_plan(frame, key, time, n, _flag(frame, where), lengths, before_time, prep)
    values = {name: _values(frame[col]) for name, col in items.items()}
    cells = _assemble(values, before_flat, plan)
    return {name: pd.Series(c, index=frame.index, name=name, dtype=object) for name, c in cells.items()}


# -- point_in_time_counts ----------------------------------------------------------------------

def _label_values(frame, labels) -> list[np.ndarray]:
    out = []
    for label in labels:
        values = pd.to_numeric(frame[label], errors="coerce")
        bad = frame[label].notna() & values.isna()
        if bad.any():
            raise DataError(f"label '{label}' must be numeric to average, got '{frame[label][bad].iloc[0]}'",
                            key=label)
        out.append(values.to_numpy(dtype=np.float64, na_value=np.nan))
    return out


def _earlier_sums(codes, rank, n_times, label_values):
    """Per row: the number of same-key rows at a strictly earlier time and, per label, the sum
    and the number of non-missing values over them."""
    o = _Order(codes, rank, n_times)
    first_same = o.unsort(np.searchsorted(o.comp_sorted, o.comp_sorted, side="left"))
    key_start = o.unsort(np.searchsorted(o.comp_sorted, o.codes_sorted * n_times, side="left"))
    count = (first_same - key_start).astype(np.float64)
    sums, seen = [], []
    for v in label_values:
        vs = v[o.order]
        ok = ~np.isnan(vs)
        cs = np.concatenate(([0.0], np.cumsum(np.where(ok, vs, 0.0))))
        cn = np.concatenate(([0.0], np.cumsum(ok, dtype=np.float64)))
        sums.append(cs[first_same] - cs[key_start])
        seen.append(cn[first_same] - cn[key_start])
    return count, sums, seen


def _count_frame(index, prefix, labels, count, sums, seen) -> pd.DataFrame:
    out = {f"{prefix}_n": count.astype(np.float32)}
    for label, s, m in zip(labels, sums, seen):
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(m > 0, s / np.where(m > 0, m, 1.0), np.nan)
        out[f"{prefix}_{label}_rate"] = rate.astype(np.float32)
    return pd.DataFrame(out, index=index)


def point_in_time_counts(frame: pd.DataFrame, *, key: str, time: str, labels=(),
                         prefix: str | None = None) -> pd.DataFrame:
    """Per row: ``{prefix}_n``, the number of rows of the same ``key`` at a strictly earlier
    ``time``, and ``{prefix}_{label}_rate``, the mean of each label over them (missing label
    values left out; NaN when there is none). ``prefix`` defaults to the key's name. float32
    columns, indexed like ``frame``."""
    labels = [labels] if isinstance(labels, str) else list(labels)
    _require(frame, [key, time, *labels], "the key, time and label columns")
    codes, _, rank, n_times, _ = _keys_and_times(frame, key, time)
    count, sums, seen = _earlier_sums(codes, rank, n_times, _label_values(frame, labels))
    return _count_frame(frame.index, prefix or key, labels, count, sums, seen)


# -- streaming ---------------------------------------------------------------------------------

class HistoryState:
    """``last_items`` and/or ``point_in_time_counts`` for a log read in chunks of non-decreasing
    time: ``update(chunk)`` returns, for the chunk's rows, exactly the columns the whole-log
    functions give them (list columns first, then counts), indexed like the chunk.

    Carried across chunks, per key: the source rows a later row may still need (the newest
    ``n`` before the latest time seen, plus every row AT that time, since a row of the next
    chunk at that same time must not see them but a later one must), and the count and label
    sums of the earlier rows, kept apart for the rows at the latest time for the same reason.
    Give ``items`` (with ``n``, optionally ``where``, ``before``, ``before_time``) for histories,
    ``labels`` (possibly empty: counts only) for counts, or both."""

    def __init__(self, *, key: str, time: str, items: Mapping[str, str] | None = None, n: int | None = None,
                 where: str | None = None, before: Mapping[str, Mapping] | None = None,
                 before_time: Mapping | None = None, labels=None, prefix: str | None = None):
        if items is None and labels is None:
            raise DataError("HistoryState needs items (histories) or labels (counts)", key="HistoryState")
        if items is not None and n is None:
            raise DataError("items need n, the history length", key="n")
        self.key, self.time = key, time
        self.items = dict(items) if items is not None else None
        self.n, self.where = n, where
        # converted once: every chunk looks its keys up in them
        self.before = None if before is None else {k: _as_before_series(v) for k, v in before.items()}
        self.before_time = None if before_time is None else _as_before_series(before_time, dtype=None)
        self.labels = None if labels is None else ([labels] if isinstance(labels, str) else list(labels))
        self.prefix = prefix or key
        self.last_time = None  # the latest time seen so far
        self._context: pd.DataFrame | None = None  # carried source rows: key, time, item sources
        self._keys = pd.Index([])  # keys with carried counts, and per key the counts:
        self._n = np.zeros((2, 0))  # [earlier than last_time, at last_time]
        self._sums = np.zeros((2, 0, len(self.labels or ())))
        self._seen = np.zeros((2, 0, len(self.labels or ())))

    def update(self, chunk: pd.DataFrame) -> pd.DataFrame:
        needed = [self.key, self.time]
        if self.items is not None:
            needed += list(self.items.values()) + ([self.where] if self.where else [])
        needed += self.labels or []
        _require(chunk, needed, "a column the history state was built for")
        out = pd.DataFrame(index=chunk.index)
        if len(chunk) == 0:
            for name in self.items or ():
                out[name] = pd.Series([], dtype=object)
            if self.labels is not None:
                out = out.join(_count_frame(chunk.index, self.prefix, self.labels, np.zeros(0),
                                            [np.zeros(0)] * len(self.labels), [np.zeros(0)] * len(self.labels)))
            return out
        times = _values(chunk[self.time])
        if pd.isna(times).any():
            _keys_and_times(chunk, self.key, self.time)  # raises the located error
        low, high = times.min(), times.max()
        if self.last_time is not None and low < self.last_time:
            raise DataError(f"chunk goes back in time: its earliest {self.time} {low!r} is before "
                            f"{self.last_time!r}, already seen", key=self.time,
                            hint="feed the log in chunks of non-decreasing time (sort it by time first)")
        new_last = high if self.last_time is None else max(high, self.last_time)
        if self.items is not None:
            for name, cells in self._update_items(chunk, new_last).items():
                out[name] = cells
        if self.labels is not None:
            out = out.join(self._update_counts(chunk, times, new_last))
        self.last_time = new_last
        return out

    # histories: the chunk after the carried rows of its keys, through the whole-log code
    def _update_items(self, chunk: pd.DataFrame, new_last) -> dict[str, pd.Series]:
        _check_items(self.items, self.n, self.before, chunk, self.where)
        cols = list(dict.fromkeys([self.key, self.time, *self.items.values()]))
        mine = chunk[cols].copy()
        mine["_source"] = _flag(chunk, self.where)
        if self._context is not None and len(self._context):
            carried = self._context[self._context[self.key].isin(chunk[self.key].unique())]
            rest = self._context.drop(index=carried.index)
        else:
            carried = rest = None
        parts = [p for p in (carried, mine) if p is not None]
        both = pd.concat(parts, ignore_index=True) if len(parts) > 1 else mine.reset_index(drop=True)
        if carried is not None:
            both["_source"] = both["_source"].astype(bool)
        prep = _keys_and_times(both, self.key, self.time)
        lengths, before_flat = _before_parts(self.before, self.items, prep[1], self.key, self.n)
        plan = _window_plan(both, self.key, self.time, self.n, both["_source"].to_numpy(dtype=bool), lengths,
                            self.before_time, prep)
        first = 0 if carried is None else len(carried)
        rows = np.arange(first, len(both))
        values = {name: _values(both[col]) for name, col in self.items.items()}
        cells = _assemble(values, before_flat, plan, rows)
        # carry: per key, every source row at new_last and the newest n before it
        src = both[both["_source"].to_numpy(dtype=bool)]
        if len(src):
            codes, src_keys, rank, n_times, raw_t = _keys_and_times(src, self.key, self.time)
            o = _Order(codes, rank, n_times)
            t_sorted = raw_t[o.order]
            earlier = t_sorted < new_last
            # rank from the newest among a key's earlier rows: earlier rows come first per key
            pos = np.arange(len(src))
            key_start = np.searchsorted(o.comp_sorted, o.codes_sorted * n_times, side="left")
            n_earlier = np.bincount(o.codes_sorted, weights=earlier, minlength=len(src_keys))
            from_newest = key_start + n_earlier[o.codes_sorted].astype(np.int64) - 1 - pos
            keep = ~earlier | (from_newest < self.n)
            src = src.iloc[o.order[keep]]
        kept = [p for p in (rest, src[cols + ["_source"]]) if p is not None and len(p)]
        self._context = pd.concat(kept, ignore_index=True) if kept else None
        return {name: pd.Series(c, index=chunk.index, name=name, dtype=object) for name, c in cells.items()}

    def _update_counts(self, chunk: pd.DataFrame, times, new_last) -> pd.DataFrame:
        codes, uniques, rank, n_times, _ = _keys_and_times(chunk, self.key, self.time)
        values = _label_values(chunk, self.labels)
        count, sums, seen = _earlier_sums(codes, rank, n_times, values)
        # bring every key of the chunk into the carried arrays
        new_keys = pd.Index(uniques).difference(self._keys)
        if len(new_keys):
            grow = len(new_keys)
            self._keys = self._keys.append(new_keys) if len(self._keys) else new_keys
            self._n = np.concatenate([self._n, np.zeros((2, grow))], axis=1)
            self._sums = np.concatenate([self._sums, np.zeros((2, grow, len(self.labels)))], axis=1)
            self._seen = np.concatenate([self._seen, np.zeros((2, grow, len(self.labels)))], axis=1)
        slot = self._keys.get_indexer(pd.Index(uniques))[codes]
        # what the chunk's rows see of the past: every earlier row, and the rows at the last time
        # seen only from a row at a later time (a row at that same time is not after them)
        if self.last_time is None:
            sees_at = np.zeros(len(chunk), dtype=bool)
        else:
            sees_at = times > self.last_time
        carried_n = self._n[0][slot] + np.where(sees_at, self._n[1][slot], 0.0)
        carried_s = self._sums[0][slot] + np.where(sees_at[:, None], self._sums[1][slot], 0.0)
        carried_m = self._seen[0][slot] + np.where(sees_at[:, None], self._seen[1][slot], 0.0)
        if self.last_time is not None and new_last > self.last_time:  # the old "at" rows are now earlier
            self._n[0] += self._n[1]
            self._sums[0] += self._sums[1]
            self._seen[0] += self._seen[1]
            self._n[1] = 0
            self._sums[1] = 0
            self._seen[1] = 0
        count = count + carried_n
        sums = [s + carried_s[:, j] for j, s in enumerate(sums)]
        seen = [m + carried_m[:, j] for j, m in enumerate(seen)]
        result = _count_frame(chunk.index, self.prefix, self.labels, count, sums, seen)
        # carry the chunk's rows: before new_last into part 0, at new_last into part 1
        at = times == new_last
        for part, mask in ((0, ~at), (1, at)):
            np.add.at(self._n[part], slot[mask], 1.0)
            for j, v in enumerate(values):
                ok = ~np.isnan(v) & mask
                np.add.at(self._sums[part][:, j], slot[ok], v[ok])
                np.add.at(self._seen[part][:, j], slot[ok], 1.0)
        return result
