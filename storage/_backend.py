"""What a storage backend provides to `Store`; the internal "retry this unit" signal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tradewind.storage._records import PoolStatistics
    from tradewind.storage._uow import Write


class RetryableFailure(Exception):
    """The database aborted a unit of work that may succeed if run again.

    Raised by a backend for serialization failures and deadlocks (PostgreSQL SQLSTATE
    40001 / 40P01) and a busy database file (SQLite). `Store` retries the unit with
    backoff and raises `TransactionFailed` naming ``cause`` when attempts run out.
    """

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Backend(Protocol):
    """One database behind a `Store`."""

    async def run_unit(self, writes: tuple[Write, ...]) -> None:
        """Apply ``writes`` in one database transaction, all or nothing."""
        ...

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        """Run one read-only query (``$n`` placeholders) and return its rows."""
        ...

    def statistics(self) -> PoolStatistics:
        """A snapshot of the backend's connections."""
        ...
