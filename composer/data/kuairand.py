"""KuaiRand (Gao et al., "KuaiRand: An Unbiased Sequential Recommendation Dataset with Randomly
Exposed Videos", CIKM 2022): a Kuaishou exposure log joined with user and video features.

The folder holds one or more log files (``*log*.csv``: every log is read, in name order) and,
unless the log is already joined, ``user_features_*.csv`` and ``video_features_basic_*.csv``.
``../shared/data/kuairand`` holds a 200-row sample of a KuaiRand-1K log, already joined (with
its values label-encoded); the full release's logs (KuaiRand-Pure / 1K / 27K) are joined here on
``user_id`` and ``video_id``, and a log row without a matching feature row is an error.

Tasks are those whose labels exist in the log, nothing is invented:
- ``is_click``: the log's column.
- ``long_view``: the log's column when present (the full release has it); otherwise derived
  as ``play_time_ms >= min(duration_ms, 18000)``: the video was played to its end, or for at
  least 18 s when it is longer than that, which is the KuaiRand paper's long-view rule.
- ``is_like``: only when the log has the column (the shared sample does not, so its spec lists
  is_click and long_view only).

Scenario ``tab`` (the app page the video was shown on); GAUC group ``user_id``. Features are
the ids, ``tab``, ``duration_ms`` and the user and basic video features; what the user did after
the exposure (play time, stay times, other feedback) is never a feature. Split: by time when the
log has ``time_ms`` (or else ``date``): rows before the 80th percentile of time train, before
the 90th valid, the rest test; without a time column, by the md5 rule on each raw log line
(``b = int(md5(line)[:8], 16) % 10``; b <= 7 train, 8 valid, 9 test).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dataset import DataSpec, Dataset
from .errors import DataError, Location

LOG_CATEGORICAL = ("user_id", "video_id", "tab")
LOG_NUMERIC = ("duration_ms",)
USER_CATEGORICAL = ("user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
                    "follow_user_num_range", "fans_user_num_range", "friend_user_num_range",
                    "register_days_range") + tuple(f"onehot_feat{i}" for i in range(18))
USER_NUMERIC = ("follow_user_num", "fans_user_num", "friend_user_num", "register_days")
VIDEO_CATEGORICAL = ("video_type", "visible_status", "server_width", "server_height")
CATEGORICAL = LOG_CATEGORICAL + USER_CATEGORICAL + VIDEO_CATEGORICAL
NUMERIC = LOG_NUMERIC + USER_NUMERIC
LONG_VIEW_MS = 18_000
TIME_COLUMNS = ("time_ms", "date")
VALID_QUANTILE, TEST_QUANTILE = 0.8, 0.9


def folder() -> Path:
    from .tables import data_root

    return data_root() / "kuairand"


def log_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.csv")
                  if "log" in p.name.lower() and not p.name.startswith(("user_features", "video_features")))


def _tasks(header) -> dict[str, str]:
    """The tasks whose labels this log has (or, for long_view, can derive)."""
    cols = set(header)
    tasks = {"is_click": "is_click"}
    if "long_view" in cols or {"play_time_ms", "duration_ms"} <= cols:
        tasks["long_view"] = "long_view"
    if "is_like" in cols:
        tasks["is_like"] = "is_like"
    return tasks


def describe(name: str = "kuairand", directory: Path | None = None) -> DataSpec:
    """Reads only the first log's header line (to know which tasks exist); without the folder,
    the spec of the shared sample (is_click, long_view)."""
    from .tables import read_header

    directory = Path(directory) if directory else folder()
    header = None
    if directory.is_dir():
        logs = log_files(directory)
        header = read_header(logs[0]) if logs else None
    labels = _tasks(header) if header else {"is_click": "is_click", "long_view": "long_view"}
    return DataSpec(name=name, categorical=CATEGORICAL, numeric=NUMERIC, labels=labels, scenario="tab",
                    group="user_id",
                    description=f"KuaiRand log joined with user and video features: {', '.join(labels)}; "
                                "scenario = tab, GAUC by user_id.")


def load(name: str = "kuairand", rows: int | None = None, *, directory: Path | None = None) -> Dataset:
    import pandas as pd

    from .tables import read_header, require_dir

    directory = require_dir(Path(directory) if directory else folder(), name)
    spec = describe(name, directory)
    logs = log_files(directory)
    if not logs:
        raise DataError("no log file in the folder", location=Location(str(directory)), key=name,
                        hint="a KuaiRand log is a .csv file with 'log' in its name "
                        "(e.g. log_standard_4_08_to_4_21_pure.csv)")
    headers = {p: read_header(p) or [] for p in logs}
    by_time = next((c for c in TIME_COLUMNS if all(c in h for h in headers.values())), None)
    features = _FeatureFiles(directory)
    frames, lines, times = [], [], []
    for path in logs:
        frame, table = _read_log(path, spec, features, rows, want_lines=by_time is None)
        frames.append(frame)
        if by_time:
            times.append(table.numeric(by_time).to_numpy(dtype="float64"))
            if np.isnan(times[-1]).any():
                raise table.bad_cell(by_time, np.isnan(times[-1]), "missing time", "every row needs its time")
        else:
            lines.extend(table.lines)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if by_time:
        t = np.concatenate(times)
        valid_from, test_from = np.quantile(t, VALID_QUANTILE), np.quantile(t, TEST_QUANTILE)
        split = np.where(t >= test_from, "test", np.where(t >= valid_from, "valid", "train"))
        rule = (f"by {by_time}: < {valid_from:.0f} train, < {test_from:.0f} valid, the rest test "
                f"(the {VALID_QUANTILE:.0%} and {TEST_QUANTILE:.0%} quantiles)")
    else:
        from .tables import bucket_split

        split = bucket_split(lines)
        rule = "md5 of each raw log line: b = int(md5(line)[:8], 16) % 10; b <= 7 train, 8 valid, 9 test"
    derived = "long_view" in spec.labels and not all("long_view" in h for h in headers.values())
    meta = {"split": rule, "logs": [str(p) for p in logs]}
    if derived:
        meta["long_view"] = f"derived: play_time_ms >= min(duration_ms, {LONG_VIEW_MS})"
    return Dataset(spec, frame, split, source=", ".join(str(p) for p in logs), meta=meta)


def _read_log(path: Path, spec: DataSpec, features: "_FeatureFiles", rows, want_lines: bool):
    import pandas as pd

    from .tables import read_table

    table = read_table(path, rows=rows, want_lines=want_lines, text_columns=CATEGORICAL)
    header = set(table.header)
    labels = _tasks(table.header)
    missing = [t for t in spec.labels if t not in labels]
    if missing:
        raise DataError(f"log has no '{missing[0]}' label", location=Location(str(path), 1), key=missing[0],
                        hint="every log file of the folder needs the same label columns")
    out = {}
    for col in LOG_CATEGORICAL:
        table.require([col])
        out[col] = table.categorical(col)
    for col in LOG_NUMERIC:
        table.require([col])
        out[col] = table.numeric(col)
    joined = pd.DataFrame(out)
    for part, cats, nums, key in (("user", USER_CATEGORICAL, USER_NUMERIC, "user_id"),
                                  ("video", VIDEO_CATEGORICAL, (), "video_id")):
        wanted = cats + nums
        if all(c in header for c in wanted):  # already joined, as in the shared sample
            for c in cats:
                joined[c] = table.categorical(c)
            for c in nums:
                joined[c] = table.numeric(c)
            continue
        side = features.get(part, key, cats, nums)
        joined = _join(joined, side, key, table, features.path(part))
    for task in spec.labels:
        if task == "long_view" and "long_view" not in header:
            play = table.numeric("play_time_ms").to_numpy(dtype="float64")
            duration = table.numeric("duration_ms").to_numpy(dtype="float64")
            absent = np.isnan(play) | np.isnan(duration)
            if absent.any():
                col = "play_time_ms" if np.isnan(play).any() else "duration_ms"
                raise table.bad_cell(col, np.isnan(play) if col == "play_time_ms" else np.isnan(duration),
                                 "missing value", "long_view is derived from play_time_ms and duration_ms")
            joined["long_view"] = (play >= np.minimum(duration, LONG_VIEW_MS)).astype("int64")
        else:
            joined[task] = table.label(task)
    return joined[list(spec.features) + list(spec.labels)], table


def _join(log, side, key, table, side_file):
    merged = log.merge(side, on=key, how="left", indicator=True, sort=False)
    orphans = (merged["_merge"] == "left_only").to_numpy()
    if orphans.any():
        raise table.bad_cell(key, orphans, f"{key} '{{value}}' has no row in {os.path.basename(side_file)}",
                         f"every {key} of the log needs a row in {side_file}")
    return merged.drop(columns="_merge")


class _FeatureFiles:
    """The user and video feature files of a folder, read once when a log needs them."""

    PATTERNS = {"user": "user_features*.csv", "video": "video_features_basic*.csv"}

    def __init__(self, directory: Path):
        self.directory = directory
        self.cache: dict = {}

    def path(self, part: str) -> str:
        found = sorted(self.directory.glob(self.PATTERNS[part]))
        if not found:
            raise DataError(f"the log has no {part} features and no {self.PATTERNS[part]} file is in the folder",
                            location=Location(str(self.directory)), key=part,
                            hint=f"put the KuaiRand {part} feature file (e.g. "
                            f"{self.PATTERNS[part].replace('*', '_pure')}) next to the log")
        if len(found) > 1:
            raise DataError(f"several {part} feature files: {', '.join(p.name for p in found)}",
                            location=Location(str(self.directory)), key=part,
                            hint="keep the one that matches the log (pure, 1k or 27k)")
        return str(found[0])

    def get(self, part, key, cats, nums):
        import pandas as pd

        from .tables import read_table

        if part in self.cache:
            return self.cache[part]
        path = self.path(part)
        table = read_table(path, text_columns=(key,) + tuple(cats))
        table.require((key,) + tuple(cats) + tuple(nums))
        dup = table.frame[key].duplicated().to_numpy()
        if dup.any():
            raise table.bad_cell(key, dup, f"{key} '{{value}}' appears twice", f"one row per {key}")
        frame = pd.DataFrame({key: table.categorical(key),
                              **{c: table.categorical(c) for c in cats},
                              **{c: table.numeric(c) for c in nums}})
        self.cache[part] = frame
        return frame
