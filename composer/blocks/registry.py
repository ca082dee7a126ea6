"""Block types by the name a user writes after ``type:``."""
from __future__ import annotations

from .base import Block

_BLOCKS: dict[str, type[Block]] = {}


def register(cls: type[Block]) -> type[Block]:
    name = cls.model_fields["type"].default
    if name in _BLOCKS:
        raise ValueError(f"block type {name!r} registered twice")
    _BLOCKS[name] = cls
    return cls


def all_blocks() -> dict[str, type[Block]]:
    from . import chains, dense, dynamic, experts, features, scenario, sequence  # noqa: F401  (registers the families)
    from . import multitask, scenario_adaptive, scenario_mixture  # noqa: F401

    return dict(_BLOCKS)


def get(name: str) -> type[Block]:
    return all_blocks()[name]
