"""Replay throughput of the whole trading system, and bar-to-broker-submit latency.

Run on demand, not in the suite:

    .venv/bin/python tests/benchmarks/bench_replay.py [BARS]
    .venv/bin/python -m pytest tests/benchmarks/bench_replay.py -m benchmark -s -p no:cacheprovider

What runs: ``BARS`` synthetic one-minute bars (two instruments, seeded random walk),
replayed through the full tree -- feed, orders + paper broker, risk, an SMA crossover
strategy (fast 20 / slow 50: it trades now and then), persistence -- with every accepted
bar, order event and fill persisted. Each configuration is measured in the same process:

* ``source only``: the synthetic source iterated alone (generation and validation of the
  bars): the floor every other figure is divided by;
* ``source + SQLite writes``: the same bars written straight to an SQLite file in units
  of work of ``batch_size`` bars, no actors: what a tree that cost nothing would reach
  with every bar persisted (the ceiling of any design on this machine);
* ``no store``: the tree with a store that keeps nothing (the actors' cost alone);
* ``SQLite file``: the embedded default, a file in a temporary folder (every commit
  synced: ``synchronous=full``);
* ``SQLite file, synchronous=normal``: the same with ``?synchronous=normal`` in the URL
  (commits survive a crash of the process, not a power loss: enough for a replay, which
  a cold start can always redo from its source);
* ``PostgreSQL``: the DSN in ``TRADEWIND_TEST_DSN`` (default
  ``postgresql://postgres@127.0.0.1:5432/test``), in a fresh schema.

Latency: from the moment the feed handles a bar to the moment the paper broker's
``submit`` is called for an order the strategy derived from that bar, p50 and p99.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from tradewind.actors._settings import load_settings
from tradewind.actors._sources import SourceBar, SyntheticBarSource
from tradewind.actors._tree import open_trading_system
from tradewind.storage import StoreCounts, Transaction, open_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tradewind.actors._tree import TradingSystem
    from tradewind.runtime import Actor

BARS = 200_000
DSN = os.environ.get("TRADEWIND_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SMA = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sma_crossover.py"

CONFIG = """
mode = "replay"
[store]
url = "sqlite://:memory:"
[[instruments]]
symbol = "AAPL"
tick_size = 0.01
[[instruments]]
symbol = "MSFT"
tick_size = 0.01
[data]
source = "synthetic"
seed = 42
count = {steps}
[strategy]
path = "{sma}:SmaCrossover"
id = "bench"
params = {{ fast = 20, slow = 50, quantity = 10, allow_short = true }}
history = 100
[risk]
max_position = 1000
max_order_notional = 10000000
max_gross_exposure = 100000000
max_orders_per_second = 1000
daily_loss_limit = 100000000
[persistence]
batch_size = 5000
flush_interval = 1.0
[logging]
level = "warning"
"""


class NullStore:
    """A store that keeps nothing: the cost of the actors alone."""

    backend = "memory"

    async def counts(self) -> StoreCounts:
        return StoreCounts(0, 0, 0, 0, 0, 0, 0, 0)

    @asynccontextmanager
    async def run_lock(self) -> AsyncIterator[None]:
        await trio.lowlevel.checkpoint()
        yield

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        tx = Transaction()
        try:
            yield tx
        finally:
            tx.close()
        await trio.lowlevel.checkpoint()


def settings(bars: int, mode: str = "replay") -> Any:
    folder = Path(tempfile.mkdtemp())
    path = folder / "bench.toml"
    text = CONFIG.format(steps=bars // 2, sma=SMA).replace('mode = "replay"', f'mode = "{mode}"')
    path.write_text(text)
    return load_settings(path, env={})


def _source(bars: int) -> tuple[SyntheticBarSource, int]:
    config = settings(bars)
    instruments = list(config.instrument_map().values())
    source = SyntheticBarSource(
        instruments, seed=42, start_ts=config.data.start_ts, count=bars // 2
    )
    return source, config.persistence.batch_size


async def source_only(bars: int) -> float:
    source, _ = _source(bars)
    start = time.perf_counter()
    count = 0
    async for _item in source.items():
        count += 1
    return count / (time.perf_counter() - start)


async def source_and_sqlite_writes(bars: int) -> float:
    source, batch_size = _source(bars)
    with tempfile.TemporaryDirectory() as folder:
        async with open_store(f"sqlite:///{Path(folder) / 'floor.db'}") as store:
            start = time.perf_counter()
            count = 0
            unit: list[Any] = []
            async for item in source.items():
                assert isinstance(item, SourceBar)  # the generator rejects nothing
                unit.append(item.bar)
                if len(unit) == batch_size:
                    async with store.transaction() as tx:
                        tx.write_bars(unit)
                    count += len(unit)
                    unit = []
            if unit:
                async with store.transaction() as tx:
                    tx.write_bars(unit)
                count += len(unit)
            elapsed = time.perf_counter() - start
            assert (await store.counts()).bars == count  # all persisted
    return count / elapsed


class Latency:
    """Feed-handled time per bar, and the delay to each broker submit derived from it."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], int] = {}
        self.delays: list[int] = []

    def wrap(self, path: str, factory: Callable[[], Actor]) -> Callable[[], Actor]:
        if path != "feed":
            return factory

        def build() -> Actor:
            actor = factory()
            handle = actor.handle
            seen = self.seen

            async def stamped(message: Any) -> Any:
                if type(message) is SourceBar:
                    seen[message.bar.instrument, message.bar.ts] = time.perf_counter_ns()
                return await handle(message)

            actor.handle = stamped  # type: ignore[method-assign]
            return actor

        return build

    def watch(self, system: TradingSystem) -> None:
        broker: Any = system.broker
        submit = broker.submit

        async def timed(order: Any) -> Any:
            handled = self.seen.get((order.intent.instrument, order.created_ts))
            if handled is not None:
                self.delays.append(time.perf_counter_ns() - handled)
            return await submit(order)

        broker.submit = timed


async def replay(bars: int, store: Any, mode: str = "replay") -> tuple[float, Latency, Any]:
    config = settings(bars, mode)
    latency = Latency()
    start = time.perf_counter()
    async with open_trading_system(config, store=store, wrap_actor=latency.wrap) as system:
        latency.watch(system)
        await system.wait_finished()
    elapsed = time.perf_counter() - start
    summary = system.result
    assert summary is not None
    assert summary.outcome == "completed"
    return summary.bars_accepted / elapsed, latency, summary


async def main(bars: int) -> list[tuple[str, float, Latency | None, Any]]:
    rows: list[tuple[str, float, Latency | None, Any]] = [
        ("source only", await source_only(bars), None, None),
        ("source + SQLite writes", await source_and_sqlite_writes(bars), None, None),
    ]
    rate, latency, summary = await replay(bars, NullStore())
    rows.append(("no store", rate, latency, summary))
    for name, query in (
        ("SQLite file", ""),
        ("SQLite file, synchronous=normal", "?synchronous=normal"),
    ):
        with tempfile.TemporaryDirectory() as folder:
            async with open_store(f"sqlite:///{Path(folder) / 'bench.db'}{query}") as store:
                rate, latency, summary = await replay(bars, store)
                assert (await store.counts()).bars == summary.bars_accepted  # all persisted
        rows.append((name, rate, latency, summary))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    url = f"{DSN}{'&' if '?' in DSN else '?'}search_path={schema}"
    admin = await _create_schema(schema)
    if admin:
        try:
            async with open_store(url) as store:
                rate, latency, summary = await replay(bars, store)
                assert (await store.counts()).bars == summary.bars_accepted
            rows.append(("PostgreSQL", rate, latency, summary))
        finally:
            await _drop_schema(schema)
    return rows


async def _create_schema(schema: str) -> bool:
    import asyncpg
    from tradewind.runtime import open_aio_loop, run_aio

    async def create() -> None:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()

    try:
        async with open_aio_loop():
            await run_aio(create)
    except OSError:
        return False
    return True


async def _drop_schema(schema: str) -> None:
    import asyncpg
    from tradewind.runtime import open_aio_loop, run_aio

    async def drop() -> None:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()

    async with open_aio_loop():
        await run_aio(drop)


def report(bars: int, rows: list[tuple[str, float, Latency | None, Any]]) -> str:
    floor = rows[0][1]
    lines = [
        f"replay of {bars // 2:,} time steps x 2 instruments (synthetic, with gaps), SMA 20/50",
        (
            "| configuration | bars | bars/s | vs source only | orders | fills "
            "| submit p50 | submit p99 |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rate, latency, summary in rows:
        orders = fills = p50 = p99 = count = "-"
        if summary is not None:
            orders, fills = f"{summary.orders:,}", f"{summary.fills:,}"
            count = f"{summary.bars_accepted:,}"
        if latency is not None and latency.delays:
            ordered = sorted(latency.delays)
            p50 = f"{statistics.median(ordered) / 1000:.0f} µs"
            p99 = f"{ordered[int(len(ordered) * 0.99)] / 1000:.0f} µs"
        lines.append(
            f"| {name} | {count} | {rate:,.0f} | {rate / floor:.3f}x | {orders} | {fills} "
            f"| {p50} | {p99} |"
        )
    return "\n".join(lines)


@pytest.mark.benchmark
def test_replay_throughput_and_latency() -> None:
    bars = int(os.environ.get("TRADEWIND_BENCH_BARS", BARS))
    print()
    print(report(bars, trio.run(main, bars)))


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else BARS
    print(report(count, trio.run(main, count)))
