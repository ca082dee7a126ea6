"""Golden tests for the dynamic-weight blueprints (PEPNet, EPNet, PPNet, APG, M2M and the
EPNet -> PLE -> PPNet composition): graph and model agree on parameters, every blueprint
trains a step, predicts in (0, 1), rebinds to the two-task data, and reloads with
``safe_mode=True`` in a fresh process with identical predictions."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from composer.blueprint import BlueprintError, load_blueprint, load_blueprint_text
from composer.graph import build_graph

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}

# synthetic-msl's cardinalities + the out-of-vocabulary row (scenario: tab0, tab1, tab2)
VOCAB = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13, "scenario": 4}
# (The one-task goldens on synthetic-msl live with every other blueprint's, in
# test_blueprints_golden.py.) blueprint -> (nodes, total params) on synthetic (click, like)
# with user_segment standing in for the scenario (see _two_task). M2M reads kuairand-pure's
# behaviour sequences, so it is bound to that three-task dataset and tested there (golden,
# training, export and reload: test_blueprints_golden.py, test_training.py).
GOLDEN = {
    "apg": (5, 33_426),
    "epnet": (5, 35_886),
    "pepnet": (6, 59_182),
    "ple_pepnet": (22, 87_456),
    "ppnet": (4, 56_530),
}


def _path(name):
    return str(ROOT / "blueprints" / f"{name}.yaml")


def _two_task(name):
    """The blueprint bound to `synthetic` (click, like; no scenario column): user_segment is
    declared the scenario instead."""
    text = Path(_path(name)).read_text().replace("scenarios: from_data",
                                                 "scenarios: {feature: user_segment, count: 13}")
    return load_blueprint_text(text, _path(name), data="synthetic")


def _batch(n, seed=0, fields=5, scenario=True):
    rng = np.random.default_rng(seed)
    batch = {"ids_d8": rng.integers(0, 4, size=(n, fields)).astype("int32"),
             "numeric": rng.normal(size=(n, 2)).astype("float32")}
    if scenario:
        batch["scenario"] = (np.arange(n) % 3).reshape(-1, 1).astype("int32")
    return batch


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_two_task_graph_golden(name):
    bp, doc = _two_task(name)
    graph = build_graph(bp, doc, vocab_sizes=VOCAB)
    nodes, params = GOLDEN[name]
    assert (len(graph.nodes), graph.total_params) == (nodes, params)
    assert tuple(graph.outputs) == ("click", "like")
    assert graph.warnings == []


@pytest.mark.parametrize("name", ["pepnet", "ppnet"])
def test_two_task_model_gives_one_output_per_task(name):
    from composer.compiler import compile_graph

    bp, doc = _two_task(name)
    model = compile_graph(build_graph(bp, doc, vocab_sizes=VOCAB))
    assert model.count_params() == GOLDEN[name][1]
    out = model.predict(_batch(5, fields=4, scenario=bp.scenarios is not None), verbose=0)
    assert set(out) == {"click", "like"}
    assert not np.allclose(out["click"], out["like"])


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_fit_one_epoch_and_predict(name):
    from composer import training

    exp = training.prepare(_path(name), data="synthetic-msl:rows=600")
    history = training.fit(exp, verbose=0, epochs=1, batch_size=128)
    assert np.isfinite(history.history["loss"][-1])
    pred = training.predict(exp, "test")["click"]
    assert pred.shape == (len(exp.dataset.part("test").frame),)
    assert np.all((pred > 0) & (pred < 1))


def test_saved_models_reload_in_a_fresh_process_with_identical_predictions(tmp_path):
    from composer.compiler import compile_blueprint

    expected = {}
    for name in GOLDEN:
        model, _ = compile_blueprint(_path(name), vocab_sizes=VOCAB)
        batch = _batch(64, seed=1, scenario="scenario" in model.input)
        np.savez(tmp_path / f"{name}.npz", **batch)
        expected[name] = model.predict(batch, verbose=0)["click"]
        model.save(tmp_path / f"{name}.keras")
    script = (
        "import sys, numpy as np, composer\n"
        "batch = {n: dict(np.load(f'{sys.argv[2]}/{n}.npz')) for n in sys.argv[3:]}\n"
        "out = {n: composer.load_model(f'{sys.argv[2]}/{n}.keras', safe_mode=True)"
        ".predict(batch[n], verbose=0)['click'] for n in sys.argv[3:]}\n"
        "np.savez(f'{sys.argv[2]}/out.npz', **out)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, "unused", str(tmp_path), *GOLDEN],
                          capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stderr
    got = dict(np.load(tmp_path / "out.npz"))
    for name in GOLDEN:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


# -- errors ----------------------------------------------------------------------------------
BASE = """\
name: bad
features:
  - {name: user_id, kind: categorical, dim: 8, vocab_size: 100}
  - {name: scenario, kind: categorical, dim: 4, vocab_size: 4}
  - {name: price, kind: numeric}
groups:
  all: [user_id, scenario, price]
  domain: [scenario]
tasks:
  - {name: click}
blocks:
  x:      {type: embed, group: all}
  domain: {type: embed, group: domain}
  fields: {type: embed, group: domain, mode: fields}
  pool:   {type: expert_pool, input: x, experts: 2, units: [8]}
"""


@pytest.mark.parametrize("blocks,message,hint", [
    ("  b: {type: apg, input: x, strategy: self, condition: domain, units: [8]}\n"
     "  t: {type: tower, input: b}\n",
     "strategy 'self' conditions on the layer's own input", "drop condition"),
    ("  b: {type: apg, input: x, strategy: group, units: [8]}\n  t: {type: tower, input: b}\n",
     "strategy 'group' needs a condition", "strategy: self"),
    ("  b: {type: gate_nu, input: [x, domain]}\n  t: {type: tower, input: b}\n",
     "gate_nu needs its output width", "set units"),
    ("  b: {type: gate_nu, input: domain, units: 3, scale: x}\n  t: {type: tower, input: b}\n",
     "units is 3 but scale has width", "drop units"),
    ("  b: {type: epnet, domain: fields, input: x}\n  t: {type: tower, input: b}\n",
     "expects a vector", None),
    ("  b: {type: meta_attention, experts: x, scenario: domain}\n  t: {type: tower, input: b}\n",
     "experts is not an expert pool", "expert_pool"),
])
def test_shape_errors_point_at_the_field(blocks, message, hint):
    text = BASE + blocks + "outputs: {click: t}\n"
    with pytest.raises(BlueprintError) as exc:
        bp, doc = load_blueprint_text(text, "bad.yaml")
        build_graph(bp, doc)
    err = str(exc.value)
    assert message in err and "bad.yaml:" in err and "blocks.b." in err
    if hint:
        assert hint in err


def test_gate_nu_with_scale_multiplies():
    from composer.compiler import compile_graph

    text = BASE + ("  g: {type: gate_nu, input: [domain, x], scale: x, hidden: 4}\n"
                   "  t: {type: tower, input: g}\n") + "outputs: {click: t}\n"
    bp, doc = load_blueprint_text(text, "ok.yaml")
    graph = build_graph(bp, doc)
    assert graph.nodes["g"].out.shape == (13,)  # user_id 8 + scenario 4 + price
    assert graph.nodes["g"].params == (4 + 13) * 4 + 4 + 4 * 13 + 13
    model = compile_graph(graph)
    assert "pool" in graph.unused  # counted by neither: Keras leaves out a layer no output reads
    assert model.count_params() == graph.total_params
    gate, product = model.get_layer("g"), model.get_layer("g-scaled")
    assert type(gate).__name__ == "GateNU" and type(product).__name__ == "Multiply"


def test_block_module_imports_without_tensorflow():
    code = ("import sys, composer.blocks.dynamic; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')); "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV).returncode == 0


def test_layers_use_keras_ops_only():
    text = (ROOT / "composer" / "layers" / "dynamic.py").read_text()
    assert "tensorflow" not in text and " tf." not in text and "Lambda" not in text


@pytest.mark.parametrize("fields,self_condition", [("", True), (", condition: domain", False),
                                                   (", condition: domain, strategy: mix", False)])
def test_apg_strategy_defaults_from_the_condition(fields, self_condition):
    from composer.compiler import compile_graph

    text = BASE + (f"  b: {{type: apg, input: x, units: [6], rank: 2{fields}}}\n"
                   "  t: {type: tower, input: b}\n") + "outputs: {click: t}\n"
    bp, doc = load_blueprint_text(text, "ok.yaml")
    graph = build_graph(bp, doc)
    cond = 13 if self_condition else 4  # x is 13 wide, domain 4
    assert graph.nodes["b"].params == 13 * 2 + 2 * 6 + 6 + cond * 4 + 4
    model = compile_graph(graph)
    assert model.get_layer("b").self_condition is self_condition
    assert model.get_layer("b").count_params() == graph.nodes["b"].params
