"""PostgreSQL failure behaviour: the pool, retries, lost connections, outages, migrations.

Units of work are held inside the database at a "gate": a trigger on ``bars`` makes any
row of instrument ``GATE`` wait for an advisory lock the test holds, so a test knows
exactly where each unit is (waiting at the gate, visible in ``pg_locks``) before it cuts,
kills or cancels anything. Only this test's own connections are ever terminated.
"""

from __future__ import annotations

import urllib.parse
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import trio
from structlog.testing import capture_logs
from tradewind.runtime._aio import open_aio_loop, run_aio
from tradewind.storage import (
    InvalidStoreUrl,
    PoolExhausted,
    PoolStatistics,
    RetryPolicy,
    SchemaOutdated,
    Store,
    StoreInUse,
    StoreUnavailable,
    TransactionFailed,
    open_store,
    parse_store_url,
)
from tradewind.storage._migrations import available_migrations
from tradewind.storage._store import acquire_run_lock

from tests.faultproxy import open_fault_proxy
from tests.storage.samples import bar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tradewind.actors import Bar

GATE_KEY = 4242
GATE_SQL = f"""
CREATE FUNCTION tw_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.instrument = 'GATE' THEN
        PERFORM pg_advisory_xact_lock_shared({GATE_KEY});
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tw_gate BEFORE INSERT ON bars FOR EACH ROW EXECUTE FUNCTION tw_gate();
"""
FAST_RETRY = RetryPolicy(attempts=4, initial_backoff=0.01, max_backoff=0.05, seed=1)


def gated(ts: int) -> Bar:
    return bar(ts, instrument="GATE")


async def commit(store: Store, *bars: Bar) -> None:
    async with store.transaction() as tx:
        tx.write_bars(bars)


@asynccontextmanager
async def admin(url: str) -> AsyncIterator[Any]:
    """The test's own connection (same schema), on the run's asyncio loop."""
    conn = await run_aio(asyncpg.connect, url)
    try:
        yield conn
    finally:
        await run_aio(conn.close)


async def query(conn: Any, sql: str, *args: object) -> list[Any]:
    return await run_aio(conn.fetch, sql, *args)


async def wait_at_gate(conn: Any, count: int) -> list[int]:
    """Return once ``count`` transactions wait at the gate (polls pg_locks, bounded)."""
    with trio.fail_after(20):
        while True:
            rows = await query(
                conn,
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = $1 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())",
                GATE_KEY,
            )
            if len(rows) == count:
                return [r[0] for r in rows]
            await trio.sleep(0.01)


@asynccontextmanager
async def gate(url: str) -> AsyncIterator[Any]:
    """Install the gate and hold it closed; yields the admin connection."""
    async with admin(url) as conn:
        await run_aio(conn.execute, GATE_SQL)
        await query(conn, "SELECT pg_advisory_lock($1)", GATE_KEY)
        try:
            yield conn
        finally:
            await query(conn, "SELECT pg_advisory_unlock_all()")


async def open_gate(conn: Any) -> None:
    await query(conn, "SELECT pg_advisory_unlock($1)", GATE_KEY)


def via(url: str, host_port: str) -> str:
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host_port}" if userinfo else host_port
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class TestPool:
    async def test_acquiring_past_the_bound_times_out_with_the_pool_statistics(self, pg_url):
        async with (
            open_aio_loop(),
            open_store(pg_url, pool_size=2, acquire_timeout=0.2) as store,
            gate(pg_url) as conn,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(commit, store, gated(1))
                nursery.start_soon(commit, store, gated(2))
                await wait_at_gate(conn, 2)
                with pytest.raises(PoolExhausted) as caught:
                    await commit(store, bar(3))
                assert caught.value.statistics == PoolStatistics(
                    size=2, max_size=2, in_use=2, idle=0, waiting=0
                )
                assert "in use 2" in str(caught.value)
                await open_gate(conn)
            assert store.statistics() == PoolStatistics(2, 2, 0, 2, 0)
            assert (await store.counts()).bars == 2

    async def test_a_unit_cancelled_in_the_database_returns_its_connection_and_commits_nothing(
        self, pg_url
    ):
        async with (
            open_aio_loop(),
            open_store(pg_url, pool_size=2) as store,
            gate(pg_url) as conn,
        ):
            async with trio.open_nursery() as nursery:
                scope = trio.CancelScope()

                async def cancelled_unit():
                    with scope:
                        await commit(store, bar(1), gated(2))

                nursery.start_soon(cancelled_unit)
                await wait_at_gate(conn, 1)
                scope.cancel()
            assert scope.cancelled_caught
            stats = store.statistics()
            assert (stats.in_use, stats.waiting) == (0, 0)
            assert stats.idle == stats.size  # the cancelled unit's connection was dropped
            await open_gate(conn)
            await commit(store, bar(3))
            assert [b.ts for b in await store.bars()] == [3]
            open_transactions = await query(
                conn,
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
            )
            assert open_transactions == []


class TestRetries:
    async def test_a_real_deadlock_is_retried_and_both_units_succeed(self, pg_url):
        async with (
            open_aio_loop(),
            open_store(pg_url, pool_size=2, retry=FAST_RETRY) as store,
            gate(pg_url) as conn,
        ):
            with capture_logs() as logs:
                async with trio.open_nursery() as nursery:
                    # each unit takes one key, waits at the gate, then wants the other's
                    nursery.start_soon(commit, store, bar(10), gated(1), bar(20))
                    nursery.start_soon(commit, store, bar(20), gated(2), bar(10))
                    await wait_at_gate(conn, 2)
                    await open_gate(conn)
            assert (await store.counts()).bars == 4
        retries = [e for e in logs if e["event"] == "unit of work retried"]
        assert len(retries) == 1
        assert "40P01" in retries[0]["cause"]

    async def test_serialization_failures_are_retried_until_the_unit_succeeds(self, pg_url):
        async with open_aio_loop(), open_store(pg_url, retry=FAST_RETRY) as store:
            async with admin(pg_url) as conn:
                await run_aio(conn.execute, failing_trigger(times=2))
            with capture_logs() as logs:
                await commit(store, bar(1))
            assert (await store.counts()).bars == 1
        assert [e["attempt"] for e in logs if e["event"] == "unit of work retried"] == [1, 2]

    async def test_persistent_serialization_failures_end_in_transaction_failed(self, pg_url):
        async with open_aio_loop(), open_store(pg_url, retry=FAST_RETRY) as store:
            async with admin(pg_url) as conn:
                await run_aio(conn.execute, failing_trigger(times=100))
            with pytest.raises(TransactionFailed, match="40001") as caught:
                await commit(store, bar(1))
            assert caught.value.attempts == 4
            assert (await store.counts()).bars == 0


def failing_trigger(times: int) -> str:
    return f"""
    CREATE SEQUENCE tw_failures;
    CREATE FUNCTION tw_fail() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('tw_failures') <= {times} THEN
            RAISE EXCEPTION 'forced conflict' USING ERRCODE = '40001';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER tw_fail BEFORE INSERT ON bars FOR EACH ROW EXECUTE FUNCTION tw_fail();
    """


class TestConnectionLoss:
    async def test_a_backend_killed_mid_unit_fails_it_as_unavailable_then_the_next_succeeds(
        self, pg_url
    ):
        async with (
            open_aio_loop(),
            open_store(pg_url, pool_size=2) as store,
            gate(pg_url) as conn,
        ):
            failures = []

            async def doomed_unit():
                try:
                    await commit(store, bar(1), gated(2))
                except StoreUnavailable as exc:
                    failures.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(doomed_unit)
                [pid] = await wait_at_gate(conn, 1)
                await query(conn, "SELECT pg_terminate_backend($1)", pid)
            assert len(failures) == 1
            assert store.statistics().in_use == 0
            await open_gate(conn)
            await commit(store, bar(3))
            assert [b.ts for b in await store.bars()] == [3]

    async def test_a_pooled_connection_killed_while_idle_fails_as_unavailable_then_recovers(
        self, pg_url
    ):
        # The backend's FATAL reaches the idle connection before its close does: asyncpg
        # has read the error (its protocol now waits for a sync that never comes) but does
        # not report the connection closed yet, so the pool hands it out again.
        target = urllib.parse.urlsplit(pg_url)
        async with (
            open_aio_loop(),
            open_fault_proxy(target.hostname, target.port or 5432) as proxy,
            open_store(
                via(pg_url, proxy.url_host) + "&application_name=tw_idle_victim", pool_size=1
            ) as store,
            admin(pg_url) as conn,
        ):
            proxy.linger = True
            await commit(store, bar(1))
            [[pid]] = await query(
                conn,
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'tw_idle_victim' "
                "AND datname = current_database()",
            )
            await query(conn, "SELECT pg_terminate_backend($1)", pid)
            with trio.fail_after(20):
                await proxy.server_ended.wait()
            await query(conn, "SELECT 1")  # a loop turn: the store's connection reads the FATAL
            with pytest.raises(StoreUnavailable, match="connection"):
                await commit(store, bar(2))
            assert store.statistics().in_use == 0
            await commit(store, bar(3))
            assert [b.ts for b in await store.bars()] == [1, 3]

    async def test_a_cut_network_reports_unavailable_then_recovers(self, pg_url):
        target = urllib.parse.urlsplit(pg_url)
        async with (
            open_aio_loop(),
            open_fault_proxy(target.hostname, target.port or 5432) as proxy,
            open_store(via(pg_url, proxy.url_host), connect_timeout=2) as store,
        ):
            await commit(store, bar(1))
            proxy.cut()
            with pytest.raises(StoreUnavailable):
                await commit(store, bar(2))
            with pytest.raises(StoreUnavailable):
                await store.counts()
            proxy.restore()
            await commit(store, bar(3))
            assert [b.ts for b in await store.bars()] == [1, 3]

    async def test_a_stalled_network_times_out_as_unavailable_then_recovers(self, pg_url):
        target = urllib.parse.urlsplit(pg_url)
        async with (
            open_aio_loop(),
            open_fault_proxy(target.hostname, target.port or 5432) as proxy,
            open_store(
                via(pg_url, proxy.url_host) + "&sslmode=disable",
                connect_timeout=0.5,
                command_timeout=0.5,
            ) as store,
        ):
            await commit(store, bar(1))
            proxy.hold()
            with pytest.raises(StoreUnavailable, match="TimeoutError"):
                await commit(store, bar(2))
            proxy.restore()
            await commit(store, bar(3))
            assert [b.ts for b in await store.bars()] == [1, 3]
            assert store.statistics().in_use == 0


class TestOpening:
    async def test_an_unreachable_server_is_reported_without_the_password(self):
        async with open_fault_proxy("127.0.0.1", 9) as proxy:
            proxy.cut()
            url = f"postgresql://trader:s3cret@{proxy.url_host}/db"
            with pytest.raises(StoreUnavailable) as caught:
                async with open_store(url, connect_timeout=2):
                    pass
        assert "s3cret" not in str(caught.value)
        assert "trader:***@" in str(caught.value)

    async def test_refused_credentials_are_reported_without_the_password(self, pg_url):
        parts = urllib.parse.urlsplit(pg_url)
        netloc = f"no_such_role:s3cret@{parts.hostname}:{parts.port or 5432}"
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        with pytest.raises(StoreUnavailable, match="refused the login") as caught:
            async with open_store(url):
                pass
        assert "s3cret" not in str(caught.value)

    async def test_a_bad_connection_parameter_is_an_invalid_url(self, pg_url):
        with pytest.raises(InvalidStoreUrl, match="sslmode"):
            async with open_store(pg_url + "&sslmode=sometimes"):
                pass

    async def test_two_stores_opening_together_apply_each_migration_once(self, pg_url):
        async def open_one():
            async with open_store(pg_url) as store:
                await commit(store, bar(1))

        async with open_aio_loop():
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(open_one)
            async with admin(pg_url) as conn:
                rows = await query(conn, "SELECT version FROM schema_migrations")
        assert [r[0] for r in rows] == ["0001_initial", "0002_run_summary", "0003_paper_venue"]

    async def test_an_older_schema_names_the_missing_migration(self, pg_url):
        async with open_aio_loop():
            async with open_store(pg_url):
                pass
            latest = available_migrations("postgresql")[-1].version
            async with admin(pg_url) as conn:
                await query(conn, "DELETE FROM schema_migrations WHERE version = $1", latest)
            with pytest.raises(SchemaOutdated, match=latest) as caught:
                async with open_store(pg_url, migrate=False):
                    pass
        assert caught.value.missing == (latest,)


class TestRunLock:
    async def test_the_refusal_masks_the_password_and_names_the_holder(self, pg_url):
        parts = urllib.parse.urlsplit(pg_url)
        user, _, host = parts.netloc.rpartition("@")
        secret = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:s3cret@{host}"))
        async with open_store(secret, run_lock=True) as store, admin(pg_url) as conn:
            (pid,) = await query(
                conn,
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            with pytest.raises(StoreInUse) as caught:
                async with open_store(secret, run_lock=True):
                    pass
            assert store.statistics().size == 1  # the lock's session is not pooled
        message = str(caught.value)
        assert "s3cret" not in message
        assert f"{user}:***@" in message
        assert f"PostgreSQL backend pid {pid[0]}" in message
        assert parts.query.split("=")[1] in message  # the schema it locks

    async def test_stores_in_two_schemas_of_one_database_are_locked_apart(self, pg_url):
        parts = urllib.parse.urlsplit(pg_url)
        public = urllib.parse.urlunsplit(parts._replace(query="search_path=public"))
        async with open_store(pg_url, run_lock=True), open_aio_loop():
            lock = await acquire_run_lock(parse_store_url(public))  # not migrated: no tables
            await lock.release()
