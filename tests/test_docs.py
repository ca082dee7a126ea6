"""The generated docs (composer/docs.py) exist, are fresh, and the hand-written tutorial still
validates. Regenerate with ``python -m composer.docs``."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer import docs
from composer.blocks import all_blocks
from composer.blueprint import BlueprintError, load_blueprint_text
from composer.graph import build_graph

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REGENERATE = "run `python -m composer.docs` and commit docs/"


@pytest.fixture(scope="module")
def generated():
    files, svgs = docs.generate()
    return files, svgs


@pytest.mark.parametrize("block_type", sorted(all_blocks()))
def test_every_block_has_a_page(block_type):
    assert (DOCS / "blocks" / f"{block_type}.md").exists(), f"docs/blocks/{block_type}.md is missing; {REGENERATE}"


def test_markdown_pages_are_fresh(generated):
    files, _ = generated
    stale = [rel for rel, text in files.items()
             if not (DOCS / rel).exists() or (DOCS / rel).read_text() != text]
    assert not stale, f"stale or missing: {', '.join(stale)}; {REGENERATE}"


@pytest.mark.parametrize("blueprint", [p.stem for p in sorted((ROOT / "blueprints").glob("*.yaml"))])
def test_every_blueprint_has_a_gallery_svg(blueprint):
    svg = DOCS / "gallery" / f"{blueprint}.svg"
    assert svg.exists(), f"docs/gallery/{blueprint}.svg is missing; {REGENERATE}"
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg")), f"{svg} is not an SVG"


def test_check_passes_on_the_repository():
    assert docs.check() == [], REGENERATE


def test_check_reports_missing_stale_and_orphan_files(tmp_path, generated, capsys):
    files, svgs = generated
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for rel in svgs:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("<svg/>")  # content is not compared: Graphviz output varies
    assert docs.main(["--check", "--docs", str(tmp_path)]) == 0

    (tmp_path / "blocks" / "mmoe.md").unlink()
    (tmp_path / "language.md").write_text("old\n")
    (tmp_path / svgs[0]).unlink()
    (tmp_path / "blocks" / "removed_block.md").write_text("gone\n")
    capsys.readouterr()
    assert docs.main(["--check", "--docs", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "missing: blocks/mmoe.md" in out
    assert "stale: language.md" in out
    assert f"missing: {svgs[0]}" in out
    assert "orphan: blocks/removed_block.md" in out


@pytest.mark.parametrize("block_type", sorted(docs.EXAMPLES))
def test_block_examples_validate(block_type):
    assert block_type in all_blocks(), f"EXAMPLES has '{block_type}', which is not a registered block"
    graph = docs.example_graph(block_type)
    assert any(b.type == block_type for b in graph.blueprint.blocks.values()), \
        f"the example of '{block_type}' does not use it"


def test_every_field_row_has_a_type_and_a_default():
    for block_type, cls in all_blocks().items():
        for row in docs.field_rows(cls, refs=cls.refs):
            assert row.type and row.default, f"{block_type}.{row.name}: {row}"


def test_importing_docs_does_not_import_tensorflow_or_keras():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import composer.docs"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    heavy = [m for m in modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")]
    assert not heavy, f"importing composer.docs imported {heavy[:5]}"


def test_generating_docs_does_not_import_tensorflow_or_keras():
    code = ("import sys, composer.docs as d; d.generate(); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the hand-written tutorial ----------------------------------------------------------------
def _tutorial():
    text = (DOCS / "tutorial.md").read_text()
    blueprint = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "\nname:" in b)
    return text, blueprint


def test_tutorial_blueprint_validates_and_its_summary_is_current():
    from composer.cli import _table

    text, blueprint = _tutorial()
    bp, doc = load_blueprint_text(blueprint, "my_models/mmoe_skip.yaml")
    graph = build_graph(bp, doc)
    assert not graph.warnings
    assert _table(graph) in text, "the summary table in docs/tutorial.md is out of date"


@pytest.mark.parametrize("old,new", [('inputs: ["moe.{task}", x]', "inputs: [moe, x]"),
                                     ('input: "skip.{task}"', "input: skip")])
def test_tutorial_mistakes_are_reported_as_shown(old, new):
    text, blueprint = _tutorial()
    assert old in blueprint
    with pytest.raises(BlueprintError) as exc:
        bp, doc = load_blueprint_text(blueprint.replace(old, new), "my_models/mmoe_skip.yaml")
        build_graph(bp, doc)
    assert str(exc.value) in text, f"docs/tutorial.md should show:\n{exc.value}"
