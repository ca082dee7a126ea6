"""The multi-task expert family: expert pools, gates, mixtures and the composites built from
them (Shared-Bottom, OMoE, MMoE, CGC, PLE). A PLE is CGC levels stacked, not a new code path."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .base import Block, Out, ShapeError, expect_rank, mlp_params
from .dense import Activation, Mlp
from .registry import register


# The lowering `implementation: auto` picks on a CPU and on an accelerator (GPU, TPU); measured
# by bench/expert_pool_lowering.py and bench/backends_mmoe8.py --both-lowerings (bench/README.md).
AUTO_LOWERING = {"cpu": "stacks", "accelerator": "einsum"}


Lowering = Literal["auto", "einsum", "stacks"]
_LOWERING_DOC = ("stacks: K Dense stacks; einsum: one batched matmul per layer; auto: stacks on a CPU, "
                 "einsum on a GPU or TPU (the faster of the two there, bench/README.md).")


def auto_lowering() -> str:
    from ..devices import on_accelerator

    return AUTO_LOWERING["accelerator" if on_accelerator() else "cpu"]


@register
class ExpertPool(Block):
    """K expert MLPs over one input, stacked as (K, units[-1]).

    ``implementation: stacks`` keeps K separate Dense stacks; ``einsum`` runs all experts as one
    batched matmul per layer (kernels of shape (K, in, out)). ``auto`` picks stacks on a CPU
    and einsum on an accelerator: in ``bench/expert_pool_lowering.py`` on 2 CPU cores with
    TensorFlow, einsum trained at 0.62x-0.90x the speed of stacks for K in (4, 8), with and
    without XLA; on an H200 GPU, MMoE-8 with stacks trained at 0.77x-0.93x the speed of the
    hand-written einsum model under JAX and 0.51x-0.71x under torch, with einsum at 0.96x-0.98x
    and 0.67x-0.85x (bench/README.md, "The GPU run"). The lowering is fixed when the model is
    built, so a model built on a GPU reloads on a CPU with einsum (and its weights), only
    slower; weights saved from one lowering do not load into the other. Each expert gets its
    own random initial weights, so experts start different."""

    type: Literal["expert_pool"] = "expert_pool"
    input: str = Field(description="Reference to the experts' input (a vector).")
    experts: PositiveInt = Field(description="Number of experts K.")
    units: list[PositiveInt] = Field(min_length=1, description="Hidden widths of each expert.")
    activation: Activation = Field("relu", description="Activation of every expert layer.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each expert layer.")
    implementation: Lowering = Field("auto", description=_LOWERING_DOC)
    refs = ("input",)
    family = "experts"
    paper = "Jacobs et al., Adaptive Mixtures of Local Experts, Neural Computation 1991"

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        return Out((self.experts, self.units[-1]), "experts")

    def count_params(self, inputs, ctx) -> int:
        return self.experts * mlp_params(inputs["input"].shape[0], self.units)

    def label(self) -> str:
        return f"K={self.experts}, units={self.units}"

    def build(self, inputs, ctx):
        from ..layers.experts import ExpertPool as Layer

        impl = auto_lowering() if self.implementation == "auto" else self.implementation
        return Layer(experts=self.experts, units=list(self.units), activation=self.activation,
                     dropout=self.dropout, implementation=impl,
                     name=ctx.layer_name())(inputs["input"])


@register
class Gate(Block):
    """Softmax weights over K experts from an input: softmax(MLP(x) W / temperature)."""

    type: Literal["gate"] = "gate"
    input: str = Field(description="Reference to the gate's input (a vector).")
    experts: PositiveInt = Field(description="Number of experts the weights cover.")
    hidden: list[PositiveInt] = Field(default_factory=list, description="Optional hidden MLP widths.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature (>1 flattens).")
    refs = ("input",)
    family = "experts"
    paper = "Ma et al., Modeling Task Relationships in Multi-task Learning with MMoE, KDD 2018"

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        return Out((self.experts,), "weights")

    def count_params(self, inputs, ctx) -> int:
        d = inputs["input"].shape[0]
        last = self.hidden[-1] if self.hidden else d
        return mlp_params(d, self.hidden) + last * self.experts + self.experts

    def label(self) -> str:
        extra = f", hidden={self.hidden}" if self.hidden else ""
        return f"K={self.experts}{extra}" + (f", T={self.temperature}" if self.temperature != 1 else "")

    def build(self, inputs, ctx):
        from ..layers.experts import Gate as Layer

        return Layer(experts=self.experts, hidden=list(self.hidden), temperature=self.temperature, name=ctx.layer_name())(inputs["input"])


@register
class Mixture(Block):
    """Weighted sum of experts: sum_k w_k e_k, over one or more expert pools in order."""

    type: Literal["mixture"] = "mixture"
    weights: str = Field(description="Reference to a gate (weights of shape (B, K)).")
    experts: list[str] = Field(min_length=1, description="References to expert pools, in order.")
    refs = ("weights", "experts")
    family = "experts"

    def infer(self, inputs, ctx) -> Out:
        pools = inputs["experts"]
        for i, pool in enumerate(pools):
            if pool.kind != "experts":
                raise ShapeError(f"experts[{i}] is not an expert pool (shape {pool})", field="experts")
        widths = {p.shape[1] for p in pools}
        if len(widths) != 1:
            raise ShapeError(f"expert pools have different widths {sorted(widths)}", field="experts",
                             hint="give every pool the same last unit")
        total = sum(p.shape[0] for p in pools)
        w = inputs["weights"]
        if w.kind != "weights" or w.shape != (total,):
            raise ShapeError(f"weights have shape {w} but the pools hold {total} experts",
                             field="weights", hint=f"the gate needs experts: {total}")
        return Out((widths.pop(),))

    def label(self) -> str:
        return "sum_k w_k e_k"

    def build(self, inputs, ctx):
        from ..layers.experts import Mixture as Layer

        return Layer(name=ctx.layer_name())([inputs["weights"], *inputs["experts"]])


class _Composite(Block):
    """Every expert composite expands per task over ``tasks`` when given (a chain's task, which
    reads other tasks' towers, gets no branch), over every task otherwise."""

    composite = True
    takes_tasks = True
    family = "experts"

    def _no_task_named(self, ctx, reserved: str):
        if reserved in self.task_names(ctx):
            raise ShapeError(f"a task named '{reserved}' clashes with this block's '{reserved}' port",
                             hint="rename the task")


class _ExpertOptions(_Composite):
    input: str = Field(description="Reference to the shared input (a vector).")
    units: list[PositiveInt] = Field(min_length=1, description="Hidden widths of each expert.")
    activation: Activation = Field("relu", description="Activation of the expert layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the experts.")
    gate_hidden: list[PositiveInt] = Field(default_factory=list, description="Hidden MLP of each gate.")
    temperature: float = Field(1.0, gt=0, description="Gate softmax temperature.")
    implementation: Lowering = Field("auto", description="Lowering of every expert pool: " + _LOWERING_DOC)
    refs = ("input",)

    def _pool(self, input_ref: str, k: int) -> ExpertPool:
        return ExpertPool(input=input_ref, experts=k, units=self.units, activation=self.activation,
                          dropout=self.dropout, implementation=self.implementation)

    def _gate(self, input_ref: str, k: int) -> Gate:
        return Gate(input=input_ref, experts=k, hidden=self.gate_hidden, temperature=self.temperature)


@register
class SharedBottom(_Composite):
    """One shared MLP feeding every task (Caruana, Multitask Learning, Machine Learning 1997).
    Ports: one per task, all the same bottom, so towers read ``name.{task}`` as with MMoE."""

    type: Literal["shared_bottom"] = "shared_bottom"
    input: str = Field(description="Reference to the input (a vector).")
    units: list[PositiveInt] = Field(min_length=1, description="Widths of the shared MLP.")
    activation: Activation = Field("relu", description="Activation of the shared MLP.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the shared MLP.")
    batch_norm: bool = Field(False, description="Batch normalisation in the shared MLP.")
    refs = ("input",)
    paper = "Caruana, Multitask Learning, Machine Learning 1997"

    def expand(self, name, ctx):
        bottom = Mlp(input=self.input, units=self.units, activation=self.activation,
                     dropout=self.dropout, batch_norm=self.batch_norm)
        return {f"{name}/bottom": bottom}, {t: f"{name}/bottom" for t in self.task_names(ctx)}

    def label(self) -> str:
        return f"units={self.units}"


@register
class Omoe(_ExpertOptions):
    """One-gate mixture of experts: K experts, one softmax gate shared by all tasks."""

    type: Literal["omoe"] = "omoe"
    experts: PositiveInt = Field(description="Number of experts K.")
    paper = "Ma et al., Modeling Task Relationships in Multi-task Learning with MMoE, KDD 2018 (OMoE baseline)"

    def expand(self, name, ctx):
        blocks = {
            f"{name}/experts": self._pool(self.input, self.experts),
            f"{name}/gate": self._gate(self.input, self.experts),
            f"{name}/mix": Mixture(weights=f"{name}/gate", experts=[f"{name}/experts"]),
        }
        return blocks, {t: f"{name}/mix" for t in self.task_names(ctx)}

    def label(self) -> str:
        return f"K={self.experts}, units={self.units}"


@register
class Mmoe(_ExpertOptions):
    """Multi-gate mixture of experts: K shared experts, one softmax gate per task."""

    type: Literal["mmoe"] = "mmoe"
    experts: PositiveInt = Field(description="Number of experts K.")
    paper = "Ma et al., Modeling Task Relationships in Multi-task Learning with MMoE, KDD 2018"

    def expand(self, name, ctx):
        tasks = self.task_names(ctx)
        blocks = {f"{name}/experts": self._pool(self.input, self.experts)}
        for t in tasks:
            blocks[f"{name}/gate.{t}"] = self._gate(self.input, self.experts)
            blocks[f"{name}/mix.{t}"] = Mixture(weights=f"{name}/gate.{t}", experts=[f"{name}/experts"])
        return blocks, {t: f"{name}/mix.{t}" for t in tasks}

    def label(self) -> str:
        return f"K={self.experts}, units={self.units}"


class _CgcOptions(_ExpertOptions):
    shared_experts: PositiveInt = Field(description="Number of shared experts M.")
    task_experts: PositiveInt = Field(description="Number of experts per task N.")
    paper = "Tang et al., Progressive Layered Extraction (PLE), RecSys 2020"

    def label(self) -> str:
        return f"shared={self.shared_experts}, per task={self.task_experts}, units={self.units}"


@register
class Cgc(_CgcOptions):
    """Customized Gate Control: shared experts plus experts per task; task t's gate weighs only
    [shared experts, task t's experts]. With ``shared_gate`` a gate over all experts also gives a
    ``shared`` port, the shared input of a next level (as inside PLE).
    Ports: one per task (of ``tasks``), plus ``shared`` when ``shared_gate`` is on."""

    type: Literal["cgc"] = "cgc"
    task_input: str | None = Field(
        None, description="Per-task input reference with `{task}` (defaults to `input`).")
    shared_gate: bool = Field(False, description="Also mix all experts into a `shared` port.")

    def expand(self, name, ctx):
        tasks = self.task_names(ctx)
        if self.shared_gate:
            self._no_task_named(ctx, "shared")
        m, n = self.shared_experts, self.task_experts
        blocks = {f"{name}/shared": self._pool(self.input, m)}
        for t in tasks:
            t_in = self.task_input.replace("{task}", t) if self.task_input else self.input
            blocks[f"{name}/experts.{t}"] = self._pool(t_in, n)
            blocks[f"{name}/gate.{t}"] = self._gate(t_in, m + n)
            blocks[f"{name}/mix.{t}"] = Mixture(weights=f"{name}/gate.{t}",
                                                experts=[f"{name}/shared", f"{name}/experts.{t}"])
        ports = {t: f"{name}/mix.{t}" for t in tasks}
        if self.shared_gate:
            pools = [f"{name}/shared", *(f"{name}/experts.{t}" for t in tasks)]
            blocks[f"{name}/gate.shared"] = self._gate(self.input, m + n * len(tasks))
            blocks[f"{name}/mix.shared"] = Mixture(weights=f"{name}/gate.shared", experts=pools)
            ports["shared"] = f"{name}/mix.shared"
        return blocks, ports


@register
class Ple(_CgcOptions):
    """Progressive Layered Extraction: ``levels`` CGC levels; every level but the last has a
    shared gate over all experts whose output is the next level's shared input, and task t's
    next input is its own output of this level; ``tasks`` applies to every level. Ports: one per
    task (of ``tasks``)."""

    type: Literal["ple"] = "ple"
    levels: int = Field(2, ge=1, le=16, description="Number of stacked CGC levels.")

    def expand(self, name, ctx):
        blocks = {}
        for i in range(1, self.levels + 1):
            prev = f"{name}/level{i - 1}"
            blocks[f"{name}/level{i}"] = Cgc(
                input=self.input if i == 1 else f"{prev}.shared",
                task_input=None if i == 1 else f"{prev}.{{task}}",
                shared_gate=i < self.levels, shared_experts=self.shared_experts,
                task_experts=self.task_experts, units=self.units, activation=self.activation,
                dropout=self.dropout, gate_hidden=self.gate_hidden, temperature=self.temperature,
                implementation=self.implementation, tasks=self.tasks)
        return blocks, {t: f"{name}/level{self.levels}.{t}" for t in self.task_names(ctx)}

    def label(self) -> str:
        return f"levels={self.levels}, " + super().label()
