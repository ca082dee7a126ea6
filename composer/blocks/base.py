"""What every block is: a pydantic params model plus a shape rule, a label and a build step.

A block module must import without TensorFlow; ``build`` imports its Keras layer lazily.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..blueprint.errors import BlueprintError

Kind = Literal["hidden", "logit", "prob", "weights", "experts", "fields", "sequence"]


@dataclass(frozen=True)
class Out:
    """The symbolic output of a block: shape without the batch axis, and what it holds."""

    shape: tuple[int, ...]
    kind: Kind = "hidden"

    def __str__(self) -> str:
        return "(" + ", ".join(["B", *map(str, self.shape)]) + ")"


class ShapeError(BlueprintError):
    """Raised by shape rules; the graph adds the block's location."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


class Block(BaseModel):
    """Base of every block's params model. Subclasses declare ``type: Literal[...]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    for_each: Literal["task", "scenario"] | None = Field(
        None, description="Stamp one copy per task (or scenario); `{task}` (`{scenario}`) in "
        "references is replaced by each name.")
    tasks: list[str] | None = Field(
        None, min_length=1, description="Only these tasks (default: every task): the copies "
        "`for_each: task` stamps, or the per-task branches and ports of `shared_bottom`, `omoe`, "
        "`mmoe`, `cgc` and `ple`. ESMM on a PLE: `tasks: [ctr, cvr]`, so the chained CTCVR grows "
        "no expert branch that no output reads.")

    refs: ClassVar[tuple[str, ...]] = ()  # fields holding references to other blocks
    # fields whose inputs (partly) get no gradient back -> the edge label; drawn dashed
    stop_gradient_refs: ClassVar[dict[str, str]] = {}
    composite: ClassVar[bool] = False
    paper: ClassVar[str] = ""  # citation shown in docs
    family: ClassVar[str] = ""
    reads_features: ClassVar[bool] = False  # reads the input stage (drawn from the features node)
    feature_field: ClassVar[str] = "group"  # the field naming what it reads there
    takes_tasks: ClassVar[bool] = False  # a composite whose per-task ports honour `tasks`
    routes_by_scenario: ClassVar[bool] = False  # reads each sample's scenario id (`ctx.scenario()`)

    # -- the graph side (pure Python) ------------------------------------------------------
    def references(self) -> dict[str, str | list[str] | dict[str, str]]:
        return {name: getattr(self, name) for name in self.refs if getattr(self, name) is not None}

    def task_names(self, ctx) -> list[str]:
        """The tasks this block covers, in the blueprint's order."""
        every = ctx.blueprint.task_names
        return every if self.tasks is None else [t for t in every if t in self.tasks]

    def infer(self, inputs: dict[str, Any], ctx) -> Out:
        """Shape rule: input ``Out``s by field name -> this block's ``Out``."""
        raise NotImplementedError

    def count_params(self, inputs: dict[str, Any], ctx) -> int:
        return 0

    def label(self) -> str:
        """Key parameters for the diagram node."""
        return ""

    # -- composites ------------------------------------------------------------------------
    def expand(self, name: str, ctx) -> tuple[dict[str, "Block"], dict[str, str]]:
        """Composite blocks return (primitive blocks by absolute name, port -> reference)."""
        raise NotImplementedError

    # -- the Keras side --------------------------------------------------------------------
    def build(self, inputs: dict[str, Any], ctx):
        """Instantiate the Keras layer(s) and apply them to the input tensors."""
        raise NotImplementedError


def expect_rank(out: Out, rank: int, field: str, what: str) -> None:
    if len(out.shape) != rank:
        raise ShapeError(f"expects {what} of rank {rank + 1} (batch included), got shape {out}",
                         field=field)


def mlp_params(in_dim: int, units, batch_norm: bool = False, bias: bool = True) -> int:
    total, prev = 0, in_dim
    for u in units:
        total += prev * u + (u if bias else 0) + (4 * u if batch_norm else 0)
        prev = u
    return total
