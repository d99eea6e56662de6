"""The SQLite backend: the standard library's sqlite3 on one worker thread at a time.

Design notes
------------
* sqlite3 blocks, so every call runs in ``trio.to_thread.run_sync`` under the store's
  ``CapacityLimiter(1)``: one statement stream at a time on one connection (opened with
  ``check_same_thread=False``, which is safe because the limiter serialises every use).
  A unit of work is ONE such call doing ``BEGIN IMMEDIATE`` ... ``COMMIT``, so it takes
  the write lock up front (no lock upgrade deadlock between two processes) and is atomic.
  The thread call is not abandoned on cancellation: a cancelled caller waits for the
  unit (milliseconds) to commit or roll back, so a cancellation can never leave a
  transaction open on the shared connection.
* Decimals are stored as their exact string in TEXT columns (never REAL), so they come
  back identical. Because strings compare as text, a possible conflict found by SQL is
  confirmed with `Decimal` equality in Python (1.0 == 1.00, as PostgreSQL's NUMERIC
  compares), and only when fewer rows went in than were written.
* Autocommit mode (``isolation_level=None``) so the module's implicit transactions never
  interfere with the explicit ``BEGIN IMMEDIATE``; WAL for file databases so readers in
  other processes are not blocked by a writer; ``busy_timeout`` so a second process
  waits for the write lock before SQLite reports "database is locked", which the store
  then retries like a serialization failure.
* The run lock (`SqliteRunLock`) is an OS file lock, ``flock(LOCK_EX | LOCK_NB)``, on a
  file next to the database (``<database>-runlock``, after SQLite's own ``-wal`` and
  ``-shm``), never on the database file itself, whose locks belong to SQLite: readers
  (``tradewind report``) and the migration's ``BEGIN IMMEDIATE`` are not affected. The
  kernel drops the lock when its descriptor closes, so a process that dies (SIGKILL
  included) leaves nothing behind; the descriptor is not inheritable (PEP 446), so a
  supervised child process that outlives a killed run does not keep it. The file itself
  stays (removing it would let a third process lock a fresh inode while a second still
  holds the old one); it holds the holder's process id, for the refusal's message. An
  in-memory database belongs to one connection of one process: it needs no file lock.
* sqlite3 exceptions are translated here: busy/locked -> `RetryableFailure`, cannot open
  or I/O errors -> `StoreUnavailable`, anything else -> `StoreError`.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from tradewind.storage._backend import RetryableFailure
from tradewind.storage._errors import (
    ConflictingWrite,
    RunNotFound,
    StoreError,
    StoreInUse,
    StoreUnavailable,
    UnstorableValue,
)
from tradewind.storage._migrations import MIGRATIONS_TABLE, Migration, missing_migrations
from tradewind.storage._records import PoolStatistics
from tradewind.storage._rows import plain_decimal
from tradewind.storage._sql import (
    FINISH_RUN,
    delete_all,
    for_sqlite,
    insert_ignore,
    select_by_key,
    upsert,
)
from tradewind.storage._uow import WriteKind
from tradewind.storage._url import StoreUrl

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tradewind.storage._rows import Row
    from tradewind.storage._uow import Write

_BUSY_TIMEOUT_MS: Final = 5000
#: Appended to the database file's path to name its run lock file.
RUN_LOCK_SUFFIX: Final = "-runlock"
_RUN_LOCK_POLL: Final = 0.05


def _decimal_text(value: Decimal) -> str:
    text = str(value)
    # Only a text with an exponent can need `plain_decimal` (a positive one written out);
    # the common case, plain digits, skips its `as_tuple`.
    return str(plain_decimal(value)) if "E" in text else text


def _adapt(row: Row) -> tuple[Any, ...]:
    return tuple([_decimal_text(v) if isinstance(v, Decimal) else v for v in row])


def _same(stored: object, written: object) -> bool:
    if isinstance(written, Decimal):
        return stored is not None and Decimal(str(stored)) == written
    if isinstance(written, bool):
        return stored == int(written)
    return stored == written


def _translate(exc: sqlite3.Error, url: StoreUrl) -> Exception:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in text or "busy" in text:
            return RetryableFailure(f"SQLite database is busy: {text}")
        return StoreUnavailable(f"SQLite database {url.masked}: {text}")
    return StoreError(f"SQLite database {url.masked}: {type(exc).__name__}: {text}")


@attrs.define(eq=False)
class SqliteBackend:
    """`Backend` over one sqlite3 connection used by one thread at a time."""

    url: StoreUrl
    _conn: sqlite3.Connection | None = attrs.field(default=None, init=False)
    _limiter: trio.CapacityLimiter = attrs.field(
        factory=lambda: trio.CapacityLimiter(1), init=False
    )

    async def open(self) -> None:
        """Open the database file (created if missing).

        Raises:
            StoreUnavailable: it cannot be opened (missing folder, permissions).
        """
        self._conn = await self._call(self._open_sync)

    def _open_sync(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.url.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if not self.url.is_memory:
                conn.execute("PRAGMA journal_mode = WAL")
                # FULL or NORMAL only (the URL parser refuses anything else).
                conn.execute(f"PRAGMA synchronous = {self.url.synchronous}")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    async def aclose(self) -> None:
        """Close the connection. Cancellation: shielded; the close itself is instant."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with trio.CancelScope(shield=True):
                await self._call(conn.close)

    async def _call(self, fn: Callable[[], Any]) -> Any:  # noqa: ANN401 -- callers type the result
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise _translate(exc, self.url) from exc
        except OverflowError as exc:  # an int beyond SQLite's 64-bit INTEGER
            msg = f"SQLite database {self.url.masked}: a value cannot be stored: {exc}"
            raise UnstorableValue(msg) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            msg = f"the store for {self.url.masked} is closed"
            raise StoreError(msg)
        return self._conn

    def statistics(self) -> PoolStatistics:
        """One connection; in use while a call runs on it."""
        stats = self._limiter.statistics()
        size = 0 if self._conn is None else 1
        return PoolStatistics(
            size=size,
            max_size=1,
            in_use=stats.borrowed_tokens,
            idle=size - stats.borrowed_tokens if size else 0,
            waiting=stats.tasks_waiting,
        )

    # ------------------------------------------------------------ units of work

    async def run_unit(self, writes: tuple[Write, ...]) -> None:
        """Apply ``writes`` in one transaction in one worker-thread call."""
        conn = self._connection()
        await self._call(lambda: self._run_unit_sync(conn, writes))

    @staticmethod
    def _run_unit_sync(conn: sqlite3.Connection, writes: tuple[Write, ...]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                _apply(conn, write)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        """Run one query in one worker-thread call."""
        conn = self._connection()
        query = for_sqlite(sql)
        rows: list[tuple[Any, ...]] = await self._call(
            lambda: conn.execute(query, _adapt(args)).fetchall()
        )
        return rows

    async def migrate(self, available: tuple[Migration, ...], *, apply: bool) -> list[str]:
        """Apply the missing migrations (or list them); returns their versions."""
        conn = self._connection()
        done: list[str] = await self._call(lambda: _migrate_sync(conn, available, apply=apply))
        return done


def _apply(conn: sqlite3.Connection, write: Write) -> None:
    table = write.table
    rows = [_adapt(r) for r in write.rows]
    if write.kind is WriteKind.APPEND:
        before = conn.total_changes
        conn.executemany(for_sqlite(insert_ignore(table)), rows)
        if conn.total_changes - before < len(rows):
            _check_conflicts(conn, write)
    elif write.kind is WriteKind.FINISH_RUN:
        for row in rows:
            if conn.execute(for_sqlite(FINISH_RUN), row).rowcount == 0:
                raise RunNotFound(row[0])
    elif write.kind is WriteKind.CLEAR:
        conn.execute(delete_all(table))
    else:
        newer_only = write.kind is WriteKind.UPSERT_NEWER
        conn.executemany(for_sqlite(upsert(table, newer_only=newer_only)), rows)


def _check_conflicts(conn: sqlite3.Connection, write: Write) -> None:
    table = write.table
    key_at = [table.columns.index(c) for c in table.key]
    compare_at = [table.columns.index(c) for c in write.compare]
    query = for_sqlite(select_by_key(table, write.compare))
    for row in write.rows:
        key = tuple(row[i] for i in key_at)
        stored = conn.execute(query, key).fetchone()
        if stored is not None and not all(
            _same(s, row[i]) for s, i in zip(stored, compare_at, strict=True)
        ):
            raise ConflictingWrite(table.name, key)


def _migrate_sync(
    conn: sqlite3.Connection, available: tuple[Migration, ...], *, apply: bool
) -> list[str]:
    if not apply:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
        ).fetchone()
        applied: set[str] = set()
        if exists:
            rows = conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}").fetchall()  # noqa: S608
            applied = {r[0] for r in rows}
        return [m.version for m in missing_migrations(available, applied)]
    done: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
            "(version TEXT PRIMARY KEY, applied_ts INTEGER NOT NULL)"
        )
        rows = conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}").fetchall()  # noqa: S608
        for migration in missing_migrations(available, {r[0] for r in rows}):
            for statement in migration.statements():
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, applied_ts) VALUES (?, ?)",  # noqa: S608
                (migration.version, time.time_ns()),
            )
            done.append(migration.version)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return done


# ---------------------------------------------------------------- the run lock


def run_lock_path(url: StoreUrl) -> str:
    """The run lock file of a SQLite file database: ``<database>-runlock``."""
    return url.path + RUN_LOCK_SUFFIX


@attrs.define(eq=False)
class SqliteRunLock:
    """A held run lock: an open, ``flock``-ed descriptor of the lock file (None: an
    in-memory database, which needs no lock)."""

    path: str | None
    _fd: int | None

    async def release(self) -> None:
        """Drop the lock (close the descriptor). Synchronous and instant underneath:
        safe under cancellation."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        await trio.lowlevel.checkpoint()


def _try_flock(path: str) -> tuple[int | None, str]:
    """Open and try to lock ``path``: (the locked descriptor, "") or (None, the holder's
    process id as written in the file)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        return None, holder
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        # Only the message of a refused second run needs the pid: the lock is what counts.
        pass
    return fd, ""


async def acquire_sqlite_run_lock(url: StoreUrl, *, wait: float = 0.0) -> SqliteRunLock:
    """Take the run lock of a SQLite store, trying for at most ``wait`` seconds.

    Raises:
        StoreInUse: another process (or another run in this one) holds it.
        StoreUnavailable: the lock file cannot be opened (missing folder, permissions).
    """
    if url.is_memory:
        await trio.lowlevel.checkpoint()
        return SqliteRunLock(None, None)
    path = run_lock_path(url)
    deadline = trio.current_time() + wait
    while True:
        try:
            fd, holder = await trio.to_thread.run_sync(_try_flock, path)
        except OSError as exc:
            msg = f"SQLite database {url.masked}: unable to open its run lock file {path}: {exc}"
            raise StoreUnavailable(msg) from exc
        if fd is not None:
            return SqliteRunLock(path, fd)
        if trio.current_time() >= deadline:
            who = f"process {holder}" if holder.isdigit() else ""
            raise StoreInUse(url.masked, lock=f"file {path}", holder=who)
        await trio.sleep(min(_RUN_LOCK_POLL, max(0.0, deadline - trio.current_time())))
