"""Training on a file several times larger than a memory bound: is peak memory under the bound?

1. Writes a click log (CSV by default, or Parquet) under ``/tmp/composer-streaming/`` until
   the file is ``--times`` times ``--bound-gb``: 8 categorical columns (5 to 100,000 values),
   ``--counts`` integer count columns and ``--floats`` float columns, a ``day`` (0-29) and two
   labels drawn from a planted logistic rule (a per-value effect of three categorical columns,
   two floats and one count). A data YAML beside it splits by day: 0-27 train, 28 valid, 29 test.
2. Estimates the in-memory path's peak resident memory on the whole file: in a child process,
   ``training.prepare`` without streaming on the first ``--sample-rows`` rows (and on a tenth of
   them), then the packed arrays and the tf.data pipeline that ``training.fit`` builds before its
   first step; the two peaks give a cost per row, scaled linearly to the file's rows.
3. In a child process, runs what ``composer train --stream`` runs: ``training.prepare`` (the one
   pass over the file that checks, splits and caches it, then the preprocessing fit over the train
   rows), one epoch of ``training.fit`` (with the exact validation AUC) and the test report.
   A child's peak resident memory is its ``ru_maxrss`` as ``os.wait4`` reports it when it has
   ended: every page it ever touched counts, TensorFlow (or JAX) included.

Prints the file size, the bound, the estimate, the child's peak RSS, training rows/s and input
wait (from the epoch's progress-line values), the test AUC and where the time went. Exits 1 if
the peak is over the bound. Asserts nothing about time.

    python bench/streaming_memory.py                          # CSV, bound 1.5 GB, file 3x (4.5 GB)
    KERAS_BACKEND=jax python bench/streaming_memory.py --bound-gb 1.0
    python bench/streaming_memory.py --format parquet --keep  # keep the file for another run

The file is written once per size and format and reused when ``--keep`` left it there.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # so a clone runs it without installing the package

GB = 1e9
CARDINALITY = (100_000, 20_000, 5_000, 1_000, 500, 100, 20, 5)
EFFECT_COLUMNS = (3, 5, 7)  # categorical columns with a planted per-value effect


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bound-gb", type=float, default=1.5, help="memory bound, GB (default %(default)s)")
    p.add_argument("--times", type=float, default=3.0, help="file size / bound (default %(default)s)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--counts", type=int, default=64, help="integer count columns (default %(default)s)")
    p.add_argument("--floats", type=int, default=4, help="float columns (default %(default)s)")
    p.add_argument("--blueprint", default=str(ROOT / "blueprints" / "shared_bottom.yaml"))
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--chunk-rows", type=int, default=65536)
    p.add_argument("--shuffle-buffer", type=int, default=262_144)
    p.add_argument("--sample-rows", type=int, default=300_000, help="rows loaded in memory for the estimate")
    p.add_argument("--dir", default="/tmp/composer-streaming", help="where the file is written")
    p.add_argument("--keep", action="store_true", help="keep the generated file")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args(argv)


# -- the file ------------------------------------------------------------------------------------
def block(rng, rows: int, counts: int, floats: int):
    """One block of the click log as a pyarrow Table."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    cols, logit = {}, np.full(rows, -1.0)
    like_logit = np.full(rows, -2.0)
    for i, card in enumerate(CARDINALITY):
        ids = rng.integers(0, card, rows)
        if i in EFFECT_COLUMNS:  # a fixed effect per value: (id * golden ratio) mod 1, centred
            effect = (ids * 0.6180339887) % 1.0 - 0.5
            logit += 2.0 * effect
            like_logit -= 1.5 * effect
        cols[f"cat{i}"] = pc.binary_join_element_wise(pa.scalar(f"v{i}_"), pc.cast(pa.array(ids), pa.string()), "")
    for i in range(counts):
        values = rng.integers(0, 10 ** (4 + i % 4), rows, dtype=np.int32)  # 0..9999 up to 0..9999999
        if i == 0:
            logit += 0.0004 * (values - 5000)
        cols[f"count{i}"] = pa.array(values)
    for i in range(floats):
        values = rng.normal(size=rows).round(2)
        if i < 2:
            logit += (0.8 if i == 0 else -0.6) * values
            like_logit += 0.7 * values
        cols[f"float{i}"] = pa.array(values)
    cols["day"] = pa.array(rng.integers(0, 30, rows, dtype=np.int8))
    cols["click"] = pa.array((rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8))
    cols["like"] = pa.array((rng.random(rows) < 1 / (1 + np.exp(-like_logit))).astype(np.int8))
    return pa.table(cols)


def write_file(path: Path, size: float, fmt: str, counts: int, floats: int, seed: int) -> int:
    """Write blocks until the file reaches ``size`` bytes; returns the rows written."""
    import numpy as np
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(path.suffix + ".part")
    rows, writer = 0, None
    t0 = time.perf_counter()
    try:
        while not tmp.exists() or tmp.stat().st_size < size:
            table = block(rng, 250_000, counts, floats)
            if writer is None:
                writer = (pacsv.CSVWriter(str(tmp), table.schema) if fmt == "csv"
                          else pq.ParquetWriter(str(tmp), table.schema))
            writer.write_table(table)
            rows += table.num_rows
            print(f"\r  writing {path.name}: {tmp.stat().st_size / GB:.2f} / {size / GB:.2f} GB", end="", flush=True)
    finally:
        if writer is not None:
            writer.close()
    tmp.rename(path)
    print(f"\r  wrote {path} ({path.stat().st_size / GB:.2f} GB, {rows:,} rows) in "
          f"{time.perf_counter() - t0:.0f}s")
    return rows


def data_yaml(path: Path, counts: int, floats: int) -> Path:
    spec = path.with_suffix(".yaml")
    spec.write_text(textwrap.dedent(f"""\
        source: {path.name}
        categorical: [{", ".join(f"cat{i}" for i in range(len(CARDINALITY)))}]
        numeric: [{", ".join([f"count{i}" for i in range(counts)] + [f"float{i}" for i in range(floats)])}]
        labels: {{click: click, like: like}}
        split: {{time: day, valid_from: 28, test_from: 29}}
        """))
    return spec


IN_MEMORY_CHILD = """
import json, sys
import keras
from composer import training
args = json.loads(sys.argv[1])
exp = training.prepare(args["blueprint"], data=args["data"], rows=args["rows"],
                       training=dict(batch_size=args["batch_size"]))
x, y, w = exp.arrays("train")          # what training.fit builds before its first step
valid = exp.arrays("valid")
if keras.backend.backend() == "tensorflow":
    from composer.data.tf_pipeline import make_dataset
    next(iter(make_dataset(x, y, w, args["batch_size"], True, 0)))
print("RESULT " + json.dumps({"rows": len(exp.dataset)}), flush=True)
"""


def run_child(code: str, args: dict) -> tuple[dict | None, int, str]:
    """Run ``code`` in a child process: (its RESULT line, its own peak RSS in bytes, its output).
    ``os.wait4`` gives the resource usage of that child alone."""
    import tempfile

    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], cwd=str(ROOT),
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    result = next((json.loads(line[7:]) for line in output.splitlines() if line.startswith("RESULT ")), None)
    if proc.returncode != 0 or result is None:
        print(output[-4000:])
        raise SystemExit(f"a child process failed (exit {proc.returncode})")
    return result, usage.ru_maxrss * 1024, output  # ru_maxrss is in kB on Linux


def in_memory_estimate(args, spec: Path, total_rows: int) -> tuple[float, float, int]:
    """The in-memory path's peak RSS for the whole file, by a linear fit of its peak at two
    row counts (``--sample-rows`` and a tenth of it): (estimate, peak on the sample, sample rows)."""
    base = {"blueprint": args.blueprint, "data": str(spec), "batch_size": args.batch_size}
    small, large = max(args.sample_rows // 10, 1000), args.sample_rows
    got_small, peak_small, _ = run_child(IN_MEMORY_CHILD, {**base, "rows": small})
    got_large, peak_large, _ = run_child(IN_MEMORY_CHILD, {**base, "rows": large})
    per_row = (peak_large - peak_small) / (got_large["rows"] - got_small["rows"])
    return peak_small + per_row * (total_rows - got_small["rows"]), peak_large, got_large["rows"]


# -- the child: what `composer train --stream` runs ---------------------------------------------
CHILD = """
import json, sys, time
t0 = time.perf_counter()
from composer import training
args = json.loads(sys.argv[1])
exp = training.prepare(args["blueprint"], data=args["data"], training=dict(
    stream=True, epochs=1, batch_size=args["batch_size"], chunk_rows=args["chunk_rows"],
    shuffle_buffer=args["shuffle_buffer"]))
t1 = time.perf_counter()
history = training.fit(exp, verbose=2)
t2 = time.perf_counter()
rep = training.report(exp, "test")
t3 = time.perf_counter()
import keras
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(), "counts": exp.dataset.counts(),
    "rows_per_s": history.history["rows_per_s"][-1], "input_wait": history.history["input_wait"][-1],
    "rows_per_epoch": exp.timings["stream_rows_per_epoch"], "auc": rep.macro().get("auc"),
    "prepare_s": t1 - t0, "fit_s": t2 - t1, "report_s": t3 - t2}), flush=True)
exp.dataset.close()
"""


def main(argv=None) -> int:
    args = parse_args(argv)
    bound = args.bound_gb * GB
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "csv" if args.format == "csv" else "parquet"
    path = folder / f"clicks-{args.times * args.bound_gb:g}gb-c{args.counts}-f{args.floats}.{suffix}"
    rows_file = path.with_suffix(".rows")
    if path.exists() and rows_file.exists():
        rows = int(rows_file.read_text())
        print(f"  reusing {path} ({path.stat().st_size / GB:.2f} GB, {rows:,} rows)")
    else:
        rows = write_file(path, args.times * bound, args.format, args.counts, args.floats, args.seed)
        rows_file.write_text(str(rows))
    spec = data_yaml(path, args.counts, args.floats)
    estimate, sample_peak, sampled = in_memory_estimate(args, spec, rows)
    child_args = {k: getattr(args, k) for k in ("blueprint", "batch_size", "chunk_rows", "shuffle_buffer")}
    child_args["data"] = str(spec)
    t0 = time.perf_counter()
    result, peak, _ = run_child(CHILD, child_args)
    wall = time.perf_counter() - t0
    size = path.stat().st_size
    c = result["counts"]
    print(f"""
file            {path} ({args.format}), {size / GB:.2f} GB, {rows:,} rows
                (train {c['train']:,} · valid {c['valid']:,} · test {c['test']:,})
memory bound    {bound / GB:.2f} GB  (file = {size / bound:.1f} x bound)
in-memory path  about {estimate / GB:.2f} GB peak resident ({estimate / bound:.1f} x bound): scaled
                from its peak on the first {sampled:,} rows, {sample_peak / GB:.2f} GB
streaming peak  {peak / GB:.2f} GB resident ({peak / bound:.0%} of the bound), backend {result['backend']}
training        {result['rows_per_s']:,.0f} rows/s, input wait {result['input_wait']:.1%} of the epoch;
                rows per epoch {result['rows_per_epoch']} (train split {c['train']:,})
test macro AUC  {result['auc']:.4f}
time            {wall:.0f}s in the child: prepare (read, check, cache, fit) {result['prepare_s']:.0f}s, \
one epoch with validation {result['fit_s']:.0f}s, test report {result['report_s']:.0f}s""")
    if not args.keep:
        path.unlink()
        rows_file.unlink()
        spec.unlink()
    if peak > bound:
        print(f"OVER THE BOUND: peak {peak / GB:.2f} GB > {bound / GB:.2f} GB")
        return 1
    print("peak resident memory is under the bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
