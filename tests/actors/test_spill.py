"""The spill journal: its line format, fsync'd appends, torn lines, replay into a store."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import structlog
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from tradewind.actors import (
    Bar,
    IllegalTransition,
    Instrument,
    InvalidOrder,
    Order,
    OrderSubmitted,
    SpillJournal,
    SpillJournalCorrupt,
    TradingState,
    decode_record,
    encode_record,
)
from tradewind.actors._calendar import TransitionKind
from tradewind.actors._messages import (
    BarRejected,
    EndOfData,
    FeedResumed,
    FeedStale,
    Flush,
    OrderUpdated,
    Persist,
    PersistDurably,
    SessionChanged,
    TradingStateChanged,
)
from tradewind.actors._persistence import (
    PersistenceActor,
    PersistenceKeeper,
    replay_spill_journal,
)
from tradewind.runtime import (
    ActorRef,
    ActorSystem,
    Backoff,
    ChildSpec,
    MailboxSpec,
    MessageDropped,
    SupervisorFailed,
    SupervisorSpec,
    open_actor_system,
)
from tradewind.storage import (
    DeadLetter,
    Denial,
    RunRecord,
    Store,
    StoreError,
    StoreUnavailable,
    open_store,
)
from tradewind.storage._uow import Transaction

from tests.strategies import bars, fills_for, instruments, new_orders, order_events_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
T0 = 1_767_571_200 * 10**9
MINUTE = 60 * 10**9


def bar(n: int) -> Bar:
    price = Decimal(100) + Decimal(n) / 100
    return Bar("AAPL", "1m", T0 + n * MINUTE, price, price, price, price, n)


def some_bars(count: int, start: int = 0) -> list[Bar]:
    return [bar(n) for n in range(start, start + count)]


# ----------------------------------------------------------------------------- strategies


@st.composite
def order_updates(draw: st.DrawFn) -> OrderUpdated:
    """An order after a few events (legal ones applied), with its last update."""
    order = draw(new_orders())
    for _ in range(draw(st.integers(1, 4))):
        try:
            order = order.apply(draw(order_events_for(order)))
        except (IllegalTransition, InvalidOrder):
            continue
    if order.last_event is None:
        order = order.apply(_submitted(order))
    assert order.last_event is not None
    return OrderUpdated(order=order, event=order.last_event, ts=order.updated_ts)


def _submitted(order: Order) -> OrderSubmitted:
    return OrderSubmitted(client_order_id=order.client_order_id, ts=order.created_ts)


texts = st.text(max_size=30)
ints = st.integers(0, 10**18)
records = st.one_of(
    bars(),
    order_updates(),
    new_orders(),
    new_orders().flatmap(fills_for),
    instruments(),
    st.builds(Denial, texts, texts, texts, ints, texts),
    st.builds(DeadLetter, texts, ints, texts, texts, texts, st.integers(0, 9), st.integers(0, 9)),
    st.builds(RunRecord, texts, texts, ints, st.none() | ints, st.none() | texts),
    st.builds(TradingStateChanged, st.sampled_from(TradingState), texts, ints),
    st.builds(SessionChanged, st.sampled_from(TransitionKind), ints),
    st.builds(FeedStale, ints, ints),
    st.builds(FeedResumed, ints),
    st.builds(EndOfData, ints),
    st.builds(BarRejected, ints, texts, texts),
)


class TestLineFormat:
    @settings(max_examples=300, deadline=None)
    @given(record=records)
    def test_any_record_comes_back_identical_from_its_line(self, record: object) -> None:
        line = encode_record(record)
        back = decode_record(line)
        assert back == record
        assert type(back) is type(record)
        assert encode_record(back) == line  # same text: decimals keep their exponent
        assert "\n" not in line
        assert line.isascii()

    def test_decimals_are_exact_strings_with_their_exponent(self) -> None:
        line = encode_record(Bar("AAPL", "1m", 5, "1.10", "1.20", "1.00", "1.10", "0"))
        assert '"open":"1.10"' in line
        assert '"low":"1.00"' in line
        back = decode_record(line)
        assert isinstance(back, Bar)
        assert back.open.as_tuple().exponent == -2

    def test_a_record_without_a_line_form_is_refused(self) -> None:
        with pytest.raises(TypeError, match="cannot hold a object"):
            encode_record(object())

    @pytest.mark.parametrize(
        ("line", "cause"),
        [
            ('{"type":"Bar"', "JSONDecodeError"),
            ('{"type":"Nope","record":{}}', "KeyError"),
            ('{"type":"Bar","record":{"instrument":"AAPL"}}', "While structuring Bar"),
            ("[]", "TypeError"),
        ],
    )
    def test_a_line_that_is_not_a_record_is_refused_with_its_cause(
        self, line: str, cause: str
    ) -> None:
        with pytest.raises(ValueError, match="not a spill journal line") as caught:
            decode_record(line)
        assert cause in str(caught.value)


# ----------------------------------------------------------------------------- the file


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "spill.jsonl"


def size_of(path: Path) -> int:
    return path.stat().st_size


def exists(path: Path) -> bool:
    return path.exists()


def append_bytes(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def lines_of(path: Path) -> list[object]:
    return [decode_record(line) for line in path.read_bytes().splitlines()]


async def the_next_run_stores_the_journal(
    down: DownStore, store: Store, journal_path: Path, bars: list[Bar]
) -> None:
    """The store is back: the next run's persistence replays the journal (`bars`, in
    order) into it and removes it."""
    down.down = False
    async with persistence(down, PersistenceKeeper(), spill_path=journal_path) as system:
        assert await system.ref("persistence").ask(Flush()) == len(bars)
    assert await store.bars() == bars
    assert not exists(journal_path)


@attrs.define
class FsyncSpy:
    """Wraps `os.fsync`: records the size of each regular file when it is fsync'd."""

    real: Any
    sizes: list[int] = attrs.field(factory=list)
    fail: bool = False

    def __call__(self, fd: int) -> None:
        stat = os.fstat(fd)
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            if self.fail:
                msg = "disk on fire"
                raise OSError(msg)
            self.sizes.append(stat.st_size)
        self.real(fd)


@pytest.fixture
def fsync_spy(monkeypatch: pytest.MonkeyPatch) -> FsyncSpy:
    spy = FsyncSpy(os.fsync)
    monkeypatch.setattr(os, "fsync", spy)
    return spy


class TestAppend:
    async def test_each_append_is_one_line_per_record_fsyncd_as_a_whole(
        self, journal_path: Path, fsync_spy: FsyncSpy
    ) -> None:
        journal = SpillJournal(journal_path)
        await journal.append(some_bars(3))
        first = size_of(journal_path)
        await journal.append(some_bars(2, start=3))
        assert lines_of(journal_path) == some_bars(5)
        assert fsync_spy.sizes == [first, size_of(journal_path)]
        stats = journal.statistics()
        assert (stats.records, stats.appended, stats.appends) == (5, 5, 2)
        assert stats.size == size_of(journal_path)

    async def test_an_empty_append_creates_no_file(self, journal_path: Path) -> None:
        journal = SpillJournal(journal_path)
        await journal.append([])
        assert not exists(journal_path)
        assert journal.records == 0

    async def test_a_failed_append_leaves_the_journal_as_it_was(
        self, journal_path: Path, fsync_spy: FsyncSpy
    ) -> None:
        journal = SpillJournal(journal_path)
        await journal.append(some_bars(2))
        fsync_spy.fail = True
        with pytest.raises(OSError, match="disk on fire"):
            await journal.append(some_bars(2, start=2))
        assert journal.records == 2
        fsync_spy.fail = False
        await journal.append(some_bars(1, start=9))
        # the lines of the failed append were written, never counted, and overwritten
        assert lines_of(journal_path) == [*some_bars(2), bar(9)]

    async def test_a_record_without_a_line_form_writes_nothing(self, journal_path: Path) -> None:
        journal = SpillJournal(journal_path)
        with pytest.raises(TypeError):
            await journal.append([bar(1), object()])
        assert not exists(journal_path)
        assert journal.records == 0


class TestRecover:
    async def test_no_file_means_nothing_to_replay(self, journal_path: Path) -> None:
        journal = SpillJournal(journal_path)
        recovery = await journal.recover()
        assert (recovery.records, recovery.torn, journal.records) == (0, (), 0)

    async def test_a_sound_journal_is_taken_over_whole(self, journal_path: Path) -> None:
        await SpillJournal(journal_path).append(some_bars(4))
        journal = SpillJournal(journal_path)
        recovery = await journal.recover()
        assert (recovery.records, recovery.torn) == (4, ())
        assert journal.statistics().recovered == 4
        assert (await journal.read(10)).records == tuple(some_bars(4))

    async def test_a_torn_last_line_is_reported_and_cut_off(self, journal_path: Path) -> None:
        await SpillJournal(journal_path).append(some_bars(3))
        good = size_of(journal_path)
        torn = encode_record(bar(3)).encode()[:25]
        append_bytes(journal_path, torn)
        journal = SpillJournal(journal_path)
        recovery = await journal.recover()
        assert recovery.records == 3
        [line] = recovery.torn
        assert (line.offset, line.length, line.preview) == (good, len(torn), torn)
        assert "torn write" in line.reason
        assert size_of(journal_path) == good
        assert lines_of(journal_path) == some_bars(3)
        assert journal.statistics().torn_lines == 1

    async def test_an_undecodable_last_line_is_reported_and_cut_off(
        self, journal_path: Path
    ) -> None:
        await SpillJournal(journal_path).append(some_bars(2))
        good = size_of(journal_path)
        append_bytes(journal_path, b"\x00\x00\x00\n")
        journal = SpillJournal(journal_path)
        recovery = await journal.recover()
        [line] = recovery.torn
        assert (line.offset, line.length) == (good, 4)
        assert "not a spill journal line" in line.reason
        assert recovery.records == 2
        assert lines_of(journal_path) == some_bars(2)

    async def test_a_journal_of_nothing_but_a_torn_line_is_removed(
        self, journal_path: Path
    ) -> None:
        append_bytes(journal_path, b'{"record":{"clo')
        journal = SpillJournal(journal_path)
        recovery = await journal.recover()
        assert recovery.records == 0
        assert len(recovery.torn) == 1
        assert not exists(journal_path)

    async def test_a_corrupt_line_before_the_last_is_raised_never_skipped(
        self, journal_path: Path
    ) -> None:
        journal = SpillJournal(journal_path)
        await journal.append([bar(0)])
        bad_at = size_of(journal_path)
        append_bytes(journal_path, b"garbage\n")
        append_bytes(journal_path, f"{encode_record(bar(2))}\n".encode())
        recovered = SpillJournal(journal_path)
        assert (await recovered.recover()).torn == ()
        with pytest.raises(SpillJournalCorrupt) as caught:
            await recovered.read(10)
        assert caught.value.offset == bad_at
        assert caught.value.path == str(journal_path)


class TestReplay:
    async def test_reads_go_in_order_and_advance_only_when_marked(self, journal_path: Path) -> None:
        journal = SpillJournal(journal_path)
        await journal.append(some_bars(3))
        await journal.append(some_bars(2, start=3))
        first = await journal.read(2)
        assert first.records == tuple(some_bars(2))
        assert (await journal.read(2)).records == first.records  # not marked: read again
        journal.mark_replayed(first)
        journal.mark_replayed(first)  # marking the same batch twice moves nothing
        second = await journal.read(10)
        assert second.records == tuple(some_bars(3, start=2))
        journal.mark_replayed(second)
        assert journal.records == 0
        assert (await journal.read(10)).records == ()
        await journal.remove()
        assert not exists(journal_path)
        stats = journal.statistics()
        assert (stats.replayed, stats.size, stats.records) == (5, 0, 0)

    async def test_appends_after_a_removal_start_a_new_file(self, journal_path: Path) -> None:
        journal = SpillJournal(journal_path)
        await journal.append(some_bars(2))
        journal.mark_replayed(await journal.read(5))
        await journal.remove()
        await journal.append([bar(7)])
        assert lines_of(journal_path) == [bar(7)]
        assert (await journal.read(5)).records == (bar(7),)


# ----------------------------------------------------------------------------- into a store


@attrs.define
class BarRecorder:
    """A unit of work that notes the bars written through it, then passes them on."""

    tx: Transaction
    written: list[int]

    def write_bars(self, items: Any) -> None:
        items = list(items)
        self.written.extend(b.ts for b in items)
        self.tx.write_bars(items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)


@attrs.define
class RecordingStore:
    """A real store whose units of work are recorded (the bars of each, in order)."""

    store: Store
    units: list[list[int]] = attrs.field(factory=list)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        written: list[int] = []
        async with self.store.transaction() as tx:
            yield BarRecorder(tx, written)
        self.units.append(written)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("sqlite://:memory:") as opened:
        async with opened.transaction() as tx:
            tx.upsert_instruments([AAPL])
        yield opened


@asynccontextmanager
async def persistence(
    store: object, keeper: PersistenceKeeper, **options: object
) -> AsyncIterator[ActorSystem]:
    spec = SupervisorSpec(
        "test",
        (
            ChildSpec(
                "persistence",
                lambda: PersistenceActor(keeper, store, risk=None, **options),  # type: ignore[arg-type]
                mailbox=MailboxSpec(64),
            ),
        ),
        backoff=Backoff(initial=0.0, jitter=0.0),  # restarts at once: no wait on the clock
    )
    async with open_actor_system(spec, asyncio_loop=False) as system:
        yield system


def ts_of(n: int) -> int:
    return T0 + n * MINUTE


async def torn_journal_of_five_bars(journal_path: Path) -> None:
    """A journal a crash left: five whole bars, then a torn last append."""
    await SpillJournal(journal_path).append(some_bars(5))
    append_bytes(journal_path, TORN_LINE)


TORN_LINE = b'{"record":{"close":"1'


class TestReplayIntoTheStore:
    async def test_a_journal_left_by_a_crash_is_replayed_first_then_removed(
        self, store: Store, journal_path: Path
    ) -> None:
        await torn_journal_of_five_bars(journal_path)
        recording = RecordingStore(store)
        keeper = PersistenceKeeper()
        with capture_logs() as logs:
            async with persistence(
                recording, keeper, spill_path=journal_path, batch_size=2
            ) as system:
                ref = system.ref("persistence")
                await ref.send(Persist((bar(5), bar(6))))
                assert await ref.ask(Flush()) == 7
        assert await store.bars() == some_bars(7)
        units = [unit for unit in recording.units if unit]
        assert units[:3] == [[ts_of(0), ts_of(1)], [ts_of(2), ts_of(3)], [ts_of(4)]]
        assert not exists(journal_path)
        torn = [e for e in logs if e["event"] == "spill_journal_torn_line"]
        assert len(torn) == 1
        assert torn[0]["log_level"] == "error"
        assert torn[0]["length"] == len(b'{"record":{"close":"1')
        assert any(e["event"] == "spill_journal_found" and e["records"] == 5 for e in logs)
        spill = keeper.statistics().spill
        assert spill is not None
        assert (spill.recovered, spill.replayed, spill.torn_lines) == (5, 5, 1)

    async def test_replaying_a_journal_again_changes_nothing(
        self, store: Store, journal_path: Path
    ) -> None:
        contents = some_bars(6)
        for _ in range(2):  # the second time, every record is already stored
            await SpillJournal(journal_path).append(contents)
            keeper = PersistenceKeeper()
            async with persistence(store, keeper, spill_path=journal_path, batch_size=4) as system:
                assert await system.ref("persistence").ask(Flush()) == 6
            assert not exists(journal_path)
        assert await store.bars() == contents
        counts = await store.counts()
        assert counts.bars == 6

    async def test_a_corrupt_journal_line_is_never_skipped(
        self, store: Store, journal_path: Path
    ) -> None:
        await SpillJournal(journal_path).append([bar(0)])
        append_bytes(journal_path, b"garbage\n" + f"{encode_record(bar(2))}\n".encode())
        keeper = PersistenceKeeper()
        async with persistence(store, keeper, spill_path=journal_path) as system:
            ref = system.ref("persistence")
            with pytest.raises(MessageDropped) as caught:
                await ref.ask(Flush(), timeout=60)
            assert ref.statistics().crashes >= 1
        assert isinstance(caught.value.__cause__, SpillJournalCorrupt)
        assert exists(journal_path)  # kept for the operator
        assert await store.bars() == []  # the unit with the bad line was never committed


class TestReplayBeforeTheColdStart:
    async def test_the_journal_is_replayed_in_units_then_removed_and_the_actor_finds_it_empty(
        self, store: Store, journal_path: Path
    ) -> None:
        await torn_journal_of_five_bars(journal_path)
        recording = RecordingStore(store)
        keeper = PersistenceKeeper()
        with capture_logs() as logs:
            replayed = await replay_spill_journal(
                keeper, recording, journal_path, batch_size=2, log=structlog.get_logger()
            )
            assert await store.bars() == some_bars(5)  # before any actor started
            async with persistence(store, keeper, spill_path=journal_path) as system:
                assert await system.ref("persistence").ask(Flush()) == 5
        assert replayed == 5
        assert recording.units == [[ts_of(0), ts_of(1)], [ts_of(2), ts_of(3)], [ts_of(4)]]
        assert not exists(journal_path)
        events = [e["event"] for e in logs]
        assert events.count("spill_journal_torn_line") == 1
        assert events.count("spill_journal_found") == 1  # the actor took nothing over again
        stats = keeper.statistics()
        assert stats.spill is not None
        assert (stats.spill.recovered, stats.spill.replayed, stats.spilled) == (5, 5, 0)
        assert (stats.committed, stats.commits) == (5, 3)

    async def test_no_journal_means_nothing_to_replay(self, store: Store, tmp_path: Path) -> None:
        keeper = PersistenceKeeper()
        missing = tmp_path / "no-such-folder" / "spill.jsonl"
        log = structlog.get_logger()
        assert await replay_spill_journal(keeper, store, missing, log=log) == 0
        assert keeper.journal is not None
        assert keeper.journal.records == 0

    async def test_a_store_gone_mid_replay_fails_with_the_journal_kept_for_the_next_start(
        self, store: Store, journal_path: Path
    ) -> None:
        await SpillJournal(journal_path).append(some_bars(4))
        failing = FailsAfter(store, commits=1)
        log = structlog.get_logger()
        with pytest.raises(StoreUnavailable, match="not started") as raised:
            await replay_spill_journal(
                PersistenceKeeper(), failing, journal_path, batch_size=2, log=log
            )
        assert str(journal_path) in str(raised.value)
        assert "2 records" in str(raised.value)
        assert isinstance(raised.value.__cause__, StoreUnavailable)
        assert await store.bars() == some_bars(2)
        assert lines_of(journal_path) == some_bars(4)  # kept whole: replays are idempotent
        again = await replay_spill_journal(PersistenceKeeper(), store, journal_path, log=log)
        assert again == 4
        assert await store.bars() == some_bars(4)
        assert not exists(journal_path)


@attrs.define
class FailsAfter:
    """A real store that commits its first `commits` units, then is unavailable."""

    store: Store
    commits: int

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        if self.commits <= 0:
            yield Transaction()
            msg = "connection refused"
            raise StoreUnavailable(msg)
        async with self.store.transaction() as tx:
            yield tx
        self.commits -= 1


@attrs.define
class DownStore:
    """A real store that fails every unit of work with StoreUnavailable while `down`
    (`failed` counts those units)."""

    store: Store
    down: bool = True
    failed: int = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        if self.down:
            self.failed += 1
            yield Transaction()
            msg = "connection refused"
            raise StoreUnavailable(msg)
        async with self.store.transaction() as tx:
            yield tx


@attrs.define
class HangingStore:
    """A real store whose units of work wait forever while `hang` is set: a table locked
    by another session, a stalled network (`hung` counts the units that waited)."""

    store: Store
    hang: bool = False
    hung: int = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        if self.hang:
            self.hung += 1
            await trio.sleep_forever()
        async with self.store.transaction() as tx:
            yield tx


@attrs.define
class RefusingStore:
    """A real store that refuses every unit of work with a permanent `StoreError` while
    `refuse` is set: a privilege revoked, a trigger raising SQLSTATE 42501 (`refused`
    counts those units)."""

    store: Store
    refuse: bool = True
    refused: int = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        if self.refuse:
            self.refused += 1
            yield Transaction()
            msg = "SQLSTATE 42501: permission denied for table bars"
            raise StoreError(msg)
        async with self.store.transaction() as tx:
            yield tx


def persistence_alone(
    keeper: PersistenceKeeper,
    store: object,
    journal_path: Path | None,
    *,
    shutdown_timeout: float | None = 0.5,
    supervisor: dict[str, Any] | None = None,
    **options: Any,
) -> SupervisorSpec:
    """Persistence alone with a spill journal (or none), no timed flush, and by default a
    short shutdown timeout (a stop cut short quickly); `supervisor` options for the tree."""
    child: dict[str, Any] = {"mailbox": MailboxSpec(64)}
    if shutdown_timeout is not None:
        child["shutdown_timeout"] = shutdown_timeout
    return SupervisorSpec(
        "test",
        (
            ChildSpec(
                "persistence",
                lambda: PersistenceActor(
                    keeper,
                    store,  # type: ignore[arg-type]
                    risk=None,
                    spill_path=journal_path,
                    flush_interval=3_600,
                    **options,
                ),
                **child,
            ),
        ),
        **(supervisor or {}),
    )


class TestSpillAtStop:
    async def test_the_buffer_of_an_unavailable_store_is_spilled_at_stop_and_replayed_next_run(
        self, store: Store, journal_path: Path
    ) -> None:
        # Real clock: under an autojumping one, the file work in worker threads would
        # let virtual time run on to the next timeout.
        down = DownStore(store)
        first = PersistenceKeeper()
        async with persistence(down, first, spill_path=journal_path, batch_size=2) as system:
            await system.ref("persistence").send(Persist((bar(0), object(), bar(1), bar(2))))
            await system.quiesce()
            assert not first.statistics().store_available
        stats = first.statistics()
        assert (stats.pending, stats.spilled, stats.unstorable, stats.committed) == (0, 3, 1, 1)
        assert lines_of(journal_path) == some_bars(3)  # on disk, in order, for the next run
        await the_next_run_stores_the_journal(down, store, journal_path, some_bars(3))

    async def test_an_outage_first_met_by_the_stops_own_flush_spills_the_buffer(
        self, store: Store, journal_path: Path
    ) -> None:
        """The store goes away just before the stop: its final flush is the first to
        fail, and the buffer goes to the journal at once instead of being retried until
        the shutdown timeout cancels the stop (and the buffer is lost)."""
        down = DownStore(store, down=False)
        first = PersistenceKeeper()
        with capture_logs() as logs:
            async with persistence(
                down, first, spill_path=journal_path, batch_size=1_000, flush_interval=3_600
            ) as system:
                await system.ref("persistence").send(Persist((bar(0), object(), bar(1), bar(2))))
                await system.quiesce()
                assert first.statistics().pending == 4
                assert first.statistics().store_available
                down.down = True
        stats = first.statistics()
        assert (stats.pending, stats.spilled, stats.unstorable, stats.committed) == (0, 3, 1, 1)
        assert not stats.store_available
        assert down.failed == 1  # one attempt, no retry: the stop did not wait
        assert lines_of(journal_path) == some_bars(3)
        kept = [e for e in logs if e["event"] == "spill_journal_kept_at_stop"]
        assert [e["records"] for e in kept] == [3]
        assert not [e for e in logs if e["event"] == "persistence_unflushed_at_stop"]
        await the_next_run_stores_the_journal(down, store, journal_path, some_bars(3))

    async def test_a_store_that_hangs_at_the_stop_has_the_buffer_spilled_not_lost(
        self, store: Store, journal_path: Path
    ) -> None:
        """The stop's flush never ends (no error to learn the outage from): it is given
        part of the shutdown timeout, then the buffer is spilled, rather than being cut
        off by the timeout with the buffer lost."""
        hanging = HangingStore(store)
        keeper = PersistenceKeeper()
        spec = persistence_alone(keeper, hanging, journal_path, batch_size=1_000)
        with capture_logs() as logs:
            async with open_actor_system(spec, asyncio_loop=False) as system:
                await system.ref("persistence").send(Persist((bar(0), bar(1), bar(2))))
                await system.quiesce()
                hanging.hang = True
        assert hanging.hung == 1
        stats = keeper.statistics()
        assert (stats.pending, stats.spilled, stats.store_available) == (0, 3, False)
        assert lines_of(journal_path) == some_bars(3)
        assert [e["records"] for e in logs if e["event"] == "spill_journal_kept_at_stop"] == [3]
        hanging.hang = False
        await the_next_run_stores_the_journal(
            DownStore(store, down=False), store, journal_path, some_bars(3)
        )

    async def test_messages_still_queued_when_a_hanging_store_cuts_the_stop_short_are_spilled(
        self, store: Store, journal_path: Path
    ) -> None:
        """The batch's commit hangs (a locked table) with more `Persist` messages queued
        behind it. The stop cancels the handler after the shutdown timeout; the queued
        messages are taken into the buffer and spilled with it, in order, instead of
        being dead-lettered ("system stopped") once the system has stopped."""
        hanging = HangingStore(store)
        keeper = PersistenceKeeper()
        spec = persistence_alone(keeper, hanging, journal_path, batch_size=3)
        with capture_logs() as logs:
            async with open_actor_system(spec, asyncio_loop=False) as system:
                ref = system.ref("persistence")
                await ref.send(Persist((bar(0), bar(1))))
                await system.quiesce()
                hanging.hang = True
                await ref.send(Persist((bar(2),)))  # the batch is full: its commit hangs
                for n in range(3, 6):
                    await ref.send(Persist((bar(n),)))  # queued behind it
            after = system.statistics()
        assert hanging.hung >= 1
        assert lines_of(journal_path) == some_bars(6)
        stats = keeper.statistics()
        assert (stats.accepted, stats.pending, stats.spilled) == (6, 0, 6)
        assert after.dead_letters == 0
        assert not [e for e in logs if e["event"] == "dead_letter"]
        assert [e["records"] for e in logs if e["event"] == "spill_journal_kept_at_stop"] == [6]
        hanging.hang = False
        await the_next_run_stores_the_journal(
            DownStore(store, down=False), store, journal_path, some_bars(6)
        )

    async def test_without_a_journal_what_a_hanging_store_leaves_is_logged_not_dead_lettered(
        self, store: Store
    ) -> None:
        """No journal: the stop retries until the shutdown timeout cuts it off. The
        queued records are taken in too, so what is lost is what the keeper still holds
        -- counted (`pending`) and logged, never a silent dead letter."""
        hanging = HangingStore(store)
        keeper = PersistenceKeeper()
        spec = persistence_alone(keeper, hanging, None, batch_size=2)
        with capture_logs() as logs:
            async with open_actor_system(spec, asyncio_loop=False) as system:
                ref = system.ref("persistence")
                hanging.hang = True
                await ref.send(Persist((bar(0), bar(1))))
                await ref.send(Persist((bar(2),)))
            after = system.statistics()
        assert keeper.statistics().pending == 3
        assert after.dead_letters == 0
        unflushed = [e for e in logs if e["event"] == "persistence_unflushed_at_stop"]
        assert [e["records"] for e in unflushed] == [3]

    async def test_a_persist_durably_taken_at_the_stop_is_spilled_and_its_ask_told_so(
        self, store: Store, journal_path: Path
    ) -> None:
        """A durable write queued behind a hanging commit: its records are spilled with
        the rest, and its asker hears `MessageDropped` (no reply) rather than nothing."""
        hanging = HangingStore(store, hang=True)
        keeper = PersistenceKeeper()
        spec = persistence_alone(keeper, hanging, journal_path, batch_size=1)
        answers: list[BaseException] = []

        async def ask(ref: ActorRef) -> None:
            with pytest.raises(MessageDropped) as dropped:
                await ref.ask(PersistDurably((bar(1),)), timeout=60)
            answers.append(dropped.value)

        async with (
            trio.open_nursery() as nursery,
            open_actor_system(spec, asyncio_loop=False) as system,
        ):
            ref = system.ref("persistence")
            await ref.send(Persist((bar(0),)))  # its commit hangs
            nursery.start_soon(ask, ref)
            await trio.testing.wait_all_tasks_blocked()
            assert ref.statistics().mailbox_depth == 1  # the durable write waits
        assert len(answers) == 1
        assert "taken unanswered at the actor's stop" in str(answers[0])
        assert lines_of(journal_path) == some_bars(2)
        assert system.statistics().dead_letters == 0

    async def test_a_store_that_refuses_for_good_has_the_buffer_spilled_when_supervision_gives_up(
        self, store: Store, journal_path: Path
    ) -> None:
        """Every unit meets a permanent error: persistence crashes until its supervisor
        gives up. What it had taken in is in the journal, not lost with the process; the
        next start's replay fails with the journal kept while the store still refuses,
        and stores it all once the store takes it."""
        refusing = RefusingStore(store, refuse=False)
        keeper = PersistenceKeeper()
        spec = persistence_alone(
            keeper,
            refusing,
            journal_path,
            shutdown_timeout=None,
            supervisor={
                "max_restarts": 2,
                "within": 60,
                "backoff": Backoff(initial=0.0, jitter=0.0),
            },
            batch_size=4,
        )
        with capture_logs() as logs, pytest.raises(SupervisorFailed):  # noqa: PT012
            async with open_actor_system(spec, asyncio_loop=False) as system:
                ref = system.ref("persistence")
                await ref.send(Persist((bar(0), bar(1), bar(2))))
                await system.quiesce()
                refusing.refuse = True
                await ref.send(Persist((bar(3),)))  # the batch is full: refused, a crash
                await system.quiesce()  # ends when supervision gives up
        assert refusing.refused >= 3
        stats = keeper.statistics()
        assert (stats.accepted, stats.pending, stats.spilled, stats.committed) == (4, 0, 4, 0)
        assert lines_of(journal_path) == some_bars(4)
        assert [e for e in logs if e["event"] == "store_refused_at_stop"]
        assert not [e for e in logs if e["event"] == "persistence_unflushed_at_stop"]
        log = structlog.get_logger()
        with pytest.raises(StoreError, match="42501"):
            await replay_spill_journal(PersistenceKeeper(), refusing, journal_path, log=log)
        assert lines_of(journal_path) == some_bars(4)  # kept for the operator
        refusing.refuse = False
        assert await replay_spill_journal(PersistenceKeeper(), refusing, journal_path, log=log) == 4
        assert await store.bars() == some_bars(4)
        assert not exists(journal_path)

    async def test_a_stop_with_a_healthy_store_commits_everything_and_spills_nothing(
        self, store: Store, journal_path: Path
    ) -> None:
        down = DownStore(store, down=False)
        keeper = PersistenceKeeper()
        async with persistence(
            down, keeper, spill_path=journal_path, batch_size=2, flush_interval=3_600
        ) as system:
            await system.ref("persistence").send(Persist((bar(0),)))
            await system.quiesce()
        stats = keeper.statistics()
        assert (stats.pending, stats.spilled, stats.committed, stats.commits) == (0, 0, 1, 1)
        assert await store.bars() == some_bars(1)
        assert not exists(journal_path)
