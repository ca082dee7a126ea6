"""Scenarios in the language and the data: declaration, binding, routing input, errors, the
HMoE gradient isolation inside a compiled blueprint, diagrams, serving with raw scenario values."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from composer.blueprint import load_blueprint, load_blueprint_text
from composer.blueprint.errors import BlueprintError
from composer.cli import main
from composer.data.registry import load
from composer.graph import build_graph

ROOT = Path(__file__).resolve().parents[1]
VOCAB = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13, "scenario": 4}

BASE = """name: msl
data: synthetic-msl
features: {from_data: true, dim: 8}
groups:
  all: ["*"]
  domain: ["*scenario"]
tasks: from_data
scenarios: from_data
blocks:
  x:      {type: embed, group: all}
  tower:  {type: split_merge, for_each: task, input: x, units: [8]}
outputs: "tower.{task}"
"""


def _error(text, data=None) -> BlueprintError:
    with pytest.raises(BlueprintError) as info:
        build_graph(*load_blueprint_text(text, file="bp.yaml", data=data))
    return info.value


def test_from_data_takes_the_datasets_scenario_column_and_values():
    bp, _ = load_blueprint_text(BASE, file="bp.yaml")
    assert bp.scenarios.feature == "scenario"
    assert bp.scenarios.ids == ["tab0", "tab1", "tab2"]
    assert bp.groups["domain"] == ["scenario"]
    bp, _ = load_blueprint_text(BASE, file="bp.yaml", data="census-msl")
    assert (bp.scenarios.feature, bp.scenarios.ids) == ("sex", ["Female", "Male"])
    assert bp.groups["domain"] == ["sex"]


def test_stamping_per_scenario_names_copies_after_the_values():
    text = BASE.replace("  tower:  {type: split_merge, for_each: task, input: x, units: [8]}",
                        "  t:      {type: tower, for_each: scenario, input: x}\n"
                        "  tower:  {type: split_merge, for_each: task, input: x, units: [8]}")
    bp, doc = load_blueprint_text(text, file="bp.yaml")
    graph = build_graph(bp, doc, VOCAB)
    assert [n for n in graph.nodes if n.startswith("t.")] == ["t.tab0", "t.tab1", "t.tab2"]
    assert graph.nodes["t.tab2"].scenario == "tab2"


@pytest.mark.parametrize("text,data,expected", [
    (BASE, "synthetic", r"bp.yaml:8:\d+: scenarios: dataset 'synthetic' has no scenario column; bind a multi-scenario"),
    (BASE.replace("scenarios: from_data", "scenarios: {feature: scenario, values: [a, b], count: 2}"), None,
     r"bp.yaml:8:\d+: scenarios: give either values or count, not both"),
    (BASE.replace("scenarios: from_data", "scenarios: {feature: scenario, values: [a, b, a]}"), None,
     r"bp.yaml:8:\d+: scenarios.values: scenario value 'a' is listed twice"),
    (BASE.replace("scenarios: from_data", "scenarios: {feature: item_id}"), None,
     r"scenarios: the scenarios need their values or their count; add values"),
    (BASE.replace("scenarios: from_data", "scenarios: {feature: secnario, values: [a, b]}"), None,
     r"scenarios.feature: unknown feature 'secnario'; did you mean 'scenario'"),
    (BASE.replace("scenarios: from_data\n", ""), None,
     r"bp.yaml:6:12: groups.domain\[0\]: '\*scenario' matches no feature; '\*scenario' needs a scenarios: section"),
    (BASE.replace("scenarios: from_data\n", "").replace('  domain: ["*scenario"]\n', ""), None,
     r"blocks.tower: 'tower.click': this block routes by scenario but the blueprint declares no scenarios"),
    (BASE.replace("scenarios: from_data", "scenarios: {feature: scenario, valeus: [a, b]}"), None,
     r"bp.yaml:8:32: scenarios: unknown key 'valeus'; did you mean 'values'\? valid keys: count, feature, values"),
])
def test_scenario_mistakes_are_located(text, data, expected):
    err = _error(text, data)
    assert re.search(expected, str(err)), str(err)


def test_hmoe_needs_scenarios():
    text = BASE.replace("scenarios: from_data\n", "").replace('  domain: ["*scenario"]\n', "").replace(
        "  tower:  {type: split_merge, for_each: task, input: x, units: [8]}",
        "  tower:  {type: hmoe, input: x, units: [8]}")
    assert "hmoe routes by scenario but the blueprint declares no scenarios" in str(_error(text))


def test_hmoe_fusion_needs_one_score_per_scenario():
    text = BASE.replace(
        "  tower:  {type: split_merge, for_each: task, input: x, units: [8]}",
        "  a:      {type: tower, input: x}\n  b:      {type: tower, input: x}\n"
        "  tower:  {type: hmoe_fusion, for_each: task, input: x, scores: [a, b]}")
    assert re.search(r"bp.yaml:13:11: blocks.tower: 'tower.click': 2 scores for 3 scenarios; give one logit per scenario",
                     str(_error(text)))


def test_a_scenario_value_outside_the_declared_set_is_a_data_error(tmp_path, capsys):
    rows = 60
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, 5, rows).astype(str),
                          "tab": ["a", "b", "c"] * (rows // 3),
                          "click": rng.integers(0, 2, rows)})
    frame.to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "data.yaml").write_text(
        "source: log.csv\ncategorical: [user, tab]\nlabels: {click: click}\nscenario: tab\n"
        "scenario_values: [a, b]\n")
    (tmp_path / "bp.yaml").write_text(BASE.replace("data: synthetic-msl", "data: data.yaml"))
    code = main(["train", str(tmp_path / "bp.yaml"), "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--verbose", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "log.csv:4: tab: 20 rows have a scenario value outside the declared set: 'c' (20 rows)" in err
    assert "declared: a, b" in err
    assert "Traceback" not in err


def test_scenario_values_need_a_scenario_column(tmp_path, capsys):
    (tmp_path / "data.yaml").write_text(
        "source: log.csv\ncategorical: [user, tab]\nlabels: {click: click}\nscenario_values: [a, b]\n")
    (tmp_path / "bp.yaml").write_text(BASE.replace("data: synthetic-msl", "data: data.yaml"))
    assert main(["validate", str(tmp_path / "bp.yaml")]) == 2
    assert "scenario_values without a scenario column" in capsys.readouterr().err


def test_hmoe_a_scenario_a_batch_never_updates_scenario_b_towers():
    import keras
    from backend_grad import gradients

    from composer.compiler import BuildContext, compile_graph

    bp, doc = load_blueprint(str(ROOT / "blueprints/hmoe.yaml"))
    model = compile_graph(build_graph(bp, doc, VOCAB))
    rng = np.random.default_rng(0)
    batch = {"ids_d8": rng.integers(0, 4, size=(32, 5)).astype("int32"),
             "numeric": rng.normal(size=(32, 2)).astype("float32"),
             "scenario": np.zeros((32, 1), "int32")}  # every sample in tab0
    towers = {s: model.get_layer(BuildContext.layer_name_of(f"hmoe/click/tower.{s}")).trainable_weights
              for s in ("tab0", "tab1", "tab2")}

    def loss():
        p = model(batch, training=True)["click"]
        return keras.ops.mean(keras.losses.binary_crossentropy(np.ones((32, 1), "float32"), p))

    grads = gradients(loss, [], [w for s in towers for w in towers[s]])
    n = len(towers["tab0"])
    own, others = grads[:n], grads[n:]
    assert sum(float(np.abs(g).sum()) for g in own) > 0
    for g in others:
        np.testing.assert_array_equal(g, 0.0)


def test_diagram_clusters_scenarios_and_dashes_stop_gradient_edges(tmp_path):
    out = tmp_path / "hmoe.dot"
    assert main(["render", str(ROOT / "blueprints/hmoe.yaml"), "-o", str(out)]) == 0
    dot = out.read_text()
    for s in ("tab0", "tab1", "tab2"):
        assert f"cluster_scenario_{s}" in dot
    dashed = [line for line in dot.splitlines() if "->" in line and "hmoe/fusion.click" in line
              and "dashed" in line]
    assert len(dashed) == 3 and all("stop-grad unless own scenario" in line for line in dashed)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="the SavedModel export is TensorFlow-only")
def test_serving_export_takes_raw_scenario_values_and_refuses_unknown_ones(tmp_path):
    import tensorflow as tf

    from composer import training
    from composer.export_tf import export_saved_model, raw_features

    exp = training.prepare(str(ROOT / "blueprints/star.yaml"), data="synthetic-msl:rows=3000")
    rows = exp.dataset.part("test").frame.head(50)
    expected = exp.model.predict(exp.pre.pack(rows, exp.graph.layout), verbose=0)["click"].reshape(-1)
    export_saved_model(exp, str(tmp_path / "sm"))
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    raw = raw_features(rows, exp.graph.layout)
    got = serve(**{k: tf.constant(v) for k, v in raw.items()})["click"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    raw["scenario"] = raw["scenario"].copy()
    raw["scenario"][0] = "tab9"
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the declared scenarios"):
        serve(**{k: tf.constant(v) for k, v in raw.items()})


def test_compare_prints_a_per_scenario_table(tmp_path, capsys):
    code = main(["compare", str(ROOT / "blueprints/shared_bottom.yaml"), str(ROOT / "blueprints/split_merge.yaml"),
                 "--data", "synthetic-msl:rows=3000", "--epochs", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    head = next(line for line in out.splitlines() if line.startswith("model") and "tab0" in line)
    assert head.split() == ["model", "tab0", "click", "AUC", "tab1", "click", "AUC", "tab2", "click", "AUC"]
    assert re.search(r"per scenario \(test rows: tab0 \d[\d,]*, tab1 \d[\d,]*, tab2 \d[\d,]*\)", out)
    assert "tab2 click AUC" in (tmp_path / "compare.txt").read_text()
    # the planted-truth row: the generator's noiseless score, in both tables, saved, marked as no model
    planted = [line.split() for line in out.splitlines() if line.startswith("(planted truth) ")]
    assert len(planted) == 3 and "not a model" in out  # overall, per scenario AUC, per scenario GAUC
    saved = json.loads((tmp_path / "planted-truth" / "metrics.json").read_text())
    data = load("synthetic-msl:rows=3000")
    test = data.split == "test"
    frame, score = data.frame[test], data.meta["planted"]["click"][test]
    tab2 = (frame["scenario"] == "tab2").to_numpy()
    assert float(planted[1][-1]) == pytest.approx(roc_auc_score(frame["click"][tab2], score[tab2]), abs=1e-4)
    assert saved["tasks"]["click"]["auc"] == pytest.approx(roc_auc_score(frame["click"], score), abs=1e-12)
    assert float(planted[0][2]) == pytest.approx(saved["tasks"]["click"]["auc"], abs=1e-4)


def test_referencing_a_block_stamped_per_scenario_names_its_copies():
    text = BASE.replace("  tower:  {type: split_merge, for_each: task, input: x, units: [8]}",
                        "  t:      {type: mlp, for_each: scenario, input: x, units: [4]}\n"
                        "  tower:  {type: split_merge, for_each: task, input: t, units: [8]}")
    err = str(_error(text))
    assert "'t' is stamped per scenario; reference one copy: t.tab0, t.tab1, t.tab2, or 't.{scenario}'" in err
