"""scenario_adaptive layers (being written)."""
from __future__ import annotations
