"""The shipped blueprints, wherever Composer is installed.

The repository's ``blueprints/*.yaml`` are the source of truth. A wheel carries a copy of them
inside the package, as ``composer/blueprints/`` (``setup.py`` copies them at build time), so a
plain ``pip install .`` still has them; a source checkout (and an editable install) reads the
repository's folder directly. ``composer blueprints`` lists them, ``composer blueprints copy
NAME [DIR]`` writes one out to edit.
"""
from __future__ import annotations

import shutil
from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "blueprints"  # inside an installed wheel
CHECKOUT = Path(__file__).resolve().parents[1] / "blueprints"  # a source checkout


def folder() -> Path:
    """The folder holding the shipped blueprints: the packaged copy, else the checkout's."""
    for candidate in (PACKAGED, CHECKOUT):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    from .blueprint.errors import BlueprintError, Location

    raise BlueprintError("the shipped blueprints are not installed", location=Location(str(PACKAGED)),
                         hint=f"looked in {PACKAGED} and {CHECKOUT}; reinstall Composer (pip install .)")


def names() -> list[str]:
    """The shipped blueprints' names (file names without .yaml), sorted."""
    return sorted(p.stem for p in folder().glob("*.yaml"))


def path(name: str) -> Path:
    """The file of one shipped blueprint (``mmoe`` or ``mmoe.yaml``); a located error with
    "did you mean" for another name."""
    from .blueprint.errors import BlueprintError, did_you_mean

    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in names():
        raise BlueprintError(f"no shipped blueprint '{name}'", key="blueprints",
                             hint=did_you_mean(stem, names(), what="shipped blueprints"))
    return folder() / f"{stem}.yaml"


def description(file: Path) -> str:
    """The blueprint's ``description:`` (empty when it has none or does not parse)."""
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return ""
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def copy(name: str, directory: str | Path = ".", overwrite: bool = False) -> Path:
    """Copy one shipped blueprint to ``directory`` (created if needed) as NAME.yaml; an existing
    file is left alone unless ``overwrite``."""
    from .blueprint.errors import BlueprintError, Location

    source = path(name)
    target_dir = Path(directory)
    if target_dir.exists() and not target_dir.is_dir():
        raise BlueprintError("not a folder", location=Location(str(target_dir)),
                             hint="give a folder to copy the blueprint into")
    target = target_dir / source.name
    if target.exists() and not overwrite:
        raise BlueprintError("file exists; not overwritten", location=Location(str(target)),
                             hint="pass --force to overwrite it, or copy into another folder")
    target_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
