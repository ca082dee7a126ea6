"""Multi-scenario mixtures beyond the seeds: HAMUR's hyper adapters and M3oE's three expert
mixtures, built from the expert, dense and scenario blocks plus four primitives of their own
(``scenario_mlp``, ``hyper_adapter``, ``scenario_gate``, ``m3oe_fusion``); their Keras layers
are in :mod:`composer.layers.scenario_mixture`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from .base import Block, Out, ShapeError, expect_rank, mlp_params
from .dense import Activation, Mlp, StopGradient, Tower
from .experts import ExpertPool, Lowering, Mixture
from .registry import register
from .scenario import _ROUTING_DOC, Routing, SplitMerge, _ScenarioBlock

HAMUR = ("Li, Yan, Zhao, Wang, Chen, Guo, Tang, HAMUR: Hyper Adapter for Multi-Domain "
         "Recommendation, CIKM 2023")
M3OE = ("Zhang, Liu, Yu, Cai, Zhao, Zhang, Liu, Liu, Zhao, Hu, Jiang, Gai, M3oE: Multi-Domain "
        "Multi-Task Mixture-of Experts Recommendation Framework, SIGIR 2024")


@register
class ScenarioMlp(_ScenarioBlock):
    """One hidden MLP per scenario, each sample through its own scenario's layers, in batch
    order (``split_merge`` without its logit): HAMUR's per-domain backbone."""

    type: Literal["scenario_mlp"] = "scenario_mlp"
    input: str = Field(description="Reference to the input (a vector).")
    units: list[PositiveInt] = Field(min_length=1, description="Widths of each scenario's layers.")
    activation: Activation = Field("relu", description="Activation of every layer.")
    routing: Routing = Field("auto", description=_ROUTING_DOC)
    refs = ("input",)
    routes_by_scenario = True
    paper = HAMUR

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        ctx.scenario_count()
        return Out((self.units[-1],))

    def count_params(self, inputs, ctx) -> int:
        return ctx.scenario_count() * mlp_params(inputs["input"].shape[0], self.units)

    def label(self) -> str:
        return f"per-scenario MLP, units={self.units}"

    def build(self, inputs, ctx):
        from ..layers.scenario import ScenarioTowers

        return ScenarioTowers(ctx.scenario_count(), list(self.units), activation=self.activation,
                              routing=self._routing(), name=ctx.layer_name())([inputs["input"], ctx.scenario()])


@register
class HyperAdapter(_ScenarioBlock):
    """HAMUR's hyper adapter: a bottleneck adapter whose weights U_s Z V_s (down) and
    U'_s Z V'_s (up) are generated per sample from the instance matrix Z (rank x rank, the
    hyper-network's output) and the sample's own scenario factors; the up-projection is
    normalised per scenario (domain norm) and added to the input: h + DN(up(act(down(h))))."""

    type: Literal["hyper_adapter"] = "hyper_adapter"
    input: str = Field(description="Reference to the hidden vector h the adapter follows.")
    instance: str = Field(description="Reference to the instance matrix Z, flat: a vector of "
                          "width rank * rank (the hyper-network's output).")
    bottleneck: PositiveInt = Field(16, description="Width of the down-projection.")
    per_scenario: bool = Field(True, description="One set of factors U, V and biases per scenario "
                               "(a domain-specific adapter); false shares them across scenarios.")
    activation: Activation = Field("sigmoid", description="Activation between the projections "
                                   "(the official code's sigmoid).")
    domain_norm: bool = Field(True, description="Normalise the up-projection per scenario (batch "
                              "statistics in training, moving statistics at inference).")
    momentum: float = Field(0.99, gt=0, lt=1, description="Domain norm's moving-average momentum.")
    epsilon: float = Field(1e-3, gt=0, description="Domain norm's variance epsilon.")
    refs = ("input", "instance")
    routes_by_scenario = True
    paper = HAMUR

    def _dims(self, inputs) -> tuple[int, int]:
        expect_rank(inputs["input"], 1, "input", "a vector")
        expect_rank(inputs["instance"], 1, "instance", "a vector")
        square = inputs["instance"].shape[0]
        rank = round(square ** 0.5)
        if rank * rank != square:
            raise ShapeError(f"instance has width {square}, not a square rank * rank", field="instance",
                             hint="end the hyper-network with rank * rank units (e.g. 64 for rank 8)")
        return inputs["input"].shape[0], rank

    def infer(self, inputs, ctx) -> Out:
        d, _ = self._dims(inputs)
        ctx.scenario_count()
        return Out((d,))

    def count_params(self, inputs, ctx) -> int:
        (d, k), s, b = self._dims(inputs), ctx.scenario_count(), self.bottleneck
        factors = (s if self.per_scenario else 1) * (d * k + k * b + b + b * k + k * d + d)
        return factors + (2 * (1 + 2 * s) * d if self.domain_norm else 0)  # moving stats included

    def label(self) -> str:
        where = "per scenario" if self.per_scenario else "shared"
        return f"h + DN(U Z V), bottleneck={self.bottleneck}, {where}" + ("" if self.domain_norm else ", no DN")

    def build(self, inputs, ctx):
        from ..layers.scenario_mixture import HyperAdapter as Layer

        return Layer(ctx.scenario_count(), self.bottleneck, per_scenario=self.per_scenario,
                     activation=self.activation, domain_norm=self.domain_norm, momentum=self.momentum,
                     epsilon=self.epsilon, name=ctx.layer_name())(
            [inputs["input"], inputs["instance"], ctx.scenario()])


@register
class Hamur(_ScenarioBlock):
    """HAMUR: a backbone MLP (one per scenario, or shared) with a hyper adapter after the
    chosen layers; one shared hyper-network (an MLP ending in rank * rank units, ReLU on every
    layer as in the official code) turns the instance representation into the matrix Z that
    generates every adapter's weights; then one linear logit per task (per scenario with a
    per-scenario backbone). Ports: one logit per task. The official code (one task) uses
    per-domain backbones with BatchNorm and adapter factors shared across domains; BatchNorm is
    left out here (batch statistics would make a sample's output depend on its batch) and
    ``per_scenario_adapters`` chooses between the paper's domain-specific adapters (the default)
    and the code's shared ones. With several tasks the backbone and adapters are shared and each
    task has its own logit layer."""

    type: Literal["hamur"] = "hamur"
    input: str = Field(description="Reference to the backbone's input (a vector, e.g. the embedding).")
    condition: str | None = Field(None, description="Reference to the hyper-network's input, the "
                                  "instance representation (defaults to `input`).")
    units: list[PositiveInt] = Field(min_length=1, description="Widths of the backbone layers.")
    adapters_after: list[PositiveInt] | None = Field(
        None, min_length=1, description="Backbone layers (1 = the first) each followed by an "
        "adapter, ascending (default: the last layer).")
    backbone: Literal["per_scenario", "shared"] = Field("per_scenario", description="One backbone "
                                                        "per scenario (the paper's), or one shared.")
    rank: PositiveInt = Field(8, description="Size k of the k x k instance matrix Z.")
    hyper_hidden: list[PositiveInt] = Field(default_factory=lambda: [64], description="Hidden "
                                            "widths of the hyper-network before its rank * rank units.")
    bottleneck: PositiveInt = Field(16, description="Width of each adapter's down-projection.")
    per_scenario_adapters: bool = Field(True, description="Adapter factors per scenario (false: "
                                        "shared, as in the official code).")
    adapter_activation: Activation = Field("sigmoid", description="Activation inside each adapter.")
    domain_norm: bool = Field(True, description="Domain norm in each adapter.")
    activation: Activation = Field("relu", description="Activation of the backbone layers.")
    refs = ("input", "condition")
    composite = True
    takes_tasks = True
    paper = HAMUR

    @model_validator(mode="after")
    def _after_layers(self):
        after = self.adapters_after or []
        if after != sorted(set(after)) or any(i > len(self.units) for i in after):
            raise ValueError(f"adapters_after must be ascending layer numbers from 1 to "
                             f"{len(self.units)} (the backbone's layers), got {after}")
        return self

    def expand(self, name, ctx):
        ctx.scenario_count("hamur")
        after = self.adapters_after or [len(self.units)]
        blocks = {f"{name}/hyper": Mlp(input=self.condition or self.input,
                                       units=[*self.hyper_hidden, self.rank * self.rank])}
        prev, start = self.input, 0
        for i, stop in enumerate(after, start=1):
            units = self.units[start:stop]
            layer = (ScenarioMlp(input=prev, units=units, activation=self.activation)
                     if self.backbone == "per_scenario" else Mlp(input=prev, units=units, activation=self.activation))
            blocks[f"{name}/layer{i}"] = layer
            blocks[f"{name}/adapter{i}"] = HyperAdapter(
                input=f"{name}/layer{i}", instance=f"{name}/hyper", bottleneck=self.bottleneck,
                per_scenario=self.per_scenario_adapters, activation=self.adapter_activation,
                domain_norm=self.domain_norm)
            prev, start = f"{name}/adapter{i}", stop
        if start < len(self.units):
            rest = self.units[start:]
            blocks[f"{name}/top"] = (ScenarioMlp(input=prev, units=rest, activation=self.activation)
                                     if self.backbone == "per_scenario" else
                                     Mlp(input=prev, units=rest, activation=self.activation))
            prev = f"{name}/top"
        ports = {}
        for t in self.task_names(ctx):
            blocks[f"{name}/logit.{t}"] = (SplitMerge(input=prev) if self.backbone == "per_scenario"
                                           else Tower(input=prev))
            ports[t] = f"{name}/logit.{t}"
        return blocks, ports

    def label(self) -> str:
        return (f"{self.backbone} backbone {self.units}, adapters after {self.adapters_after or [len(self.units)]}, "
                f"rank={self.rank}")


@register
class ScenarioGate(_ScenarioBlock):
    """One softmax gate per scenario over K experts: a sample of scenario s is weighed by
    softmax((x W_s + c_s) / temperature). Stamped per task, it is M3oE's gate per (scenario,
    task)."""

    type: Literal["scenario_gate"] = "scenario_gate"
    input: str = Field(description="Reference to the gate's input (a vector).")
    experts: PositiveInt = Field(description="Number of experts the weights cover.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature (>1 flattens).")
    routing: Routing = Field("auto", description=_ROUTING_DOC)
    refs = ("input",)
    routes_by_scenario = True
    paper = M3OE

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        ctx.scenario_count()
        return Out((self.experts,), "weights")

    def count_params(self, inputs, ctx) -> int:
        return ctx.scenario_count() * (inputs["input"].shape[0] + 1) * self.experts

    def label(self) -> str:
        return f"K={self.experts}, one gate per scenario" + (f", T={self.temperature}" if self.temperature != 1 else "")

    def build(self, inputs, ctx):
        from ..layers.scenario_mixture import ScenarioGate as Layer

        return Layer(ctx.scenario_count(), self.experts, temperature=self.temperature,
                     routing=self._routing(), name=ctx.layer_name())([inputs["input"], ctx.scenario()])


@register
class M3oeFusion(_ScenarioBlock):
    """M3oE's two-level fusion for one task: level 1 balances the domain experts between the
    sample's own scenario (weight β_d) and the others ((1 − β_d)/(S − 1) each), and the task
    experts between this task (β_t) and the others; level 2 sums the shared mixture, the domain
    mixture and the task mixture with weights α = softmax of three learned logits. α and β are
    trained with the model (the paper searches them by bilevel AutoML; see ``m3oe``)."""

    type: Literal["m3oe_fusion"] = "m3oe_fusion"
    shared: str = Field(description="Reference to the gated mixture of the shared experts (a vector).")
    domain_experts: str = Field(description="Reference to the domain experts: an expert pool with "
                                "one expert per scenario, in scenario order.")
    task_experts: str = Field(description="Reference to the task experts: an expert pool with one "
                              "expert per task.")
    task_index: int = Field(ge=0, description="This task's own expert in `task_experts` (0 = the first).")
    domain_balance: bool = Field(True, description="Learn β_d; false reads only the sample's own "
                                 "domain expert.")
    task_balance: bool = Field(True, description="Learn β_t; false reads only this task's expert.")
    refs = ("shared", "domain_experts", "task_experts")
    routes_by_scenario = True
    paper = M3OE

    def _sizes(self, inputs, ctx) -> tuple[int, int, int]:
        expect_rank(inputs["shared"], 1, "shared", "a vector")
        width = inputs["shared"].shape[0]
        for fname in ("domain_experts", "task_experts"):
            pool = inputs[fname]
            if pool.kind != "experts":
                raise ShapeError(f"{fname} is not an expert pool (shape {pool})", field=fname,
                                 hint="reference an expert_pool block")
            if pool.shape[1] != width:
                raise ShapeError(f"{fname} experts have width {pool.shape[1]} but shared has {width}",
                                 field=fname, hint="give every pool the same last unit")
        s, t = ctx.scenario_count(), inputs["task_experts"].shape[0]
        if inputs["domain_experts"].shape[0] != s:
            raise ShapeError(f"domain_experts holds {inputs['domain_experts'].shape[0]} experts for "
                             f"{s} scenarios", field="domain_experts", hint=f"give that pool experts: {s}")
        if self.task_index >= t:
            raise ShapeError(f"task_index {self.task_index} but task_experts holds {t} experts",
                             field="task_index", hint=f"use 0 to {t - 1}")
        return width, s, t

    def infer(self, inputs, ctx) -> Out:
        return Out((self._sizes(inputs, ctx)[0],))

    def count_params(self, inputs, ctx) -> int:
        _, s, t = self._sizes(inputs, ctx)
        return 3 + (2 if self.domain_balance and s > 1 else 0) + (2 if self.task_balance and t > 1 else 0)

    def label(self) -> str:
        return "α·[shared, β_d-domain, β_t-task]"

    def build(self, inputs, ctx):
        from ..layers.scenario_mixture import M3oEFusion

        return M3oEFusion(self.task_index, domain_balance=self.domain_balance,
                          task_balance=self.task_balance, name=ctx.layer_name())(
            [inputs["shared"], inputs["domain_experts"], inputs["task_experts"], ctx.scenario()])


@register
class M3oe(_ScenarioBlock):
    """M3oE: three expert mixtures over one input. Shared experts weighed by one gate per
    (scenario, task), whose input passes a stop-gradient as in the official code; one domain
    expert per scenario; one task expert per task; fused per task by ``m3oe_fusion``. Ports: one
    vector per task; put a tower per (scenario, task) on each (``split_merge``, ``for_each:
    task``).

    What is done and what the paper does: the paper (and its code) learns the fusion weights α
    and the balance weights β by a bilevel AutoML search (DARTS-style, a separate optimiser on
    held-out batches); here they are softmax-normalised weights trained jointly with the model
    on the training loss (a single-level approximation; the official code's main optimiser in
    fact trains them too, and its weights are independent sigmoids, not normalised). Each task
    has its own α and β (the code shares one set across tasks). The official code's bottom (a
    STAR layer) is not part of this block: put a ``star_fcn`` before it."""

    type: Literal["m3oe"] = "m3oe"
    input: str = Field(description="Reference to the shared input of every expert (a vector).")
    experts: PositiveInt = Field(4, description="Number of shared experts K.")
    units: list[PositiveInt] = Field(min_length=1, description="Hidden widths of every expert.")
    activation: Activation = Field("relu", description="Activation of the expert layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the experts.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of the gates.")
    gate_stop_gradient: bool = Field(True, description="The gates read the input through a "
                                     "stop-gradient (the official code's detach).")
    domain_balance: bool = Field(True, description="Learn the own-versus-other balance of the "
                                 "domain experts; false: each sample reads its own domain expert only.")
    task_balance: bool = Field(True, description="Learn the own-versus-other balance of the task "
                               "experts; false: each task reads its own task expert only.")
    implementation: Lowering = Field("auto", description="Lowering of every expert pool.")
    refs = ("input",)
    composite = True
    takes_tasks = True
    paper = M3OE

    def _pool(self, k: int) -> ExpertPool:
        return ExpertPool(input=self.input, experts=k, units=self.units, activation=self.activation,
                          dropout=self.dropout, implementation=self.implementation)

    def expand(self, name, ctx):
        s, tasks = ctx.scenario_count("m3oe"), self.task_names(ctx)
        blocks = {f"{name}/shared": self._pool(self.experts), f"{name}/domain": self._pool(s),
                  f"{name}/task": self._pool(len(tasks))}
        gate_in = self.input
        if self.gate_stop_gradient:
            gate_in = f"{name}/detached"
            blocks[gate_in] = StopGradient(input=self.input)
        for i, t in enumerate(tasks):
            blocks[f"{name}/gate.{t}"] = ScenarioGate(input=gate_in, experts=self.experts,
                                                      temperature=self.temperature)
            blocks[f"{name}/mix.{t}"] = Mixture(weights=f"{name}/gate.{t}", experts=[f"{name}/shared"])
            blocks[f"{name}/fusion.{t}"] = M3oeFusion(
                shared=f"{name}/mix.{t}", domain_experts=f"{name}/domain", task_experts=f"{name}/task",
                task_index=i, domain_balance=self.domain_balance, task_balance=self.task_balance)
        return blocks, {t: f"{name}/fusion.{t}" for t in tasks}

    def label(self) -> str:
        return f"shared K={self.experts} + domain + task experts, units={self.units}"
