"""Training throughput of every multi-scenario blueprint against the shared model, side by side.

Issue 20: what scenario routing costs. Every blueprint with a ``scenarios:`` section in
blueprints/ (discovered as bench/leaderboard.py does, so new ones join by themselves) and the
shared model (``shared_bottom``, which reads the scenario column as a feature) are prepared on
the same data by ``composer.training.prepare`` and trained by the ``PlanTrainer`` that
``composer train`` uses, all in one process, with the train split's rows tiled to
``steps x batch`` examples. After one untimed warm-up each, the timed repetitions alternate
between all contenders (the order flipping every repetition, bench/_timing.py), so the ratio
to the shared model is taken within each repetition and its median reported: a slow spell of
the machine hits both sides of a pair.

    python bench/scenario_throughput.py                        # kuairand-pure, batch 1024
    python bench/scenario_throughput.py --only star,m2m --batch-size 4096
    KERAS_BACKEND=jax python bench/scenario_throughput.py --batch-size 8192 --steps 30

Prints numbers; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _timing import Timed, alternate, fit_once, param_counts, paired_ratio, rate, warm_up  # noqa: E402


class Trained(Timed):
    """One blueprint as ``composer train`` builds it: its PlanTrainer and its tiled train rows."""

    def __init__(self, name, trainer, x, y, w, examples):
        super().__init__(name, examples)
        self.trainer, self.x, self.y, self.w = trainer, x, y, w

    def _head(self, rows):
        import keras

        return [keras.tree.map_structure(lambda a: a[:rows], t) for t in (self.x, self.y, self.w)]

    def warm_up(self, steps: int, batch_size: int) -> None:
        x, y, w = self._head(steps * batch_size)
        fit_once(self.trainer, x, y, batch_size, sample_weight=w)

    def epoch(self, batch_size: int) -> tuple[float, float]:
        return fit_once(self.trainer, self.x, self.y, batch_size, sample_weight=self.w)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="kuairand-pure:rows=50000", help="dataset (options allowed)")
    p.add_argument("--baseline", default="shared_bottom", help="the shared model every ratio divides by")
    p.add_argument("--blueprints", default=str(ROOT / "blueprints"), help="folder to discover them in")
    p.add_argument("--only", help="comma-separated names: only these multi-scenario blueprints")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20, help="training steps per timed repetition")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup-steps", type=int, default=3)
    return p.parse_args(argv)


def contender(name, file, data, dataset, steps, batch):
    import keras
    import numpy as np

    from composer.training import prepare, start_training

    exp = prepare(file, data=data, dataset=dataset)
    trainer = start_training(exp)
    x, y, w = exp.arrays("train")
    rows = len(next(iter(y.values())))
    index = np.arange(steps * batch) % rows  # the train rows, tiled to steps x batch
    x, y, w = (keras.tree.map_structure(lambda a: a[index], t) for t in (x, y, w))
    return Trained(name, trainer, x, y, w, steps * batch), param_counts(exp.model)[0], exp.dataset


def main(argv=None):
    args = parse_args(argv)
    from leaderboard import _quiet, discover

    _quiet()
    from tabulate import tabulate

    from backends_mmoe8 import device_name

    found = discover(Path(args.blueprints), args.data)
    if args.baseline not in found["shared"]:
        sys.exit(f"scenario_throughput: '{args.baseline}' is not a blueprint without scenario routing bound to "
                 f"{args.data}")
    models = found["scenarios"]
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        models = {n: f for n, f in models.items() if n in wanted}
    runs, params, failed, dataset = [], {}, {}, None
    for name, file in {args.baseline: found["shared"][args.baseline], **models}.items():
        try:
            run, params[name], dataset = contender(name, file, args.data, dataset, args.steps, args.batch_size)
        except Exception as exc:  # a blueprint being written may not build yet: say so, go on
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            print(f"{name}: FAILED {failed[name]}", flush=True)
            continue
        runs.append(run)
        print(f"prepared {name} ({params[name]:,} trainable params)", flush=True)
    if not runs or runs[0].name != args.baseline:
        sys.exit(f"scenario_throughput: the baseline failed: {failed.get(args.baseline)}")
    warm_up(runs, args.warmup_steps, args.batch_size)
    alternate(runs, args.reps, args.batch_size)

    base = runs[0]
    body = [[r.name + (" (shared)" if r is base else ""), f"{params[r.name]:,}", rate(r.median_rate), r.spread,
             "1.00x" if r is base else f"{paired_ratio(r, base):.2f}x", f"{r.losses[-1]:.4f}"] for r in runs]
    body += [[name, "", "failed", why, "", ""] for name, why in failed.items()]
    import keras

    print(f"\nTraining examples/s on {args.data} (train rows tiled), batch {args.batch_size}, {args.steps} steps "
          f"per repetition, median of {args.reps}; Keras {keras.backend.backend()} on {device_name()}")
    print(tabulate(body, headers=["blueprint", "trainable params", "median ex/s", "min..max",
                                  f"paired ratio to {args.baseline}", "last loss"],
                   colalign=("left", "right", "right", "right", "right", "right"), disable_numparse=True))
    print(f"paired ratio: median over repetitions of (blueprint ex/s) / ({args.baseline} ex/s) in the same "
          f"repetition; below 1: slower than the shared model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
