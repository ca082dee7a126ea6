"""Multi-task models beyond the expert family, as blocks that compose with embed, experts,
towers and chains: DSelect-k (sparse differentiable gates), AITM (attention-based transfer along a
conversion funnel, with its calibrator), DBMTL (towers reading the relation outputs of the
tasks they depend on) and STEM (shared plus task-specific embeddings, with gradient cut from
other tasks' experts)."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, PositiveInt

from ..blueprint.errors import did_you_mean
from .base import Block, Out, ShapeError, expect_rank, mlp_params
from .dense import Activation, Add, Concat, Mlp, Tower
from .experts import ExpertPool, Gate, Lowering, Mixture, _Composite, _LOWERING_DOC
from .registry import register

DSELECT_PAPER = ("Hazimeh et al., DSelect-k: Differentiable Selection in the Mixture of Experts with "
                 "Applications to Multi-Task Learning, NeurIPS 2021")
AITM_PAPER = ("Xi et al., Modeling the Sequential Dependence among Audience Multi-step Conversions "
              "with Multi-task Learning in Targeted Display Advertising (AITM), KDD 2021")
DBMTL_PAPER = ("Alibaba's Deep Bayesian Multi-Target Learning (DBMTL) as EasyRec implements it "
               "(easy_rec/python/model/dbmtl.py; easyrec.readthedocs.io/en/latest/models/dbmtl.html)")
STEM_PAPER = ("Su et al., STEM: Unleashing the Power of Embeddings for Multi-task Recommendation, "
              "AAAI 2024")


def _template(ref: str | None, task: str, default: str) -> str:
    return ref.replace("{task}", task) if ref else default


def _check_templates(block, ctx, *fields: str) -> None:
    """A `{task}` template field must hold the placeholder (else every task reads one input)."""
    for name in fields:
        value = getattr(block, name)
        if value is not None and "{task}" not in value:
            raise ShapeError(f"{name} '{value}' has no '{{task}}': every task would read the same input",
                             hint=f"write {name}: \"{value}.{{task}}\" (one input per task), or use input")


def _check_dselect(n: int, k: int) -> None:
    if n < 2 or n & (n - 1):
        low = 2 ** max(1, math.floor(math.log2(n)))
        raise ShapeError(f"experts {n} is not a power of 2: a selector's binary code over "
                         f"m = ceil(log2 {n}) bits would also reach {2 ** max(1, math.ceil(math.log2(n))) - n} "
                         "expert(s) that do not exist", field="experts", hint=f"use {low} or {low * 2} experts")
    if k > n:
        raise ShapeError(f"k {k} is more than the {n} experts", field="k",
                         hint=f"k selects at most k of the experts: use k <= {n}")


# -- DSelect-k ------------------------------------------------------------------------------
@register
class DselectGate(Block):
    """DSelect-k's gate over n experts: k single-expert selectors, each a binary code over
    m = log2(n) smooth-step bits read from the input, combined by a softmax over the selectors;
    the weights sum to 1 and reach at most k non-zeros once the bits saturate. With
    `entropy_weight` the selectors' entropy is added to the training loss (Keras `add_loss`).
    Reference code: google-research `dselect_k_moe` (example-conditioned gate)."""

    type: Literal["dselect_gate"] = "dselect_gate"
    input: str = Field(description="Reference to the routing input (a vector).")
    experts: PositiveInt = Field(description="Number of experts n, a power of 2 (2, 4, 8, ...).")
    k: PositiveInt = Field(description="Number of single-expert selectors: at most k experts are "
                           "weighted once the gate converges.")
    gamma: float = Field(1.0, gt=0, description="Width of the smooth-step's cubic region: a bit "
                         "is exactly 0 or 1 once its logit is beyond ±gamma/2.")
    entropy_weight: float = Field(0.0, ge=0, description="Weight of the entropy regulariser on the "
                                  "selectors (mean over the batch of the summed entropies); pushes "
                                  "each selector to one expert. 0: off.")
    refs = ("input",)
    family = "multitask"
    paper = DSELECT_PAPER

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        _check_dselect(self.experts, self.k)
        return Out((self.experts,), "weights")

    def count_params(self, inputs, ctx) -> int:
        d, m = inputs["input"].shape[0], int(math.log2(self.experts))
        return (d + 1) * self.k * m + ((d + 1) * self.k if self.k > 1 else 0)  # k = 1: no softmax

    def label(self) -> str:
        extra = f", entropy={self.entropy_weight:g}" if self.entropy_weight else ""
        return f"n={self.experts}, k={self.k}, γ={self.gamma:g}{extra}"

    def build(self, inputs, ctx):
        from ..layers.multitask import DSelectGate as Layer

        return Layer(self.experts, self.k, gamma=self.gamma, entropy_weight=self.entropy_weight,
                     name=ctx.layer_name())(inputs["input"])


@register
class DselectK(_Composite):
    """DSelect-k as MMoE with sparse gates: n shared experts, one `dselect_gate` per task (k
    selectors each) and its mixture. Ports: one per task (of `tasks`), as `mmoe`'s."""

    type: Literal["dselect_k"] = "dselect_k"
    input: str = Field(description="Reference to the shared input (a vector).")
    experts: PositiveInt = Field(description="Number of experts n, a power of 2.")
    k: PositiveInt = Field(2, description="Selectors per task gate: at most k experts per task "
                           "once the gates converge.")
    units: list[PositiveInt] = Field(min_length=1, description="Hidden widths of each expert.")
    activation: Activation = Field("relu", description="Activation of the expert layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the experts.")
    gamma: float = Field(1.0, gt=0, description="Smooth-step width of every gate.")
    entropy_weight: float = Field(0.0, ge=0, description="Entropy regulariser weight of every gate.")
    implementation: Lowering = Field("auto", description="Lowering of the expert pool: " + _LOWERING_DOC)
    refs = ("input",)
    family = "multitask"
    paper = DSELECT_PAPER

    def expand(self, name, ctx):
        tasks = self.task_names(ctx)
        _check_dselect(self.experts, self.k)  # once here, not once per task gate
        blocks = {f"{name}/experts": ExpertPool(input=self.input, experts=self.experts, units=self.units,
                                                activation=self.activation, dropout=self.dropout,
                                                implementation=self.implementation)}
        for t in tasks:
            blocks[f"{name}/gate.{t}"] = DselectGate(input=self.input, experts=self.experts, k=self.k,
                                                     gamma=self.gamma, entropy_weight=self.entropy_weight)
            blocks[f"{name}/mix.{t}"] = Mixture(weights=f"{name}/gate.{t}", experts=[f"{name}/experts"])
        return blocks, {t: f"{name}/mix.{t}" for t in tasks}

    def label(self) -> str:
        return f"n={self.experts}, k={self.k}, units={self.units}"


# -- AITM -----------------------------------------------------------------------------------
@register
class AitAttention(Block):
    """AITM's Attention-based Information Transfer: self-attention over {transfer, input} with
    query, key and value maps (h1, h2, h3: d x d, no bias), scores scaled by sqrt(d), softmax over
    the two; output sum_u w_u h3(u)."""

    type: Literal["ait"] = "ait"
    input: str = Field(description="Reference to the task's own tower output q_t (a vector).")
    transfer: str = Field(description="Reference to the information p_{t-1} transferred from the "
                          "previous task (a vector as wide as `input`).")
    refs = ("input", "transfer")
    family = "multitask"
    paper = AITM_PAPER

    def infer(self, inputs, ctx) -> Out:
        expect_rank(inputs["input"], 1, "input", "a vector")
        expect_rank(inputs["transfer"], 1, "transfer", "a vector")
        d, p = inputs["input"].shape[0], inputs["transfer"].shape[0]
        if d != p:
            raise ShapeError(f"transfer has width {p} but input has {d}; the attention stacks the two",
                             field="transfer", hint=f"make the transferred information {d} wide")
        return Out((d,))

    def count_params(self, inputs, ctx) -> int:
        return 3 * inputs["input"].shape[0] ** 2

    def label(self) -> str:
        return "softmax(h1·h2/√d) h3 over {p, q}"

    def build(self, inputs, ctx):
        from ..layers.multitask import AitAttention as Layer

        return Layer(name=ctx.layer_name())([inputs["input"], inputs["transfer"]])


@register
class AitmCalibrator(Block):
    """AITM's behavioural expectation calibrator: passes `input` through and, in training, adds
    weight * mean(max(p_t - p_{t-1}, 0)) to the loss (Keras `add_loss`; label-free), with p the
    probabilities of `input` and `previous` (sigmoid of a logit)."""

    type: Literal["aitm_calibrator"] = "aitm_calibrator"
    input: str = Field(description="Reference to task t's logit or probability, shape (B, 1).")
    previous: str = Field(description="Reference to the previous step's logit or probability.")
    weight: float = Field(0.6, ge=0, description="The calibrator's weight alpha (the paper's 0.6).")
    refs = ("input", "previous")
    family = "multitask"
    paper = AITM_PAPER

    def infer(self, inputs, ctx) -> Out:
        for fname in ("input", "previous"):
            out = inputs[fname]
            if out.shape != (1,) or out.kind not in ("logit", "prob"):
                raise ShapeError(f"{fname} gives {out} ({out.kind}), not a logit or probability of "
                                 "shape (B, 1)", field=fname, hint="reference a tower or a predict block")
        return inputs["input"]

    def label(self) -> str:
        return f"+ {self.weight:g}·mean(max(p_t - p_t-1, 0))"

    def build(self, inputs, ctx):
        from ..layers.multitask import AitmCalibrator as Layer

        logits = [ctx.kind("input") == "logit", ctx.kind("previous") == "logit"]
        return Layer(self.weight, logits=logits, name=ctx.layer_name())([inputs["input"], inputs["previous"]])


@register
class Aitm(_Composite):
    """AITM over the tasks in their order (a conversion funnel: click -> conversion, or
    is_click -> long_view -> is_like): task t's tower q_t = MLP_t(input); the first task's
    representation is z_1 = q_1; every later task's is z_t = AIT(q_t, p_{t-1}) with the transferred
    information p_{t-1} = MLP(z_{t-1}) (as wide as the towers); each task's logit is a linear unit
    on z_t, and every later task's passes through `aitm_calibrator` with the previous task's.
    Ports: one logit per task (of `tasks`)."""

    type: Literal["aitm"] = "aitm"
    input: str = Field(description="Reference to the shared input of every tower (a vector).")
    task_input: str | None = Field(
        None, description="Per-task tower input with `{task}` (e.g. `moe.{task}`); defaults to `input`.")
    units: list[PositiveInt] = Field(min_length=1, description="Widths of each task's tower MLP; "
                                     "the last is the attention's width d.")
    info_units: list[PositiveInt] = Field(default_factory=list, description="Hidden widths of the "
                                          "transfer MLP before its last layer (which is d wide).")
    activation: Activation = Field("relu", description="Activation of the towers and transfer MLPs.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the towers and transfer MLPs.")
    calibrator_weight: float = Field(0.6, ge=0, description="Weight alpha of the calibrator "
                                     "alpha * mean(max(p_t - p_{t-1}, 0)); 0: none.")
    refs = ("input",)
    family = "multitask"
    paper = AITM_PAPER

    def expand(self, name, ctx):
        tasks = self.task_names(ctx)
        _check_templates(self, ctx, "task_input")
        if len(tasks) < 2:
            raise ShapeError(f"aitm transfers along a sequence of tasks but covers {len(tasks)} "
                             f"({', '.join(tasks)})", hint="give the blueprint (or `tasks`) two tasks or more, in funnel order")
        mlp = dict(activation=self.activation, dropout=self.dropout)
        blocks, ports, previous, z = {}, {}, None, {}
        for t in tasks:
            blocks[f"{name}/tower.{t}"] = Mlp(input=_template(self.task_input, t, self.input), units=self.units, **mlp)
            z[t] = f"{name}/tower.{t}"  # z_1 = q_1
            if previous is not None:
                blocks[f"{name}/info.{previous}"] = Mlp(input=z[previous], units=[*self.info_units, self.units[-1]], **mlp)
                blocks[f"{name}/ait.{t}"] = AitAttention(input=z[t], transfer=f"{name}/info.{previous}")
                z[t] = f"{name}/ait.{t}"
            blocks[f"{name}/logit.{t}"] = Tower(input=z[t], units=[])
            ports[t] = f"{name}/logit.{t}"
            if previous is not None and self.calibrator_weight > 0:
                blocks[f"{name}/calibrator.{t}"] = AitmCalibrator(
                    input=f"{name}/logit.{t}", previous=f"{name}/logit.{previous}", weight=self.calibrator_weight)
                ports[t] = f"{name}/calibrator.{t}"
            previous = t
        return blocks, ports

    def label(self) -> str:
        return f"units={self.units}, α={self.calibrator_weight:g}"


# -- DBMTL ----------------------------------------------------------------------------------
@register
class Dbmtl(_Composite):
    """DBMTL as EasyRec's dbmtl.py builds it after the bottom (a `mlp`, or an `mmoe` read through
    `task_input`): per task an optional tower MLP, then a relation MLP over the tower output
    concatenated with the relation outputs of the tasks in `relations[task]` (EasyRec's
    `relation_tower_names`), then one linear unit on the relation output: the task's logit. The
    dependencies train with the dependent task's loss (no stop-gradient), as in EasyRec.
    Ports: one logit per task (of `tasks`)."""

    type: Literal["dbmtl"] = "dbmtl"
    input: str = Field(description="Reference to the shared bottom output (a vector).")
    task_input: str | None = Field(
        None, description="Per-task input with `{task}` (e.g. `moe.{task}`, EasyRec's expert_dnn); "
        "defaults to `input`.")
    tower_units: list[PositiveInt] = Field(default_factory=list, description="Widths of each task's "
                                           "tower MLP (EasyRec's task_towers.dnn); empty: none.")
    relation_units: list[PositiveInt] = Field(min_length=1, description="Widths of each task's "
                                              "relation MLP (EasyRec's relation_dnn).")
    relations: dict[str, list[str]] = Field(default_factory=dict, description="Task -> the tasks whose "
                                            "relation outputs its relation MLP also reads (EasyRec's "
                                            "relation_tower_names), each before it in the task order.")
    activation: Activation = Field("relu", description="Activation of the tower and relation MLPs.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the tower and relation MLPs.")
    batch_norm: bool = Field(False, description="Batch normalisation in the tower and relation MLPs.")
    refs = ("input",)
    family = "multitask"
    paper = DBMTL_PAPER

    def _check_relations(self, tasks):
        for task, deps in self.relations.items():
            if task not in tasks:
                raise ShapeError(f"relations names task '{task}', which this block does not cover "
                                 f"({', '.join(tasks)})", field="relations", hint=did_you_mean(task, tasks, what="tasks"))
            for dep in deps:
                if dep not in tasks:
                    raise ShapeError(f"relations.{task} names '{dep}', not a task of this block "
                                     f"({', '.join(tasks)})", field="relations", hint=did_you_mean(dep, tasks, what="tasks"))
                if tasks.index(dep) >= tasks.index(task):
                    raise ShapeError(f"relations.{task} names '{dep}', which does not come before "
                                     f"'{task}' in the task order ({', '.join(tasks)})", field="relations",
                                     hint="a task reads the relation outputs of earlier tasks (EasyRec's order); "
                                     "reorder the tasks or drop the edge")
            if len(set(deps)) != len(deps):
                raise ShapeError(f"relations.{task} names a task twice", field="relations")

    def expand(self, name, ctx):
        tasks = self.task_names(ctx)
        _check_templates(self, ctx, "task_input")
        self._check_relations(tasks)
        mlp = dict(activation=self.activation, dropout=self.dropout, batch_norm=self.batch_norm)
        blocks = {}
        for t in tasks:
            tower = _template(self.task_input, t, self.input)
            if self.tower_units:
                blocks[f"{name}/tower.{t}"] = Mlp(input=tower, units=self.tower_units, **mlp)
                tower = f"{name}/tower.{t}"
            deps = self.relations.get(t, [])
            if deps:
                blocks[f"{name}/relation_input.{t}"] = Concat(inputs=[tower, *(f"{name}/relation.{d}" for d in deps)])
                tower = f"{name}/relation_input.{t}"
            blocks[f"{name}/relation.{t}"] = Mlp(input=tower, units=self.relation_units, **mlp)
            blocks[f"{name}/logit.{t}"] = Tower(input=f"{name}/relation.{t}", units=[])
        return blocks, {t: f"{name}/logit.{t}" for t in tasks}

    def label(self) -> str:
        edges = "; ".join(f"{', '.join(d)} → {t}" for t, d in self.relations.items() if d)
        return f"relation={self.relation_units}" + (f", {edges}" if edges else "")


# -- STEM -----------------------------------------------------------------------------------
@register
class TaskEmbed(Block):
    """Embeds a feature group with embedding tables of its own, not the shared ones: STEM's
    task-specific embeddings (stamp it per task with `for_each: task`). The vector has `embed`'s
    flat layout (categorical fields grouped by width, then numerics), so it adds to or stands in
    for the shared `embed` of the same group; numerics are the same standardised columns (they
    have no table). Covers categorical and plain numeric features."""

    type: Literal["task_embed"] = "task_embed"
    group: str = Field(description="Name of a feature group from `groups`.")
    family = "multitask"
    paper = STEM_PAPER
    reads_features = True

    def _features(self, ctx):
        if self.group not in ctx.blueprint.groups:
            raise ShapeError(f"unknown group '{self.group}'", field="group",
                             hint=did_you_mean(self.group, ctx.blueprint.groups, what="groups"))
        return [ctx.blueprint.feature(n) for n in ctx.blueprint.groups[self.group]]

    def _tables(self, ctx):
        """width -> (fields of the group, their table owners in first-use order)."""
        layout, names = ctx.layout, ctx.blueprint.groups[self.group]
        out = {}
        for dim in layout.dims():
            fields = [n for n in names if n in layout.categorical_by_dim.get(dim, [])]
            if fields:
                owners = list(dict.fromkeys(layout.table_of[n] for n in fields))
                out[dim] = (fields, owners)
        return out

    def infer(self, inputs, ctx) -> Out:
        feats = self._features(ctx)
        for f in feats:
            if f.kind not in ("categorical", "numeric") or (f.kind == "numeric" and f.embed is not None):
                what = "a numeric with `embed`" if f.kind == "numeric" else f"a {f.kind} feature"
                raise ShapeError(f"group '{self.group}' holds '{f.name}', {what}; task_embed copies "
                                 "categorical tables and passes plain numerics", field="group",
                                 hint="give task_embed a group of categorical and plain numeric features")
        dims = sum(ctx.layout.dim_of(f.name) for f in feats if f.kind == "categorical")
        return Out((dims + sum(f.kind == "numeric" for f in feats),))

    def count_params(self, inputs, ctx):
        sizes = ctx.layout.vocab_sizes
        owners = [(o, dim) for dim, (_, os) in self._tables(ctx).items() for o in os]
        if any(sizes.get(o) is None for o, _ in owners):
            return 0  # tables of unfitted vocabularies: reported with the embeddings, as embed's
        return sum(sizes[o] * dim for o, dim in owners)

    def label(self) -> str:
        return f"group={self.group}, own tables"

    def build(self, inputs, ctx):
        import keras

        from ..layers.features import PackedEmbedding, SelectFields

        layout, names = ctx.layout, ctx.blueprint.groups[self.group]
        parts = []
        for dim, (fields, owners) in self._tables(ctx).items():
            flat = layout.categorical_by_dim[dim]
            ids = SelectFields([flat.index(n) for n in fields], name=ctx.layer_name(f"ids_d{dim}"))(
                ctx.inputs[layout.input_name(dim)])
            columns = [owners.index(layout.table_of[n]) for n in fields]
            table = PackedEmbedding([layout.vocab_sizes[o] for o in owners], dim,
                                    columns=None if columns == list(range(len(owners))) else columns,
                                    name=ctx.layer_name(f"embedding_d{dim}"))(ids)
            parts.append(SelectFields(list(range(len(fields))), flatten=True, name=ctx.layer_name(f"d{dim}"))(table))
        idx = [layout.numeric.index(n) for n in names if n in layout.numeric]
        if idx:
            parts.append(SelectFields(idx, name=ctx.layer_name("num"))(ctx.numeric()))
        if len(parts) == 1:
            return parts[0]
        return keras.layers.Concatenate(name=ctx.layer_name())(parts)


@register
class StemMixture(Block):
    """A gated sum over expert pools where the `detached` pools pass forward but take no
    gradient: STEM's All Forward Task-specific Backward mixture. Weights cover `experts` then
    `detached`, in order."""

    type: Literal["stem_mixture"] = "stem_mixture"
    weights: str = Field(description="Reference to a gate (weights over every expert of both lists).")
    experts: list[str] = Field(min_length=1, description="Expert pools that take this mixture's gradient.")
    detached: list[str] = Field(default_factory=list, description="Expert pools read forward only "
                                "(stop-gradient): another task's experts.")
    refs = ("weights", "experts", "detached")
    stop_gradient_refs = {"detached": "stop-grad: forward only"}
    family = "multitask"
    paper = STEM_PAPER

    def infer(self, inputs, ctx) -> Out:
        pools = [*inputs["experts"], *inputs["detached"]]
        for fname in ("experts", "detached"):
            for i, pool in enumerate(inputs[fname]):
                if pool.kind != "experts":
                    raise ShapeError(f"{fname}[{i}] is not an expert pool (shape {pool})", field=fname)
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
        return "Σ w_k e_k, others' experts stop-grad" if self.detached else "Σ w_k e_k"

    def build(self, inputs, ctx):
        from ..layers.multitask import StemMixture as Layer

        detached = [False] * len(inputs["experts"]) + [True] * len(inputs["detached"])
        return Layer(detached, name=ctx.layer_name())([inputs["weights"], *inputs["experts"], *inputs["detached"]])


@register
class Stem(_Composite):
    """STEM-Net: shared experts read the shared embedding (`input`), task t's experts read its own
    embedding (`task_input`, e.g. a `task_embed` per task); task t's gate reads the sum of its own
    and the shared embedding and weighs every expert (shared, its own, every other task's), but
    other tasks' experts are stop-gradient in its mixture (All Forward Task-specific Backward), so
    task t's loss reaches only the shared and task t's embeddings and experts. Levels stack as in
    PLE: a lower level also mixes every expert (with gradient, as the authors' code) through a
    shared gate into the next level's shared input; with `levels > 1` task t's loss therefore
    reaches other tasks' lower experts through that shared path. Ports: one per task."""

    type: Literal["stem"] = "stem"
    input: str = Field(description="Reference to the shared embedding (a vector).")
    task_input: str = Field(description="Task t's own embedding with `{task}` (e.g. `x_task.{task}`), "
                            "as wide as `input`.")
    shared_experts: PositiveInt = Field(1, description="Number of shared experts M.")
    task_experts: PositiveInt = Field(1, description="Number of experts per task N.")
    units: list[PositiveInt] = Field(min_length=1, description="Hidden widths of each expert.")
    levels: int = Field(1, ge=1, le=8, description="Stacked STEM layers (the authors' num_layers).")
    activation: Activation = Field("relu", description="Activation of the expert layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the experts.")
    gate_hidden: list[PositiveInt] = Field(default_factory=list, description="Hidden MLP of each gate.")
    temperature: float = Field(1.0, gt=0, description="Gate softmax temperature.")
    implementation: Lowering = Field("auto", description="Lowering of every expert pool: " + _LOWERING_DOC)
    refs = ("input",)
    family = "multitask"
    paper = STEM_PAPER

    def expand(self, name, ctx):
        tasks = self.task_names(ctx)
        _check_templates(self, ctx, "task_input")
        if self.levels > 1:
            self._no_task_named(ctx, "shared")
        m, n, count = self.shared_experts, self.task_experts, self.shared_experts + self.task_experts * len(tasks)
        pool = dict(units=self.units, activation=self.activation, dropout=self.dropout,
                    implementation=self.implementation)
        gate = dict(experts=count, hidden=self.gate_hidden, temperature=self.temperature)
        blocks = {}
        shared_in, task_in = self.input, {t: self.task_input.replace("{task}", t) for t in tasks}
        for level in range(1, self.levels + 1):
            p = name if self.levels == 1 else f"{name}/level{level}"
            blocks[f"{p}/shared"] = ExpertPool(input=shared_in, experts=m, **pool)
            for t in tasks:
                blocks[f"{p}/experts.{t}"] = ExpertPool(input=task_in[t], experts=n, **pool)
            for t in tasks:
                blocks[f"{p}/gate_input.{t}"] = Add(inputs=[task_in[t], shared_in])
                blocks[f"{p}/gate.{t}"] = Gate(input=f"{p}/gate_input.{t}", **gate)
                blocks[f"{p}/mix.{t}"] = StemMixture(
                    weights=f"{p}/gate.{t}", experts=[f"{p}/shared", f"{p}/experts.{t}"],
                    detached=[f"{p}/experts.{s}" for s in tasks if s != t])
            if level < self.levels:
                blocks[f"{p}/gate.shared"] = Gate(input=shared_in, **gate)
                blocks[f"{p}/mix.shared"] = Mixture(weights=f"{p}/gate.shared",
                                                    experts=[f"{p}/shared", *(f"{p}/experts.{t}" for t in tasks)])
                shared_in, task_in = f"{p}/mix.shared", {t: f"{p}/mix.{t}" for t in tasks}
        last = name if self.levels == 1 else f"{name}/level{self.levels}"
        return blocks, {t: f"{last}/mix.{t}" for t in tasks}

    def label(self) -> str:
        lv = f"levels={self.levels}, " if self.levels > 1 else ""
        return f"{lv}shared={self.shared_experts}, per task={self.task_experts}, units={self.units}"
