"""Cold start after a crash: `tradewind run` killed with SIGKILL, then started again.

(About 35 s for the file on 2 cores: 2 x 21 runs of ``tradewind run`` plus the two
uninterrupted ones, each run a second or so, mostly interpreter start-up.)

A replay is killed at seeded random points (each after a random number of bars the
strategy has seen, read from the process's own output; never a timed sleep), started
again on the same store until one run completes, and the store must then hold exactly
what an uninterrupted run of the same configuration stores: the same orders (ids,
statuses, fills, broker order ids), the same fills (execution ids), the same positions,
every bar once, and no client order id used twice.

The runs use the default persistence settings (on PostgreSQL) and commits by size every
few records (on SQLite), so a kill falls after a journal write of an intent as well as
after a commit the persistence actor ended where a bar's cascade began (see
``docs/trading-system.md``, "Cold start"). The strategy acts on crossover events and
never looks at its position: a bar decided twice would place a second order. On each
crossover it also replaces a resting order (a place, a cancel and a place in one
decision), so a lost cancel would leave an order working that the uninterrupted run
canceled.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tradewind.actors import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderIntent,
    OrderType,
    Side,
    SpillJournal,
    Strategy,
    TimeInForce,
    TradingState,
)
from tradewind.actors._errors import DomainError
from tradewind.actors._messages import OrderUpdated, Persist, PersistDurably
from tradewind.actors._orders import (
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderDenied,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
)
from tradewind.actors._paper import PaperBroker, PaperConfig, PaperExchange
from tradewind.actors._reconcile import UNKNOWN_TO_BROKER, BrokerView, reconcile
from tradewind.actors._settings import Settings, config_hash, load_settings
from tradewind.actors._sources import SourceBar, SyntheticBarSource
from tradewind.actors._tree import open_trading_system
from tradewind.storage import StoreUnavailable, Transaction, open_store

from tests.system.conftest import (
    RISK,
    MemoryStore,
    around_handle,
    as_if_killed,
    settings_for,
    synthetic,
    write_config,
)
from tests.system.strategies import SCRIPT_ACTIONS, Scripted

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tradewind.runtime import Actor
    from tradewind.storage import Store

    from tests.system.conftest import Handle

TRADEWIND = str(Path(sys.executable).parent / "tradewind")
BARS_PER_INSTRUMENT = 150
INSTRUMENTS = 2
MARK = "COLD-START-BAR"
PAIRS = f"{Path(__file__).parent / 'strategies.py'}:Pairs"

# A crossover strategy that acts on the *event* (the bar on which the fast average
# crosses the slow one: a fixed quantity that way), with no look at its position -- so a
# bar decided twice after a restart would place a second order, and the stored orders
# would differ from an uninterrupted run's. On each crossover it also replaces a resting
# "bait" order far from the market (a place, a cancel and a place in one decision: a
# kill between their journal writes would keep the cross order and lose the cancel). It
# announces every bar it sees on stderr (the test's progress signal).
STRATEGY = f'''
import sys
from decimal import Decimal

from tradewind.actors import Strategy


class AnnouncingCrossover(Strategy):
    def __init__(self, fast=3, slow=8, quantity=5):
        self.fast, self.slow, self.quantity = fast, slow, quantity

    def side(self, closes):
        fast = sum(closes[-self.fast :]) / self.fast
        slow = sum(closes) / self.slow
        return (fast > slow) - (fast < slow)

    def on_bar(self, bar, ctx):
        if not ctx.warming_up:  # the warm-up of a restart replays stored bars
            sys.stderr.write("{MARK} " + bar.instrument + " " + str(bar.ts) + "\\n")
            sys.stderr.flush()
        closes = [b.close for b in ctx.history(bar.instrument, self.slow + 1)]
        if len(closes) <= self.slow:
            return
        before, now = self.side(closes[:-1]), self.side(closes[1:])
        if now > 0 and before <= 0:
            ctx.buy(bar.instrument, self.quantity, tag="cross")
            self.replace_bait(bar, ctx)
        elif now < 0 and before >= 0:
            ctx.sell(bar.instrument, self.quantity, tag="cross")
            self.replace_bait(bar, ctx)

    def replace_bait(self, bar, ctx):
        for order in ctx.open_orders(bar.instrument):
            if order.intent.tag == "bait":
                ctx.cancel(order.client_order_id)
        far = (bar.close / 2).quantize(Decimal("0.01"))
        ctx.buy(bar.instrument, 1, limit=far, tag="bait")
'''

# Commits by size every few records, so kills also fall after commits that end where a
# bar's cascade begins (the persistence actor's cut), not only after journal writes.
SMALL_BATCHES = "[persistence]\nbatch_size = 5\n"


def config(folder: Path, url: str, persistence: str = "") -> Path:
    """The replay's configuration: default persistence settings unless `persistence`."""
    folder.mkdir(parents=True, exist_ok=True)
    strategy = folder / "announcing_crossover.py"
    strategy.write_text(STRATEGY, encoding="utf-8")
    data = f"[data]\nsource = 'synthetic'\nseed = 11\ncount = {BARS_PER_INSTRUMENT}\n"
    return write_config(
        folder,
        data=data,
        strategy=f"{strategy}:AnnouncingCrossover",
        params="{ fast = 3, slow = 8, quantity = 5 }",
        store=url,
        extra=persistence,
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


def processed_again(
    before: dict[tuple[str, str], Any], seen: list[tuple[str, int]]
) -> list[tuple[str, int]]:
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


def kill_and_restart(
    tmp_path: Path, url: str, seed: int, kills: int, persistence: str = ""
) -> dict[str, Any]:
    """Kill a replay `kills` times at seeded random points, restart it until it
    completes, and return what the store holds."""
    rng = random.Random(seed)
    path = config(tmp_path / "killed", url, persistence)
    for _ in range(kills):
        before = last_bars(url)
        seen = run_and_kill(path, rng.choice([0, *range(1, 25)]))
        assert seen is not None, "the replay completed before its kill point"
        assert processed_again(before, seen) == []
    before = last_bars(url)
    assert processed_again(before, run_to_completion(path)) == []
    return stored(url)


def uninterrupted(tmp_path: Path, url: str, persistence: str = "") -> dict[str, Any]:
    run_to_completion(config(tmp_path / "clean", url, persistence))
    return stored(url)


def assert_same_outcome(after: dict[str, Any], clean: dict[str, Any]) -> None:
    replaced = [o for o in clean["orders"] if o.intent.tag == "bait"]
    assert {o.status for o in replaced} == {OrderStatus.CANCELED, OrderStatus.ACCEPTED}
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
        clean = uninterrupted(tmp_path, f"sqlite:///{tmp_path / 'clean.db'}", SMALL_BATCHES)
        after = kill_and_restart(
            tmp_path, f"sqlite:///{tmp_path / 'killed.db'}", 20, 20, SMALL_BATCHES
        )
        assert len(after["runs"]) == 21
        assert_same_outcome(after, clean)

    def test_postgresql_twenty_kills_end_as_an_uninterrupted_replay(
        self, tmp_path: Path, pg_url: str
    ) -> None:
        clean = uninterrupted(tmp_path, f"sqlite:///{tmp_path / 'clean.db'}")
        after = kill_and_restart(tmp_path, pg_url, 6, 20)
        assert len(after["runs"]) == 21
        assert_same_outcome(after, clean)


# ----------------------------------------------------------------------------- in process

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
MSFT = Instrument("MSFT", "USD", Decimal("0.01"))


class Idle(Strategy):
    """A strategy that never trades (the restored orders are all there is)."""


def intent(quantity: int = 5, limit: str | None = None) -> OrderIntent:
    return OrderIntent(
        strategy_id="sys",
        instrument="AAPL",
        side=Side.BUY,
        quantity=Decimal(quantity),
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        limit_price=None if limit is None else Decimal(limit),
        time_in_force=TimeInForce.GTC,
    )


def journaled(seq: int, ts: int, *, limit: str | None = None, accepted: bool = True) -> Order:
    """An order as the journal holds it: INITIALIZED, or SUBMITTED and ACCEPTED."""
    return journal_of(seq, ts, limit=limit, accepted=accepted)[0]


def journal_of(
    seq: int, ts: int, *, limit: str | None = None, accepted: bool = True
) -> tuple[Order, list[OrderEvent]]:
    """`journaled`, with the stamped events its journal holds."""
    coid = f"sys-{seq:08d}"
    order = Order.create(coid, intent(limit=limit), ts)
    events: list[OrderEvent] = []
    if accepted:
        for event in (
            OrderSubmitted(client_order_id=coid, ts=ts),
            OrderAccepted(client_order_id=coid, ts=ts, broker_order_id=f"PAPER-{seq:08d}"),
        ):
            order = order.apply(event)
            assert order.last_event is not None
            events.append(order.last_event)
    return order, events


async def synthetic_bars(settings: Settings) -> list[Bar]:
    source = SyntheticBarSource(
        [AAPL, MSFT], seed=settings.data.seed, start_ts=settings.data.start_ts, count=12
    )
    return [item.bar async for item in source.items() if isinstance(item, SourceBar)]


def paper_config() -> PaperConfig:
    return PaperConfig([AAPL, MSFT], timeframe="1m")


class TestPaperVenueRestore:
    def bars(self) -> list[Bar]:
        return [
            Bar("AAPL", "1m", (i + 1) * 60 * 10**9, "100", "101", "99", "100.5", "1000")
            for i in range(4)
        ]

    def test_a_journaled_intent_is_taken_with_the_next_broker_order_id(self) -> None:
        venue = PaperExchange(paper_config())
        accepted = journaled(1, 60 * 10**9)
        initialized = journaled(2, 60 * 10**9, accepted=False)
        venue.restore([accepted, initialized], [], {})
        venue.connect()
        taken = {o.client_order_id: o for o in venue.open_orders()}
        assert taken["sys-00000002"].status is OrderStatus.ACCEPTED
        assert taken["sys-00000002"].broker_order_id == "PAPER-00000002"
        assert venue.statistics().accepted == 2
        # a submit repeated after the restart is answered as before, nothing new
        submitted = journaled(1, 60 * 10**9, accepted=False).apply(
            OrderSubmitted(client_order_id="sys-00000001", ts=60 * 10**9)
        )
        (again,) = venue.submit(submitted)
        assert isinstance(again, OrderAccepted)
        assert again.broker_order_id == "PAPER-00000001"
        assert venue.statistics().submits == 2

    def test_a_restored_working_order_fills_on_the_next_new_bar_only(self) -> None:
        bars = self.bars()
        venue = PaperExchange(paper_config())
        venue.restore([journaled(1, bars[0].ts)], [], {("AAPL", "1m"): bars[1].ts})
        venue.connect()
        assert venue.on_bar(bars[1]) == ()  # traded before the crash
        (filled,) = venue.on_bar(bars[2])
        assert isinstance(filled, OrderFilled)
        assert filled.fill.execution_id == "sys-00000001-F1"
        assert filled.fill.price == Decimal(100)
        assert venue.open_orders() == ()

    def test_a_journaled_cancel_request_is_taken_at_its_time(self) -> None:
        bars = self.bars()
        asked = journaled(1, bars[0].ts, limit="90.00").apply(
            OrderCancelRequested(client_order_id="sys-00000001", ts=bars[1].ts)
        )
        venue = PaperExchange(paper_config())
        venue.restore([asked], [], {("AAPL", "1m"): bars[1].ts})
        venue.connect()
        assert venue.open_orders() == ()
        (copy,) = venue.lookup_orders(["sys-00000001"])
        assert (copy.status, copy.updated_ts) == (OrderStatus.CANCELED, bars[1].ts)
        assert venue.statistics().canceled == 1
        # the reconciliation of the restart then closes our order as the venue did
        result = reconcile([asked], BrokerView(orders=[copy]), ts=bars[1].ts)
        assert [(type(e), e.ts) for e in result.events] == [(OrderCanceled, bars[1].ts)]

    def test_denied_orders_never_reached_the_venue_and_rejected_ones_stay_rejected(
        self,
    ) -> None:
        initialized = journaled(1, 60 * 10**9, accepted=False)
        denied = initialized.apply(
            OrderDenied(client_order_id="sys-00000001", ts=60 * 10**9, reason="disconnected")
        )
        rejected = (
            journaled(2, 60 * 10**9, accepted=False)
            .apply(OrderSubmitted(client_order_id="sys-00000002", ts=60 * 10**9))
            .apply(OrderRejected(client_order_id="sys-00000002", ts=60 * 10**9, reason="no"))
        )
        venue = PaperExchange(paper_config())
        venue.restore([denied, rejected], [], {})
        venue.connect()
        assert venue.lookup_orders(["sys-00000001"]) == ()
        (copy,) = venue.lookup_orders(["sys-00000002"])
        assert (copy.status, copy.reason) == (OrderStatus.REJECTED, "no")
        stats = venue.statistics()
        assert (stats.submits, stats.rejected, stats.accepted) == (1, 1, 0)

    def test_restore_refuses_an_engine_that_has_traded(self) -> None:
        venue = PaperExchange(paper_config())
        venue.connect()
        venue.on_bar(self.bars()[0])
        with pytest.raises(DomainError, match="fresh engine"):
            venue.restore([], [], {})


class TestReconcileAfterRestart:
    """A killed replay's journal meets a venue that traded on: each order settles."""

    async def test_open_filled_while_down_and_unknown_orders_settle_at_the_restart(
        self, tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'crashed.db'}"
        settings = load_settings(
            write_config(
                tmp_path,
                data="[data]\nsource = 'synthetic'\nseed = 3\ncount = 12\n",
                store=url,
            ),
            env={},
        )
        bars = await synthetic_bars(settings)
        stored_bars = [b for b in bars if b.ts <= bars[7].ts]  # four steps of two series
        ts = stored_bars[-1].ts
        # far below the market: keeps working
        still_open, still_open_events = journal_of(1, ts, limit="1.00")
        # journaled, never reached the venue
        unknown, unknown_events = journal_of(2, ts, accepted=False)
        filled_while_down, filled_events = journal_of(3, ts)
        async with open_store(url) as store:
            async with store.transaction() as tx:
                tx.upsert_instruments([AAPL, MSFT])
                tx.write_bars(stored_bars)
                tx.start_run("crashed", config_hash(settings), 1)
                tx.write_orders([still_open, unknown, filled_while_down])
                tx.append_order_events([*still_open_events, *unknown_events, *filled_events])
            # the venue knows two of them, and traded the next bar while we were down
            broker = PaperBroker(paper_config())
            last = {("AAPL", "1m"): ts, ("MSFT", "1m"): ts}
            broker.restore([still_open, filled_while_down], [], last)
            broker.exchange.connect()
            (fill_event,) = broker.exchange.on_bar(bars[8])
            assert isinstance(fill_event, OrderFilled)
            broker.exchange.disconnect()
            async with open_trading_system(
                settings, store=store, broker=broker, strategy_factory=Idle
            ) as system:
                await system.wait_finished()
            stored_fills = await store.fills()
            stored_orders = {o.client_order_id: o for o in await store.orders()}
        book = system.orders
        assert system.feed.statistics().resumed == len(stored_bars)
        assert book.working["sys-00000001"].status is OrderStatus.ACCEPTED
        assert stored_orders["sys-00000001"].status is OrderStatus.ACCEPTED
        assert book.finished["sys-00000003"].status is OrderStatus.FILLED
        assert stored_fills == [fill_event.fill]  # applied once
        assert system.portfolio.position("AAPL").quantity == Decimal(5)
        rejected = stored_orders["sys-00000002"]
        assert (rejected.status, rejected.reason) == (OrderStatus.REJECTED, UNKNOWN_TO_BROKER)


class TestWhenAReplayContinues:
    async def resumed_after(self, tmp_path: Path, run: tuple[str, str] | None) -> int:
        """Store four steps of bars (and `run`: a run id and its config hash, never
        finished), replay, and return how many bars the feed counted as resumed."""
        url = f"sqlite:///{tmp_path / 'store.db'}"
        settings = load_settings(
            write_config(
                tmp_path, data="[data]\nsource = 'synthetic'\nseed = 3\ncount = 12\n", store=url
            ),
            env={},
        )
        bars = await synthetic_bars(settings)
        async with open_store(url) as store:
            async with store.transaction() as tx:
                tx.upsert_instruments([AAPL, MSFT])
                tx.write_bars(bars[:8])
                if run is not None:
                    tx.start_run(run[0], config_hash(settings) if run[1] == "same" else run[1], 1)
            async with open_trading_system(settings, store=store, strategy_factory=Idle) as system:
                await system.wait_finished()
        return system.feed.statistics().resumed

    async def test_after_a_killed_run_of_the_same_configuration(self, tmp_path: Path) -> None:
        assert await self.resumed_after(tmp_path, ("killed", "same")) == 8

    async def test_not_after_a_killed_run_of_another_configuration(self, tmp_path: Path) -> None:
        assert await self.resumed_after(tmp_path, ("killed", "another-config")) == 0

    async def test_not_when_no_run_is_recorded(self, tmp_path: Path) -> None:
        assert await self.resumed_after(tmp_path, None) == 0


class TestOneDecisionOneJournalWrite:
    async def test_every_intent_of_a_cascade_is_journaled_in_one_durable_write(
        self, make_settings, autojump_clock
    ):
        # Two legs from one on_bar, and a third intent from the on_fill of the same
        # cascade: a kill can fall before or after their journal write, never between
        # two of them, so a restart finds a cascade's orders all or none.
        journal_writes: list[tuple[Order, ...]] = []

        async def recorded(handle: Handle, message: Any) -> Any:
            if isinstance(message, PersistDurably):
                journal_writes.append(tuple(r for r in message.records if isinstance(r, Order)))
            return await handle(message)

        wrap = around_handle("persistence", recorded)

        settings = make_settings(data=synthetic(count=30), strategy=PAIRS, params="{}")
        store: Any = MemoryStore()  # keeps units in memory: no thread under autojump
        async with open_trading_system(settings, store=store, wrap_actor=wrap) as system:
            await system.wait_finished()
        placed = {**system.orders.finished, **system.orders.working}
        assert len(placed) > 60  # the strategy really traded
        write_of = {o.client_order_id: n for n, write in enumerate(journal_writes) for o in write}
        assert sorted(write_of) == sorted(placed)  # every order journaled, once
        by_time: dict[int, set[int]] = {}
        for order in placed.values():
            by_time.setdefault(order.created_ts, set()).add(write_of[order.client_order_id])
        assert all(len(writes) == 1 for writes in by_time.values()), by_time
        tags_together = {
            tuple(sorted(o.intent.tag for o in write)) for write in journal_writes if len(write) > 2
        }
        assert ("leg-a", "leg-b", "note") in tags_together  # on_bar's and on_fill's at once


# ----------------------------------------------------------------------------- between writes

REACTS = f"{Path(__file__).parent / 'strategies.py'}:ReactsToAcceptance"
REPLACES = f"{Path(__file__).parent / 'strategies.py'}:ReplacesItsOrder"
ON_CONFIRMATION = f"{Path(__file__).parent / 'strategies.py'}:ReplacesOnConfirmation"
AT_THE_OPEN = f"{Path(__file__).parent / 'strategies.py'}:BuysAtTheOpen"
BUSY = f"{Path(__file__).parent / 'strategies.py'}:Busy"
# Scripts for `Scripted`: per (instrument, n-th bar), one to three actions.
DECISIONS = st.dictionaries(
    st.tuples(st.sampled_from(["AAPL", "MSFT"]), st.integers(1, 20)),
    st.lists(
        st.tuples(st.sampled_from(["AAPL", "MSFT"]), st.sampled_from(SCRIPT_ACTIONS)),
        min_size=1,
        max_size=3,
    ),
    min_size=3,
    max_size=12,
)


class KilledAfterJournalWrites:
    """A `wrap_actor` whose persistence stores nothing after its `writes`-th durable
    journal write (it still answers, as if committed): the process was killed right
    after that commit, and the store stays a prefix of what the run accepted. With
    `writes` None nothing is dropped; `done` counts the durable writes either way."""

    def __init__(self, writes: int | None) -> None:
        self.writes = writes
        self.done = 0

    def __call__(self, path: str, factory: Callable[[], Actor]) -> Callable[[], Actor]:
        return around_handle("persistence", self._dying)(path, factory)

    async def _dying(self, handle: Handle, message: Any) -> Any:
        dead = self.writes is not None and self.done >= self.writes
        if dead and isinstance(message, Persist | PersistDurably):
            return None
        answer = await handle(message)
        self.done += isinstance(message, PersistDurably)
        return answer


class CommitsThenDies:
    """A store for a run to be killed: its first `commits` units of work reach `store`,
    later ones are dropped (None: all reach it); `done` counts those that did."""

    def __init__(self, store: Store, commits: int | None) -> None:
        self._store, self.commits, self.done = store, commits, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        if self.commits is not None and self.done >= self.commits:
            tx = Transaction()  # the process is dead: the unit never commits
            try:
                yield tx
            finally:
                tx.close()
            await trio.lowlevel.checkpoint()
            return
        async with self._store.transaction() as tx:
            yield tx
        self.done += 1


async def replay_killed_after_commits(
    folder: Path,
    make: Callable[[], Strategy],
    commits: int | None,
    counted: list[int],
    *,
    risk: str = RISK,
    calendar: str = "",
) -> tuple[list[Any], list[tuple[str, int]], TradingState]:
    """Replay 2 x 20 synthetic bars with the strategy `make` builds, persistence
    committing every 3 records; with `commits`, as a run killed after that many units of
    work and restarted. Return the stored orders (comparable) and bars and the final
    trading state; append the first run's commits to `counted`."""
    await trio.Path(folder).mkdir()
    url = f"sqlite:///{folder / 'store.db'}"
    config = write_config(
        folder,
        data=synthetic(count=20),
        store=url,
        strategy=BUSY,
        params="{}",
        extra="[persistence]\nbatch_size = 3\n" + calendar,
        risk=risk,
    )
    settings = load_settings(config, env={})
    async with open_store(url) as store:
        dying: Any = CommitsThenDies(store, commits)
        async with open_trading_system(settings, store=dying, strategy_factory=make) as last:
            await last.wait_finished()
        counted.append(dying.done)
        if commits is not None:
            await as_if_killed(store)
            async with open_trading_system(settings, store=store, strategy_factory=make) as last:
                await last.wait_finished()
        orders = [comparable(o) for o in await store.orders()]
        bars = [(b.instrument, b.ts) for b in await store.bars()]
        return orders, bars, last.risk.statistics().state


async def replay_orders(
    folder: Path,
    strategy: str,
    kill_after: int | None,
    *,
    risk: str = RISK,
    writes: KilledAfterJournalWrites | None = None,
    strategy_factory: Callable[[], Strategy] | None = None,
) -> list[Any]:
    """Replay 2 x 20 synthetic bars on an SQLite file with `strategy`; with
    `kill_after`, as a run killed after that many journal writes and then restarted on
    the same store. Return the stored orders, comparable. An uninterrupted run counts
    its journal writes in `writes`, if given. `strategy_factory`, if given, builds the
    strategy instead of the configured path."""
    writes = writes if writes is not None else KilledAfterJournalWrites(None)
    built: dict[str, Any] = (
        {} if strategy_factory is None else {"strategy_factory": strategy_factory}
    )
    await trio.Path(folder).mkdir()
    url = f"sqlite:///{folder / 'store.db'}"
    config = write_config(
        folder, data=synthetic(count=20), store=url, strategy=strategy, params="{}", risk=risk
    )
    settings = load_settings(config, env={})
    async with open_store(url) as store:
        if kill_after is None:
            async with open_trading_system(
                settings, store=store, wrap_actor=writes, **built
            ) as clean:
                await clean.wait_finished()
        else:
            wrap = KilledAfterJournalWrites(kill_after)
            async with open_trading_system(
                settings, store=store, wrap_actor=wrap, **built
            ) as first:
                await first.wait_finished()
            await as_if_killed(store)
            cut = [comparable(o) for o in await store.orders()]
            async with open_trading_system(settings, store=store, **built) as second:
                await second.wait_finished()
            assert second.feed.statistics().resumed > 0  # it did continue
            assert [comparable(o) for o in await store.orders()] != cut  # and changed it
        return [comparable(o) for o in await store.orders()]


class TestAKillBetweenTwoJournalWrites:
    """Decisions of one bar that take two journal writes: a kill after the first one
    leaves the bar stored, so the restart does not decide on it again -- it must still
    end as the uninterrupted run did."""

    @pytest.mark.parametrize("kill_after", [1, 2])
    async def test_an_order_placed_on_an_acknowledgement_is_placed_again(
        self, tmp_path: Path, kill_after: int
    ) -> None:
        # The reaction is decided when the entry is ACCEPTED: after a kill between the
        # entry's write and its own, the restart's reconciliation hands the strategy the
        # entry's SUBMITTED and ACCEPTED again, and the strategy decides it again.
        clean = await replay_orders(tmp_path / "clean", REACTS, None)
        killed = await replay_orders(tmp_path / "killed", REACTS, kill_after)
        assert [(o[1].tag, o[2]) for o in clean] == [
            ("entry", OrderStatus.FILLED),
            ("reaction", OrderStatus.FILLED),
        ]
        assert killed == clean

    async def test_every_kill_point_of_a_busy_strategy(self, tmp_path: Path) -> None:
        # Places and cancels from bars, from acknowledgements and from fills, mixed in
        # one decision: killed after each of its journal writes in turn, every restart
        # must end as the uninterrupted run.
        writes = KilledAfterJournalWrites(None)
        clean = await replay_orders(tmp_path / "clean", BUSY, None, writes=writes)
        tags = {o[1].tag for o in clean}
        assert tags == {"entry", "hedge", "bait", "stop"}
        assert {o[2] for o in clean} >= {OrderStatus.CANCELED, OrderStatus.FILLED}
        assert writes.done > 15
        for kill_after in range(1, writes.done):
            killed = await replay_orders(tmp_path / f"killed-{kill_after}", BUSY, kill_after)
            assert killed == clean, kill_after

    @settings(max_examples=40)
    @example(
        # on bar 6 one decision cancels the far order (reacting to bar 5's fill) and buys;
        # the buy's acknowledgement cancels the oldest open order. Killed after that
        # write, the restart must tell the cancel's confirmation before the buy's ack, as
        # the uninterrupted run did, or the reaction cancels the far order again and the
        # buy fills
        script={
            ("AAPL", 1): [("AAPL", "market")],
            ("AAPL", 2): [("AAPL", "market")],
            ("AAPL", 5): [("AAPL", "cancel_oldest"), ("AAPL", "market"), ("AAPL", "far")],
            ("AAPL", 6): [("AAPL", "market")],
            ("AAPL", 7): [("AAPL", "market")],
            ("AAPL", 8): [("AAPL", "market")],
            ("AAPL", 9): [("AAPL", "market")],
        },
        on_ack=["cancel_oldest"],
        cancel_on_fill=True,
        kill_at=0.4375,
    )
    @example(
        # the first of two orders decided together is accepted, and the reaction cancels
        # every open order: after a kill the restarted strategy must not already know the
        # second (journaled, never announced) and cancel it too
        script={("AAPL", 1): [("AAPL", "market"), ("AAPL", "market")]},
        on_ack=["cancel_all"],
        cancel_on_fill=False,
        kill_at=0.0,
    )
    @given(
        script=DECISIONS,
        on_ack=st.lists(st.sampled_from(SCRIPT_ACTIONS), max_size=2),
        cancel_on_fill=st.booleans(),
        kill_at=st.floats(0, 1, exclude_max=True),
    )
    async def test_any_decisions_survive_a_kill_after_any_journal_write(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        script: dict[tuple[str, int], list[tuple[str, str]]],
        on_ack: list[str],
        cancel_on_fill: bool,
        kill_at: float,
    ) -> None:
        # Random places and cancels on bars, on acknowledgements and on fills; killed
        # after one of the run's journal writes (`kill_at` of the way through them).
        def make() -> Strategy:
            return Scripted(script, on_ack, cancel_on_fill)

        folder = tmp_path_factory.mktemp("decisions")
        writes = KilledAfterJournalWrites(None)
        clean = await replay_orders(
            folder / "clean", BUSY, None, writes=writes, strategy_factory=make
        )
        if writes.done < 2:
            return  # nothing to cut between
        kill_after = 1 + int(kill_at * (writes.done - 1))
        killed = await replay_orders(folder / "killed", BUSY, kill_after, strategy_factory=make)
        assert killed == clean, (kill_after, writes.done)

    @settings(max_examples=20)
    @example(
        # an order on the session's open and one on the first bar: one journal write
        script={("AAPL", 1): [("AAPL", "market")], ("MSFT", 1): [("AAPL", "market")]},
        on_session=["market"],
        kill_at=0.0,
    )
    @given(
        script=DECISIONS,
        on_session=st.lists(st.sampled_from(SCRIPT_ACTIONS), min_size=1, max_size=2),
        kill_at=st.floats(0, 1, exclude_max=True),
    )
    async def test_decisions_on_sessions_survive_a_kill_after_any_commit(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        script: dict[tuple[str, int], list[tuple[str, str]]],
        on_session: list[str],
        kill_at: float,
    ) -> None:
        # A calendar with a break (the 8th to 11th bars are outside a session), and a
        # strategy that also acts on every open and close. A session event goes the bars'
        # way, so what the strategy decides on it and on its bar is journaled at once.
        calendar = (
            '[calendar]\ntimezone = "UTC"\n'
            'sessions = { mon-fri = ["00:00-00:07", "00:11-00:30"] }\n'
        )

        def make() -> Strategy:
            return Scripted(script, [], False, tuple(on_session))

        folder = tmp_path_factory.mktemp("sessions")
        counted: list[int] = []
        clean = await replay_killed_after_commits(
            folder / "clean", make, None, counted, calendar=calendar
        )
        commits = 2 + int(kill_at * (counted[0] - 3))
        killed = await replay_killed_after_commits(
            folder / "killed", make, commits, counted, calendar=calendar
        )
        assert killed == clean, (commits, counted[0])

    @settings(max_examples=30)
    @given(
        script=DECISIONS,
        reactions=st.tuples(st.lists(st.sampled_from(SCRIPT_ACTIONS), max_size=2), st.booleans()),
        kill_at=st.floats(0, 1, exclude_max=True),
        limits=st.tuples(st.sampled_from(["0.01", "0.2", "1", "1000000"]), st.booleans()),
    )
    async def test_any_decisions_survive_a_kill_after_any_commit(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        script: dict[tuple[str, int], list[tuple[str, str]]],
        reactions: tuple[list[str], bool],
        kill_at: float,
        limits: tuple[str, bool],
    ) -> None:
        # Commits every 3 records: a kill falls after a unit of work ended by size (at a
        # cascade's boundary) as often as after a journal write. Small loss limits trip
        # the kill switch (with or without flattening) in most runs. The bars, orders and
        # final trading state must match. (Not the denials: one decided after a journal
        # write in its cascade can be lost, see "Cold start" in docs/trading-system.md.)
        on_ack, cancel_on_fill = reactions
        loss_limit, flatten = limits
        risk = RISK.replace("daily_loss_limit = 1000000", f"daily_loss_limit = {loss_limit}")
        risk += "flatten_on_halt = true\n" if flatten else ""

        def make() -> Strategy:
            return Scripted(script, on_ack, cancel_on_fill)

        folder = tmp_path_factory.mktemp("commits")
        counted: list[int] = []
        clean = await replay_killed_after_commits(folder / "clean", make, None, counted, risk=risk)
        # after the run's own record, before its end
        commits = 2 + int(kill_at * (counted[0] - 3))
        killed = await replay_killed_after_commits(
            folder / "killed", make, commits, counted, risk=risk
        )
        assert killed == clean, (commits, counted[0])

    async def test_a_restart_inside_the_session_does_not_open_it_again(
        self, tmp_path: Path
    ) -> None:
        # The session opened with the first bar, and the order decided on that event was
        # journaled with it. The restart continues inside the session: no second OPEN,
        # so no second order.
        clean = await replay_orders(tmp_path / "clean", AT_THE_OPEN, None)
        killed = await replay_orders(tmp_path / "killed", AT_THE_OPEN, 1)
        assert [(o[1].tag, o[2]) for o in clean] == [("open", OrderStatus.FILLED)]
        assert killed == clean

    async def test_the_order_rate_window_survives_the_kill(self, tmp_path: Path) -> None:
        # One order a second: the reaction shares its second with the entry and is
        # denied. After a kill between the two writes the restart decides it again --
        # and must count the entry, stored before the kill, in the window.
        one_a_second = RISK.replace("max_orders_per_second = 1000", "max_orders_per_second = 1")
        clean = await replay_orders(tmp_path / "clean", REACTS, None, risk=one_a_second)
        killed = await replay_orders(tmp_path / "killed", REACTS, 1, risk=one_a_second)
        assert [(o[1].tag, o[2]) for o in clean] == [("entry", OrderStatus.FILLED)]
        assert killed == clean

    @pytest.mark.parametrize("kill_after", [1, 2, 3])
    async def test_an_order_placed_on_a_cancel_confirmation_is_placed_again(
        self, tmp_path: Path, kill_after: int
    ) -> None:
        # Writes: the resting order, the cancel request, the replacement. After a kill
        # behind the request, the rebuilt venue takes the cancel and the reconciliation's
        # CANCELED makes the strategy decide the replacement again.
        clean = await replay_orders(tmp_path / "clean", ON_CONFIRMATION, None)
        killed = await replay_orders(tmp_path / "killed", ON_CONFIRMATION, kill_after)
        assert [(o[1].tag, o[2]) for o in clean] == [
            ("resting", OrderStatus.CANCELED),
            ("replacement", OrderStatus.FILLED),
        ]
        assert killed == clean

    @pytest.mark.parametrize("kill_after", [1, 2])
    async def test_a_cancel_decided_after_a_place_is_not_lost(
        self, tmp_path: Path, kill_after: int
    ) -> None:
        # Place, then cancel, in one callback: the cancel request is journaled with the
        # place (one write), so a kill after it finds the request; the rebuilt venue
        # takes the cancel and the restart closes the resting order as the uninterrupted
        # run did. (Before cancels were journaled, the resting order survived the kill
        # and stayed working for ever.)
        clean = await replay_orders(tmp_path / "clean", REPLACES, None)
        killed = await replay_orders(tmp_path / "killed", REPLACES, kill_after)
        assert [(o[1].tag, o[2]) for o in clean] == [
            ("resting", OrderStatus.CANCELED),
            ("entry", OrderStatus.FILLED),
        ]
        assert killed == clean


LOSER = f"{Path(__file__).parent / 'strategies.py'}:Loser"
SPILL_AT = "[persistence]\nspill_path = 'journals/outage.jsonl'\n"


def spilled_fill_of(seq: int, ts: int) -> list[OrderUpdated]:
    """What an outage spilled of a crashed paper run: the updates of an entry order of
    100 AAPL, submitted, accepted and filled."""
    coid = f"sys-{seq:08d}"
    intent = OrderIntent(
        "sys", "AAPL", Side.BUY, Decimal(100), OrderType.MARKET, None, TimeInForce.DAY, "entry"
    )
    order = Order.create(coid, intent, ts)
    fill = Fill(
        coid + "-F1", coid, "AAPL", Side.BUY, Decimal(100), Decimal(100), Decimal(0), "USD", ts
    )
    updates = []
    for event in (
        OrderSubmitted(client_order_id=coid, ts=ts),
        OrderAccepted(client_order_id=coid, ts=ts, broker_order_id=f"PAPER-{seq:08d}"),
        OrderFilled(client_order_id=coid, ts=ts, fill=fill),
    ):
        order = order.apply(event)
        assert order.last_event is not None
        updates.append(OrderUpdated(order, order.last_event, ts))
    return updates


def journal_folder_made(settings: Settings) -> Path:
    """The configured spill journal, its folder made (as the first run made it)."""
    path = settings.persistence.spill_path
    assert path is not None
    path.parent.mkdir(parents=True)
    return path


def paper_run_with_a_journal(tmp_path: Path, url: str) -> tuple[Settings, Path]:
    """A short paper run of the losing strategy on `url`, and its spill journal's path
    (the folder made, the file not yet written)."""
    settings = settings_for(
        tmp_path,
        mode="paper",
        extra=SPILL_AT,
        strategy=LOSER,
        params="{}",
        store=url,
        data=synthetic(count=5, interval=0.002),
    )
    return settings, journal_folder_made(settings)


class UnitsRefused:
    """A store that can be read but takes no unit of work (the database went away)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        yield Transaction()
        msg = "connection refused"
        raise StoreUnavailable(msg)


class TestASpillJournalLeftByACrash:
    """A paper run spilled records during an outage and was killed before they reached
    the store: the next start replays them before the cold start reads the store."""

    async def test_the_cold_start_rebuilds_state_from_what_the_journal_holds(
        self, tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'store.db'}"
        settings, journal = paper_run_with_a_journal(tmp_path, url)
        spilled = spilled_fill_of(1, settings.data.start_ts)
        await SpillJournal(journal).append(spilled)
        async with open_store(url) as store:
            with trio.fail_after(30):
                async with open_trading_system(settings, store=store) as system:
                    await system.wait_finished()
            orders = await store.orders()
            fills = await store.fills()
            positions = await store.positions()
        assert system.result.outcome == "completed"
        assert not journal.exists()
        replayed = system.persistence.statistics().spill
        assert replayed is not None
        assert (replayed.recovered, replayed.replayed) == (3, 3)
        # The crashed run's order is stored once, and its id is never used again ...
        assert orders[0] == spilled[-1].order
        assert [o.client_order_id for o in orders] == [
            f"sys-{n:08d}" for n in range(1, len(orders) + 1)
        ]
        # ... and its fill is the position the strategy restarted with: no second entry.
        assert [o.intent.tag for o in orders[1:]] == ["bait"] * (len(orders) - 1)
        assert fills == [spilled[-1].fill]
        assert positions["AAPL"].quantity == Decimal(100)

    async def test_a_journal_the_store_cannot_take_fails_the_start_and_is_kept(
        self, tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'store.db'}"
        settings, journal = paper_run_with_a_journal(tmp_path, url)
        await SpillJournal(journal).append(spilled_fill_of(1, settings.data.start_ts))
        left = journal.read_bytes()
        async with open_store(url) as store:
            refusing: Any = UnitsRefused(store)
            with pytest.raises(StoreUnavailable, match="spill journal") as raised:
                async with open_trading_system(settings, store=refusing):
                    pytest.fail("the run started from a store without the journal's records")
            assert await store.runs() == []  # not even recorded as started
            assert await store.orders() == []
        assert str(journal) in str(raised.value)
        assert "connection refused" in str(raised.value)
        assert journal.read_bytes() == left
