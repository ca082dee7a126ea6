"""`implementation: auto` of an expert pool follows the device: stacks on a CPU, einsum on an
accelerator (composer/devices.py answers which). CI has no GPU, so the accelerator's answer is
patched in; the compiled layers show which lowering each answer chose."""
from pathlib import Path

import pytest

from composer import devices
from composer.blueprint import load_blueprint
from composer.graph import build_graph

ROOT = Path(__file__).resolve().parents[1]
VOCAB = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13}


def _pools(model):
    return [layer for layer in model.layers if type(layer).__name__ == "ExpertPool"]


@pytest.mark.parametrize("accelerator,lowering", [(False, "stacks"), (True, "einsum")])
def test_auto_lowering_follows_the_device(monkeypatch, accelerator, lowering):
    from composer.compiler import compile_graph

    monkeypatch.setattr(devices, "on_accelerator", lambda: accelerator)
    bp, doc = load_blueprint(str(ROOT / "blueprints" / "mmoe.yaml"))
    model = compile_graph(build_graph(bp, doc, vocab_sizes=VOCAB))
    pools = _pools(model)
    assert pools and {pool.implementation for pool in pools} == {lowering}


def test_an_explicit_implementation_ignores_the_device(monkeypatch):
    from composer.blueprint import load_blueprint_text
    from composer.compiler import compile_graph

    monkeypatch.setattr(devices, "on_accelerator", lambda: True)
    text = """
name: pool
features:
  - {name: user_id, kind: categorical, vocab_size: 20, dim: 4}
groups:
  all: [user_id]
tasks:
  - {name: click}
blocks:
  x:    {type: embed, group: all}
  pool: {type: expert_pool, input: x, experts: 2, units: [4], implementation: stacks}
  mix:  {type: mixture, experts: [pool], weights: g}
  g:    {type: gate, input: x, experts: 2}
  t:    {type: tower, input: mix}
outputs: {click: t}
"""
    bp, doc = load_blueprint_text(text, "pool.yaml")
    model = compile_graph(build_graph(bp, doc))
    assert model.get_layer("pool").implementation == "stacks"


@pytest.mark.parametrize("block", ["mmoe", "ple"])
def test_a_composite_passes_its_implementation_to_every_pool(monkeypatch, block):
    from composer.compiler import compile_graph

    monkeypatch.setattr(devices, "on_accelerator", lambda: False)  # auto would pick stacks
    bp, doc = load_blueprint(str(ROOT / "blueprints" / f"{block}.yaml"))
    blocks = {name: b.model_copy(update={"implementation": "einsum"}) if b.type == block else b
              for name, b in bp.blocks.items()}
    model = compile_graph(build_graph(bp.model_copy(update={"blocks": blocks}), vocab_sizes=VOCAB))
    pools = _pools(model)
    assert len(pools) >= (1 if block == "mmoe" else 6)
    assert {pool.implementation for pool in pools} == {"einsum"}


def test_on_accelerator_answers_for_the_active_backend():
    import keras

    assert devices.on_accelerator() is devices._on_accelerator(keras.backend.backend())
    assert isinstance(devices.on_accelerator(), bool)
