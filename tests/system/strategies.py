"""Strategies the system tests configure by file path (``strategies.py:Name``)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tradewind.actors import OrderStatus, Strategy, TransitionKind

if TYPE_CHECKING:
    from tradewind.actors import Bar, Fill, OrderUpdated, SessionChanged, StrategyContext


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


class ReactsToAcceptance(Strategy):
    """Buys 1 AAPL on the 5th AAPL bar of its history, and buys 1 MSFT the moment that
    entry is ACCEPTED (`on_order`): an intent decided in reaction to another order's
    acknowledgement, journaled in a write of its own."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if bar.instrument == "AAPL" and len(ctx.history("AAPL", 10)) == 5:
            ctx.buy("AAPL", 1, tag="entry")

    def on_order(self, update: OrderUpdated, ctx: StrategyContext) -> None:
        order = update.order
        if order.intent.tag == "entry" and order.status is OrderStatus.ACCEPTED:
            ctx.buy("MSFT", 1, tag="reaction")


class ReplacesItsOrder(Strategy):
    """Rests a far-away AAPL limit buy on the 3rd AAPL bar; on the 6th it buys at the
    market and *then* cancels the resting order, in one callback: a place and a cancel
    of one decision, the cancel after the place."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if bar.instrument != "AAPL":
            return
        seen = len(ctx.history("AAPL", 10))
        if seen == 3:
            ctx.buy("AAPL", 1, limit=Decimal("1.00"), tag="resting")
        if seen == 6:
            ctx.buy("AAPL", 1, tag="entry")
            for order in ctx.open_orders("AAPL"):
                if order.intent.tag == "resting":
                    ctx.cancel(order.client_order_id)


class ReplacesOnConfirmation(Strategy):
    """Rests a far-away AAPL limit buy on the 3rd AAPL bar and cancels it on the 6th; the
    moment the cancel is confirmed (`on_order`, CANCELED) it buys at the market: an
    intent decided in reaction to a cancel, journaled after the cancel's own write."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if bar.instrument != "AAPL":
            return
        seen = len(ctx.history("AAPL", 10))
        if seen == 3:
            ctx.buy("AAPL", 1, limit=Decimal("1.00"), tag="resting")
        if seen == 6:
            for order in ctx.open_orders("AAPL"):
                ctx.cancel(order.client_order_id)

    def on_order(self, update: OrderUpdated, ctx: StrategyContext) -> None:
        order = update.order
        if order.intent.tag == "resting" and order.status is OrderStatus.CANCELED:
            ctx.buy("AAPL", 1, tag="replacement")


class BuysAtTheOpen(Strategy):
    """Buys 1 AAPL whenever a session opens (`on_session`): a decision on an event, not
    on a bar."""

    def on_session(self, event: SessionChanged, ctx: StrategyContext) -> None:
        if event.kind is TransitionKind.OPEN:
            ctx.buy("AAPL", 1, tag="open")


class Busy(Strategy):
    """Decides on bars, on acknowledgements and on fills, with places and cancels mixed:
    every 3rd AAPL bar buys 1 at the market ("entry"); every 4th replaces its resting
    "bait" (a market sell first, then the cancel, then the new bait: place, cancel,
    place); an accepted entry gets a far-away "stop" (a reaction to the broker); a
    filled entry cancels the oldest stop (a cancel decided on a fill). Its decisions come
    from the event and the bar count of its history, never from a field."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if bar.instrument != "AAPL":
            return
        seen = len(ctx.history("AAPL", 1_000))
        if seen % 3 == 0:
            ctx.buy("AAPL", 1, tag="entry")
        if seen % 4 == 0:
            ctx.sell("MSFT", 1, tag="hedge")
            for order in ctx.open_orders("AAPL"):
                if order.intent.tag == "bait":
                    ctx.cancel(order.client_order_id)
            ctx.buy("AAPL", 1, limit=Decimal("1.00"), tag="bait")

    def on_order(self, update: OrderUpdated, ctx: StrategyContext) -> None:
        order = update.order
        if order.intent.tag == "entry" and order.status is OrderStatus.ACCEPTED:
            ctx.sell("AAPL", 1, limit=Decimal("1000.00"), tag="stop")

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        stops = [o for o in ctx.open_orders("AAPL") if o.intent.tag == "stop"]
        if fill.instrument == "AAPL" and fill.side.value == "BUY" and stops:
            ctx.cancel(stops[0].client_order_id)


SCRIPT_ACTIONS = ("market", "sell", "far", "cancel_oldest", "cancel_all")


class Scripted(Strategy):
    """Follows a script, for property tests: on the n-th bar of an instrument it does the
    script's actions for (instrument, n) in order -- "market" (buy 1), "sell" (sell 1),
    "far" (a buy limit far below the market), "cancel_oldest", "cancel_all" -- tagging
    each order ``b{n}-{i}``; when the first order of a bar's script is ACCEPTED it does
    the `on_ack` actions on that order's instrument; with `cancel_on_fill`, every fill
    cancels its instrument's oldest working order; every session open or close does the
    `on_session` actions on AAPL. Every decision comes from the event and the bar count
    of the history, so a restarted instance decides the same."""

    def __init__(
        self,
        script: dict[tuple[str, int], list[tuple[str, str]]],
        on_ack: list[str],
        cancel_on_fill: bool,
        on_session: tuple[str, ...] = (),
    ) -> None:
        self.script, self.on_ack, self.cancel_on_fill = script, on_ack, cancel_on_fill
        self.session_actions = on_session

    def on_session(self, event: SessionChanged, ctx: StrategyContext) -> None:
        for action in self.session_actions:
            self.act(action, "AAPL", ctx, f"s-{event.kind.value}")

    def act(self, action: str, symbol: str, ctx: StrategyContext, tag: str) -> None:
        working = ctx.open_orders(symbol)
        if action == "market":
            ctx.buy(symbol, 1, tag=tag)
        elif action == "sell":
            ctx.sell(symbol, 1, tag=tag)
        elif action == "far":
            ctx.buy(symbol, 1, limit=Decimal("1.00"), tag=tag)
        elif action == "cancel_oldest" and working:
            ctx.cancel(working[0].client_order_id)
        elif action == "cancel_all":
            for order in working:
                ctx.cancel(order.client_order_id)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        seen = len(ctx.history(bar.instrument, 1_000))
        for i, (symbol, action) in enumerate(self.script.get((bar.instrument, seen), ())):
            self.act(action, symbol, ctx, f"b{seen}-{i}")

    def on_order(self, update: OrderUpdated, ctx: StrategyContext) -> None:
        order = update.order
        if order.status is OrderStatus.ACCEPTED and order.intent.tag.endswith("-0"):
            for action in self.on_ack:
                self.act(action, order.intent.instrument, ctx, "ack")

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        if self.cancel_on_fill:
            self.act("cancel_oldest", fill.instrument, ctx, "fill")


class CancelsAcross(Strategy):
    """Rests a buy limit on MSFT at its first bar, and cancels it on AAPL's second bar --
    which comes before MSFT's bar of the same time. Records each fill and the time of
    every update of the order."""

    def __init__(self, limit: str = "95.00") -> None:
        self.limit = Decimal(limit)
        self.fills: list[Fill] = []
        self.updates: list[tuple[str, int]] = []

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        seen = len(ctx.history(bar.instrument, 10))
        if bar.instrument == "MSFT" and seen == 1:
            ctx.buy("MSFT", 10, limit=self.limit, tag="resting")
        elif bar.instrument == "AAPL" and seen == 2:
            for order in ctx.open_orders("MSFT"):
                ctx.cancel(order.client_order_id)

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        self.fills.append(fill)

    def on_order(self, update: OrderUpdated, ctx: StrategyContext) -> None:
        self.updates.append((update.event.kind.value, update.event.ts))
