"""Paired comparison of models trained over the same seeds: is B ahead of A beyond seed noise?

``composer compare A B ... --seeds N`` trains every blueprint N times on one split; run i of
every model uses seed i (``--seed S``: S + i): the same initialisation stream and shuffling
order. This module reports, for every model against a baseline (the first by default), the mean
of the differences run i - baseline run i, how many runs are ahead, and, from 3 pairs on, the
two-sided paired t-test p-value (``scipy.stats.ttest_rel``; scipy rather than our own t
distribution). The test rows are the same for every run, so p covers run-to-run (seed)
variation on this test split, not the sampling of its rows; a small p says the mean difference
is unlikely to be seed noise, not that it is large, and one table holds many p-values,
uncorrected.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .metrics import METRICS, Report, as_runs, columns_of, metric_of


MIN_PAIRS_FOR_P = 3  # a t-test on 2 pairs has 1 degree of freedom: its p swings wildly


def paired_differences(base: Sequence[float | None], other: Sequence[float | None]) -> dict | None:
    """Pairs i where both runs have a value: mean difference other - base, pairs ahead, pairs,
    and the paired t-test p (None under ``MIN_PAIRS_FOR_P`` pairs or when every difference is the
    same)."""
    if len(base) != len(other):
        raise ValueError(f"paired runs: {len(base)} baseline runs against {len(other)}")
    pairs = [(a, b) for a, b in zip(base, other) if a is not None and b is not None]
    if not pairs:
        return None
    a, b = (np.array(x, dtype=float) for x in zip(*pairs))
    d = b - a
    p = None
    if len(d) >= MIN_PAIRS_FOR_P and np.ptp(d) > 1e-12:  # equal differences (to rounding): no spread, no test
        from scipy.stats import ttest_rel

        p = float(ttest_rel(b, a).pvalue)
    return {"mean": float(d.mean()), "ahead": int((d > 0).sum()), "pairs": len(d), "p": p}


def _cell(stats: dict | None, digits: int) -> str:
    if stats is None:
        return "n/a"
    p = "p n/a" if stats["p"] is None else "p < 0.001" if stats["p"] < 0.001 else f"p {stats['p']:.3f}"
    mean = stats["mean"] if round(stats["mean"], digits) else 0.0  # no "-0.0000"
    return f"{mean:+.{digits}f} ({stats['ahead']}/{stats['pairs']}, {p})"


def paired_table(reports: Mapping[str, Report | Sequence[Report]], baseline: str | None = None,
                 metric: str = "auc", by: str = "task", digits: int = 4) -> str:
    """A row per model other than ``baseline`` (default: the first), a column per task and the
    macro average (``by="task"``) or per (scenario, task) (``by="scenario"``); each cell is
    ``+mean difference (pairs ahead/pairs, p paired t-test)`` against the baseline's runs taken
    in the same order (run i of each model)."""
    from tabulate import tabulate

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if by not in ("task", "scenario"):
        raise ValueError(f"paired_table(by={by!r}): valid: 'task', 'scenario'")
    runs = as_runs(reports)
    baseline = baseline if baseline is not None else next(iter(runs))
    if baseline not in runs:
        raise ValueError(f"baseline {baseline!r} is not one of the models: {', '.join(runs)}")

    keys: list = columns_of(runs, by=by)
    if by == "task":
        keys.append(None)  # the macro average
    label = (lambda k: f"{k[0]} {k[1]} {metric.upper()}") if by == "scenario" else (
        lambda k: f"{'macro' if k is None else k} {metric.upper()}")
    base = runs[baseline]
    body = []
    for name, rs in runs.items():
        if name == baseline:
            continue
        same_tasks = {frozenset(r.tasks) for r in base + rs} == {frozenset(base[0].tasks)}
        body.append([name] + [
            "n/a" if k is None and not same_tasks  # a macro over other tasks is no comparison
            else _cell(paired_differences(*([metric_of(r, k, metric) for r in x] for x in (base, rs))), digits)
            for k in keys])
    return tabulate(body, headers=["model"] + [label(k) for k in keys], disable_numparse=True,
                    colalign=["left"] + ["right"] * len(keys))
