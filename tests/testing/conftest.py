"""Scenarios shared by the harness tests."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMA = f"{REPO / 'docs' / 'examples' / 'sma_crossover.py'}:SmaCrossover"
#: Fast SMA that trades both ways on the default synthetic walk.
SMA_PARAMS = {"fast": 3, "slow": 8, "quantity": 5, "allow_short": True}
CENT = Decimal("0.01")
