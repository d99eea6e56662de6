"""A small demonstration of the runtime: a 3-actor pipeline with one crash.

Design notes
------------
* Used by ``tradewind demo``: ``source -> doubler -> sink``. The doubler crashes once on
  a chosen message; its supervisor restarts it (after a short backoff), the message in
  hand is redelivered to the new instance, and nothing is lost: the sink's total is the
  same as without the crash. The run ends with ``quiesce()``, never with a sleep.
* It runs on the real clock but takes milliseconds; it opens no asyncio loop.
"""

from __future__ import annotations

import attrs
from tradewind.runtime._actor import Actor
from tradewind.runtime._intensity import Backoff
from tradewind.runtime._records import SystemStatistics
from tradewind.runtime._specs import ChildSpec, SupervisorSpec
from tradewind.runtime._system import open_actor_system


@attrs.frozen
class DemoResult:
    """What a demo run produced.

    Attributes:
        total: the sum the sink received (twice the sum of 1..messages).
        statistics: the system's statistics at the end of the run.
    """

    total: int
    statistics: SystemStatistics


class _Source(Actor):
    async def handle(self, message: int) -> None:
        await self.context.system.ref("doubler").send(message)


class _Doubler(Actor):
    crashed = False

    def __init__(self, crash_on: int) -> None:
        self.crash_on = crash_on

    async def handle(self, message: int) -> None:
        if message == self.crash_on and not _Doubler.crashed:
            _Doubler.crashed = True
            msg = f"demo crash on message {message}"
            raise RuntimeError(msg)
        await self.context.system.ref("sink").send(2 * message)


class _Sink(Actor):
    def __init__(self, totals: list[int]) -> None:
        self.totals = totals

    async def handle(self, message: int) -> None:
        self.totals[0] += message


async def run_demo(messages: int = 10, *, seed: int = 0) -> DemoResult:
    """Push ``1..messages`` through the pipeline, crashing the doubler once mid-way.

    Args:
        messages: how many messages the source sends (>= 1).
        seed: the seed of the restart backoff jitter.

    Returns:
        The sink's total and the final statistics.
    """
    _Doubler.crashed = False
    totals = [0]
    crash_on = max(1, messages // 2)
    spec = SupervisorSpec(
        "demo",
        [
            ChildSpec("source", _Source),
            ChildSpec("doubler", lambda: _Doubler(crash_on)),
            ChildSpec("sink", lambda: _Sink(totals)),
        ],
        backoff=Backoff(initial=0.01, jitter=0.5),
    )
    async with open_actor_system(spec, seed=seed, asyncio_loop=False) as system:
        source = system.ref("source")
        for n in range(1, messages + 1):
            await source.send(n)
        await system.quiesce()
        return DemoResult(total=totals[0], statistics=system.statistics())
