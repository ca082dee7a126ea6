"""The command line as a user runs it: validate, summary, build, render, schema."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from composer.cli import main

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=ENV)


def test_validate_all_blueprints(capsys):
    assert main(["validate", *map(str, BLUEPRINTS)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(BLUEPRINTS)


@pytest.mark.parametrize("command", ["validate", "render", "schema", "summary"])
def test_fast_paths_do_not_import_tensorflow(tmp_path, command):
    args = {"validate": ["validate", "blueprints/mmoe.yaml"],
            "render": ["render", "blueprints/ple.yaml", "-o", str(tmp_path / "ple.dot")],
            "schema": ["schema", "-o", str(tmp_path / "schema.json")],
            "summary": ["summary", "blueprints/ple.yaml"]}[command]
    proc = run("-X", "importtime", "-m", "composer", *args)
    assert proc.returncode == 0, proc.stderr
    heavy = [line for line in proc.stderr.splitlines()
             if line.rstrip().endswith(("| tensorflow", "| keras", "| jax", "| torch"))]
    assert heavy == []


def test_summary_table(capsys):
    assert main(["summary", "blueprints/ple.yaml"]) == 0
    out = capsys.readouterr().out
    assert "ple/level2/experts.like" in out and "54,004" in out


def test_render_dot_and_svg(tmp_path):
    dot = tmp_path / "ple.dot"
    assert main(["render", str(ROOT / "blueprints/ple.yaml"), "-o", str(dot)]) == 0
    text = dot.read_text()
    assert "cluster_task_click" in text and "cluster_shared" in text
    assert "expert_pool" in text and "8640 params" in text
    if not __import__("shutil").which("dot"):
        pytest.skip("Graphviz dot not installed")
    svg = tmp_path / "ple.svg"
    assert main(["render", str(ROOT / "blueprints/ple.yaml"), "-o", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_render_works_when_build_would_fail(tmp_path):
    text = (ROOT / "blueprints/mmoe.yaml").read_text().replace("input: x, experts: 4", "input: x, experts: 4, units: [0]")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["build", str(path)]) == 2
    # a valid graph renders even without vocabularies (embedding sizes are shown as '?')
    assert main(["render", str(ROOT / "blueprints/mmoe.yaml"), "-o", str(tmp_path / "x.dot")]) == 0


def test_schema_is_json_schema(tmp_path):
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    schema = json.loads(out.read_text())
    assert "blocks" in schema["properties"]
    assert schema["additionalProperties"] is False
    defs = json.dumps(schema["$defs"])
    for block in ("Mmoe", "Ple", "ExpertPool", "Gate"):
        assert block in defs


def test_build_writes_a_keras_file(tmp_path):
    model_path = tmp_path / "ple.keras"
    proc = run("-m", "composer", "build", "blueprints/ple.yaml", "-o", str(model_path))
    assert proc.returncode == 0, proc.stderr
    assert "vocabularies fitted on the train split of synthetic" in proc.stdout
    assert "outputs ['click', 'like']" in proc.stdout
    assert model_path.stat().st_size > 0


@pytest.mark.parametrize("name", ["ple", "mmoe"])
def test_saved_model_reloads_in_a_fresh_process_with_identical_predictions(tmp_path, name):
    from composer.compiler import compile_blueprint

    vocab = {"user_id": 1001, "item_id": 2001, "item_category": 51, "user_segment": 13}
    model, _ = compile_blueprint(str(ROOT / "blueprints" / f"{name}.yaml"), vocab_sizes=vocab)
    rng = np.random.default_rng(1)
    batch = {"ids_d8": rng.integers(0, 13, size=(64, 4)).astype("int32"),
             "numeric": rng.normal(size=(64, 2)).astype("float32")}
    expected = model.predict(batch, verbose=0)
    model_path = tmp_path / f"{name}.keras"
    model.save(model_path)
    np.savez(tmp_path / "batch.npz", **batch)
    script = (
        "import sys, numpy as np, composer\n"
        "m = composer.load_model(sys.argv[1], safe_mode=True)\n"
        "out = m.predict(dict(np.load(sys.argv[2])), verbose=0)\n"
        "np.savez(sys.argv[3], **out)\n"
    )
    proc = run("-c", script, str(model_path), str(tmp_path / "batch.npz"), str(tmp_path / "out.npz"))
    assert proc.returncode == 0, proc.stderr
    got = dict(np.load(tmp_path / "out.npz"))
    assert set(got) == {"click", "like"}
    for task in got:
        np.testing.assert_array_equal(got[task], expected[task])


def test_summary_prints_the_loss_plan(capsys):
    assert main(["summary", "blueprints/mmoe.yaml"]) == 0
    out = capsys.readouterr().out
    assert "loss fusion: fixed" in out
    assert any(line.split() == ["like", "like", "binary_crossentropy", "like", "all", "rows", "1"]
               for line in out.splitlines())
