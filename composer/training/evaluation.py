"""Metrics of a trained experiment on one split: exact AUC / GAUC per task and per scenario, and
the same for the data's planted scores where the generator knows them.
"""
from __future__ import annotations

from .experiment import Experiment
from .loop import predict

def report(exp: Experiment, part: str = "test", predictions=None):
    """Exact AUC / GAUC per task and per scenario on one split (the test split by default)."""
    from ..metrics import evaluate_predictions

    if getattr(exp.dataset, "streaming", False):
        from .streamed import report_rows

        rows = report_rows(exp, part)
    else:
        rows = exp.dataset.part(part).frame
    predictions = predictions if predictions is not None else predict(exp, part)
    spec = exp.dataset.spec
    scenario_col = exp.bp.scenarios.feature if exp.bp.scenarios else spec.scenario
    labels, masks = exp.labels(rows)
    columns = {f"label:{t}": labels[t] for t in exp.tasks}
    columns.update({f"mask:{t}": masks[t] for t in exp.tasks})
    columns.update({f"pred:{t}": p for t, p in predictions.items()})
    if scenario_col:
        columns[scenario_col] = rows[scenario_col].astype("string").to_numpy()
    if spec.group:
        columns[spec.group] = rows[spec.group].to_numpy()
    import pandas as pd

    frame = pd.DataFrame(columns)
    return evaluate_predictions(
        frame, {t: f"pred:{t}" for t in exp.tasks},
        label_columns={t: f"label:{t}" for t in exp.tasks}, masks={t: f"mask:{t}" for t in exp.tasks},
        scenario=scenario_col, group=spec.group)


def planted_report(exp: Experiment, part: str = "test"):
    """The same metrics for the data's own best score (``Dataset.meta["planted"]``, label
    column -> one score per row; the synthetic generators give it), as if it were a model's
    prediction: the ceiling a model's AUC on these labels can be read against. None unless every
    task reads one such label column on all its rows (no label expression, no ``where``)."""
    if "planted" not in getattr(exp.dataset, "meta", {}):
        return None
    planted = exp.dataset.part(part).meta["planted"]
    tasks = exp.bp.tasks
    if not tasks or any(t.where or t.label_text not in planted for t in tasks):
        return None
    return report(exp, part, predictions={t.name: planted[t.label_text] for t in tasks})


