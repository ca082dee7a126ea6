"""The LossPlan: per output its loss, label and weight, plus the fusion strategy.

Pure Python: printable as a table and as YAML; the training loop executes exactly this plan.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class LossTerm:
    task: str
    output: str  # the model output (named after the task)
    loss: str
    label: str  # label column
    weight: float


@dataclass(frozen=True)
class LossPlan:
    fusion: str
    terms: list[LossTerm]
    params: dict = field(default_factory=dict)

    @classmethod
    def from_blueprint(cls, bp) -> "LossPlan":
        weights = getattr(bp.loss, "weights", {})
        terms = [LossTerm(task=t.name, output=t.name, loss="binary_crossentropy",
                          label=t.label_column, weight=float(weights.get(t.name, 1.0)))
                 for t in bp.tasks]
        return cls(fusion=bp.loss.fusion, terms=terms)

    def table(self) -> str:
        from tabulate import tabulate

        rows = [[t.task, t.output, t.loss, t.label, t.weight] for t in self.terms]
        head = f"loss fusion: {self.fusion}" + (f" {self.params}" if self.params else "")
        return head + "\n" + tabulate(rows, headers=["task", "output", "loss", "label", "weight"])

    def to_dict(self) -> dict:
        return {"fusion": self.fusion, "params": dict(self.params),
                "terms": [asdict(t) for t in self.terms]}
