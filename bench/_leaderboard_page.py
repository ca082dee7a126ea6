"""The leaderboard pages (bench/leaderboard.py): statistics over seeds, the paired intervals,
the verdict sentences and the Markdown. Pure Python over cached run entries: no training here,
so the tests drive it with fixed numbers.

An entry is one (blueprint, seed) run as bench/leaderboard.py caches it: ``name``, ``seed``,
``params``, ``train_s``, ``wall_s``, ``counts`` (rows per split), ``scenario_train_rows`` and
``report`` (``composer.metrics.Report.to_dict()``).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from composer.metrics import Report, metric_of
from composer.paired import MIN_PAIRS_FOR_P, paired_differences

LEVEL = 0.95  # the paired t-interval's coverage; "beyond seed noise" = the interval excludes 0


# ------------------------------------------------------------------------------- statistics

def paired(base: Sequence[float | None], other: Sequence[float | None]) -> dict | None:
    """``composer.paired.paired_differences`` (mean, ahead, pairs, p) plus the two-sided
    ``LEVEL`` t-interval of the mean difference (``low``/``high``; None under
    ``MIN_PAIRS_FOR_P`` pairs or without spread, where paired_differences gives no p either)."""
    stats = paired_differences(base, other)
    if stats is None:
        return None
    d = [b - a for a, b in zip(base, other) if a is not None and b is not None]
    stats["low"] = stats["high"] = None
    if stats["p"] is not None:
        from scipy.stats import t

        n = len(d)
        sd = math.sqrt(sum((x - stats["mean"]) ** 2 for x in d) / (n - 1))
        half = float(t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n)
        stats["low"], stats["high"] = stats["mean"] - half, stats["mean"] + half
    return stats


def call(stats: dict | None) -> str:
    """'ahead' / 'behind' (the interval excludes 0), 'tie' (it holds 0), 'unknown' (no interval)."""
    if stats is None or stats.get("low") is None:
        return "unknown"
    if stats["low"] > 0:
        return "ahead"
    if stats["high"] < 0:
        return "behind"
    return "tie"


def _signed(v: float, digits: int = 4) -> str:
    return f"{v if round(v, digits) else 0.0:+.{digits}f}"


def paired_cell(stats: dict | None, digits: int = 4) -> str:
    """``+0.0012 [-0.0004, +0.0028] 2/3``: mean difference, interval, runs ahead / pairs."""
    if stats is None:
        return "n/a"
    interval = ("" if stats["low"] is None else
                f" [{_signed(stats['low'], digits)}, {_signed(stats['high'], digits)}]")
    mark = {"ahead": " ▲", "behind": " ▼"}.get(call(stats), "")
    return f"{_signed(stats['mean'], digits)}{interval} {stats['ahead']}/{stats['pairs']}{mark}"


def verdict(baseline: str, cells: Mapping[str, dict | None], seeds: int) -> str:
    """One sentence from the paired cells (label -> ``paired`` stats) of one model: which
    metrics are ahead of / behind the baseline beyond seed noise (the interval excludes 0)."""
    calls = {label: call(s) for label, s in cells.items()}
    known = [label for label, c in calls.items() if c != "unknown"]
    if not known:
        why = (f"{seeds} seed(s): a paired interval needs {MIN_PAIRS_FOR_P} or more" if seeds < MIN_PAIRS_FOR_P
               else "no metric has a paired interval (n/a, or every seed gave the same difference)")
        return f"cannot tell against {baseline}: {why}."
    ahead = [label for label in known if calls[label] == "ahead"]
    behind = [label for label in known if calls[label] == "behind"]

    def listed(labels):
        return ", ".join(f"{label} ({paired_cell(cells[label]).rsplit(' ', 2)[0]})" for label in labels)

    if not ahead and not behind:
        return (f"nothing beyond seed noise: every {int(LEVEL * 100)}% paired interval against {baseline} "
                f"holds 0 ({len(known)} metrics): not shown to beat {baseline}.")
    head = ("beats" if not behind else "loses to" if not ahead else "mixed against")
    parts = []
    if ahead:
        parts.append(f"ahead beyond seed noise on {listed(ahead)}")
    if behind:
        parts.append(f"behind beyond seed noise on {listed(behind)}")
    rest = len(known) - len(ahead) - len(behind)
    tail = f"; within noise on the other {rest}" if rest else ""
    return f"{head} {baseline}: {'; '.join(parts)}{tail}."


# ------------------------------------------------------------------------------- values

def reports(entries: Sequence[dict]) -> list[Report]:
    return [Report.from_dict(e["report"]) for e in entries]


def values(entries: Sequence[dict], column, metric: str) -> list[float | None]:
    """One value per seed: a task (str), a (scenario, task) pair, or the macro (None)."""
    return [metric_of(r, column, metric) for r in reports(entries)]


def small_mean(entries: Sequence[dict], small: Sequence[str], task: str, metric: str) -> list[float | None]:
    """Per seed, the mean of ``metric`` over the small scenarios where it exists (AUC exists
    where both classes are in the test rows: the same scenarios for every model)."""
    out = []
    for r in reports(entries):
        v = [metric_of(r, (s, task), metric) for s in small]
        v = [x for x in v if x is not None]
        out.append(sum(v) / len(v) if v else None)
    return out


def spread(vals: Sequence[float | None], digits: int = 4) -> str:
    present = [v for v in vals if v is not None]
    if not present:
        return "n/a"
    mean = sum(present) / len(present)
    if len(present) == 1:
        return f"{mean:.{digits}f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1))
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _mean(vals) -> float:
    present = [v for v in vals if v is not None]
    return sum(present) / len(present) if present else float("-inf")


def _table(head, body) -> str:
    from tabulate import tabulate

    return tabulate(body, headers=head, tablefmt="github", disable_numparse=True)


def _order(runs: Mapping[str, list], baseline: str, key) -> list[str]:
    """The baseline first, then the others by ``key`` (a list of per-seed values), best first."""
    others = sorted((n for n in runs if n != baseline), key=lambda n: -_mean(key(runs[n])))
    return [baseline] + others


def _cost(entries) -> list[str]:
    return [f"{entries[0]['params']:,}", f"{_mean([e['train_s'] for e in entries]):.1f}",
            f"{_mean([e['wall_s'] for e in entries]):.1f}", _seconds([e.get('cpu_s') for e in entries])]


def _seconds(vals) -> str:
    present = [v for v in vals if v is not None]
    return f"{sum(present) / len(present):.1f}" if present else "n/a"


COST = ["params", "train s", "wall s", "cpu s"]


def _header(title: str, meta: Mapping) -> list[str]:
    lines = [f"# {title}", "", f"Generated by `{meta['command']}`.", ""]
    lines += [f"- {k}: {v}" for k, v in meta["facts"]]
    return lines + [""]


def _failures_and_exclusions(meta: Mapping) -> list[str]:
    lines = []
    if meta.get("failed"):
        lines += ["## Failed or not trained yet", "", "Trained again on the next run (failures are not cached).", ""]
        lines += [f"- **{n}**: {why}" for n, why in meta["failed"].items()] + [""]
    if meta.get("excluded"):
        lines += ["## Not on this board", ""]
        lines += [f"- **{n}**: {why}" for n, why in meta["excluded"].items()] + [""]
    return lines


TIME_NOTE = ("Seconds per run, mean over seeds: train = the epochs, wall = building, training and "
             "evaluating, cpu = the process's CPU seconds over the same span (on a shared machine the wall "
             "times grow with its load, the CPU seconds much less).")

_NOISE_NOTE = (f"A cell of the paired table is the mean over seeds of (model − {{b}}) for run i against "
               f"{{b}}'s run i (the same seed), its {int(LEVEL * 100)}% paired t-interval, and the runs ahead "
               f"out of the pairs; ▲/▼ mark an interval that excludes 0. The interval covers seed-to-seed "
               f"variation on this one test split, not the sampling of its rows, and every cell is its own "
               f"test (no correction for the number of cells: with 3 seeds and many cells, a lone ▲ or ▼ "
               f"can be chance).")


# ------------------------------------------------------------------------------- multi-task page

def multitask_page(runs: Mapping[str, list[dict]], baseline: str, meta: Mapping) -> str:
    """The multi-task leaderboard: AUC and GAUC per task and macro, mean ± std over seeds; the
    paired differences against ``baseline``; cost; one verdict per model."""
    tasks = list(reports(runs[baseline])[0].tasks)
    columns = [(t, m) for m in ("auc", "gauc") for t in tasks + [None]]
    label = {c: f"{'macro' if c[0] is None else c[0]} {c[1].upper()}" for c in columns}
    order = _order(runs, baseline, lambda es: values(es, None, "auc"))
    seeds = min(len(es) for es in runs.values())

    lines = _header("Multi-task leaderboard: kuairand-pure" if meta.get("kuairand", True)
                    else "Multi-task leaderboard", meta)
    lines += ["## Test metrics, mean ± std over seeds", "",
              f"Ordered by macro AUC, {baseline} (the baseline) first. " + TIME_NOTE, ""]
    body = [[n + (" (baseline)" if n == baseline else "")] + _cost(runs[n])
            + [spread(values(runs[n], c[0], c[1])) for c in columns] for n in order]
    lines += [_table(["model"] + COST + [label[c] for c in columns], body), ""]

    lines += [f"## Paired against {baseline}", "", _NOISE_NOTE.format(b=baseline), ""]
    cells = {n: {label[c]: paired(values(runs[baseline], *c), values(runs[n], *c)) for c in columns}
             for n in order if n != baseline}
    body = [[n] + [paired_cell(cells[n][label[c]]) for c in columns] for n in order if n != baseline]
    lines += [_table(["model"] + [label[c] for c in columns], body), ""]

    lines += ["## Verdicts", ""]
    lines += [f"- **{n}**: {verdict(baseline, cells[n], seeds)}" for n in order if n != baseline]
    lines += [""] + _failures_and_exclusions(meta)
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------- scenario page

def scenario_order(entries: Sequence[dict]) -> list[str]:
    """Scenario values, most train rows first."""
    rows = entries[0].get("scenario_train_rows") or {}
    found = list(reports(entries)[0].scenarios)
    return sorted(found, key=lambda s: -rows.get(s, 0))


def small_scenarios(entries: Sequence[dict], share: float) -> list[str]:
    """Scenarios holding under ``share`` of the train rows."""
    rows = entries[0].get("scenario_train_rows") or {}
    total = sum(rows.values()) or 1
    return [s for s in scenario_order(entries) if rows.get(s, 0) / total < share]


def scenario_page(runs: Mapping[str, list[dict]], baseline: str, meta: Mapping, task: str,
                  small_share: float) -> str:
    """The multi-scenario leaderboard: per-task metrics over every scenario, then ``task``'s AUC
    and GAUC per scenario (test rows and positives on top, n/a where a scenario's test rows hold
    one class), the small scenarios' mean in bold; paired against ``baseline``; verdicts."""
    base = runs[baseline]
    first = reports(base)[0]
    tasks = list(first.tasks)
    scen = scenario_order(base)
    small = small_scenarios(base, small_share)
    name = first.scenario or "scenario"
    seeds = min(len(es) for es in runs.values())
    order = _order(runs, baseline, lambda es: values(es, task, "auc"))
    train_rows = base[0].get("scenario_train_rows") or {}

    lines = _header("Multi-scenario leaderboard: kuairand-pure, one scenario per tab"
                    if meta.get("kuairand", True) else "Multi-scenario leaderboard", meta)
    columns = [(t, m) for m in ("auc", "gauc") for t in tasks]
    label = {c: f"{c[0]} {c[1].upper()}" for c in columns}
    lines += ["## Every test row, mean ± std over seeds", "",
              f"Ordered by {task} AUC, {baseline} (the baseline) first. " + TIME_NOTE, ""]
    body = [[n + (" (baseline)" if n == baseline else "")] + _cost(runs[n])
            + [spread(values(runs[n], *c)) for c in columns] for n in order]
    lines += [_table(["model"] + COST + [label[c] for c in columns], body), ""]

    def n_of(s):
        m = first.scenarios[s].get(task)
        return (m.n, m.positives) if m else (0, 0)

    rows_small, pos_small = (sum(n_of(s)[i] for s in small) for i in (0, 1))
    small_note = (f"**small** = the {len(small)} {name}s with under {small_share:.0%} of the train rows "
                  f"({', '.join(small) or 'none'}); **small mean** = the mean over those where the metric "
                  f"exists (the same {name}s for every model: n/a depends on the labels only). Together they "
                  f"hold {rows_small:,} test rows and {pos_small:,} {task} positives: their AUCs rest on a "
                  f"handful of rows, which the paired intervals (seed noise only) do not cover.")
    for metric in ("auc", "gauc"):
        lines += [f"## {task} {metric.upper()} per {name}, mean ± std over seeds", ""]
        if metric == "auc":
            lines += [f"Test rows / positives of {task} under each {name}; n/a where a {name}'s test rows "
                      f"hold one class. " + small_note, ""]
        else:
            lines += [f"GAUC groups by {first.group or 'the group column'} within each {name}; n/a where "
                      f"no group there has both classes.", ""]
        head = ["model", f"**small mean**"] + [
            f"{name} {s}{' (small)' if s in small else ''}<br>{n_of(s)[0]:,} / {n_of(s)[1]:,}" for s in scen]
        body = [[n, f"**{spread(small_mean(runs[n], small, task, metric))}**"]
                + [spread(values(runs[n], (s, task), metric)) for s in scen] for n in order]
        lines += [_table(head, body), ""]

    lines += [f"## Paired against {baseline}", "", _NOISE_NOTE.format(b=baseline), ""]
    pcols = [(f"{t} {m.upper()}", (lambda es, t=t, m=m: values(es, t, m))) for m in ("auc", "gauc") for t in tasks]
    pcols += [(f"small-{name} mean {task} {m.upper()}", (lambda es, m=m: small_mean(es, small, task, m)))
              for m in ("auc", "gauc")]
    cells = {n: {lab: paired(f(base), f(runs[n])) for lab, f in pcols} for n in order if n != baseline}
    body = [[n] + [paired_cell(cells[n][lab]) for lab, _ in pcols] for n in order if n != baseline]
    lines += [_table(["model"] + [lab for lab, _ in pcols], body), ""]
    lines += [f"{task} AUC per {name}, paired (mean difference, runs ahead / pairs; ▲/▼: the "
              f"{int(LEVEL * 100)}% interval excludes 0):", ""]
    head = ["model"] + [f"{name} {s}" for s in scen]
    body = [[n] + [_short(paired(values(base, (s, task), "auc"), values(runs[n], (s, task), "auc"))) for s in scen]
            for n in order if n != baseline]
    lines += [_table(head, body), ""]

    lines += ["## Verdicts", "",
              f"From the paired table above (every task over all rows, and the small {name}s' mean).", ""]
    lines += [f"- **{n}**: {verdict(baseline, cells[n], seeds)}" for n in order if n != baseline]
    lines += [""] + _failures_and_exclusions(meta)
    if train_rows:
        lines += [f"Train rows per {name}: " + ", ".join(f"{s} {train_rows.get(s, 0):,}" for s in scen) + "."]
    return "\n".join(lines).rstrip() + "\n"


def _short(stats: dict | None) -> str:
    if stats is None:
        return "n/a"
    mark = {"ahead": " ▲", "behind": " ▼"}.get(call(stats), "")
    return f"{_signed(stats['mean'])} {stats['ahead']}/{stats['pairs']}{mark}"
