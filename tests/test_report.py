"""``composer report`` (issue 18, item 1): one self-contained HTML page per run folder or compare
folder, every section present, the numbers those of the run, nothing fetched from a network; a
bad folder or output path is one located sentence and exit 2."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from composer.cli import main
from composer.metrics import Report
from composer.paired import paired_differences
from cli_helpers import composer, one_error_line

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "mmoe-msl"
    code = main(["train", str(ROOT / "blueprints/mmoe.yaml"), "--data", "synthetic-msl:rows=3000", "--epochs", "2",
                 "--batch-size", "256", "--out", str(out), "--verbose", "0"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("pages") / "run.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    return out.read_text()


@pytest.fixture(scope="module")
def compare(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    code = main(["compare", str(ROOT / "blueprints/shared_bottom.yaml"), str(ROOT / "blueprints/mmoe.yaml"),
                 "--data", "synthetic:rows=2000", "--seeds", "2", "--epochs", "1", "--batch-size", "256",
                 "--out", str(out)])
    assert code == 0
    return out


def section(html: str, sid: str) -> str:
    found = re.search(rf"<section id='{sid}'>(.*?)</section>", html, re.S)
    assert found, f"no section {sid}"
    return found.group(1).replace(" class='name'", "")  # left-aligned name cells read as plain cells


def resources(html: str) -> list[str]:
    """Every address the page would load or link: src and href attributes, CSS url()."""
    attrs = re.findall(r"""\b(?:src|href)\s*=\s*['"]?([^'"\s>]+)""", html, re.I)
    return attrs + re.findall(r"url\(\s*['\"]?([^'\")]+)", html, re.I)


def test_every_section_of_a_run_page(page, run):
    for sid in ("diagram", "curves", "metrics", "calibration", "scores", "gates", "blueprint"):
        section(page, sid)
    assert "<img src='data:image/" in section(page, "diagram") or "digraph" in section(page, "diagram")
    assert "training curves per epoch" in section(page, "curves")
    metrics = section(page, "metrics")
    assert "GAUC" in metrics and "Per scenario (scenario)" in metrics and "test AUC and GAUC heatmap" in metrics
    calib = section(page, "calibration")
    assert "ECE" in calib and "calibration per task" in calib
    assert "score distributions per task" in section(page, "scores")
    gates = section(page, "gates")
    assert "gate weights, task by expert" in gates and "gate weights, scenario by expert" in gates
    assert "moe/gate.click" in gates and "mean cosine between expert outputs" in gates
    assert "name: mmoe" in section(page, "blueprint")  # the blueprint as written, comments and all
    assert "# MMoE: multi-gate mixture of experts." in section(page, "blueprint")


def test_the_page_shows_the_runs_own_test_metrics(page, run):
    saved = Report.load(run)  # what `composer train` measured on the same test rows
    metrics = section(page, "metrics")
    for task, m in saved.tasks.items():
        assert f"<td>{task}</td><td>{m.auc:.4f}</td><td>{m.gauc:.4f}</td>" in metrics
    for value, tasks in saved.scenarios.items():
        for task, m in tasks.items():
            assert f"<td>{value}</td><td>{task}</td><td>{m.auc:.4f}</td>" in metrics


def test_a_run_page_loads_nothing_from_outside(page):
    found = resources(page)
    assert found, "the page has images"
    outside = [r for r in found if not r.startswith(("data:", "#"))]
    assert outside == []
    assert not re.search(r"https?://", " ".join(found)) and "@import" not in page


def test_the_resource_check_can_fail():
    assert resources("<img src='http://cdn.example/x.png'><link href=https://a/b.css>"
                     "<style>a{background:url(http://x/y.png)}</style>") == [
        "http://cdn.example/x.png", "https://a/b.css", "http://x/y.png"]


def test_a_compare_page(compare, tmp_path):
    out = tmp_path / "compare.html"
    assert main(["report", str(compare), "-o", str(out)]) == 0
    html = out.read_text()
    metrics, paired = section(html, "metrics"), section(html, "paired")
    assert "shared_bottom" in metrics and "mmoe" in metrics and "(planted truth)" in metrics
    assert "metrics per model" in metrics and "paired differences" in paired
    assert "compare.txt" in html and "test split of synthetic:rows=2000" in section(html, "compare-text")
    assert [r for r in resources(html) if not r.startswith(("data:", "#"))] == []

    def aucs(model):
        return [Report.load(compare / f"{model}-seed{s}").tasks["click"].auc for s in (0, 1)]

    base, other = aucs("shared_bottom"), aucs("mmoe")
    assert f"<td>mmoe</td><td>2</td><td>{np.mean(other):.4f} &plusmn; {np.std(other):.4f}</td>" in metrics
    d = paired_differences(base, other)
    assert f"<td>mmoe</td><td>{d['mean']:+.4f} ({d['ahead']}/2, p n/a)</td>" in paired
    assert "against run i of <b>shared_bottom</b>" in paired


def test_a_run_without_gates_or_history(compare, tmp_path, capsys):
    run = tmp_path / "sb"
    shutil.copytree(compare / "shared_bottom-seed0", run)
    (run / "history.csv").unlink()  # as an interrupted run leaves it
    assert main(["report", str(run)]) == 0  # default: RUN/report.html
    html = (run / "report.html").read_text()
    assert "No history.csv in the run folder" in section(html, "curves")
    assert "model &#x27;shared_bottom&#x27; has no gates" in section(html, "gates")
    capsys.readouterr()
    assert main(["inspect", str(run)]) == 0  # a fact about the model, not a mistake: exit 0
    assert capsys.readouterr().out.strip() == (
        "model 'shared_bottom' has no gates: no gate, mixture of experts (omoe, mmoe, cgc, ple, hmoe), "
        "meta_attention or hmoe_fusion block, so there are no expert weights to inspect")


def test_bad_folders_and_outputs_are_one_located_sentence(run, compare, tmp_path):
    missing = tmp_path / "nope"
    assert one_error_line(composer("report", missing)).startswith(f"{missing}: no such run folder")
    assert one_error_line(composer("inspect", missing)).startswith(f"{missing}: no such run folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a run folder: model.keras, preprocessing.json" in one_error_line(composer("report", empty))
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "history.csv").write_text("epoch,loss\n0,0.7\n1,not a number\n")
    line = one_error_line(composer("report", damaged))
    assert line.startswith(f"{damaged / 'history.csv'}: damaged run folder: history.csv does not read")
    line = one_error_line(composer("report", run, "-o", tmp_path / "report.txt"))
    assert "report.txt" in line and "name a .html file" in line
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_error_line(composer("report", run, "-o", blocker / "report.html"))
    assert line.startswith(f"{blocker}: cannot create this folder")
    assert "--rows" in one_error_line(composer("inspect", run, "--rows", "0"))
    broken = tmp_path / "broken-compare"
    broken.mkdir()
    (broken / "compare.txt").write_text("nothing\n")
    assert "not a compare folder" in one_error_line(composer("report", broken))
