"""Shared pytest configuration for the whole suite."""

import os
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import HealthCheck, settings

# --- Hypothesis ---
# Tests assert behaviour, never wall-clock time: the suite runs on two busy cores, where
# a per-example deadline or the "input generation is slow" health check turns a stall of
# the machine into a failure that says nothing about tradewind. Both are off for every
# property test; the number of examples stays Hypothesis' default unless a test sets it.
settings.register_profile("tradewind", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tradewind")


# --- Logging ---
# Unconfigured, structlog renders every logged exception as a rich traceback (panels,
# source lines, locals): a quarter of a second each here, which made the tests that
# crash actors on purpose spend most of their time drawing tracebacks nobody reads (the
# output is captured). The same console lines, with the plain traceback instead, set
# again before every test: the CLI's tests configure logging the way the command does.
# Tests of what is logged use `capture_logs`.
@pytest.fixture(autouse=True)
def _plain_tracebacks() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ],
        logger_factory=structlog.PrintLoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=False,
    )


# --- PostgreSQL test databases ---
# One fresh database per test run and xdist worker, created from TRADEWIND_TEST_DSN and
# dropped at the end; inside it, one fresh schema per test (`pg_url`). A PostgreSQL that
# cannot be reached fails the tests that need it, with or without CI set: a skipped
# test is a missing test.
DEFAULT_TEST_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_execute(dsn: str, *statements: str) -> None:
    """Run statements on a short-lived connection (outside any test's trio run)."""
    import asyncpg
    import trio
    from tradewind.runtime._aio import open_aio_loop, run_aio

    async def main() -> None:
        async with open_aio_loop():
            conn = await run_aio(asyncpg.connect, dsn, timeout=10)
            try:
                for statement in statements:
                    await run_aio(conn.execute, statement)
            finally:
                await run_aio(conn.close)

    trio.run(main)


def _with_path(dsn: str, database: str, query: dict[str, str] | None = None) -> str:
    parts = urllib.parse.urlsplit(dsn)
    params = dict(urllib.parse.parse_qsl(parts.query))
    params.update(query or {})
    return urllib.parse.urlunsplit(
        parts._replace(path=f"/{database}", query=urllib.parse.urlencode(params))
    )


@pytest.fixture(scope="session")
def pg_database_url(worker_id: str) -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for this test run and xdist worker.

    Created from ``TRADEWIND_TEST_DSN`` (default
    ``postgresql://postgres@127.0.0.1:5432/test``) as ``tradewind_test_<worker>_<pid>`` and
    dropped (``WITH (FORCE)``, which only ends connections to that database) when the
    session ends. Fails, never skips, when PostgreSQL cannot be reached.
    """
    from tradewind.storage import mask_url

    dsn = os.environ.get("TRADEWIND_TEST_DSN", DEFAULT_TEST_DSN)
    name = f"tradewind_test_{worker_id}_{os.getpid()}"
    try:
        _pg_execute(dsn, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 -- any failure here means "no PostgreSQL"
        ci = " (CI is set: PostgreSQL is required)" if os.environ.get("CI") else ""
        pytest.fail(
            f"PostgreSQL for the tests is unreachable at {mask_url(dsn)}{ci}: "
            f"{type(exc).__name__}: {exc}. Start it (.ci/run does) or point "
            "TRADEWIND_TEST_DSN at a server where the user may create databases.",
            pytrace=False,
        )
    yield _with_path(dsn, name)
    _pg_execute(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database_url: str) -> Iterator[str]:
    """A store URL for a fresh, empty PostgreSQL schema private to one test.

    The schema ``t_<random>`` lives in the session's database (`pg_database_url`); the URL
    selects it with ``?search_path=t_<random>`` (asyncpg passes the parameter on as a
    server setting), so every connection of a store opened on it sees only this test's
    tables. The schema is dropped with everything in it after the test.
    """
    schema = f"t_{uuid.uuid4().hex[:16]}"
    _pg_execute(pg_database_url, f"CREATE SCHEMA {schema}")
    yield _with_path(
        pg_database_url,
        urllib.parse.urlsplit(pg_database_url).path.lstrip("/"),
        {"search_path": schema},
    )
    _pg_execute(pg_database_url, f"DROP SCHEMA {schema} CASCADE")
