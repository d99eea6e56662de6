"""Determinism: a fixed scenario under MockClock yields the same handled-message log.

Trio deliberately shuffles its run queue, so two actors woken at the same virtual instant
may run in either order; what must not vary is each actor's own sequence of handled
messages and the virtual time at which it handled each one, nor the statistics and dead
letters. The scenario has two tickers with interleaving periods feeding a merger (fan-in
at distinct instants), a fan-out to two consumers, a crashing consumer restarted with
seeded, jittered backoff, and a poison message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import structlog
import trio
from tradewind.runtime import (
    Actor,
    Backoff,
    ChildSpec,
    SupervisorSpec,
    open_actor_system,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio.testing import MockClock


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[list[Any]]:
    """Capture the runtime's logs instead of rendering them (crash tracebacks are slow)."""
    with structlog.testing.capture_logs() as logs:
        yield logs


Log = dict[str, list[tuple[float, Any]]]


class Ticker(Actor):
    """Sends ``(name, n)`` to the merger every ``period`` seconds, ``count`` times."""

    def __init__(self, log: Log, name: str, offset: float, period: float, count: int) -> None:
        self.log, self.name, self.offset, self.period, self.count = log, name, offset, period, count

    async def handle(self, message: Any) -> None:
        now = self.context.now()
        self.log.setdefault(self.context.path, []).append((now, message))
        n = message
        await trio.sleep(self.offset if n == 0 else self.period)
        await self.context.system.ref("merger").send((self.name, n))
        if n + 1 < self.count:
            await self.context.ref.send(n + 1)


class Merger(Actor):
    def __init__(self, log: Log) -> None:
        self.log = log
        self.seq = 0

    async def handle(self, message: Any) -> None:
        self.log.setdefault(self.context.path, []).append((self.context.now(), message))
        self.seq += 1
        for target in ("risk", "book/ledger"):
            await self.context.system.ref(target).send((self.seq, message))


class Consumer(Actor):
    def __init__(self, log: Log, cost: float) -> None:
        self.log = log
        self.cost = cost

    async def handle(self, message: Any) -> None:
        seq, _payload = message
        if self.context.path == "book/ledger" and seq % 7 == 0:
            raise RuntimeError(f"crash on {seq}")  # crashes every time: poison
        await trio.sleep(self.cost)
        self.log.setdefault(self.context.path, []).append((self.context.now(), message))


async def run_scenario(seed: int) -> tuple[Log, Any, list[Any]]:
    log: Log = {}
    spec = SupervisorSpec(
        "root",
        [
            ChildSpec("merger", lambda: Merger(log)),
            ChildSpec("risk", lambda: Consumer(log, 0.25)),
            SupervisorSpec(
                "book",
                [ChildSpec("ledger", lambda: Consumer(log, 0.1), max_redeliveries=1)],
                backoff=Backoff(initial=0.3, multiplier=1.5, maximum=2.0, jitter=0.5),
                max_restarts=100,
                within=5,
            ),
            ChildSpec("fast", lambda: Ticker(log, "fast", 0.5, 2.0, 12)),
            ChildSpec("slow", lambda: Ticker(log, "slow", 1.0, 3.0, 8)),
        ],
    )
    async with open_actor_system(spec, seed=seed, asyncio_loop=False) as system:
        start = trio.current_time()
        await system.ref("fast").send(0)
        await system.ref("slow").send(0)
        await system.quiesce()
        relative = {
            path: [(round(t - start, 9), m) for t, m in entries] for path, entries in log.items()
        }
        stats = system.statistics()
        letters = [
            (d.path, d.message, d.reason, d.attempts, round(d.time - start, 9))
            for d in system.dead_letters
        ]
    return relative, stats, letters


class TestDeterminism:
    async def test_twenty_runs_yield_an_identical_log(self, autojump_clock: MockClock):
        first = await run_scenario(seed=7)
        log, stats, letters = first
        # The scenario really exercises what it claims to.
        assert len(log["merger"]) == 20
        assert stats.actors["book/ledger"].restarts >= 4
        assert letters
        for _ in range(19):
            assert await run_scenario(seed=7) == first

    async def test_the_seed_drives_the_backoff_jitter(self, autojump_clock: MockClock):
        log_a, _, _ = await run_scenario(seed=7)
        log_b, _, _ = await run_scenario(seed=8)
        assert log_a["book/ledger"] != log_b["book/ledger"]
        assert log_a["risk"] == log_b["risk"]
