"""Crash containment: a crash in any actor, at a random point of a replay, changes nothing.

Each actor in turn crashes once -- either at a random message (before its handler sees it)
or at a random send in the middle of a handler (the effects before it went out, the ones
after it not) -- and the run's final positions, fills and stored rows must equal those of
a crash-free run, with the restart visible in the summary.

Runs on the `tradewind.testing` harness (the real tree under `MockClock` with autojump)
with a store the test opens, so that the rows can be read after the run has ended.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from tradewind.actors import Bar
from tradewind.actors._tree import ACTOR_PATHS
from tradewind.storage import open_store

from tests.system.conftest import synthetic
from tests.system.strategies import ReplacesOnConfirmation
from tradewind.testing import BrokerSection, Harness, crash, open_harness

if TYPE_CHECKING:
    from tradewind.actors._settings import Settings


#: A crash that never comes: with it the plan counts every actor's messages or sends.
NEVER = 10**9
START = 1_767_571_200_000_000_000
MINUTE = 60_000_000_000


async def run(settings: Settings, path: str, point: str, at: int) -> tuple[Harness, dict[str, Any]]:
    fault = crash(path, at_message=at) if point == "message" else crash(path, at_send=at)
    async with open_store("sqlite://:memory:") as store:
        async with open_harness(
            settings=settings, store=store, faults=[fault], pace=0, run_id="crash"
        ) as h:
            await h.run()
        stored = {
            "counts": await store.counts(),
            "bars": await store.bars(),
            "orders": await store.orders(),
            "fills": await store.fills(),
            "denials": await store.denials(),
            "positions": dict(await store.positions()),
        }
    return h, stored


@pytest.fixture(scope="module")
def baselines():
    return {}


@pytest.fixture
def settings(make_settings):
    return make_settings(data=synthetic(count=150, seed=11))


async def baseline(settings: Settings, point: Any, baselines: dict[str, Any]) -> Any:
    if point not in baselines:
        h, stored = await run(settings, "feed", point, NEVER)  # counts, crashes nothing
        assert h.summary.fills > 3
        assert h.summary.restarts == {}
        baselines[point] = (h, stored, dict(h.crash_plan.counts))
    return baselines[point]


class TestCrashContainment:
    @pytest.mark.parametrize(
        ("path", "point"),
        # persistence is a sink: it sends nothing, so it only crashes at a message
        [(p, "message") for p in ACTOR_PATHS]
        + [(p, "send") for p in ACTOR_PATHS if p != "persistence"],
    )
    async def test_a_crash_changes_no_position_fill_or_stored_row(
        self, settings, baselines, path, point, autojump_clock
    ):
        clean, clean_stored, counts = await baseline(settings, point, baselines)
        rng = random.Random(f"{path}/{point}")
        at = rng.randint(1, counts[path])
        crashed, stored = await run(settings, path, point, at)
        assert crashed.crash_plan.fired == {path}
        assert crashed.summary.restarts.get(path, 0) >= 1
        assert crashed.positions == clean.positions
        assert stored["fills"] == clean_stored["fills"]
        assert stored["orders"] == clean_stored["orders"]
        assert stored["bars"] == clean_stored["bars"]
        assert stored["denials"] == clean_stored["denials"]
        assert stored["positions"] == clean_stored["positions"]
        assert stored["counts"] == clean_stored["counts"]


class TestAReactionToTheBroker:
    """A strategy that reacts to the broker's news (here: a confirmed cancel) decides its
    reaction once, whatever the order actor's crash re-sends."""

    @staticmethod
    async def orders_after(faults: list[Any]) -> tuple[Harness, list[tuple[Any, ...]]]:
        # With latency the cancel is confirmed by the next bar, in the order actor's bar
        # handler, which sends the bar after the bar's updates.
        price = Decimal(100)
        bars = [
            Bar("AAPL", "1m", START + i * MINUTE, price, price, price, price, Decimal(1000))
            for i in range(10)
        ]
        async with open_harness(
            ReplacesOnConfirmation,
            bars=bars,
            broker=BrokerSection(latency=Decimal(30)),
            faults=faults,
        ) as h:
            await h.run()
        orders = [
            (coid, o.intent.tag, o.status, o.filled_quantity)
            for coid, o in sorted(h.orders.items())
        ]
        return h, orders

    async def test_an_order_actor_crash_at_any_send_places_the_reaction_once(self, autojump_clock):
        clean, clean_orders = await self.orders_after([crash("trading/orders", at_send=NEVER)])
        assert [tag for _coid, tag, *_ in clean_orders] == ["resting", "replacement"]
        for at in range(1, clean.crash_plan.counts["trading/orders"] + 1):
            crashed, orders = await self.orders_after([crash("trading/orders", at_send=at)])
            assert crashed.crash_plan.fired == {"trading/orders"}
            assert orders == clean_orders, f"crash at send {at}"
