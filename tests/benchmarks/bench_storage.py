"""Storage throughput: bars/second through the bulk path, and what the trio bridge costs.

Run on demand (not part of the suite):

    .venv/bin/python -m pytest tests/benchmarks/bench_storage.py -m benchmark -s -p no:cacheprovider

Three figures, each the best of several rounds over the same rows:

- PostgreSQL through the store: trio -> one trio-asyncio bridged call per unit of work ->
  asyncpg (COPY into the staging table, INSERT ... ON CONFLICT DO NOTHING);
- the same unit-of-work coroutine run by plain asyncpg on a plain asyncio loop, into the
  same (emptied) table: the difference is exactly the bridge and trio's side of the store;
- SQLite through the store (file database, one worker thread).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import asyncpg
import pytest
import trio
from tradewind.actors import Bar
from tradewind.storage import open_store
from tradewind.storage._postgresql import _Connection, _run_unit
from tradewind.storage._uow import Transaction

BARS = 200_000
BATCH = 10_000
ROUNDS = 3


def make_bars() -> list[Bar]:
    bars = []
    for n in range(BARS):
        price = Decimal(10_000 + n % 5_000).scaleb(-2)
        bars.append(
            Bar(
                instrument=f"SYM{n % 50}",
                timeframe="1m",
                ts=1_700_000_000_000_000_000 + (n // 50) * 60_000_000_000,
                open=price,
                high=price + Decimal("0.05"),
                low=price - Decimal("0.05"),
                close=price,
                volume=Decimal(n % 1_000 + 1),
            )
        )
    return bars


def batches(bars: list[Bar]) -> list[list[Bar]]:
    return [bars[i : i + BATCH] for i in range(0, len(bars), BATCH)]


async def store_round(url: str, bars: list[Bar]) -> float:
    """Write every bar through the store; return the seconds the writes took."""
    async with open_store(url) as store:
        start = time.perf_counter()
        for batch in batches(bars):
            async with store.transaction() as tx:
                tx.write_bars(batch)
        elapsed = time.perf_counter() - start
        assert (await store.counts()).bars == len(bars)
    return elapsed


async def asyncio_round(url: str, bars: list[Bar]) -> float:
    """The same units of work on plain asyncio with a plain asyncpg connection."""
    raw = await asyncpg.connect(url)
    try:
        conn = _Connection(raw)
        start = time.perf_counter()
        for batch in batches(bars):
            tx = Transaction()
            tx.write_bars(batch)
            await _run_unit(conn, tx.writes())
        elapsed = time.perf_counter() - start
        assert await raw.fetchval("SELECT count(*) FROM bars") == len(bars)
    finally:
        await raw.close()
    return elapsed


async def empty_bars(url: str) -> None:
    raw = await asyncpg.connect(url)
    try:
        await raw.execute("TRUNCATE bars")
    finally:
        await raw.close()


@pytest.mark.benchmark
def test_bulk_bar_throughput(pg_url, tmp_path):
    bars = make_bars()
    bridged, native, lite = [], [], []
    for n in range(ROUNDS):
        bridged.append(trio.run(store_round, pg_url, bars))
        asyncio.run(empty_bars(pg_url))
        native.append(asyncio.run(asyncio_round(pg_url, bars)))
        asyncio.run(empty_bars(pg_url))
        lite.append(trio.run(store_round, f"sqlite:///{tmp_path / f'bench{n}.db'}", bars))
    best_bridged, best_native, best_lite = min(bridged), min(native), min(lite)
    print()
    print(f"bars per round: {BARS:,} in units of {BATCH:,}; best of {ROUNDS} rounds")
    print(f"PostgreSQL via trio-asyncio (store): {BARS / best_bridged:12,.0f} bars/s")
    print(f"PostgreSQL via plain asyncio       : {BARS / best_native:12,.0f} bars/s")
    print(f"bridge overhead (trio / asyncio)   : {best_bridged / best_native:12.3f}x")
    print(f"SQLite (store, file)               : {BARS / best_lite:12,.0f} bars/s")
    assert best_bridged > 0
