"""The PersistenceActor: every accepted record into the store, in batched units of work.

Producers send `Persist(records)` (batched: flushed when the batch reaches `batch_size`,
or `flush_interval` seconds after it began, and completely on stop), `PersistDurably`
(flushed now, answered after the commit, or with `NotDurable` when the store stays
unavailable) and `Flush` (answered after the commit). The actor also keeps the run's event
log: every record accepted, in acceptance order, as a canonical line folded into a SHA-256
digest.

When the store is unavailable the actor tells risk (`StoreAvailabilityChanged`), keeps
what it accepts in a bounded buffer and retries; when the buffer is full it either stops
taking messages (backpressure: a replay slows down, nothing is dropped) or, with
``spill=True``, writes the buffer to a local spill journal (`SpillJournal`) and goes on.
The journal is replayed into the store first once it is back, then removed; a journal
left by a crashed run is replayed before the cold start reads the store
(`replay_spill_journal`), or else by the actor at its start.
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
# * Whole cascades (`cascade_cut`, replays). The feed hands each bar over before the
#   order actor sees it and releases the next bar only once the system is quiet, so the
#   records after the newest `Bar` are its cascade, possibly unfinished, and everything
#   before it is finished. A size- or time-triggered commit stops there. Only the
#   durable journal write of intents and cancel requests (which must not wait), `Flush`
#   and the stop commit a cascade's beginning; a kill after such a commit leaves the
#   store at that write-ahead record, which a cold start resumes from
#   (``docs/trading-system.md``).
#   Without the cut a commit could hold bar N and its fills but not the intent the
#   strategy was about to journal, and a restart, resuming after bar N, would never
#   decide it.
#
# Database outage
# ---------------
# * Availability is learned from flushes: the first `StoreUnavailable` marks the store
#   unavailable, the next commit marks it available again. Each change is announced to
#   risk (`StoreAvailabilityChanged`, with the event time of the newest accepted record)
#   by a small notifier task, never from the handler: risk may itself be waiting for
#   room in this mailbox, and a handler waiting for risk's would deadlock the two. The
#   notifier sends the state in force, so a quick down-up-down is announced as what it
#   ended in; it resumes after a restart (what was announced is in the keeper).
# * With ``spill=True``, once the buffer holds `max_pending` records while the store is
#   unavailable, the whole buffer is appended to the journal (one write, one fsync) and
#   the buffer starts over; nothing ever waits for the store. Spilling the whole buffer,
#   not just the record that overflowed, keeps one simple order rule: everything in the
#   journal is older than everything in the buffer, so a flush always writes the journal
#   first. It also makes the fsyncs few (one per `max_pending` records) and puts the
#   oldest accepted records on disk first.
# * Recovery: each flush attempt replays one unit of `batch_size` journal records, in
#   order, and only when the journal is empty the buffer; the ticker keeps nudging while
#   the journal has records, and every message handled in between is accepted into the
#   buffer (or spilled again), so producers are not held up by a long replay. A unit
#   committed twice (a failure after the commit) changes nothing: writes are idempotent
#   on their natural keys. The file is removed after its last record was committed.
# * `PersistDurably` is the order actor's journal write before the broker: during an
#   outage it waits at most `durable_timeout` for the store, then answers `NotDurable`
#   (the records stay accepted and are written later); the order is then denied, never
#   sent. `Flush` still waits for the commit.
# * The stop, with a journal configured, commits unit by unit while the store takes
#   them, and spills the buffer as soon as the store is unavailable -- whether that was
#   known before the stop or is first learned from the stop's own flush -- then stops
#   without waiting: the next start replays the journal. Retrying instead (as it once
#   did when the outage began at the stop) only waited for the shutdown timeout to
#   cancel it, and the buffer was lost with the process. Without a journal, or when the
#   spill fails (a full disk), the stop retries the store within the shutdown timeout
#   and logs what is left unflushed (`persistence_unflushed_at_stop`).
# * The final stop settles the mailbox too. A stop cut short (a store that hangs, the
#   handler cancelled after the shutdown timeout) leaves `Persist` / `PersistDurably`
#   messages queued, which the runtime would dead-letter ("system stopped") once the
#   system has stopped -- records accepted by the system and lost, though the buffer
#   was spilled. So a stop that is not a crash first takes the queued messages
#   (`ActorContext.take_queued`, the one held for redelivery first; it was accepted
#   already and is not accepted twice) into the buffer, in order, and the stop's one
#   rule -- commit while the store takes it, else spill -- applies to all of it.
#   Rejected: spilling the records of dead-lettered `Persist` messages from the tree's
#   dead-letter hook. That is a second way into the journal, outside the actor and
#   after it stopped: acceptance (denial keys, dead-letter sequence numbers, the event
#   log) and the journal-before-buffer order would have to be redone there. After a
#   crash the queue is left for the next instance (a `PersistDurably` asker is alive
#   then, and must get its answer); what is still queued when supervision gives up is
#   dead-lettered and counted as not kept in the run's summary.
# * A commit refused at the stop by a store error that is not an outage (a permission
#   or schema problem, a conflicting write: usually the error the instance crashed on)
#   spills the buffer too, when a journal is configured: each crashed instance's stop
#   spills what it holds, so when supervision gives up nothing taken in is only in
#   memory. The next instance, and the next start, replay the journal first; a store
#   that still refuses fails that start with the journal kept.
# * Records of a type no table holds and the journal cannot name are counted (and
#   logged) once, when accepted; a flush passes them by, a spill drops them.
#
# A crashed run's journal
# -----------------------
# * The journal a crashed run left holds records it accepted: they belong in the store
#   before anything reads it. The assembled tree therefore replays it right after the
#   store is opened and migrated, before the cold start rebuilds the order book (its
#   client order id sequence, the open orders), the portfolio and risk's day from the
#   store (`replay_spill_journal`). Replayed only by the actor, at its start -- after the
#   cold start -- the restored state missed the journal's records: an order id the
#   crashed run had used was used again, and its durable write met `ConflictingWrite`
#   at every restart. The journal is taken over for the run's keeper, so the actor finds
#   it empty; the actor's own replay stays for a journal made without the tree.
# * When that replay cannot be done because the store is unavailable, the start fails
#   with a `StoreUnavailable` that names the journal (``tradewind run`` exits 1), and
#   the journal is kept. Rejected: starting anyway and leaving the replay to the actor --
#   the run would be rebuilt from a store missing records it had accepted, and the harm
#   (a reused order id, a position short of a fill, a fresh loss budget) is done before
#   the replay could catch up. Rejected too: waiting at the start for the store; what
#   restarts the process (systemd, an operator) already retries, and a start that fails
#   with a reason says more than one that hangs. A store that is down at the start
#   fails it anyway: the cold start itself reads the store.

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
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
    NotDurable,
    OrderUpdated,
    Persist,
    PersistDurably,
    SessionChanged,
    StoreAvailabilityChanged,
    TradingStateChanged,
)
from tradewind.actors._orders import Fill, Order
from tradewind.actors._spill import SPILL_TYPES, SpillJournal, SpillStatistics
from tradewind.actors._values import Instrument
from tradewind.runtime._actor import Actor
from tradewind.runtime._errors import ActorNotFound, MailboxFull
from tradewind.runtime._records import DeadLetter as RuntimeDeadLetter
from tradewind.storage._errors import StoreError, StoreUnavailable
from tradewind.storage._records import DeadLetter, Denial, RunRecord

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Sequence
    from contextlib import AbstractAsyncContextManager

    from structlog.typing import FilteringBoundLogger
    from tradewind.storage._uow import Transaction

_NS_PER_SECOND = 1_000_000_000
_MAX_MESSAGE_TEXT = 2_000
#: The ticker never nudges more often than this (seconds), even when a flush is overdue.
_MIN_TICK = 0.001
#: Records that only enter the event log: the store has no table for them.
_LOG_ONLY = frozenset(
    {TradingStateChanged, SessionChanged, FeedStale, FeedResumed, EndOfData, BarRejected}
)
_SPILLABLE = frozenset(SPILL_TYPES)
_STORABLE = frozenset({Bar, OrderUpdated, Denial, DeadLetter, RunRecord, Instrument, Fill, Order})
#: The path of the actor told about the store's availability, in the assembled tree.
RISK_PATH = "trading/risk"


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
        committed: records in committed units of work (replayed journal records
            included; records of a type the journal cannot hold count once dropped).
        pending: records accepted and held in memory, not yet committed.
        commits: units of work committed.
        store_failures: flushes that failed with `StoreUnavailable` (and were retried).
        unstorable: records of a type no table holds and the log cannot name (logged).
        event_log_digest: the hex SHA-256 of the event log so far.
        store_available: False from a flush's `StoreUnavailable` until the next commit.
        spilled: records in the spill journal, not yet replayed into the store.
        not_durable: `PersistDurably` asks answered with `NotDurable`.
        spill: the spill journal's counts, or None without a journal.
    """

    accepted: int
    committed: int
    pending: int
    commits: int
    store_failures: int
    unstorable: int
    event_log_digest: str
    store_available: bool = True
    spilled: int = 0
    not_durable: int = 0
    spill: SpillStatistics | None = None


@attrs.define
class PersistenceKeeper:
    """The persistence actor's state that outlives its instances.

    Attributes:
        pending: records accepted and not yet committed (nor spilled), in acceptance order.
        event_log: the run's event log (digest and count).
        journal: the spill journal, made by the first instance when a path is configured.
        store_available: what the last flush said about the store.
        denial_ids: the next index of each recent denial digest (identical denials --
            same intent, reason and time -- are numbered apart); only the
            `denial_capacity` most recently seen digests are kept, so a strategy refused
            on every bar does not grow it for the whole run. Identical denials share
            their event time and come within one bar's cascade, far fewer than
            `denial_capacity` distinct denials apart.
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
    denial_capacity: int = 10_000
    denial_ids: OrderedDict[str, int] = attrs.field(factory=OrderedDict)  # next index, by digest
    dead_letter_seqs: dict[tuple[str, int], int] = attrs.field(factory=dict)
    journal: SpillJournal | None = None
    store_available: bool = True
    unavailable_reason: str = ""
    announced_available: bool = True
    availability_changed: trio.Event = attrs.field(factory=trio.Event)
    last_ts: int = 0

    def resume_denials(self, stored: Iterable[Denial]) -> None:
        """Cold start: number identical denials on from the stored ones, so a denial the
        restarted run makes is not taken for one already stored (and dropped as a
        duplicate key) when the crashed run made an identical one before it."""
        seen = self.denial_ids
        for denial in stored:
            head, _, index = denial.client_order_id.rpartition("-")
            digest = head.rpartition("-denied-")[2]
            if index.isdigit() and digest:
                self._number(digest, max(seen.get(digest, 0), int(index) + 1))

    def next_denial_index(self, digest: str) -> int:
        """The index of a new denial with this digest (0 for the first of its kind)."""
        index = self.denial_ids.get(digest, 0)
        self._number(digest, index + 1)
        return index

    def _number(self, digest: str, next_index: int) -> None:
        seen = self.denial_ids
        seen[digest] = next_index
        seen.move_to_end(digest)
        while len(seen) > self.denial_capacity:
            seen.popitem(last=False)

    not_durable: int = 0

    def statistics(self) -> PersistenceStatistics:
        """A frozen snapshot of the counts and the event-log digest."""
        journal = self.journal
        return PersistenceStatistics(
            accepted=self.event_log.count,
            committed=self.committed,
            pending=len(self.pending),
            commits=self.commits,
            store_failures=self.store_failures,
            unstorable=self.unstorable,
            event_log_digest=self.event_log.digest(),
            store_available=self.store_available,
            spilled=journal.records if journal is not None else 0,
            not_durable=self.not_durable,
            spill=journal.statistics() if journal is not None else None,
        )

    @property
    def digest(self) -> str:
        """The hex SHA-256 of the event log so far."""
        return self.event_log.digest()

    @property
    def has_work(self) -> bool:
        """Whether anything accepted is still to be committed (buffered or spilled)."""
        return bool(self.pending) or (self.journal is not None and self.journal.records > 0)

    def wake_ticker(self) -> None:
        """Wake the flush ticker (a batch began, or a journal needs replaying)."""
        self.batch_begun.set()
        self.batch_begun = trio.Event()

    def set_available(self, available: bool, reason: str = "") -> bool:
        """Record what a flush said about the store; True if that changed (the notifier
        is woken to tell risk)."""
        if available is self.store_available:
            return False
        self.store_available = available
        self.unavailable_reason = "" if available else reason
        self.availability_changed.set()
        self.availability_changed = trio.Event()
        return True


# ----------------------------------------------------------------------------- mapping


def denial_digest(denied: IntentDenied) -> str:
    """What a denial's stored key is derived from: a digest of its content."""
    return hashlib.sha256(canonical(denied).encode()).hexdigest()[:16]


def denial_record(denied: IntentDenied, index: int = 0) -> Denial:
    """The stored form of a risk denial.

    An intent that risk refused never got a client order id, so the record's key is
    derived from its content (and `index`, to tell identical denials apart): the same
    denial replayed is the same row, and two different denials never share a key.
    """
    digest = denial_digest(denied)
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


# ---------------------------------------------------------------------- journal replay


async def replay_spill_journal(
    keeper: PersistenceKeeper,
    store: UnitOfWorkStore,
    path: str | os.PathLike[str],
    *,
    batch_size: int = 1_000,
    log: FilteringBoundLogger,
) -> int:
    """Replay the spill journal a crashed run left into the store, now, and remove it.

    Call before anything reads the store to rebuild state (the cold start): what the
    journal holds was accepted by the crashed run and belongs in the store first. The
    journal is taken over for `keeper`, so the persistence actor started with it finds
    it empty (its counts show what was recovered and replayed). A torn last line is
    reported and cut off, as at the actor's start.

    Args:
        keeper: the persistence keeper of the run about to start.
        store: the open store.
        path: the journal file (none there: nothing to do).
        batch_size: records per unit of work.
        log: where the takeover and the replay are reported.

    Returns:
        The number of records replayed.

    Raises:
        StoreUnavailable: the store went away during the replay. The journal keeps what
            was not committed (the file is left in place) for the next start.
        StoreError: a record cannot be stored (a conflicting write); the journal is kept.
        SpillJournalCorrupt: a line before the last cannot be decoded; the journal is
            kept for the operator.
        OSError: the file cannot be read, truncated or removed.

    Cancellation: a unit is committed or not (the store's own guarantee); the journal's
    replay position only moves past a committed unit, so a cancelled replay is resumed
    by the next start or by the actor.
    """
    journal = await _take_over_journal(keeper, path, log)
    found = journal.records
    while journal.records:
        batch = await journal.read(batch_size)
        try:
            async with store.transaction() as tx:
                _unit_of(batch.records).write(tx)
        except StoreUnavailable as exc:
            msg = (
                f"the spill journal {journal.path} holds {journal.records} records of an "
                f"earlier run that could not be replayed into the store ({exc}); the run "
                "is not started, as it would be rebuilt from a store without them. Start "
                "it again once the store is back: the journal is kept"
            )
            raise StoreUnavailable(msg) from exc
        journal.mark_replayed(batch)
        keeper.committed += len(batch.records)
        keeper.commits += 1
    if found:
        await journal.remove()
        log.info("spill_journal_replayed", path=str(journal.path), records=found)
    return found


async def _take_over_journal(
    keeper: PersistenceKeeper, path: str | os.PathLike[str], log: FilteringBoundLogger
) -> SpillJournal:
    """Make `keeper`'s journal at `path` and recover what an earlier run left there."""
    journal = SpillJournal(path)
    recovery = await journal.recover()
    keeper.journal = journal
    for torn in recovery.torn:
        log.error(
            "spill_journal_torn_line",
            path=str(journal.path),
            offset=torn.offset,
            length=torn.length,
            reason=torn.reason,
            preview=repr(torn.preview),
        )
    if recovery.records:
        log.warning("spill_journal_found", path=str(journal.path), records=recovery.records)
    return journal


# ----------------------------------------------------------------------------- the actor


class PersistenceActor(Actor):
    """Writes accepted records through the store in batched units of work.

    Args:
        keeper: the state that survives restarts (the unflushed batch, the event log).
        store: an open store.
        batch_size: a batch is flushed once it holds this many records; also the size
            of each unit a spill journal is replayed in.
        flush_interval: seconds (trio time) a batch may wait before it is flushed.
        max_pending: while the store is unavailable, records held in memory before the
            actor stops taking messages, or, with `spill`, writes them to the journal
            (at least `batch_size`).
        retry_initial, retry_max: the backoff after a `StoreUnavailable`, in seconds,
            doubling from the first to the cap.
        spill: spill a full buffer to the journal during an outage instead of making
            producers wait (for a live feed that cannot slow down); needs `spill_path`.
        spill_path: the spill journal file. A journal found there at start (left by a
            crashed run) is replayed before anything else, also without `spill`.
        durable_timeout: seconds a `PersistDurably` may wait for an unavailable store
            before it is answered with `NotDurable`.
        risk: the path of the actor told about the store's availability (None: nobody;
            an absent actor is skipped with a log line).
        cascade_cut: a replay's setting: a size- or time-triggered commit ends before the
            newest accepted `Bar`, whose cascade may still be running, so the store holds
            whole cascades; the durable, on-demand and final commits take everything.

    Messages: `Persist` (no reply), `PersistDurably` (reply: the number of records
    committed so far, after the commit; or `NotDurable`), `Flush` (reply: the number of
    records committed so far, after the commit of everything accepted before it, the
    spill journal included). Records: `Bar`, `OrderUpdated`, `IntentDenied`, runtime and
    storage `DeadLetter`, `RunRecord`, `Instrument`, `Fill`, `Order`, `Denial`; anything
    else goes to the event log only.

    Raises:
        ValueError: a bad setting, or `spill` without `spill_path`.
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
        spill: bool = False,
        spill_path: str | os.PathLike[str] | None = None,
        durable_timeout: float = 2.0,
        risk: str | None = RISK_PATH,
        cascade_cut: bool = False,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size: must be >= 1, got {batch_size}"
            raise ValueError(msg)
        if not flush_interval > 0:
            msg = f"flush_interval: must be > 0, got {flush_interval}"
            raise ValueError(msg)
        if spill and spill_path is None:
            msg = "spill: needs a spill_path"
            raise ValueError(msg)
        if not durable_timeout >= 0:
            msg = f"durable_timeout: must be >= 0, got {durable_timeout}"
            raise ValueError(msg)
        self._keeper = keeper
        self._store = store
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_pending = max(max_pending, batch_size)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._spill = spill
        self._spill_path = spill_path
        self._durable_timeout = durable_timeout
        self._risk_path = risk
        self._cascade_cut = cascade_cut
        self._ticker: OwnedTask | None = None
        self._notifier: OwnedTask | None = None

    async def on_start(self) -> None:
        """Take over a spill journal left by a crashed run (once per keeper), then start
        the flush ticker and the availability notifier.

        Raises:
            OSError: the journal file cannot be read or truncated.
        """
        keeper = self._keeper
        keeper.tick_queued = False
        if keeper.journal is None and self._spill_path is not None:
            await _take_over_journal(keeper, self._spill_path, self.context.log)
        report = report_to(self.context)
        self._ticker = OwnedTask(f"{self.context.path}:ticker", self._tick, report)
        self._ticker.start()
        if self._risk_path is not None:
            self._notifier = OwnedTask(f"{self.context.path}:notifier", self._announce, report)
            self._notifier.start()

    async def on_stop(self) -> None:
        """Stop the tasks and flush everything.

        A stop that is not a crash first takes the `Persist` and `PersistDurably`
        messages still queued for the actor into the buffer (`ActorContext.take_queued`;
        a `PersistDurably` ask among them gets `MessageDropped`, not a reply), so that
        they are committed or spilled rather than dead-lettered when the system has
        stopped. After a crash they stay queued for the next instance.

        With a spill journal, the flush is tried unit by unit while the store takes them;
        once the store is unavailable (before the stop, or from one of these flushes on),
        hangs past half the shutdown timeout, or refuses a unit with another store error
        (the error of a crash, typically), the rest of the buffer is spilled, in order
        and fsync'd, and the stop does not wait: the next start replays the journal.
        Without a journal (or when the spill itself fails) the flush is retried while the
        store is away, for as long as the shutdown timeout allows, and what is left
        unflushed is logged (`persistence_unflushed_at_stop`; the run's summary counts
        it as not kept).

        Raises:
            StoreError: without a journal, a store failure other than `StoreUnavailable`
                (a conflicting write); what is left is logged.
            SpillJournalCorrupt: the journal cannot be read back for its replay.
        """
        for task in (self._ticker, self._notifier):
            if task is not None:
                await task.stop()
        keeper = self._keeper
        if not self.context.crashed:
            self._take_queued()
        journal = keeper.journal
        if journal is not None and await self._flush_or_spill_at_stop(journal):
            return
        if keeper.has_work:
            try:
                await self._flush_within(math.inf)
            finally:
                if keeper.has_work:
                    self.context.log.error(
                        "persistence_unflushed_at_stop",
                        records=len(keeper.pending),
                        spilled=keeper.journal.records if keeper.journal is not None else 0,
                    )

    def _take_queued(self) -> None:
        """The final stop: take the messages still queued for this actor into the buffer
        (in order), so that they are committed or spilled with it instead of being
        dead-lettered once the system has stopped."""
        keeper = self._keeper
        taken = 0
        for message in self.context.take_queued():
            if type(message) is Persist or type(message) is PersistDurably:
                # The one held for redelivery was accepted already: not again.
                self._accept_once(message)
                taken += 1
            elif type(message) is _FlushDue:
                keeper.tick_queued = False
            # A `Flush` is what the stop does anyway; a `TaskFailed` of a task now
            # stopped changes nothing.
        if taken:
            self.context.log.info(
                "persistence_took_queued_at_stop", messages=taken, pending=len(keeper.pending)
            )

    async def _flush_or_spill_at_stop(self, journal: SpillJournal) -> bool:
        """Commit what is left while the store takes it; once it is unavailable, hangs or
        refuses a unit, spill the buffer. True when nothing is left in memory; False if
        the spill failed (the caller then retries the store within the shutdown
        timeout)."""
        keeper = self._keeper
        # A store that hangs (a locked table, a stalled network) gives no error to learn
        # the outage from: the commits get half of the stop's time, and if they are not
        # done by then the store is taken as unavailable and the rest is spilled, rather
        # than the shutdown timeout cutting the stop off with the buffer still in memory.
        budget = self.context.shutdown_timeout / 2
        refused = False
        try:
            # One attempt per unit, no backoff: the first `StoreUnavailable` ends it.
            with trio.move_on_after(budget) as waited:
                while keeper.store_available and keeper.has_work:
                    await self._try_flush()
            if waited.cancelled_caught and keeper.has_work:
                reason = f"no commit within {budget:g}s at the stop"
                if keeper.set_available(False, reason):
                    self.context.log.error("store_unavailable", error=reason)
        except StoreError as exc:
            # Not an outage (those end the loop above) but a refusal: a permanent error
            # (a conflicting write, a privilege or schema problem), typically the one
            # this instance crashed on. Retrying would meet it again; the journal keeps
            # the records for the next start, which fails with the journal kept if the
            # store still refuses them.
            refused = True
            self.context.log.error(
                "store_refused_at_stop",
                error=str(exc),
                records=len(keeper.pending),
                spilled=journal.records,
            )
        finally:
            if keeper.has_work and keeper.store_available and not refused:
                # Cancelled: say what is left.
                self.context.log.error(
                    "persistence_unflushed_at_stop",
                    records=len(keeper.pending),
                    spilled=journal.records,
                )
        if not keeper.has_work:
            return True
        # The store is unavailable or refuses: the journal keeps it all for the next
        # start. The buffer goes after what the journal already holds, so the order is
        # kept.
        if keeper.pending:
            try:
                await self._spill_pending()
            except OSError as exc:
                self.context.log.error(
                    "spill_failed_at_stop", path=str(journal.path), error=str(exc)
                )
                return False
        self.context.log.warning(
            "spill_journal_kept_at_stop", path=str(journal.path), records=journal.records
        )
        return True

    async def _tick(self) -> None:
        keeper = self._keeper
        ref = self.context.ref
        while True:
            if not keeper.has_work:
                # Nothing to flush: sleep until a batch begins (no busy ticking while
                # idle, which matters under an autojumping clock).
                await keeper.batch_begun.wait()
                continue
            now = trio.current_time()
            if keeper.retry_at is not None:
                due = max(keeper.retry_at, now)
            elif keeper.journal is not None and keeper.journal.records:
                due = now  # replaying: one unit per nudge
            elif keeper.batch_started is not None:
                due = keeper.batch_started + self._flush_interval
            else:  # pragma: no cover -- pending records always have a batch start
                due = now + self._flush_interval
            await trio.sleep_until(max(due, now + _MIN_TICK))
            if keeper.has_work and not keeper.tick_queued:
                try:
                    ref.send_nowait(_FlushDue())
                except MailboxFull:
                    continue  # messages are queued: the handler looks at the batch anyway
                keeper.tick_queued = True

    async def _announce(self) -> None:
        keeper = self._keeper
        while True:
            available = keeper.store_available
            if available is keeper.announced_available:
                await keeper.availability_changed.wait()
                continue
            reason = "the store is back" if available else keeper.unavailable_reason
            change = StoreAvailabilityChanged(available=available, ts=keeper.last_ts, reason=reason)
            try:
                ref = self.context.system.ref(self._risk_path)  # type: ignore[arg-type]
            except ActorNotFound:
                self.context.log.warning("store_availability_not_announced", path=self._risk_path)
            else:
                await ref.send(change)
            keeper.announced_available = available

    # ------------------------------------------------------------------ handling

    async def handle(self, message: object) -> int | NotDurable | None:
        """Accept records; flush by size, by time, or on demand."""
        if type(message) is Persist or type(message) is PersistDurably:
            self._accept_once(message)
            if type(message) is Persist:
                await self._after_accept()
                return None
            if await self._flush_within(self._durable_timeout):
                return self._keeper.committed
            return self._not_durable()
        if type(message) is Flush:
            await self._flush_within(math.inf)
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

    def _not_durable(self) -> NotDurable:
        keeper = self._keeper
        keeper.not_durable += 1
        reason = keeper.unavailable_reason or "the store is unavailable"
        pending = len(keeper.pending) + (keeper.journal.records if keeper.journal else 0)
        self.context.log.warning("persist_durably_not_durable", reason=reason, pending=pending)
        return NotDurable(reason=reason, pending=pending)

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
        if not records:
            return
        if not keeper.pending:
            keeper.batch_started = trio.current_time()
            keeper.wake_ticker()
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
                if kind not in _STORABLE and kind not in _LOG_ONLY:
                    self._unstorable(kind)  # counted once; flushes pass it by
        ts = getattr(records[-1], "ts", None)
        if type(ts) is int and ts > keeper.last_ts:
            keeper.last_ts = ts

    async def _after_accept(self) -> None:
        keeper = self._keeper
        if not keeper.has_work:
            return
        journal = keeper.journal
        now = trio.current_time()
        if keeper.retry_at is None and journal is not None and journal.records:
            await self._try_flush()  # replay one unit of the journal
        replaying = journal is not None and journal.records > 0
        if len(keeper.pending) >= self._max_pending and (keeper.retry_at is not None or replaying):
            if self._spill:
                await self._spill_pending()
            else:
                await self._flush_within(math.inf)  # backpressure: take nothing until stored
            return
        cut = self._cascade_cut
        if keeper.retry_at is not None:
            if now >= keeper.retry_at:
                await self._try_flush(cut=cut)
            return
        if replaying:
            return
        started = keeper.batch_started if keeper.batch_started is not None else now
        if len(keeper.pending) >= self._batch_size or now - started >= self._flush_interval:
            await self._try_flush(cut=cut)

    async def _spill_pending(self) -> None:
        keeper = self._keeper
        journal = keeper.journal
        assert journal is not None  # noqa: S101 -- spill and stop check it first
        batch = list(keeper.pending)
        records = [record for record in batch if type(record) in _SPILLABLE]
        # Nothing leaves the buffer until the journal has it on disk.
        await journal.append(records)
        del keeper.pending[: len(batch)]
        # Records of a type nothing stores were counted when accepted: settled.
        keeper.committed += len(batch) - len(records)
        keeper.batch_started = trio.current_time() if keeper.pending else None
        self.context.log.warning(
            "records_spilled", records=len(records), journal=journal.records, path=str(journal.path)
        )

    async def _flush_within(self, timeout: float) -> bool:  # noqa: ASYNC109 -- a budget for retries, not for one call
        """Flush everything (journal first, then the buffer), retrying with backoff while
        the store is unavailable, for at most `timeout` seconds. True once all committed."""
        keeper = self._keeper
        deadline = trio.current_time() + timeout
        while keeper.has_work:
            retry_at = keeper.retry_at
            if retry_at is not None and retry_at > trio.current_time():
                if retry_at > deadline:
                    return False
                await trio.sleep_until(retry_at)
            await self._try_flush()
        return True

    async def _try_flush(self, *, cut: bool = False) -> bool:
        """Commit one unit: the next `batch_size` records of the spill journal while it
        has any, else the whole batch (with `cut`, the batch up to the newest `Bar`).
        Returns False if the store was unavailable (a retry is then scheduled), True once
        committed."""
        keeper = self._keeper
        journal = keeper.journal
        if journal is not None and journal.records:
            replay = await journal.read(self._batch_size)
            if not await self._commit(replay.records):
                return False
            journal.mark_replayed(replay)
            if not journal.records:
                await journal.remove()
                self.context.log.info("spill_journal_replayed", path=str(journal.path))
            return True
        batch = keeper.pending  # only this handler appends to it, and it is busy here
        if not batch:
            return True
        count = _cascade_start(batch) if cut else len(batch)
        if count == 0:
            # All of it belongs to the running cascade: wait for the next bar (or the
            # durable, on-demand or final commit); the interval starts again. A retry due
            # after a failed durable write is dropped too: there is nothing to retry with
            # until then, and the ticker would otherwise fire at once, again and again.
            keeper.batch_started = trio.current_time()
            keeper.retry_at = None
            return True
        if not await self._commit(batch if count == len(batch) else batch[:count]):
            return False
        del keeper.pending[:count]
        keeper.batch_started = trio.current_time() if keeper.pending else None
        return True

    async def _commit(self, records: Sequence[object]) -> bool:
        keeper = self._keeper
        unit = _unit_of(records)
        try:
            async with self._store.transaction() as tx:
                unit.write(tx)
        except StoreUnavailable as exc:
            keeper.store_failures += 1
            keeper.failures_in_row += 1
            delay = min(self._retry_max, self._retry_initial * 2 ** (keeper.failures_in_row - 1))
            keeper.retry_at = trio.current_time() + delay
            if keeper.set_available(False, str(exc)):
                self.context.log.error("store_unavailable", error=str(exc))
            self.context.log.warning(
                "store_flush_failed", error=str(exc), records=len(records), retry_in=delay
            )
            return False
        keeper.committed += len(records)
        keeper.commits += 1
        keeper.retry_at = None
        keeper.failures_in_row = 0
        if keeper.set_available(True):
            self.context.log.warning("store_available_again", pending=len(keeper.pending))
        return True

    def _unstorable(self, kind: type) -> None:
        self._keeper.unstorable += 1
        self.context.log.warning("record_not_storable", record_type=kind.__name__)

    def _denial(self, denied: IntentDenied) -> Denial:
        digest = denial_digest(denied)
        return denial_record(denied, self._keeper.next_denial_index(digest))

    def _dead_letter(self, letter: RuntimeDeadLetter) -> DeadLetter:
        seqs = self._keeper.dead_letter_seqs
        ts = round(letter.time * _NS_PER_SECOND)
        seq = seqs.get((letter.path, ts), 0)
        seqs[letter.path, ts] = seq + 1
        return dead_letter_record(letter, seq)


def _unit_of(records: Sequence[object]) -> _Unit:
    """The records of one unit of work, sorted by what the store does with them."""
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
    return unit


def _cascade_start(records: Sequence[object]) -> int:
    """The index of the newest `Bar` in `records` (0 if there is none): in a replay the
    records before it are the finished cascades of earlier bars."""
    for index in range(len(records) - 1, -1, -1):
        if type(records[index]) is Bar:
            return index
    return 0


def _add_update(unit: _Unit, update: OrderUpdated) -> None:
    unit.orders[update.order.client_order_id] = update.order
    unit.events.append(update.event)
    fill = update.fill
    if fill is not None:
        unit.fills.append(fill)
