"""`composer compare`'s defaults (issue 17, item 6): results and models saved without being asked
(runs/compare-TIME, printed), figures rounded, run i of every model on seed i (folders named by
the real seed), no p-value from fewer than 3 pairs, per-scenario GAUC in the printed tables."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from composer.cli import _run_seed, main, parser
from composer.metrics import Report, TaskMetrics, compare_scenario_table
from composer.paired import paired_differences

ROOT = Path(__file__).resolve().parents[1]
SB, SM = str(ROOT / "blueprints/shared_bottom.yaml"), str(ROOT / "blueprints/split_merge.yaml")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """compare with no --out, from an empty folder: two models, two seeds, one epoch."""
    where = tmp_path_factory.mktemp("cwd")
    mp = pytest.MonkeyPatch()
    mp.chdir(where)
    try:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["compare", SB, SM, "--data", "synthetic-msl:rows=3000", "--epochs", "1", "--seeds", "2"])
    finally:
        mp.undo()
    assert code == 0
    return where, out.getvalue()


def test_results_and_models_are_saved_by_default_in_a_printed_folder(compared):
    where, out = compared
    folders = list((where / "runs").glob("compare-*"))
    assert len(folders) == 1
    folder = folders[0]
    assert f"results and models go to {Path('runs') / folder.name}" in out.splitlines()[0]
    assert f"saved to {Path('runs') / folder.name}" in out
    runs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert runs == ["planted-truth", "shared_bottom-seed0", "shared_bottom-seed1", "split_merge-seed0",
                    "split_merge-seed1"]
    for run in runs[1:]:
        for name in ("model.keras", "metrics.json", "history.csv", "blueprint.yaml", "blueprint.dot"):
            assert (folder / run / name).exists(), (run, name)
    text = (folder / "compare.txt").read_text()
    assert "split_merge (seed 1): 1 epochs" in text and "paired with shared_bottom" in text


def test_run_i_of_every_model_uses_seed_i_and_figures_are_rounded(compared):
    _, out = compared
    lines = [line for line in out.splitlines() if " epochs, " in line]
    assert [line.split(":")[0] for line in lines] == ["shared_bottom (seed 0)", "shared_bottom (seed 1)",
                                                      "split_merge (seed 0)", "split_merge (seed 1)"]
    for line in lines:  # was `test macro AUC 0.747853053625261`
        assert re.search(r"test macro AUC (\d\.\d{4}|n/a)$", line), line


def test_two_pairs_give_no_p_value_and_say_why(compared):
    _, out = compared
    cells = re.findall(r"\((\d)/(\d), (p[^)]*)\)", out)
    assert cells and all(p == "p n/a" and pairs == "2" for _, pairs, p in cells)
    assert "p n/a: a paired t-test needs 3 pairs or more (--seeds 3)" in out


def test_the_printed_tables_hold_the_per_scenario_gauc(compared):
    _, out = compared
    assert "per scenario, exact GAUC (groups of 'user_id', impressions-weighted)" in out
    head = next(line for line in out.splitlines() if line.startswith("model") and "tab0 click GAUC" in line)
    assert head.split()[1:4] == ["tab0", "click", "GAUC"]
    row = next(line for line in out.splitlines()[out.splitlines().index(head):] if line.startswith("split_merge"))
    assert re.search(r"\d\.\d{4} ± \d\.\d{4}", row)


def _args(*extra):
    return parser().parse_args(["compare", SB, SM, *extra])


def test_seeds_are_i_or_the_given_base_or_each_blueprint_s_own():
    assert [_run_seed(SB, _args(), i) for i in range(3)] == [0, 1, 2]
    assert [_run_seed(SM, _args("--seed", "5"), i) for i in range(2)] == [5, 6]
    # shared_bottom.yaml says seed 2018: kept with --blueprint-seeds, plus i
    assert [_run_seed(SB, _args("--blueprint-seeds"), i) for i in range(2)] == [2018, 2019]


def test_blueprint_seeds_and_seed_are_refused_together(capsys):
    assert main(["compare", SB, SM, "--seed", "3", "--blueprint-seeds"]) == 2
    assert "--blueprint-seeds: and --seed both choose the seeds" in capsys.readouterr().err


def test_p_values_need_three_pairs():
    assert paired_differences([0.70, 0.72], [0.71, 0.75])["p"] is None
    assert paired_differences([0.70, 0.72, 0.74], [0.71, 0.75, 0.74])["p"] is not None


def test_the_scenario_table_gives_gauc_when_asked():
    def rep(g):
        t = TaskMetrics(n=10, positives=3, auc=0.7, gauc=g, valid_groups=2, excluded_groups=0)
        return Report(tasks={"click": t}, scenarios={"a": {"click": t}}, group="user")
    text = compare_scenario_table({"m": [rep(0.61234), rep(0.63)]}, metric="gauc")
    assert text.splitlines()[0].split() == ["model", "a", "click", "GAUC"]
    assert "0.6212 ± 0.0125" in text
