"""Scenario-adaptive blocks: SAR-Net (scenario-aware attention, scenario transform, scenario
experts with a scenario gate), AdaSparse (a domain-pruned MLP with a sparsity regulariser) and
AdaptDHM (samples clustered into distribution groups, one tower per group).

SAR-Net's parts route by scenario (each sample uses its own scenario's transform and experts);
AdaSparse conditions on the scenario embedding; AdaptDHM routes by a learned clustering, not by
the scenario id. The Keras layers are in :mod:`composer.layers.scenario_adaptive`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .base import Block, Out, ShapeError, expect_rank, mlp_params
from .dense import Activation
from .registry import register

SARNET = ("Shen et al., SAR-Net: A Scenario-Aware Ranking Network for Personalized Fair "
          "Recommendation in Hundreds of Travel Scenarios, CIKM 2021")
ADASPARSE = ("Yang et al., AdaSparse: Learning Adaptively Sparse Structures for Multi-Domain "
             "Click-Through Rate Prediction, CIKM 2022")
ADAPTDHM = ("Li et al., AdaptDHM: Adaptive Distribution Hierarchical Model for Multi-Domain CTR "
            "Prediction, 2022 (arXiv 2211.12105)")


def _vector(out: Out, field: str) -> int:
    expect_rank(out, 1, field, "a vector")
    return out.shape[0]


class _Adaptive(Block):
    family = "scenario"


@register
class ScenarioAttention(_Adaptive):
    """SAR-Net's scenario-aware attention: the scenario embedding enters the query and every
    key, q = W_q [s, c], k_j = W_k [e_j, s], v_j = W_v e_j, output the heads' softmax-weighted
    sums of v_j, concatenated. Over a behaviour sequence (its padding masked) or, where the
    blueprint has no sequences, over the feature fields (`embed` with mode: fields)."""

    type: Literal["scenario_attention"] = "scenario_attention"
    input: str = Field(description="Reference to the behaviours (a `sequence` block) or the feature "
                       "fields (`embed` with mode: fields).")
    scenario: str = Field(description="Reference to the scenario embedding (a vector).")
    candidate: str | None = Field(None, description="Optional reference to the target item's "
                                  "embedding, added to the query.")
    heads: PositiveInt = Field(2, le=64, description="Attention heads.")
    key_dim: PositiveInt = Field(8, description="Width of each head's queries, keys and values.")
    refs = ("input", "scenario", "candidate")
    paper = SARNET

    def _dims(self, inputs) -> tuple[int, int, int, int]:
        items = inputs["input"]
        if items.kind not in ("sequence", "fields") or len(items.shape) != 2:
            raise ShapeError(f"expects a sequence (B, L, d) or fields (B, F, d), got {items} ({items.kind})",
                             field="input", hint="reference a `sequence` block, or an `embed` block "
                             "with mode: fields")
        c = _vector(inputs["candidate"], "candidate") if self.candidate else 0
        return items.shape[0], items.shape[1], _vector(inputs["scenario"], "scenario"), c

    def infer(self, inputs, ctx) -> Out:
        self._dims(inputs)
        return Out((self.heads * self.key_dim,))

    def count_params(self, inputs, ctx) -> int:
        _, d, s, c = self._dims(inputs)
        hk = self.heads * self.key_dim
        return (s + c + 1) * hk + (d + s + 1) * hk + (d + 1) * hk

    def label(self) -> str:
        return f"scenario in query/keys, heads={self.heads}, key_dim={self.key_dim}"

    def build(self, inputs, ctx):
        from ..layers.scenario_adaptive import ScenarioAwareAttention

        masked = ctx.input_outs["input"].kind == "sequence"
        ins = [inputs["input"], inputs["scenario"]]
        if self.candidate:
            ins.append(inputs["candidate"])
        if masked:
            ins.append(ctx.mask_of("input"))
        return ScenarioAwareAttention(self.heads, self.key_dim, candidate=bool(self.candidate),
                                      masked=masked, name=ctx.layer_name())(ins)


@register
class ScenarioTransform(_Adaptive):
    """SAR-Net's scenario-specific linear transformation: x ⊙ w_s + b_s with the sample's own
    scenario's scale and shift (starting at one and zero)."""

    type: Literal["scenario_transform"] = "scenario_transform"
    input: str = Field(description="Reference to the input (a vector).")
    refs = ("input",)
    routes_by_scenario = True
    paper = SARNET

    def infer(self, inputs, ctx) -> Out:
        _vector(inputs["input"], "input")
        ctx.scenario_count()
        return inputs["input"]

    def count_params(self, inputs, ctx) -> int:
        return 2 * ctx.scenario_count() * inputs["input"].shape[0]

    def label(self) -> str:
        return "x ⊙ w_s + b_s"

    def build(self, inputs, ctx):
        from ..layers.scenario_adaptive import ScenarioTransform as Layer

        return Layer(ctx.scenario_count(), name=ctx.layer_name())([inputs["input"], ctx.scenario()])


@register
class ScenarioExperts(_Adaptive):
    """SAR-Net's experts: `shared` experts for every sample plus `specific` experts per scenario,
    of which a sample uses only its own scenario's; a gate over those experts whose weights come
    from the gate input (the scenario embedding) mixes them into one vector."""

    type: Literal["scenario_experts"] = "scenario_experts"
    input: str = Field(description="Reference to the experts' input (a vector).")
    gate: str = Field(description="Reference to the gate's input (the scenario embedding, a vector).")
    shared: PositiveInt = Field(4, description="Number of shared experts.")
    specific: PositiveInt = Field(2, description="Number of experts per scenario.")
    units: list[PositiveInt] = Field(min_length=1, description="Widths of each expert's layers.")
    activation: Activation = Field("relu", description="Activation of the expert layers.")
    refs = ("input", "gate")
    routes_by_scenario = True
    paper = SARNET

    def infer(self, inputs, ctx) -> Out:
        _vector(inputs["input"], "input")
        _vector(inputs["gate"], "gate")
        ctx.scenario_count()
        return Out((self.units[-1],))

    def count_params(self, inputs, ctx) -> int:
        experts = self.shared + ctx.scenario_count() * self.specific
        k = self.shared + self.specific
        return experts * mlp_params(inputs["input"].shape[0], self.units) + (inputs["gate"].shape[0] + 1) * k

    def label(self) -> str:
        return f"{self.shared} shared + {self.specific} per scenario, units={self.units}, gate from scenario"

    def build(self, inputs, ctx):
        from ..layers.scenario_adaptive import ScenarioExperts as Layer

        return Layer(ctx.scenario_count(), shared=self.shared, specific=self.specific, units=list(self.units),
                     activation=self.activation, name=ctx.layer_name())(
            [inputs["input"], inputs["gate"], ctx.scenario()])


@register
class Adasparse(_Adaptive):
    """AdaSparse: an MLP whose every neuron is scaled by a factor pi in [0, beta] (scaling),
    {0, 1} (binarization) or soft-thresholded (fusion) from a lightweight pruner over the
    domain-aware condition, so each domain learns its own sparse sub-network; a regulariser
    pulls each layer's pruned fraction (pi < epsilon) toward `target_sparsity`.
    `composer inspect` reports the pruned fraction per scenario and layer."""

    type: Literal["adasparse"] = "adasparse"
    input: str = Field(description="Reference to the MLP's input (a vector).")
    condition: str = Field(description="Reference to the domain-aware embedding the pruners read "
                           "(e.g. the scenario embedding).")
    units: list[PositiveInt] = Field(min_length=1, description="Widths of the pruned layers.")
    activation: Activation = Field("relu", description="Activation of every layer.")
    form: Literal["scaling", "binarization", "fusion"] = Field(
        "scaling", description="scaling: pi = beta·σ(v); binarization: pi = 1[v ≥ 0] (straight-through "
        "σ(alpha·v)); fusion: beta·σ(alpha·v), 0 below epsilon.")
    beta: float = Field(1.0, gt=0, le=10, description="Upper bound of pi (scaling, fusion).")
    alpha: float = Field(1.0, gt=0, description="Sharpness of σ(alpha·v) (binarization, fusion).")
    epsilon: float = Field(0.1, gt=0, lt=1, description="A factor below it is a pruned neuron "
                           "(fusion sets it to 0).")
    target_sparsity: float = Field(0.3, ge=0, lt=1, description="Pruned fraction per layer the "
                                   "regulariser pulls toward.")
    tolerance: float = Field(0.05, ge=0, lt=1, description="No pull while the pruned fraction is "
                             "this close to the target.")
    sparsity_weight: float = Field(0.01, ge=0, description="Weight of the sparsity regulariser "
                                   "(0: none).")
    refs = ("input", "condition")
    paper = ADASPARSE

    def infer(self, inputs, ctx) -> Out:
        _vector(inputs["input"], "input")
        _vector(inputs["condition"], "condition")
        return Out((self.units[-1],))

    def count_params(self, inputs, ctx) -> int:
        c = inputs["condition"].shape[0]
        return mlp_params(inputs["input"].shape[0], self.units) + sum((c + 1) * u for u in self.units)

    def label(self) -> str:
        return f"units={self.units}, {self.form} pruner, target {self.target_sparsity:g}"

    def build(self, inputs, ctx):
        from ..layers.scenario_adaptive import AdaSparseMLP

        return AdaSparseMLP(list(self.units), activation=self.activation, form=self.form, beta=self.beta,
                            alpha=self.alpha, epsilon=self.epsilon, target=self.target_sparsity,
                            tolerance=self.tolerance, sparsity_weight=self.sparsity_weight,
                            name=ctx.layer_name())([inputs["input"], inputs["condition"]])


@register
class Adaptdhm(_Adaptive):
    """AdaptDHM: samples clustered into `clusters` distribution groups by the nearest of learned
    unit-norm centroids (non-trainable, moved by an EMA of each training batch's soft
    assignments), whatever their scenario; each group has its own tower (star: W_k ⊙ W, or
    separate MLPs). Routing reads the representation through a stop-gradient and uses the
    centroids as they stood before the batch."""

    type: Literal["adaptdhm"] = "adaptdhm"
    input: str = Field(description="Reference to the towers' input (a vector).")
    route: str | None = Field(None, description="Reference to the representation clustered "
                              "(default: the input).")
    clusters: PositiveInt = Field(4, ge=2, le=64, description="Number of distribution groups.")
    units: list[PositiveInt] = Field(min_length=1, description="Hidden widths of each tower.")
    activation: Activation = Field("relu", description="Activation of the hidden layers.")
    tower: Literal["star", "separate"] = Field("star", description="star: cluster weights ⊙ shared "
                                               "weights; separate: one MLP per cluster.")
    logit: bool = Field(True, description="End with a one-unit linear layer (a logit).")
    momentum: float = Field(0.99, ge=0, lt=1, description="Centroid EMA momentum.")
    temperature: float = Field(0.1, gt=0, description="Softmax temperature of the soft assignments.")
    refs = ("input", "route")
    paper = ADAPTDHM

    def _units(self):
        return [*self.units, 1] if self.logit else list(self.units)

    def infer(self, inputs, ctx) -> Out:
        _vector(inputs["input"], "input")
        if self.route:
            _vector(inputs["route"], "route")
        return Out((1,), "logit") if self.logit else Out((self.units[-1],))

    def count_params(self, inputs, ctx) -> int:
        towers = (self.clusters + (self.tower == "star")) * mlp_params(inputs["input"].shape[0], self._units())
        routed = inputs["route"] if self.route else inputs["input"]
        return towers + self.clusters * routed.shape[0]  # the centroids, non-trainable

    def label(self) -> str:
        return f"{self.clusters} clusters (EMA centroids), {self.tower} towers, units={self.units}" + \
            (" -> logit" if self.logit else "")

    def build(self, inputs, ctx):
        from ..layers.scenario_adaptive import DistributionTowers

        layer = DistributionTowers(self.clusters, self._units(), activation=self.activation,
                                   output_activation="linear" if self.logit else "same", tower=self.tower,
                                   momentum=self.momentum, temperature=self.temperature, name=ctx.layer_name())
        return layer([inputs["input"], inputs["route"] if self.route else inputs["input"]])
