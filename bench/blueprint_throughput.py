"""Training examples/s and peak device memory of shipped blueprints, float32 against mixed_bfloat16.

Issue 8's second GPU table: PLE, STAR, PEPNet and APG (and MMoE, the first table's model) as
``composer train`` builds them: each blueprint is prepared on its own bundled data by
``composer.training.prepare`` (preprocessing, layout, compiler, loss plan) and trained by the
same ``PlanTrainer`` that ``composer train`` uses, with the train split's rows tiled to
``steps x batch`` examples. Each (blueprint, precision) runs in its own subprocess, so the peak
memory of one is not another's; batch sizes run in ascending order, and the peak after each is
the process's peak so far (under JAX on a GPU, ``memory_stats()['peak_bytes_in_use']``; under
torch on a GPU, ``torch.cuda.max_memory_allocated()``; the process's peak RSS elsewhere). Under
TensorFlow it feeds NumPy arrays to ``fit``, not ``composer train``'s tf.data pipeline.
Throughput is timed like ``bench/backends_mmoe8.py``
(``_timing.fit_once``: first step to epoch end), median of the repetitions.

    python bench/blueprint_throughput.py                                 # CPU: 1024 and 8192
    KERAS_BACKEND=jax python bench/blueprint_throughput.py --batch-sizes 1024,8192,32768 --steps 20

Prints numbers; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BLUEPRINTS = "mmoe,ple,star,pepnet,apg"
PRECISIONS = "float32,mixed_bfloat16"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blueprints", default=BLUEPRINTS, help="names in blueprints/")
    p.add_argument("--precisions", default=PRECISIONS)
    p.add_argument("--batch-sizes", default="1024,8192")
    p.add_argument("--steps", type=int, default=6, help="training steps per timed repetition")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rows", type=int, default=50_000, help="rows of each blueprint's bundled data")
    p.add_argument("--child", nargs=2, metavar=("BLUEPRINT", "PRECISION"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def peak_memory() -> tuple[str, int]:
    """(what was measured, bytes): the accelerator's peak under JAX on a GPU, else peak RSS."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return "device", int(stats["peak_bytes_in_use"])
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            return "device", int(torch.cuda.max_memory_allocated())
    return "rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args):
    import keras
    import numpy as np

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from _timing import fit_once, param_counts
    from backends_mmoe8 import device_name
    from composer.training import prepare, start_training

    name, precision = args.child
    exp = prepare(str(ROOT / "blueprints" / f"{name}.yaml"), rows=args.rows,
                  training={"precision": precision})
    trainer = start_training(exp)
    x, y, w = exp.arrays("train")
    rows = len(next(iter(y.values())))
    out = []
    def take(rows_index, *trees):
        return [keras.tree.map_structure(lambda a: a[rows_index], tree) for tree in trees]

    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        n = args.steps * batch
        xb, yb, wb = take(np.arange(n) % rows, x, y, w)  # the train rows, tiled to steps x batch
        hx, hy, hw = take(np.arange(min(2, args.steps) * batch), xb, yb, wb)
        fit_once(trainer, hx, hy, batch, sample_weight=hw)  # warm-up: traces and compiles
        timed = [fit_once(trainer, xb, yb, batch, sample_weight=wb) for _ in range(args.reps)]
        rates = [n / seconds for seconds, _ in timed]
        kind, peak = peak_memory()
        out.append({"blueprint": name, "precision": precision, "batch": batch,
                    "median": statistics.median(rates), "min": min(rates), "max": max(rates),
                    "loss": timed[-1][1], "memory": kind, "peak": peak,
                    "params": param_counts(exp.model)[0], "device": device_name()})
    print("RESULT " + json.dumps(out))


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    from tabulate import tabulate

    sys.path.insert(0, str(HERE))
    from _timing import rate

    rows, device = [], "?"
    for precision in args.precisions.split(","):  # every blueprint's float32 first
        for name in args.blueprints.split(","):
            cmd = [sys.executable, __file__, "--child", name, precision, "--batch-sizes",
                   args.batch_sizes, "--steps", str(args.steps), "--reps", str(args.reps),
                   "--rows", str(args.rows)]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                why = (proc.stderr.strip().splitlines() or ["?"])[-1][:100]
                rows.append([name, precision, "-", "failed: " + why, "", "", "", ""])
                continue
            for r in json.loads(lines[-1][7:]):
                device = r["device"]
                rows.append([name, precision, r["batch"], rate(r["median"]),
                             f"{rate(r['min'])}..{rate(r['max'])}",
                             f"{r['peak'] / 2**20:,.0f} MiB ({r['memory']})", f"{r['params']:,}",
                             f"{r['loss']:.4f}"])
            print("  " + " | ".join(map(str, rows[-1])), flush=True)  # kept if a later child is cut off
    backend = os.environ.get("KERAS_BACKEND", "default")
    print(f"Blueprints trained by PlanTrainer on their bundled data (rows tiled); Keras backend "
          f"{backend} on {device}; {args.steps} steps per repetition, median of "
          f"{args.reps}; peak memory cumulative over ascending batch sizes")
    print(tabulate(rows, headers=["blueprint", "precision", "batch", "median ex/s", "min..max",
                                  "peak memory", "trainable params", "last loss"],
                   colalign=("left", "left", "right", "right", "right", "right", "right", "right"),
                   disable_numparse=True))


if __name__ == "__main__":
    main()
