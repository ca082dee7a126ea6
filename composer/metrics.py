"""Exact AUC and GAUC per task and per scenario, computed on predictions.

``keras.metrics.AUC`` approximates with 200 thresholds (0.7459 against an exact 0.7476 on skewed
CTR-like scores), so reported numbers come from here instead: rank-sum (Mann-Whitney) AUC with
average ranks for ties, GAUC = sum_u w_u * AUC_u / sum_u w_u over groups u whose labels are not
all equal. A task or scenario with a single class gets ``None`` ("n/a"), never NaN or a crash.

Example::

    report = evaluate_predictions({"click": y_click, "buy": y_buy},
                                  {"click": p_click, "buy": p_buy},
                                  group=user_id, scenario=scenario_id,
                                  masks={"buy": y_click == 1})  # CVR on clicked rows
    print(report.table())
    report.save("runs/mmoe")
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

WEIGHTINGS = ("impressions", "uniform", "clicks")
METRICS = ("auc", "gauc")
MISSING_LABEL = -1  # a label of -1 (or NaN) means "not labelled for this task"


# ---------------------------------------------------------------------------------- AUC, GAUC

def auc(labels, scores) -> float | None:
    """Exact ROC AUC of binary ``labels`` (0/1 or bool) against ``scores``; ``None`` for one class.

    Ties in ``scores`` count one half, as in ``sklearn.metrics.roc_auc_score``.
    """
    y, s = _check_pair(labels, scores)
    if len(y) == 0:
        return None
    value, _, _ = _group_auc(y, s, np.zeros(len(y), dtype=np.int64))
    return None if np.isnan(value[0]) else float(value[0])


def gauc(labels, scores, groups, weighting: str = "impressions") -> tuple[float | None, int, int]:
    """Group AUC: the weighted mean of per-group AUCs over groups with both classes.

    Args:
        labels: binary labels (0/1 or bool), one per row.
        scores: predicted scores, one per row.
        groups: the group of each row (a user id; any hashable values). Rows whose group is
            missing (NaN/None) belong to no group and are left out.
        weighting: weight ``w_u`` of group ``u``: ``"impressions"`` (its rows, the default),
            ``"uniform"`` (1 each) or ``"clicks"`` (its positives).

    Returns:
        ``(gauc, valid_groups, excluded_groups)``: ``gauc`` is ``None`` when no group has both
        classes; excluded groups are those whose labels are all equal.
    """
    y, s = _check_pair(labels, scores)
    g = _as_1d("groups", groups)
    if len(g) != len(y):
        raise ValueError(f"groups has {len(g)} rows, labels {len(y)}")
    codes, _ = pd.factorize(g)
    return _gauc_codes(y, s, codes, weighting)


def _gauc_codes(y: np.ndarray, s: np.ndarray, codes: np.ndarray,
                weighting: str) -> tuple[float | None, int, int]:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown GAUC weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    keep = codes >= 0
    if not keep.all():
        y, s, codes = y[keep], s[keep], codes[keep]
    if len(y) == 0:
        return None, 0, 0
    value, size, pos = _group_auc(y, s, codes)
    present = size > 0
    valid = ~np.isnan(value)
    n_valid = int(valid.sum())
    excluded = int((present & ~valid).sum())
    if n_valid == 0:
        return None, 0, excluded
    weight = {"impressions": size, "uniform": np.ones_like(size), "clicks": pos}[weighting]
    w = weight[valid].astype(np.float64)
    return float(np.dot(w, value[valid]) / w.sum()), n_valid, excluded


def _group_auc(y: np.ndarray, s: np.ndarray, codes: np.ndarray):
    """Per-group rank-sum AUC (NaN for a single-class group), group sizes and positives.

    Hand-written rather than ``roc_auc_score`` per group: one sort for all groups, no Python loop,
    so 1e6 rows in 1e5 groups take well under a second. scikit-learn is the oracle in the tests.
    """
    # By group, then score: two stable argsorts, faster here than np.lexsort.
    order = np.argsort(s, kind="stable")
    if codes.max() > 0:
        order = order[np.argsort(codes[order], kind="stable")]
    g, s, y = codes[order], s[order], y[order]
    n = len(g)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    new_block = new_group.copy()  # a block is a run of equal scores within a group
    new_block[1:] |= s[1:] != s[:-1]
    starts = np.flatnonzero(new_block)
    ends = np.append(starts[1:], n) - 1
    block = np.cumsum(new_block) - 1
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rank = (starts + ends)[block] / 2.0 - group_start + 1.0  # average 1-based rank in the group
    m = int(g.max()) + 1
    size = np.bincount(g, minlength=m)
    pos = np.bincount(g, weights=y, minlength=m)
    rank_sum = np.bincount(g, weights=np.where(y, rank, 0.0), minlength=m)
    neg = size - pos
    value = np.full(m, np.nan)
    ok = (pos > 0) & (neg > 0)
    value[ok] = (rank_sum[ok] - pos[ok] * (pos[ok] + 1) / 2.0) / (pos[ok] * neg[ok])
    return value, size, pos.astype(np.int64)


def _as_1d(name: str, values, dtype=None) -> np.ndarray:
    pandas_like = (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)
    if dtype is float and isinstance(values, pandas_like):  # nullable dtypes: NA -> NaN
        a = pd.Series(values).to_numpy(dtype=float, na_value=np.nan)
    else:
        a = np.asarray(values, dtype=dtype)
    if a.ndim == 2 and a.shape[1] == 1:  # Keras predict gives (n, 1)
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name}: expected one value per row, got shape {a.shape}")
    return a


def _binary(name: str, values) -> np.ndarray:
    a = _as_1d(name, values)
    if a.dtype == bool:
        return a
    a = a.astype(np.float64)
    bad = ~((a == 0) | (a == 1))
    if bad.any():
        shown = ", ".join(map(repr, np.unique(a[bad])[:5].tolist()))
        raise ValueError(f"{name}: labels must be 0 or 1, found {shown}")
    return a == 1


def _scores(name: str, values) -> np.ndarray:
    s = _as_1d(name, values, dtype=float)
    if np.isnan(s).any():
        raise ValueError(f"{name}: {int(np.isnan(s).sum())} predictions are NaN")
    return s


def _check_pair(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y, s = _binary("labels", labels), _scores("scores", scores)
    if len(y) != len(s):
        raise ValueError(f"labels has {len(y)} rows, scores {len(s)}")
    return y, s


# ---------------------------------------------------------------------------------- reports

@dataclass(frozen=True)
class TaskMetrics:
    """The metrics of one task on one slice of rows; ``None`` where a metric does not exist."""

    n: int  # evaluated rows (mask applied, missing labels dropped)
    positives: int
    auc: float | None
    gauc: float | None = None
    valid_groups: int | None = None  # None when no group column was given
    excluded_groups: int | None = None  # groups whose labels are all equal


@dataclass
class Report:
    """Per-task AUC and GAUC, macro averages, and the same per scenario.

    ``tasks`` maps task -> metrics on all rows; ``scenarios`` maps scenario value -> task ->
    metrics on that scenario's rows (empty without a scenario column).
    """

    tasks: dict[str, TaskMetrics]
    scenarios: dict[Any, dict[str, TaskMetrics]] = field(default_factory=dict)
    group: str | None = None  # name of the GAUC group column
    scenario: str | None = None  # name of the scenario column
    weighting: str = "impressions"

    def macro(self, scenario: Any = None) -> dict[str, float | None]:
        """Mean of each metric over the tasks where it exists (all rows, or one scenario's)."""
        tasks = self.tasks if scenario is None else self.scenarios[scenario]
        return {m: _mean([getattr(t, m) for t in tasks.values()]) for m in METRICS}

    def table(self, by: str = "task", digits: int = 4) -> str:
        """A text table: rows tasks (and a ``macro`` row), columns AUC, GAUC, groups, n, positives.

        ``by="scenario"`` gives the same for each scenario, one block of rows per scenario.
        """
        from tabulate import tabulate

        if by not in ("task", "scenario"):
            raise ValueError(f"table(by={by!r}): valid: 'task', 'scenario'")
        grouped = self.group is not None
        head = ["task", "AUC"] + (["GAUC", "valid groups", "excluded groups"] if grouped else [])
        head += ["n", "positives"]

        def rows(tasks: dict[str, TaskMetrics], macro: dict) -> list[list[str]]:
            out = []
            for name, t in tasks.items():
                row = [name, _fmt(t.auc, digits)]
                if grouped:
                    row += [_fmt(t.gauc, digits), str(t.valid_groups), str(t.excluded_groups)]
                out.append(row + [str(t.n), str(t.positives)])
            macro_row = ["macro", _fmt(macro["auc"], digits)]
            if grouped:
                macro_row += [_fmt(macro["gauc"], digits), "", ""]
            return out + [macro_row + ["", ""]]

        if by == "task":
            body = rows(self.tasks, self.macro())
        else:
            if not self.scenarios:
                raise ValueError("table(by='scenario'): the report has no scenario column")
            head = [self.scenario or "scenario"] + head
            body = [[str(value)] + r for value, tasks in self.scenarios.items()
                    for r in rows(tasks, self.macro(value))]
        keys = 2 if by == "scenario" else 1
        align = ["left"] * keys + ["right"] * (len(head) - keys)
        text = tabulate(body, headers=head, disable_numparse=True, colalign=align)
        if grouped:
            text += f"\nGAUC over groups of {self.group!r}, weighted by {self.weighting}"
        return text

    def to_dict(self) -> dict:
        """JSON-ready: plain numbers, ``None`` for n/a, scenario values as strings."""
        return {
            "group": self.group, "scenario": self.scenario, "weighting": self.weighting,
            "tasks": {k: asdict(t) for k, t in self.tasks.items()},
            "macro": self.macro(),
            "scenarios": {str(v): {"tasks": {k: asdict(t) for k, t in tasks.items()},
                                   "macro": self.macro(v)}
                          for v, tasks in self.scenarios.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "Report":
        """Inverse of ``to_dict`` (scenario values come back as strings)."""
        def tasks(d):
            return {k: TaskMetrics(**t) for k, t in d.items()}
        return cls(tasks=tasks(data["tasks"]),
                   scenarios={v: tasks(s["tasks"]) for v, s in data.get("scenarios", {}).items()},
                   group=data.get("group"), scenario=data.get("scenario"),
                   weighting=data.get("weighting", "impressions"))

    def save(self, directory: str | Path) -> list[Path]:
        """Write metrics.json, metrics.csv and, with scenarios, metrics_by_scenario.csv."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "metrics.json", out / "metrics.csv"]
        paths[0].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        _write_csv(paths[1], ["task"], [([], self.tasks, self.macro())])
        if self.scenarios:
            paths.append(out / "metrics_by_scenario.csv")
            _write_csv(paths[2], [self.scenario or "scenario", "task"],
                       [([v], tasks, self.macro(v)) for v, tasks in self.scenarios.items()])
        return paths

    @classmethod
    def load(cls, directory: str | Path) -> "Report":
        return cls.from_dict(json.loads((Path(directory) / "metrics.json").read_text()))


_FIELDS = ("n", "positives", "auc", "gauc", "valid_groups", "excluded_groups")


def _write_csv(path: Path, keys: list[str], blocks) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + list(_FIELDS))
        for prefix, tasks, macro in blocks:
            for name, t in tasks.items():
                w.writerow(prefix + [name] + ["" if getattr(t, k) is None else getattr(t, k)
                                              for k in _FIELDS])
            w.writerow(prefix + ["macro", "", "", _cell(macro["auc"]), _cell(macro["gauc"]),
                                 "", ""])


def _cell(v):
    return "" if v is None else v


def _fmt(v: float | None, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


# ---------------------------------------------------------------------------------- evaluation

def evaluate_predictions(labels, predictions, *, label_columns: Mapping[str, str] | None = None,
                         scenario=None, group=None, masks: Mapping[str, Any] | None = None,
                         weighting: str = "impressions") -> Report:
    """Exact per-task AUC and GAUC, overall and per scenario.

    Args:
        labels: a mapping task -> label array, or a DataFrame holding the label columns (and
            any columns named below). Labels are 0/1; -1 or NaN means missing: that row is not
            evaluated for that task.
        predictions: a mapping task -> scores (arrays, or column names of the ``labels`` frame);
            its keys are the tasks, in this order. ``(n, 1)`` arrays are accepted.
        label_columns: with a frame, task -> label column where it is not the task name.
        scenario: the scenario of each row (array or column name); adds per-scenario results.
        group: the GAUC group of each row (a user id; array or column name; need not be a
            feature). Without it only AUC is reported.
        masks: task -> boolean rows where the task is evaluated (array or column name; a
            non-boolean column counts rows equal to 1), e.g. ``{"cvr": "click"}`` evaluates CVR
            on clicked rows.
        weighting: GAUC group weight: ``"impressions"`` (default), ``"uniform"`` or ``"clicks"``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown GAUC weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    frame = labels if isinstance(labels, pd.DataFrame) else None
    tasks = list(predictions.keys())
    if not tasks:
        raise ValueError("predictions: no task given")
    label_columns = dict(label_columns or {})
    masks = dict(masks or {})
    for what, keys in (("label_columns", label_columns), ("masks", masks)):
        unknown = sorted(set(keys) - set(tasks))
        if unknown:
            raise ValueError(f"{what}: unknown task(s) {unknown}; tasks: {tasks}")

    def column(what: str, value):
        if isinstance(value, str):
            if frame is None:
                raise ValueError(f"{what}: {value!r} names a column, but labels is not a DataFrame")
            if value not in frame.columns:
                raise ValueError(f"{what}: no column {value!r}; columns: {list(frame.columns)}")
            return frame[value]
        return value

    n_rows = None

    def rows_checked(what: str, a: np.ndarray) -> np.ndarray:
        nonlocal n_rows
        if n_rows is None:
            n_rows = len(a)
        elif len(a) != n_rows:
            raise ValueError(f"{what} has {len(a)} rows, expected {n_rows}")
        return a

    scores, ys, evaluated = {}, {}, {}
    for t in tasks:
        name = f"predictions[{t!r}]"
        s = rows_checked(name, _as_1d(name, column(name, predictions[t]), dtype=float))
        if frame is not None:
            raw = column(f"labels[{t!r}]", label_columns.get(t, t))
        elif t in labels:
            raw = labels[t]
        else:
            raise ValueError(f"labels: no labels for task {t!r}; given: {list(labels)}")
        y = rows_checked(f"labels[{t!r}]", _as_1d(f"labels[{t!r}]", raw, dtype=float))
        keep = ~(np.isnan(y) | (y == MISSING_LABEL))
        if t in masks:
            m = _as_1d(f"masks[{t!r}]", column(f"masks[{t!r}]", masks[t]))
            keep &= rows_checked(f"masks[{t!r}]", m if m.dtype == bool else m == 1)
        ys[t] = _binary(f"labels[{t!r}]", np.where(keep, y, 0.0))
        scores[t] = _scores(name, np.where(keep, s, 0.0))  # NaN allowed where not evaluated
        evaluated[t] = keep

    codes = None
    if group is not None:
        g = _as_1d("group", column("group", group))
        codes = rows_checked("group", pd.factorize(g)[0])

    def metrics(t: str, rows: np.ndarray) -> TaskMetrics:
        y, s = ys[t][rows], scores[t][rows]
        a = auc(y, s) if len(y) else None
        base = dict(n=int(len(y)), positives=int(y.sum()), auc=a)
        if codes is None:
            return TaskMetrics(**base)
        value, valid, excluded = _gauc_codes(y, s, codes[rows], weighting)
        return TaskMetrics(**base, gauc=value, valid_groups=valid, excluded_groups=excluded)

    overall = {t: metrics(t, evaluated[t]) for t in tasks}
    by_scenario: dict[Any, dict[str, TaskMetrics]] = {}
    scenario_name = None
    if scenario is not None:
        scenario_name = scenario if isinstance(scenario, str) else "scenario"
        sc = rows_checked("scenario", _as_1d("scenario", column("scenario", scenario)))
        sc_codes, values = pd.factorize(sc, sort=True)  # rows with a missing scenario: none
        for k, value in enumerate(values):
            in_k = sc_codes == k
            by_scenario[_plain(value)] = {t: metrics(t, evaluated[t] & in_k) for t in tasks}
    group_name = None if group is None else (group if isinstance(group, str) else "group")
    return Report(tasks=overall, scenarios=by_scenario, group=group_name,
                  scenario=scenario_name, weighting=weighting)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------------- comparison

def compare_table(reports: Mapping[str, Report | Sequence[Report]],
                  metrics: Sequence[str] = METRICS, digits: int = 4) -> str:
    """One table, a row per model: each metric per task, then its macro average.

    A model given a list of reports (one per seed) shows ``mean ± std`` (sample std, over the
    seeds where the metric exists) and a ``seeds`` column. GAUC columns are left out when no
    report has a group column.

    Example::

        print(compare_table({"shared_bottom": [r1, r2, r3], "mmoe": [m1, m2, m3]}))
    """
    from tabulate import tabulate

    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; valid: {', '.join(METRICS)}")
    runs = as_runs(reports)
    for name, rs in runs.items():
        if not rs:
            raise ValueError(f"compare_table: model {name!r} has no report")
    all_reports = [r for rs in runs.values() for r in rs]
    tasks = columns_of(runs)
    metrics = [m for m in metrics if m != "gauc" or any(r.group for r in all_reports)]
    seeds = any(len(rs) > 1 for rs in runs.values())

    head = ["model"] + (["seeds"] if seeds else [])
    for m in metrics:
        head += [f"{t} {m.upper()}" for t in tasks] + [f"macro {m.upper()}"]
    body = []
    for name, rs in runs.items():
        row = [name] + ([str(len(rs))] if seeds else [])
        for m in metrics:
            for t in tasks + [None]:  # then the macro average
                row.append(_spread([metric_of(r, t, m) for r in rs], digits))
        body.append(row)
    align = ["left"] + ["right"] * (len(head) - 1)
    return tabulate(body, headers=head, disable_numparse=True, colalign=align)


def compare_scenario_table(reports: Mapping[str, Report | Sequence[Report]], metric: str = "auc",
                           digits: int = 4) -> str:
    """One table, a row per model, a column per (scenario, task): ``metric`` on that scenario's
    test rows, ``mean ± std`` over seeds ("n/a" where a scenario has one class)."""
    from tabulate import tabulate

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    runs = as_runs(reports)
    columns = columns_of(runs, by="scenario")
    head = ["model"] + [f"{s} {t} {metric.upper()}" for s, t in columns]
    body = [[name] + [_spread([metric_of(r, c, metric) for r in rs], digits) for c in columns]
            for name, rs in runs.items()]
    return tabulate(body, headers=head, disable_numparse=True,
                    colalign=["left"] + ["right"] * (len(head) - 1))


def as_runs(reports: Mapping[str, Report | Sequence[Report]]) -> dict[str, list[Report]]:
    """Model -> its list of reports (one per seed); a single report becomes a list of one."""
    return {name: [r] if isinstance(r, Report) else list(r) for name, r in reports.items()}


def columns_of(runs: Mapping[str, Sequence[Report]], by: str = "task") -> list:
    """The tasks (``by="scenario"``: the (scenario, task) pairs) of every report, in first-seen
    order: the columns of a comparison table."""
    columns: list = []
    for rs in runs.values():
        for r in rs:
            found = ([(s, t) for s, tasks in r.scenarios.items() for t in tasks] if by == "scenario"
                     else list(r.tasks))
            columns += [c for c in found if c not in columns]
    return columns


def metric_of(report: Report, column, metric: str) -> float | None:
    """One cell of a comparison: ``metric`` of a task, of a (scenario, task) pair, or of the
    macro average (``column`` None); None where the report has no such column."""
    if column is None:
        return report.macro()[metric]
    if isinstance(column, tuple):
        scenario, task = column
        tasks = report.scenarios.get(scenario, {})
    else:
        task, tasks = column, report.tasks
    return getattr(tasks[task], metric) if task in tasks else None


def _spread(values: list[float | None], digits: int) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return f"{present[0]:.{digits}f}"
    mean, std = float(np.mean(present)), float(np.std(present, ddof=1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
