"""Errors of tradewind.storage, under `TradewindError`.

Every asyncpg, sqlite3 and OSError exception is translated into one of these at the edge
(``raise StoreUnavailable(...) from exc``), so a caller catches tradewind's errors only.
Each class says whose fault it is and subclasses the stdlib type a caller would catch:
an unusable URL is a `ValueError` of the caller's making, an unreachable database a
`ConnectionError`, a pool that stayed busy a `TimeoutError`.

No message and no attribute ever holds a database password: URLs are masked before they
are put into a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradewind.runtime._errors import TradewindError

if TYPE_CHECKING:
    from tradewind.storage._records import PoolStatistics


class StoreError(TradewindError):
    """Base of every storage error."""


class InvalidStoreUrl(StoreError, ValueError):
    """A store URL is malformed or names an unknown scheme; the message masks the password."""


class StoreUnavailable(StoreError, ConnectionError):
    """The database could not be reached, refused the login, or lost the connection.

    Retryable: nothing of the unit of work that failed is visible, and because every
    write is idempotent on its natural key, running the same unit again is safe even when
    the connection was lost while the commit was in flight.
    """


class PoolExhausted(StoreUnavailable, TimeoutError):
    """Every pooled connection stayed busy for the whole acquire timeout.

    ``statistics`` is the pool's `PoolStatistics` at the moment of giving up.
    Retryable, like every `StoreUnavailable`.
    """

    def __init__(self, timeout: float, statistics: PoolStatistics) -> None:
        super().__init__(
            f"no database connection became free within {timeout}s "
            f"(pool size {statistics.size}, in use {statistics.in_use}, "
            f"idle {statistics.idle}, waiting {statistics.waiting})"
        )
        self.timeout = timeout
        self.statistics = statistics


class StoreInUse(StoreError):
    """Another run holds the store's run lock: only one run may trade from a store at once.

    Raised before anything of the store was read or written. ``url`` is the masked store
    URL, ``holder`` what is known of the holder (a process id, a PostgreSQL backend),
    ``lock`` where the lock lives (the lock file, the advisory lock's schema). Not
    retryable in the sense of `StoreUnavailable`: it clears only when the other run ends
    (or dies: the lock goes with its process).
    """

    def __init__(self, url: str, *, lock: str, holder: str = "") -> None:
        held = f" ({holder})" if holder else ""
        super().__init__(
            f"store {url} is in use: another run holds its run lock{held}; only one "
            f"run may trade from a store at a time (lock: {lock})"
        )
        self.url = url
        self.lock = lock
        self.holder = holder


class TransactionFailed(StoreError):
    """A unit of work kept failing on serialization failures or deadlocks.

    It was retried with backoff ``attempts`` times; ``cause`` names the last failure
    (SQLSTATE and message). Nothing of the unit is visible.
    """

    def __init__(self, attempts: int, cause: str) -> None:
        super().__init__(f"unit of work failed after {attempts} attempt(s): {cause}")
        self.attempts = attempts
        self.cause = cause


class ConflictingWrite(StoreError, ValueError):
    """A write carried different values under a natural key that is already stored.

    ``table`` and ``key`` name the row. The whole unit of work was rolled back.
    """

    def __init__(self, table: str, key: tuple[object, ...]) -> None:
        super().__init__(f"{table}: a different row is already stored under key {key!r}")
        self.table = table
        self.key = key


class SchemaOutdated(StoreError):
    """The database schema lacks migrations this version of tradewind needs.

    Raised by ``open_store(..., migrate=False)``; ``missing`` lists the migration names
    (e.g. ``0002_order_tags``). Run ``tradewind db migrate --url URL`` to apply them.
    """

    def __init__(self, missing: tuple[str, ...]) -> None:
        super().__init__(
            "database schema is outdated; missing migration(s): "
            + ", ".join(missing)
            + " (run `tradewind db migrate`)"
        )
        self.missing = missing


class RunNotFound(StoreError, LookupError):
    """``finish_run`` named a run that was never started; the unit of work was rolled back."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} was never started")
        self.run_id = run_id


class UnstorableValue(StoreError, ValueError):
    """A value does not fit its column (e.g. a timestamp beyond 64 bits).

    The caller's data is at fault, not the database: retrying the same unit fails the
    same way. The whole unit of work was rolled back.
    """
