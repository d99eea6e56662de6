"""Paper mode under backpressure: a feed far faster than a strategy that trades.

Without a per-bar barrier, risk forwards bars and updates to the strategy while the
strategy sends its intents to risk, both over BLOCK mailboxes. The run must end (no
cycle of full mailboxes waiting on each other) and lose nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from tradewind.actors import Strategy
from tradewind.actors._tree import open_trading_system

from tests.system.conftest import MemoryStore, synthetic

if TYPE_CHECKING:
    from tradewind.actors import Bar, StrategyContext

CHURNER = f"{__file__}:Churner"
CAPACITY = 4
STEPS = 400
DEADLINE = 20  # real seconds: the run takes about one; a deadlock fails instead of hanging


class Churner(Strategy):
    """Trades on every bar: a market order each way, and a far limit order it cancels."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        side = ctx.buy if ctx.position(bar.instrument).quantity <= 0 else ctx.sell
        side(bar.instrument, 1)
        for order in ctx.open_orders(bar.instrument):
            if order.intent.tag == "bait":
                ctx.cancel(order.client_order_id)
        ctx.buy(bar.instrument, 1, limit=bar.low / 2, tag="bait")


async def test_paper_feed_faster_than_a_trading_strategy_loses_nothing(make_settings):
    settings = make_settings(
        mode="paper",
        data=synthetic(count=STEPS, interval=0),
        strategy=CHURNER,
        params="{}",
        extra=f"[supervision]\nmailbox_capacity = {CAPACITY}\n",
    )
    store = MemoryStore()
    with trio.fail_after(DEADLINE):
        async with open_trading_system(settings, store=store) as system:  # type: ignore[arg-type]
            await system.wait_finished()
    feed = system.feed.statistics()
    strategy = system.strategy.statistics()
    risk = system.risk.statistics()
    assert feed.accepted == 2 * STEPS
    # every accepted bar reached the strategy and the store
    assert strategy.bars == feed.accepted
    assert len(store.rows("bars")) == feed.accepted
    # every intent the strategy made reached risk, and was placed or denied with a reason
    assert strategy.intents > 2 * STEPS
    assert risk.intents == strategy.intents
    orders = {row[0] for row in store.rows("orders")}
    assert risk.accepted + risk.denied_total == strategy.intents
    assert len(orders) == risk.accepted
    assert strategy.denials == risk.denied_total
    assert not system.strategy.outbox
    assert strategy.cancels == risk.cancels
