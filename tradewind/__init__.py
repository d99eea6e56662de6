"""tradewind: a supervised actor runtime for automated trading on trio.

The subpackages are the product: ``tradewind.runtime`` (actors and supervision),
``tradewind.actors`` (the trading vocabulary and the trading actors) and
``tradewind.storage`` (persistence). This top-level package is the face for strategy
authors -- the names a strategy and a program that runs one need -- and holds the
command line. Its import stays light: the names below are loaded on first use.

    import tradewind

    class Buy(tradewind.Strategy):
        def on_bar(self, bar, ctx):
            if not ctx.position(bar.instrument).quantity:
                ctx.buy(bar.instrument, 1)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module that defines it. Loaded by `__getattr__` on first access, so
# `import tradewind` (and `tradewind --help`) does not pull in trio, attrs or the store.
_PUBLIC: dict[str, str] = {
    "Strategy": "tradewind.actors._strategy",
    "StrategyContext": "tradewind.actors._strategy",
    "OrderIntent": "tradewind.actors._orders",
    "OrderType": "tradewind.actors._orders",
    "Fill": "tradewind.actors._orders",
    "Side": "tradewind.actors._values",
    "Instrument": "tradewind.actors._values",
    "Bar": "tradewind.actors._marketdata",
    "Settings": "tradewind.actors._settings",
    "load_settings": "tradewind.actors._settings",
    "RunSummary": "tradewind.actors._tree",
    "TradingSystem": "tradewind.actors._tree",
    "open_trading_system": "tradewind.actors._tree",
}

__all__ = [
    "__version__",
    "Strategy",
    "StrategyContext",
    "OrderIntent",
    "OrderType",
    "Fill",
    "Side",
    "Instrument",
    "Bar",
    "Settings",
    "load_settings",
    "RunSummary",
    "TradingSystem",
    "open_trading_system",
]

if TYPE_CHECKING:
    from tradewind.actors._marketdata import Bar as Bar
    from tradewind.actors._orders import Fill as Fill
    from tradewind.actors._orders import OrderIntent as OrderIntent
    from tradewind.actors._orders import OrderType as OrderType
    from tradewind.actors._settings import Settings as Settings
    from tradewind.actors._settings import load_settings as load_settings
    from tradewind.actors._strategy import Strategy as Strategy
    from tradewind.actors._strategy import StrategyContext as StrategyContext
    from tradewind.actors._tree import RunSummary as RunSummary
    from tradewind.actors._tree import TradingSystem as TradingSystem
    from tradewind.actors._tree import open_trading_system as open_trading_system
    from tradewind.actors._values import Instrument as Instrument
    from tradewind.actors._values import Side as Side


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
