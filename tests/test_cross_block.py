"""The `cross` block (DCN-v2's cross network): shape rule, parameter count against the compiled
Keras model, a shape error that names the field, and a reload with identical predictions.
The layer's forward pass is checked against NumPy in tests/layers/test_layers_dense.py."""
import keras
import numpy as np
import pytest

from composer.blueprint import BlueprintError, load_blueprint_text
from composer.graph import build_graph

BASE = """
name: cross_test
features:
  - {name: user_id, kind: categorical, vocab_size: 50, dim: 4}
  - {name: item_id, kind: categorical, vocab_size: 30, dim: 4}
  - {name: price, kind: numeric}
groups:
  all: [user_id, item_id, price]
tasks:
  - {name: click}
blocks:
  x:      {type: embed, group: all}
"""


def _graph(blocks):
    bp, doc = load_blueprint_text(BASE + blocks + "outputs: {click: t}\n", "cross.yaml")
    return build_graph(bp, doc)


@pytest.mark.parametrize("options,per_layer", [("", 9 * 9 + 9), (", low_rank: 2", 2 * 9 * 2 + 9)])
def test_cross_keeps_width_and_counts_its_weights(options, per_layer):
    from composer.compiler import compile_graph

    graph = _graph(f"  c: {{type: cross, input: x, layers: 3{options}}}\n  t: {{type: tower, input: c}}\n")
    assert graph.nodes["c"].out.shape == (9,)  # 2 fields x 4 + price
    assert graph.nodes["c"].params == 3 * per_layer
    model = compile_graph(graph)
    assert model.count_params() == graph.total_params
    assert type(model.get_layer("c")).__name__ == "CrossNetwork"


def test_cross_on_expert_outputs_is_a_shape_error_naming_the_field():
    with pytest.raises(BlueprintError) as exc:
        _graph("  pool: {type: expert_pool, input: x, experts: 2, units: [4]}\n"
               "  c: {type: cross, input: pool}\n  t: {type: tower, input: c}\n")
    err = str(exc.value)
    assert "cross.yaml:" in err and "blocks.c.input" in err and "a vector" in err


def test_cross_low_rank_no_cheaper_than_full_is_an_error():
    with pytest.raises(BlueprintError) as exc:
        _graph("  c: {type: cross, input: x, low_rank: 5}\n  t: {type: tower, input: c}\n")
    err = str(exc.value)
    assert "blocks.c.low_rank" in err and "width 9" in err and "below 5" in err


def test_cross_model_reloads_with_identical_predictions(tmp_path):
    from composer.compiler import compile_graph

    graph = _graph("  c: {type: cross, input: x, layers: 2, low_rank: 3, l2: 0.001}\n"
                   "  t: {type: tower, input: c, units: [4]}\n")
    model = compile_graph(graph)
    rng = np.random.default_rng(0)
    batch = {"ids_d4": rng.integers(0, 30, size=(6, 2)).astype("int32"),
             "numeric": rng.normal(size=(6, 1)).astype("float32")}
    path = tmp_path / "cross.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(batch)["click"]),
                                  keras.ops.convert_to_numpy(model(batch)["click"]))
