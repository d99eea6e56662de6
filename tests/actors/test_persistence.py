"""The persistence actor over a real SQLite store: batching, durability, retries, digest."""

from __future__ import annotations

from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
from hypothesis import given, settings
from structlog.testing import capture_logs
from tradewind.actors import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderSubmitted,
    OrderType,
    Side,
    TimeInForce,
    TradingState,
)
from tradewind.actors._eventlog import EventLog, canonical
from tradewind.actors._messages import (
    Flush,
    IntentDenied,
    NotDurable,
    OrderUpdated,
    Persist,
    PersistDurably,
    TradingStateChanged,
)
from tradewind.actors._persistence import (
    PersistenceActor,
    PersistenceKeeper,
    denial_record,
)
from tradewind.actors._risk import DenyReason
from tradewind.runtime import ActorSystem, ChildSpec, MailboxSpec, SupervisorSpec, open_actor_system
from tradewind.runtime._records import DeadLetter as RuntimeDeadLetter
from tradewind.storage import RunRecord, Store, StoreUnavailable, open_store
from tradewind.storage._uow import Transaction

from tests.strategies import bars as bar_values

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
T0 = 1_767_571_200 * 10**9
MINUTE = 60 * 10**9


def bar(n: int) -> Bar:
    price = Decimal(100) + Decimal(n) / 100
    return Bar("AAPL", "1m", T0 + n * MINUTE, price, price, price, price, n)


def bars(count: int, start: int = 0) -> tuple[Bar, ...]:
    return tuple(bar(n) for n in range(start, start + count))


@attrs.define
class FlakyStore:
    """A store whose next `failures` units of work fail with StoreUnavailable; `down`
    makes every unit fail until cleared. `times` notes when each unit began (trio time)."""

    store: Store
    failures: int = 0
    down: bool = False
    attempts: int = 0
    times: list[float] = attrs.field(factory=list)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        self.attempts += 1
        self.times.append(trio.current_time())
        if self.down or self.failures > 0:
            self.failures = max(0, self.failures - 1)
            yield Transaction()
            raise StoreUnavailable("the database went away")
        async with self.store.transaction() as tx:
            yield tx


@asynccontextmanager
async def persistence(
    store: object,
    keeper: PersistenceKeeper | None = None,
    capacity: int = 64,
    **options: object,
) -> AsyncIterator[tuple[ActorSystem, PersistenceKeeper]]:
    keeper = keeper if keeper is not None else PersistenceKeeper()
    spec = SupervisorSpec(
        "test",
        (
            ChildSpec(
                "persistence",
                lambda: PersistenceActor(keeper, store, **options),  # type: ignore[arg-type]
                mailbox=MailboxSpec(capacity),
            ),
        ),
    )
    async with open_actor_system(spec, asyncio_loop=False) as system:
        yield system, keeper


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("sqlite://:memory:") as opened:
        async with opened.transaction() as tx:
            tx.upsert_instruments([AAPL])
        yield opened


def order_updates() -> list[OrderUpdated]:
    intent = OrderIntent(
        "sma", "AAPL", Side.BUY, Decimal(10), OrderType.MARKET, None, TimeInForce.DAY
    )
    order = Order.create("sma-00000001", intent, T0)
    fill = Fill(
        "x-1",
        "sma-00000001",
        "AAPL",
        Side.BUY,
        Decimal(10),
        Decimal("100.01"),
        Decimal("0.50"),
        "USD",
        T0 + 2,
    )
    updates = []
    for event in (
        OrderSubmitted(client_order_id="sma-00000001", ts=T0),
        OrderAccepted(client_order_id="sma-00000001", ts=T0 + 1, broker_order_id="b-1"),
        OrderFilled(client_order_id="sma-00000001", ts=T0 + 2, fill=fill),
    ):
        order = order.apply(event)
        assert order.last_event is not None
        updates.append(OrderUpdated(order, order.last_event, event.ts))
    return updates


def denied(ts: int = T0) -> IntentDenied:
    intent = OrderIntent(
        "sma", "AAPL", Side.SELL, Decimal(5), OrderType.LIMIT, Decimal("99.00"), TimeInForce.DAY
    )
    return IntentDenied(intent, DenyReason.MAX_POSITION, "position 5 > 0", ts)


class TestBatching:
    async def test_a_batch_is_flushed_when_it_reaches_batch_size(self, store: Store) -> None:
        async with persistence(store, batch_size=3, flush_interval=3_600) as (system, keeper):
            ref = system.ref("persistence")
            await ref.send(Persist(bars(2)))
            await system.quiesce()
            assert await store.bars() == []
            await ref.send(Persist(bars(1, start=2)))
            await system.quiesce()
            assert await store.bars() == list(bars(3))
            assert keeper.statistics().commits == 1

    async def test_a_batch_is_flushed_after_flush_interval(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with persistence(store, batch_size=1_000, flush_interval=2.0) as (system, keeper):
            await system.ref("persistence").send(Persist(bars(5)))
            await trio.sleep(1.5)
            await system.quiesce()
            assert keeper.statistics().committed == 0
            await trio.sleep(1.0)
            await system.quiesce()
            assert keeper.statistics().committed == 5
            assert await store.bars() == list(bars(5))

    async def test_on_stop_flushes_everything(self, store: Store) -> None:
        async with persistence(store, batch_size=1_000, flush_interval=3_600) as (system, keeper):
            await system.ref("persistence").send(Persist(bars(7)))
            await system.quiesce()
            assert keeper.statistics().pending == 7
        assert await store.bars() == list(bars(7))
        assert keeper.statistics().pending == 0


class TestCascadeCut:
    """A replay's size- and time-triggered commits end before the newest bar, whose
    cascade may still be running; the durable, on-demand and final commits take it all."""

    async def test_a_size_triggered_commit_stops_before_the_newest_bar(self, store: Store) -> None:
        update = order_updates()[0]
        async with persistence(store, batch_size=3, flush_interval=3_600, cascade_cut=True) as (
            system,
            keeper,
        ):
            ref = system.ref("persistence")
            await ref.send(Persist((bar(0), update, bar(1))))
            await system.quiesce()
            # bar 0 and its cascade are committed; bar 1 (cascade running) is not
            assert await store.bars() == [bar(0)]
            assert [o.client_order_id for o in await store.orders()] == ["sma-00000001"]
            assert keeper.statistics().pending == 1
            await ref.send(Persist((denied(T0 + MINUTE), bar(2))))
            await system.quiesce()
            assert await store.bars() == [bar(0), bar(1)]
            assert len(await store.denials()) == 1
            assert keeper.statistics().pending == 1
        assert await store.bars() == list(bars(3))  # the stop commits the rest

    async def test_without_the_cut_the_whole_batch_is_committed(self, store: Store) -> None:
        async with persistence(store, batch_size=3, flush_interval=3_600) as (system, keeper):
            await system.ref("persistence").send(Persist((bar(0), order_updates()[0], bar(1))))
            await system.quiesce()
            assert await store.bars() == [bar(0), bar(1)]
            assert keeper.statistics().pending == 0

    async def test_a_durable_write_commits_the_running_cascade_too(self, store: Store) -> None:
        update = order_updates()[0]
        async with persistence(store, batch_size=1_000, flush_interval=3_600, cascade_cut=True) as (
            system,
            keeper,
        ):
            ref = system.ref("persistence")
            await ref.send(Persist((bar(0), bar(1))))
            assert await ref.ask(PersistDurably((update,))) == 3
            assert await store.bars() == [bar(0), bar(1)]
            assert keeper.statistics().pending == 0

    async def test_a_time_triggered_commit_waits_for_the_next_bar_when_only_a_cascade_is_pending(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with persistence(store, batch_size=1_000, flush_interval=2.0, cascade_cut=True) as (
            system,
            keeper,
        ):
            ref = system.ref("persistence")
            await ref.send(Persist((bar(0), order_updates()[0])))
            await trio.sleep(5.0)
            await system.quiesce()
            assert keeper.statistics().committed == 0  # all of it is bar 0's cascade
            await ref.send(Persist((bar(1),)))
            await trio.sleep(2.5)
            await system.quiesce()
            assert keeper.statistics().committed == 2
            assert await store.bars() == [bar(0)]
            assert keeper.statistics().commits == 1

    async def test_a_failed_durable_write_of_a_running_cascade_does_not_tick_in_a_loop(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        # A durable write during an outage leaves the running cascade pending with a retry
        # due. The cut cannot commit any of it, so the retry must not be re-armed every
        # tick: the ticker falls back to the flush interval until the next bar.
        flaky = FlakyStore(store, down=True)
        async with persistence(
            flaky,
            batch_size=1_000,
            flush_interval=1.0,
            cascade_cut=True,
            retry_initial=0.5,
            retry_max=2.0,
            durable_timeout=0.0,
        ) as (system, keeper):
            ref = system.ref("persistence")
            await ref.send(Persist((bar(0),)))
            answer = await ref.ask(PersistDurably((order_updates()[0],)), timeout=60)
            assert isinstance(answer, NotDurable)
            flaky.down = False
            before = system.statistics().actors["persistence"].processed
            await trio.sleep(10.0)
            await system.quiesce()
            ticks = system.statistics().actors["persistence"].processed - before
            assert ticks <= 25  # one or two a second, not one a millisecond
            assert keeper.statistics().pending == 2  # still all of bar 0's cascade
            await ref.send(Persist((bar(1),)))
            await trio.sleep(1.5)
            await system.quiesce()
            assert keeper.statistics().pending == 1  # bar 0 and its cascade committed
            assert keeper.statistics().store_available
        assert await store.bars() == list(bars(2))


class TestDurability:
    async def test_persist_durably_answers_only_after_commit(self, store: Store) -> None:
        async with persistence(store, batch_size=1_000, flush_interval=3_600) as (system, _):
            ref = system.ref("persistence")
            await ref.send(Persist(bars(2)))
            committed = await ref.ask(PersistDurably((bar(2),)))
            stored = await store.bars()  # read in the reply path: already there
        assert committed == 3
        assert stored == list(bars(3))

    async def test_flush_answers_after_everything_queued_is_committed(self, store: Store) -> None:
        async with persistence(store, batch_size=1_000, flush_interval=3_600) as (system, _):
            ref = system.ref("persistence")
            ref.send_nowait(Persist(bars(4)))
            assert await ref.ask(Flush()) == 4
            assert await store.bars() == list(bars(4))


class TestStoreUnavailable:
    async def test_failed_flushes_are_retried_without_loss(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        flaky = FlakyStore(store, failures=3)
        async with persistence(flaky, batch_size=2, flush_interval=1.0) as (system, keeper):
            ref = system.ref("persistence")
            await ref.send(Persist(bars(2)))
            await ref.send(Persist(bars(2, start=2)))
            assert await ref.ask(Flush()) == 4
        assert await store.bars() == list(bars(4))
        assert keeper.statistics().store_failures == 3
        assert flaky.attempts == 4

    async def test_a_full_buffer_backs_up_to_producers_and_loses_nothing(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        flaky = FlakyStore(store, down=True)
        done = trio.Event()
        options = {"batch_size": 2, "flush_interval": 1.0, "max_pending": 4}
        async with persistence(flaky, capacity=2, **options) as (system, keeper):  # type: ignore[arg-type]
            ref = system.ref("persistence")

            async def produce() -> None:
                for n in range(20):
                    await ref.send(Persist((bar(n),)))
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                await trio.sleep(60)
                assert not done.is_set()
                assert keeper.statistics().pending <= 5
                assert ref.statistics().senders_waiting == 1
                flaky.down = False
                await done.wait()
            await ref.ask(Flush())
        assert await store.bars() == list(bars(20))
        assert keeper.statistics().accepted == 20

    async def test_persist_durably_waits_through_an_outage(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        flaky = FlakyStore(store, failures=5)
        options = {"retry_initial": 0.5, "retry_max": 2.0, "durable_timeout": 60.0}
        async with persistence(flaky, **options) as (system, keeper):  # type: ignore[arg-type]
            start = trio.current_time()
            await system.ref("persistence").ask(PersistDurably(bars(1)), timeout=60)
        assert await store.bars() == list(bars(1))
        # the commit itself runs in SQLite's worker thread, during which an autojumping
        # clock may move on: the schedule is read from when each attempt began
        waited = [t - start for t in flaky.times]
        assert waited == pytest.approx([0, 0.5, 1.5, 3.5, 5.5, 7.5])
        assert keeper.statistics().store_failures == 5

    async def test_persist_durably_answers_not_durable_once_its_wait_is_spent(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        flaky = FlakyStore(store, down=True)
        options = {"retry_initial": 0.5, "retry_max": 2.0, "durable_timeout": 1.0}
        async with persistence(flaky, **options) as (system, keeper):  # type: ignore[arg-type]
            ref = system.ref("persistence")
            start = trio.current_time()
            answer = await ref.ask(PersistDurably(bars(1)), timeout=60)
            waited = trio.current_time() - start
            stats = keeper.statistics()
            flaky.down = False
            assert await ref.ask(Flush()) == 1
        assert answer == NotDurable(reason="the database went away", pending=1)
        assert waited == pytest.approx(0.5)  # tried, waited 0.5 s, tried; the next is too late
        assert (stats.not_durable, stats.store_available, stats.pending) == (1, False, 1)
        assert await store.bars() == list(bars(1))  # kept, and written once the store is back

    async def test_without_a_journal_an_outage_at_stop_is_retried_until_the_shutdown_timeout(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No journal to spill to: the stop retries the store for as long as it may, and
        says what it leaves unflushed."""
        flaky = FlakyStore(store)
        with capture_logs() as logs:
            async with persistence(flaky, batch_size=1_000, flush_interval=3_600) as (
                system,
                keeper,
            ):
                await system.ref("persistence").send(Persist(bars(3)))
                await system.quiesce()
                flaky.down = True
                stopping = trio.current_time()
        assert flaky.attempts > 2  # retried with backoff, not given up on the first failure
        assert flaky.times[-1] - stopping <= 5.0  # the child's shutdown timeout
        assert keeper.statistics().pending == 3
        unflushed = [e for e in logs if e["event"] == "persistence_unflushed_at_stop"]
        assert [(e["records"], e["spilled"]) for e in unflushed] == [(3, 0)]


class TestSettings:
    @pytest.mark.parametrize(
        ("options", "problem"),
        [
            ({"batch_size": 0}, "batch_size: must be >= 1, got 0"),
            ({"flush_interval": 0.0}, "flush_interval: must be > 0, got 0.0"),
            ({"spill": True}, "spill: needs a spill_path"),
            ({"durable_timeout": -1.0}, "durable_timeout: must be >= 0, got -1.0"),
        ],
    )
    def test_a_bad_setting_is_refused_with_its_name(
        self, options: dict[str, object], problem: str
    ) -> None:
        with pytest.raises(ValueError, match=problem):
            PersistenceActor(PersistenceKeeper(), object(), **options)  # type: ignore[arg-type]


class TestMapping:
    async def test_order_updates_store_order_journal_and_fill(self, store: Store) -> None:
        updates = order_updates()
        async with persistence(store) as (system, _):
            await system.ref("persistence").ask(PersistDurably(tuple(updates)))
        orders = await store.orders()
        assert orders == [updates[-1].order]
        assert await store.order_events("sma-00000001") == [u.event for u in updates]
        fill = updates[-1].fill
        assert fill is not None
        assert await store.fills() == [fill]

    async def test_a_resumed_run_numbers_identical_denials_on(self, store: Store) -> None:
        # The crashed run stored the first of two identical denials; the restarted run
        # makes the second, which must get the next index, not the stored one's key.
        async with persistence(store) as (system, _):
            await system.ref("persistence").ask(PersistDurably((denied(),)))
        keeper = PersistenceKeeper()
        keeper.resume_denials(await store.denials())
        async with persistence(store, keeper) as (system, _):
            await system.ref("persistence").ask(PersistDurably((denied(),)))
        assert await store.denials() == [denial_record(denied(), 0), denial_record(denied(), 1)]

    async def test_denial_numbering_is_bounded_over_a_long_run(self, store: Store) -> None:
        # A strategy refused on every bar makes a distinct denial per bar: numbering the
        # identical ones apart must not keep every digest of the run for ever.
        keeper = PersistenceKeeper()
        count = 12_000  # above the bound kept, `PersistenceKeeper.denial_capacity` (10,000)
        async with persistence(store, keeper, flush_interval=3_600) as (system, _):
            ref = system.ref("persistence")
            for start in range(0, count, 500):
                n = range(start, min(start + 500, count))
                await ref.send(Persist(tuple(denied(T0 + i * MINUTE) for i in n)))
            last = denied(T0 + (count - 1) * MINUTE)
            await ref.ask(PersistDurably((last,)))
        assert len(keeper.denial_ids) <= 10_000
        stored = await store.denials()
        assert len(stored) == count + 1
        assert stored[-2:] == [denial_record(last, 0), denial_record(last, 1)]

    async def test_denials_dead_letters_and_runs_are_stored(self, store: Store) -> None:
        letter = RuntimeDeadLetter(
            path="trading/strategy",
            message=bar(1),
            reason="poison",
            attempts=3,
            error=ValueError("boom"),
            time=1.5,
        )
        run = RunRecord("run-1", "cfg", T0)
        finished = RunRecord("run-1", "cfg", T0, T0 + 5, "completed")
        records = (run, denied(), denied(), letter, letter, finished)
        async with persistence(store) as (system, _):
            await system.ref("persistence").ask(PersistDurably(records))
        stored_denials = await store.denials()
        assert stored_denials == [denial_record(denied(), 0), denial_record(denied(), 1)]
        assert stored_denials[0].reason == "MAX_POSITION: position 5 > 0"
        letters = await store.dead_letters()
        assert [(d.actor, d.ts, d.seq, d.message_type, d.attempts) for d in letters] == [
            ("trading/strategy", 1_500_000_000, 0, "Bar", 3),
            ("trading/strategy", 1_500_000_000, 1, "Bar", 3),
        ]
        assert letters[0].error == "poison: ValueError('boom')"
        assert await store.run("run-1") == finished

    async def test_records_without_a_table_enter_only_the_event_log(self, store: Store) -> None:
        change = TradingStateChanged(TradingState.HALTED, "daily loss", T0)
        async with persistence(store) as (system, keeper):
            await system.ref("persistence").ask(PersistDurably((change, object())))
        stats = keeper.statistics()
        assert (stats.accepted, stats.committed, stats.unstorable) == (2, 2, 1)


class TestEventLog:
    async def test_digest_is_the_same_for_the_same_records(self, store: Store) -> None:
        records = (*bars(3), *order_updates(), denied())
        digests = []
        for _ in range(2):
            async with (
                open_store("sqlite://:memory:") as fresh,
                persistence(fresh) as (system, keeper),
            ):
                async with fresh.transaction() as tx:
                    tx.upsert_instruments([AAPL])
                await system.ref("persistence").ask(PersistDurably(records))
                digests.append(keeper.digest)
        expected = EventLog()
        for record in records:
            expected.add(record)
        assert digests == [expected.digest(), expected.digest()]

    def test_digest_changes_with_order_and_content(self) -> None:
        one, two = EventLog(), EventLog()
        for record in (bar(1), bar(2)):
            one.add(record)
        for record in (bar(2), bar(1)):
            two.add(record)
        assert one.digest() != two.digest()
        assert one.count == two.count == 2

    def test_canonical_lines_keep_exact_decimals(self) -> None:
        line = canonical(Bar("AAPL", "1m", 5, "1.10", "1.10", "1.10", "1.10", "0"))
        assert line == (
            'Bar(instrument="AAPL",timeframe="1m",ts=5,open=1.10,high=1.10,'
            "low=1.10,close=1.10,volume=0)"
        )
        assert canonical({"b": 1, "a": None}) == '{"a":null,"b":1}'
        assert canonical(frozenset({"y", "x"})) == '{"x","y"}'
        assert canonical([True, False]) == "[true,false]"
        assert canonical(Side.BUY) == "Side.BUY"
        assert canonical(1.5) == "float<1.5>"

    async def test_batch_and_digest_survive_a_crash_while_flushing(self, store: Store) -> None:
        class Boom(Exception):
            pass

        @attrs.define
        class CrashingStore:
            store: Store
            crashes: int = 1

            @asynccontextmanager
            async def transaction(self) -> AsyncIterator[Transaction]:
                if self.crashes:
                    self.crashes -= 1
                    raise Boom
                async with self.store.transaction() as tx:
                    yield tx

        async with persistence(CrashingStore(store), batch_size=2) as (system, keeper):
            ref = system.ref("persistence")
            await ref.send(Persist(bars(2)))  # the flush crashes; the batch stays
            await system.quiesce()
            assert ref.statistics().crashes == 1
            await ref.ask(Flush())
        assert await store.bars() == list(bars(2))
        assert keeper.statistics().accepted == 2  # the redelivered message counted once


class TestCanonicalBars:
    @settings(max_examples=100)
    @given(bar=bar_values())
    def test_the_bar_fast_path_equals_the_generic_form(self, bar: Bar) -> None:
        fields = ",".join(f"{f.name}={canonical(getattr(bar, f.name))}" for f in attrs.fields(Bar))
        assert canonical(bar) == f"Bar({fields})"
        assert canonical((bar,)) == f"[Bar({fields})]"
