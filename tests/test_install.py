"""A plain (not editable) install works end to end (issue 17, item 8): the wheel carries the
shipped blueprints (setup.py, composer/blueprints_catalog.py) and the built-in datasets' files
are found through COMPOSER_DATA_DIR or beside the current folder (composer/data/tables.py), not
beside the package, which is in site-packages after `pip install .`.

The wheel is built from a copy of the sources in tmp_path, installed with `pip install --target`
and run in subprocesses whose only Composer is that copy, from a folder outside the checkout.
Skipped, with pip's own words, where a wheel cannot be built (offline, no setuptools)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from composer import blueprints_catalog

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "composer", "blueprints")
# UCI Adult rows (the format composer/data/adult.py reads): train, then test (labels end in '.')
ADULT = ["39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, "
         "2174, 0, 40, United-States, <=50K",
         "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, "
         "Male, 0, 0, 13, United-States, >50K",
         "38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Female, 0, 0, "
         "40, United-States, <=50K"]


def test_the_shipped_list_is_the_repository_folder():
    assert blueprints_catalog.names() == sorted(p.stem for p in (ROOT / "blueprints").glob("*.yaml"))


def _run(args, cwd, env, timeout=120):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site folder holding the installed wheel, the wheel file)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, src / name)
    dist = tmp / "dist"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    failures = []
    for extra in ([], ["--no-build-isolation"]):  # an isolated build fetches setuptools: offline, use ours
        done = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(dist), "-q", *extra],
                    cwd=tmp, env=env)
        if done.returncode == 0:
            break
        failures.append((done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"])
    else:
        pytest.skip(f"cannot build a wheel here: {failures}")
    wheel = next(dist.glob("composer_rec-*.whl"))
    site = tmp / "site"
    done = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel), "-q"],
                cwd=tmp, env=env)
    assert done.returncode == 0, done.stderr
    return site, wheel


def _env(site: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMPOSER_DATA_DIR")}
    return {**env, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def test_the_wheel_carries_every_shipped_blueprint_unchanged(installed):
    _, wheel = installed
    with zipfile.ZipFile(wheel) as z:
        packed = {Path(n).name: z.read(n) for n in z.namelist() if n.startswith("composer/blueprints/")}
    repo = {p.name: p.read_bytes() for p in (ROOT / "blueprints").glob("*.yaml")}
    assert sorted(packed) == sorted(repo)
    assert packed == repo


def test_the_installed_package_lists_and_copies_its_blueprints(installed, tmp_path):
    site, _ = installed
    env = _env(site)
    where = _run([sys.executable, "-c", "import composer; print(composer.__file__)"], tmp_path, env)
    assert where.stdout.strip().startswith(str(site)), where  # the installed copy, not the checkout
    listed = _run([sys.executable, "-m", "composer", "blueprints"], tmp_path, env)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[2:] if line.strip() and not line[0].isdigit()]
    assert names == sorted(p.stem for p in (ROOT / "blueprints").glob("*.yaml"))
    assert f"in {site / 'composer' / 'blueprints'}" in listed.stdout
    copied = _run([sys.executable, "-m", "composer", "blueprints", "copy", "mmoe", "mine"], tmp_path, env)
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "mine" / "mmoe.yaml").read_text() == (ROOT / "blueprints" / "mmoe.yaml").read_text()
    again = _run([sys.executable, "-m", "composer", "blueprints", "copy", "mmoe", "mine"], tmp_path, env)
    assert again.returncode == 2 and "file exists; not overwritten" in again.stderr


def _adult(folder: Path) -> Path:
    (folder / "adult").mkdir(parents=True)
    (folder / "adult" / "adult_train.csv").write_text("\n".join(ADULT * 4) + "\n")
    (folder / "adult" / "adult_test.csv").write_text("\n".join(line + "." for line in ADULT) + "\n")
    return folder


DESCRIBE = ("from composer.data.registry import load; d = load('adult'); "
            "print(len(d), d.spec.labels, d.source.split(', ')[0])")


def test_the_installed_package_finds_the_built_in_data(installed, tmp_path):
    site, _ = installed
    data = _adult(tmp_path / "elsewhere")
    work = tmp_path / "work"
    work.mkdir()
    # COMPOSER_DATA_DIR, from a folder with no shared/data near it
    got = _run([sys.executable, "-c", DESCRIBE], work, _env(site, COMPOSER_DATA_DIR=str(data)))
    assert got.returncode == 0, got.stderr
    assert got.stdout.split()[0] == "15" and str(data / "adult" / "adult_train.csv") in got.stdout
    validated = _run([sys.executable, "-m", "composer", "validate", str(site / "composer/blueprints/mmoe.yaml"),
                      "--data", "adult"], work, _env(site, COMPOSER_DATA_DIR=str(data)))
    assert validated.returncode == 0 and ": ok (" in validated.stdout, validated.stderr
    # unset: ./shared/data from the current folder
    shutil.copytree(data, work / "shared" / "data")
    got = _run([sys.executable, "-c", DESCRIBE], work, _env(site))
    assert got.returncode == 0 and str(work / "shared" / "data" / "adult") in got.stdout, got.stderr
    # nowhere: the error says where it looked
    empty = tmp_path / "empty"
    empty.mkdir()
    got = _run([sys.executable, "-c", "from composer.data.errors import DataError\ntry:\n    " + DESCRIBE
                + "\nexcept DataError as exc:\n    print(exc)"], empty, _env(site))
    assert got.returncode == 0, got.stderr
    assert "data folder not found" in got.stdout and "looked in: ./shared/data = " in got.stdout
    assert "COMPOSER_DATA_DIR" in got.stdout
