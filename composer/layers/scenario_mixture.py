"""scenario_mixture layers (being written)."""
from __future__ import annotations
