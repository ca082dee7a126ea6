"""`composer diff A B [-o X]` (composer/review_diff.py, composer/review_diagram.py): blocks, nodes,
features, tasks and settings added, removed or changed between shipped blueprints; parameter totals
as `composer summary` counts them; the text; located errors with exit 2; no TensorFlow (issue 18,
item 4)."""
import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from composer import docs
from composer.blueprint import load_blueprint, load_blueprint_text
from composer.cli import _load_graph, _table, main
from composer.graph import build_graph
from composer.review_diagram import diff_to_dot
from composer.review_diff import ADDED, CHANGED, REMOVED, SAME, diff_graphs

import cli_helpers
from cli_helpers import one_error_line
from test_blueprints_golden import VOCAB

composer = partial(cli_helpers.composer, timeout=60)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def bp(name: str) -> str:
    return str(ROOT / "blueprints" / f"{name}.yaml")


def diff_of(before: str, after: str, vocab=None):
    graphs = []
    for name in (before, after):
        blueprint, doc = load_blueprint(bp(name))
        graphs.append(build_graph(blueprint, doc, vocab_sizes=vocab))
    return diff_graphs(*graphs)


def sets(diff, of="blocks"):
    return {s: diff.ids(s, of) for s in (ADDED, REMOVED, CHANGED, SAME)}


def test_shared_bottom_to_mmoe_blocks_and_nodes():
    diff = diff_of("shared_bottom", "mmoe")
    assert sets(diff) == {ADDED: {"moe"}, REMOVED: {"bottom"}, CHANGED: {"tower"}, SAME: {"x"}}
    [tower] = [c for c in diff.blocks if c.id == "tower"]
    assert tower.fields == (("input", "bottom.{task}", "moe.{task}"),)
    assert (tower.before, tower.after) == (2 * (64 * 32 + 32 + 33), 2 * (32 * 32 + 32 + 33))
    assert sets(diff, "nodes") == {
        ADDED: {"moe/experts", "moe/gate.click", "moe/mix.click", "moe/gate.like", "moe/mix.like"},
        REMOVED: {"bottom/bottom"}, CHANGED: {"tower.click", "tower.like"}, SAME: {"x"}}
    assert [c for c in [*diff.features, *diff.tasks, *diff.settings] if c.status != SAME] == []


def test_mmoe_to_ple_the_towers_read_another_block_with_the_same_parameters():
    diff = diff_of("mmoe", "ple")
    assert sets(diff) == {ADDED: {"ple"}, REMOVED: {"moe"}, CHANGED: {"tower"}, SAME: {"x"}}
    [tower] = [c for c in diff.blocks if c.id == "tower"]
    assert tower.fields == (("input", "moe.{task}", "ple.{task}"),) and tower.before == tower.after == 2_178
    nodes = sets(diff, "nodes")
    assert nodes[REMOVED] == {"moe/experts", "moe/gate.click", "moe/mix.click", "moe/gate.like", "moe/mix.like"}
    assert nodes[ADDED] == {n for n in diff.after.nodes if n.startswith("ple/")} and len(nodes[ADDED]) == 16
    assert nodes[CHANGED] == {"tower.click", "tower.like"} and nodes[SAME] == {"x"}


def test_shared_bottom_to_star_features_tasks_and_settings_count_too():
    diff = diff_of("shared_bottom", "star")
    assert sets(diff) == {ADDED: {"pn", "fcn", "d", "aux_in", "aux", "logit"}, REMOVED: {"bottom", "tower"},
                          CHANGED: {"x"}, SAME: set()}
    [x] = [c for c in diff.blocks if c.id == "x"]
    assert x.fields == (("out", "(B, 34)", "(B, 42)"),)  # the scenario column joins the group 'all'
    assert sets(diff, "features")[ADDED] == {"scenario"} and sets(diff, "features")[REMOVED] == set()
    assert sets(diff, "tasks") == {ADDED: set(), REMOVED: {"like"}, CHANGED: set(), SAME: {"click"}}
    settings = sets(diff, "settings")
    assert settings[ADDED] == {"scenarios", "groups.domain"} and settings[REMOVED] == {"outputs.like"}
    assert settings[CHANGED] == {"data", "groups.all", "outputs.click"}


def test_the_same_id_with_another_type_is_removed_and_added():
    text = Path(bp("shared_bottom")).read_text()
    text = text.replace("bottom:  {type: shared_bottom, input: x, units: [128, 64]}",
                        "bottom:  {type: mlp, input: x, units: [128, 64]}").replace('"bottom.{task}"', "bottom")
    after = build_graph(*load_blueprint_text(text, "mlp_bottom.yaml"))
    diff = diff_graphs(_load_graph(bp("shared_bottom")), after)
    assert "bottom" in diff.ids(REMOVED) and "bottom" in diff.ids(ADDED)
    assert diff.ids(CHANGED) == {"tower"}
    assert diff.ids(REMOVED, "nodes") == {"bottom/bottom"} and diff.ids(ADDED, "nodes") == {"bottom"}
    # the nodes' parameters are the same: only the reference changed
    assert "  ~ tower: input bottom.{task} -> bottom\n" in diff.text() + "\n"


def test_a_node_id_reused_by_another_type_is_drawn_twice():
    text = Path(bp("shared_bottom")).read_text()
    before = text.replace("bottom:  {type: shared_bottom, input: x, units: [128, 64]}",
                          "bottom:  {type: mlp, input: x, units: [128, 64]}").replace('"bottom.{task}"', "bottom")
    after = before.replace("{type: mlp, input: x, units: [128, 64]}", "{type: concat, inputs: [x, x]}")
    diff = diff_graphs(*(build_graph(*load_blueprint_text(t, f"{i}.yaml")) for i, t in enumerate((before, after))))
    assert "bottom" in diff.ids(REMOVED, "nodes") & diff.ids(ADDED, "nodes")
    source = diff_to_dot(diff).source
    assert re.search(r'^\s*removed__bottom \[label=<<b>− bottom</b>', source, re.M)
    assert re.search(r'^\s*bottom \[label=<<b>\+ bottom</b>', source, re.M)
    assert re.search(r'^\s*x -> removed__bottom \[.*color="#c62828"', source, re.M)


def _summary_total(capsys, name: str) -> str:
    assert main(["summary", bp(name)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("total"))
    return row.split(None, 1)[1].strip()


@pytest.mark.parametrize("before,after", [("shared_bottom", "mmoe"), ("mmoe", "ple"), ("shared_bottom", "star")])
def test_totals_are_composer_summarys(capsys, before, after):
    totals = [_summary_total(capsys, before), _summary_total(capsys, after)]
    assert all(t.endswith(" + embeddings") for t in totals)  # the vocabularies come from the data
    blocks = [int(t.split()[0].replace(",", "")) for t in totals]
    line = diff_of(before, after).params_line()
    assert line == f"params: {totals[0]} -> {totals[1]} (blocks {blocks[1] - blocks[0]:+,})"


def test_totals_with_known_vocabularies_are_the_summary_tables():
    diff = diff_of("mmoe", "ple", vocab=VOCAB)
    totals = [_table(g).splitlines()[-1].split()[-1] for g in (diff.before, diff.after)]
    assert totals[1] == "78,532"  # ple's golden count
    delta = diff.after.total_params - diff.before.total_params
    assert diff.params_line() == f"params: {totals[0]} -> {totals[1]} ({delta:+,})"


def test_text_summary(capsys):
    assert main(["diff", bp("shared_bottom"), bp("mmoe")]) == 0
    assert capsys.readouterr().out == (
        "shared_bottom -> mmoe\n"
        "blocks:\n"
        "  - bottom (shared_bottom: units=[128, 64], 12,736 params)\n"
        "  ~ tower: input bottom.{task} -> moe.{task}; params 4,226 -> 2,178 (-2,048)\n"
        "  + moe (mmoe: K=4, units=[64, 32], 17,560 params)\n"
        "  unchanged: x\n"
        "params: 16,962 + embeddings -> 19,738 + embeddings (blocks +2,776)\n")


def test_text_of_settings_and_of_no_difference(capsys):
    assert main(["diff", bp("mmoe"), bp("mmoe_gradnorm")]) == 0
    out = capsys.readouterr().out
    assert "settings:\n  ~ loss: fusion fixed -> gradnorm" in out and "blocks:" not in out
    assert main(["diff", bp("mmoe"), bp("mmoe")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{bp('mmoe')} -> {bp('mmoe')}\n")  # the same name: the files say which is which
    assert "no differences" in out


def test_star_text_names_features_tasks_and_settings(capsys):
    assert main(["diff", bp("shared_bottom"), bp("star")]) == 0
    out = capsys.readouterr().out
    for line in ("  ~ x: out (B, 34) -> (B, 42)", "  + fcn (star_fcn per task: W_p ⊙ W, units=[64, 32] -> logit, "
                 "19,460 params)", "features:\n  + scenario (categorical, dim 8)", "tasks:\n  - like (label like)",
                 "  ~ data: synthetic -> synthetic-msl", "  ~ groups.all: +scenario",
                 "  ~ outputs.click: tower.click -> logit.click"):
        assert line in out, line


def test_writes_the_review_diagram(tmp_path, capsys):
    out = tmp_path / "new" / "review.dot"
    assert main(["diff", bp("shared_bottom"), bp("star"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"wrote {out}")
    source = out.read_text()
    assert source.startswith("digraph")
    node = lambda nid: re.search(rf'^\s*"?{re.escape(nid)}"? \[label=(.*)$', source, re.M).group(1)  # noqa: E731
    assert 'color="#2e7d32"' in node("fcn.click") and "<b>+ fcn.click</b>" in node("fcn.click")
    assert 'color="#c62828"' in node("bottom/bottom") and "dashed" in node("bottom/bottom")
    assert 'color="#e65100"' in node("x") and "out (B, 34) → (B, 42)" in node("x")
    assert "12.7k params" in node("bottom/bottom") and "19.5k params" in node("fcn.click")
    assert "16,962 + embeddings → 20,881 + embeddings" in source  # the totals, in the title
    assert "+ scenario (categorical, dim 8)" in node("features")
    svg = tmp_path / "review.svg"
    assert main(["diff", bp("mmoe"), bp("ple"), "-o", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_user_mistakes_exit_2_with_one_located_line(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert one_error_line(composer("diff", bp("mmoe"), missing)).startswith(f"{missing}: cannot read file")
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(bp("mmoe")).read_text().replace("experts: 4", "expert: 4"))
    line = one_error_line(composer("diff", bad, bp("ple")))
    assert line.startswith(f"{bad}:") and "unknown key 'expert'" in line
    line = one_error_line(composer("diff", bp("mmoe"), bp("ple"), "-o", tmp_path / "review.jpg"))
    assert "'.jpg' is not a diagram format" in line
    assert not (tmp_path / "review.jpg").exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert "a file is in the way" in one_error_line(composer("diff", bp("mmoe"), bp("ple"), "-o", blocked / "x.svg"))


def test_diff_imports_no_tensorflow_keras_jax_or_torch(tmp_path):
    code = ("import sys; from composer.cli import main; "
            f"rc = main(['diff', {bp('shared_bottom')!r}, {bp('star')!r}, '-o', {str(tmp_path / 'r.svg')!r}]); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'jax', 'torch'}); "
            "print('HEAVY', heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("HEAVY []")
    assert (tmp_path / "r.svg").exists()


def test_the_gallery_shows_the_diffs():
    _, svgs = docs.generate()
    for before, after in docs.GALLERY_DIFFS:
        rel = docs.diff_svg(before, after)
        assert rel in svgs
        assert (ROOT / "docs" / rel).read_text().lstrip().startswith(("<?xml", "<svg")), rel
    page = (ROOT / "docs" / "gallery.md").read_text()
    assert diff_of("mmoe", "ple").text() in page


def test_the_tutorials_variant_against_the_shipped_mmoe():
    text = (ROOT / "docs" / "tutorial.md").read_text()
    blueprint = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "\nname:" in b)
    assert "composer diff blueprints/mmoe.yaml my_models/mmoe_skip.yaml" in text
    diff = diff_graphs(_load_graph(bp("mmoe")), build_graph(*load_blueprint_text(blueprint, "mmoe_skip.yaml")))
    assert sets(diff)[ADDED] == {"skip"} and sets(diff)[CHANGED] == {"x", "moe", "tower"}
    assert "  ~ moe: gate_hidden [] -> [16]; params 17,560 -> 23,144 (+5,584)" in diff.text()
    assert "moe: gate_hidden [] -> [16]" in text

