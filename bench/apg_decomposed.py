"""APG's decomposed product against materialised per-sample weights, side by side.

One APG layer (Yan et al., NeurIPS 2022) of N -> M with rank K, conditioned on a 16-wide z,
then a logit. Both contenders hold the same parameters (U: N x K, V: K x M, bias, and the
generator z -> K x K); they differ only in how the forward pass uses them:

- **decomposed** (``composer.layers.dynamic.APG``): ``((x U) S_i) V + b``. Per sample the
  layer holds the K x K generated core S_i.
- **materialised**: builds ``W_i = U S_i V`` (N x M per sample) and applies ``x W_i + b``,
  as the paper's formula reads literally.

Speed: training steps (``fit``, Adam, binary cross-entropy) in examples per second, the two
alternating (ABBA...) in one process. Memory: each contender trains a few steps in a fresh
child process; reported is the peak resident memory during those steps above the memory
after building the model and its data (so TensorFlow's own footprint cancels out), next to
the size of the per-sample weight tensor each path holds per batch. The peak includes
tracing the train function, the same for both.

    python bench/apg_decomposed.py                    # N = M = 256, K = 32, batch 1024
    python bench/apg_decomposed.py --n 128 --k 16

Prints numbers; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from tabulate import tabulate  # noqa: E402

from _timing import Run, alternate, fit_once, paired_ratio, param_counts, rate, warm_up  # noqa: E402

COND = 16  # width of the condition z


def build(kind: str, n: int, k: int, seed: int = 7):
    import keras
    from keras import ops

    from composer.layers.dynamic import APG

    class MaterialisedAPG(APG):
        """The same weights, applied through the explicit per-sample (N, M) matrix."""

        def call(self, inputs, training=None):
            h, z = inputs
            for i, gen in enumerate(self._generators):
                s = ops.reshape(gen(z, training=training), (-1, self.rank, self.rank))
                u, v = self.shared_factors(i)
                w = ops.einsum("nk,bkj,jm->bnm", u, s, v)
                h = self._act(ops.einsum("bn,bnm->bm", h, w) + self.biases[i])
            return h

    keras.utils.set_random_seed(seed)
    layer_cls = APG if kind == "decomposed" else MaterialisedAPG
    x, z = keras.Input((n,), name="x"), keras.Input((COND,), name="z")
    h = layer_cls([n], rank=k, name="apg")([x, z])
    model = keras.Model({"x": x, "z": z}, keras.layers.Dense(1, activation="sigmoid", name="logit")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    return model


def data(rows: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = {"x": rng.normal(size=(rows, n)).astype("float32"),
         "z": rng.normal(size=(rows, COND)).astype("float32")}
    y = (rng.random(rows) < 0.3).astype("float32")
    return x, y


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def memory_child(kind: str, n: int, k: int, batch: int, steps: int) -> dict:
    """Runs in a fresh process: the peak RSS of ``steps`` training steps above the RSS of the
    built model (one 8-row predict, so no batch-sized tensor has been allocated yet)."""
    model = build(kind, n, k)
    x, y = data(batch * steps, n)
    model.predict({key: v[:8] for key, v in x.items()}, verbose=0)
    before = _rss_bytes()
    with open("/proc/self/clear_refs", "w") as f:  # Linux: "5" resets the peak (VmHWM) to now
        f.write("5")
    fit_once(model, x, y, batch)
    return {"before": before, "peak": _peak_rss_bytes()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=256, help="input and output width N = M")
    p.add_argument("--k", type=int, default=32, help="rank K")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--memory-child", choices=["decomposed", "materialised"], help=argparse.SUPPRESS)
    args = p.parse_args()
    n, k, b = args.n, args.k, args.batch_size

    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, n, k, b, 4)))
        return 0

    x, y = data(args.steps * b, n)
    runs = [Run(kind, build(kind, n, k), x, y, args.steps * b) for kind in ("decomposed", "materialised")]
    probe = {key: v[:64] for key, v in x.items()}
    a, m = (r.model.predict(probe, verbose=0) for r in runs)
    gap = float(np.max(np.abs(a - m)))
    warm_up(runs, 2, b)
    alternate(runs, args.reps, b)

    memory = {}
    for run in runs:
        proc = subprocess.run([sys.executable, __file__, "--memory-child", run.name, "--n", str(n),
                               "--k", str(k), "--batch-size", str(b)],
                              capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        memory[run.name] = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None

    mib = 1 / 2 ** 20
    per_sample = {"decomposed": k * k, "materialised": n * n}
    rows = []
    for run in runs:
        trainable, _ = param_counts(run.model)
        mem = memory[run.name]
        rows.append([run.name, rate(run.median_rate), run.spread, f"{trainable:,}",
                     f"{trainable * 4 * mib:.2f}", f"{per_sample[run.name]:,}",
                     f"{per_sample[run.name] * b * 4 * mib:.1f}",
                     f"{(mem['peak'] - mem['before']) * mib:.0f}" if mem else "failed"])
    dec, mat = runs
    print(f"APG layer N = M = {n}, K = {k}, condition {COND}, batch {b}: training steps (fit, Adam), "
          f"{args.steps} steps x {args.reps} repetitions after 2 warm-up steps, on CPU")
    print(f"outputs agree: max |decomposed - materialised| = {gap:.1e} on 64 rows")
    print(tabulate(rows, headers=["path", "median ex/s", "min..max", "params", "param MiB",
                                  "generated floats / sample", "generated MiB / batch",
                                  "peak RSS over built, MiB"]))
    speed = paired_ratio(dec, mat)
    print(f"decomposed / materialised training speed: {speed:.1f}x (paired), "
          f"{dec.median_rate / mat.median_rate:.1f}x (medians)")
    if memory["decomposed"] and memory["materialised"]:
        d = memory["decomposed"]["peak"] - memory["decomposed"]["before"]
        m_ = memory["materialised"]["peak"] - memory["materialised"]["before"]
        print(f"materialised / decomposed training memory above the built model: {m_ / max(d, 1):.1f}x "
              f"({m_ * mib:.0f} vs {d * mib:.0f} MiB); per-sample weights {n * n // (k * k)}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
