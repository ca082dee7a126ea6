"""Per-step cost of each loss-fusion strategy relative to fixed weights, side by side.

The four MMoE blueprints (``mmoe``, ``mmoe_uncertainty``, ``mmoe_gradnorm``, ``mmoe_pareto``)
are the same network with a different ``loss:`` section. Each is trained through Composer's
own ``PlanTrainer`` on the same packed batches of one dataset; the timed epochs alternate
between the strategies (ABCD DCBA ...). Uncertainty weighting only changes the loss; GradNorm
takes one extra gradient per task on the last shared layer every step; PE-LTR takes one
gradient per task on the shared blocks every ``every`` steps and solves a tiny QP.

    python bench/fusion_overhead.py                       # synthetic, batch 1024
    python bench/fusion_overhead.py --data census-mtl

Prints numbers; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tabulate import tabulate  # noqa: E402

from _timing import Run, alternate, paired_ratio, rate, warm_up  # noqa: E402
from composer import training  # noqa: E402
from composer.data.registry import load  # noqa: E402

STRATEGIES = {"fixed": "mmoe", "uncertainty": "mmoe_uncertainty", "gradnorm": "mmoe_gradnorm",
              "pareto": "mmoe_pareto"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=40, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()

    from composer.training.plan_trainer import PlanTrainer
    from composer.training.loop import _optimizer, _shared_layers

    dataset = load(args.data, rows=args.rows)
    runs = []
    for strategy, name in STRATEGIES.items():
        exp = training.prepare(str(HERE.parent / "blueprints" / f"{name}.yaml"), data=args.data,
                               dataset=dataset)
        trainer = PlanTrainer(exp.model, exp.plan, shared_layers=_shared_layers(exp))
        trainer.compile(optimizer=_optimizer(exp.bp.training))
        x, y, _ = exp.arrays("train")
        n = min(len(next(iter(x.values()))), args.steps * args.batch_size)
        x = {k: v[:n] for k, v in x.items()}
        y = {k: v[:n] for k, v in y.items()}
        runs.append(Run(strategy, trainer, x, y, n))
    warm_up(runs, 5, args.batch_size)
    alternate(runs, args.reps, args.batch_size)

    fixed = runs[0]
    rows = []
    for run in runs:
        step_ms = statistics.median(run.seconds) / (run.examples / args.batch_size) * 1e3
        rows.append([run.name, rate(run.median_rate), f"{step_ms:.1f}", run.spread,
                     f"{fixed.median_rate / run.median_rate:.2f}x", f"{1 / paired_ratio(run, fixed):.2f}x"])
    print(f"MMoE on {args.data}: batch {args.batch_size}, {args.steps} steps x {args.reps} repetitions "
          "after 5 warm-up steps")
    print(tabulate(rows, headers=["strategy", "median ex/s", "ms/step", "min..max",
                                  "step time vs fixed (medians)", "vs fixed (paired)"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
