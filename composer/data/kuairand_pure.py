"""KuaiRand-Pure (Gao et al., "KuaiRand: An Unbiased Sequential Recommendation Dataset with
Randomly Exposed Videos", CIKM 2022; CC BY-SA 4.0): ``kuairand-pure``, the benchmark protocol of
../shared/data/DATA.md ("kuairand_pure/").

Files: ``kuairand_pure/log_pure_*.parquet`` (every impression of 2022-04-25..05-08, read in name
order, one row each, the frame keeps that order), ``kuairand_pure/user_histories_before_2022-04-25.parquet``
(per user, video lists from the log before the window), and the side features
``kuairand/user_features_pure.csv`` and ``kuairand/video_features_basic_pure.csv`` joined on
``user_id`` / ``video_id`` (a log row without its feature row is an error, never dropped).

- split by ``date``: train 2022-04-25..05-04 (171,671 rows), valid 05-05..05-06 (27,224),
  test 05-07..05-08 (29,434).
- tasks ``is_click``, ``long_view``, ``is_like``; scenario ``tab`` (also a feature), its values
  declared statically, most frequent train value first; GAUC group ``user_id``.
- features: ids ``user_id``, ``video_id``, ``author_id`` (raw ints, as in the log; the list
  columns hold the same ints, so a video and the videos of a history are the same values);
  ``hourmin`` as a categorical hour of day ("0".."23"): the log only has whole hours, and the
  click rate over the day is not monotone (lowest at 0h and 20h, highest at 7-8h and 12-13h)
  while 23h and 0h are neighbours, which one number standardised cannot express, and 24 values
  each with thousands of train rows are easy to embed; ``video_duration``, ``freshness_days``;
  the user and video side features (``kuairand.py``'s lists plus ``upload_type``, ``music_type``);
  ``tag`` (multi-valued: the comma-separated cell split into strings; ``unknown`` -> empty).
- histories (``histories=1``, the default): for each row only rows of the same user at a
  STRICTLY earlier ``time_ms`` (``composer.data.histories``), after the pre-window list:
  ``hist_video`` (every impression; pre-window ``watch_seq``) with ``hist_author`` beside it,
  ``long_video`` (long views; pre-window ``long_watch_seq``), ``like_video`` (likes; pre-window
  ``like_seq``), all newest last. The label-filtered histories follow the label whose list the
  pre-window file has: ``long_watch_seq`` and ``like_seq`` were cut from the same release by the
  same flags (``long_watch`` == ``long_view`` and ``like`` == ``is_like`` on every row of this
  log), so each list means one thing on both sides of 2022-04-25. A clicked-video history would
  have had to take its older part from ``long_watch_seq`` (a subset of the clicks) or
  ``watch_seq`` (mostly not clicks): the model would see a list whose meaning drifts with the
  day (train rows early in the window are mostly pre-window). Point-in-time numbers:
  ``user_n`` / ``video_n`` (earlier impressions in the log) and ``{user,video}_{label}_rate``
  (NaN when none; imputed with the train mean later), and ``user_prewindow_n`` (the user's
  impressions before the window, ``history_len``; 0 without one). A user whose pre-window list
  ends at or after a row's time (3 rows: the release logs the row itself on both sides of the
  cut) sees no pre-window part on that row.
- never features (``DataSpec.outcomes``): what the user did after the impression, and columns
  that carry nothing.

Options on the name, as ``kuairand-pure:histories=0,merge_tabs=1100``: ``histories=0`` drops every
history and point-in-time column (the same data with and without histories); ``merge_tabs=N``
merges the tabs with fewer than N train rows into one scenario value ``small`` (0: no merge).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .dataset import DataSpec, Dataset, ListSpec
from .errors import DataError, Location, did_you_mean
from .options import parse_options
from .kuairand import USER_CATEGORICAL, USER_NUMERIC, VIDEO_CATEGORICAL

NAME = "kuairand-pure"
LOG_GLOB = "log_pure_*.parquet"
PREWINDOW_FILE = "user_histories_before_2022-04-25.parquet"
LABELS = {"is_click": "is_click", "long_view": "long_view", "is_like": "is_like"}
SPLIT_DAYS = {"train": (20220425, 20220504), "valid": (20220505, 20220506), "test": (20220507, 20220508)}
SPLIT_ROWS = {"train": 171_671, "valid": 27_224, "test": 29_434}  # DATA.md; checked by a test
SMALL = "small"
# Train rows per tab (counted once on the data, checked against it by a test): the scenario
# values and merge_tabs are known without reading anything.
TRAIN_TAB_ROWS = {"1": 129_822, "0": 15_362, "4": 10_189, "6": 9_079, "2": 4_784, "8": 836, "5": 468,
                  "12": 379, "3": 250, "11": 177, "9": 114, "7": 103, "13": 54, "10": 42, "14": 12}

ID_COLUMNS = ("user_id", "video_id", "author_id")
LOG_CATEGORICAL = ID_COLUMNS + ("tab", "hourmin")
LOG_NUMERIC = ("video_duration", "freshness_days")
# Side features: kuairand.py's lists (every column exists in the Pure files), plus two more video ones
VIDEO_EXTRA = ("upload_type", "music_type")
VIDEO_SIDE = VIDEO_CATEGORICAL + VIDEO_EXTRA
CATEGORICAL = LOG_CATEGORICAL + USER_CATEGORICAL + VIDEO_SIDE
NUMERIC = LOG_NUMERIC + USER_NUMERIC
HISTORY_LEN = 50
LIKE_LEN = 20  # likes are rare (1.7 %): 69 % of rows have none, 1.2 % have 20 or more
TAG = {"tag": ListSpec(ordered=False, max_len=4)}  # at most 3 tags per video in this log
HISTORIES = {
    "hist_video": ListSpec(ordered=True, max_len=HISTORY_LEN, share="video_id"),
    "hist_author": ListSpec(ordered=True, max_len=HISTORY_LEN, share="author_id", aligned_with="hist_video"),
    "long_video": ListSpec(ordered=True, max_len=HISTORY_LEN, share="video_id"),
    "like_video": ListSpec(ordered=True, max_len=LIKE_LEN, share="video_id"),
}
COUNT_LABELS = tuple(LABELS)
HISTORY_NUMERIC = (("user_prewindow_n", "user_n") + tuple(f"user_{lab}_rate" for lab in COUNT_LABELS)
                   + ("video_n",) + tuple(f"video_{lab}_rate" for lab in COUNT_LABELS))

_AFTER = "logged after the impression: the answer, not an input"
OUTCOMES = {
    **{c: f"{_AFTER} (a task label here)" for c in LABELS},
    **{c: _AFTER for c in ("is_follow", "is_comment", "is_forward", "is_hate", "is_profile_enter",
                           "play_time_ms", "profile_stay_time", "comment_stay_time", "watch_ratio")},
    "duration_ms": f"{_AFTER} (logged with the play; video_duration is the same length as a feature)",
    "finish": f"{_AFTER} (derived: watch_ratio >= 1)",
    "like": f"{_AFTER} (a copy of is_like)",
    "long_watch": f"{_AFTER} (a copy of long_view)",
    "is_positive": f"{_AFTER} (derived from the click and the long view)",
    "is_rand": "an exposure flag (random exposure), 0 on every row of this log: carries nothing",
    "source_file": "provenance of the row (one file name for every row): carries nothing",
    "date": "the split key (train, valid and test are different days): every valid and test value is "
            "unseen in train; hourmin carries the time of day",
    "time_ms": "the clock the split and the histories are built on: as a number it only tells the day "
               "apart; hourmin carries the time of day",
}


@dataclass(frozen=True)
class Options:
    """What ``kuairand-pure:key=value,...`` may set."""

    histories: int = 1  # 0: no history lists, no point-in-time counts
    merge_tabs: int = 0  # tabs with fewer train rows than this become one scenario value "small"
    rows: int = 0  # > 0: about this many rows, whole users kept (by md5 of the user id); 0: all

    def check(self) -> "Options":
        problems = []
        if self.histories not in (0, 1):
            problems.append(("histories", f"must be 0 or 1, got {self.histories}"))
        if self.rows < 0:
            problems.append(("rows", f"must be >= 0 (0: every row), got {self.rows}"))
        if self.merge_tabs < 0:
            problems.append(("merge_tabs", f"must be >= 0 (0: no merge), got {self.merge_tabs}"))
        if problems:
            raise DataError.many([DataError(msg, key=key) for key, msg in problems])
        return self


def parse(name: str) -> Options:
    """``'kuairand-pure:histories=0,merge_tabs=1100'`` -> Options(...)."""
    base, _, text = name.partition(":")
    if base.strip() != NAME:
        raise DataError(f"unknown dataset '{base.strip()}'", key="data", hint=did_you_mean(base.strip(), [NAME]))
    values = parse_options(NAME, text, {f.name: int for f in fields(Options)})
    return Options(**values).check()


def scenario_values(merge_tabs: int = 0) -> tuple[str, ...]:
    """The tab values, most train rows first; with ``merge_tabs=N`` the tabs under N train rows
    are one value ``small`` (placed by its total)."""
    kept = {tab: rows for tab, rows in TRAIN_TAB_ROWS.items() if rows >= merge_tabs}
    merged = sum(rows for tab, rows in TRAIN_TAB_ROWS.items() if rows < merge_tabs)
    if merged:
        kept[SMALL] = merged
    return tuple(sorted(kept, key=lambda tab: -kept[tab]))


def tab_mapping(merge_tabs: int = 0) -> dict[str, str]:
    """Raw tab value -> scenario value."""
    return {tab: (tab if rows >= merge_tabs else SMALL) for tab, rows in TRAIN_TAB_ROWS.items()}


def describe(name: str = NAME) -> DataSpec:
    """The spec, from code alone: nothing is read."""
    options = parse(name)
    lists = dict(TAG)
    numeric = NUMERIC
    if options.histories:
        lists.update(HISTORIES)
        numeric = NUMERIC + HISTORY_NUMERIC
    merged = [t for t, rows in TRAIN_TAB_ROWS.items() if rows < options.merge_tabs]
    changed = {k: v for k, v in asdict(options).items() if v != getattr(Options(), k)}
    description = ("KuaiRand-Pure 2022-04-25..05-08 (DATA.md protocol): is_click, long_view, is_like; "
                   "scenario = tab, GAUC by user_id; split by date"
                   + ("; point-in-time user histories (strictly earlier time_ms) and counts"
                      if options.histories else "; no histories")
                   + (f"; tabs {', '.join(merged)} merged into '{SMALL}'" if merged else "")
                   + (f". Options: {', '.join(f'{k}={v}' for k, v in changed.items())}." if changed else "."))
    return DataSpec(name=name, categorical=CATEGORICAL, numeric=numeric, labels=dict(LABELS), scenario="tab",
                    scenario_values=scenario_values(options.merge_tabs), group="user_id",
                    description=description, lists=lists, outcomes=dict(OUTCOMES))


# -- loading -----------------------------------------------------------------------------------

def folder() -> Path:
    from .tables import data_root

    return data_root() / "kuairand_pure"


def features_folder() -> Path:
    from .tables import data_root

    return data_root() / "kuairand"


LOG_COLUMNS = ("user_id", "video_id", "author_id", "date", "hourmin", "time_ms", "tab", "tag",
               "video_duration", "freshness_days") + tuple(LABELS)


def _read_logs(directory: Path, rows: int | None):
    """The log files, concatenated in name order (at most ``rows`` rows); the file and first
    frame row of each, for messages."""
    import pandas as pd
    import pyarrow.parquet as pq

    paths = sorted(directory.glob(LOG_GLOB))
    if not paths:
        raise DataError(f"no {LOG_GLOB} file in the folder", location=Location(str(directory)), key=NAME,
                        hint="the KuaiRand-Pure logs of DATA.md (log_pure_2022-04-25_to_04-30.parquet, ...)")
    frames, starts, got = [], [], 0
    for path in paths:
        if rows is not None and got >= rows:
            break
        try:
            pf = pq.ParquetFile(path)
            missing = [c for c in LOG_COLUMNS if c not in pf.schema_arrow.names]
            if missing:
                raise DataError(f"column '{missing[0]}' is not in the log", location=Location(str(path)),
                                key=missing[0], hint=did_you_mean(missing[0], pf.schema_arrow.names,
                                                                  what="columns in the file"))
            if rows is None:
                table = pf.read(columns=list(LOG_COLUMNS))
            else:
                import pyarrow as pa

                batches, have = [], 0
                for batch in pf.iter_batches(batch_size=min(rows - got, 65536), columns=list(LOG_COLUMNS)):
                    batches.append(batch)
                    have += batch.num_rows
                    if have >= rows - got:
                        break
                table = pa.Table.from_batches(batches).slice(0, rows - got)
        except DataError:
            raise
        except Exception as exc:  # unreadable file: a located message, not a traceback
            raise DataError(f"cannot read the log: {exc}", location=Location(str(path)), key=NAME) from None
        frame = table.to_pandas()
        starts.append((got, str(path)))
        frames.append(frame)
        got += len(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame, starts


def _where(starts, row: int) -> Location:
    """The file and 1-based row (in that file) of frame row ``row``."""
    first, path = max((s for s in starts if s[0] <= row), key=lambda s: s[0])
    return Location(path), row - first + 1


def _bad_rows(starts, column: str, mask: np.ndarray, values, message: str, hint: str | None = None):
    rows = np.flatnonzero(mask)
    location, in_file = _where(starts, int(rows[0]))
    more = f" ({len(rows)} rows like this; the first is shown)" if len(rows) > 1 else ""
    value = values[int(rows[0])]
    return DataError(message.format(value=value) + f" in row {in_file}" + more, location=location, key=column,
                     hint=hint)


def _ints(frame, column, starts) -> np.ndarray:
    s = frame[column]
    if s.isna().any():
        raise _bad_rows(starts, column, s.isna().to_numpy(), s.to_numpy(), "missing value",
                        f"every row needs its {column}")
    return s.to_numpy(dtype=np.int64)


def _labels(frame, starts) -> dict:
    out = {}
    for label in LABELS:
        s = frame[label]
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            raise _bad_rows(starts, label, bad, s.to_numpy(), "a label must be 0 or 1, got '{value}'",
                            "labels are binary: 0 (no) or 1 (yes)")
        out[label] = values.astype(np.int64)
    return out


def _split(dates, starts) -> np.ndarray:
    split = np.full(len(dates), "", dtype=object)
    for name, (first, last) in SPLIT_DAYS.items():
        split[(dates >= first) & (dates <= last)] = name
    outside = split == ""
    if outside.any():
        raise _bad_rows(starts, "date", outside, dates, "date {value} is outside the protocol's days",
                        "kuairand-pure covers 20220425..20220508: train ..0504, valid 0505-0506, test 0507-0508")
    return split.astype(str)


def _tags(column) -> "object":
    """The comma-separated tag cells as arrays of strings (empty for missing or 'unknown'); rows
    with the same text share one read-only array."""
    import pandas as pd

    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    arrays = []
    for text in uniques:
        parts = [p.strip() for p in str(text).split(",")]
        arr = np.array([p for p in parts if p and p.lower() != "unknown"], dtype=object)
        arr.flags.writeable = False
        arrays.append(arr)
    empty = np.array([], dtype=object)
    empty.flags.writeable = False
    table = np.empty(len(arrays) + 1, dtype=object)
    for i, arr in enumerate(arrays):  # assigned one by one: equal-length arrays must stay cells
        table[i] = arr
    table[-1] = empty
    return pd.Series(table[codes], index=column.index, dtype=object)  # code -1 (missing) -> last: empty


def _side(part: str, key: str, cats, nums):
    """A side feature file, read with kuairand.py's reader (located errors, duplicate keys
    refused), its key as int64 like the log's."""
    from .kuairand import _FeatureFiles

    files = _FeatureFiles(features_folder())
    side = files.get(part, key, cats, nums)
    keys = side[key]
    as_int = keys.str.fullmatch(r"\d+")
    if not as_int.all():
        from .tables import read_table

        table = read_table(files.path(part), text_columns=(key,))
        raise table.bad_cell(key, ~as_int.to_numpy(), f"{key} '{{value}}' is not an integer id",
                             "KuaiRand ids are integers")
    side = side.copy()
    side[key] = keys.astype("int64")
    return side, files.path(part)


def _join(log_keys, starts, side, key, side_path, columns):
    """The side columns, row-aligned with the log; a log key without a side row is an error."""
    import pandas as pd

    pos = pd.Index(side[key].to_numpy()).get_indexer(log_keys)
    orphans = pos < 0
    if orphans.any():
        raise _bad_rows(starts, key, orphans, log_keys,
                        f"{key} '{{value}}' has no row in {os.path.basename(side_path)}",
                        f"every {key} of the log needs a row in {side_path}")
    return side[list(columns)].take(pos).reset_index(drop=True)


def _prewindow(directory: Path, video_author):
    """Per user: the pre-window lists (with the author of each watched video), the time of the
    last entry and the list length."""
    import pandas as pd

    from .tables import require_file

    path = require_file(directory / PREWINDOW_FILE, NAME)
    try:
        pre = pd.read_parquet(path, columns=["user_id", "history_len", "last_time_ms", "watch_seq",
                                             "like_seq", "long_watch_seq"])
    except Exception as exc:
        raise DataError(f"cannot read the pre-window histories: {exc}", location=Location(str(path)),
                        key=NAME) from None
    users = pre["user_id"].to_numpy(dtype=np.int64)
    if pd.Index(users).has_duplicates:
        raise DataError("a user appears twice", location=Location(str(path)), key="user_id",
                        hint="one row of pre-window lists per user")

    def lists(col):
        return pd.Series([np.asarray(a, dtype=np.int64) for a in pre[col].to_numpy()], index=users, dtype=object)

    watch = lists("watch_seq")
    lengths = watch.map(len).to_numpy()
    flat = np.concatenate(watch.to_numpy()) if len(watch) else np.empty(0, dtype=np.int64)
    pos = video_author.index.get_indexer(flat)
    if (pos < 0).any():
        video = int(flat[np.flatnonzero(pos < 0)[0]])
        raise DataError(f"video {video} of the pre-window watch_seq has no author: it is in neither "
                        "video_features_basic_pure.csv nor the log", location=Location(str(path)), key="watch_seq",
                        hint="every pre-window video needs a row in the video feature file")
    authors = video_author.to_numpy()[pos]
    watch_author = pd.Series(np.split(authors, np.cumsum(lengths)[:-1]) if len(lengths) else [],
                             index=users, dtype=object)
    return {
        "hist_video": watch, "hist_author": watch_author,
        "long_video": lists("long_watch_seq"), "like_video": lists("like_seq"),
        "last_time": pd.Series(pre["last_time_ms"].to_numpy(dtype=np.int64), index=users),
        "length": pd.Series(pre["history_len"].to_numpy(dtype=np.int64), index=users),
    }


def _histories(frame, directory: Path, video_author):
    """The history lists and point-in-time columns of every row of ``frame`` (it has time_ms)."""
    import pandas as pd

    from .histories import last_items, point_in_time_counts

    pre = _prewindow(directory, video_author)
    common = dict(key="user_id", time="time_ms", before_time=pre["last_time"])
    cols = {}
    cols.update(last_items(frame, items={"hist_video": "video_id", "hist_author": "author_id"}, n=HISTORY_LEN,
                           before={"hist_video": pre["hist_video"], "hist_author": pre["hist_author"]}, **common))
    cols.update(last_items(frame, items={"long_video": "video_id"}, n=HISTORY_LEN, where="long_view",
                           before={"long_video": pre["long_video"]}, **common))
    cols.update(last_items(frame, items={"like_video": "video_id"}, n=LIKE_LEN, where="is_like",
                           before={"like_video": pre["like_video"]}, **common))
    cols["user_prewindow_n"] = pd.Series(
        pre["length"].reindex(frame["user_id"].to_numpy()).fillna(0).to_numpy(dtype=np.float32), index=frame.index)
    counts = [point_in_time_counts(frame, key=key, time="time_ms", labels=COUNT_LABELS, prefix=prefix)
              for key, prefix in (("user_id", "user"), ("video_id", "video"))]
    return pd.concat([pd.DataFrame(cols, index=frame.index), *counts], axis=1)


def _user_sample(user_ids: np.ndarray, share: float) -> np.ndarray:
    """Rows of the users whose md5 bucket u = int(md5(id)[:8], 16) / 16**8 is below ``share``:
    a reproducible sample of whole users (each kept user's every row, so their histories and the
    date split stay as they are; the items' counts still come from every user's rows)."""
    import hashlib

    uniques, inverse = np.unique(user_ids, return_inverse=True)
    u = np.array([int(hashlib.md5(str(v).encode()).hexdigest()[:8], 16) / 16.0**8 for v in uniques])
    return (u < share)[inverse]


def load(name: str = NAME, rows: int | None = None) -> Dataset:
    """Read the logs (the first ``rows`` rows when given: a quick look, same rules), join the
    side features, build the histories; every column of the spec, one row per impression."""
    import pandas as pd

    from .tables import as_text, require_dir

    spec = describe(name)
    options = parse(name)
    directory = require_dir(folder(), NAME)
    require_dir(features_folder(), NAME)
    log, starts = _read_logs(directory, rows)
    ids = {c: _ints(log, c, starts) for c in ID_COLUMNS + ("time_ms", "date")}
    labels = _labels(log, starts)
    split = _split(ids["date"], starts)

    cols = {c: ids[c] for c in ID_COLUMNS}
    if log["tab"].isna().any():
        raise _bad_rows(starts, "tab", log["tab"].isna().to_numpy(), log["tab"].to_numpy(), "missing value",
                        "every row needs its tab (the scenario)")
    tab = as_text(log["tab"])
    mapping = tab_mapping(options.merge_tabs)
    unknown = ~tab.isin(list(mapping)).to_numpy()
    if unknown.any():
        raise _bad_rows(starts, "tab", unknown, tab.to_numpy(), "tab '{value}' is not one of the protocol's tabs",
                        f"kuairand-pure declares the tabs {', '.join(TRAIN_TAB_ROWS)}")
    cols["tab"] = tab.map(mapping)
    hourmin = log["hourmin"]
    if hourmin.isna().any():
        raise _bad_rows(starts, "hourmin", hourmin.isna().to_numpy(), hourmin.to_numpy(), "missing value")
    hours = hourmin.to_numpy(dtype=np.int64) // 100
    cols["hourmin"] = pd.Series(np.array([str(h) for h in range(24)] + ["?"], dtype=object)[
        np.where((hours >= 0) & (hours < 24), hours, 24)], dtype="str")
    if (cols["hourmin"] == "?").any():
        raise _bad_rows(starts, "hourmin", (cols["hourmin"] == "?").to_numpy(), hourmin.to_numpy(),
                        "hourmin {value} is not a time of day (HHMM, 0..2359)")
    for col in LOG_NUMERIC:
        cols[col] = log[col].to_numpy(dtype=np.float32, na_value=np.nan)
    cols["tag"] = _tags(log["tag"])
    cols.update(labels)
    user, user_path = _side("user", "user_id", USER_CATEGORICAL, USER_NUMERIC)
    video, video_path = _side("video", "video_id", VIDEO_SIDE + ("author_id",), ())
    frame = pd.concat([pd.DataFrame(cols),
                       _join(ids["user_id"], starts, user, "user_id", user_path, USER_CATEGORICAL + USER_NUMERIC),
                       _join(ids["video_id"], starts, video, "video_id", video_path, VIDEO_SIDE)], axis=1)

    if options.histories:
        # video -> author for the pre-window videos: the feature file, then the log's own pairs
        authors = pd.concat([
            pd.Series(video["author_id"].astype("int64").to_numpy(), index=video["video_id"].to_numpy()),
            pd.Series(ids["author_id"], index=ids["video_id"])])
        authors = authors[~authors.index.duplicated()]
        keys = pd.DataFrame({c: ids[c] for c in ("user_id", "video_id", "author_id", "time_ms")})
        keys = pd.concat([keys, frame[list(LABELS)]], axis=1)
        frame = pd.concat([frame, _histories(keys, directory, authors)], axis=1)
    columns = list(spec.features) + [c for c in spec.labels.values() if c not in spec.features]
    frame = frame[columns]
    if options.rows:  # a smaller dataset with the same rules: whole users, histories and splits intact
        keep = _user_sample(ids["user_id"], options.rows / max(len(frame), 1))
        frame, split = frame.loc[keep].reset_index(drop=True), split[keep]
    meta = {"split": "by date: train 20220425..20220504, valid 20220505..20220506, test 20220507..20220508",
            "logs": [path for _, path in starts], "rows": rows}
    source = ", ".join([p for _, p in starts] + [user_path, video_path])
    return Dataset(spec, frame, split, source=source, meta=meta)
