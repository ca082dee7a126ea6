"""scenario_adaptive blocks (being written)."""
from __future__ import annotations
