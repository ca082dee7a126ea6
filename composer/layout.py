"""How named features are packed into the model's inputs (pure Python).

Categorical ids arrive as one integer matrix per embedding width (``ids_d8`` holds every
8-wide field, in declaration order), looked up in one stacked table; numerics arrive as one
float matrix ``numeric``. A multi-scenario blueprint adds ``scenario``: each row's scenario id
(0..S-1, the declared values' order) as an int32 column. The data pipeline packs with the same
layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FeatureLayout:
    categorical_by_dim: dict[int, list[str]] = field(default_factory=dict)
    vocab_sizes: dict[str, int | None] = field(default_factory=dict)
    numeric: list[str] = field(default_factory=list)
    scenario: str | None = None  # the scenario column
    scenario_values: list[str] = field(default_factory=list)  # in id order

    @classmethod
    def from_blueprint(cls, bp, vocab_sizes: dict[str, int] | None = None) -> "FeatureLayout":
        layout = cls()
        for f in bp.features:
            if f.kind == "categorical":
                layout.categorical_by_dim.setdefault(f.dim, []).append(f.name)
                layout.vocab_sizes[f.name] = (vocab_sizes or {}).get(f.name, f.vocab_size)
            else:
                layout.numeric.append(f.name)
        if bp.scenarios is not None:
            layout.scenario, layout.scenario_values = bp.scenarios.feature, bp.scenarios.ids
        return layout

    @staticmethod
    def input_name(dim: int) -> str:
        return f"ids_d{dim}"

    def inputs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Model input name -> (shape without batch, dtype)."""
        out = {self.input_name(d): ((len(names),), "int32") for d, names in self.categorical_by_dim.items()}
        if self.numeric:
            out["numeric"] = ((len(self.numeric),), "float32")
        if self.scenario:
            out["scenario"] = ((1,), "int32")
        return out

    def missing_vocab(self) -> list[str]:
        return [name for name, v in self.vocab_sizes.items() if v is None]

    def embedding_params(self) -> int | None:
        if self.missing_vocab():
            return None
        return sum(self.vocab_sizes[n] * d for d, names in self.categorical_by_dim.items() for n in names)
