"""The database-row boundary: trading values to table rows and back. Pure: no I/O.

Design notes
------------
* One place converts between the domain's frozen values and the tuples both backends
  write, in each table's column order (`TABLES`). Decimals stay `Decimal` here;
  PostgreSQL binds them to ``NUMERIC`` as they are and SQLite stores their exact string
  (its backend converts at its edge), so a price comes back as the identical `Decimal`.
  Enums are stored by value, timestamps as integer nanoseconds.
* Reading decodes with `_dec`, which accepts the `Decimal` asyncpg returns and the string
  SQLite returns alike, so the decoders are shared by both backends.
* Order events are stored with the columns cold start queries on (order, seq, ts, status,
  kind) plus a canonical JSON payload of the whole event (sorted keys, decimals as
  strings), made by one cattrs converter. Canonical text makes "the same event written
  twice" compare equal in SQL, which is how a conflicting rewrite is detected.
* An order's snapshot row carries everything `Order` holds; its ``last_event`` is the
  journal row ``(client_order_id, last_event_seq)``, joined in when reading.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import attrs
import cattrs
from tradewind.actors._marketdata import Bar
from tradewind.actors._orders import (
    ORDER_EVENT_TYPES,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    TimeInForce,
    parse_client_order_id,
)
from tradewind.actors._values import Instrument, Side
from tradewind.storage._records import DeadLetter, Denial, RunRecord
from tradewind.storage._venue import PaperVenueFill, PaperVenueOrder

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tradewind.actors._orders import OrderEvent

Row = tuple[Any, ...]


@attrs.frozen
class Table:
    """A table's name, its columns in row order, and its natural key."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def values(self) -> tuple[str, ...]:
        """The columns that are not part of the key (compared to detect conflicts)."""
        return tuple(c for c in self.columns if c not in self.key)


INSTRUMENTS: Final = Table(
    "instruments",
    (
        "symbol",
        "currency",
        "tick_size",
        "lot_size",
        "min_quantity",
        "max_quantity",
        "multiplier",
    ),
    ("symbol",),
)
BARS: Final = Table(
    "bars",
    ("instrument", "timeframe", "ts", "open", "high", "low", "close", "volume"),
    ("instrument", "timeframe", "ts"),
)
ORDERS: Final = Table(
    "orders",
    (
        "client_order_id",
        "strategy_id",
        "seq",
        "instrument",
        "side",
        "quantity",
        "order_type",
        "limit_price",
        "time_in_force",
        "tag",
        "status",
        "is_open",
        "filled_quantity",
        "avg_fill_price",
        "broker_order_id",
        "created_ts",
        "updated_ts",
        "fill_notional",
        "status_before_cancel",
        "execution_ids",
        "last_event_seq",
        "reason",
    ),
    ("client_order_id",),
)
ORDER_EVENTS: Final = Table(
    "order_events",
    ("client_order_id", "seq", "ts", "status", "kind", "payload"),
    ("client_order_id", "seq"),
)
FILLS: Final = Table(
    "fills",
    (
        "execution_id",
        "client_order_id",
        "instrument",
        "side",
        "quantity",
        "price",
        "fee",
        "fee_currency",
        "ts",
    ),
    ("execution_id",),
)
DENIALS: Final = Table(
    "denials",
    ("client_order_id", "strategy_id", "instrument", "ts", "reason"),
    ("client_order_id",),
)
DEAD_LETTERS: Final = Table(
    "dead_letters",
    ("actor", "ts", "seq", "message_type", "message", "error", "attempts"),
    ("actor", "ts", "seq"),
)
RUNS: Final = Table(
    "runs",
    ("run_id", "config_hash", "started_ts", "finished_ts", "outcome"),
    ("run_id",),
)
# A run's start is compared on these columns only: finishing a run changes the others.
RUN_START_COLUMNS: Final = ("run_id", "config_hash", "started_ts")
# The end-of-run summary (JSON text), written when a run finishes (migration 0002). Not in
# `TABLES`: it is not counted in `StoreCounts`.
RUN_SUMMARIES: Final = Table("run_summaries", ("run_id", "summary"), ("run_id",))

# The paper venue's own state (migration 0003, `[broker] state = "tables"`): the venue's
# copy of each order (the `ORDERS` columns, its last event, and the engine's bookkeeping),
# its fills numbered in execution order, and per series the last bar it traded. Not in
# `TABLES`: they are the venue's, not ours, and not counted in `StoreCounts`.
PAPER_VENUE_ORDERS: Final = Table(
    "paper_venue_orders",
    (
        *ORDERS.columns,
        "last_event_kind",
        "last_event",
        "submit_no",
        "answer_ts",
        "eligible_from",
        "trading_day",
    ),
    ("client_order_id",),
)
PAPER_VENUE_FILLS: Final = Table(
    "paper_venue_fills", (*FILLS.columns, "fill_no"), ("execution_id",)
)
PAPER_VENUE_CURSORS: Final = Table(
    "paper_venue_cursors", ("instrument", "timeframe", "last_ts"), ("instrument", "timeframe")
)
PAPER_VENUE_TABLES: Final = (PAPER_VENUE_ORDERS, PAPER_VENUE_FILLS, PAPER_VENUE_CURSORS)

TABLES: Final = (
    INSTRUMENTS,
    BARS,
    ORDERS,
    ORDER_EVENTS,
    FILLS,
    DENIALS,
    DEAD_LETTERS,
    RUNS,
)


def plain_decimal(value: Decimal) -> Decimal:
    """``value`` with a positive exponent written out: ``1E+5`` -> ``100000``; else as is.

    PostgreSQL's NUMERIC has no positive exponent (its scale is >= 0), and asyncpg's
    binary decoder returns integers that end in a group of zeros in exponent form
    (596046447753906250000 as ``5.9604644775390625E+20``). Both backends store and
    return every value in this plain form, so a value reads back with the same digits
    and the same scale on both. Exact: no context, no rounding.
    """
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent <= 0:
        return value
    return Decimal((sign, digits + (0,) * exponent, 0))


def _dec(value: object) -> Decimal:
    return plain_decimal(value if isinstance(value, Decimal) else Decimal(str(value)))


def _opt_dec(value: object) -> Decimal | None:
    return None if value is None else _dec(value)


# ---------------------------------------------------------------- events: one converter

_events = cattrs.Converter()
_events.register_unstructure_hook(Decimal, str)
_events.register_structure_hook(Decimal, lambda value, _type: Decimal(value))
_EVENT_CLASSES: Final = {cls.kind.value: cls for cls in ORDER_EVENT_TYPES}


def event_payload(event: OrderEvent) -> str:
    """The canonical JSON text of an order event (sorted keys, decimals as strings)."""
    return json.dumps(_events.unstructure(event), sort_keys=True, separators=(",", ":"))


def event_from_row(row: Sequence[Any]) -> OrderEvent:
    """Rebuild an order event from its journal row (the columns of `ORDER_EVENTS`)."""
    cls = _EVENT_CLASSES[row[4]]
    event: OrderEvent = _events.structure(json.loads(row[5]), cls)
    return event


# ---------------------------------------------------------------- values -> rows


def instrument_row(instrument: Instrument) -> Row:
    """The `INSTRUMENTS` row of an instrument."""
    return (
        instrument.symbol,
        instrument.currency,
        instrument.tick_size,
        instrument.lot_size,
        instrument.min_quantity,
        instrument.max_quantity,
        instrument.multiplier,
    )


def bar_row(bar: Bar) -> Row:
    """The `BARS` row of a bar."""
    return (
        bar.instrument,
        bar.timeframe,
        bar.ts,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
    )


def order_row(order: Order) -> Row:
    """The `ORDERS` row of an order's snapshot."""
    intent = order.intent
    strategy_id, seq = parse_client_order_id(order.client_order_id)
    return (
        order.client_order_id,
        strategy_id,
        seq,
        intent.instrument,
        intent.side.value,
        intent.quantity,
        intent.order_type.value,
        intent.limit_price,
        intent.time_in_force.value,
        intent.tag,
        order.status.value,
        order.status.is_working,
        order.filled_quantity,
        order.avg_fill_price,
        order.broker_order_id,
        order.created_ts,
        order.updated_ts,
        order.fill_notional,
        None if order.status_before_cancel is None else order.status_before_cancel.value,
        json.dumps(sorted(order.execution_ids), separators=(",", ":")),
        order.event_seq,
        order.reason,
    )


def paper_venue_order_row(venue_order: PaperVenueOrder) -> Row:
    """The `PAPER_VENUE_ORDERS` row of the venue's copy of an order."""
    order = venue_order.order
    last = order.last_event
    return (
        *order_row(order),
        None if last is None else last.kind.value,
        None if last is None else event_payload(last),
        venue_order.submit_no,
        venue_order.answer_ts,
        venue_order.eligible_from,
        venue_order.trading_day,
    )


def paper_venue_fill_row(venue_fill: PaperVenueFill) -> Row:
    """The `PAPER_VENUE_FILLS` row of a fill the venue made."""
    return (*fill_row(venue_fill.fill), venue_fill.fill_no)


def order_event_row(event: OrderEvent) -> Row:
    """The `ORDER_EVENTS` row of a stamped order event.

    Raises:
        ValueError: the event was not stamped by `Order.apply` (no status or seq 0).
    """
    if event.status is None or event.seq < 1:
        msg = (
            f"order event {event.kind.value} for {event.client_order_id!r} is not stamped "
            "(journal only events returned by Order.apply, as Order.last_event)"
        )
        raise ValueError(msg)
    return (
        event.client_order_id,
        event.seq,
        event.ts,
        event.status.value,
        event.kind.value,
        event_payload(event),
    )


def fill_row(fill: Fill) -> Row:
    """The `FILLS` row of a fill."""
    return (
        fill.execution_id,
        fill.client_order_id,
        fill.instrument,
        fill.side.value,
        fill.quantity,
        fill.price,
        fill.fee,
        fill.fee_currency,
        fill.ts,
    )


def denial_row(denial: Denial) -> Row:
    """The `DENIALS` row of a denial."""
    return (
        denial.client_order_id,
        denial.strategy_id,
        denial.instrument,
        denial.ts,
        denial.reason,
    )


def dead_letter_row(letter: DeadLetter) -> Row:
    """The `DEAD_LETTERS` row of a dead letter."""
    return (
        letter.actor,
        letter.ts,
        letter.seq,
        letter.message_type,
        letter.message,
        letter.error,
        letter.attempts,
    )


# ---------------------------------------------------------------- rows -> values


def instrument_from_row(row: Sequence[Any]) -> Instrument:
    """Rebuild an instrument from its `INSTRUMENTS` row."""
    return Instrument(
        symbol=row[0],
        currency=row[1],
        tick_size=_dec(row[2]),
        lot_size=_dec(row[3]),
        min_quantity=_dec(row[4]),
        max_quantity=_opt_dec(row[5]),
        multiplier=_dec(row[6]),
    )


def bar_from_row(row: Sequence[Any]) -> Bar:
    """Rebuild a bar from its `BARS` row."""
    return Bar(
        instrument=row[0],
        timeframe=row[1],
        ts=int(row[2]),
        open=_dec(row[3]),
        high=_dec(row[4]),
        low=_dec(row[5]),
        close=_dec(row[6]),
        volume=_dec(row[7]),
    )


def order_from_row(row: Sequence[Any], last_event: OrderEvent | None) -> Order:
    """Rebuild an order from its `ORDERS` row and the journal row of its last event."""
    intent = OrderIntent(
        strategy_id=row[1],
        instrument=row[3],
        side=Side(row[4]),
        quantity=_dec(row[5]),
        order_type=OrderType(row[6]),
        limit_price=_opt_dec(row[7]),
        time_in_force=TimeInForce(row[8]),
        tag=row[9],
    )
    return Order(
        client_order_id=row[0],
        intent=intent,
        status=OrderStatus(row[10]),
        filled_quantity=_dec(row[12]),
        avg_fill_price=_opt_dec(row[13]),
        broker_order_id=row[14],
        created_ts=int(row[15]),
        updated_ts=int(row[16]),
        fill_notional=_dec(row[17]),
        status_before_cancel=None if row[18] is None else OrderStatus(row[18]),
        execution_ids=frozenset(json.loads(row[19])),
        last_event=last_event,
        reason=row[21],
    )


def paper_venue_order_from_row(row: Sequence[Any]) -> PaperVenueOrder:
    """Rebuild the venue's copy of an order from its `PAPER_VENUE_ORDERS` row."""
    n = len(ORDERS.columns)
    kind, payload = row[n], row[n + 1]
    last_event = None
    if kind is not None:
        last_event = event_from_row((None, None, None, None, kind, payload))
    return PaperVenueOrder(
        order=order_from_row(row[:n], last_event),
        submit_no=int(row[n + 2]),
        answer_ts=int(row[n + 3]),
        eligible_from=None if row[n + 4] is None else int(row[n + 4]),
        trading_day=None if row[n + 5] is None else int(row[n + 5]),
    )


def paper_venue_fill_from_row(row: Sequence[Any]) -> PaperVenueFill:
    """Rebuild a fill of the venue from its `PAPER_VENUE_FILLS` row."""
    n = len(FILLS.columns)
    return PaperVenueFill(fill=fill_from_row(row[:n]), fill_no=int(row[n]))


def fill_from_row(row: Sequence[Any]) -> Fill:
    """Rebuild a fill from its `FILLS` row."""
    return Fill(
        execution_id=row[0],
        client_order_id=row[1],
        instrument=row[2],
        side=Side(row[3]),
        quantity=_dec(row[4]),
        price=_dec(row[5]),
        fee=_dec(row[6]),
        fee_currency=row[7],
        ts=int(row[8]),
    )


def denial_from_row(row: Sequence[Any]) -> Denial:
    """Rebuild a denial from its `DENIALS` row."""
    return Denial(
        client_order_id=row[0],
        strategy_id=row[1],
        instrument=row[2],
        ts=int(row[3]),
        reason=row[4],
    )


def dead_letter_from_row(row: Sequence[Any]) -> DeadLetter:
    """Rebuild a dead letter from its `DEAD_LETTERS` row."""
    return DeadLetter(
        actor=row[0],
        ts=int(row[1]),
        seq=int(row[2]),
        message_type=row[3],
        message=row[4],
        error=row[5],
        attempts=int(row[6]),
    )


def run_from_row(row: Sequence[Any]) -> RunRecord:
    """Rebuild a run from its `RUNS` row."""
    return RunRecord(
        run_id=row[0],
        config_hash=row[1],
        started_ts=int(row[2]),
        finished_ts=None if row[3] is None else int(row[3]),
        outcome=row[4],
    )
