"""Nothing lost: a run interrupted by SIGINT or SIGTERM writes its folder (marked interrupted, the
finished epochs' checkpoint), says one sentence and exits 130; ``--resume`` ends with the metrics
of an uninterrupted run with the same seed (TensorFlow and JAX); the same seed gives the same
metrics; an existing folder is refused without ``--overwrite``; a damaged run file is one located
sentence and exit 2."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MMOE = str(ROOT / "blueprints" / "mmoe.yaml")
# enough rows that an epoch takes a while after the first checkpoint is written (the signal must
# come mid-run), few enough for CI
ARGS = ["--data", "synthetic:rows=120000", "--epochs", "4", "--patience", "100", "--batch-size", "512",
        "--verbose", "2"]


def env_for(backend: str) -> dict:
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def composer(*args, backend="tensorflow", **kwargs):
    return subprocess.run([sys.executable, "-m", "composer", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env_for(backend), timeout=900, **kwargs)


def interrupt(out: Path, backend: str, sig) -> subprocess.CompletedProcess:
    """Start a run and send ``sig`` once its first checkpoint is on disk."""
    proc = subprocess.Popen([sys.executable, "-m", "composer", "train", MMOE, *ARGS, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env_for(backend))
    deadline = time.time() + 600
    while not (out / "checkpoint.npz").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its first checkpoint: " + proc.stderr.read()[-2000:]
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def metrics_of(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.parametrize("backend, sig", [("tensorflow", signal.SIGINT), ("jax", signal.SIGTERM)])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, backend, sig):
    whole = composer("train", MMOE, *ARGS, "--out", tmp_path / "whole", backend=backend)
    assert whole.returncode == 0, whole.stderr[-2000:]
    stopped = interrupt(tmp_path / "cut", backend, sig)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    said = [line for line in stopped.stderr.splitlines() if line.startswith("composer:")]
    assert len(said) == 1 and said[0].startswith(f"composer: {sig.name} after ") and "--resume" in said[0]
    status = json.loads((tmp_path / "cut" / "status.json").read_text())
    assert status["state"] == "interrupted" and 1 <= status["epochs_done"] < 4
    assert (tmp_path / "cut" / "model.keras").exists()  # what finished can be evaluated
    resumed = composer("train", "--resume", tmp_path / "cut", backend=backend)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {tmp_path / 'cut'} after epoch {status['epochs_done']}" in resumed.stdout
    assert metrics_of(tmp_path / "cut") == metrics_of(tmp_path / "whole")
    assert json.loads((tmp_path / "cut" / "status.json").read_text())["state"] == "finished"
    again = composer("train", MMOE, *ARGS, "--out", tmp_path / "again", backend=backend)
    assert metrics_of(tmp_path / "again") == metrics_of(tmp_path / "whole")  # same seed, same metrics


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    proc = composer("train", MMOE, "--data", "synthetic:rows=3000", "--epochs", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_an_existing_folder_is_refused_and_overwrite_clears_it(small_run, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    (folder / "metrics_by_scenario.csv").write_text("stale\n")
    refused = composer("train", MMOE, "--data", "synthetic:rows=3000", "--epochs", "1", "--out", folder)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (f"{folder}: --out: the run folder already exists and holds a finished run; pass "
                                      f"--overwrite to replace it, --resume {folder} to continue it, or another --out")
    redone = composer("train", MMOE, "--data", "synthetic:rows=3000", "--epochs", "1", "--out", folder, "--overwrite")
    assert redone.returncode == 0, redone.stderr[-2000:]
    assert not (folder / "metrics_by_scenario.csv").exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no partial folder left


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    half = len(data) // 2
    path.write_bytes(data[:half] if how == "truncate" else data[:half] + b"\x00garbage{" + data[half + 10:])


@pytest.mark.parametrize("name, how, command", [
    ("model.keras", "truncate", "evaluate"), ("model.keras", "garble", "evaluate"),
    ("blueprint.json", "truncate", "evaluate"), ("data.json", "garble", "evaluate"),
    ("preprocessing.json", "truncate", "predict"), ("checkpoint.npz", "truncate", "resume"),
    ("status.json", "truncate", "resume")])
def test_a_damaged_run_file_is_one_sentence_and_exit_2(small_run, tmp_path, name, how, command):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    damage(folder / name, how)
    args = {"evaluate": ["evaluate", folder], "predict": ["predict", folder, "--data", "synthetic:rows=3000"],
            "resume": ["train", "--resume", folder]}[command]
    proc = composer(*args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{folder / name}: damaged run folder: {name} does not read")


def test_resume_refuses_another_blueprint_and_a_run_without_checkpoint(small_run, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    other = composer("train", str(ROOT / "blueprints" / "ple.yaml"), "--data", "synthetic:rows=3000",
                     "--resume", folder)
    assert other.returncode == 2
    assert "cannot resume: the blueprint, the data or the batch size differ from the run's" in other.stderr
    (folder / "checkpoint.npz").unlink()
    none = composer("train", "--resume", folder)
    assert none.returncode == 2 and "nothing to resume: no epoch finished" in none.stderr


def test_train_and_resume_mistakes_are_one_located_line(tmp_path, capsys):
    from composer.cli import main

    assert main(["train"]) == 2
    assert capsys.readouterr().err.strip() == ("BLUEPRINT: train needs a blueprint; composer train BLUEPRINT.yaml, "
                                               "or composer train --resume RUN_DIR")
    assert main(["train", "--resume", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == ("--out: --resume continues its own folder; drop --out/--overwrite, "
                                               "or train anew without --resume")
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"{tmp_path}: --resume: not a run folder that can resume (no "
                                               "status.json with its command); pass a folder `composer train` wrote")
    (tmp_path / "file").write_text("x")
    assert main(["train", MMOE, "--data", "synthetic:rows=3000", "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'file'}: --out: the run folder is a file; pass a folder path to --out"
    from composer.training.run_folder import claim

    claim(tmp_path / "busy", command={"blueprint": MMOE})
    assert main(["evaluate", str(tmp_path / "busy")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{tmp_path / 'busy'}: this run is still training, or stopped before writing its files (0 epoch(s) "
        f"checkpointed); wait for it, or continue it: composer train --resume {tmp_path / 'busy'}")
