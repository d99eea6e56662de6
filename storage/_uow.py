"""The unit of work: a buffer of writes, decided in memory, sent in one piece. Pure.

Design notes
------------
* Decide, then do I/O. The methods of `Transaction` are synchronous and only convert the
  values to rows and buffer them; nothing reaches the database until the
  ``async with store.transaction()`` block exits cleanly, and then the whole unit runs as
  ONE bridged call (PostgreSQL: one asyncio coroutine holding one connection and one
  transaction; SQLite: one call on the store's worker thread). Three things follow:
  an exception in the block sends nothing; the unit can be replayed as a whole when
  the database asks for a retry (serialization failure, deadlock); and cancellation
  can only ever hit a unit that is either not started or running inside the database's
  own transaction, never one half-buffered.
* Why not statement-by-statement bridging: each trio -> asyncio hop costs tens of
  microseconds; the design measured a four-statement unit bridged per statement at about
  1.4x the cost of the same unit bridged once.
* Buffered rows are converted eagerly (at the call), so a bad value fails where it was
  written, inside the block, not later at commit.
* Append-only tables (bars, fills, order events, denials, dead letters, run starts) are
  merged into one write per table, placed where the table was first appended to: the
  backend then stages each table's rows once (PostgreSQL: one COPY) and checks conflicts
  once. Upserts (instruments, order snapshots, the paper venue's rows), run finishes and
  clears keep their order, because their outcome can depend on it (a later snapshot of
  the same order wins).
* A unit is applied in the order it was written. Moving an append earlier is safe only
  past writes of other tables: past a write of its own table (a clear, a run's finish)
  it would change the outcome -- fills appended after `clear_paper_venue` and merged
  into an append before it would be deleted by the clear, while the unit's later rows
  were kept. So any other write of a table ends the merging of its appends, and the next
  append starts a new merged write after it. The bulk insert is kept where it matters
  (many appends of a table with nothing else of that table in between: one write).
* A clear makes every earlier write of its table in the same unit moot, so those writes
  are left out (the last clear of a table stays, with what follows it): the outcome is
  the in-order one, with fewer rows sent. It also keeps the appends of a cleared table
  to one write per unit, which the PostgreSQL backend relies on (its staging tables are
  emptied only at commit: a table staged twice in one unit would offer the first rows
  again, after the clear). The one difference from a statement-by-statement run: an
  append that conflicts with a stored row does not fail the unit when a later clear in
  the same unit deletes that row anyway. (A run started after a finish in one unit is
  staged twice on PostgreSQL; the earlier start rows offered again are the ones the unit
  just stored, so they are skipped as identical.)
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs
from tradewind.storage._rows import (
    BARS,
    DEAD_LETTERS,
    DENIALS,
    FILLS,
    INSTRUMENTS,
    ORDER_EVENTS,
    ORDERS,
    PAPER_VENUE_CURSORS,
    PAPER_VENUE_FILLS,
    PAPER_VENUE_ORDERS,
    PAPER_VENUE_TABLES,
    RUN_START_COLUMNS,
    RUN_SUMMARIES,
    RUNS,
    Row,
    Table,
    bar_row,
    dead_letter_row,
    denial_row,
    fill_row,
    instrument_row,
    order_event_row,
    order_row,
    paper_venue_fill_row,
    paper_venue_order_row,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tradewind.actors._marketdata import Bar
    from tradewind.actors._orders import Fill, Order, OrderEvent
    from tradewind.actors._values import Instrument
    from tradewind.storage._records import DeadLetter, Denial
    from tradewind.storage._venue import PaperVenueFill, PaperVenueOrder


class WriteKind(enum.Enum):
    """How a write's rows are applied."""

    APPEND = "append"  # insert; an identical row is skipped, a different one conflicts
    UPSERT = "upsert"  # insert or replace (instruments)
    UPSERT_NEWER = "upsert_newer"  # insert or replace unless the stored one is newer (orders)
    FINISH_RUN = "finish_run"  # update an existing run's end
    CLEAR = "clear"  # delete every row of the table (the paper venue's fresh start)


@attrs.frozen
class Write:
    """One buffered write: rows for a table, and how to apply them.

    ``compare`` lists the columns an `APPEND` checks for conflicting rewrites.
    """

    kind: WriteKind
    table: Table
    rows: tuple[Row, ...]
    compare: tuple[str, ...] = ()


@attrs.define
class Transaction:
    """The writes of one unit of work, buffered until the block exits.

    Get one from ``async with store.transaction() as tx:``. Every method is synchronous
    and only buffers; the database sees nothing until the block exits cleanly, and then
    sees all of it atomically. Writes are idempotent on each table's natural key.

    Raises (from every method):
        RuntimeError: the transaction's block has already exited.
        DomainError, ValueError: a value cannot be stored (see each method).
    """

    _writes: list[Write] = attrs.field(factory=list, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def upsert_instruments(self, instruments: Iterable[Instrument]) -> None:
        """Insert instruments, or replace the stored definition of the same symbol."""
        self._add(WriteKind.UPSERT, INSTRUMENTS, [instrument_row(i) for i in instruments])

    def write_bars(self, bars: Iterable[Bar]) -> None:
        """Insert bars; key (instrument, timeframe, ts).

        A bar equal to the stored one is skipped; a different bar under a stored key makes
        the unit fail with `ConflictingWrite` (values compare as numbers: 1.0 == 1.00).
        """
        self._add(WriteKind.APPEND, BARS, [bar_row(b) for b in bars], BARS.values)

    def write_order(self, order: Order) -> None:
        """Store an order's latest snapshot, keyed by client order id.

        A snapshot older than the stored one (fewer journaled events) is ignored, so
        replays never move an order back in its lifecycle. The snapshot's
        ``last_event`` is not stored with it: journal it with `append_order_events`
        (in the same unit) and reads join it back in.
        """
        self.write_orders((order,))

    def write_orders(self, orders: Iterable[Order]) -> None:
        """`write_order` for several orders, in order."""
        self._add(WriteKind.UPSERT_NEWER, ORDERS, [order_row(o) for o in orders])

    def append_order_events(self, events: Iterable[OrderEvent]) -> None:
        """Append stamped order events to the order journal; key (client_order_id, seq).

        Journal what `Order.apply` returns as ``Order.last_event`` (stamped with its
        resulting status and seq). The same event again is skipped; a different event
        under a stored key makes the unit fail with `ConflictingWrite`.

        Raises:
            ValueError: an event is not stamped.
        """
        rows = [order_event_row(e) for e in events]
        self._add(WriteKind.APPEND, ORDER_EVENTS, rows, ORDER_EVENTS.values)

    def write_fills(self, fills: Iterable[Fill]) -> None:
        """Insert fills; key execution id. A different fill under a stored id conflicts."""
        self._add(WriteKind.APPEND, FILLS, [fill_row(f) for f in fills], FILLS.values)

    def write_denials(self, denials: Iterable[Denial]) -> None:
        """Insert risk denials; key client order id. A different one conflicts."""
        self._add(WriteKind.APPEND, DENIALS, [denial_row(d) for d in denials], DENIALS.values)

    def write_dead_letters(self, letters: Iterable[DeadLetter]) -> None:
        """Insert dead letters; key (actor, ts, seq). A different one conflicts."""
        rows = [dead_letter_row(d) for d in letters]
        self._add(WriteKind.APPEND, DEAD_LETTERS, rows, DEAD_LETTERS.values)

    def start_run(self, run_id: str, config_hash: str, started_ts: int) -> None:
        """Record the start of a run; key run id.

        Starting the same run again is skipped; another config hash or start time under
        the same id conflicts.
        """
        row = (run_id, config_hash, started_ts, None, None)
        self._add(WriteKind.APPEND, RUNS, [row], RUN_START_COLUMNS[1:])

    def finish_run(self, run_id: str, finished_ts: int, outcome: str) -> None:
        """Record how a started run ended (a later finish replaces an earlier one).

        The unit fails with `RunNotFound` if the run was never started.
        """
        self._add(WriteKind.FINISH_RUN, RUNS, [(run_id, finished_ts, outcome)])

    def write_run_summary(self, run_id: str, summary: str) -> None:
        """Store a run's summary text (JSON), replacing an earlier one; key run id."""
        self._add(WriteKind.UPSERT, RUN_SUMMARIES, [(run_id, summary)])

    def write_paper_venue(
        self,
        orders: Iterable[PaperVenueOrder] = (),
        fills: Iterable[PaperVenueFill] = (),
        cursors: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        """Record a change of the paper venue's own state (`PaperVenueState`).

        The venue's copies of orders replace the stored ones unless those are newer (more
        events applied), as order snapshots do; fills are inserted, keyed by execution id
        (the same fill again is skipped, a different one under a stored id conflicts);
        the cursors (last bar traded per (instrument, timeframe)) replace the stored ones.
        Write all three of one venue call in one unit: the venue's tables then never hold
        half of a change.
        """
        self._add(
            WriteKind.UPSERT_NEWER,
            PAPER_VENUE_ORDERS,
            [paper_venue_order_row(o) for o in orders],
        )
        rows = [paper_venue_fill_row(f) for f in fills]
        self._add(WriteKind.APPEND, PAPER_VENUE_FILLS, rows, PAPER_VENUE_FILLS.values)
        cursor_rows: list[Row] = [(i, tf, ts) for (i, tf), ts in sorted((cursors or {}).items())]
        self._add(WriteKind.UPSERT, PAPER_VENUE_CURSORS, cursor_rows)

    def clear_paper_venue(self) -> None:
        """Delete the paper venue's whole state (a replay that starts from its first bar
        opens a fresh venue)."""
        for table in PAPER_VENUE_TABLES:
            self._add(WriteKind.CLEAR, table, [()])

    def writes(self) -> tuple[Write, ...]:
        """The buffered writes, merged, in the order they are applied.

        The appends of a table are merged into one write, placed where the first of them
        was, unless another write of the same table (a clear, a run's finish) came in
        between: an append is never moved past a write of its own table, so the unit's
        outcome is that of its writes applied one by one, in order. Consecutive writes of
        another kind to the same table are merged as well, and the writes of a table
        before its last clear in the unit are left out (the clear deletes them).
        """
        last_clear = {
            write.table.name: index
            for index, write in enumerate(self._writes)
            if write.kind is WriteKind.CLEAR
        }
        merged: list[Write] = []
        appends: dict[str, int] = {}  # table -> its open merged append, in `merged`
        for index, write in enumerate(self._writes):
            name = write.table.name
            if index < last_clear.get(name, -1):
                continue  # the table's clear, later in the unit, deletes it anyway
            if write.kind is WriteKind.APPEND:
                at = appends.get(name)
                if at is None:
                    appends[name] = len(merged)
                    merged.append(write)
                else:
                    merged[at] = attrs.evolve(merged[at], rows=merged[at].rows + write.rows)
                continue
            # Any other write of the table closes its merged append: a later append of
            # the table goes after this write, never before it.
            appends.pop(name, None)
            if merged and merged[-1].kind is write.kind and merged[-1].table == write.table:
                merged[-1] = attrs.evolve(merged[-1], rows=merged[-1].rows + write.rows)
            else:
                merged.append(write)
        return tuple(merged)

    def close(self) -> None:
        """Refuse further writes (called when the block exits)."""
        self._closed = True

    def _add(
        self, kind: WriteKind, table: Table, rows: list[Row], compare: tuple[str, ...] = ()
    ) -> None:
        if self._closed:
            msg = "this transaction's block has exited; open a new store.transaction()"
            raise RuntimeError(msg)
        if rows:
            self._writes.append(Write(kind, table, tuple(rows), compare))
