"""Golden test per blueprint: output names, shapes and parameter counts (pure-Python shape
rules and the compiled Keras model must agree with each other and with the recorded figures)."""
import numpy as np
import pytest

from composer.blueprint import load_blueprint
from composer.graph import build_graph

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# blueprint -> (graph nodes, total parameters, model inputs)
GOLDEN = {
    "shared_bottom": (4, 67_506),
    "omoe": (6, 72_254),
    "mmoe": (8, 72_458),
    "cgc": (10, 83_146),
    "ple": (19, 108_868),
}
INPUTS = {"ids_d16": (2,), "ids_d8": (2,), "numeric": (2,)}


def test_every_blueprint_has_a_golden_entry():
    shipped = {p.stem for p in (ROOT / "blueprints").glob("*.yaml")}
    assert shipped == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_graph_golden(name):
    bp, doc = load_blueprint(str(ROOT / "blueprints" / f"{name}.yaml"))
    graph = build_graph(bp, doc)
    nodes, params = GOLDEN[name]
    assert len(graph.nodes) == nodes
    assert graph.total_params == params
    assert set(graph.outputs) == {"click", "like"}
    assert graph.layout.inputs() == {k: (v, "int32" if k.startswith("ids") else "float32")
                                     for k, v in INPUTS.items()}
    assert graph.warnings == []


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_model_golden(name):
    from composer.compiler import compile_graph

    bp, doc = load_blueprint(str(ROOT / "blueprints" / f"{name}.yaml"))
    model = compile_graph(build_graph(bp, doc))
    assert model.count_params() == GOLDEN[name][1]
    assert sorted(model.output_names) == ["click", "like"]
    rng = np.random.default_rng(0)
    batch = {"ids_d16": rng.integers(0, 1000, size=(5, 2)).astype("int32"),
             "ids_d8": rng.integers(0, 12, size=(5, 2)).astype("int32"),
             "numeric": rng.normal(size=(5, 2)).astype("float32")}
    out = model.predict(batch, verbose=0)
    assert set(out) == {"click", "like"}
    for value in out.values():
        assert value.shape == (5, 1)
        assert np.all((value > 0) & (value < 1))
    assert not np.allclose(out["click"], out["like"])
