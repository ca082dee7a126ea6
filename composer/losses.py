"""The LossPlan: per output its loss, label (column or expression), mask and weight, plus the
fusion strategy and its parameters.

Pure Python: printable as a table and as a dict; ``composer plan`` prints it, the run folder
records it, and the training loop (composer/training/plan_trainer.py) executes exactly this plan.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class LossTerm:
    task: str
    output: str  # the model output (named after the task)
    loss: str | None  # None: predicted and evaluated, no loss term (ESMM's CVR)
    label: str  # label column or label expression
    where: str | None  # rows where the loss and the metrics count (None: all rows)
    weight: float  # the fixed weight, or the starting weight of a learned strategy
    # ESCM2's counterfactual risk replacing the masked BCE (loss "ips" or "dr"): type, propensity
    # (a task), clip, imputation (an output that is not a task); None: the masked BCE
    risk: dict | None = None

    def loss_text(self) -> str:
        if self.risk is None:
            return self.loss or "none (evaluated only)"
        r = self.risk
        extra = f", imputation {r['imputation']}" if r.get("imputation") else ""
        return f"{r['type'].upper()} risk (propensity {r['propensity']}, clip {r['clip']:g}{extra})"


@dataclass(frozen=True)
class LossPlan:
    fusion: str
    terms: list[LossTerm]
    params: dict = field(default_factory=dict)

    @classmethod
    def from_blueprint(cls, bp) -> "LossPlan":
        section = bp.loss
        weights = getattr(section, "weights", {})
        terms = [LossTerm(task=t.name, output=t.name,
                          loss=(t.risk.type if t.risk else "binary_crossentropy") if t.loss else None,
                          label=t.label_text, where=t.where, weight=float(weights.get(t.name, 1.0)),
                          risk=t.risk.model_dump() if t.risk and t.loss else None)
                 for t in bp.tasks]
        params = section.model_dump(exclude={"fusion", "weights"})
        if section.fusion == "pareto":
            trained = [t.task for t in terms if t.loss]
            params["lower_bounds"] = {t: section.lower_bounds.get(t, section.default_lower_bound) for t in trained}
            params.pop("default_lower_bound")
        return cls(fusion=section.fusion, terms=terms, params=params)

    @property
    def trained(self) -> list[LossTerm]:
        return [t for t in self.terms if t.loss]

    def table(self) -> str:
        from tabulate import tabulate

        rows = [[t.task, t.output, t.loss_text(), t.label, t.where or "all rows",
                 t.weight if t.loss else ""] for t in self.terms]
        shown = {k: v for k, v in self.params.items() if v is not None}
        head = f"loss fusion: {self.fusion}" + (f" {shown}" if shown else "")
        return head + "\n" + tabulate(rows, headers=["task", "output", "loss", "label", "where", "weight"])

    def to_dict(self) -> dict:
        return {"fusion": self.fusion, "params": dict(self.params),
                "terms": [asdict(t) for t in self.terms]}
