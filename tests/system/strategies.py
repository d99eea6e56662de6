"""Strategies the system tests configure by file path (``strategies.py:Name``)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tradewind.actors import Strategy

if TYPE_CHECKING:
    from tradewind.actors import Bar, Fill, StrategyContext


class Loser(Strategy):
    """Buys 100 AAPL once and holds it while the price falls; every bar it also rests a
    far-away limit buy ("bait") that never fills, so there is always an order to cancel."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if bar.instrument != "AAPL":
            return
        entries = [o for o in ctx.open_orders("AAPL") if o.intent.tag == "entry"]
        if ctx.position("AAPL").quantity == 0 and not entries:
            ctx.buy("AAPL", 100, tag="entry")
        ctx.buy("AAPL", 1, limit=Decimal("1.00"), tag="bait")


class Watcher(Strategy):
    """Trades nothing; it only receives bars (for the overload tests)."""


class Crasher(Strategy):
    """Raises on every bar: its supervisor gives up once the restart intensity is spent."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        msg = f"crasher fails on {bar.instrument}"
        raise RuntimeError(msg)


class Pairs(Strategy):
    """On every AAPL bar buys 1 AAPL and sells 1 MSFT in one decision (two intents from
    one `on_bar`), and answers each AAPL fill with a far-away limit order (`on_fill`): the
    fill of the last leg arrives in the cascade of the next AAPL bar, so that cascade
    decides three intents in two callbacks."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if bar.instrument == "AAPL":
            ctx.buy("AAPL", 1, tag="leg-a")
            ctx.sell("MSFT", 1, tag="leg-b")

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        if fill.instrument == "AAPL":
            ctx.buy("AAPL", 1, limit=Decimal("1.00"), tag="note")


class LateCrasher(Strategy):
    """Trades nothing and raises on every bar from the 150th bar of an instrument on:
    a run that fails well after persistence has records waiting."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if len(ctx.history(bar.instrument, 1_000)) >= 150:
            msg = f"late crash on {bar.instrument}"
            raise RuntimeError(msg)
