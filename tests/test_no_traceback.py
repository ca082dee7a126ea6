"""Bad input through the command line, as a user runs it: exit 2 and one sentence, never a
traceback (issue 17, item 9). Each case was a traceback, a hang or gigabytes of memory once."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer.blueprint.loader import MAX_NODES

ROOT = Path(__file__).resolve().parents[1]
MMOE = str(ROOT / "blueprints/mmoe.yaml")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def composer(*args, cwd=ROOT, timeout=60):
    return subprocess.run([sys.executable, "-m", "composer", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=timeout)


def one_sentence(proc, start=None) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    if start is not None:
        assert lines[0].startswith(str(start)), lines[0]
    return lines[0]


def test_validate_a_folder_validates_every_blueprint_in_it(tmp_path):
    proc = composer("validate", ROOT / "blueprints")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.count(": ok (") == len(list((ROOT / "blueprints").glob("*.yaml")))
    line = one_sentence(composer("validate", tmp_path), tmp_path)
    assert "holds no .yaml or .yml file" in line
    line = one_sentence(composer("summary", ROOT / "blueprints"))
    assert "is a folder, not a YAML file" in line


def test_outputs_go_into_folders_that_do_not_exist_yet(tmp_path):
    dot = tmp_path / "new" / "deeper" / "mmoe.dot"
    proc = composer("render", MMOE, "-o", dot)
    assert proc.returncode == 0, proc.stderr
    assert dot.read_text().startswith("digraph")
    schema = tmp_path / "also-new" / "schema.json"
    assert composer("schema", "-o", schema).returncode == 0 and schema.exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    line = one_sentence(composer("render", MMOE, "-o", blocked / "x.dot"), blocked)
    assert "cannot create this folder: a file is in the way" in line


def test_build_writes_into_a_new_folder(tmp_path):
    """The explicit blueprint needs no data: it compiles without training."""
    from composer.cli import main

    sys.path.insert(0, str(ROOT / "tests/blueprint"))
    from test_errors import MMOE as EXPLICIT

    blueprint = tmp_path / "explicit.yaml"
    blueprint.write_text(EXPLICIT)
    out = tmp_path / "new" / "model.keras"
    assert main(["build", str(blueprint), "-o", str(out)]) == 0
    assert out.exists()


@pytest.mark.parametrize("output,said", [
    ("x.txt", "x.txt: -o: '.txt' is not a diagram format: write .svg, .png or .pdf (with Graphviz) or .dot"),
    ("x", "x: -o: the file name has no extension"),
])
def test_render_names_the_useful_formats(tmp_path, output, said):
    assert one_sentence(composer("render", MMOE, "-o", output, cwd=tmp_path)).startswith(said)
    assert not (tmp_path / output).exists()


def test_build_refuses_a_file_keras_cannot_write(tmp_path):
    line = one_sentence(composer("build", MMOE, "-o", tmp_path / "m.txt"))
    assert line.endswith("-o: Keras saves a model as a .keras file; e.g. -o model.keras")


@pytest.mark.parametrize("text,where", [
    ("name: " + "[" * 500 + "]" * 500 + "\n", ":1:70:"),  # flow
    ("a:\n" + "".join("  " * (i + 1) + "b:\n" for i in range(500)), ":64:127:"),  # block
], ids=["flow", "block"])
def test_deep_nesting_is_a_located_error(tmp_path, text, where):
    deep = tmp_path / "deep.yaml"
    deep.write_text(text)
    line = one_sentence(composer("validate", deep), f"{deep}{where}")
    assert "nesting deeper than 64 levels" in line
    data = tmp_path / "deep_data.yaml"
    data.write_text("source: x.csv\n" + text.replace("name: ", "extra: "))
    line = one_sentence(composer("validate", MMOE, "--data", data), data)
    assert "nesting deeper than 64 levels" in line


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_is_read_no_further_than_the_limit():
    line = one_sentence(composer("validate", "/dev/zero", timeout=30), "/dev/zero:")
    assert "file holds more than 2 MiB; a blueprint must be under 2 MiB" in line


def test_a_big_flat_list_stops_early_and_says_what_it_is(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("x: [" + ", ".join(["1"] * 690_000) + "]\n")  # 2 MB, legal YAML
    assert 1.9 * 2**20 < big.stat().st_size < 2 * 2**20
    line = one_sentence(composer("validate", big, timeout=30), f"{big}:1:")
    assert f"the document holds more than {MAX_NODES:,} values" in line and "alias" not in line


def test_nul_byte_has_a_line_and_column(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_text("name: a\ndescription: b\x00c\n")
    assert one_sentence(composer("validate", path)) == (
        f"{path}:2:15: character NUL is not allowed in YAML; a blueprint is plain text; remove the character")


def test_indentation_mistake_says_so(tmp_path):
    path = tmp_path / "indent.yaml"
    path.write_text(Path(MMOE).read_text().replace("  moe:", "   moe:"))
    line = one_sentence(composer("validate", path), f"{path}:")
    assert "YAML indentation: a key at column 4 does not line up with the mapping above it" in line
    assert "<block" not in line
