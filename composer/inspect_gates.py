"""Gate observability: how a trained model's gates spread their weight over the experts.

Every block whose output is a softmax over experts reports its weights on a split's rows: the
``gate`` layers (alone, or inside ``omoe``, ``mmoe``, ``cgc``, ``ple`` and ``hmoe``), M2M's
``meta_attention`` (its weights over the expert views), HMoE's ``hmoe_fusion`` (its weights
over the scenario towers) and SAR-Net's ``scenario_experts`` (its scenario gate over the shared
experts and the sample's own scenario's). Per gate, and per scenario where the data has one: the mean weight of
each expert, the mean entropy of a row's weights and the share of rows whose top expert takes
over 0.9. Every expert pool reports the mean cosine between its experts' outputs. A warning
names a gate whose one expert takes over 0.9 of a task's weight, and two experts whose outputs
are nearly the same (mean cosine over 0.95): both are collapse (MMoE/PLE papers' "polarised"
gates; PaddleRec #721's identical experts).

AdaSparse blocks (``adasparse``) report how sparse each layer is: the share of its neurons whose
pruning factor pi is below the block's epsilon, over all rows and per scenario.

``inspect(exp, split, rows)`` computes it from a loaded run (``composer.training.load_run``);
``Inspection.table()`` is what ``composer inspect`` prints and the report's heatmaps read
``Inspection.gates``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLLAPSE_WEIGHT = 0.9  # one expert's mean weight above this: the gate serves one expert
TOP_WEIGHT = 0.9  # a row whose top expert takes more than this counts as routed to one expert
SAME_OUTPUT_COSINE = 0.95  # two experts whose outputs agree this much are one expert twice
PROBE_BATCH = 4096

GATE_TYPES = ("gate", "meta_attention", "hmoe_fusion", "scenario_experts")
SPARSE_TYPES = ("adasparse",)


@dataclass
class WeightStats:
    """Summary of the weights ``(n, K)`` of n rows over K experts."""

    n: int
    mean: np.ndarray  # (K,) mean weight of each expert
    entropy: float  # mean over rows of -sum_k w_k ln w_k (nats; ln K for uniform weights)
    top_share: float  # share of rows whose largest weight is over TOP_WEIGHT

    @classmethod
    def of(cls, weights: np.ndarray) -> "WeightStats":
        w = np.asarray(weights, dtype=np.float64)
        if len(w) == 0:
            k = w.shape[1] if w.ndim == 2 else 0
            return cls(0, np.full(k, np.nan), float("nan"), float("nan"))
        entropy = -(w * np.log(np.clip(w, 1e-12, None))).sum(axis=1)
        return cls(len(w), w.mean(axis=0), float(entropy.mean()), float((w.max(axis=1) > TOP_WEIGHT).mean()))


@dataclass
class GateReport:
    """One gate's weights on a split: over all rows and per scenario value."""

    node: str  # block id in the graph, e.g. "moe/gate.income"
    kind: str  # the block type: gate, meta_attention, hmoe_fusion
    family: str  # the gates one heatmap draws together: the id without its task/scenario stamp
    branch: str  # what the gate serves: a task, "scenario S", "shared" or "all tasks"
    experts: list[str]  # one label per weight, e.g. "shared:0", "experts.income:1"
    overall: WeightStats
    scenarios: dict[str, WeightStats] = field(default_factory=dict)

    @property
    def max_entropy(self) -> float:
        return float(np.log(len(self.experts))) if self.experts else 0.0


@dataclass
class PoolSimilarity:
    """Mean cosine between the outputs of every pair of experts of one pool."""

    node: str
    cosine: np.ndarray  # (K, K), 1 on the diagonal; NaN where a pair never had two nonzero outputs

    def pairs(self):
        k = len(self.cosine)
        return [(i, j, float(self.cosine[i, j])) for i in range(k) for j in range(i + 1, k)]


@dataclass
class SparsityReport:
    """One AdaSparse block: per layer, the share of its neurons whose factor pi < epsilon (mean
    over rows), over all rows and per scenario value (rows, shares)."""

    node: str
    epsilon: float
    widths: list[int]
    rows: int
    overall: list[float]
    scenarios: dict[str, tuple[int, list[float]]] = field(default_factory=dict)


@dataclass
class Inspection:
    model: str
    data: str
    split: str
    rows: int
    scenario: str | None  # the scenario column, when the data has one
    gates: list[GateReport]
    pools: list[PoolSimilarity]
    sparsity: list[SparsityReport] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        out = []
        for g in self.gates:
            collapsed = {s: st for s, st in g.scenarios.items() if _collapsed(st)}
            if _collapsed(g.overall):
                k = int(np.nanargmax(g.overall.mean))
                every = f" (so in {len(collapsed)} of {len(g.scenarios)} scenarios)" if g.scenarios else ""
                out.append(f"collapse: gate {g.node} ({g.branch}) gives expert {g.experts[k]} "
                           f"{g.overall.mean[k]:.3f} of its weight on average (over {COLLAPSE_WEIGHT}); its other "
                           f"experts barely serve it{every}")
            elif collapsed:  # a collapse confined to some scenarios
                where = ", ".join(f"{s} (expert {g.experts[int(np.nanargmax(st.mean))]} {np.nanmax(st.mean):.3f})"
                                  for s, st in collapsed.items())
                out.append(f"collapse: gate {g.node} ({g.branch}) gives one expert over {COLLAPSE_WEIGHT} of its "
                           f"weight in scenario {where}")
        for p in self.pools:
            for i, j, c in p.pairs():
                if c > SAME_OUTPUT_COSINE:
                    out.append(f"collapse: experts {i} and {j} of {p.node} give nearly the same output "
                               f"(mean cosine {c:.3f}, over {SAME_OUTPUT_COSINE})")
        return out

    def families(self) -> dict[str, list[GateReport]]:
        """Gates grouped for one table or heatmap each (a stamped gate's copies together)."""
        out: dict[str, list[GateReport]] = {}
        for g in self.gates:
            out.setdefault(g.family, []).append(g)
        return out

    @staticmethod
    def columns(gates: list[GateReport]) -> list[str]:
        """The union of the gates' expert labels, in first-seen order."""
        cols: list[str] = []
        for g in gates:
            cols += [e for e in g.experts if e not in cols]
        return cols

    def heatmap(self, family: str) -> tuple[np.ndarray, list[str], list[str]]:
        """(matrix, rows, columns) of one gate family: a row per gate (its task or branch), a
        column per expert; NaN where a gate does not cover an expert (PLE's task gates)."""
        gates = self.families()[family]
        cols = self.columns(gates)
        matrix = np.array([[dict(zip(g.experts, g.overall.mean)).get(c, np.nan) for c in cols] for g in gates])
        return matrix, [g.branch for g in gates], cols

    def scenario_heatmap(self, gate: GateReport) -> tuple[np.ndarray, list[str], list[str]]:
        """(matrix, rows, columns) of one gate: a row per scenario value, a column per expert."""
        return np.array([st.mean for st in gate.scenarios.values()]), list(gate.scenarios), list(gate.experts)

    def table(self, digits: int = 3) -> str:
        """The text ``composer inspect`` prints: one table per gate family, the pools'
        similarities, then the warnings (or a sentence saying there are none)."""
        from tabulate import tabulate

        sparse = [self.sparsity_table(digits)] if self.sparsity else []
        if not self.gates:
            return "\n".join([no_gates_sentence(self.model)] + sparse)
        head = (f"gates of {self.model} on the {self.split} split of {self.data} ({self.rows:,} rows): mean weight "
                f"of each expert; entropy of a row's weights (nats, of ln K for even weights); "
                f"top>{TOP_WEIGHT}: share of rows whose top expert takes over {TOP_WEIGHT}")
        parts = [head]
        for family, gates in self.families().items():
            cols = self.columns(gates)
            body = []
            for g in gates:
                rows = [(g.branch, g.overall)]
                rows += [(f"  {self.scenario or 'scenario'}={s}", st) for s, st in g.scenarios.items()]
                for label, st in rows:
                    weights = dict(zip(g.experts, st.mean))
                    body.append([g.node if label == g.branch else "", label, f"{st.n:,}"]
                                + [_num(weights[c], digits) if c in weights else "" for c in cols]
                                + [f"{_num(st.entropy, 2)} of {g.max_entropy:.2f}", _num(st.top_share, digits)])
            parts.append(f"\n{family} ({gates[0].kind})\n" + tabulate(
                body, headers=["gate", "for", "rows", *cols, "entropy", f"top>{TOP_WEIGHT}"],
                disable_numparse=True, colalign=["left", "left"] + ["right"] * (len(cols) + 3)))
        if self.pools:
            body = []
            for p in self.pools:
                pairs = p.pairs()
                values = [c for _, _, c in pairs if not np.isnan(c)]
                top = max(pairs, key=lambda t: -1 if np.isnan(t[2]) else t[2]) if pairs else None
                body.append([p.node, len(p.cosine), _num(float(np.mean(values)) if values else np.nan, digits),
                             f"{top[0]}, {top[1]}: {_num(top[2], digits)}" if top else "-"])
            parts.append("\nexpert outputs: mean cosine between two experts' outputs (1: the same direction)\n"
                         + tabulate(body, headers=["expert pool", "experts", "mean over pairs", "most alike pair"],
                                    disable_numparse=True, colalign=["left", "right", "right", "right"]))
        parts += sparse
        warnings = self.warnings
        parts.append("\n" + ("\n".join(f"warning: {w}" for w in warnings) if warnings else
                             f"no collapse: no expert takes over {COLLAPSE_WEIGHT} of a gate's weight and no two "
                             f"experts' outputs have a mean cosine over {SAME_OUTPUT_COSINE}"))
        return "\n".join(parts)


    def sparsity_table(self, digits: int = 3) -> str:
        """The AdaSparse section: one row per block and scenario, one column per layer."""
        from tabulate import tabulate

        parts = []
        for r in self.sparsity:
            cols = [f"layer {i + 1} ({w})" for i, w in enumerate(r.widths)]
            body = [[r.node, "all rows", f"{r.rows:,}", *(_num(v, digits) for v in r.overall)]]
            body += [["", f"  {self.scenario or 'scenario'}={s}", f"{n:,}", *(_num(v, digits) for v in shares)]
                     for s, (n, shares) in r.scenarios.items()]
            parts.append(f"\npruned neurons of {r.node} (adasparse): share of each layer's neurons whose factor pi "
                         f"is below epsilon {r.epsilon:g}, mean over rows\n" + tabulate(
                             body, headers=["block", "for", "rows", *cols], disable_numparse=True,
                             colalign=["left", "left"] + ["right"] * (len(cols) + 1)))
        return "\n".join(parts)


def _collapsed(stats: WeightStats) -> bool:
    return bool(stats.n) and float(np.nanmax(stats.mean)) > COLLAPSE_WEIGHT


def no_gates_sentence(model: str) -> str:
    return (f"model '{model}' has no gates: no gate, mixture of experts (omoe, mmoe, cgc, ple, hmoe), "
            f"meta_attention or hmoe_fusion block, so there are no expert weights to inspect")


def _num(value, digits: int) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------------- finding gates

@dataclass
class _Site:
    node: str
    kind: str
    layer: object
    experts: list[str]
    family: str
    branch: str


def gate_sites(graph, model) -> list[_Site]:
    """Every gate of the graph that the model holds, with what its weights cover."""
    from .compiler import BuildContext

    scenarios = graph.blueprint.scenarios.names if graph.blueprint.scenarios else []
    weights_of = _mixtures_by_gate(graph)
    out = []
    for nid in graph.order:
        node = graph.nodes[nid]
        if node.block.type not in GATE_TYPES or nid in graph.unused:
            continue
        layer = model.get_layer(BuildContext.layer_name_of(nid))
        if node.block.type == "gate":
            pools = weights_of.get(nid)
            experts = _expert_labels(graph, pools) if pools else [str(k) for k in range(node.block.experts)]
        elif node.block.type == "meta_attention":
            experts = _expert_labels(graph, [_ref(graph, nid, "experts")])
        elif node.block.type == "scenario_experts":
            experts = ([f"shared:{k}" for k in range(node.block.shared)]
                       + [f"own scenario:{k}" for k in range(node.block.specific)])
        else:  # hmoe_fusion: one weight per scenario tower, in scenario order
            experts = [f"tower {s}" for s in scenarios]
        family, branch = _family(nid, node, scenarios)
        out.append(_Site(nid, node.block.type, layer, experts, family, branch))
    return out


def pool_nodes(graph) -> list[str]:
    return [n for n in graph.order if graph.nodes[n].block.type == "expert_pool" and n not in graph.unused]


def _ref(graph, nid: str, fname: str):
    return dict(graph.inputs[nid])[fname]


def _mixtures_by_gate(graph) -> dict[str, list[str]]:
    """gate id -> the expert pools the mixture it weighs sums, in order."""
    out = {}
    for nid in graph.order:
        if graph.nodes[nid].block.type == "mixture":
            refs = dict(graph.inputs[nid])
            out[refs["weights"]] = list(refs["experts"])
    return out


def _expert_labels(graph, pools: list[str]) -> list[str]:
    labels = []
    for pool in pools:
        short = pool.rsplit("/", 1)[-1].rsplit(".", 1)[-1]  # ple/level1/experts.click -> click
        labels += [f"{short}:{k}" for k in range(graph.nodes[pool].out.shape[0])]
    if len(set(labels)) < len(labels):  # two pools with the same last name: use their full ids
        labels = [f"{pool}:{k}" for pool in pools for k in range(graph.nodes[pool].out.shape[0])]
    return labels


def _family(nid: str, node, scenarios) -> tuple[str, str]:
    last = nid.rsplit("/", 1)[-1]
    stem, _, suffix = last.rpartition(".")
    base = nid[: len(nid) - len(last)] + stem
    if node.task is not None and suffix == node.task:
        return base, node.task
    if node.scenario is not None and suffix == node.scenario:
        return base, f"scenario {node.scenario}"
    if suffix == "shared" and stem:
        return base, "shared"
    return nid, node.task or (f"scenario {node.scenario}" if node.scenario else "all tasks")


# -------------------------------------------------------------------------------------- computing

def split_rows(exp, split: str, rows: int | None = None):
    """The first ``rows`` rows of a split (all of them by default) as a DataFrame."""
    if rows is not None:
        return exp.dataset.head(split, rows)
    if getattr(exp.dataset, "streaming", False):
        return exp.dataset.head(split, 2 ** 62)
    return exp.dataset.part(split).frame


def gate_weights(exp, x, sites=None, pools=None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per gate id its ``(n, K)`` weights on the packed inputs ``x``; per expert pool id its
    ``(n, K, units)`` outputs. One probe model from the model's inputs to the gates' outputs
    (or, for a layer whose weights are inside it, its inputs) runs over ``x`` in batches."""
    import keras

    sites = gate_sites(exp.graph, exp.model) if sites is None else sites
    pools = pool_nodes(exp.graph) if pools is None else pools
    from .compiler import BuildContext

    probes = {}
    for s in sites:
        if s.kind == "gate":
            probes[s.node] = s.layer.output
        else:  # the layer's inputs; its weights are computed from them below
            for i, t in enumerate(s.layer.input):
                probes[f"{s.node}#{i}"] = t
    for p in pools:
        probes[p] = exp.model.get_layer(BuildContext.layer_name_of(p)).output
    if not probes:
        return {}, {}
    probe = keras.Model(exp.model.input, probes, name="gate_probe")
    names = list(probes)
    n = len(next(iter(x.values())))
    chunks: dict[str, list] = {k: [] for k in names}
    for start in range(0, n, PROBE_BATCH):
        batch = {k: v[start:start + PROBE_BATCH] for k, v in x.items()}
        out = probe(batch, training=False)
        extra = {}
        for s in sites:
            if s.kind != "gate":
                ins = [out[f"{s.node}#{i}"] for i in range(len(s.layer.input))]
                w = (s.layer.expert_weights(ins) if s.kind in ("meta_attention", "scenario_experts")
                     else s.layer.fusion_weights(ins))
                extra[s.node] = w
        for k in list(chunks):
            if "#" not in k:
                chunks[k].append(keras.ops.convert_to_numpy(out[k]))
        for k, w in extra.items():
            chunks.setdefault(k, []).append(keras.ops.convert_to_numpy(w))
    arrays = {k: np.concatenate(v).astype(np.float64) for k, v in chunks.items() if v and "#" not in k}
    return ({s.node: arrays[s.node] for s in sites}, {p: arrays[p] for p in pools})


def expert_cosine(outputs: np.ndarray) -> np.ndarray:
    """``(K, K)`` mean over rows of the cosine between experts i and j's outputs ``(n, K, u)``;
    rows where either output is all zero (a dead ReLU expert) are left out of that pair."""
    e = np.asarray(outputs, dtype=np.float64)
    norms = np.linalg.norm(e, axis=2)  # (n, K)
    unit = e / np.where(norms > 0, norms, 1.0)[..., None]
    cos = np.einsum("niu,nju->nij", unit, unit)
    both = (norms[:, :, None] > 0) & (norms[:, None, :] > 0)
    counts = both.sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(counts > 0, (cos * both).sum(axis=0) / np.maximum(counts, 1), np.nan)
    np.fill_diagonal(mean, 1.0)
    return mean


def sparsity_sites(graph, model) -> list[tuple[str, object]]:
    """(block id, Keras layer) of every AdaSparse block the model holds."""
    from .compiler import BuildContext

    return [(nid, model.get_layer(BuildContext.layer_name_of(nid))) for nid in graph.order
            if graph.nodes[nid].block.type in SPARSE_TYPES and nid not in graph.unused]


def pruned_shares(exp, x, sites) -> dict[str, list[np.ndarray]]:
    """Per AdaSparse block, per layer, each row's share of neurons whose factor pi < epsilon
    (``(n,)``), from the factors the layer computes on its inputs."""
    import keras

    if not sites:
        return {}
    probe = keras.Model(exp.model.input, {f"{nid}#{i}": t for nid, layer in sites for i, t in enumerate(layer.input)},
                        name="sparsity_probe")
    n = len(next(iter(x.values())))
    out: dict[str, list[list[np.ndarray]]] = {nid: [[] for _ in layer.units] for nid, layer in sites}
    for start in range(0, n, PROBE_BATCH):
        ins = probe({k: v[start:start + PROBE_BATCH] for k, v in x.items()}, training=False)
        for nid, layer in sites:
            factors = layer.pruning_factors([ins[f"{nid}#{i}"] for i in range(len(layer.input))])
            for i, pi in enumerate(factors):
                out[nid][i].append((keras.ops.convert_to_numpy(pi) < layer.epsilon).mean(axis=1))
    return {nid: [np.concatenate(parts) for parts in layers] for nid, layers in out.items()}


def inspect(exp, split: str = "valid", rows: int | None = None) -> Inspection:
    """The gates' weights and the expert pools' similarities on a split of the run's data."""
    frame = split_rows(exp, split, rows)
    sites = gate_sites(exp.graph, exp.model)
    sparse_sites = sparsity_sites(exp.graph, exp.model)
    if (sites or sparse_sites) and len(frame) == 0:
        from .blueprint.errors import BlueprintError

        raise BlueprintError(f"the {split} split of {exp.data_name} has no rows: no gate weights to average",
                             key="--split", hint="pick another split: --split train, valid or test")
    pools = pool_nodes(exp.graph)
    scenario_col = exp.bp.scenarios.feature if exp.bp.scenarios else exp.dataset.spec.scenario
    name = exp.bp.name
    if not sites and not sparse_sites:
        return Inspection(name, exp.data_name, split, len(frame), scenario_col, [], [])
    x = exp.pre.pack(frame, exp.graph.layout)
    weights, outputs = gate_weights(exp, x, sites, pools)
    values = frame[scenario_col].astype("string").to_numpy() if scenario_col and scenario_col in frame else None
    sparsity = []
    for (nid, layer), shares in zip(sparse_sites, pruned_shares(exp, x, sparse_sites).values()):
        per = {str(v): (int((values == v).sum()), [float(s[values == v].mean()) for s in shares])
               for v in (_ordered_values(exp, values) if values is not None else [])}
        sparsity.append(SparsityReport(nid, layer.epsilon, list(layer.units), len(frame),
                                       [float(s.mean()) for s in shares], per))
    gates = []
    for s in sites:
        w = weights[s.node]
        per = {}
        if values is not None:
            for v in _ordered_values(exp, values):
                per[str(v)] = WeightStats.of(w[values == v])
        gates.append(GateReport(s.node, s.kind, s.family, s.branch, s.experts, WeightStats.of(w), per))
    sims = [PoolSimilarity(p, expert_cosine(outputs[p])) for p in pools]
    return Inspection(name, exp.data_name, split, len(frame), scenario_col if values is not None else None,
                      gates, sims, sparsity)


def _ordered_values(exp, values) -> list:
    """Scenario values in the blueprint's order where it declares them, else sorted; only those
    present in the rows."""
    present = set(v for v in values if v is not None and v == v)
    declared = list(exp.bp.scenarios.names) if exp.bp.scenarios else []
    ordered = [v for v in declared if v in present]
    return ordered + sorted(present - set(ordered), key=natural_key)


def natural_key(value) -> tuple:
    """Sort key: numbers as numbers (tab 2 before tab 10), then text."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
