"""How long the point-in-time features of the whole KuaiRand-Pure log take (composer/data/histories.py).

    python bench/history_build.py [--repeat 3] [--chunk 20000]

Reads the two log files of ../shared/data/kuairand_pure (228,329 rows) and the pre-window
histories, then times, each as the best of ``--repeat`` runs:
- ``last_items``: hist_video + hist_author (n=50, the pre-window watch_seq prepended), and a
  label-filtered history (long views, n=50, long_watch_seq prepended);
- ``point_in_time_counts``: per user and per video, earlier impressions and is_click /
  long_view / is_like rates;
- ``HistoryState``: the same, fed in time-ordered chunks of ``--chunk`` rows (streaming).
Prints rows, seconds and rows/s for each. Skips with a message when the data is absent.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

LABELS = ("is_click", "long_view", "is_like")
N = 50


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=20_000)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    from composer.data.histories import HistoryState, last_items, point_in_time_counts
    from composer.data.tables import data_root

    folder = data_root() / "kuairand_pure"
    if not folder.is_dir():
        print(f"skipped: {folder} not found (the shared KuaiRand-Pure data lives in ../shared/data next to "
              "the project root; or set COMPOSER_DATA_DIR)")
        return 0
    cols = ["user_id", "video_id", "author_id", "time_ms", *LABELS]
    logs = sorted(folder.glob("log_pure_*.parquet"))
    frame = pd.concat([pd.read_parquet(p, columns=cols) for p in logs], ignore_index=True)
    for c in LABELS:
        frame[c] = frame[c].astype("int64")
    pre = pd.read_parquet(folder / "user_histories_before_2022-04-25.parquet")
    video_author = pd.Series(frame["author_id"].to_numpy(), index=frame["video_id"].to_numpy())
    video_author = video_author[~video_author.index.duplicated()]
    watch = pd.Series(pre["watch_seq"].to_numpy(), index=pre["user_id"].to_numpy())
    flat = np.concatenate(watch.to_numpy())
    authors = video_author.reindex(flat).fillna(-1).to_numpy(dtype=np.int64)
    lengths = watch.map(len).to_numpy()
    watch_author = pd.Series(np.split(authors, np.cumsum(lengths)[:-1]), index=watch.index)
    long_watch = pd.Series(pre["long_watch_seq"].to_numpy(), index=pre["user_id"].to_numpy())
    last_time = pd.Series(pre["last_time_ms"].to_numpy(), index=pre["user_id"].to_numpy())
    rows = len(frame)
    print(f"{rows:,} rows, {frame['user_id'].nunique():,} users, {frame['video_id'].nunique():,} videos, "
          f"{os.cpu_count()} CPUs")

    def hist():
        return last_items(frame, key="user_id", time="time_ms", n=N,
                          items={"hist_video": "video_id", "hist_author": "author_id"},
                          before={"hist_video": watch, "hist_author": watch_author}, before_time=last_time)

    def long_hist():
        return last_items(frame, key="user_id", time="time_ms", n=N, items={"long_video": "video_id"},
                          where="long_view", before={"long_video": long_watch}, before_time=last_time)

    def counts():
        return (point_in_time_counts(frame, key="user_id", time="time_ms", labels=LABELS, prefix="user"),
                point_in_time_counts(frame, key="video_id", time="time_ms", labels=LABELS, prefix="video"))

    ordered = frame.sort_values("time_ms", kind="stable")

    def streamed():
        states = [HistoryState(key="user_id", time="time_ms", n=N,
                               items={"hist_video": "video_id", "hist_author": "author_id"},
                               before={"hist_video": watch, "hist_author": watch_author}, before_time=last_time,
                               labels=LABELS, prefix="user"),
                  HistoryState(key="video_id", time="time_ms", labels=LABELS, prefix="video")]
        out = []
        for start in range(0, rows, args.chunk):
            chunk = ordered.iloc[start:start + args.chunk]
            out.append(pd.concat([s.update(chunk) for s in states], axis=1))
        return pd.concat(out)

    results = {}
    for name, fn in (("last_items hist_video+hist_author n=50", hist),
                     ("last_items long_video (where=long_view) n=50", long_hist),
                     ("point_in_time_counts user+video x 3 labels", counts),
                     (f"HistoryState streamed, chunks of {args.chunk:,} (hist + counts)", streamed)):
        seconds, results[name] = best(fn, args.repeat)
        print(f"{name:<62} {rows:>9,} rows {seconds:7.2f} s {rows / seconds:>12,.0f} rows/s")
    h = results["last_items hist_video+hist_author n=50"]["hist_video"]
    print(f"hist_video length: mean {h.map(len).mean():.1f}, full (50) on {(h.map(len) == N).mean():.0%} of rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
