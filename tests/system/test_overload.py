"""Overload: a paper feed ten times faster than the strategy.

With BLOCK toward the strategy nothing is lost and every mailbox stays within its bound
(the feed is slowed down instead); with CONFLATE only bars superseded by a newer bar of the
same instrument are skipped, and each is counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from tradewind.actors import Bar
from tradewind.actors._tree import open_trading_system

from tests.system.conftest import MemoryStore, synthetic

WATCHER = f"{Path(__file__).parent / 'strategies.py'}:Watcher"
FEED_INTERVAL = 0.001  # virtual seconds between time steps (two bars each)
STRATEGY_COST = 0.01  # virtual seconds the strategy spends on each bar: ten times slower
CAPACITY = 8
STEPS = 200


def slow_strategy(path: str, factory: Any) -> Any:
    if path != "trading/strategy":
        return factory

    def build():
        actor = factory()
        handle = actor.handle

        async def slow(message):
            if isinstance(message, Bar):
                await trio.sleep(STRATEGY_COST)
            return await handle(message)

        actor.handle = slow
        return actor

    return build


async def run_overloaded(make_settings: Any, *, conflate: bool) -> tuple[Any, dict[str, int]]:
    settings = make_settings(
        mode="paper",
        data=synthetic(count=STEPS, interval=FEED_INTERVAL, conflate=conflate),
        strategy=WATCHER,
        params="{}",
        extra=f"[supervision]\nmailbox_capacity = {CAPACITY}\n",
    )
    deepest: dict[str, int] = {}
    async with (
        open_trading_system(
            settings,
            store=MemoryStore(),  # type: ignore[arg-type]
            wrap_actor=slow_strategy,
        ) as system,
        trio.open_nursery() as nursery,
    ):

        async def watch():
            while True:
                for path, stats in system.system.statistics().actors.items():
                    deepest[path] = max(deepest.get(path, 0), stats.mailbox_depth)
                await trio.sleep(FEED_INTERVAL / 2)

        nursery.start_soon(watch)
        await system.wait_finished()
        nursery.cancel_scope.cancel()
    return system, deepest


class TestOverload:
    async def test_block_loses_nothing_and_stays_bounded(self, make_settings, autojump_clock):
        system, deepest = await run_overloaded(make_settings, conflate=False)
        accepted = system.feed.statistics().accepted
        assert accepted > 300
        assert system.strategy.statistics().bars == accepted
        assert system.result.conflated == 0
        assert max(deepest.values()) <= CAPACITY
        assert deepest["trading/strategy"] == CAPACITY  # it did back up: backpressure

    async def test_conflate_skips_only_superseded_bars_and_counts_them(
        self, make_settings, autojump_clock
    ):
        system, deepest = await run_overloaded(make_settings, conflate=True)
        accepted = system.feed.statistics().accepted
        seen = system.strategy.statistics().bars
        conflated = system.result.conflated
        assert conflated > 0
        assert seen + conflated == accepted
        assert max(deepest.values()) <= CAPACITY
        # the newest bar of each instrument always gets through
        stored: dict[str, int] = {}
        for instrument, _timeframe, ts, *_ in system.store.rows("bars"):
            stored[instrument] = max(stored.get(instrument, 0), ts)
        seen_last = {s: system.strategy.bars(s, 1, None)[-1].ts for s in stored}
        assert seen_last == stored
