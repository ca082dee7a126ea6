"""``composer datasets`` (composer/data/catalog.py), docs/datasets.md, and the warning for gates
per task over a single task (composer/graph.py ``_warn_one_task``)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer.blueprint import load_blueprint, load_blueprint_text
from composer.cli import main
from composer.data import catalog, registry
from composer.graph import build_graph

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "composer", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env or ENV)


def _rows(text: str) -> dict[str, list[str]]:
    """The listing's table rows by dataset name (columns split on runs of 2+ spaces)."""
    out = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in registry.names():
            out[cells[0]] = cells
    return out


def test_lists_every_registered_dataset_without_tensorflow():
    code = ("import sys; from composer.cli import main; rc = main(['datasets']); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'jax', 'torch'}); "
            "print('HEAVY', heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("HEAVY []")
    rows = _rows(proc.stdout)
    assert sorted(rows) == registry.names()
    assert set(registry.names()) >= {"synthetic", "synthetic-msl", "synthetic-chain", "synthetic-esm2",
                                     "synthetic-mtl", "synthetic-seq", "census-mtl", "census-msl", "adult",
                                     "adult-msl", "kuairand", "kuairand-pure", "aliexpress", "ali-ccp",
                                     "ali-ccp-scenarios"}
    # name, tasks, scenario (values), features cat/list/num, rows, read from, present
    assert rows["synthetic-msl"] == ["synthetic-msl", "click", "scenario (3)", "5 / 0 / 2", "200,000",
                                     "generated", "-"]
    assert rows["synthetic-seq"][1:5] == ["click, like", "-", "3 / 2 / 1", "150,000"]
    assert rows["census-mtl"][1:6] == ["income, never_married", "-", "32 / 0 / 7", "99,762", "census_income_kdd/"]
    assert rows["kuairand-pure"][1:6] == ["is_click, long_view, is_like", "tab (15)", "37 / 5 / 15", "228,329",
                                          "kuairand_pure/, kuairand/"]
    assert rows["kuairand"][2] == "tab (values read on load)" and rows["aliexpress"][4] == "read on load"
    assert "data root: " in proc.stdout
    assert "  synthetic-seq: rows=150000, seed=2018, max_len=30, interests=4, noise=0.5" in proc.stdout
    assert "  kuairand-pure: histories=1, merge_tabs=0" in proc.stdout


def test_describes_only(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("composer datasets read data")

    for name in registry.names():  # every loader refuses: the listing must not call one
        describe_fn, _ = registry._REGISTRY[name]
        monkeypatch.setitem(registry._REGISTRY, name, (describe_fn, refuse))
    monkeypatch.setattr(registry, "load", refuse)
    assert len(_rows(catalog.text())) == len(registry.names())


def test_files_under_composer_data_dir_and_whether_they_are_there(tmp_path):
    (tmp_path / "adult").mkdir()
    (tmp_path / "adult" / "adult_train.csv").write_text("x\n")
    proc = cli("datasets", env={**ENV, "COMPOSER_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"data root: {tmp_path} ($COMPOSER_DATA_DIR)"
    rows = _rows(proc.stdout)
    assert rows["adult"][-1] == "no (adult/adult_test.csv missing)"
    assert rows["census-mtl"][-1] == "no (census_income_kdd/census-income.test.gz missing)"
    assert rows["synthetic"][-1] == "-"


def test_one_dataset_in_full_with_its_options():
    proc = cli("datasets", "synthetic-msl:rows=5000", "kuairand-pure:histories=0")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "synthetic-msl:rows=5000: Synthetic click log, three scenarios" in out
    assert "  tasks: click\n  scenario: scenario (tab0, tab1, tab2)\n  GAUC group: user_id\n" in out
    assert "  rows: 5,000\n  files: generated in memory (nothing to read)\n" in out
    assert "  options: rows=5000, seed=2018, correlation=0.5" in out
    assert "  lists (1): tag (multi, max_len 4)\n" in out  # histories=0: no history lists
    assert "user_histories_before" not in out  # nor the file they are built from
    assert re.search(r"kuairand_pure/log_pure_\*\.parquet: (present|missing)", out)


def test_a_data_yaml_in_full(tmp_path, capsys):
    (tmp_path / "clicks.csv").write_text("user_id,tab,price,click\nu1,home,3.5,1\n")
    (tmp_path / "clicks.yaml").write_text("source: clicks.csv\ncategorical: [user_id, tab]\nnumeric: [price]\n"
                                          "labels: {click: click}\nscenario: tab\n")
    assert main(["datasets", str(tmp_path / "clicks.yaml")]) == 0
    out = capsys.readouterr().out
    assert "  tasks: click\n  scenario: tab (values read on load)\n" in out
    assert "  categorical (2): user_id, tab\n  lists (0): -\n  numeric (1): price\n" in out
    assert f"  file: {tmp_path / 'clicks.csv'}\n" in out


@pytest.mark.parametrize("args, message", [
    (["synthetc"], "data: unknown dataset 'synthetc'; did you mean 'synthetic'?"),
    (["synthetic:rowz=5"], "rowz: unknown option 'rowz' of dataset 'synthetic'; did you mean 'rows'?"),
    (["census-mtl:rows=5"], "data: dataset 'census-mtl' takes no options, got ':rows=5'; write just 'census-mtl'"),
])
def test_a_bad_name_is_one_line_and_exit_2(args, message, capsys):
    assert main(["datasets", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_the_docs_page_is_generated_from_the_same_code():
    page = (ROOT / "docs" / "datasets.md").read_text()
    assert page == catalog.markdown(), "docs/datasets.md is stale: composer datasets --markdown > docs/datasets.md"
    for name in registry.names():
        assert f"| {name} " in page and f"- `{name}`: " in page


# -- gates per task over one task -------------------------------------------------------------

def _warnings(text: str, data=None) -> list[str]:
    bp, doc = load_blueprint_text(text, "bp.yaml", data=data)
    return build_graph(bp, doc).warnings


def test_mmoe_bound_to_one_label_data_warns_once_with_its_location(capsys):
    assert main(["validate", str(ROOT / "blueprints" / "mmoe.yaml"), "--data", "synthetic-msl"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {ROOT / 'blueprints' / 'mmoe.yaml'}:14:3: blocks.moe: mmoe over one task "
                   "(tasks: from_data and the bound dataset has one label, 'click'): its one gate has no other "
                   "task to share the experts with: the same model as an omoe; bind data with two labels or more "
                   "for a multi-task model (`composer datasets` lists each dataset's tasks)"]
    assert main(["validate", str(ROOT / "blueprints" / "mmoe.yaml")]) == 0  # synthetic: click and like
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name, block", [("cgc", "cgc"), ("ple", "ple"), ("mmoe_uncertainty", "moe")])
def test_every_composite_with_gates_per_task_warns(name, block):
    bp, doc = load_blueprint(str(ROOT / "blueprints" / f"{name}.yaml"), data="synthetic-msl")
    warnings = build_graph(bp, doc).warnings
    assert [w.split(": ")[1] for w in warnings] == [f"blocks.{block}"]
    assert f"blocks.{block}: {bp.blocks[block].type} over one task (" in warnings[0]


@pytest.mark.parametrize("name", ["shared_bottom", "omoe"])
def test_blocks_without_gates_per_task_do_not_warn(name):
    bp, doc = load_blueprint(str(ROOT / "blueprints" / f"{name}.yaml"), data="synthetic-msl")
    assert build_graph(bp, doc).warnings == []


ONE_TASK = """\
name: one
features:
  - {name: user_id, kind: categorical, dim: 4, vocab_size: 10}
  - {name: price, kind: numeric}
groups: {all: [user_id, price]}
tasks: [{name: click, label: click}]
"""


def test_a_hand_written_gate_per_task_over_one_declared_task_warns():
    warnings = _warnings(ONE_TASK + """\
blocks:
  x:     {type: embed, group: all}
  pool:  {type: expert_pool, input: x, experts: 2, units: [4]}
  gate:  {type: gate, for_each: task, input: x, experts: 2}
  mix:   {type: mixture, for_each: task, weights: "gate.{task}", experts: [pool]}
  tower: {type: tower, for_each: task, input: "mix.{task}", units: [4]}
outputs: "tower.{task}"
""")
    assert warnings == ["bp.yaml:10:3: blocks.gate: gate over one task (the blueprint has one task, 'click'): "
                        "one gate, no other task to share its experts with; bind data with two labels or more "
                        "for a multi-task model (`composer datasets` lists each dataset's tasks)"]
    assert _warnings(ONE_TASK + """\
blocks:
  x:     {type: embed, group: all}
  tower: {type: tower, for_each: task, input: x, units: [4]}
outputs: "tower.{task}"
""") == []  # a tower per task over one task is just a tower
