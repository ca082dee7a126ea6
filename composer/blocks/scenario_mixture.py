"""scenario_mixture blocks (being written)."""
from __future__ import annotations
