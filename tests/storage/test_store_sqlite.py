"""SQLite specifics: the in-memory database, files that cannot be opened, one connection."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from tradewind.storage import (
    PoolStatistics,
    StoreError,
    StoreInUse,
    StoreUnavailable,
    open_store,
)
from tradewind.storage._rows import plain_decimal
from tradewind.storage._sqlite import _decimal_text

from tests.storage.samples import bar


class TestSqlite:
    async def test_an_in_memory_store_works_and_starts_empty(self):
        async with open_store("sqlite://:memory:") as store:
            async with store.transaction() as tx:
                tx.write_bars([bar(1)])
            assert (await store.counts()).bars == 1
        async with open_store("sqlite://:memory:") as fresh:
            assert (await fresh.counts()).bars == 0

    async def test_a_file_in_a_missing_folder_is_unavailable(self, tmp_path):
        with pytest.raises(StoreUnavailable, match="unable to open"):
            async with open_store(f"sqlite:///{tmp_path / 'nope' / 'store.db'}"):
                pass

    async def test_a_file_that_is_not_a_database_is_a_store_error(self, tmp_path):
        path = tmp_path / "junk.db"
        path.write_bytes(b"not a database at all" * 100)
        with pytest.raises(StoreError, match="not a database"):
            async with open_store(f"sqlite:///{path}"):
                pass

    async def test_the_single_connection_is_idle_between_units_and_gone_after_close(self):
        async with open_store("sqlite://:memory:") as store:
            assert store.statistics() == PoolStatistics(1, 1, 0, 1, 0)
            assert store.backend == "sqlite"
        assert store.statistics().size == 0
        with pytest.raises(StoreError, match="closed"):
            await store.counts()

    async def test_concurrent_units_run_one_at_a_time_and_all_commit(self):
        async with open_store("sqlite://:memory:") as store:

            async def write(n):
                async with store.transaction() as tx:
                    tx.write_bars([bar(n)])

            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(write, n)
            assert (await store.counts()).bars == 20

    async def test_a_pool_size_below_one_is_refused(self):
        with pytest.raises(ValueError, match="pool_size"):
            async with open_store("sqlite://:memory:", pool_size=0):
                pass


class TestSynchronous:
    """The URL's ``synchronous`` reaches the connection (SQLite numbers: FULL 2, NORMAL 1);
    it is a property of the connection, so the test reads the store's own."""

    @staticmethod
    async def level(store) -> int:
        conn = store._backend._conn
        return await trio.to_thread.run_sync(
            lambda: conn.execute("PRAGMA synchronous").fetchone()[0]
        )

    @pytest.mark.parametrize(
        ("query", "level"), [("", 2), ("?synchronous=full", 2), ("?synchronous=NORMAL", 1)]
    )
    async def test_the_level_is_applied_to_a_file_database(self, tmp_path, query, level):
        async with open_store(f"sqlite:///{tmp_path / 'store.db'}{query}") as store:
            assert await self.level(store) == level
            async with store.transaction() as tx:
                tx.write_bars([bar(1)])
        async with open_store(f"sqlite:///{tmp_path / 'store.db'}") as again:
            assert (await again.counts()).bars == 1  # committed either way


class TestDecimalText:
    @given(st.decimals(allow_nan=False, allow_infinity=False))
    def test_the_fast_text_is_the_plain_decimals_text(self, value):
        assert _decimal_text(value) == str(plain_decimal(value))

    @pytest.mark.parametrize(
        ("value", "text"), [("1E+5", "100000"), ("1E-7", "1E-7"), ("100.01", "100.01")]
    )
    def test_examples(self, value, text):
        assert _decimal_text(Decimal(value)) == text


class TestRunLock:
    async def test_the_lock_file_sits_next_to_the_database_and_names_its_holder(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'store.db'}"
        async with open_store(url, run_lock=True):
            lock_file = tmp_path / "store.db-runlock"
            assert lock_file.read_text() == f"{os.getpid()}\n"
            with pytest.raises(StoreInUse) as caught:
                async with open_store(url, run_lock=True):
                    pass
        assert str(caught.value) == (
            f"store {url} is in use: another run holds its run lock (process {os.getpid()}); "
            f"only one run may trade from a store at a time (lock: file {lock_file})"
        )
        assert lock_file.exists()  # kept: removing it could let two holders lock apart

    async def test_an_in_memory_database_is_locked_by_its_store_alone(self):
        async with open_store("sqlite://:memory:", run_lock=True) as first:
            async with open_store("sqlite://:memory:", run_lock=True):  # another database
                pass
            async with first.run_lock():
                with pytest.raises(StoreInUse, match="this Store object"):
                    async with first.run_lock():
                        pass

    async def test_a_lock_file_in_a_missing_folder_is_unavailable(self, tmp_path):
        with pytest.raises(StoreUnavailable, match="unable to open its run lock file"):
            async with open_store(f"sqlite:///{tmp_path / 'nope' / 'store.db'}", run_lock=True):
                pass
