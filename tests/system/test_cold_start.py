"""Cold start after a crash: `tradewind run` killed with SIGKILL, then started again.

A replay is killed at seeded random points (each after a random number of bars the
strategy has seen, read from the process's own output; never a timed sleep), started
again on the same store until one run completes, and the store must then hold exactly
what an uninterrupted run of the same configuration stores: the same orders (ids,
statuses, fills, broker order ids), the same fills (execution ids), the same positions,
every bar once, and no client order id used twice.

The configuration commits only when an intent is journaled (``persist_batch = 1``, a
persistence batch and flush interval no run reaches): the store then always ends at an
intent's write-ahead record, the point a cold start is built to resume from (see
``docs/trading-system.md``, "Cold start").
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio
from tradewind.storage import open_store

from tests.system.conftest import write_config

TRADEWIND = str(Path(sys.executable).parent / "tradewind")
BARS_PER_INSTRUMENT = 150
INSTRUMENTS = 2
MARK = "COLD-START-BAR"

# The SMA example, announcing every bar it sees on stderr (the test's progress signal).
STRATEGY = f'''
import sys

from tradewind.actors import Strategy


class AnnouncingSma(Strategy):
    def __init__(self, fast=3, slow=8, quantity=5):
        self.fast, self.slow, self.quantity = fast, slow, quantity

    def on_bar(self, bar, ctx):
        if not ctx.warming_up:  # the warm-up of a restart replays stored bars
            sys.stderr.write("{MARK} " + bar.instrument + " " + str(bar.ts) + "\\n")
            sys.stderr.flush()
        closes = [b.close for b in ctx.history(bar.instrument, self.slow)]
        if len(closes) < self.slow or ctx.open_orders(bar.instrument):
            return
        fast = sum(closes[-self.fast :]) / self.fast
        slow = sum(closes) / self.slow
        if fast == slow:
            return
        target = self.quantity if fast > slow else -self.quantity
        held = ctx.position(bar.instrument).quantity
        if target > held:
            ctx.buy(bar.instrument, target - held, tag="sma")
        elif target < held:
            ctx.sell(bar.instrument, held - target, tag="sma")
'''

PERSISTENCE = "[persistence]\nbatch_size = 1000000\nflush_interval = 3600\n"


def config(folder: Path, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    strategy = folder / "announcing_sma.py"
    strategy.write_text(STRATEGY, encoding="utf-8")
    data = (
        f"[data]\nsource = 'synthetic'\nseed = 11\ncount = {BARS_PER_INSTRUMENT}\n"
        "persist_batch = 1\n"
    )
    return write_config(
        folder,
        data=data,
        strategy=f"{strategy}:AnnouncingSma",
        params="{ fast = 3, slow = 8, quantity = 5 }",
        store=url,
        extra=PERSISTENCE,
    )


def start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TRADEWIND, "run", str(path), "--log-format", "json", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def run_to_completion(path: Path) -> list[tuple[str, int]]:
    """Run to the end; return the bars the strategy saw, (instrument, ts) in order."""
    proc = start(path)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return [seen_bar(line) for line in err.splitlines() if line.startswith(MARK)]


def seen_bar(line: str) -> tuple[str, int]:
    _mark, instrument, ts = line.split()
    return instrument, int(ts)


def run_and_kill(path: Path, after_bars: int) -> list[tuple[str, int]] | None:
    """Start a run and SIGKILL it once the strategy has seen `after_bars` bars (0: as
    soon as it has started); the bars it saw, or None if it completed first."""
    proc = start(path)
    assert proc.stderr is not None
    seen: list[tuple[str, int]] = []
    for line in proc.stderr:
        if after_bars == 0 and '"run_started"' in line:
            break
        if line.startswith(MARK):
            seen.append(seen_bar(line))
            if len(seen) >= after_bars:
                break
    else:
        proc.wait(timeout=120)
        assert proc.returncode == 0
        return None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    return seen


def processed_again(before: dict[tuple[str, str], Any], seen: list[tuple[str, int]]) -> list:
    """The bars a run saw at or before the last one the store held when it started."""
    last = {instrument: bar.ts for (instrument, _tf), bar in before.items()}
    return [(i, ts) for i, ts in seen if ts <= last.get(i, -1)]


def last_bars(url: str) -> dict[tuple[str, str], Any]:
    async def read() -> dict[tuple[str, str], Any]:
        async with open_store(url) as store:
            return await store.last_bars()

    return trio.run(read)


def stored(url: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async with open_store(url) as store:
            return {
                "orders": await store.orders(),
                "fills": await store.fills(),
                "positions": dict(await store.positions()),
                "bars": await store.bars(),
                "counts": await store.counts(),
                "runs": await store.runs(),
            }

    return trio.run(read)


def comparable(order: Any) -> Any:
    # The last journal event differs by construction: a reconciled order's ACCEPTED is
    # re-derived from the venue after the restart; everything the order *is* must match.
    return (
        order.client_order_id,
        order.intent,
        order.status,
        order.filled_quantity,
        order.avg_fill_price,
        order.broker_order_id,
        order.created_ts,
        order.updated_ts,
        order.execution_ids,
        order.reason,
    )


def kill_and_restart(tmp_path: Path, url: str, seed: int, kills: int) -> dict[str, Any]:
    """Kill a replay `kills` times at seeded random points, restart it until it
    completes, and return what the store holds."""
    rng = random.Random(seed)
    path = config(tmp_path / "killed", url)
    for _ in range(kills):
        before = last_bars(url)
        seen = run_and_kill(path, rng.choice([0, *range(1, 25)]))
        assert seen is not None, "the replay completed before its kill point"
        assert processed_again(before, seen) == []
    before = last_bars(url)
    assert processed_again(before, run_to_completion(path)) == []
    return stored(url)


def uninterrupted(tmp_path: Path, url: str) -> dict[str, Any]:
    run_to_completion(config(tmp_path / "clean", url))
    return stored(url)


def assert_same_outcome(after: dict[str, Any], clean: dict[str, Any]) -> None:
    assert [comparable(o) for o in after["orders"]] == [comparable(o) for o in clean["orders"]]
    assert after["fills"] == clean["fills"]
    assert after["positions"] == clean["positions"]
    assert after["bars"] == clean["bars"]
    assert len(after["bars"]) == BARS_PER_INSTRUMENT * INSTRUMENTS
    ids = [o.client_order_id for o in after["orders"]]
    assert len(ids) == len(set(ids))
    executions = [f.execution_id for f in after["fills"]]
    assert len(executions) == len(set(executions))
    # positions equal the sum of the stored fills
    totals: dict[str, Any] = {}
    for fill in after["fills"]:
        totals[fill.instrument] = totals.get(fill.instrument, 0) + fill.side.sign * fill.quantity
    assert {k: v.quantity for k, v in after["positions"].items()} == totals


class TestColdStartAfterSigkill:
    def test_sqlite_twenty_kills_end_as_an_uninterrupted_replay(self, tmp_path: Path) -> None:
        clean = uninterrupted(tmp_path, f"sqlite:///{tmp_path / 'clean.db'}")
        after = kill_and_restart(tmp_path, f"sqlite:///{tmp_path / 'killed.db'}", 20, 20)
        assert len(after["runs"]) > 20
        assert_same_outcome(after, clean)

    def test_postgresql_kills_end_as_an_uninterrupted_replay(
        self, tmp_path: Path, pg_url: str
    ) -> None:
        clean = uninterrupted(tmp_path, f"sqlite:///{tmp_path / 'clean.db'}")
        after = kill_and_restart(tmp_path, pg_url, 6, 6)
        assert len(after["runs"]) > 6
        assert_same_outcome(after, clean)
