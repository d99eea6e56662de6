"""SQL text shared by both backends. Pure.

Statements are written once with PostgreSQL's ``$1`` placeholders; SQLite accepts the
same numbered parameters spelled ``?1`` (`for_sqlite`). Everything else used here
(``ON CONFLICT``, row-value comparison, ``IS DISTINCT FROM`` / ``IS NOT``) exists in
both, except where noted. Identifiers come only from the fixed `Table` definitions,
never from callers.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Final

from tradewind.storage._rows import BARS, ORDER_EVENTS, ORDERS, TABLES

if TYPE_CHECKING:
    from tradewind.storage._rows import Table

_PLACEHOLDER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=256)  # the statements are few and built from fixed tables
def for_sqlite(sql: str) -> str:
    """PostgreSQL's ``$n`` placeholders spelled as SQLite's ``?n``."""
    return _PLACEHOLDER.sub(r"?\1", sql)


def _cols(columns: tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{c}" for c in columns)


def _params(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


@functools.lru_cache(maxsize=64)
def insert_ignore(table: Table) -> str:
    """Insert one row; skip it when its key is stored."""
    return (
        f"INSERT INTO {table.name} ({_cols(table.columns)}) "  # noqa: S608 -- fixed identifiers
        f"VALUES ({_params(len(table.columns))}) ON CONFLICT DO NOTHING"
    )


def upsert(table: Table, *, newer_only: bool) -> str:
    """Insert one row or replace the stored one (only by a newer one, for orders)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in table.values)
    sql = (
        f"INSERT INTO {table.name} ({_cols(table.columns)}) "  # noqa: S608 -- fixed identifiers
        f"VALUES ({_params(len(table.columns))}) "
        f"ON CONFLICT ({_cols(table.key)}) DO UPDATE SET {updates}"
    )
    if newer_only:
        sql += (
            f" WHERE (excluded.last_event_seq, excluded.updated_ts)"
            f" >= ({table.name}.last_event_seq, {table.name}.updated_ts)"
        )
    return sql


FINISH_RUN: Final = "UPDATE runs SET finished_ts = $2, outcome = $3 WHERE run_id = $1"


def delete_all(table: Table) -> str:
    """Delete every row of a table."""
    return f"DELETE FROM {table.name}"  # noqa: S608 -- fixed identifiers


def select_by_key(table: Table, columns: tuple[str, ...]) -> str:
    """Select ``columns`` of the row with a given key (key columns as parameters)."""
    where = " AND ".join(f"{c} = ${i}" for i, c in enumerate(table.key, start=1))
    return f"SELECT {_cols(columns)} FROM {table.name} WHERE {where}"  # noqa: S608


# ---------------------------------------------------------------- PostgreSQL bulk path


def staging_name(table: Table) -> str:
    """The per-connection temporary table that a table's rows are copied into."""
    return f"tw_staging_{table.name}"


def create_staging(table: Table) -> str:
    """Create the staging table (PostgreSQL): emptied at every commit, private to a session."""
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {staging_name(table)} "
        f"(LIKE {table.name}) ON COMMIT DELETE ROWS"
    )


def insert_from_staging(table: Table) -> str:
    """Move staged rows into the table, skipping stored keys; returns how many went in."""
    cols = _cols(table.columns)
    return (
        f"WITH inserted AS (INSERT INTO {table.name} ({cols}) "  # noqa: S608 -- fixed identifiers
        f"SELECT {cols} FROM {staging_name(table)} ON CONFLICT DO NOTHING RETURNING 1) "
        "SELECT count(*) FROM inserted"
    )


def staged_conflict(table: Table, compare: tuple[str, ...]) -> str:
    """The key of one staged row whose stored row differs in ``compare`` (PostgreSQL).

    Run only when fewer rows went in than were staged; one join on the primary key.
    """
    join = " AND ".join(f"s.{c} = t.{c}" for c in table.key)
    return (
        f"SELECT {_cols(table.key, 's.')} FROM {staging_name(table)} s "  # noqa: S608
        f"JOIN {table.name} t ON {join} "
        f"WHERE ({_cols(compare, 's.')}) IS DISTINCT FROM ({_cols(compare, 't.')}) LIMIT 1"
    )


# ---------------------------------------------------------------- reads

_ORDER_SELECT: Final = (
    f"SELECT {_cols(ORDERS.columns, 'o.')}, e.kind, e.payload FROM orders o "  # noqa: S608
    "LEFT JOIN order_events e "
    "ON e.client_order_id = o.client_order_id AND e.seq = o.last_event_seq"
)
ORDERS_ALL: Final = f"{_ORDER_SELECT} ORDER BY o.client_order_id"
ORDERS_OPEN: Final = f"{_ORDER_SELECT} WHERE o.is_open ORDER BY o.client_order_id"
ORDER_EVENTS_OF: Final = (
    f"SELECT {_cols(ORDER_EVENTS.columns)} FROM order_events "  # noqa: S608
    "WHERE client_order_id = $1 ORDER BY seq"
)
MAX_CLIENT_ORDER_SEQ: Final = "SELECT max(seq) FROM orders WHERE strategy_id = $1"


def select_all(table: Table, order_by: str) -> str:
    """Every row of a table, in a stable order."""
    return f"SELECT {_cols(table.columns)} FROM {table.name} ORDER BY {order_by}"  # noqa: S608


def select_bars(*, instrument: bool, timeframe: bool, start: bool, end: bool, limit: bool) -> str:
    """Bars filtered by the given criteria (parameters in this order), oldest first."""
    conditions: list[str] = []
    n = 0
    for column, wanted, op in (
        ("instrument", instrument, "="),
        ("timeframe", timeframe, "="),
        ("ts", start, ">="),
        ("ts", end, "<"),
    ):
        if wanted:
            n += 1
            conditions.append(f"{column} {op} ${n}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {_cols(BARS.columns)} FROM bars{where} ORDER BY ts, instrument, timeframe"  # noqa: S608
    if limit:
        sql += f" LIMIT ${n + 1}"
    return sql


# PostgreSQL: a loose index scan. Walk the distinct (instrument, timeframe) pairs along the
# primary key one index probe at a time, then take each series' newest bar with one more
# probe: cost grows with the number of series, not with the number of stored bars.
_LAST_BARS_POSTGRESQL: Final = (
    "WITH RECURSIVE series AS ("
    " (SELECT instrument, timeframe FROM bars ORDER BY instrument, timeframe LIMIT 1)"
    " UNION ALL"
    " SELECT n.instrument, n.timeframe FROM series s, LATERAL"
    " (SELECT b.instrument, b.timeframe FROM bars b"
    "  WHERE (b.instrument, b.timeframe) > (s.instrument, s.timeframe)"
    "  ORDER BY b.instrument, b.timeframe LIMIT 1) n"
    ") "
    "SELECT l.instrument, l.timeframe, l.ts, l.open, l.high, l.low, l.close, l.volume "
    "FROM series s, LATERAL (SELECT * FROM bars b WHERE b.instrument = s.instrument"
    " AND b.timeframe = s.timeframe{before} ORDER BY b.ts DESC LIMIT 1) l "
    "ORDER BY l.instrument, l.timeframe"
)
# SQLite (no LATERAL): a grouped max, which SQLite answers from the primary key index.
_LAST_BARS: Final = (
    "SELECT b.instrument, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume "
    "FROM bars b JOIN (SELECT instrument, timeframe, max(ts) AS ts FROM bars{before} "
    "GROUP BY instrument, timeframe) m "
    "ON b.instrument = m.instrument AND b.timeframe = m.timeframe AND b.ts = m.ts "
    "ORDER BY b.instrument, b.timeframe"
)


def last_bars(*, postgresql: bool, before: bool) -> str:
    """The newest bar of every series (one parameter with `before`: only bars with
    ``ts <`` it)."""
    if postgresql:
        return _LAST_BARS_POSTGRESQL.format(before=" AND b.ts < $1" if before else "")
    return _LAST_BARS.format(before=" WHERE ts < $1" if before else "")


_COUNT_COLUMNS: Final = ", ".join(
    f"(SELECT count(*) FROM {t.name})"  # noqa: S608 -- fixed identifiers
    for t in TABLES
)
COUNTS: Final = f"SELECT {_COUNT_COLUMNS}"
