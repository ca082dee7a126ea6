"""Golden test per blueprint: output names, shapes and parameter counts (pure-Python shape
rules and the compiled Keras model must agree with each other and with the recorded figures)."""
import numpy as np
import pytest

from composer.blueprint import load_blueprint
from composer.graph import build_graph

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The shipped blueprints take their features from the data (`features: {from_data: ...}`), so
# embedding rows come from fitted vocabularies; these fixed sizes (the synthetic data's
# cardinalities + the out-of-vocabulary row) make the counts exact and data-independent.
VOCAB = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13, "scenario": 4}
# blueprint -> (graph nodes, total parameters, outputs)
MT = ("click", "like")
KR = ("is_click", "long_view", "is_like")
# kuairand-pure's tables: the ids, the scenario and the tags sized apart, every side feature 11
KR_VOCAB = {"user_id": 1001, "video_id": 2001, "author_id": 1501, "tab": 16, "tag": 81}
KR_INPUTS = {"ids_d8": (37,), "seq_tag": (4,), "seq_hist_video": (50,), "seq_hist_author": (50,),
             "seq_long_video": (50,), "seq_like_video": (20,), "numeric": (15,)}


def _vocab(name):
    if name not in KUAIRAND:
        return VOCAB
    from composer.data.registry import describe

    return {**{n: 11 for n in describe("kuairand-pure").categorical}, **KR_VOCAB}
GOLDEN = {
    "shared_bottom": (4, 41_490, MT),
    "omoe": (6, 44_126, MT),
    "mmoe": (8, 44_266, MT),
    "mmoe_uncertainty": (8, 44_266, MT),
    "mmoe_gradnorm": (8, 44_266, MT),
    "mmoe_pareto": (8, 44_266, MT),
    "mmoe_pcgrad": (8, 44_266, MT),
    "mmoe_famo": (8, 44_266, MT),
    "cgc": (10, 52_906, MT),
    "ple": (19, 78_532, MT),
    "esmm": (4, 33_234, ("ctr", "cvr", "ctcvr")),
    # ESCM2: ESMM's graph; DR adds an imputation tower (34*64+64 + 64*32+32 + 33 = 4,353), an output
    # that is not a task
    "escm2_ips": (4, 33_234, ("ctr", "cvr", "ctcvr")),
    "escm2_dr": (5, 33_234 + 4_353, ("ctr", "cvr", "ctcvr", "cvr_error")),
    "esm2": (8, 41_940, ("ctr", "ctavr", "ctcvr", "avr", "cvr", "cvr_action", "cvr_other")),
    # issue 19 (composer/blocks/multitask.py): aitm on synthetic-chain, the others on synthetic;
    # aitm by hand: embeddings 24,528; towers 2 x (34*64+64 + 64*32+32) = 8,640; transfer MLP
    # 32*32+32 = 1,056; AIT 3 x 32*32 = 3,072; logits 2 x 33 -> 37,362. stem: three embedding
    # sets (shared + one per task) 3 x 24,528 + experts 3 x 4,320 + gates 2 x 105 + towers 2 x 1,089
    "aitm": (8, 37_362, ("ctr", "ctcvr")),
    "dselect_k": (8, 38_850, MT),
    "dbmtl": (9, 32_274, MT),
    "stem": (14, 88_932, MT),
    # multi-scenario (synthetic-msl: click; the scenario is a feature and routes)
    "split_merge": (3, 31_027, ("click",)),
    "scenario_tower": (6, 30_018, ("click",)),
    "hmoe": (12, 46_426, ("click",)),
    "star": (7, 45_441, ("click",)),
    "lhuc": (7, 30_166, ("click",)),
    "hamur": (7, 44_083, ("click",)),
    # dynamic weights (synthetic-msl); ppnet routes by nothing, so it takes no scenario input
    "apg": (4, 33_041, ("click",)),
    "epnet": (4, 33_373, ("click",)),
    "pepnet": (5, 46_557, ("click",)),
    "ple_pepnet": (15, 69_561, ("click",)),
    "ppnet": (3, 42_609, ("click",)),
    # issue 20 (composer/blocks/scenario_adaptive.py, synthetic-msl); adaptdhm counts its
    # non-trainable centroids (4 x 64)
    "sarnet": (8, 46_037, ("click",)),
    "adasparse": (4, 30_801, ("click",)),
    "adaptdhm": (3, 38_133, ("click",)),
    # kuairand-pure (is_click, long_view, is_like; behaviour sequences; m2m routes by tab)
    "din_mmoe": (20, 271_389, KR),
    "bst_ple": (31, 190_964, KR),
    "m2m": (15, 282_654, KR),
    "m3oe": (18, 223_550, KR),  # multi-scenario and multi-task at once; no sequences
}
KUAIRAND = {"din_mmoe", "bst_ple", "m2m", "m3oe"}
# din_mmoe.yaml's first target attention by hand: a history position is [video, author] (16
# wide), so the activation unit reads 4 x 16 = 64: 64*64+64 + 64*32+32, then the score 32+1.
assert 64 * 64 + 64 + 64 * 32 + 32 + 33 == 6_273
# ppnet.yaml by hand: embeddings (1001+2001+51+13+4)*8 = 24,560; tower over x (42) with the
# persona ids (5 fields, 40): dense 42*64+64 = 2,752, gate (82->64->64) 9,472, dense 64*32+32 =
# 2,080, gate (82->32->32) 3,712, logit 33.
assert 24_560 + 2_752 + 9_472 + 2_080 + 3_712 + 33 == GOLDEN["ppnet"][1]
# adasparse.yaml by hand: embeddings 24,560; over x (42) layers 42*64+64 = 2,752 and 64*32+32 =
# 2,080, their pruners over the scenario embedding (8) 8*64+64 = 576 and 8*32+32 = 288; tower
# 32*16+16 + 17 = 545.
assert 24_560 + 2_752 + 576 + 2_080 + 288 + 545 == GOLDEN["adasparse"][1]
# esm2.yaml by hand: embeddings (1001+2001+51+13)*8 = 24,528; each of the towers y1..y4 over x
# (4*8 + 2 numerics = 34): dense 34*64+64 = 2,240, dense 64*32+32 = 2,080, logit 33 = 4,353;
# the three chains have no weights.
assert 24_528 + 4 * (2_240 + 2_080 + 33) == GOLDEN["esm2"][1]
assert 24_528 + 8_640 + 1_056 + 3_072 + 2 * 33 == GOLDEN["aitm"][1]
assert 3 * 24_528 + 3 * 4_320 + 2 * 105 + 2 * 1_089 == GOLDEN["stem"][1]
# dselect_k.yaml: 8 experts of 34*32+32 + 32*16+16; per task gate z (35 x 2*3) and w (35 x 2), tower 272+17
assert 24_528 + 8 * 1_648 + 2 * (35 * 6 + 35 * 2) + 2 * (272 + 17) == GOLDEN["dselect_k"][1]
# dbmtl.yaml: bottom 34*64+64; towers 2 x (64*32+32); relation MLPs click 32->16, like [32, 16]->16; logits 2 x 17
assert 24_528 + 2_240 + 2 * 2_080 + 528 + 784 + 2 * 17 == GOLDEN["dbmtl"][1]
# m3oe.yaml by hand: x = 37*8 + 15 = 311 wide; STAR bottom (1+15)*(311*32+32) = 159,744; shared,
# domain and task pools (4 + 15 + 3)*(32*16+16) = 11,616; three gates 3*15*(32+1)*4 = 5,940;
# three fusions 3*7; three towers 3*15*(16*8+8 + 8+1) = 6,525; embeddings 39,704.
assert 159_744 + 11_616 + 5_940 + 3 * 7 + 6_525 + 39_704 == GOLDEN["m3oe"][1]
INPUTS = {"ids_d8": (4,), "numeric": (2,)}
MSL_INPUTS = {"ids_d8": (5,), "numeric": (2,), "scenario": (1,)}


def _inputs(outputs, name=""):
    if name in KUAIRAND:
        return {**KR_INPUTS, "scenario": (1,)} if name in ("m2m", "m3oe") else KR_INPUTS
    if outputs != ("click",):
        return INPUTS
    return {"ids_d8": (5,), "numeric": (2,)} if name == "ppnet" else MSL_INPUTS


def _batch(outputs, n=5, seed=0, name=""):
    rng = np.random.default_rng(seed)
    shapes = _inputs(outputs, name)
    if name in KUAIRAND:  # ids within every table; lists padded (-1) at random, one row empty
        batch = {k: rng.integers(0, 11, size=(n, *v)).astype("int32") for k, v in shapes.items()
                 if k not in ("numeric", "scenario")}
        for k in batch:
            if k.startswith("seq_"):
                batch[k] = np.where(rng.random(batch[k].shape) < 0.4, -1, batch[k]).astype("int32")
                batch[k][0] = -1
        batch["numeric"] = rng.normal(size=(n, shapes["numeric"][0])).astype("float32")
        if "scenario" in shapes:
            batch["scenario"] = (np.arange(n) % 15).reshape(-1, 1).astype("int32")
        return batch
    batch = {"ids_d8": rng.integers(0, 4, size=(n, shapes["ids_d8"][0])).astype("int32"),
             "numeric": rng.normal(size=(n, 2)).astype("float32")}
    if "scenario" in shapes:
        batch["scenario"] = (np.arange(n) % 3).reshape(-1, 1).astype("int32")
    return batch


# shipped blueprints whose gates per task meet a one-task default dataset (a warning, tested)
ONE_TASK_GATES = {"ple_pepnet": "ple"}


def test_every_blueprint_has_a_golden_entry():
    shipped = {p.stem for p in (ROOT / "blueprints").glob("*.yaml")}
    assert shipped == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_graph_golden(name):
    bp, doc = load_blueprint(str(ROOT / "blueprints" / f"{name}.yaml"))
    graph = build_graph(bp, doc, vocab_sizes=_vocab(name))
    nodes, params, outputs = GOLDEN[name]
    assert len(graph.nodes) == nodes
    assert graph.total_params == params
    assert tuple(graph.outputs) == outputs
    assert graph.layout.inputs() == {k: (v, "float32" if k == "numeric" else "int32")
                                     for k, v in _inputs(outputs, name).items()}
    if name in ONE_TASK_GATES:  # bound to one-label data (synthetic-msl): said, not hidden
        assert [w.split(": ", 2)[1] for w in graph.warnings] == [f"blocks.{ONE_TASK_GATES[name]}"]
        assert " over one task (tasks: from_data and the bound dataset has one label, 'click')" in graph.warnings[0]
    else:
        assert graph.warnings == []
    imputations = tuple(t.risk.imputation for t in bp.tasks if t.risk and t.risk.imputation)
    assert tuple(t.name for t in bp.tasks) + imputations == outputs  # bound to the blueprint's dataset


def test_blocks_without_data_are_counted_and_embeddings_left_open():
    bp, doc = load_blueprint(str(ROOT / "blueprints" / "ple.yaml"))
    graph = build_graph(bp, doc)
    assert graph.total_params is None
    assert graph.block_params == GOLDEN["ple"][1] - sum(v * 8 for k, v in VOCAB.items() if k != "scenario")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_model_golden(name):
    from composer.compiler import compile_graph

    bp, doc = load_blueprint(str(ROOT / "blueprints" / f"{name}.yaml"))
    graph = build_graph(bp, doc, vocab_sizes=_vocab(name))
    model = compile_graph(graph)
    # the summary's count is Keras's: no block that Keras leaves out (one no output reads)
    assert model.count_params() == graph.total_params == GOLDEN[name][1]
    outputs = GOLDEN[name][2]
    assert sorted(model.output_names) == sorted(outputs)
    out = model.predict(_batch(outputs, name=name), verbose=0)
    assert set(out) == set(outputs)
    for value in out.values():
        assert value.shape == (5, 1)
        assert np.all((value > 0) & (value < 1))
    if len(outputs) > 1:
        assert not np.allclose(out[outputs[0]], out[outputs[1]])
    else:
        assert not np.allclose(out[outputs[0]], out[outputs[0]][0])


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_model_summary_expands_every_nested_layer(name):
    """``model.summary(expand_nested=True)`` walks each layer's ``.layers`` as a list of
    sub-layers; a layer that keeps a count under that name (as CrossNetwork and MetaTower once
    did) breaks it with a TypeError."""
    from composer.compiler import compile_graph

    bp, doc = load_blueprint(str(ROOT / "blueprints" / f"{name}.yaml"))
    model = compile_graph(build_graph(bp, doc, vocab_sizes=_vocab(name)))
    lines = []
    model.summary(expand_nested=True, print_fn=lambda line, **kw: lines.append(line))
    assert any("Total params" in line for line in lines)
