"""The PersistenceActor: every accepted record into the store, in batched units of work.

Producers send `Persist(records)` (batched: flushed when the batch reaches `batch_size`,
or `flush_interval` seconds after it began, and completely on stop), `PersistDurably`
(flushed now, answered after the commit) and `Flush` (answered after the commit). The
actor also keeps the run's event log: every record accepted, in acceptance order, as a
canonical line folded into a SHA-256 digest.
"""

# Design notes
# ------------
# * One flush is one `store.transaction()`: the records are mapped to the store's
#   buffered writes (bars, order snapshots, journal events, fills, denials, dead letters,
#   runs, instruments) and committed at once. Every write is idempotent on its natural
#   key, so flushing a batch again after an unknown outcome is always safe.
# * The unflushed batch lives in the keeper, not the instance: a crash while flushing
#   restarts the actor with the batch intact, and the next flush writes it.
# * The flush runs inside the handler. While it runs, the mailbox (BLOCK, bounded) queues
#   what producers send and then makes them wait: backpressure, nothing dropped. In a
#   replay the barrier therefore also waits for a flush now and then, which costs one
#   commit per `batch_size` records. Rejected alternative: a background flusher task;
#   it overlaps commits with the pipeline but makes "what is committed" depend on
#   scheduling, and the durable ask would still have to wait for it.
# * `StoreUnavailable` during a batched flush does not stop the actor: the batch is kept,
#   a retry is scheduled with exponential backoff (trio time), and messages keep being
#   accepted into the batch up to `max_pending` records. Past that bound the handler
#   stops taking messages and retries until the store is back, so the BLOCK mailbox
#   backs up to the producers. `PersistDurably` and `Flush` always wait for their commit.
#   Any other store error (a conflicting write, a broken schema) is a crash: the
#   supervisor restarts the actor, the batch is still in the keeper, and a persistent
#   fault ends in the supervisor giving up -- loudly, not by dropping records.
# * Time-based flushing needs something to happen when no message comes: a small ticker
#   task owned by the instance sends itself a `_FlushDue` once the pending batch is
#   `flush_interval` old (or a retry is due), at most one queued at a time, and sleeps
#   on an event while nothing is pending.
# * A record that no table holds (`TradingStateChanged`, session events) still enters
#   the event log; a record of unknown type is logged and counted, never a crash.

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Protocol

import attrs
import trio
from tradewind.actors._eventlog import EventLog, canonical
from tradewind.actors._feed import OwnedTask, TaskFailed, report_to
from tradewind.actors._marketdata import Bar
from tradewind.actors._messages import (
    BarRejected,
    EndOfData,
    FeedResumed,
    FeedStale,
    Flush,
    IntentDenied,
    OrderUpdated,
    Persist,
    PersistDurably,
    SessionChanged,
    TradingStateChanged,
)
from tradewind.actors._orders import Fill, Order
from tradewind.actors._values import Instrument
from tradewind.runtime._actor import Actor
from tradewind.runtime._errors import MailboxFull
from tradewind.runtime._records import DeadLetter as RuntimeDeadLetter
from tradewind.storage._errors import StoreUnavailable
from tradewind.storage._records import DeadLetter, Denial, RunRecord

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractAsyncContextManager

    from tradewind.storage._uow import Transaction

_NS_PER_SECOND = 1_000_000_000
_MAX_MESSAGE_TEXT = 2_000
#: The ticker never nudges more often than this (seconds), even when a flush is overdue.
_MIN_TICK = 0.001
#: Records that only enter the event log: the store has no table for them.
_LOG_ONLY = frozenset(
    {TradingStateChanged, SessionChanged, FeedStale, FeedResumed, EndOfData, BarRejected}
)


class UnitOfWorkStore(Protocol):
    """What the persistence actor needs of a store: units of work (`Store` has it)."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A unit of work; see `Store.transaction`."""
        ...


@attrs.frozen
class _FlushDue:
    """The ticker's nudge: flush if the batch is old enough (or a retry is due)."""


@attrs.frozen
class PersistenceStatistics:
    """Counts of the persistence actor since its keeper was made.

    Attributes:
        accepted: records taken into a batch.
        committed: records in committed units of work.
        pending: records accepted but not yet committed.
        commits: units of work committed.
        store_failures: flushes that failed with `StoreUnavailable` (and were retried).
        unstorable: records of a type no table holds and the log cannot name (logged).
        event_log_digest: the hex SHA-256 of the event log so far.
    """

    accepted: int
    committed: int
    pending: int
    commits: int
    store_failures: int
    unstorable: int
    event_log_digest: str


@attrs.define
class PersistenceKeeper:
    """The persistence actor's state that outlives its instances.

    Attributes:
        pending: records accepted and not yet committed, in acceptance order.
        event_log: the run's event log (digest and count).
    """

    pending: list[object] = attrs.field(factory=list)
    event_log: EventLog = attrs.field(factory=EventLog)
    batch_started: float | None = None
    retry_at: float | None = None
    failures_in_row: int = 0
    tick_queued: bool = False
    batch_begun: trio.Event = attrs.field(factory=trio.Event)
    last_accepted: object = None
    committed: int = 0
    commits: int = 0
    store_failures: int = 0
    unstorable: int = 0
    denial_ids: dict[str, int] = attrs.field(factory=dict)
    dead_letter_seqs: dict[tuple[str, int], int] = attrs.field(factory=dict)

    def statistics(self) -> PersistenceStatistics:
        """A frozen snapshot of the counts and the event-log digest."""
        return PersistenceStatistics(
            accepted=self.event_log.count,
            committed=self.committed,
            pending=len(self.pending),
            commits=self.commits,
            store_failures=self.store_failures,
            unstorable=self.unstorable,
            event_log_digest=self.event_log.digest(),
        )

    @property
    def digest(self) -> str:
        """The hex SHA-256 of the event log so far."""
        return self.event_log.digest()


# ----------------------------------------------------------------------------- mapping


def denial_record(denied: IntentDenied, index: int = 0) -> Denial:
    """The stored form of a risk denial.

    An intent that risk refused never got a client order id, so the record's key is
    derived from its content (and `index`, to tell identical denials apart): the same
    denial replayed is the same row, and two different denials never share a key.
    """
    digest = hashlib.sha256(canonical(denied).encode()).hexdigest()[:16]
    intent = denied.intent
    detail = f"{denied.reason.value}: {denied.detail}" if denied.detail else denied.reason.value
    return Denial(
        client_order_id=f"{intent.strategy_id}-denied-{digest}-{index}",
        strategy_id=intent.strategy_id,
        instrument=intent.instrument,
        ts=denied.ts,
        reason=detail,
    )


def dead_letter_record(letter: RuntimeDeadLetter, seq: int = 0) -> DeadLetter:
    """The stored form of a runtime dead letter (its trio time as ns)."""
    error = repr(letter.error) if letter.error is not None else ""
    return DeadLetter(
        actor=letter.path,
        ts=round(letter.time * _NS_PER_SECOND),
        message_type=type(letter.message).__name__,
        message=repr(letter.message)[:_MAX_MESSAGE_TEXT],
        error=f"{letter.reason}: {error}" if error else letter.reason,
        attempts=letter.attempts,
        seq=seq,
    )


@attrs.define
class _Unit:
    """Records of one flush, sorted by what the store does with them."""

    bars: list[Bar] = attrs.field(factory=list)
    orders: dict[str, Order] = attrs.field(factory=dict)
    events: list[object] = attrs.field(factory=list)
    fills: list[Fill] = attrs.field(factory=list)
    denials: list[Denial] = attrs.field(factory=list)
    dead_letters: list[DeadLetter] = attrs.field(factory=list)
    instruments: list[Instrument] = attrs.field(factory=list)
    runs: list[RunRecord] = attrs.field(factory=list)

    def write(self, tx: Transaction) -> None:
        if self.instruments:
            tx.upsert_instruments(self.instruments)
        for run in self.runs:
            tx.start_run(run.run_id, run.config_hash, run.started_ts)
        if self.bars:
            tx.write_bars(self.bars)
        if self.orders:
            tx.write_orders(self.orders.values())
        if self.events:
            tx.append_order_events(self.events)  # type: ignore[arg-type]
        if self.fills:
            tx.write_fills(self.fills)
        if self.denials:
            tx.write_denials(self.denials)
        if self.dead_letters:
            tx.write_dead_letters(self.dead_letters)
        for run in self.runs:
            if run.finished_ts is not None and run.outcome is not None:
                tx.finish_run(run.run_id, run.finished_ts, run.outcome)


# ----------------------------------------------------------------------------- the actor


class PersistenceActor(Actor):
    """Writes accepted records through the store in batched units of work.

    Args:
        keeper: the state that survives restarts (the unflushed batch, the event log).
        store: an open store.
        batch_size: a batch is flushed once it holds this many records.
        flush_interval: seconds (trio time) a batch may wait before it is flushed.
        max_pending: while the store is unavailable, records accepted before the actor
            stops taking messages (at least `batch_size`).
        retry_initial, retry_max: the backoff after a `StoreUnavailable`, in seconds,
            doubling from the first to the cap.

    Messages: `Persist` (no reply), `PersistDurably` and `Flush` (reply: the number of
    records committed so far, after the commit). Records: `Bar`, `OrderUpdated`,
    `IntentDenied`, runtime and storage `DeadLetter`, `RunRecord`, `Instrument`,
    `Fill`, `Order`, `Denial`; anything else goes to the event log only.
    """

    def __init__(
        self,
        keeper: PersistenceKeeper,
        store: UnitOfWorkStore,
        *,
        batch_size: int = 1_000,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size: must be >= 1, got {batch_size}"
            raise ValueError(msg)
        if not flush_interval > 0:
            msg = f"flush_interval: must be > 0, got {flush_interval}"
            raise ValueError(msg)
        self._keeper = keeper
        self._store = store
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_pending = max(max_pending, batch_size)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._ticker: OwnedTask | None = None

    async def on_start(self) -> None:
        """Start the flush ticker."""
        self._keeper.tick_queued = False
        self._ticker = OwnedTask(
            f"{self.context.path}:ticker",
            self._tick,
            report_to(self.context),
        )
        self._ticker.start()

    async def on_stop(self) -> None:
        """Stop the ticker and flush everything (retrying while the store is away, for as
        long as the shutdown timeout allows)."""
        if self._ticker is not None:
            await self._ticker.stop()
        if self._keeper.pending:
            try:
                await self._flush_until_committed()
            finally:
                if self._keeper.pending:
                    self.context.log.error(
                        "persistence_unflushed_at_stop", records=len(self._keeper.pending)
                    )

    async def _tick(self) -> None:
        keeper = self._keeper
        ref = self.context.ref
        while True:
            if not keeper.pending or keeper.batch_started is None:
                # Nothing to flush: sleep until a batch begins (no busy ticking while
                # idle, which matters under an autojumping clock).
                await keeper.batch_begun.wait()
                continue
            due = keeper.batch_started + self._flush_interval
            if keeper.retry_at is not None:
                due = max(keeper.retry_at, trio.current_time())
            await trio.sleep_until(max(due, trio.current_time() + _MIN_TICK))
            if keeper.pending and not keeper.tick_queued:
                try:
                    ref.send_nowait(_FlushDue())
                except MailboxFull:
                    continue  # messages are queued: the handler looks at the batch anyway
                keeper.tick_queued = True

    # ------------------------------------------------------------------ handling

    async def handle(self, message: object) -> int | None:
        """Accept records; flush by size, by time, or on demand."""
        if type(message) is Persist or type(message) is PersistDurably:
            self._accept_once(message)
            if type(message) is Persist:
                await self._after_accept()
                return None
            await self._flush_until_committed()
            return self._keeper.committed
        if type(message) is Flush:
            await self._flush_until_committed()
            return self._keeper.committed
        if type(message) is _FlushDue:
            self._keeper.tick_queued = False
            await self._after_accept()
            return None
        if type(message) is TaskFailed:
            raise message.error
        kind = type(message)
        self.context.log.warning("unexpected_message", message_type=kind.__name__)
        return None

    def _accept_once(self, message: Persist | PersistDurably) -> None:
        # A message redelivered after a crash in its flush was already accepted: it is
        # the very same object, still held by the runtime; accepting it again would
        # double its records in the batch and in the event log.
        keeper = self._keeper
        if message is keeper.last_accepted:
            return
        self._accept(message.records)
        keeper.last_accepted = message

    def _accept(self, records: Sequence[object]) -> None:
        keeper = self._keeper
        if not keeper.pending:
            keeper.batch_started = trio.current_time()
            keeper.batch_begun.set()
            keeper.batch_begun = trio.Event()
        log = keeper.event_log
        pending = keeper.pending
        for record in records:
            kind = type(record)
            # Keys derived from the order of acceptance are fixed here, once: a flush
            # may run again after a failure and must write the same rows.
            if kind is IntentDenied:
                log.add(record)
                pending.append(self._denial(record))  # type: ignore[arg-type]
            elif kind is RuntimeDeadLetter:
                stored = self._dead_letter(record)  # type: ignore[arg-type]
                log.add(stored)
                pending.append(stored)
            else:
                log.add(record)
                pending.append(record)

    async def _after_accept(self) -> None:
        keeper = self._keeper
        if not keeper.pending:
            return
        now = trio.current_time()
        if keeper.retry_at is not None:
            if len(keeper.pending) >= self._max_pending:
                await self._flush_until_committed()
            elif now >= keeper.retry_at:
                await self._try_flush()
            return
        started = keeper.batch_started if keeper.batch_started is not None else now
        if len(keeper.pending) >= self._batch_size or now - started >= self._flush_interval:
            await self._try_flush()

    async def _flush_until_committed(self) -> None:
        while self._keeper.pending:
            if not await self._try_flush():
                retry_at = self._keeper.retry_at
                assert retry_at is not None  # noqa: S101 -- set by a failed flush
                await trio.sleep_until(retry_at)

    async def _try_flush(self) -> bool:
        """Flush the whole batch once. Returns False if the store was unavailable (a retry
        is then scheduled), True once committed."""
        keeper = self._keeper
        batch = keeper.pending  # only this handler appends to it, and it is busy here
        if not batch:
            return True
        unit = self._unit(batch)
        try:
            async with self._store.transaction() as tx:
                unit.write(tx)
        except StoreUnavailable as exc:
            keeper.store_failures += 1
            keeper.failures_in_row += 1
            delay = min(self._retry_max, self._retry_initial * 2 ** (keeper.failures_in_row - 1))
            keeper.retry_at = trio.current_time() + delay
            self.context.log.warning(
                "store_unavailable", error=str(exc), pending=len(batch), retry_in=delay
            )
            return False
        count = len(batch)
        del keeper.pending[:count]
        keeper.committed += count
        keeper.commits += 1
        keeper.retry_at = None
        keeper.failures_in_row = 0
        keeper.batch_started = trio.current_time() if keeper.pending else None
        return True

    def _unit(self, records: Sequence[object]) -> _Unit:
        unit = _Unit()
        for record in records:
            kind = type(record)
            if kind is Bar:
                unit.bars.append(record)  # type: ignore[arg-type]
            elif kind is OrderUpdated:
                _add_update(unit, record)  # type: ignore[arg-type]
            elif kind is Denial:
                unit.denials.append(record)  # type: ignore[arg-type]
            elif kind is DeadLetter:
                unit.dead_letters.append(record)  # type: ignore[arg-type]
            elif kind is RunRecord:
                unit.runs.append(record)  # type: ignore[arg-type]
            elif kind is Instrument:
                unit.instruments.append(record)  # type: ignore[arg-type]
            elif kind is Fill:
                unit.fills.append(record)  # type: ignore[arg-type]
            elif kind is Order:
                order: Order = record  # type: ignore[assignment]
                unit.orders[order.client_order_id] = order
            elif kind not in _LOG_ONLY:
                self._keeper.unstorable += 1
                self.context.log.warning("record_not_storable", record_type=kind.__name__)
        return unit

    def _denial(self, denied: IntentDenied) -> Denial:
        seen = self._keeper.denial_ids
        line = canonical(denied)
        index = seen.get(line, 0)
        seen[line] = index + 1
        return denial_record(denied, index)

    def _dead_letter(self, letter: RuntimeDeadLetter) -> DeadLetter:
        seqs = self._keeper.dead_letter_seqs
        ts = round(letter.time * _NS_PER_SECOND)
        seq = seqs.get((letter.path, ts), 0)
        seqs[letter.path, ts] = seq + 1
        return dead_letter_record(letter, seq)


def _add_update(unit: _Unit, update: OrderUpdated) -> None:
    unit.orders[update.order.client_order_id] = update.order
    unit.events.append(update.event)
    fill = update.fill
    if fill is not None:
        unit.fills.append(fill)
