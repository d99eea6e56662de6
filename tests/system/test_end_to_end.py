"""End-to-end replays on SQLite and PostgreSQL: the store holds exactly what ran in memory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tradewind.actors._tree import TradingSystem, open_trading_system
from tradewind.runtime import SupervisorFailed
from tradewind.storage import open_store

from tests.system.conftest import EXAMPLES, csv, synthetic

LATE_CRASHER = f"{Path(__file__).parent / 'strategies.py'}:LateCrasher"

if TYPE_CHECKING:
    from tradewind.actors._settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'run.db'}"
    return request.getfixturevalue("pg_url")


async def replay(settings: Settings, url: str) -> tuple[TradingSystem, dict[str, Any]]:
    async with open_store(url) as store:
        async with open_trading_system(settings, store=store) as system:
            await system.wait_finished()
        stored = {
            "bars": await store.bars(),
            "orders": await store.orders(),
            "fills": await store.fills(),
            "positions": dict(await store.positions()),
            "counts": await store.counts(),
            "run": await store.run(system.run_id),
            "summary": await store.run_summary(system.run_id),
        }
    return system, stored


class TestEndToEndReplay:
    async def test_the_store_equals_the_final_state_in_memory(
        self, make_settings, store_url, tmp_path
    ):
        sample = (EXAMPLES / "data" / "bars_1m.csv").read_text().splitlines()[:1501]
        bars = tmp_path / "bars.csv"
        bars.write_text("\n".join(sample) + "\n")
        settings = make_settings(data=csv(bars), store=store_url)
        system, stored = await replay(settings, store_url)
        summary = system.result
        assert summary is not None
        assert summary.outcome == "completed"
        assert summary.fills > 10  # the strategy really traded
        # every accepted bar, each order's final snapshot, every fill, exactly
        assert len(stored["bars"]) == system.feed.statistics().accepted == 1500
        in_memory_orders = {**system.orders.finished, **system.orders.working}
        assert {o.client_order_id: o for o in stored["orders"]} == in_memory_orders
        assert sorted(f.execution_id for f in stored["fills"]) == sorted(
            system.orders.execution_ids
        )
        assert len(stored["fills"]) == summary.fills
        # positions rebuilt from the stored fills equal the live portfolio's
        live = dict(system.portfolio.positions)
        assert stored["positions"] == live
        assert stored["counts"].bars == summary.bars_accepted
        assert stored["run"].outcome == "completed"
        assert summary.to_json() == stored["summary"]

    async def test_the_same_replay_into_the_same_store_rewrites_identical_rows(
        self, make_settings, tmp_path
    ):
        url = f"sqlite:///{tmp_path / 'again.db'}"
        settings = make_settings(store=url)
        first, stored_first = await replay(settings, url)
        second, stored_second = await replay(settings, url)
        assert first.result.event_log_digest == second.result.event_log_digest
        assert stored_first["fills"] == stored_second["fills"]
        assert stored_second["counts"].runs == 2


class TestReplayBatching:
    async def test_persistence_drains_in_batches_while_trading_moves_bar_by_bar(
        self, make_settings, tmp_path
    ):
        # The replay barrier waits for the trading cascade only (`settle()`): the order
        # actor takes one bar per wake-up, persistence hundreds of records at a time.
        url = f"sqlite:///{tmp_path / 'run.db'}"
        settings = make_settings(data=synthetic(count=1500), store=url)
        async with open_store(url) as store:
            async with open_trading_system(settings, store=store) as system:
                await system.wait_finished()
                stats = system.system.statistics()
            stored_bars = (await store.counts()).bars
        bars = system.result.bars_accepted
        assert bars > 2_500
        orders, persistence = stats.actors["trading/orders"], stats.actors["persistence"]
        assert orders.batches >= bars  # lockstep: never two bars in one batch
        assert persistence.processed > bars
        # a mean batch above 5 (woken on every record it would be about 1)
        assert persistence.batches * 5 < persistence.processed
        assert stored_bars == bars  # and nothing was left behind


class TestFailedRun:
    async def test_a_run_whose_supervision_gives_up_stores_every_bar_it_accepted(
        self, make_settings, tmp_path
    ):
        # Persistence batches its records in a replay; a run that fails must still store
        # what the feed accepted before the failure, not leave it parked.
        url = f"sqlite:///{tmp_path / 'run.db'}"
        settings = make_settings(
            data=synthetic(count=400),
            store=url,
            strategy=LATE_CRASHER,
            params="{}",
            # Intensity over an hour: giving up must not depend on how fast this machine
            # gets through a restart. Within the default 10 s, a machine slower than
            # 4 restarts per 10 s (each logs its crash with a rich traceback) restarted
            # the trading subtree for ever.
            extra="[supervision]\nmax_restarts = 3\nwithin = 3600\nbackoff_initial = 0\n",
        )
        async with open_store(url) as store:
            with pytest.raises(SupervisorFailed):
                async with open_trading_system(settings, store=store) as system:
                    await system.wait_finished()
            stored = (await store.counts()).bars
        accepted = system.feed.statistics().accepted
        assert system.result.outcome == "failed"
        assert accepted > 290  # the failure came late, with records waiting
        assert stored == accepted
