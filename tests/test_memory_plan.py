"""composer/memory_plan.py and `composer plan`'s memory plan: per table rows x width x bytes with
the optimizer's slots, per device under the layout, the refusal of a layout over the budget,
and no deep-learning framework imported."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_helpers import ENV, ROOT, composer, one_error_line
from composer.blueprint import BlueprintError, load_blueprint_text
from composer.graph import build_graph
from composer.memory_plan import MIB, SLOTS, MemoryPlan, mesh_shape

BIG = """
name: big_tables
data: synthetic
features:
  - {name: user_id, kind: categorical, dim: 64, hash_buckets: 50000000}
  - {name: item_id, kind: categorical, dim: 64, vocab_size: 10000001}
  - {name: item_category, kind: categorical, dim: 8, vocab_size: 1000}
  - {name: user_segment, kind: categorical, dim: 8, vocab_size: 100}
  - {name: price, kind: numeric}
groups: {all: ["*"]}
tasks: from_data
blocks:
  x: {type: embed, group: all}
  bottom: {type: shared_bottom, input: x, units: [32]}
  tower: {type: tower, for_each: task, input: "bottom.{task}", units: [8]}
outputs: "tower.{task}"
training: {distribution: model_parallel, shard_min_rows: 1000000}
"""


def _plan(text=BIG, devices=8, **training):
    bp, doc = load_blueprint_text(text)
    graph = build_graph(bp, doc)
    return graph, MemoryPlan.of(graph, bp.training.model_copy(update=training), devices)


def test_figures_per_table_with_adam_slots_sharded_over_8():
    graph, plan = _plan()
    big, small = plan.tables
    # 60,000,001 rows padded to a multiple of 8
    assert (big.name, big.rows, big.width, big.sharded) == ("embedding_d64", 60_000_008, 64, True)
    assert (small.name, small.rows, small.width, small.sharded) == ("embedding_d8", 1_100, 8, False)
    assert big.weight_bytes == 60_000_008 * 64 * 4
    assert plan.device_bytes(big) == 60_000_008 * 64 * 4 * 3 // 8  # weights + Adam's m and v, an eighth
    assert plan.device_bytes(small) == 1_100 * 8 * 4 * 3  # replicated
    assert plan.other_params == graph.total_params - (60_000_001 * 64 + 1_100 * 8)
    assert plan.per_device() == plan.device_bytes(big) + plan.device_bytes(small) + plan.other_params * 4 * 3
    assert plan.replicated_per_device() == (60_000_008 * 64 + 1_100 * 8 + plan.other_params) * 4 * 3


@pytest.mark.parametrize("optimizer, slots", sorted(SLOTS.items()))
def test_optimizer_slots(optimizer, slots):
    _, plan = _plan(distribution="none", optimizer=optimizer)
    assert plan.copies == 1 + slots
    assert plan.per_device() == plan.replicated_per_device()
    assert all(not t.sharded for t in plan.tables)


def test_model_axis_and_threshold():
    _, plan = _plan(devices=8, model_axis=2)
    assert plan.model_axis == 2 and plan.tables[0].rows == 60_000_002
    _, plan = _plan(shard_min_rows=100_000_000)  # nothing is large enough
    assert not any(t.sharded for t in plan.tables)


def test_mesh_shapes_and_their_errors():
    assert mesh_shape(8, None) == (1, 8) and mesh_shape(8, 4) == (2, 4)
    with pytest.raises(BlueprintError) as exc:
        mesh_shape(8, 3)
    assert str(exc.value) == ("training.model_axis: 3 does not divide the 8 devices into a (batch, model) mesh; "
                              "use one of 1, 2, 4, 8")
    with pytest.raises(BlueprintError) as exc:
        mesh_shape(8, 16)
    assert str(exc.value) == "training.model_axis: 16 devices on the model axis, but only 8 device(s) to lay out; use at most 8"


def test_budget_refusal_names_the_figures():
    _, plan = _plan()
    plan.check(6000)  # 5,493.33 MiB per device fits
    with pytest.raises(BlueprintError) as exc:
        plan.check(2000)
    per = plan.per_device() / MIB
    assert str(exc.value) == (
        f"training.device_memory_mb: the model needs {per:,.2f} MiB per device under model_parallel on a "
        "(1 batch x 8 model) mesh of 8 device(s) (weights and adam slots; largest table embedding_d64: "
        "60,000,008 x 64), over the budget of 2,000 MiB; shard over more devices (a larger model axis), lower "
        "training.shard_min_rows, hash to fewer rows, or use a lighter optimizer (adam keeps 2 slot(s) per weight)")


def test_plan_command_prints_the_table_and_refuses_over_budget(tmp_path):
    bp = tmp_path / "big.yaml"
    bp.write_text(BIG)
    ok = composer("plan", bp, "--devices", "8", "--device-memory-mb", "6000")
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert "memory plan: model_parallel on a (1 batch x 8 model) mesh of 8 device(s), float32" in lines
    row = next(x for x in lines if x.startswith("embedding_d64"))
    assert row.split()[:8] == ["embedding_d64", "user_id,", "item_id", "60,000,008", "64", "14,648.44",
                               "29,296.88", "sharded"]
    assert "fits the budget of 6,000 MiB per device" in lines
    refused = composer("plan", bp, "--devices", "8", "--device-memory-mb", "2000")
    assert one_error_line(refused).startswith("--device-memory-mb: the model needs 5,493.33 MiB per device under "
                                              "model_parallel on a (1 batch x 8 model) mesh of 8 device(s)")
    replicated = composer("plan", bp, "--distribution", "none", "--device-memory-mb", "6000")
    assert one_error_line(replicated) == (
        "--device-memory-mb: the model needs 43,945.47 MiB per device under one device (weights and adam slots; "
        "largest table embedding_d64: 60,000,001 x 64), over the budget of 6,000 MiB; shard the large tables: "
        "distribution: model_parallel (KERAS_BACKEND=jax), or hash to fewer rows")


def test_plan_with_fitted_sizes_from_a_run_folder(tmp_path):
    text = BIG.replace(", vocab_size: 10000001", "")
    bp = tmp_path / "fitted.yaml"
    bp.write_text(text)
    unknown = composer("plan", bp, "--devices", "8")
    assert unknown.returncode == 0 and "rows of item_id are fitted from the data: pass --run RUN_DIR" in unknown.stdout
    refused = composer("plan", bp, "--devices", "8", "--device-memory-mb", "100")
    assert one_error_line(refused) == (
        "--device-memory-mb: cannot check the 100 MiB per device: the rows of item_id are fitted from the data; "
        "give vocab_size or hash_buckets in the blueprint, or pass --run RUN_DIR (a run trained on this data)")
    run = tmp_path / "run"
    run.mkdir()
    (run / "preprocessing.json").write_text(json.dumps({"vocabularies": {"item_id": ["a"] * 999},
                                                        "hashed": {"user_id": 50_000_000}}))
    got = composer("plan", bp, "--devices", "8", "--run", run)
    assert got.returncode == 0, got.stderr
    assert next(x for x in got.stdout.splitlines() if x.startswith("embedding_d64")).split()[3] == "50,001,000"


def test_plan_imports_no_framework(tmp_path):
    bp = tmp_path / "big.yaml"
    bp.write_text(BIG)
    code = ("import sys; from composer.cli import main; main(['plan', sys.argv[1], '--devices', '8']); "
            "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code, str(bp)], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stderr
