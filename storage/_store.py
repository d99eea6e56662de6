"""`Store` and `open_store`: the one storage contract over PostgreSQL or SQLite.

Design notes
------------
* One concrete `Store` over a small private `Backend` (run a unit of work, run a query,
  report statistics). Everything the contract promises beyond that -- buffering, the
  retry loop, decoding rows into domain values, cold-start reads -- is written once
  here, so both backends pass one contract suite by construction rather than by
  parallel maintenance.
* Retries live here, not in the backends: a backend only says "this unit may succeed if
  run again" (`RetryableFailure`); the store replays the buffered unit with jittered
  exponential backoff (`RetryPolicy`) and gives up with `TransactionFailed` naming the
  cause. Lost connections are not retried here: they surface as `StoreUnavailable`, a
  retryable error for the caller (the persistence actor), which decides how long to
  keep trying; a hidden loop here would turn an outage into a silent hang.
* The run lock (`Store.run_lock`, ``open_store(..., run_lock=True)``): one run at a time
  per store, across processes. It is the backend's own kind of lock that dies with its
  holder -- a session-level advisory lock on PostgreSQL, an OS file lock next to a
  SQLite file -- so a crash never leaves a stale lock for a cold start to clear. Only
  runs take it: readers (`tradewind report`) and migrations (their own lock) never
  wait for it. It is kept apart from the backend (`Backend` knows nothing of it), so a
  store wrapped around another's backend (the test harness) locks by its URL all the
  same. Within one process a `Store` also refuses a second run while one holds it --
  the only guard an in-memory SQLite database needs.
* The store owns no task: a closed store simply refuses work. Closing is shielded and
  bounded, so leaving the ``async with`` under cancellation still releases every
  connection.
"""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio
from tradewind.actors._portfolio import Portfolio
from tradewind.runtime._aio import open_aio_loop
from tradewind.storage import _sql
from tradewind.storage._backend import Backend, RetryableFailure
from tradewind.storage._errors import SchemaOutdated, StoreInUse, TransactionFailed
from tradewind.storage._migrations import available_migrations
from tradewind.storage._postgresql import (
    PostgresBackend,
    PostgresPool,
    PostgresRunLock,
    acquire_postgres_run_lock,
)
from tradewind.storage._records import PoolStatistics, RetryPolicy, StoreCounts
from tradewind.storage._rows import (
    DEAD_LETTERS,
    DENIALS,
    FILLS,
    INSTRUMENTS,
    ORDERS,
    PAPER_VENUE_CURSORS,
    PAPER_VENUE_FILLS,
    PAPER_VENUE_ORDERS,
    RUN_SUMMARIES,
    RUNS,
    bar_from_row,
    dead_letter_from_row,
    denial_from_row,
    event_from_row,
    fill_from_row,
    instrument_from_row,
    order_from_row,
    paper_venue_fill_from_row,
    paper_venue_order_from_row,
    run_from_row,
)
from tradewind.storage._sqlite import (
    SqliteBackend,
    SqliteRunLock,
    acquire_sqlite_run_lock,
    run_lock_path,
)
from tradewind.storage._uow import Transaction
from tradewind.storage._url import POSTGRESQL, StoreUrl, parse_store_url
from tradewind.storage._venue import PaperVenueState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from tradewind.actors._marketdata import Bar
    from tradewind.actors._orders import Fill, Order, OrderEvent
    from tradewind.actors._portfolio import Position
    from tradewind.actors._values import Instrument
    from tradewind.storage._records import DeadLetter, Denial, RunRecord
    from tradewind.storage._uow import Write

_log = structlog.get_logger("tradewind.storage")


def _order_from_joined(row: Sequence[Any]) -> Order:
    n = len(ORDERS.columns)
    last_event = None
    if row[n] is not None:
        last_event = event_from_row((None, None, None, None, row[n], row[n + 1]))
    return order_from_row(row[:n], last_event)


@attrs.define(eq=False)
class Store:
    """Everything the system accepts, kept exactly, atomically and without duplicates.

    Get one from `open_store`. Writes go through units of work
    (``async with store.transaction() as tx:``); reads are methods. Both backends
    (PostgreSQL, SQLite) behave the same; the contract suite in ``tests/storage`` checks it.
    """

    url: StoreUrl
    _backend: Backend
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    connect_timeout: float = 10.0
    _rng: random.Random = attrs.field(init=False)
    # The run lock this store took when it was opened (``open_store(run_lock=True)``).
    _held: RunLock | None = attrs.field(default=None, init=False)
    # A run holds the lock through this store (`run_lock`'s block is running).
    _run_active: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = self.retry.new_rng()

    @property
    def backend(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self.url.backend

    def statistics(self) -> PoolStatistics:
        """A snapshot of the store's connections (size, in use, idle, waiting)."""
        return self._backend.statistics()

    # ------------------------------------------------------------ the run lock

    @asynccontextmanager
    async def run_lock(self, *, wait: float = 0.0) -> AsyncIterator[None]:
        """Hold the store's run lock for the block: only one run trades from a store.

        `open_trading_system` takes it for the run's whole lifetime, before it reads or
        writes anything. PostgreSQL: a session-level advisory lock (keyed by the schema)
        on a dedicated connection outside the pool; SQLite file: ``flock`` on the file
        ``<database>-runlock`` next to it; in-memory SQLite: only this `Store` object
        (the database belongs to it). The lock goes with its holder: released when the
        block exits, and, because the server or the kernel drops it with the session or
        the descriptor, when the process dies (SIGKILL included). A store opened with
        ``open_store(..., run_lock=True)`` already holds it; the block then only marks
        the run.

        Readers and migrations do not take it: `tradewind report` and
        `tradewind db migrate` work while a run holds it.

        Args:
            wait: seconds to keep trying while another holds it (0: try once). A
                killed holder's PostgreSQL session ends a moment after the kill, when
                the server sees its connection close.

        Raises:
            StoreInUse: another run holds it (in another process, or through this store).
            StoreUnavailable: the database (or the lock file's folder) cannot be reached.
        """
        if self._run_active:
            raise StoreInUse(self.url.masked, lock=self._lock_name(), holder="this process")
        self._run_active = True
        try:
            async with _held_run_lock(
                self.url,
                wanted=self._held is None,  # a store opened with the lock holds it already
                wait=wait,
                connect_timeout=self.connect_timeout,
            ):
                yield
        finally:
            self._run_active = False

    def _lock_name(self) -> str:
        if self.backend == POSTGRESQL:
            return "advisory lock on the store's schema"
        return "this Store object" if self.url.is_memory else f"file {run_lock_path(self.url)}"

    # ------------------------------------------------------------ writing

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A unit of work: buffer writes in the block, commit them all when it exits.

        Yields:
            A `Transaction` whose synchronous methods buffer writes.

        Raises:
            ConflictingWrite: a write differs from the row stored under its key.
            RunNotFound: ``finish_run`` named a run never started.
            TransactionFailed: serialization failures or deadlocks persisted through
                every retry; names the last cause.
            StoreUnavailable: the database could not be reached or the connection was
                lost (retryable); `PoolExhausted` when no connection became free.
            StoreError: any other database error.

        In each case nothing of the unit is visible. An exception raised inside the block
        propagates and nothing is sent.

        Cancellation: cancelling the block before it exits sends nothing. Once it exits
        the unit runs as one database transaction: a cancellation then either arrives
        before the commit, and the transaction is rolled back (PostgreSQL), or waits for
        the unit to finish (SQLite). Every connection is returned either way. Because
        every write is idempotent on its natural key, replaying a unit whose outcome is
        unknown is always safe.
        """
        tx = Transaction()
        try:
            yield tx
        finally:
            tx.close()
        await self._commit(tx.writes())

    async def _commit(self, writes: tuple[Write, ...]) -> None:
        if not writes:
            await trio.lowlevel.checkpoint()
            return
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._backend.run_unit(writes)
            except RetryableFailure as exc:
                if attempt == attempts:
                    raise TransactionFailed(attempts, exc.cause) from exc
                delay = self.retry.backoff(attempt, self._rng)
                _log.warning(
                    "unit of work retried", attempt=attempt, cause=exc.cause, backoff=delay
                )
                await trio.sleep(delay)
            else:
                return

    # ------------------------------------------------------------ cold-start reads

    async def _fetch(self, sql: str, *args: object) -> Sequence[Sequence[Any]]:
        return await self._backend.fetch(sql, args)

    async def instruments(self) -> list[Instrument]:
        """Every stored instrument, by symbol."""
        rows = await self._fetch(_sql.select_all(INSTRUMENTS, "symbol"))
        return [instrument_from_row(r) for r in rows]

    async def fills(self) -> list[Fill]:
        """Every stored fill, oldest first (ties by execution id)."""
        rows = await self._fetch(_sql.select_all(FILLS, "ts, execution_id"))
        return [fill_from_row(r) for r in rows]

    async def portfolio(self, cash: Mapping[str, Any] | None = None) -> Portfolio:
        """A `Portfolio` over the stored instruments with every stored fill booked.

        Args:
            cash: starting cash per currency (none by default).

        Raises:
            UnknownInstrument: a fill names an instrument that was never stored.
        """
        portfolio = Portfolio(instruments=await self.instruments(), cash=dict(cash or {}))
        for fill in await self.fills():
            portfolio.apply_fill(fill)
        return portfolio

    async def positions(self) -> Mapping[str, Position]:
        """Positions rebuilt from the stored fills, by symbol (see `portfolio`)."""
        return (await self.portfolio()).positions

    async def orders(self) -> list[Order]:
        """Every stored order's latest snapshot, by client order id."""
        return [_order_from_joined(r) for r in await self._fetch(_sql.ORDERS_ALL)]

    async def open_orders(self) -> list[Order]:
        """Orders whose latest status is still working (not final), by client order id."""
        return [_order_from_joined(r) for r in await self._fetch(_sql.ORDERS_OPEN)]

    async def order_events(self, client_order_id: str) -> list[OrderEvent]:
        """The journal of one order, in sequence (empty if none)."""
        rows = await self._fetch(_sql.ORDER_EVENTS_OF, client_order_id)
        return [event_from_row(r) for r in rows]

    async def max_client_order_seq(self, strategy_id: str) -> int:
        """The highest client-order sequence stored for a strategy (0 if none)."""
        rows = await self._fetch(_sql.MAX_CLIENT_ORDER_SEQ, strategy_id)
        value = rows[0][0]
        return 0 if value is None else int(value)

    async def last_bars(self, before: int | None = None) -> dict[tuple[str, str], Bar]:
        """The newest stored bar of every (instrument, timeframe) -- among the bars with
        ``ts < before`` (ns) if given; a series without one is left out."""
        sql = _sql.last_bars(postgresql=self.backend == POSTGRESQL, before=before is not None)
        rows = await self._fetch(sql, *(() if before is None else (before,)))
        bars = [bar_from_row(r) for r in rows]
        return {(b.instrument, b.timeframe): b for b in bars}

    async def bars(
        self,
        instrument: str | None = None,
        timeframe: str | None = None,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
    ) -> list[Bar]:
        """Stored bars, oldest first, optionally filtered.

        Args:
            instrument: only this symbol.
            timeframe: only this timeframe.
            start: only bars with ``ts >= start`` (ns).
            end: only bars with ``ts < end`` (ns).
            limit: at most this many.
        """
        args = [a for a in (instrument, timeframe, start, end, limit) if a is not None]
        sql = _sql.select_bars(
            instrument=instrument is not None,
            timeframe=timeframe is not None,
            start=start is not None,
            end=end is not None,
            limit=limit is not None,
        )
        return [bar_from_row(r) for r in await self._fetch(sql, *args)]

    async def denials(self) -> list[Denial]:
        """Every stored denial, by time then client order id."""
        rows = await self._fetch(_sql.select_all(DENIALS, "ts, client_order_id"))
        return [denial_from_row(r) for r in rows]

    async def dead_letters(self) -> list[DeadLetter]:
        """Every stored dead letter, by time, actor and seq."""
        rows = await self._fetch(_sql.select_all(DEAD_LETTERS, "ts, actor, seq"))
        return [dead_letter_from_row(r) for r in rows]

    async def runs(self) -> list[RunRecord]:
        """Every run, by start time then id."""
        rows = await self._fetch(_sql.select_all(RUNS, "started_ts, run_id"))
        return [run_from_row(r) for r in rows]

    async def run(self, run_id: str) -> RunRecord | None:
        """One run by id, or None."""
        rows = await self._fetch(_sql.select_by_key(RUNS, RUNS.columns), run_id)
        return run_from_row(rows[0]) if rows else None

    async def run_summary(self, run_id: str) -> str | None:
        """The summary text stored for a run (`Transaction.write_run_summary`), or None."""
        rows = await self._fetch(_sql.select_by_key(RUN_SUMMARIES, ("summary",)), run_id)
        return str(rows[0][0]) if rows else None

    async def paper_venue(self) -> PaperVenueState:
        """The paper venue's own state (`Transaction.write_paper_venue`): its orders by
        submission, its fills in execution order, its cursors. Empty before the venue
        first wrote (or after `Transaction.clear_paper_venue`).

        Read in one call per table; the venue is the tables' only writer and is not
        running while it loads them, so the three reads agree.
        """
        orders = await self._fetch(_sql.select_all(PAPER_VENUE_ORDERS, "submit_no"))
        fills = await self._fetch(_sql.select_all(PAPER_VENUE_FILLS, "fill_no"))
        cursors = await self._fetch(_sql.select_all(PAPER_VENUE_CURSORS, "instrument, timeframe"))
        return PaperVenueState(
            orders=(paper_venue_order_from_row(r) for r in orders),
            fills=(paper_venue_fill_from_row(r) for r in fills),
            cursors={(str(r[0]), str(r[1])): int(r[2]) for r in cursors},
        )

    async def counts(self) -> StoreCounts:
        """Row counts of every table."""
        rows = await self._fetch(_sql.COUNTS)
        return StoreCounts(*(int(v) for v in rows[0]))


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception a group of (nested) single-exception groups wraps, or None."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup):
        if len(inner.exceptions) != 1:
            return None
        inner = inner.exceptions[0]
    return inner


@asynccontextmanager
async def _aio_loop() -> AsyncIterator[None]:
    """`open_aio_loop`, without the exception groups of the loop's own nursery.

    When the store opens the trio-asyncio loop itself, that loop's nursery wraps
    everything raised in the block (a `ConflictingWrite`, a `StoreUnavailable`, the
    caller's own error) in an `ExceptionGroup`. A store is a plain resource, not a
    nursery, so a lone exception is unwrapped and re-raised as itself.
    """
    try:
        async with open_aio_loop():
            yield
    except BaseExceptionGroup as group:
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole  # noqa: B904 -- the group only wrapped it; its own __cause__ is kept


RunLock = PostgresRunLock | SqliteRunLock


async def acquire_run_lock(
    url: StoreUrl, *, wait: float = 0.0, connect_timeout: float = 10.0
) -> RunLock:
    """Take the run lock of the store at ``url`` (see `Store.run_lock`); the caller
    releases it (``await lock.release()``). PostgreSQL: inside ``open_aio_loop()``.

    Raises:
        StoreInUse: another run holds it.
        StoreUnavailable: the database (or the lock file's folder) cannot be reached.
    """
    if url.backend == POSTGRESQL:
        return await acquire_postgres_run_lock(url, wait=wait, connect_timeout=connect_timeout)
    return await acquire_sqlite_run_lock(url, wait=wait)


@asynccontextmanager
async def _held_run_lock(
    url: StoreUrl, *, wanted: bool, connect_timeout: float, wait: float = 0.0
) -> AsyncIterator[RunLock | None]:
    if not wanted:
        yield None
        return
    lock = await acquire_run_lock(url, wait=wait, connect_timeout=connect_timeout)
    try:
        yield lock
    finally:
        await lock.release()


@asynccontextmanager
async def open_store(
    url: str,
    *,
    pool_size: int = 10,
    acquire_timeout: float = 10.0,
    connect_timeout: float = 10.0,
    command_timeout: float | None = 60.0,
    migrate: bool = True,
    retry: RetryPolicy | None = None,
    run_lock: bool = False,
) -> AsyncIterator[Store]:
    """Open the store named by ``url`` for the block, migrating its schema first.

    Args:
        url: ``postgresql://user:pass@host:port/db``, ``sqlite:///relative.db``,
            ``sqlite:////absolute.db`` or ``sqlite://:memory:``.
        pool_size: PostgreSQL: most connections open at once (SQLite: always one).
        acquire_timeout: PostgreSQL: seconds to wait for a free connection before
            `PoolExhausted`.
        connect_timeout: PostgreSQL: seconds to wait for a new connection.
        command_timeout: PostgreSQL: seconds any one statement may take (None: no limit).
        migrate: apply missing migrations (under an advisory lock on PostgreSQL); with
            False, a schema that lacks one raises `SchemaOutdated`.
        retry: how units of work are retried after serialization failures and deadlocks.
        run_lock: take the store's run lock (`Store.run_lock`) first, before the
            database is opened or migrated, and hold it until the store closes.

    Yields:
        The open `Store`.

    Raises:
        InvalidStoreUrl: the URL is malformed or its scheme unknown.
        StoreInUse: ``run_lock=True`` and another run holds the lock; nothing of the
            database was read or written.
        StoreUnavailable: the database cannot be reached or refuses the login.
        SchemaOutdated: ``migrate=False`` and migrations are missing.
        ValueError: ``pool_size`` is below 1.

    Cancellation: closing is shielded and bounded; every connection is released also
    when the block is cancelled. PostgreSQL needs the trio-asyncio loop: the store
    reuses the one open in this trio run or opens its own for the block.
    """
    parsed = parse_store_url(url)
    if pool_size < 1:
        msg = f"pool_size: must be >= 1, got {pool_size}"
        raise ValueError(msg)
    policy = retry if retry is not None else RetryPolicy()
    if parsed.backend == POSTGRESQL:
        async with (
            _aio_loop(),
            _held_run_lock(parsed, wanted=run_lock, connect_timeout=connect_timeout) as lock,
        ):
            pool = PostgresPool(
                url=parsed,
                max_size=pool_size,
                acquire_timeout=acquire_timeout,
                connect_timeout=connect_timeout,
                command_timeout=command_timeout,
            )
            pg = PostgresBackend(pool)
            try:
                await _prepare_schema(pg, parsed, migrate=migrate)
                yield _new_store(parsed, pg, policy, connect_timeout, lock)
            finally:
                await pool.aclose()
        return
    async with _held_run_lock(parsed, wanted=run_lock, connect_timeout=connect_timeout) as lock:
        lite = SqliteBackend(parsed)
        await lite.open()
        try:
            await _prepare_schema(lite, parsed, migrate=migrate)
            yield _new_store(parsed, lite, policy, connect_timeout, lock)
        finally:
            await lite.aclose()


def _new_store(
    url: StoreUrl,
    backend: Backend,
    retry: RetryPolicy,
    connect_timeout: float,
    lock: RunLock | None,
) -> Store:
    store = Store(url, backend, retry, connect_timeout)
    store._held = lock  # the opener hands the lock it took to the store it made
    return store


async def _prepare_schema(
    backend: PostgresBackend | SqliteBackend, url: StoreUrl, *, migrate: bool
) -> list[str]:
    missing = await backend.migrate(available_migrations(url.backend), apply=migrate)
    if not migrate and missing:
        raise SchemaOutdated(tuple(missing))
    if migrate and missing:
        _log.info("store migrated", url=url.masked, applied=missing)
    return missing


async def migrate_store(url: str, *, connect_timeout: float = 10.0) -> list[str]:
    """Apply every missing migration to the store at ``url``; return what was applied.

    Raises:
        InvalidStoreUrl: the URL is malformed or its scheme unknown.
        StoreUnavailable: the database cannot be reached or refuses the login.
    """
    applied: list[str] = []
    parsed = parse_store_url(url)
    if parsed.backend == POSTGRESQL:
        async with _aio_loop():
            pool = PostgresPool(
                url=parsed,
                max_size=1,
                acquire_timeout=connect_timeout,
                connect_timeout=connect_timeout,
                command_timeout=None,
            )
            try:
                applied = await PostgresBackend(pool).migrate(
                    available_migrations(parsed.backend), apply=True
                )
            finally:
                await pool.aclose()
        return applied
    lite = SqliteBackend(parsed)
    await lite.open()
    try:
        applied = await lite.migrate(available_migrations(parsed.backend), apply=True)
    finally:
        await lite.aclose()
    return applied
