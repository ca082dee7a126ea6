"""The multi-scenario family: blocks whose parameters depend on each sample's scenario.

Routing blocks read the batch's scenario ids (the blueprint's ``scenarios:`` section) and keep
the batch in order; see :mod:`composer.layers.scenario`. The scenario-indicator shallow tower
and STAR's auxiliary network need no routing: they are ``scenario_bias`` / ``tower`` blocks over
the scenario features, added to the main logit with ``add``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .base import Block, Out, ShapeError, expect_rank, mlp_params
from .dense import Activation, Tower
from .experts import ExpertPool, Gate, Mixture
from .registry import register

Routing = Literal["auto", "all_then_own", "per_sample"]
# What `routing: auto` picks; bench/star_routing.py measures the choice.
AUTO_ROUTING = "all_then_own"
_ROUTING_DOC = ("all_then_own: every scenario's result, each sample keeps its own (one-hot); "
                "per_sample: gather each sample's weights; auto: all_then_own (faster in "
                "bench/star_routing.py).")


class _ScenarioBlock(Block):
    family = "scenario"

    def _routing(self) -> str:
        return AUTO_ROUTING if self.routing == "auto" else self.routing


@register
class SplitMerge(_ScenarioBlock):
    """Split & Merge: each sample goes through its own scenario's tower (hidden ``units`` then one
    logit); the outputs come back in the original batch order."""

    type: Literal["split_merge"] = "split_merge"
    input: str = Field(description="Reference to the shared representation (a vector).")
    units: list[PositiveInt] = Field(default_factory=list, description="Hidden widths of each scenario's tower.")
    activation: Activation = Field("relu", description="Activation of the hidden layers.")
    routing: Routing = Field("auto", description=_ROUTING_DOC)
    refs = ("input",)
    routes_by_scenario = True
    paper = "Split & Merge scenario towers, as in FunRec's multi-scenario chapter"

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        ctx.scenario_count()
        return Out((1,), "logit")

    def count_params(self, inputs, ctx) -> int:
        return ctx.scenario_count() * mlp_params(inputs["input"].shape[0], [*self.units, 1])

    def label(self) -> str:
        return f"per-scenario towers, units={self.units} -> logit"

    def build(self, inputs, ctx):
        from ..layers.scenario import ScenarioTowers

        return ScenarioTowers(ctx.scenario_count(), [*self.units, 1], activation=self.activation,
                              output_activation="linear", routing=self._routing(),
                              name=ctx.layer_name())([inputs["input"], ctx.scenario()])


@register
class ScenarioBias(_ScenarioBlock):
    """Scenario-indicator shallow tower: scenario features through a small net to one logit,
    with dropout on that logit; ``add`` it to the main logit."""

    type: Literal["scenario_bias"] = "scenario_bias"
    input: str = Field(description="Reference to the scenario features (a vector, e.g. an embed block).")
    units: list[PositiveInt] = Field(default_factory=list, description="Hidden widths before the logit.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the scenario logit.")
    refs = ("input",)

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        return Out((1,), "logit")

    def count_params(self, inputs, ctx) -> int:
        return mlp_params(inputs["input"].shape[0], [*self.units, 1])

    def label(self) -> str:
        return f"units={self.units} -> logit, dropout={self.dropout}"

    def build(self, inputs, ctx):
        import keras

        from ..layers.dense import MLP

        logit = MLP([*self.units, 1], output_activation="linear", name=ctx.layer_name())(inputs["input"])
        return keras.layers.Dropout(self.dropout, name=ctx.layer_name("dropout"))(logit)


@register
class StarFcn(_ScenarioBlock):
    """STAR's star-topology FCN: layer weights ``W_p ⊙ W`` and biases ``b_p + b`` for the
    sample's scenario p, computed per sample in batch order. With ``logit`` a last one-unit
    linear layer gives the logit."""

    type: Literal["star_fcn"] = "star_fcn"
    input: str = Field(description="Reference to the input (a vector; usually a partitioned_norm).")
    units: list[PositiveInt] = Field(min_length=1, description="Hidden widths.")
    activation: Activation = Field("relu", description="Activation of the hidden layers.")
    logit: bool = Field(True, description="End with a one-unit linear layer (a logit).")
    routing: Routing = Field("auto", description=_ROUTING_DOC)
    refs = ("input",)
    routes_by_scenario = True
    paper = "Sheng et al., One Model to Serve All: Star Topology Adaptive Recommender, CIKM 2021"

    def _units(self):
        return [*self.units, 1] if self.logit else list(self.units)

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        ctx.scenario_count()
        return Out((1,), "logit") if self.logit else Out((self.units[-1],))

    def count_params(self, inputs, ctx) -> int:
        return (1 + ctx.scenario_count()) * mlp_params(inputs["input"].shape[0], self._units())

    def label(self) -> str:
        return f"W_p ⊙ W, units={self.units}" + (" -> logit" if self.logit else "")

    def build(self, inputs, ctx):
        from ..layers.scenario import StarFCN

        return StarFCN(ctx.scenario_count(), self._units(), activation=self.activation,
                       output_activation="linear" if self.logit else "same", routing=self._routing(),
                       name=ctx.layer_name())([inputs["input"], ctx.scenario()])


@register
class PartitionedNorm(_ScenarioBlock):
    """STAR's partitioned normalization: batch statistics per scenario in training, each
    scenario's own moving statistics at inference, scale γ ⊙ γ_p and shift β + β_p."""

    type: Literal["partitioned_norm"] = "partitioned_norm"
    input: str = Field(description="Reference to the input (a vector).")
    momentum: float = Field(0.99, gt=0, lt=1, description="Moving-average momentum.")
    epsilon: float = Field(1e-3, gt=0, description="Added to the variance.")
    refs = ("input",)
    routes_by_scenario = True
    paper = StarFcn.paper

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        ctx.scenario_count()
        return inputs["input"]

    def count_params(self, inputs, ctx) -> int:
        return 2 * (1 + 2 * ctx.scenario_count()) * inputs["input"].shape[0]  # moving stats included

    def label(self) -> str:
        return "per-scenario statistics"

    def build(self, inputs, ctx):
        from ..layers.scenario import PartitionedNorm as Layer

        return Layer(ctx.scenario_count(), momentum=self.momentum, epsilon=self.epsilon,
                     name=ctx.layer_name())([inputs["input"], ctx.scenario()])


@register
class Lhuc(_ScenarioBlock):
    """LHUC: a generator over the scenario features gives a scale in [0, 2] per field (input of
    mode `fields`) or per unit (a vector); the input is scaled and returned as one vector."""

    type: Literal["lhuc"] = "lhuc"
    input: str = Field(description="Reference to the features: (fields, dim) from `embed` with "
                       "mode: fields, or a vector.")
    condition: str = Field(description="Reference to the scenario features (a vector).")
    hidden: list[PositiveInt] = Field(default_factory=lambda: [16], description="Generator hidden widths.")
    refs = ("input", "condition")
    paper = "Swietojanski & Renals, Learning Hidden Unit Contributions, SLT 2014"

    def infer(self, inputs, ctx) -> Out:
        x = inputs["input"]
        if len(x.shape) not in (1, 2):
            raise ShapeError(f"expects fields (B, F, dim) or a vector, got {x}", field="input")
        expect_rank(inputs["condition"], 1, "condition", "a vector")
        size = 1
        for n in x.shape:
            size *= n
        return Out((size,))

    def count_params(self, inputs, ctx) -> int:
        return mlp_params(inputs["condition"].shape[0], [*self.hidden, inputs["input"].shape[0]])

    def label(self) -> str:
        return f"2·σ scales, hidden={self.hidden}"

    def build(self, inputs, ctx):
        from ..layers.scenario import Lhuc as Layer

        return Layer(hidden=list(self.hidden), name=ctx.layer_name())([inputs["input"], inputs["condition"]])


@register
class HmoeFusion(_ScenarioBlock):
    """HMoE's fusion: softmax weights over scenarios from ``input``; a sample of scenario s gets
    W_s·S_s + Σ_{j≠s} W_j·sg(S_j) over the scenario towers' probabilities S_j."""

    type: Literal["hmoe_fusion"] = "hmoe_fusion"
    input: str = Field(description="Reference to the fusion weights' input (a vector).")
    scores: list[str] = Field(min_length=2, description="One logit per scenario, in scenario order.")
    per_scenario_weights: bool = Field(False, description="One fusion-weight net per scenario.")
    refs = ("input", "scores")
    routes_by_scenario = True
    stop_gradient_refs = {"scores": "stop-grad unless own scenario"}
    paper = "Li et al., Improving Multi-Scenario Learning to Rank in E-commerce (HMoE), CIKM 2020"

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        count = ctx.scenario_count()
        if len(inputs["scores"]) != count:
            raise ShapeError(f"{len(inputs['scores'])} scores for {count} scenarios", field="scores",
                             hint="give one logit per scenario, in the order of scenarios: values")
        for i, out in enumerate(inputs["scores"]):
            if out.shape != (1,) or out.kind != "logit":
                raise ShapeError(f"scores[{i}] is {out} ({out.kind}), not a logit", field="scores",
                                 hint="point each score at a tower")
        return Out((1,), "prob")

    def count_params(self, inputs, ctx) -> int:
        s = ctx.scenario_count()
        return (s if self.per_scenario_weights else 1) * (inputs["input"].shape[0] + 1) * s

    def label(self) -> str:
        return "W_s S_s + Σ_j≠s W_j sg(S_j)" + (", weights per scenario" if self.per_scenario_weights else "")

    def build(self, inputs, ctx):
        from ..layers.scenario import HmoeFusion as Layer

        return Layer(ctx.scenario_count(), per_scenario_weights=self.per_scenario_weights,
                     name=ctx.layer_name())([inputs["input"], ctx.scenario(), *inputs["scores"]])


@register
class Hmoe(_ScenarioBlock):
    """HMoE: experts and gates (one shared gate, or one per scenario), one tower per scenario
    giving every sample a score from every scenario, fused per task by `hmoe_fusion` (stop-
    gradient on the other scenarios' scores). Ports: one per task."""

    type: Literal["hmoe"] = "hmoe"
    input: str = Field(description="Reference to the shared input (a vector).")
    experts: PositiveInt = Field(4, description="Number of experts.")
    units: list[PositiveInt] = Field(min_length=1, description="Hidden widths of each expert.")
    gate: Literal["shared", "per_scenario"] = Field("per_scenario", description="One gate for all "
                                                    "scenario towers, or one per scenario.")
    tower_units: list[PositiveInt] = Field(default_factory=lambda: [16], description="Hidden widths "
                                           "of each scenario tower.")
    fusion: Literal["shared", "per_scenario"] = Field("per_scenario", description="One fusion-weight "
                                                      "net, or one per scenario.")
    activation: Activation = Field("relu", description="Activation of experts and towers.")
    refs = ("input",)
    composite = True
    paper = HmoeFusion.paper

    def expand(self, name, ctx):
        ctx.scenario_count("hmoe")
        scenarios = ctx.blueprint.scenarios.names
        blocks = {f"{name}/experts": ExpertPool(input=self.input, experts=self.experts, units=self.units,
                                                activation=self.activation)}
        mixes = {}
        for s in scenarios if self.gate == "per_scenario" else ["all"]:
            key = f".{s}" if self.gate == "per_scenario" else ""
            blocks[f"{name}/gate{key}"] = Gate(input=self.input, experts=self.experts)
            blocks[f"{name}/mix{key}"] = Mixture(weights=f"{name}/gate{key}", experts=[f"{name}/experts"])
            mixes[s] = f"{name}/mix{key}"
        ports = {}
        for t in ctx.blueprint.task_names:
            towers = []
            for s in scenarios:
                tower = f"{name}/{t}/tower.{s}"
                blocks[tower] = Tower(input=mixes.get(s, mixes.get("all")), units=self.tower_units,
                                      activation=self.activation)
                towers.append(tower)
            blocks[f"{name}/fusion.{t}"] = HmoeFusion(input=self.input, scores=towers,
                                                      per_scenario_weights=self.fusion == "per_scenario")
            ports[t] = f"{name}/fusion.{t}"
        return blocks, ports

    def label(self) -> str:
        return f"K={self.experts}, gate {self.gate}, fusion {self.fusion}"
