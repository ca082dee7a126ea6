"""Dataset names -> their static description and their loader.

``describe(name_or_path)`` is cheap (no data read: a built-in name answers from code, a data
YAML from the YAML alone; ``kuairand`` and ``aliexpress`` peek at one header line to see which
labels / scenario columns exist). ``load(name_or_path, rows=...)`` reads the data.

A name may carry options after a colon (``synthetic:rows=5000``); the registered functions get
the whole name. Other modules add names with ``register(base, describe_fn, load_fn)`` where
``describe_fn(name) -> DataSpec`` and ``load_fn(name, rows=None) -> Dataset``.
"""
from __future__ import annotations

import os
from typing import Callable

from .dataset import DataSpec, Dataset
from .errors import DataError, did_you_mean

_REGISTRY: dict[str, tuple[Callable, Callable]] = {}
_LOADED = False


def register(name: str, describe_fn: Callable[[str], DataSpec], load_fn: Callable[..., Dataset]) -> None:
    _REGISTRY[name] = (describe_fn, load_fn)


def _builtin(module: str, variants) -> None:
    import importlib

    def describe_fn(name):
        return importlib.import_module(f"composer.data.{module}").describe(_no_options(name))

    def load_fn(name, rows=None):
        return importlib.import_module(f"composer.data.{module}").load(_no_options(name), rows=rows)

    for variant in variants:
        register(variant, describe_fn, load_fn)


def _no_options(name: str) -> str:
    base, colon, options = name.partition(":")
    if colon:
        raise DataError(f"dataset '{base}' takes no options, got ':{options}'", key="data",
                        hint=f"write just '{base}'")
    return base


_builtin("census", ("census-mtl", "census-msl"))
_builtin("adult", ("adult", "adult-msl"))
_builtin("kuairand", ("kuairand",))
register("kuairand-pure", lambda n: __import__("composer.data.kuairand_pure", fromlist=["load"]).describe(n),  # takes options
         lambda n, rows=None: __import__("composer.data.kuairand_pure", fromlist=["load"]).load(n, rows=rows))
_builtin("ali", ("aliexpress", "ali-ccp", "ali-ccp-scenarios"))


def _ensure_loaded() -> None:
    """Modules that register themselves, imported on first use (they may not exist yet)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    try:
        from . import synthetic
    except ModuleNotFoundError as exc:
        if exc.name != "composer.data.synthetic":
            raise
        return
    hook = getattr(synthetic, "register_all", None)
    if hook is not None:
        hook(register)
    from . import synthetic_seq

    synthetic_seq.register(register)


def names() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def _is_path(name: str) -> bool:
    return name.lower().endswith((".yaml", ".yml")) or os.sep in name or "/" in name or os.path.isdir(name)


def _resolve(name_or_path: str):
    """(kind, target): ('yaml', path), ('kuairand-dir', path) or ('name', (describe, load))."""
    name = str(name_or_path).strip()
    if _is_path(name):
        if os.path.isdir(name):
            from .kuairand import log_files
            from pathlib import Path

            if log_files(Path(name)):
                return "kuairand-dir", name
            raise DataError("a folder is not a dataset", key="data", location=None,
                            hint=f"'{name}': pass a data YAML describing a file in it, or a KuaiRand "
                            "folder (a *log*.csv with user and video feature files)")
        if not name.lower().endswith((".yaml", ".yml")):
            raise DataError(f"'{name}' is not a data YAML", key="data",
                            hint="describe a data file with a YAML (source, categorical, numeric, labels, "
                            "split) and pass the YAML")
        return "yaml", name
    _ensure_loaded()
    base = name.partition(":")[0].strip()
    if base not in _REGISTRY:
        raise DataError(f"unknown dataset '{base}'", key="data",
                        hint=did_you_mean(base, _REGISTRY, what="datasets") + "; or a path to a data YAML")
    return "name", _REGISTRY[base]


def describe(name_or_path: str) -> DataSpec:
    kind, target = _resolve(name_or_path)
    if kind == "yaml":
        from . import files

        return files.describe(target)
    if kind == "kuairand-dir":
        from pathlib import Path

        from . import kuairand

        return kuairand.describe("kuairand", Path(target))
    return target[0](str(name_or_path).strip())


def load(name_or_path: str, *, rows: int | None = None) -> Dataset:
    """Load a dataset; ``rows`` reads at most that many data rows from each file (a quick look;
    each file's split rule is unchanged)."""
    if rows is not None and rows < 1:
        raise DataError(f"rows must be a positive integer, got {rows}", key="rows")
    kind, target = _resolve(name_or_path)
    if kind == "yaml":
        from . import files

        return files.load(target, rows=rows)
    if kind == "kuairand-dir":
        from pathlib import Path

        from . import kuairand

        return kuairand.load("kuairand", rows, directory=Path(target))
    return target[1](str(name_or_path).strip(), rows=rows)
