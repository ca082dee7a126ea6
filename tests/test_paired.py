"""Paired comparison over seeds (composer.paired) and the table `composer compare --seeds N` prints."""
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ttest_rel

from composer.cli import main
from composer.metrics import Report, TaskMetrics, evaluate_predictions
from composer.paired import paired_differences, paired_table

ROOT = Path(__file__).resolve().parents[1]


def _report(click, like=None):
    tasks = {"click": TaskMetrics(n=10, positives=3, auc=click)}
    if like is not None:
        tasks["like"] = TaskMetrics(n=10, positives=3, auc=like)
    return Report(tasks=tasks)


def test_paired_differences_match_scipy_and_count_the_pairs_ahead():
    base, other = [0.70, 0.72, 0.74, 0.71], [0.71, 0.75, 0.74, 0.73]
    got = paired_differences(base, other)
    assert got["mean"] == pytest.approx(np.mean(np.subtract(other, base)))
    assert (got["ahead"], got["pairs"]) == (3, 4)  # a tie is not ahead
    assert got["p"] == pytest.approx(ttest_rel(other, base).pvalue)


def test_paired_differences_skip_missing_runs_and_give_no_p_without_spread():
    got = paired_differences([0.7, None, 0.8], [0.75, 0.9, 0.85])  # run 2 has no baseline value
    assert (got["pairs"], got["ahead"], got["p"]) == (2, 2, None)  # every difference 0.05
    assert paired_differences([0.7], [0.8])["p"] is None
    assert paired_differences([None], [0.8]) is None


def test_paired_table_pairs_each_model_with_the_first_by_default():
    reports = {"a": [_report(0.70, 0.60), _report(0.72, 0.61), _report(0.74, 0.63)],
               "b": [_report(0.71, 0.60), _report(0.74, 0.60), _report(0.75, 0.62)],
               "c": [_report(0.69), _report(0.70), _report(0.71)]}
    lines = paired_table(reports).splitlines()
    assert lines[0].split() == ["model", "click", "AUC", "like", "AUC", "macro", "AUC"]
    b = next(line for line in lines if line.startswith("b "))
    p = ttest_rel([0.71, 0.74, 0.75], [0.70, 0.72, 0.74]).pvalue
    assert f"+0.0133 (3/3, p {p:.3f})" in b
    assert "-0.0067 (0/3, p" in b  # like: behind in every pair
    c = next(line for line in lines if line.startswith("c "))
    p = ttest_rel([0.69, 0.70, 0.71], [0.70, 0.72, 0.74]).pvalue
    assert c.split()[1:] == ["-0.0200", "(0/3,", "p", f"{p:.3f})", "n/a", "n/a"]  # no like; macro over other tasks
    assert not any(line.startswith("a ") for line in lines)  # the baseline has no row
    assert any(line.startswith("a ") for line in paired_table(reports, baseline="b").splitlines())


def test_paired_table_per_scenario_and_its_errors():
    labels = {"click": [1, 0, 1, 0, 1, 0, 1, 0]}
    scenario = ["x"] * 4 + ["y"] * 4
    def rep(scores):
        return evaluate_predictions(labels, {"click": scores}, scenario=scenario)
    reports = {"a": [rep([0.9, 0.1, 0.2, 0.3, 0.9, 0.8, 0.2, 0.1]), rep([0.9, 0.1, 0.2, 0.3, 0.6, 0.8, 0.2, 0.1])],
               "b": [rep([0.9, 0.1, 0.8, 0.3, 0.9, 0.8, 0.2, 0.1]), rep([0.9, 0.1, 0.8, 0.3, 0.9, 0.8, 0.2, 0.1])]}
    text = paired_table(reports, by="scenario")
    assert text.splitlines()[0].split() == ["model", "x", "click", "AUC", "y", "click", "AUC"]
    assert "+0.2500 (2/2, p n/a)" in text  # scenario x: 0.75 -> 1.0 in both runs
    with pytest.raises(ValueError, match="baseline 'z' is not one of the models: a, b"):
        paired_table(reports, baseline="z")
    with pytest.raises(ValueError, match="unknown metric"):
        paired_table(reports, metric="logloss")
    with pytest.raises(ValueError, match="by='model'"):
        paired_table(reports, by="model")


def test_compare_with_seeds_prints_the_paired_tables(tmp_path, capsys):
    code = main(["compare", str(ROOT / "blueprints/shared_bottom.yaml"), str(ROOT / "blueprints/split_merge.yaml"),
                 "--data", "synthetic-msl:rows=3000", "--epochs", "1", "--seeds", "2",
                 "--baseline", "split_merge", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "paired with split_merge, run i of each model with run i of split_merge" in out
    assert "not corrected for the number of cells" in out
    rows = [line for line in out.splitlines() if line.startswith("shared_bottom ") and "/2, p" in line]
    assert len(rows) == 2  # overall and per scenario
    assert "paired with split_merge" in (tmp_path / "compare.txt").read_text()


def test_compare_names_a_baseline_that_is_not_compared(capsys):
    code = main(["compare", str(ROOT / "blueprints/shared_bottom.yaml"), str(ROOT / "blueprints/mmoe.yaml"),
                 "--seeds", "2", "--baseline", "mmoee"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--baseline" in err and "'mmoee' is not one of the compared blueprints" in err
    assert "did you mean 'mmoe'" in err


def test_paired_differences_refuse_lists_of_different_lengths_and_show_tiny_p():
    with pytest.raises(ValueError, match="3 baseline runs against 2"):
        paired_differences([0.7, 0.7, 0.7], [0.8, 0.8])
    base = [0.70, 0.71, 0.72, 0.73, 0.74, 0.75]
    reports = {"a": [_report(v) for v in base], "b": [_report(v + 0.1 + 1e-4 * i) for i, v in enumerate(base)]}
    assert "(6/6, p < 0.001)" in paired_table(reports)
    tiny = {"a": [_report(0.7), _report(0.7)], "b": [_report(0.7 - 1e-7), _report(0.7 - 2e-7)]}
    assert "+0.0000 (0/2, p" in paired_table(tiny)  # not "-0.0000"


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0"], "--seeds: must be at least 1, got 0"),
    (["--baseline", "mmoe"], "--baseline: pairs runs, so it needs two blueprints or more and --seeds 2 or more"),
])
def test_compare_checks_its_command_line_before_training(extra, message, capsys):
    code = main(["compare", str(ROOT / "blueprints/shared_bottom.yaml"), str(ROOT / "blueprints/mmoe.yaml"), *extra])
    assert code == 2 and message in capsys.readouterr().err


def test_compare_refuses_two_blueprints_of_one_name(tmp_path, capsys):
    copy = tmp_path / "mmoe_copy.yaml"
    copy.write_text((ROOT / "blueprints/mmoe.yaml").read_text())
    code = main(["compare", str(ROOT / "blueprints/mmoe.yaml"), str(copy)])
    err = capsys.readouterr().err
    assert code == 2
    assert "mmoe_copy.yaml" in err and "blueprint name 'mmoe' is also the name of" in err
    assert "give each blueprint its own name" in err


def test_compare_takes_the_baseline_as_a_path_too(capsys):
    from composer.cli import _compared, parser

    files = [str(ROOT / "blueprints/shared_bottom.yaml"), str(ROOT / "blueprints/mmoe.yaml")]
    args = parser().parse_args(["compare", *files, "--seeds", "2", "--baseline",
                                str(ROOT / "blueprints/../blueprints/mmoe.yaml")])
    assert _compared(args) == "mmoe"


def test_compare_leaves_out_the_planted_row_when_blueprints_predict_different_tasks(tmp_path, capsys):
    click_only = tmp_path / "click_only.yaml"
    click_only.write_text((ROOT / "blueprints/shared_bottom.yaml").read_text()
                          .replace("name: shared_bottom", "name: click_only")
                          .replace("tasks: from_data", "tasks: [{name: click}]"))
    args = ["--data", "synthetic-mtl:rows=3000", "--epochs", "1"]
    assert main(["compare", str(ROOT / "blueprints/mmoe.yaml"), *args, "--out", str(tmp_path / "a")]) == 0
    assert "(planted truth)" in capsys.readouterr().out
    assert main(["compare", str(ROOT / "blueprints/mmoe.yaml"), str(click_only), *args,
                 "--out", str(tmp_path / "b")]) == 0
    assert "(planted truth)" not in capsys.readouterr().out
