"""The storage contract, run on both backends (SQLite and PostgreSQL) by the `store` fixture."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tradewind.actors import Bar, OrderCanceled, OrderCancelRequested, Side
from tradewind.storage import (
    ConflictingWrite,
    DeadLetter,
    Denial,
    RunNotFound,
    RunRecord,
    SchemaOutdated,
    Store,
    StoreInUse,
    Transaction,
    UnstorableValue,
    mask_url,
    migrate_store,
    open_store,
    parse_store_url,
)
from tradewind.storage._store import _aio_loop, acquire_run_lock

from tests.runlock import kill, start_holder
from tests.storage.samples import AAPL, MSFT, bar, fill, lifecycle, new_order

if TYPE_CHECKING:
    from collections.abc import Callable


async def commit(store: Store, *writes: Callable[[Transaction], object]) -> None:
    """Run one unit of work applying each ``write(tx)`` in turn."""
    async with store.transaction() as tx:
        for write in writes:
            write(tx)


class TestSchema:
    async def test_a_fresh_database_is_migrated_on_open(self, store):
        counts = await store.counts()
        assert attrs.astuple(counts) == (0,) * 8

    async def test_reopening_keeps_the_data_and_applies_nothing(self, store, store_url):
        async with store.transaction() as tx:
            tx.write_bars([bar(1)])
        async with open_store(store_url, migrate=False) as again:
            assert (await again.counts()).bars == 1

    async def test_an_unmigrated_database_is_refused_without_migrate(self, store_url):
        with pytest.raises(SchemaOutdated, match="0001_initial") as caught:
            async with open_store(store_url, migrate=False):
                pass
        assert caught.value.missing == ("0001_initial", "0002_run_summary", "0003_paper_venue")


class TestUnitOfWork:
    async def test_writes_are_visible_after_the_block_exits(self, store):
        async with store.transaction() as tx:
            tx.upsert_instruments([AAPL])
            tx.write_bars([bar(1), bar(2)])
            tx.write_fills([fill("x1")])
        counts = await store.counts()
        assert (counts.instruments, counts.bars, counts.fills) == (1, 2, 1)

    async def test_an_exception_in_the_block_sends_nothing(self, store):
        class Boom(Exception):
            pass

        def explode(_tx):
            raise Boom

        with pytest.raises(Boom):
            await commit(store, lambda tx: tx.write_bars([bar(1)]), explode)
        assert (await store.counts()).bars == 0

    async def test_a_failing_write_rolls_back_the_bars_written_before_it(self, store):
        async with store.transaction() as tx:
            tx.write_fills([fill("x1")])
        with pytest.raises(ConflictingWrite):
            await commit(
                store,
                lambda tx: tx.write_bars([bar(ts) for ts in range(100)]),
                lambda tx: tx.write_fills([fill("x1", price="99.99")]),
            )
        assert (await store.counts()).bars == 0

    async def test_writing_after_the_block_exited_is_refused(self, store):
        async with store.transaction() as tx:
            pass
        with pytest.raises(RuntimeError, match="exited"):
            tx.write_bars([bar(1)])

    async def test_cancelling_inside_the_block_sends_nothing_and_holds_no_connection(self, store):
        with trio.move_on_after(0):
            async with store.transaction() as tx:
                tx.write_bars([bar(1)])
                await trio.sleep_forever()
        assert (await store.counts()).bars == 0
        stats = store.statistics()
        assert (stats.in_use, stats.waiting) == (0, 0)
        assert stats.idle == stats.size


class TestIdempotence:
    async def test_the_same_bars_written_twice_are_stored_once(self, store):
        for _ in range(2):
            async with store.transaction() as tx:
                tx.write_bars([bar(ts) for ts in range(10)])
        assert (await store.counts()).bars == 10

    async def test_a_large_batch_replayed_over_stored_bars_adds_only_the_new_ones(self, store):
        await commit(store, lambda tx: tx.write_bars([bar(ts) for ts in range(0, 200, 2)]))
        await commit(store, lambda tx: tx.write_bars([bar(ts) for ts in range(200)]))
        assert [b.ts for b in await store.bars()] == list(range(200))

    async def test_a_large_batch_with_one_conflicting_bar_commits_nothing(self, store):
        await commit(store, lambda tx: tx.write_bars([bar(150)]))
        batch = [bar(ts) for ts in range(100, 200)]
        batch[50] = bar(150, close="1")
        with pytest.raises(ConflictingWrite, match="150"):
            await commit(store, lambda tx: tx.write_bars(batch))
        assert [b.ts for b in await store.bars()] == [150]

    async def test_a_bar_with_equal_values_in_another_notation_is_no_conflict(self, store):
        async with store.transaction() as tx:
            tx.write_bars([bar(1, close="100.5")])
        async with store.transaction() as tx:
            tx.write_bars([bar(1, close="100.50")])
        [stored] = await store.bars()
        assert str(stored.close) == "100.5"

    async def test_a_conflicting_bar_names_its_key_and_commits_nothing(self, store):
        async with store.transaction() as tx:
            tx.write_bars([bar(5)])
        with pytest.raises(ConflictingWrite) as caught:
            async with store.transaction() as tx:
                tx.write_bars([bar(4), bar(5, close="101")])
        assert caught.value.table == "bars"
        assert caught.value.key == ("AAPL", "1m", 5)
        assert [b.ts for b in await store.bars()] == [5]

    async def test_two_different_bars_under_one_key_in_one_unit_conflict(self, store):
        with pytest.raises(ConflictingWrite):
            await commit(
                store,
                lambda tx: tx.write_bars([bar(5)]),
                lambda tx: tx.write_bars([bar(5, close="101")]),
            )
        assert (await store.counts()).bars == 0

    async def test_the_same_fill_twice_is_stored_once(self, store):
        for _ in range(2):
            async with store.transaction() as tx:
                tx.write_fills([fill("x1"), fill("x1")])
        assert await store.fills() == [fill("x1")]

    async def test_a_different_fill_under_a_stored_execution_id_conflicts(self, store):
        async with store.transaction() as tx:
            tx.write_fills([fill("x1")])
        with pytest.raises(ConflictingWrite, match="x1"):
            async with store.transaction() as tx:
                tx.write_fills([fill("x1", quantity="11")])

    async def test_the_same_journal_event_twice_is_stored_once(self, store):
        order = lifecycle(new_order(1), "4")[-1]
        for _ in range(2):
            async with store.transaction() as tx:
                tx.append_order_events([order.last_event])
        assert (await store.counts()).order_events == 1

    async def test_a_different_event_under_a_stored_journal_key_conflicts(self, store):
        snapshots = lifecycle(new_order(1), "4")
        event = snapshots[-1].last_event
        assert event is not None
        async with store.transaction() as tx:
            tx.append_order_events([event])
        other = attrs.evolve(event, ts=event.ts + 1)
        with pytest.raises(ConflictingWrite, match="order_events"):
            async with store.transaction() as tx:
                tx.append_order_events([other])

    def test_an_unstamped_event_is_refused_when_written(self):
        from tradewind.storage import Transaction

        event = OrderCancelRequested(client_order_id="s1-00000001", ts=5)
        with pytest.raises(ValueError, match="not stamped"):
            Transaction().append_order_events([event])

    async def test_a_later_order_snapshot_replaces_the_stored_one(self, store):
        snapshots = lifecycle(new_order(1), "4", "6")
        for snapshot in snapshots:
            async with store.transaction() as tx:
                tx.write_order(snapshot)
                tx.append_order_events([snapshot.last_event])
        assert await store.orders() == [snapshots[-1]]

    async def test_an_order_without_its_journal_reads_back_without_a_last_event(self, store):
        snapshot = lifecycle(new_order(1), "4")[-1]
        async with store.transaction() as tx:
            tx.write_order(snapshot)
        assert await store.orders() == [attrs.evolve(snapshot, last_event=None)]

    async def test_an_older_order_snapshot_never_replaces_a_newer_one(self, store):
        snapshots = lifecycle(new_order(1), "4")
        async with store.transaction() as tx:
            tx.write_order(snapshots[-1])
        async with store.transaction() as tx:
            tx.write_order(snapshots[0])
        [stored] = await store.orders()
        assert stored.status == snapshots[-1].status
        assert stored.filled_quantity == Decimal(4)

    async def test_an_instrument_written_again_is_replaced(self, store):
        async with store.transaction() as tx:
            tx.upsert_instruments([AAPL])
        wider = attrs.evolve(AAPL, tick_size=Decimal("0.05"))
        async with store.transaction() as tx:
            tx.upsert_instruments([wider])
        assert await store.instruments() == [wider]

    async def test_denials_and_dead_letters_are_stored_once(self, store):
        denial = Denial("s1-00000003", "s1", "AAPL", 7, "max_position: 120 > 100")
        letter = DeadLetter("root/feed", 9, "BarReceived", "BarReceived(...)", "ValueError: x", 3)
        for _ in range(2):
            async with store.transaction() as tx:
                tx.write_denials([denial])
                tx.write_dead_letters([letter])
        assert await store.denials() == [denial]
        assert await store.dead_letters() == [letter]


class TestUnstorableValues:
    @pytest.mark.parametrize("size", [1, 100], ids=["small-unit", "bulk-unit"])
    async def test_a_timestamp_beyond_64_bits_fails_the_unit_as_the_callers_fault(
        self, store, size
    ):
        rows = [bar(ts) for ts in range(size - 1)] + [bar(2**63)]
        with pytest.raises(UnstorableValue, match="cannot be stored"):
            await commit(store, lambda tx: tx.write_bars(rows))
        await commit(store, lambda tx: tx.write_bars([bar(7)]))
        assert [b.ts for b in await store.bars()] == [7]


class TestRuns:
    async def test_a_run_is_started_then_finished(self, store):
        async with store.transaction() as tx:
            tx.start_run("run-1", "cafe", 10)
        assert await store.run("run-1") == RunRecord("run-1", "cafe", 10)
        async with store.transaction() as tx:
            tx.start_run("run-1", "cafe", 10)
            tx.finish_run("run-1", 20, "completed")
        assert await store.runs() == [RunRecord("run-1", "cafe", 10, 20, "completed")]

    async def test_finishing_an_unknown_run_fails_the_unit(self, store):
        with pytest.raises(RunNotFound, match="nope"):
            await commit(
                store,
                lambda tx: tx.write_bars([bar(1)]),
                lambda tx: tx.finish_run("nope", 20, "completed"),
            )
        assert (await store.counts()).bars == 0

    async def test_an_unknown_run_reads_as_none(self, store):
        assert await store.run("missing") is None


class TestColdStart:
    async def test_open_orders_are_the_working_orders_with_their_last_event(self, store):
        working = lifecycle(new_order(1), "4")[-1]
        accepted = lifecycle(new_order(2))[-1]
        requested = accepted.apply(OrderCancelRequested(client_order_id="s1-00000002", ts=200))
        canceled = lifecycle(new_order(3))[-1]
        canceled = canceled.apply(
            OrderCanceled(client_order_id=canceled.client_order_id, ts=canceled.updated_ts + 1)
        )
        async with store.transaction() as tx:
            for order in (working, requested, canceled):
                tx.write_order(order)
                tx.append_order_events([order.last_event])
        assert await store.open_orders() == [working, requested]
        assert await store.orders() == [working, requested, canceled]

    async def test_an_orders_journal_reads_back_in_sequence(self, store):
        snapshots = lifecycle(new_order(1), "4", "6")
        async with store.transaction() as tx:
            tx.append_order_events(reversed([s.last_event for s in snapshots]))
        events = await store.order_events("s1-00000001")
        assert events == [s.last_event for s in snapshots]
        assert [e.seq for e in events] == [1, 2, 3, 4]

    async def test_the_highest_client_order_sequence_is_per_strategy(self, store):
        async with store.transaction() as tx:
            tx.write_orders([new_order(7), new_order(12), new_order(3, strategy_id="s2")])
        assert await store.max_client_order_seq("s1") == 12
        assert await store.max_client_order_seq("s2") == 3
        assert await store.max_client_order_seq("unknown") == 0

    async def test_the_last_bar_of_each_series_is_found(self, store):
        async with store.transaction() as tx:
            tx.write_bars([bar(ts) for ts in (3, 1, 2)])
            tx.write_bars([bar(ts, timeframe="1d") for ts in (5, 9)])
            tx.write_bars([bar(4, instrument="MSFT")])
        assert await store.last_bars() == {
            ("AAPL", "1m"): bar(3),
            ("AAPL", "1d"): bar(9, timeframe="1d"),
            ("MSFT", "1m"): bar(4, instrument="MSFT"),
        }

    async def test_the_last_bar_before_a_time_is_found_per_series(self, store):
        async with store.transaction() as tx:
            tx.write_bars([bar(ts) for ts in (3, 1, 2)])
            tx.write_bars([bar(ts, timeframe="1d") for ts in (5, 9)])
            tx.write_bars([bar(4, instrument="MSFT")])
        # a series with nothing before the time is left out
        assert await store.last_bars(before=5) == {
            ("AAPL", "1m"): bar(3),
            ("MSFT", "1m"): bar(4, instrument="MSFT"),
        }
        assert await store.last_bars(before=3) == {("AAPL", "1m"): bar(2)}
        assert await store.last_bars(before=1) == {}

    async def test_an_empty_store_has_no_last_bars(self, store):
        assert await store.last_bars() == {}

    async def test_bars_are_filtered_by_series_and_time(self, store):
        async with store.transaction() as tx:
            tx.write_bars([bar(ts) for ts in range(10)])
            tx.write_bars([bar(ts, instrument="MSFT") for ts in range(10)])
        found = await store.bars("AAPL", "1m", start=3, end=7)
        assert [(b.instrument, b.ts) for b in found] == [("AAPL", t) for t in range(3, 7)]
        assert len(await store.bars(limit=5)) == 5
        assert len(await store.bars(timeframe="1m")) == 20

    async def test_positions_are_rebuilt_from_the_fills(self, store):
        async with store.transaction() as tx:
            tx.upsert_instruments([AAPL, MSFT])
            tx.write_fills(
                [
                    fill("x1", quantity="10", price="100"),
                    fill("x2", quantity="4", price="110", side=Side.SELL, ts=2_000),
                    fill("x3", quantity="5", price="50", instrument="MSFT"),
                ]
            )
        positions = await store.positions()
        assert positions["AAPL"].quantity == Decimal(6)
        assert positions["AAPL"].realized_pnl == Decimal(40)
        assert positions["MSFT"].quantity == Decimal(5)


_ids = itertools.count()
prices = st.builds(
    lambda digits, places: Decimal(f"{digits}E-{places}"),  # exact: no context rounding
    st.integers(1, 10**30),
    st.integers(0, 18),
)
timestamps = st.integers(0, 2**63 - 1)


class TestExactness:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(price=prices, volume=prices, fee=prices, negative=st.booleans(), ts=timestamps)
    async def test_decimals_and_nanoseconds_round_trip_exactly(
        self, store_url, *, price, volume, fee, negative, ts
    ):
        symbol = f"X{next(_ids)}"
        written_bar = Bar(
            instrument=symbol,
            timeframe="1m",
            ts=ts,
            open=price,
            high=price,
            low=price,
            close=price,
            volume=volume,
        )
        written_fill = attrs.evolve(
            fill(symbol, instrument=symbol, price=str(price), ts=ts),
            fee=fee.copy_negate() if negative else fee,
        )
        async with open_store(store_url) as store:
            async with store.transaction() as tx:
                tx.write_bars([written_bar])
                tx.write_fills([written_fill])
            [read_bar] = await store.bars(symbol)
            read_fill = next(f for f in await store.fills() if f.execution_id == symbol)
        assert (str(read_bar.close), str(read_bar.volume), read_bar.ts) == (
            str(price),
            str(volume),
            ts,
        )
        assert str(read_fill.fee) == str(written_fill.fee)
        assert read_fill == written_fill


class TestPlainDecimals:
    async def test_whole_numbers_come_back_written_out_on_both_backends(self, store):
        written = attrs.evolve(bar(1), volume=Decimal(10_000), high=Decimal("1E+5"))
        await commit(store, lambda tx: tx.write_bars([written]))
        [read] = await store.bars()
        assert (str(read.volume), str(read.high)) == ("10000", "100000")
        assert read == written


class TestConcurrentWriters:
    async def test_fifty_writers_of_overlapping_bars_and_fills_lose_and_duplicate_nothing(
        self, store
    ):
        async def writer(n):
            span = range(n * 1_000, n * 1_000 + 2_000)
            async with store.transaction() as tx:
                tx.write_bars([bar(ts) for ts in span])
                tx.write_fills([fill(f"x{ts}", ts=ts) for ts in span])

        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(writer, n)
        counts = await store.counts()
        assert (counts.bars, counts.fills) == (51_000, 51_000)
        stored = await store.bars("AAPL", "1m")
        assert [b.ts for b in stored] == list(range(51_000))


class TestRunLock:
    """One run at a time per store: the lock is refused while held, free after release,
    and freed by the death of its holder."""

    async def test_a_second_lock_is_refused_while_the_first_is_held(self, store, store_url):
        async with store.run_lock():
            with pytest.raises(StoreInUse, match="another run holds its run lock") as caught:
                async with open_store(store_url, run_lock=True):
                    pytest.fail("a second run lock was granted")
        assert mask_url(store_url) in str(caught.value)
        assert caught.value.url == mask_url(store_url)

    async def test_the_lock_is_taken_again_after_release(self, store, store_url):
        async with store.run_lock():
            pass
        async with open_store(store_url, run_lock=True) as second:
            with pytest.raises(StoreInUse):
                async with store.run_lock():
                    pass
            async with second.run_lock():  # the opener's own lock: only marks the run
                pass
        async with store.run_lock():
            pass

    async def test_a_second_run_through_the_same_store_is_refused(self, store):
        async with store.run_lock():
            with pytest.raises(StoreInUse, match="this process"):
                async with store.run_lock():
                    pass
        async with store.run_lock():
            pass

    async def test_a_killed_holder_frees_the_lock(self, store, store_url):
        holder = await start_holder(store_url)
        try:
            with pytest.raises(StoreInUse):
                async with store.run_lock():
                    pass
        finally:
            assert await kill(holder) == -9
        # SQLite: the kernel dropped the lock when the process died. PostgreSQL: the
        # server drops it when it sees the connection close, a moment after the kill.
        with trio.fail_after(30):
            async with store.run_lock(wait=20):
                pass

    async def test_readers_and_migrations_work_while_a_run_holds_it(self, store, store_url):
        async with store.transaction() as tx:
            tx.write_bars([bar(1)])
        holder = await start_holder(store_url)
        try:
            async with open_store(store_url) as reader:
                assert (await reader.counts()).bars == 1
            assert await migrate_store(store_url) == []
        finally:
            await kill(holder)

    async def test_a_refused_open_neither_reads_nor_migrates(self, store_url):
        # The lock alone, on a database never opened: the refused open must not touch it.
        url = parse_store_url(store_url)
        async with _aio_loop():
            lock = await acquire_run_lock(url)
            try:
                with pytest.raises(StoreInUse):
                    async with open_store(store_url, run_lock=True):
                        pass
            finally:
                await lock.release()
        if url.backend == "sqlite":
            assert not await trio.Path(url.path).exists()  # nothing there yet
        with pytest.raises(SchemaOutdated):
            async with open_store(store_url, migrate=False):
                pass
