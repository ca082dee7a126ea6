"""Training throughput of STAR's star-topology FCN under three routings, side by side:

- ``all_then_own`` (Composer's default): every scenario's layer output for every sample, then
  each sample keeps its own with a one-hot contraction. S times the matmul work, fixed shapes.
- ``per_sample``: gather each sample's (in, out) kernel W_p ⊙ W, then a batched matmul.
  A (batch, in, out) tensor per layer.
- ``masked_loop`` (what hand-written multi-scenario models do): split the batch by scenario
  (``tf.dynamic_partition``), run each part through its scenario's weights, stitch the rows
  back into batch order (``tf.dynamic_stitch``). Data-dependent shapes: no XLA.

All three share one weight layout (composer.layers.scenario.StarFCN) and give the same outputs
(checked first). Repetitions alternate between contenders; the table reports medians and paired
ratios against ``all_then_own``. ``composer.blocks.scenario.AUTO_ROUTING`` is what ``routing:
auto`` picks; the last line says whether this run supports it.

    python bench/star_routing.py                      # S = 10, units [256, 128], batch 1024
    python bench/star_routing.py --scenarios 3

Prints numbers; asserts nothing about time. TensorFlow backend (the masked loop uses tf ops).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone runs it uninstalled

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tabulate import tabulate  # noqa: E402

from _timing import Run, alternate, paired_ratio, rate, warm_up  # noqa: E402
from composer.blocks.scenario import AUTO_ROUTING  # noqa: E402
from composer.layers.scenario import StarFCN  # noqa: E402


class MaskedLoopStar(StarFCN):
    """The same weights as StarFCN, routed the hand-written way: partition, loop, stitch.
    Lives in the benchmark only: data-dependent shapes are what Composer's layers avoid."""

    def call(self, inputs):
        x, scenario = inputs
        ids = tf.reshape(tf.cast(scenario, tf.int32), [-1])
        rows = tf.range(tf.shape(x)[0])
        parts = tf.dynamic_partition(x, ids, self.scenarios)
        where = tf.dynamic_partition(rows, ids, self.scenarios)
        outs = []
        for p, h in enumerate(parts):
            for i in range(len(self.units)):
                kernel, bias = self.effective_weights(i)
                h = self._activation(i)(tf.matmul(h, kernel[p]) + bias[p])
            outs.append(h)
        return tf.dynamic_stitch(where, outs)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", type=int, default=10)
    p.add_argument("--units", default="256,128", help="hidden widths (a logit layer is added)")
    p.add_argument("--input-dim", type=int, default=287, help="35 fields x 8 + 7 numerics")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10, help="training steps per timed repetition")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=2021)
    return p.parse_args(argv)


def model_for(layer_cls, routing, args, jit):
    keras.utils.set_random_seed(args.seed)
    units = [int(u) for u in args.units.split(",")] + [1]
    x = keras.Input((args.input_dim,), name="x")
    sc = keras.Input((1,), dtype="int32", name="scenario")
    logit = layer_cls(args.scenarios, units, output_activation="linear", routing=routing,
                      name="star")([x, sc])
    model = keras.Model({"x": x, "scenario": sc}, keras.layers.Activation("sigmoid")(logit))
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=jit)
    return model


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n = args.steps * args.batch_size
    x = {"x": rng.normal(size=(n, args.input_dim)).astype("float32"),
         "scenario": rng.integers(0, args.scenarios, size=(n, 1)).astype("int32")}
    y = (x["x"][:, :1] + 0.3 * x["scenario"] > 0.5).astype("float32")

    contenders = [("all_then_own", StarFCN, "all_then_own", True),
                  ("all_then_own", StarFCN, "all_then_own", False),
                  ("per_sample", StarFCN, "per_sample", True),
                  ("per_sample", StarFCN, "per_sample", False),
                  ("masked_loop", MaskedLoopStar, "all_then_own", False)]
    runs = []
    for name, cls, routing, jit in contenders:
        model = model_for(cls, routing, args, jit)
        runs.append(Run(f"{name}{' (XLA)' if jit else ''}", model, x, y, n))

    # same weights (same seed, same layout) -> same predictions, whatever the routing
    probe = {k: v[:256] for k, v in x.items()}
    reference = runs[0].model.predict(probe, verbose=0)
    worst = max(float(np.abs(r.model.predict(probe, verbose=0) - reference).max()) for r in runs[1:])
    print(f"STAR FCN, {args.scenarios} scenarios, input {args.input_dim}, units [{args.units}, 1], "
          f"batch {args.batch_size}; largest prediction difference between routings: {worst:.2e}")

    warm_up(runs, args.warmup_steps, args.batch_size)
    alternate(runs, args.reps, args.batch_size)
    base = next(r for r in runs if r.name == "all_then_own")
    rows = [[r.name, rate(r.median_rate), r.spread, f"{paired_ratio(r, base):.2f}x"] for r in runs]
    print(tabulate(rows, headers=["routing", "examples/s (median)", "range", "vs all_then_own (no XLA)"]))
    fixed = [r for r in runs if not r.name.startswith("masked")]
    best = max(fixed, key=lambda r: r.median_rate)
    loop = next(r for r in runs if r.name == "masked_loop")
    verdict = "supports" if best.name.split(" ")[0] == AUTO_ROUTING else "does NOT support"
    print(f"\nfastest fixed-shape routing: {best.name} ({paired_ratio(best, loop):.2f}x the masked loop); "
          f"this run {verdict} routing: auto = {AUTO_ROUTING}")


if __name__ == "__main__":
    main()
