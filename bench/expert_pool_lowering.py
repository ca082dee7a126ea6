"""Training throughput of ExpertPool's two lowerings, side by side: ``einsum`` (one batched
matmul per layer over kernels of shape (K, in, out)) against ``stacks`` (K separate Dense
stacks), for K in (4, 8), with and without XLA.

The model around the pool is what an MMoE puts there: a softmax gate and the gated mixture,
then one logit. Both lowerings train on the same random inputs (labels from a planted logistic
rule) with Adam and ``model.fit``; repetitions alternate between the two, and the table reports
the medians and the ratios. The blueprint option ``implementation: auto`` picks
``composer.blocks.experts.AUTO_LOWERING`` for this run's device (CPU or accelerator); the last
line says whether this run's numbers support that choice.

    python bench/expert_pool_lowering.py             # units [256, 128]
    python bench/expert_pool_lowering.py --small     # units [64, 32]
    python bench/expert_pool_lowering.py --jit off   # only jit_compile=False

Prints numbers; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone runs it uninstalled

import keras  # noqa: E402
import numpy as np  # noqa: E402
from tabulate import tabulate  # noqa: E402

from _timing import Run, alternate, paired_ratio, param_counts, rate, warm_up  # noqa: E402
from composer.layers.experts import ExpertPool, Gate, Mixture  # noqa: E402

LOWERINGS = ("einsum", "stacks")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experts", default="4,8", help="values of K (default: %(default)s)")
    p.add_argument("--small", action="store_true", help="units [64, 32] instead of [256, 128]")
    p.add_argument("--units", help="expert widths, e.g. 512,256 (overrides --small)")
    p.add_argument("--input-dim", type=int, default=287,
                   help="width of the pool's input (default %(default)s: 35 fields x 8 + 7)")
    p.add_argument("--jit", choices=("both", "off", "on"), default="both",
                   help="jit_compile settings to measure (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10, help="training steps per timed repetition")
    p.add_argument("--reps", type=int, default=11, help="timed repetitions of each lowering")
    p.add_argument("--warmup-steps", type=int, default=5,
                   help="untimed steps first (tracing included)")
    p.add_argument("--tie", type=float, default=0.05,
                   help="ratios within 1 +- this are a tie in the conclusion (default %(default)s)")
    p.add_argument("--seed", type=int, default=2018)
    return p.parse_args(argv)


def pool_model(implementation: str, experts: int, units: list[int], input_dim: int, seed: int):
    keras.utils.set_random_seed(seed)
    x = keras.Input(shape=(input_dim,), name="x")
    pool = ExpertPool(experts, units, implementation=implementation, name="experts")(x)
    mixed = Mixture(name="mix")([Gate(experts, name="gate")(x), pool])
    out = keras.layers.Dense(1, activation="sigmoid", name="y")(mixed)
    return keras.Model(x, out, name=f"pool_{implementation}")


def synthetic(n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    logit = np.tanh(x[:, : d // 2]) @ rng.normal(0, 2 / np.sqrt(d), d // 2) + x[:, -1] * x[:, -2]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)[:, None]
    return x, y


def conclusion(medians: dict[str, float], paired: dict[str, float], tie: float) -> str:
    """One line from the measured einsum/stacks ratios, keyed by setting. A setting counts for a
    lowering only when the ratio of medians and the paired ratio agree on it."""
    def side(r):
        return 1 if r > 1 + tie else -1 if r < 1 - tie else 0

    verdict = {s: side(medians[s]) if side(medians[s]) == side(paired[s]) else None
               for s in medians}
    einsum = [s for s, v in verdict.items() if v == 1]
    stacks = [s for s, v in verdict.items() if v == -1]
    tied = [s for s, v in verdict.items() if v == 0]
    unclear = [s for s, v in verdict.items() if v is None]
    lo, hi = min(medians.values()), max(medians.values())
    parts = [f"einsum/stacks {lo:.2f}x..{hi:.2f}x on medians"]
    for label, group in (("einsum faster", einsum), ("stacks faster", stacks),
                         (f"tied within {tie:.0%}", tied),
                         ("unclear (medians and paired disagree)", unclear)):
        if group:
            parts.append(f"{label}: {', '.join(group)}")
    from composer.blocks.experts import auto_lowering

    auto = auto_lowering()  # what `auto` picks on this run's device

    faster = {"einsum": einsum, "stacks": stacks}
    other = "einsum" if auto == "stacks" else "stacks"
    if faster[auto] and faster[other]:
        verdict_text = f"mixed: this run supports 'auto' -> {auto} only where {auto} is faster"
    elif faster[other]:
        verdict_text = f"this run does NOT support 'auto' -> {auto}"
    elif faster[auto]:
        verdict_text = f"this run supports 'auto' -> {auto}"
    else:
        verdict_text = "this run does not separate the two lowerings"
    return f"conclusion: {verdict_text} ({'; '.join(parts)})."


def main(argv=None) -> None:
    args = parse_args(argv)
    units = ([int(u) for u in args.units.split(",")] if args.units
             else [64, 32] if args.small else [256, 128])
    ks = [int(k) for k in args.experts.split(",")]
    jits = {"both": (False, True), "off": (False,), "on": (True,)}[args.jit]
    n = args.steps * args.batch_size
    x, y = synthetic(n, args.input_dim, args.seed)

    rows, medians, paired = [], {}, {}
    for k in ks:
        for jit in jits:
            runs = []
            for impl in LOWERINGS:
                model = pool_model(impl, k, units, args.input_dim, args.seed)
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                              jit_compile=jit)
                runs.append(Run(impl, model, x, y, n))
            counts = {param_counts(run.model) for run in runs}
            if len(counts) != 1:
                raise SystemExit(f"K={k}: the lowerings have different parameter counts {counts}")
            warm_up(runs, args.warmup_steps, args.batch_size)
            alternate(runs, args.reps, args.batch_size)
            einsum, stacks = runs
            setting = f"K={k} jit={'on' if jit else 'off'}"
            medians[setting] = einsum.median_rate / stacks.median_rate
            paired[setting] = paired_ratio(einsum, stacks)
            rows.append([k, "on" if jit else "off", f"{counts.pop()[0]:,}",
                         rate(einsum.median_rate), einsum.spread,
                         rate(stacks.median_rate), stacks.spread,
                         f"{medians[setting]:.2f}x", f"{paired[setting]:.2f}x"])

    print(f"ExpertPool training step, units {units}, input {args.input_dim}, "
          f"batch {args.batch_size}, {args.steps} steps x {args.reps} repetitions after "
          f"{args.warmup_steps} warm-up steps, adam, "
          f"keras {keras.__version__} / {keras.backend.backend()}")
    print(tabulate(rows, headers=["K", "jit", "params", "einsum median ex/s", "einsum min..max",
                                  "stacks median ex/s", "stacks min..max", "einsum/stacks median",
                                  "einsum/stacks paired"],
                   colalign=("right", "left", *["right"] * 7), disable_numparse=True))
    print(conclusion(medians, paired, args.tie))


if __name__ == "__main__":
    main()
