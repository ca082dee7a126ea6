"""Mixed-scenario routing of the shipped HAMUR and M3oE blueprints (composer/blocks/
scenario_mixture.py): one batch mixing every scenario gives each sample what a batch of only its
own scenario gives, in training and at inference; perturbing one scenario's parameters moves only
that scenario's samples; a one-scenario batch sends no gradient into another scenario's
parameters; M3oE's gates never train the bottom (stop-gradient). m3oe is bound to adult-msl here
(two scenarios, two tasks: small and fast); its own data, kuairand-pure, has 15."""
from pathlib import Path

import keras
import numpy as np
import pytest
from backend_grad import gradients

from composer.blueprint import load_blueprint, load_blueprint_text
from composer.compiler import compile_graph
from composer.data.registry import describe
from composer.graph import build_graph
from composer.layers.scenario import PartitionedNorm, ScenarioTowers, StarFCN
from composer.layers.scenario_mixture import HyperAdapter, ScenarioGate

ROOT = Path(__file__).resolve().parents[1]
MSL_VOCAB = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13, "scenario": 4}
N = 24
# name -> (scenarios, ids_d8 width, numeric width)
SHAPES = {"hamur": (3, 5, 2), "m3oe": (2, 6, 6), "m3oe_own": (2, 6, 6)}
ROUTED = (ScenarioTowers, StarFCN, PartitionedNorm, HyperAdapter, ScenarioGate)
NOT_PER_SCENARIO = ("gamma", "beta", "shared_kernel_", "shared_bias_")


def _text(name):
    if name == "m3oe_own":  # each sample reads its own domain expert only: it is scenario-owned too
        text = (ROOT / "blueprints" / "m3oe.yaml").read_text()
        # one (S, in, out) kernel per layer (the einsum lowering), so expert s is slice s
        return text.replace("units: [16]}", "units: [16], domain_balance: false, implementation: einsum}")
    text = (ROOT / "blueprints" / f"{name}.yaml").read_text()
    return text.replace("domain_norm: false", "domain_norm: true")  # the paper's domain norm routes too


def _data(name):
    return None if name == "hamur" else "adult-msl"


def _model(name, text=None):
    vocab = MSL_VOCAB if name == "hamur" else {n: 11 for n in describe("adult-msl").categorical}
    bp, doc = load_blueprint_text(text or _text(name), f"{name}.yaml", data=_data(name))
    model = compile_graph(build_graph(bp, doc, vocab_sizes=vocab))
    rng = np.random.default_rng(0)
    for v in model.weights:  # scenario scales start at one and biases at zero: make them differ
        value = rng.normal(scale=0.3, size=v.shape).astype("float32")
        v.assign(np.abs(value) + 0.5 if "variance" in v.path else value + (1.0 if v.path.endswith("gamma") else 0.0))
    return model


def _batch(name, n=N, seed=1):
    s, ids, numeric = SHAPES[name]
    rng = np.random.default_rng(seed)
    scenario = np.arange(n) % s
    rng.shuffle(scenario)
    return {"ids_d8": rng.integers(0, 4, size=(n, ids)).astype("int32"),
            "numeric": rng.normal(size=(n, numeric)).astype("float32"),
            "scenario": scenario.reshape(-1, 1).astype("int32")}


def _rows(batch, rows):
    return {k: v[rows] for k, v in batch.items()}


def _predict(model, batch, training):
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(batch, training=training).items()}


def _per_scenario_variables(model, name):
    """(layer name, variable) for every variable stacked per scenario (axis 0) in a routed layer;
    in m3oe_own the domain expert pool too (each sample reads its own expert only)."""
    found = []
    for layer in model.layers:
        pool = name == "m3oe_own" and layer.name == "m3oe-domain"
        if not (isinstance(layer, ROUTED) or pool):
            continue
        for v in layer.weights:
            last = v.path.rsplit("/", 1)[-1]
            if last.startswith(NOT_PER_SCENARIO) and not last.startswith("scenario_") or (isinstance(layer, HyperAdapter) and not layer.per_scenario
                                            and "domain_norm" not in v.path):
                continue
            assert v.shape[0] == SHAPES[name][0], v.path
            found.append((layer.name, v))
    return found


@pytest.fixture(scope="module", params=sorted(SHAPES))
def built(request):
    keras.utils.set_random_seed(3)
    return request.param, _model(request.param)


@pytest.mark.parametrize("training", [True, False])
def test_a_mixed_batch_gives_each_sample_its_own_scenario_batch_output(built, training):
    name, model = built
    batch = _batch(name)
    mixed = _predict(model, batch, training)
    for s in range(SHAPES[name][0]):
        rows = batch["scenario"][:, 0] == s
        alone = _predict(model, _rows(batch, rows), training)
        for task, out in alone.items():
            np.testing.assert_allclose(mixed[task][rows], out, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} {task} scenario {s} training={training}")


def test_perturbing_one_scenarios_parameters_moves_only_its_samples(built):
    name, model = built
    batch = _batch(name)
    base = _predict(model, batch, False)
    variables = _per_scenario_variables(model, name)
    layers = {layer for layer, _ in variables}
    if name == "hamur":
        assert {"hamur-layer1", "hamur-adapter1", "hamur-layer2", "hamur-adapter2", "hamur-logit-click"} <= layers
    else:
        assert {"bottom", "m3oe-gate-income", "tower-income", "tower-never_married"} <= layers
    rng = np.random.default_rng(5)
    for _, v in variables:
        before = keras.ops.convert_to_numpy(v)
        for s in range(SHAPES[name][0]):
            value = before.copy()
            value[s] += np.abs(rng.normal(size=value[s].shape)) + 0.5
            v.assign(value)
            after = _predict(model, batch, False)
            v.assign(before)
            own = batch["scenario"][:, 0] == s
            moved = max(np.abs(after[t][own] - base[t][own]).max() for t in base)
            assert moved > 1e-6, f"{v.path}[{s}] moved none of its scenario's samples"
            for t in base:
                np.testing.assert_array_equal(after[t][~own], base[t][~own],
                                              err_msg=f"{v.path}[{s}] moved another scenario's {t}")


def test_m3oe_domain_experts_reach_other_scenarios_only_through_the_balance():
    """With the learned balance a scenario's domain expert reaches the other scenarios' samples,
    weighed (1 - β_d)/(S - 1); that is M3oE's design, so the routing test above counts it as
    shared unless ``domain_balance: false``."""
    text = _text("m3oe").replace("units: [16]}", "units: [16], implementation: einsum}")
    model = _model("m3oe", text)
    batch = _batch("m3oe")
    base = _predict(model, batch, False)
    pool = next(v for v in model.get_layer("m3oe-domain").weights if v.path.endswith("bias_0"))
    before = keras.ops.convert_to_numpy(pool)
    value = before.copy()
    value[0] += 0.5  # scenario 0's domain expert
    pool.assign(value)
    after = _predict(model, batch, False)
    pool.assign(before)
    other = batch["scenario"][:, 0] == 1
    assert np.abs(after["income"][other] - base["income"][other]).max() > 1e-6


def test_a_one_scenario_batch_sends_no_gradient_into_other_scenarios_parameters(built):
    name, model = built
    batch = _batch(name)
    rows = _rows(batch, batch["scenario"][:, 0] == 0)
    variables = [v for _, v in _per_scenario_variables(model, name) if v.trainable]

    def loss():
        return sum(keras.ops.sum(out) for out in model(rows, training=True).values())

    for v, g in zip(variables, gradients(loss, [], variables)):
        assert np.abs(g[0]).sum() > 0, v.path
        np.testing.assert_array_equal(g[1:], 0.0, err_msg=v.path)


def test_m3oe_gates_never_train_the_bottom():
    """The gates read the STAR bottom through a stop-gradient (the official code's detach): a
    loss on the gate weights alone gives the bottom no gradient; without it, it does."""
    def bottom_grad(text):
        bp, doc = load_blueprint_text(text, "m3oe.yaml", data="adult-msl")
        model = compile_graph(build_graph(bp, doc, vocab_sizes={n: 11 for n in describe("adult-msl").categorical}))
        gate = keras.Model(model.inputs, model.get_layer("m3oe-gate-income").output)
        batch, mix = _batch("m3oe"), keras.ops.convert_to_tensor(np.arange(1.0, 5.0, dtype="float32"))
        bottom = model.get_layer("bottom").trainable_variables
        grads = gradients(lambda: keras.ops.sum(gate(batch) * mix), [], bottom)
        return sum(np.abs(g).sum() for g in grads)

    text = _text("m3oe")
    assert bottom_grad(text) == 0.0
    assert bottom_grad(text.replace("units: [16]}", "units: [16], gate_stop_gradient: false}")) > 0


def test_m3oe_binds_to_adult_msl():
    bp, doc = load_blueprint(str(ROOT / "blueprints" / "m3oe.yaml"), data="adult-msl")
    graph = build_graph(bp, doc, vocab_sizes={n: 11 for n in describe("adult-msl").categorical})
    assert tuple(graph.outputs) == ("income", "never_married")
    assert graph.nodes["m3oe/domain"].out.shape[0] == 2  # one domain expert per scenario (sex)
    assert graph.nodes["m3oe/task"].out.shape[0] == 2
    assert not graph.warnings
