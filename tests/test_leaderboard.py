"""bench/leaderboard.py and its page writer (bench/_leaderboard_page.py): the verdict follows the
paired intervals, n/a for a scenario with one class, every blueprint on the page, cached runs
reused and stale ones retrained."""
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import _leaderboard_page as page  # noqa: E402
from composer.metrics import Report, TaskMetrics  # noqa: E402


# ------------------------------------------------------------------------------- fixed numbers

def test_interval_and_call_on_fixed_numbers():
    base = [0.700, 0.710, 0.720]
    ahead = page.paired(base, [0.712, 0.721, 0.733])  # +0.012, +0.011, +0.013
    assert ahead["ahead"] == 3 and ahead["pairs"] == 3
    assert ahead["mean"] == pytest.approx(0.012)
    # t(0.975, 2) = 4.3027; sd of (0.012, 0.011, 0.013) = 0.001
    assert ahead["low"] == pytest.approx(0.012 - 4.3027 * 0.001 / 3 ** 0.5, abs=1e-6)
    assert page.call(ahead) == "ahead"
    assert page.call(page.paired(base, [0.690, 0.701, 0.709])) == "behind"
    noisy = page.paired(base, [0.705, 0.700, 0.730])  # +0.005, -0.010, +0.010
    assert noisy["low"] < 0 < noisy["high"] and page.call(noisy) == "tie"
    assert page.call(page.paired(base[:2], [0.8, 0.9])) == "unknown"  # 2 pairs: no interval
    assert page.paired([None, None], [0.7, 0.7]) is None


def test_verdict_follows_the_intervals():
    base = [0.700, 0.710, 0.720]
    up = page.paired(base, [0.712, 0.721, 0.733])
    down = page.paired(base, [0.690, 0.701, 0.709])
    tie = page.paired(base, [0.705, 0.700, 0.730])
    assert page.verdict("sb", {"a AUC": tie, "b AUC": tie}, 3).startswith(
        "nothing beyond seed noise: every 95% paired interval against sb holds 0 (2 metrics)")
    v = page.verdict("sb", {"a AUC": up, "b AUC": tie}, 3)
    assert v.startswith("beats sb: ahead beyond seed noise on a AUC (+0.0120 [")
    assert v.endswith("within noise on the other 1.")
    assert page.verdict("sb", {"a AUC": down, "b AUC": tie}, 3).startswith("loses to sb: behind")
    assert page.verdict("sb", {"a AUC": up, "b AUC": down}, 3).startswith("mixed against sb")
    two = page.paired(base[:2], [0.9, 0.9])
    assert page.verdict("sb", {"a AUC": two}, 2) == (
        "cannot tell against sb: 2 seed(s): a paired interval needs 3 or more.")


def _entry(name, seed, auc, small_auc, params=1000):
    """A cached entry with fixed numbers: scenario 'big' and 'tiny' (one class in 'tiny' when
    small_auc is None), one task."""
    def tm(n, pos, a):
        return TaskMetrics(n=n, positives=pos, auc=a, gauc=None if a is None else a - 0.1,
                           valid_groups=3, excluded_groups=0)
    rep = Report(tasks={"click": tm(1000, 300, auc)},
                 scenarios={"big": {"click": tm(990, 297, auc)},
                            "tiny": {"click": tm(10, 0 if small_auc is None else 3, small_auc)}},
                 group="user_id", scenario="tab")
    return {"name": name, "seed": seed, "params": params, "train_s": 1.0, "wall_s": 2.0,
            "counts": {"train": 9000, "valid": 1000, "test": 1000},
            "scenario_train_rows": {"big": 8950, "tiny": 50}, "report": rep.to_dict()}


META = {"command": "python bench/leaderboard.py scenarios", "facts": [("data", "fixed")], "kuairand": False,
        "failed": {"broken": "ValueError: nope"}, "excluded": {"esmm": "its tasks read other labels"}}


def test_scenario_page_na_for_one_class_and_small_mean():
    runs = {"sb": [_entry("sb", s, a, None) for s, a in enumerate((0.70, 0.71, 0.72))],
            "star": [_entry("star", s, a, None) for s, a in enumerate((0.721, 0.729, 0.740))]}
    text = page.scenario_page(runs, "sb", META, task="click", small_share=0.01)
    assert page.small_scenarios(runs["sb"], 0.01) == ["tiny"]
    row = next(line for line in text.splitlines() if line.startswith("| star") and "**" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "**n/a**"  # the small mean: its only scenario has one class
    assert cells[2] == "0.7300 ± 0.0095" and cells[3] == "n/a"  # big, tiny
    assert "tab tiny (small)<br>10 / 0" in text  # its test rows and positives
    assert "- **star**: beats sb: ahead beyond seed noise on click AUC (+0.0200" in text
    assert "- **broken**: ValueError: nope" in text and "- **esmm**: its tasks read other labels" in text


def test_multitask_page_has_every_model_and_its_verdict():
    base = (0.70, 0.71, 0.72)
    runs = {"sb": [_entry("sb", s, a, 0.6) for s, a in enumerate(base)],
            "mmoe": [_entry("mmoe", s, a + d, 0.6) for s, (a, d) in enumerate(zip(base, (0.001, -0.001, 0.0005)))],
            "ple": [_entry("ple", s, a + d, 0.6) for s, (a, d) in enumerate(zip(base, (-0.010, -0.011, -0.009)))]}
    text = page.multitask_page(runs, "sb", META)
    table = [line for line in text.split("## Paired")[0].splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in table[1:]] == ["sb (baseline)", "mmoe", "ple"]
    assert "- **mmoe**: nothing beyond seed noise" in text
    assert "- **ple**: loses to sb: behind beyond seed noise on click AUC (-0.0100" in text


# ------------------------------------------------------------------------------- a tiny real run

def test_tiny_run_caches_and_retrains_stale(tmp_path, capsys):
    import leaderboard

    folder = tmp_path / "blueprints"
    folder.mkdir()
    for name in ("shared_bottom", "mmoe", "esmm", "star"):
        shutil.copy(ROOT / "blueprints" / f"{name}.yaml", folder)
    argv = ["multitask", "--data", "synthetic", "--rows", "1500", "--epochs", "1", "--seeds", "2",
            "--blueprints", str(folder), "--out", str(tmp_path / "cache"), "--page", str(tmp_path / "lb.md")]

    assert leaderboard.main(argv) == 0
    assert "(4 runs trained, 0 reused" in capsys.readouterr().out
    text = (tmp_path / "lb.md").read_text()
    assert "| shared_bottom (baseline) |" in text and "| mmoe " in text
    assert "- **esmm**: its tasks read the labels of its own dataset (synthetic-chain" in text
    assert "- **multi-scenario (scenario routing)**: star: on the scenario leaderboard" in text
    assert "cannot tell against shared_bottom: 2 seed(s)" in text
    assert (tmp_path / "cache" / "mmoe-seed1" / "metrics.json").is_file()
    assert (tmp_path / "cache" / "compare.txt").is_file()

    assert leaderboard.main(argv) == 0  # nothing changed: nothing trains
    assert "(0 runs trained, 4 reused" in capsys.readouterr().out

    mmoe = folder / "mmoe.yaml"
    mmoe.write_text(mmoe.read_text() + "# edited\n")  # its text changed: its entries are stale
    assert leaderboard.main(argv) == 0
    out = capsys.readouterr().out
    assert "(2 runs trained, 2 reused" in out and "mmoe (seed 0)" in out and "shared_bottom (seed" not in out


def test_bindings_bind_dbmtl_to_kuairand_and_key_the_cache():
    import leaderboard

    from composer.blueprint import load_blueprint
    from composer.graph import build_graph

    sets = leaderboard.bindings("dbmtl", "kuairand-pure:rows=50000")
    assert sets and leaderboard.bindings("dbmtl", "synthetic") == [] and leaderboard.bindings("mmoe", "kuairand-pure") == []
    bp, _ = load_blueprint(str(ROOT / "blueprints" / "dbmtl.yaml"), data="kuairand-pure", sets=sets)
    build_graph(bp)  # binds: the relations name kuairand-pure's tasks
    file = str(ROOT / "blueprints" / "dbmtl.yaml")
    assert leaderboard.fingerprint(file, "kuairand-pure", {}, sets) != leaderboard.fingerprint(file, "kuairand-pure", {})
