"""The public face of `tradewind` for strategy authors: the names, loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tradewind
from tradewind import actors

STRATEGY_AUTHOR_NAMES = [
    "Strategy",
    "StrategyContext",
    "OrderIntent",
    "OrderType",
    "Side",
    "Bar",
    "Fill",
    "Instrument",
    "open_trading_system",
    "load_settings",
    "Settings",
    "RunSummary",
    "TradingSystem",
]


class TestPublicFace:
    def test_all_lists_the_strategy_author_names_and_the_version(self):
        assert sorted(tradewind.__all__) == sorted(["__version__", *STRATEGY_AUTHOR_NAMES])

    @pytest.mark.parametrize("name", ["Strategy", "StrategyContext", "OrderIntent", "Side", "Bar"])
    def test_names_are_the_actors_packages_own(self, name):
        assert getattr(tradewind, name) is getattr(actors, name)

    def test_every_listed_name_resolves_and_shows_in_dir(self):
        for name in STRATEGY_AUTHOR_NAMES:
            assert getattr(tradewind, name) is not None
            assert name in dir(tradewind)

    def test_an_unknown_name_is_an_attribute_error(self):
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            _ = tradewind.Nope

    def test_importing_tradewind_loads_neither_trio_nor_the_store(self):
        code = "import sys, tradewind; print('trio' in sys.modules, 'sqlite3' in sys.modules)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert out.split() == ["False", "False"]
