"""The PostgreSQL backend: asyncpg on the run's trio-asyncio loop, behind a trio-side pool.

Design notes
------------
* Bridging. asyncpg is asyncio-only; it runs on the trio-asyncio loop of the current trio
  run (`tradewind.runtime._aio`). Each unit of work is ONE asyncio coroutine
  (`_run_unit`) run through ONE bridged call, holding one connection and one database
  transaction; each read is one bridged call too. Per-statement bridging was measured
  at about 1.4x slower (see the design document), and a single coroutine is also what
  makes the unit replayable as a whole.
* The pool is ours, not asyncpg's, and lives on the trio side: a `trio.Semaphore` bounds
  the holders and gives exact counts of who waits (asyncpg's pool exposes no waiter
  count), acquiring is a trio wait under ``move_on_after(acquire_timeout)`` that ends in
  `PoolExhausted` with the statistics, and the release runs in a ``finally`` on the
  trio side, so a connection comes back also when its holder is cancelled. The decision
  to reuse or drop a connection is synchronous: a connection is reused only after the
  unit finished or failed on a server-side error (asyncpg has then rolled the
  transaction back); after a lost connection, a timeout or a cancellation it is
  terminated on the spot (`Connection.terminate` is synchronous) and a new one is made
  on the next acquire. Nothing ever waits to "clean up" a connection in an unknown state.
* Bulk writes (64 rows or more) first try one COPY straight into the table under a
  savepoint: when every row is new -- the common case -- that is all. If a key is
  already stored the COPY fails, the savepoint is rolled back, and the rows take the
  idempotent path: COPY into a per-connection temporary staging table (created once
  per connection, ``ON COMMIT DELETE ROWS``), then ``INSERT ... SELECT ... ON CONFLICT
  DO NOTHING`` returning how many rows went in. Measured here, the direct COPY halves
  the cost of writing new bars (the staging path writes every row twice). Only when
  fewer went in than were staged (a replay, a duplicate, or a conflict) is the
  conflict check run: one join of the staging table with the target on its primary
  key, comparing the value columns with ``IS DISTINCT FROM`` (numerically: 1.0 equals
  1.00, as `Decimal` does).
* Error translation happens here, at the edge: SQLSTATE 40001/40P01 become
  `RetryableFailure` (the store retries the unit), lost or refused connections and
  timeouts `StoreUnavailable`, other server errors `StoreError`; asyncpg's exceptions
  never leave this module. Messages carry the masked URL, never the password.
* Migrations run in one transaction under ``pg_advisory_xact_lock``: two processes
  starting together serialise on the lock and the second finds nothing left to do.
* The run lock (`PostgresRunLock`) is a session-level advisory lock,
  ``pg_try_advisory_lock(key)``, held on a dedicated connection outside the pool (a
  pooled connection is shared, terminated and replaced at will; the lock must live
  exactly as long as the run). The key is derived from the schema the store's tables
  live in (``current_schema()``), so two stores in two schemas of one database are two
  books, and advisory locks are per database anyway. PostgreSQL drops a session's locks
  when the session ends, so a run that dies (SIGKILL included) releases it as soon as
  the server sees the connection close. The release is polite first
  (``pg_advisory_unlock``, then close: a run started right after finds the lock free),
  bounded and shielded, and falls back to terminating the connection.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, NoReturn

import asyncpg
import attrs
import trio
from tradewind.runtime._aio import run_aio
from tradewind.storage._backend import RetryableFailure
from tradewind.storage._errors import (
    ConflictingWrite,
    InvalidStoreUrl,
    PoolExhausted,
    RunNotFound,
    StoreError,
    StoreInUse,
    StoreUnavailable,
    UnstorableValue,
)
from tradewind.storage._migrations import MIGRATIONS_TABLE, Migration, missing_migrations
from tradewind.storage._records import PoolStatistics
from tradewind.storage._rows import (
    BARS,
    DEAD_LETTERS,
    DENIALS,
    FILLS,
    ORDER_EVENTS,
    PAPER_VENUE_FILLS,
    RUNS,
)
from tradewind.storage._sql import (
    FINISH_RUN,
    create_staging,
    delete_all,
    insert_from_staging,
    staged_conflict,
    staging_name,
    upsert,
)
from tradewind.storage._uow import WriteKind
from tradewind.storage._url import StoreUrl

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from tradewind.storage._uow import Write

# A fixed 64-bit key for the migration lock ("tradewnd" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x7472_6164_6577_6E64
_CLOSE_TIMEOUT: Final = 2.0
_RUN_LOCK_POLL: Final = 0.05
# From this many rows an append first tries a COPY straight into the table (see
# `_copy_directly`); smaller units go through the staging table at once.
DIRECT_COPY_MIN_ROWS: Final = 64
_RETRYABLE: Final = {"40001": "serialization failure", "40P01": "deadlock detected"}
# SQLSTATE classes that mean the connection or the server is gone or refusing:
# 08 connection exception, 53 insufficient resources, 57 operator intervention
# (pg_terminate_backend, shutdown), 28 invalid authorization, 3D no such database.
_UNAVAILABLE_CLASSES: Final = frozenset({"08", "53", "57", "28", "3D"})
_STAGED_TABLES: Final = (
    BARS,
    FILLS,
    ORDER_EVENTS,
    DENIALS,
    DEAD_LETTERS,
    RUNS,
    PAPER_VENUE_FILLS,
)
_CREATE_STAGING: Final = ";\n".join(create_staging(t) for t in _STAGED_TABLES)


@attrs.define(eq=False)
class _Connection:
    """A pooled asyncpg connection and what this pool knows about it."""

    raw: asyncpg.Connection
    staged: bool = False  # the temporary staging tables exist on this session
    broken: bool = False  # a lost connection, a timeout: drop it, never reuse it


# ---------------------------------------------------------------- asyncio side


async def _run_unit(conn: _Connection, writes: tuple[Write, ...]) -> None:
    """Apply a whole unit of work in one transaction (runs on the asyncio loop)."""
    raw = conn.raw
    if not conn.staged:
        await raw.execute(_CREATE_STAGING)
        conn.staged = True
    async with raw.transaction():
        for write in writes:
            await _apply(raw, write)


async def _apply(raw: asyncpg.Connection, write: Write) -> None:
    table = write.table
    if write.kind is WriteKind.APPEND:
        if len(write.rows) >= DIRECT_COPY_MIN_ROWS and await _copy_directly(raw, write):
            return
        await raw.copy_records_to_table(
            staging_name(table), records=write.rows, columns=table.columns
        )
        inserted = await raw.fetchval(insert_from_staging(table))
        if inserted < len(write.rows):
            key = await raw.fetchrow(staged_conflict(table, write.compare))
            if key is not None:
                raise ConflictingWrite(table.name, tuple(key))
    elif write.kind is WriteKind.FINISH_RUN:
        for row in write.rows:
            status = await raw.execute(FINISH_RUN, *row)
            if status == "UPDATE 0":
                raise RunNotFound(row[0])
    elif write.kind is WriteKind.CLEAR:
        await raw.execute(delete_all(table))
    else:
        newer_only = write.kind is WriteKind.UPSERT_NEWER
        await raw.executemany(upsert(table, newer_only=newer_only), write.rows)


async def _copy_directly(raw: asyncpg.Connection, write: Write) -> bool:
    """COPY the rows straight into their table under a savepoint; False if a key exists.

    The common bulk case -- every row new -- then costs one COPY. A stored key (a replay,
    a duplicate, a conflict) aborts the COPY; the savepoint is rolled back and the
    caller takes the staging path, which skips duplicates and finds conflicts.
    """
    try:
        async with raw.transaction():  # nested: a savepoint
            await raw.copy_records_to_table(
                write.table.name, records=write.rows, columns=write.table.columns
            )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def _migrate(
    raw: asyncpg.Connection, available: tuple[Migration, ...], *, apply: bool
) -> list[str]:
    """Apply (or, with ``apply=False``, only list) the missing migrations."""
    if not apply:
        exists = await raw.fetchval("SELECT to_regclass($1) IS NOT NULL", MIGRATIONS_TABLE)
        applied: set[str] = set()
        if exists:
            rows = await raw.fetch(f"SELECT version FROM {MIGRATIONS_TABLE}")  # noqa: S608
            applied = {r[0] for r in rows}
        return [m.version for m in missing_migrations(available, applied)]
    done: list[str] = []
    async with raw.transaction():
        await raw.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await raw.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
            "(version TEXT PRIMARY KEY, applied_ts BIGINT NOT NULL)"
        )
        rows = await raw.fetch(f"SELECT version FROM {MIGRATIONS_TABLE}")  # noqa: S608
        for migration in missing_migrations(available, {r[0] for r in rows}):
            await raw.execute(migration.sql)
            await raw.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, applied_ts) VALUES ($1, $2)",  # noqa: S608
                migration.version,
                time.time_ns(),
            )
            done.append(migration.version)
    return done


# ---------------------------------------------------------------- trio side


def _translate(exc: Exception, url: StoreUrl, conn: _Connection | None) -> Exception | None:
    """The tradewind error for an asyncpg/OS exception (None: not ours to translate).

    Marks the connection broken when it may be unusable.
    """
    if isinstance(exc, asyncpg.PostgresError):
        state = str(exc.sqlstate)
        if state in _RETRYABLE:
            return RetryableFailure(f"SQLSTATE {state} ({_RETRYABLE[state]}): {exc}")
        if state[:2] in _UNAVAILABLE_CLASSES:
            if conn is not None:
                conn.broken = True
            what = (
                "refused the login"
                if state.startswith("28")
                else "has no such database"
                if state == "3D000"
                else "is unavailable"
            )
            return StoreUnavailable(
                f"PostgreSQL at {url.masked} {what}: SQLSTATE {state}: {url.scrub(str(exc))}"
            )
        return StoreError(f"PostgreSQL at {url.masked}: SQLSTATE {state}: {url.scrub(str(exc))}")
    if isinstance(exc, OverflowError) or (
        conn is not None and isinstance(exc, (ValueError, TypeError))
    ):
        # asyncpg could not encode a value for its column (e.g. an int beyond BIGINT)
        return UnstorableValue(f"PostgreSQL at {url.masked}: a value cannot be stored: {exc}")
    if isinstance(exc, (ValueError, asyncpg.ClientConfigurationError)):
        # asyncpg refusing the DSN's parameters (e.g. an unknown sslmode)
        return InvalidStoreUrl(f"store URL {url.masked!r}: {url.scrub(str(exc))}")
    if isinstance(exc, (asyncpg.InterfaceError, OSError, TimeoutError, EOFError)):
        if conn is not None:
            conn.broken = True
        detail = url.scrub(str(exc)) or "no detail"
        return StoreUnavailable(
            f"PostgreSQL at {url.masked} is unreachable or the connection was lost: "
            f"{type(exc).__name__}: {detail}"
        )
    if isinstance(exc, asyncpg.InternalClientError):
        # asyncpg's protocol is out of step with the server, e.g. a backend that was
        # terminated while its connection sat idle: the FATAL was read (the protocol
        # then waits for a sync that never comes) but not yet the close, so the pool
        # could not tell it was gone. The connection is unusable: a lost connection.
        if conn is not None:
            conn.broken = True
        return StoreUnavailable(
            f"PostgreSQL at {url.masked}: the connection is unusable (lost while idle?): "
            f"{type(exc).__name__}: {url.scrub(str(exc))}"
        )
    if type(exc).__module__.startswith("asyncpg"):
        if conn is not None:
            conn.broken = True
        return StoreError(
            f"PostgreSQL at {url.masked}: {type(exc).__name__}: {url.scrub(str(exc))}"
        )
    return exc


def _reraise(exc: Exception, url: StoreUrl, conn: _Connection | None) -> NoReturn:
    """Raise the tradewind error for ``exc`` (from it), or ``exc`` itself if not ours."""
    translated = _translate(exc, url, conn)
    if translated is None:
        raise exc
    raise translated from exc


@attrs.define(eq=False)
class PostgresPool:
    """A bounded pool of asyncpg connections, managed from trio.

    Acquiring waits at most ``acquire_timeout`` seconds for a free slot, then raises
    `PoolExhausted` with the statistics. A connection is returned to the pool when its
    holder is done -- also when the holder was cancelled -- unless it may be unusable
    (lost, timed out, cancelled mid-statement), in which case it is terminated and a
    fresh one is made on a later acquire.
    """

    url: StoreUrl
    max_size: int
    acquire_timeout: float
    connect_timeout: float
    command_timeout: float | None
    _slots: trio.Semaphore = attrs.field(init=False)
    _idle: list[_Connection] = attrs.field(factory=list, init=False)
    _open: list[_Connection] = attrs.field(factory=list, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._slots = trio.Semaphore(self.max_size)

    def statistics(self) -> PoolStatistics:
        """A snapshot: open connections, the bound, holders, idle, waiters."""
        return PoolStatistics(
            size=len(self._open),
            max_size=self.max_size,
            in_use=self.max_size - self._slots.value,
            idle=len(self._idle),
            waiting=self._slots.statistics().tasks_waiting,
        )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_Connection]:
        """Hold one connection for the block.

        Raises:
            PoolExhausted: no slot became free within ``acquire_timeout``.
            StoreUnavailable: a new connection could not be made.
            StoreError: the store is closed.

        Cancellation: safe at any point; the slot is always released, and a connection
        whose holder was cancelled is terminated rather than reused.
        """
        if self._closed:
            msg = f"the store for {self.url.masked} is closed"
            raise StoreError(msg)
        with trio.move_on_after(self.acquire_timeout) as waited:
            await self._slots.acquire()
        if waited.cancelled_caught:
            raise PoolExhausted(self.acquire_timeout, self.statistics())
        try:
            conn = self._take_idle()
            if conn is None:
                conn = await self._connect()
            reusable = False
            try:
                yield conn
                reusable = True
            except StoreError:
                reusable = True  # a server-side error: asyncpg rolled back
                raise
            except RetryableFailure:
                reusable = True
                raise
            finally:
                self._give_back(conn, reusable=reusable)
        finally:
            self._slots.release()

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.raw.is_closed():
                return conn
            self._forget(conn)  # the server or the network closed it while idle
        return None

    async def _connect(self) -> _Connection:
        try:
            raw = await run_aio(
                asyncpg.connect,
                self.url.dsn,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
            )
        except Exception as exc:  # noqa: BLE001 -- translated (or re-raised) by _reraise
            _reraise(exc, self.url, None)
        conn = _Connection(raw)
        self._open.append(conn)
        return conn

    def _give_back(self, conn: _Connection, *, reusable: bool) -> None:
        raw = conn.raw
        if (
            reusable
            and not self._closed
            and not conn.broken
            and not raw.is_closed()
            and not raw.is_in_transaction()
        ):
            self._idle.append(conn)
            return
        raw.terminate()
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.remove(conn)

    async def aclose(self) -> None:
        """Close every connection: idle ones politely, any still held by force.

        Cancellation: shielded and bounded (a few seconds); whatever is left is
        terminated.
        """
        self._closed = True
        idle, self._idle = self._idle, []
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            for conn in idle:
                try:
                    await run_aio(conn.raw.close, timeout=_CLOSE_TIMEOUT)
                except Exception:  # noqa: BLE001 -- closing: a failure only means "terminate"
                    conn.raw.terminate()
                self._forget(conn)
        for conn in self._open:
            conn.raw.terminate()
        self._open.clear()


@attrs.define(eq=False)
class PostgresBackend:
    """`Backend` over a `PostgresPool`."""

    pool: PostgresPool

    async def run_unit(self, writes: tuple[Write, ...]) -> None:
        """Apply ``writes`` in one transaction through one bridged call."""
        async with self.pool.connection() as conn:
            try:
                await run_aio(_run_unit, conn, writes)
            except (StoreError, RetryableFailure):
                raise
            except Exception as exc:  # noqa: BLE001 -- translated (or re-raised) by _reraise
                _reraise(exc, self.pool.url, conn)

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        """Run one query through one bridged call."""
        async with self.pool.connection() as conn:
            try:
                rows: Sequence[Sequence[Any]] = await run_aio(conn.raw.fetch, sql, *args)
            except Exception as exc:  # noqa: BLE001 -- translated (or re-raised) by _reraise
                _reraise(exc, self.pool.url, conn)
            return rows

    async def migrate(self, available: tuple[Migration, ...], *, apply: bool) -> list[str]:
        """Apply the missing migrations (or list them); returns their versions."""
        async with self.pool.connection() as conn:
            try:
                return await run_aio(_migrate, conn.raw, available, apply=apply)
            except Exception as exc:  # noqa: BLE001 -- translated (or re-raised) by _reraise
                _reraise(exc, self.pool.url, conn)

    def statistics(self) -> PoolStatistics:
        """The pool's statistics."""
        return self.pool.statistics()


# ---------------------------------------------------------------- the run lock


def run_lock_key(schema: str) -> int:
    """The advisory lock key of the run lock on the store in ``schema``: a signed 64-bit
    hash, stable across processes and versions."""
    digest = hashlib.blake2b(f"tradewind run lock:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _try_run_lock(raw: asyncpg.Connection) -> tuple[str, int, bool, int | None]:
    """(schema, key, taken, the holder's backend pid if not taken) -- on the asyncio loop."""
    schema = str(
        await raw.fetchval("SELECT coalesce(current_schema(), current_setting('search_path'))")
    )
    key = run_lock_key(schema)
    if await raw.fetchval("SELECT pg_try_advisory_lock($1)", key):
        return schema, key, True, None
    # A bigint key shows in pg_locks as classid (high 32 bits) and objid (low), objsubid 1.
    holder = await raw.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1",
        (key >> 32) & 0xFFFF_FFFF,
        key & 0xFFFF_FFFF,
    )
    return schema, key, False, None if holder is None else int(holder)


async def _unlock_and_close(raw: asyncpg.Connection, key: int) -> None:
    await raw.execute("SELECT pg_advisory_unlock($1)", key)
    await raw.close(timeout=_CLOSE_TIMEOUT)


@attrs.define(eq=False)
class PostgresRunLock:
    """A held run lock: the dedicated session that holds the advisory lock."""

    url: StoreUrl
    schema: str
    key: int
    _raw: asyncpg.Connection | None

    async def release(self) -> None:
        """Unlock and close the session (shielded, bounded; else terminate it)."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            try:
                await run_aio(_unlock_and_close, raw, self.key)
            except Exception:  # noqa: BLE001 -- releasing: a failure only means "terminate"
                raw.terminate()
        if not raw.is_closed():
            raw.terminate()  # the session ends, and its lock with it


async def acquire_postgres_run_lock(
    url: StoreUrl, *, wait: float = 0.0, connect_timeout: float = 10.0
) -> PostgresRunLock:
    """Take the run lock of a PostgreSQL store, trying for at most ``wait`` seconds.

    Needs the trio-asyncio loop (`tradewind.runtime._aio.open_aio_loop`).

    Raises:
        StoreInUse: another session (another run) holds it.
        StoreUnavailable: the database cannot be reached or refuses the login.
        InvalidStoreUrl: asyncpg refuses the URL's parameters.
    """
    try:
        raw = await run_aio(asyncpg.connect, url.dsn, timeout=connect_timeout)
    except Exception as exc:  # noqa: BLE001 -- translated (or re-raised) by _reraise
        _reraise(exc, url, None)
    held = False
    try:
        deadline = trio.current_time() + wait
        while True:
            try:
                schema, key, held, holder = await run_aio(_try_run_lock, raw)
            except Exception as exc:  # noqa: BLE001 -- translated (or re-raised) by _reraise
                _reraise(exc, url, None)
            if held:
                return PostgresRunLock(url, schema, key, raw)
            if trio.current_time() >= deadline:
                who = f"PostgreSQL backend pid {holder}" if holder is not None else ""
                raise StoreInUse(url.masked, lock=f"advisory lock on schema {schema!r}", holder=who)
            await trio.sleep(min(_RUN_LOCK_POLL, max(0.0, deadline - trio.current_time())))
    finally:
        if not held:
            raw.terminate()
