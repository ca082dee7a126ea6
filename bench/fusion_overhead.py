"""Per-step cost of each loss-fusion strategy relative to fixed weights, side by side.

Every contender is blueprints/mmoe.yaml with a different ``loss:`` section (``--tasks 3`` adds a
third task, ``both`` = click & like, on the synthetic data). Each is trained through Composer's
own ``PlanTrainer`` on the same packed batches of one dataset; the timed epochs alternate
between the strategies (ABCD DCBA ...). Uncertainty weighting only changes the loss; GradNorm
takes one extra gradient per task on the last shared layer every step; PE-LTR takes one
gradient per task on the shared blocks every ``every`` steps and solves a tiny QP; PCGrad,
CAGrad, Nash-MTL, Aligned-MTL and MetaBalance take one gradient per task on the shared blocks
every step (T backward passes after one forward) and a T x T rule; MGDA-UB takes them on the
shared representation only.

    python bench/fusion_overhead.py                       # synthetic, batch 1024, 2 and 3 tasks
    python bench/fusion_overhead.py --data census-mtl --tasks 2
    python bench/fusion_overhead.py --only fixed pcgrad   # a subset

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

STRATEGIES = {"fixed": "{fusion: fixed}", "uncertainty": "{fusion: uncertainty}",
              "gradnorm": "{fusion: gradnorm}", "pareto": "{fusion: pareto}", "pcgrad": "{fusion: pcgrad}",
              "cagrad": "{fusion: cagrad}", "mgda": "{fusion: mgda}", "nash_mtl": "{fusion: nash_mtl}",
              "aligned_mtl": "{fusion: aligned_mtl}", "metabalance": "{fusion: metabalance, main: click}"}
TASKS = {2: "from_data", 3: "[{name: click}, {name: like}, {name: both, label: 'click & like'}]"}


def blueprint(strategy: str, tasks: int, folder: Path) -> str:
    """blueprints/mmoe.yaml with ``strategy``'s loss section and ``tasks`` tasks, written to ``folder``."""
    text = (HERE.parent / "blueprints" / "mmoe.yaml").read_text()
    assert "loss: {fusion: fixed}" in text and "tasks: from_data" in text
    text = text.replace("loss: {fusion: fixed}", f"loss: {STRATEGIES[strategy]}")
    if tasks != 2:
        text = text.replace("tasks: from_data", f"tasks: {TASKS[tasks]}")
    path = folder / f"mmoe_{strategy}_{tasks}.yaml"
    path.write_text(text)
    return str(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=40, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--tasks", type=int, nargs="+", default=[2, 3], choices=sorted(TASKS))
    p.add_argument("--only", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES),
                   help="strategies to time (fixed is always timed: the baseline)")
    args = p.parse_args()
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="fusion_overhead_"))
    for tasks in args.tasks:
        time_strategies(args, tasks, folder)
    return 0


def time_strategies(args, tasks: int, folder: Path) -> None:
    from composer.training.plan_trainer import PlanTrainer
    from composer.training.loop import _optimizer, _shared_layers

    dataset = load(args.data, rows=args.rows)
    runs = []
    names = ["fixed"] + [s for s in args.only if s != "fixed"]
    for strategy in names:
        exp = training.prepare(blueprint(strategy, tasks, folder), data=args.data, dataset=dataset)
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
    print(f"MMoE on {args.data}, {tasks} tasks: batch {args.batch_size}, {args.steps} steps x {args.reps} "
          "repetitions after 5 warm-up steps")
    print(tabulate(rows, headers=["strategy", "median ex/s", "ms/step", "min..max",
                                  "step time vs fixed (medians)", "vs fixed (paired)"]), flush=True)


if __name__ == "__main__":
    sys.exit(main())
