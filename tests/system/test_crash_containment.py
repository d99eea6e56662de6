"""Crash containment: a crash in any actor, at a random point of a replay, changes nothing.

Each actor in turn crashes once -- either at a random message (before its handler sees it)
or at a random send in the middle of a handler (the effects before it went out, the ones
after it not) -- and the run's final positions, fills and stored rows must equal those of
a crash-free run, with the restart visible in the summary.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest
from tradewind.actors._tree import ACTOR_PATHS, CrashPlan, TradingSystem, open_trading_system
from tradewind.storage import open_store

from tests.system.conftest import synthetic

if TYPE_CHECKING:
    from tradewind.actors._settings import Settings


async def run(settings: Settings, plan: CrashPlan) -> tuple[TradingSystem, dict[str, Any]]:
    async with open_store("sqlite://:memory:") as store:
        with plan.installed():
            async with open_trading_system(
                settings, store=store, crash_plan=plan, run_id="crash"
            ) as system:
                await system.wait_finished()
        stored = {
            "counts": await store.counts(),
            "bars": await store.bars(),
            "orders": await store.orders(),
            "fills": await store.fills(),
            "denials": await store.denials(),
            "positions": dict(await store.positions()),
        }
    return system, stored


@pytest.fixture(scope="module")
def baselines():
    return {}


@pytest.fixture
def settings(make_settings):
    return make_settings(data=synthetic(count=150, seed=11))


async def baseline(settings: Settings, point: Any, baselines: dict[str, Any]) -> Any:
    if point not in baselines:
        plan = CrashPlan(point=point)  # counts messages / sends, crashes nothing
        system, stored = await run(settings, plan)
        assert system.result.fills > 3
        assert system.result.restarts == {}
        baselines[point] = (system, stored, dict(plan.counts))
    return baselines[point]


class TestCrashContainment:
    @pytest.mark.parametrize(
        ("path", "point"),
        # persistence is a sink: it sends nothing, so it only crashes at a message
        [(p, "message") for p in ACTOR_PATHS]
        + [(p, "send") for p in ACTOR_PATHS if p != "persistence"],
    )
    async def test_a_crash_changes_no_position_fill_or_stored_row(
        self, settings, baselines, path, point
    ):
        clean, clean_stored, counts = await baseline(settings, point, baselines)
        rng = random.Random(f"{path}/{point}")
        at = rng.randint(1, counts[path])
        plan = CrashPlan(at={path: at}, point=point)
        crashed, stored = await run(settings, plan)
        assert plan.fired == {path}
        assert crashed.result.restarts.get(path, 0) >= 1
        assert dict(crashed.portfolio.positions) == dict(clean.portfolio.positions)
        assert stored["fills"] == clean_stored["fills"]
        assert stored["orders"] == clean_stored["orders"]
        assert stored["bars"] == clean_stored["bars"]
        assert stored["denials"] == clean_stored["denials"]
        assert stored["positions"] == clean_stored["positions"]
        assert stored["counts"] == clean_stored["counts"]
