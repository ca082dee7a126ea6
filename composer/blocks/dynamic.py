"""The dynamic-weight family: layers whose weights or scales are computed per sample from a
condition. PEPNet's Gate NU, EPNet and PPNet (and the PEPNet composite), APG's adaptive
parameters, generated-weight MLPs (the M2M meta unit) and M2M's meta attention and meta tower."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .base import Block, Out, ShapeError, expect_rank, mlp_params
from .dense import Activation
from .registry import register

PEPNET = "Chang et al., PEPNet: Parameter and Embedding Personalized Network, KDD 2023"
APG_PAPER = "Yan et al., APG: Adaptive Parameter Generation Network for CTR Prediction, NeurIPS 2022"
M2M = ("Zhang et al., Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning Approach "
       "for Advertiser Modeling (M2M), WSDM 2022")


def gate_nu_params(in_dim: int, hidden: int, units: int) -> int:
    return in_dim * hidden + hidden + hidden * units + units


def _vector(out: Out, field: str) -> int:
    expect_rank(out, 1, field, "a vector")
    return out.shape[0]


class _Dynamic(Block):
    family = "dynamic"


class _GateOptions(_Dynamic):
    gamma: float = Field(2.0, gt=0, description="Upper bound of the gate's scale: gamma * sigmoid(.).")


@register
class GateNu(_GateOptions):
    """PEPNet's gate neural unit: delta = gamma * sigmoid(W2 relu(W1 x + b1) + b2), over one
    vector or several concatenated. With ``scale`` the output is delta * scale (the vector
    ``scale`` reweighted per sample, e.g. an embedding by a scenario), else delta itself."""

    type: Literal["gate_nu"] = "gate_nu"
    input: str | list[str] = Field(description="Reference to the gate's input, or a list "
                                   "concatenated in order.")
    units: PositiveInt | None = Field(None, description="Width of delta (defaults to the width "
                                      "of `scale`).")
    hidden: PositiveInt | None = Field(None, description="Width of the relu layer (defaults to "
                                       "`units`).")
    scale: str | None = Field(None, description="Optional reference to the vector delta multiplies.")
    refs = ("input", "scale")
    paper = PEPNET

    def _dims(self, inputs) -> tuple[int, int]:
        ins = inputs["input"] if isinstance(inputs["input"], list) else [inputs["input"]]
        in_dim = sum(_vector(o, "input") for o in ins)
        width = _vector(inputs["scale"], "scale") if self.scale else None
        if self.units is None and width is None:
            raise ShapeError("gate_nu needs its output width", field="units",
                             hint="set units, or give a scale vector whose width it takes")
        if self.units is not None and width is not None and self.units != width:
            raise ShapeError(f"units is {self.units} but scale has width {width}", field="units",
                             hint="drop units (it defaults to the scale's width)")
        return in_dim, self.units or width

    def infer(self, inputs, ctx) -> Out:
        return Out((self._dims(inputs)[1],))

    def count_params(self, inputs, ctx) -> int:
        in_dim, units = self._dims(inputs)
        return gate_nu_params(in_dim, self.hidden or units, units)

    def label(self) -> str:
        return "gamma*sigmoid(MLP(x))" + (" * scale" if self.scale else "")

    def build(self, inputs, ctx):
        import keras

        from ..layers.dynamic import GateNU

        units = self.units or ctx.input_outs["scale"].shape[0]
        x = inputs["input"]
        gate = GateNU(units, hidden=self.hidden, gamma=self.gamma, name=ctx.layer_name())(
            x if isinstance(x, list) else [x])
        if not self.scale:
            return gate
        return keras.layers.Multiply(name=ctx.layer_name("scaled"))([gate, inputs["scale"]])


@register
class Epnet(_GateOptions):
    """EPNet: the shared embedding E reweighted per domain, delta * E with
    delta = GateNU([domain, stop_gradient(E)]). E trains only through the product, never
    through the gate (PEPNet section 3.3)."""

    type: Literal["epnet"] = "epnet"
    domain: str = Field(description="Reference to the domain (scenario) features' embedding.")
    input: str = Field(description="Reference to the shared embedding E (a vector).")
    hidden: PositiveInt | None = Field(None, description="Width of the gate's relu layer "
                                       "(defaults to the width of E).")
    refs = ("domain", "input")
    paper = PEPNET

    def infer(self, inputs, ctx) -> Out:
        _vector(inputs["domain"], "domain")
        return Out((_vector(inputs["input"], "input"),))

    def count_params(self, inputs, ctx) -> int:
        d = inputs["input"].shape[0]
        return gate_nu_params(inputs["domain"].shape[0] + d, self.hidden or d, d)

    def label(self) -> str:
        return "GateNU([domain, sg(E)]) * E"

    def build(self, inputs, ctx):
        from ..layers.dynamic import EPNet

        return EPNet(hidden=self.hidden, gamma=self.gamma, name=ctx.layer_name())(
            [inputs["domain"], inputs["input"]])


class _PpnetOptions(_GateOptions):
    persona: str = Field(description="Reference to the persona features' embedding (user, item, "
                         "author ids).")
    units: list[PositiveInt] = Field(min_length=1, description="Widths of the gated hidden layers.")
    gate_hidden: PositiveInt | None = Field(None, description="Width of each gate's relu layer "
                                            "(defaults to its layer's width).")
    activation: Activation = Field("relu", description="Activation of the hidden layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each gated layer.")
    paper = PEPNET

    def _tower_params(self, persona: int, d: int) -> int:
        total, prev = 0, d
        for width in self.units:
            total += prev * width + width + gate_nu_params(persona + d, self.gate_hidden or width, width)
            prev = width
        return total + prev + 1


@register
class Ppnet(_PpnetOptions):
    """A PPNet task tower: every hidden layer is scaled by its own Gate NU over
    [persona, stop_gradient(input)], H^{l+1} = delta^(l) * f_l(H^l), then one linear unit gives
    a logit. Stamp it with ``for_each: task`` for one tower per task. The paper splits one gate
    output across all towers; here each tower layer has its own Gate NU, which keeps a stamped
    tower self-contained. The gates never train ``input`` (PEPNet section 3.4)."""

    type: Literal["ppnet"] = "ppnet"
    input: str = Field(description="Reference to the tower's input (e.g. EPNet's output).")
    refs = ("persona", "input")

    def infer(self, inputs, ctx) -> Out:
        _vector(inputs["persona"], "persona")
        _vector(inputs["input"], "input")
        return Out((1,), "logit")

    def count_params(self, inputs, ctx) -> int:
        return self._tower_params(inputs["persona"].shape[0], inputs["input"].shape[0])

    def label(self) -> str:
        return f"units={self.units}, gated -> logit"

    def build(self, inputs, ctx):
        from ..layers.dynamic import PPNetTower

        return PPNetTower(self.units, gate_hidden=self.gate_hidden, gamma=self.gamma,
                          activation=self.activation, dropout=self.dropout,
                          name=ctx.layer_name())([inputs["persona"], inputs["input"]])


@register
class Pepnet(_PpnetOptions):
    """PEPNet: EPNet on the shared embedding, then one PPNet tower per task over its output.
    Ports: one logit per task, so ``outputs: "name.{task}"``."""

    type: Literal["pepnet"] = "pepnet"
    domain: str = Field(description="Reference to the domain (scenario) features' embedding.")
    input: str = Field(description="Reference to the shared embedding E (a vector).")
    epnet_hidden: PositiveInt | None = Field(None, description="Width of EPNet's gate relu layer "
                                             "(defaults to the width of E).")
    refs = ("domain", "persona", "input")
    composite = True

    def expand(self, name, ctx):
        blocks = {f"{name}/epnet": Epnet(domain=self.domain, input=self.input,
                                         hidden=self.epnet_hidden, gamma=self.gamma)}
        for t in ctx.blueprint.task_names:
            blocks[f"{name}/tower.{t}"] = Ppnet(
                persona=self.persona, input=f"{name}/epnet", units=self.units,
                gate_hidden=self.gate_hidden, gamma=self.gamma, activation=self.activation,
                dropout=self.dropout)
        return blocks, {t: f"{name}/tower.{t}" for t in ctx.blueprint.task_names}

    def label(self) -> str:
        return f"EPNet + PPNet towers, units={self.units}"


@register
class Apg(_Dynamic):
    """APG adaptive-parameter layers: each layer maps width N to M with the per-sample weight
    W = U S V (U: N x rank and V: rank x M shared, S: rank x rank generated from a condition by
    an MLP), computed as ((x U) S) V + b, so no N x M matrix exists per sample.
    ``strategy`` says where the condition comes from: ``group`` (scenario features) and ``mix``
    (any chosen features) read the ``condition`` reference; ``self`` uses each layer's own input.
    ``overparam: P`` trains U = U1 U2 and V = V1 V2 through an inner width P."""

    type: Literal["apg"] = "apg"
    input: str = Field(description="Reference to the layers' input (a vector).")
    condition: str | None = Field(None, description="Reference to the condition z (strategies "
                                  "group and mix).")
    strategy: Literal["group", "mix", "self"] | None = Field(
        None, description="group: z = scenario features; mix: z = chosen features; self: z = "
        "each layer's own input. Default: group with a condition, self without.")
    units: list[PositiveInt] = Field(min_length=1, description="Output width of each APG layer.")
    rank: PositiveInt = Field(16, description="Width K of the generated K x K matrix S.")
    overparam: PositiveInt | None = Field(None, description="Inner width P of the "
                                          "over-parameterised shared factors (none: plain U, V).")
    generator_hidden: list[PositiveInt] = Field(default_factory=list, description="Hidden widths "
                                                "of each layer's S generator.")
    activation: Activation = Field("relu", description="Activation after every layer.")
    refs = ("input", "condition")
    paper = APG_PAPER

    @property
    def _strategy(self) -> str:
        return self.strategy or ("group" if self.condition else "self")

    def _check(self, inputs) -> tuple[int, int | None]:
        d = _vector(inputs["input"], "input")
        if self._strategy == "self":
            if self.condition:
                raise ShapeError("strategy 'self' conditions on the layer's own input, but a "
                                 "condition is given", field="condition",
                                 hint="drop condition, or use strategy: group (or mix)")
            return d, None
        if not self.condition:
            raise ShapeError(f"strategy '{self.strategy}' needs a condition", field="condition",
                             hint="reference the condition features' embedding, or use strategy: self")
        return d, _vector(inputs["condition"], "condition")

    def infer(self, inputs, ctx) -> Out:
        self._check(inputs)
        return Out((self.units[-1],))

    def count_params(self, inputs, ctx) -> int:
        d, cond = self._check(inputs)
        k, p = self.rank, self.overparam
        total, prev = 0, d
        for width in self.units:
            factors = (prev * p + p * k + k * p + p * width) if p else (prev * k + k * width)
            generator = mlp_params(prev if cond is None else cond, [*self.generator_hidden, k * k])
            total += factors + width + generator
            prev = width
        return total

    def label(self) -> str:
        over = f", overparam={self.overparam}" if self.overparam else ""
        return f"units={self.units}, K={self.rank}, {self._strategy}{over}"

    def build(self, inputs, ctx):
        from ..layers.dynamic import APG

        layer = APG(self.units, rank=self.rank, self_condition=self._strategy == "self",
                    overparam=self.overparam, generator_hidden=self.generator_hidden,
                    activation=self.activation, name=ctx.layer_name())
        if self._strategy == "self":
            return layer(inputs["input"])
        return layer([inputs["input"], inputs["condition"]])


@register
class DynamicMlp(_Dynamic):
    """An MLP whose weights and biases are generated per sample: a Dense generator maps the
    condition to one vector holding every kernel and bias, which is cut and reshaped into the
    layers (e.g. input 32, units [16, 8]: 32*16 + 16 + 16*8 + 8 = 664 numbers) and applied to
    ``input``."""

    type: Literal["dynamic_mlp"] = "dynamic_mlp"
    condition: str = Field(description="Reference to the condition the weights are generated from.")
    input: str = Field(description="Reference to the vector the generated MLP is applied to.")
    units: list[PositiveInt] = Field(min_length=1, description="Widths of the generated layers.")
    activation: Activation = Field("relu", description="Activation of the generated layers.")
    output_activation: Activation | Literal["same"] = Field(
        "same", description="same: the last layer like the others; else its own activation.")
    refs = ("condition", "input")
    paper = "Ha et al., HyperNetworks, ICLR 2017"

    def infer(self, inputs, ctx) -> Out:
        _vector(inputs["condition"], "condition")
        _vector(inputs["input"], "input")
        return Out((self.units[-1],))

    def count_params(self, inputs, ctx) -> int:
        generated = mlp_params(inputs["input"].shape[0], self.units)
        return (inputs["condition"].shape[0] + 1) * generated

    def label(self) -> str:
        return f"generated units={self.units}"

    def build(self, inputs, ctx):
        from ..layers.dynamic import DynamicMLP

        return DynamicMLP(self.units, activation=self.activation,
                          output_activation=self.output_activation,
                          name=ctx.layer_name())([inputs["condition"], inputs["input"]])


@register
class MetaUnit(DynamicMlp):
    """M2M's meta unit: the same generated-weight MLP as ``dynamic_mlp``, conditioned on the
    scenario representation (an MLP over scenario and e.g. user features)."""

    type: Literal["meta_unit"] = "meta_unit"
    paper = M2M


@register
class MetaAttention(_Dynamic):
    """M2M meta attention: task t's weights over experts, a_{t,i} = softmax_i(meta([E_i, T_t]))
    with a learned task embedding T_t and a meta unit whose weights come from the scenario
    representation; output R_t = sum_i a_{t,i} E_i. Stamp it with ``for_each: task``: each copy
    learns its own T_t. The paper's expert views pool sequence features with multi-head
    attention; Composer has no sequence features yet, so the views here are an ``expert_pool``
    over the flat features."""

    type: Literal["meta_attention"] = "meta_attention"
    experts: str = Field(description="Reference to an expert pool (the expert views E_i).")
    scenario: str = Field(description="Reference to the scenario representation.")
    task_dim: PositiveInt = Field(8, description="Width of the learned task embedding T_t.")
    units: list[PositiveInt] = Field(default_factory=lambda: [16], description="Hidden widths of "
                                     "the meta unit before its score.")
    activation: Activation = Field("relu", description="Activation of the meta unit.")
    refs = ("experts", "scenario")
    paper = M2M

    def _dims(self, inputs) -> tuple[int, int, int]:
        pool = inputs["experts"]
        if pool.kind != "experts":
            raise ShapeError(f"experts is not an expert pool (shape {pool})", field="experts",
                             hint="reference an expert_pool block")
        return pool.shape[0], pool.shape[1], _vector(inputs["scenario"], "scenario")

    def infer(self, inputs, ctx) -> Out:
        _, d, _ = self._dims(inputs)
        return Out((d,))

    def count_params(self, inputs, ctx) -> int:
        _, d, s = self._dims(inputs)
        return self.task_dim + (s + 1) * mlp_params(d + self.task_dim, [*self.units, 1])

    def label(self) -> str:
        return f"softmax(meta([E_i, T])), task_dim={self.task_dim}"

    def build(self, inputs, ctx):
        from ..layers.dynamic import MetaAttention as Layer

        return Layer(task_dim=self.task_dim, units=self.units, activation=self.activation,
                     name=ctx.layer_name())([inputs["experts"], inputs["scenario"]])


@register
class MetaTower(_Dynamic):
    """M2M meta tower: ``layers`` meta units with residual connections,
    h_{l+1} = h_l + meta_l(h_l), each a generated d x d layer conditioned on the scenario
    representation, then one linear unit giving a logit."""

    type: Literal["meta_tower"] = "meta_tower"
    input: str = Field(description="Reference to the tower's input (e.g. meta attention's R_t).")
    scenario: str = Field(description="Reference to the scenario representation.")
    layers: int = Field(2, ge=1, le=16, description="Number of residual meta units.")
    activation: Activation = Field("relu", description="Activation of each meta unit.")
    refs = ("input", "scenario")
    paper = M2M

    def infer(self, inputs, ctx) -> Out:
        _vector(inputs["input"], "input")
        _vector(inputs["scenario"], "scenario")
        return Out((1,), "logit")

    def count_params(self, inputs, ctx) -> int:
        d, s = inputs["input"].shape[0], inputs["scenario"].shape[0]
        return self.layers * (s + 1) * (d * d + d) + d + 1

    def label(self) -> str:
        return f"{self.layers} residual meta units -> logit"

    def build(self, inputs, ctx):
        from ..layers.dynamic import MetaTower as Layer

        return Layer(layers=self.layers, activation=self.activation, name=ctx.layer_name())(
            [inputs["input"], inputs["scenario"]])
