"""Every kind of malformed blueprint gets one located message and exit status 2."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer.cli import main

ROOT = Path(__file__).resolve().parents[2]
# an explicit blueprint (features and tasks written out), so line numbers below are stable
MMOE = """# MMoE: multi-gate mixture of experts.
# Ma, Zhao, Yi, Chen, Hong, Chi, "Modeling Task Relationships in Multi-task Learning with
# Multi-gate Mixture-of-Experts", KDD 2018.
# K shared experts; every task has its own softmax gate over them and its own tower.
name: mmoe
description: "MMoE: 4 shared experts, one gate and one tower per task."
features:
  - {name: user_id, kind: categorical, dim: 16, vocab_size: 1000}
  - {name: item_id, kind: categorical, dim: 16, vocab_size: 2000}
  - {name: item_category, kind: categorical, dim: 8, vocab_size: 50}
  - {name: user_segment, kind: categorical, dim: 8, vocab_size: 12}
  - {name: price, kind: numeric}
  - {name: user_activity, kind: numeric}
groups:
  all: [user_id, item_id, item_category, user_segment, price, user_activity]
tasks:
  - {name: click, label: click}
  - {name: like, label: like}
blocks:
  x:       {type: embed, group: all}
  moe:     {type: mmoe, input: x, experts: 4, units: [64, 32]}
  tower:   {type: tower, for_each: task, input: "moe.{task}", units: [32]}
outputs:
  click: tower.click
  like: tower.like
loss: {fusion: fixed, weights: {click: 1.0, like: 1.0}}
training: {optimizer: adam, learning_rate: 0.001, batch_size: 1024, epochs: 3, seed: 2018}
"""

BOMB = "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9) if p else ', '.join(['x'] * 9)}]\n"
    for p, c in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg"))


def edit(old, new, count=1):
    assert old in MMOE, old
    return MMOE.replace(old, new, count)


# (case id, file text, expected line, regex the message must match)
CASES = [
    ("syntax_error", "name: a\nfeatures: [\n", 3, r"YAML syntax error"),
    ("empty_file", "", 1, r"file is empty"),
    ("list_at_top", "- a\n- b\n", 1, r"must be a mapping at the top level, got a list"),
    ("python_tag", "name: !!python/object/apply:os.system ['echo pwned']\n", 1,
     r"tag '!!python/object/apply:os.system' is not allowed"),
    ("alias_bomb", BOMB, None, r"aliases expand the document to more than [\d,]+ values.*alias bomb"),
    ("tab_indent", "name: a\n\tfeatures: []\n", 2, r"tab character.*indent YAML with spaces"),
    ("misspelled_top_key", edit("blocks:", "blokcs:"), 19, r"unknown key 'blokcs'; did you mean 'blocks'\?"),
    ("unknown_block_type", edit("type: mmoe,", "type: mmeo,"), 21,
     r"blocks\.moe\.type: unknown type 'mmeo'; did you mean 'mmoe'\?"),
    ("unknown_parameter", edit("units: [64, 32]}", "units: [64, 32], unitz: 3}"), 21,
     r"blocks\.moe: unknown key 'unitz'; did you mean 'units'\?"),
    ("dangling_reference", edit("input: x, experts", "input: xx, experts"), 21,
     r"blocks\.moe\.input: unknown reference 'xx'; did you mean 'x'\?"),
    ("cycle", edit("input: x, experts", "input: tower.click, experts"), 21,
     r"blocks form a cycle: .*moe/experts -> moe/mix\.click \(line 21\).*tower\.click -> moe/experts"),
    ("negative_size", edit("experts: 4", "experts: -4"), 21, r"blocks\.moe\.experts: must be greater than 0, got -4"),
    ("negative_width", edit("units: [64, 32]", "units: [64, -32]"), 21,
     r"blocks\.moe\.units\[1\]: must be greater than 0, got -32"),
    ("string_for_number", edit("experts: 4", "experts: four"), 21,
     r"blocks\.moe\.experts: expected an integer, got 'four'"),
    ("duplicate_block_name", edit("  tower:", "  moe:     {type: mlp, input: x, units: [3]}\n  tower:"), 22,
     r"blocks\.moe: duplicate key 'moe'; first defined at line 21"),
    ("duplicate_task", edit("  - {name: like, label: like}", "  - {name: click, label: like}"), 18,
     r"tasks\[1\]\.name: duplicate task 'click'"),
    ("unknown_feature_kind", edit("kind: numeric", "kind: numerc"), 12,
     r"unknown kind 'numerc'; did you mean 'numeric'\?"),
    ("unknown_group", edit("group: all", "group: al"), 20, r"unknown group 'al'; did you mean 'all'\?"),
    ("label_is_feature", edit("  - {name: price, kind: numeric}",
                              "  - {name: price, kind: numeric}\n  - {name: click, kind: numeric}"), 18,
     r"label column 'click' is also a feature"),
    ("missing_type", edit("type: embed, ", ""), 20, r"blocks\.x: missing 'type'"),
    ("stamped_without_port", edit('"moe.{task}"', "moe"), 22, r"'moe' has several outputs; reference a port: moe\.click"),
    ("unknown_port", edit('"moe.{task}"', '"moe.clik"'), 22, r"'moe' has no port 'clik'; did you mean 'moe\.click'\?"),
    ("output_not_a_task", edit("  like: tower.like", "  like: tower.like\n  likes: tower.like"), 26,
     r"outputs\.likes: 'likes' is not a task; did you mean 'like'\?"),
    ("task_without_output", edit("  like: tower.like\n", ""), 24, r"task 'like' has no output"),
    ("bad_activation", edit("units: [32]}", "units: [32], activation: rellu}"), 22,
     r"'rellu' is not allowed; did you mean 'relu'\?"),
    ("shape_mismatch", edit("  tower:", "  mix2:    {type: mixture, weights: moe/gate.click, experts: [x]}\n  tower:"), 22,
     r"experts\[0\] is not an expert pool"),
    ("placeholder_unstamped", edit('for_each: task, input: "moe.{task}"', 'input: "moe.{task}"'), 22,
     r"uses a placeholder but the block is not stamped"),
    ("output_not_a_logit", edit("  click: tower.click", "  click: x"), 24, r"not a logit or probability"),
    ("bad_name", edit("name: mmoe", "name: my-model"), 5, r"'my-model' is not a valid name"),
    ("fraction_for_int", edit("experts: 4", "experts: 4.5"), 21, r"expected an integer"),
    # issue 17: YAML mistakes in words, not PyYAML's tokens
    ("over_indented_key", edit("  moe:", "   moe:"), 21,
     r":21:4: YAML indentation: a key at column 4 does not line up with the mapping above it \(the mapping "
     r"starting at line 20, column 3\); keys of one mapping start in one column"),
    ("indented_under_a_value", edit("  like: tower.like", "   like: tower.like"), 25,
     r"YAML indentation: 'like' is indented more than line 24 above it, so it reads as the rest of that "
     r"line's value; line 'like:' up with the keys it belongs with"),
    ("list_item_out_of_line", edit("  - {name: like", "   - {name: like"), 18,
     r"YAML indentation: a list item \('-'\) at column 4 does not line up with the list above it"),
    ("missing_colon", edit("  x:", "  x\n  y:"), 21, r"line 20 above is not 'key: value'.*a missing ':'"),
    ("colon_in_plain_value", edit('description: "MMoE: 4 shared experts, one gate and one tower per task."',
                                  "description: MMoE: 4 shared experts"), 6,
     r":6:18: YAML syntax error: unexpected ': ' after 'description: MMoE'; quote a value that holds ': '"),
    ("nul_byte", edit("name: mmoe", "name: mm\x00oe"), 5, r":5:9: character NUL is not allowed in YAML"),
    ("deep_nesting", "name: " + "[" * 500 + "]" * 500 + "\n", 1, r":1:70: nesting deeper than 64 levels"),
    ("recursive_alias", "name: &a [*a]\n", 1, r"anchors and aliases nest deeper than 64 levels; an anchored value "
     r"cannot contain an alias to itself"),
    ("port_in_for_each", edit('"moe.{task}"', '"moe.{task}s"'), 22,
     r"blocks\.tower\.input: 'moe' has no port '\{task\}s'; did you mean 'moe\.\{task\}'\?"),
    ("placeholder_as_port", edit('"moe.{task}"', "moe.task"), 22, r"'moe' has no port 'task'; did you mean "
     r"'moe\.\{task\}'\?"),
]


@pytest.mark.parametrize("case,text,line,pattern", CASES, ids=[c[0] for c in CASES])
def test_malformed_blueprint(tmp_path, capsys, case, text, line, pattern):
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    expected_head = f"{path}:{line}:" if line else f"{path}:"
    assert first.startswith(expected_head), err
    assert re.search(pattern, err), err
    assert "Traceback" not in err


def test_case_count():
    assert len(CASES) >= 15


def test_huge_file_refused_quickly(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:
        fh.truncate(100 * 1024 * 1024)
    assert main(["validate", str(path)]) == 2
    assert "100.0 MiB" in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read file" in capsys.readouterr().err


def test_python_tag_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["validate", str(path)]) == 2
    assert not marker.exists()


def test_several_problems_reported_together(tmp_path, capsys):
    path = tmp_path / "two.yaml"
    path.write_text(edit("experts: 4", "experts: -4").replace("group: all", "group: al"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "experts: must be greater than 0" in err


def test_cli_subprocess_has_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(edit("type: mmoe,", "type: mmeo,"))
    proc = subprocess.run([sys.executable, "-m", "composer", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:21:")
    assert "Traceback" not in proc.stderr


def test_wrong_port_in_a_stamped_block_is_reported_once(tmp_path, capsys):
    """Every copy of a for_each block reads the same written reference: one message, in the
    block's own words ('{task}'), not one per task."""
    path = tmp_path / "ports.yaml"
    path.write_text(edit('"moe.{task}"', '"moe.{task}s"'))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{path}:22:49: blocks.tower.input: 'moe' has no port '{{task}}s'; did you mean "
                   "'moe.{task}'? ports: moe.click, moe.like, moe.{task}"]
    path.write_text(edit('"moe.{task}"', "moe"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{path}:22:49: blocks.tower.input: 'moe' has several outputs; reference a port: moe.click, "
                   "moe.like, or 'moe.{task}' (each copy of this block reads its own)"]


def test_group_index_counts_the_items_as_written(tmp_path, capsys):
    """'*' expands into every feature before the check: the index and the position are those of
    the item in the file (groups.all[2], column of 'nope'), not of the expanded list."""
    text = (ROOT / "blueprints/mmoe.yaml").read_text()
    assert 'all: ["*"]' in text
    path = tmp_path / "group.yaml"
    path.write_text(text.replace('all: ["*"]', 'all: ["*", user_id, nope]'))
    line_no = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if "nope" in line)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:{line_no}:23: groups.all[2]: unknown feature 'nope'"), err


def test_big_flat_list_is_refused_in_bounded_time_and_memory(tmp_path):
    """A legal 2 MB flat list composed whole took 40 s and 740 MB; composing stops at MAX_NODES."""
    import time
    import tracemalloc

    from composer.blueprint.errors import BlueprintError
    from composer.blueprint.loader import MAX_NODES, load_file

    path = tmp_path / "flat.yaml"
    path.write_text("x: [" + ", ".join(["1"] * 690_000) + "]\n")
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(BlueprintError) as info:
        load_file(str(path))
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert f"the document holds more than {MAX_NODES:,} values" in str(info.value)
    assert "alias" not in str(info.value)
    assert peak < 150 * 2**20, peak  # about 60 MiB under tracemalloc
    assert seconds < 30, seconds  # about 5 s under tracemalloc, 1 s without


def test_a_set_override_has_no_file_position(tmp_path, capsys):
    """An expression set by --set is located at the override, not at a line of the file."""
    path = tmp_path / "x.yaml"
    path.write_text(MMOE)
    assert main(["validate", str(path), "--set", "tasks[1].label=like &&"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("--set tasks[1].label=like &&: ") and "Traceback" not in err, err
