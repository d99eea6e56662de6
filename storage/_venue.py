"""The paper venue's own state as its tables keep it (`[broker] state = "tables"`). Pure.

Design notes
------------
The venue's records hold domain values (`Order`, `Fill`), so they live apart from
`_records` (which the actors import, and which must not import them back). What the
venue keeps besides its copies of orders and its fills is the bookkeeping of its
matching engine: when each order was taken (its submission number and the time of the
answer), from which bar time it may fill and on which trading day a DAY order expires,
and per series the last bar it traded. With that a reloaded engine answers every question
as the one that wrote it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from tradewind.actors._orders import Fill, Order

if TYPE_CHECKING:
    from collections.abc import Iterable


def _venue_orders(value: Iterable[PaperVenueOrder]) -> tuple[PaperVenueOrder, ...]:
    return tuple(value)


def _venue_fills(value: Iterable[PaperVenueFill]) -> tuple[PaperVenueFill, ...]:
    return tuple(value)


def _number(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{attribute.name}: must be an int >= 1, got {value!r}"
        raise ValueError(msg)


@attrs.frozen
class PaperVenueOrder:
    """The paper venue's copy of one order, as its own tables keep it. Key: the order's
    client order id.

    Attributes:
        order: the venue's copy (its status, fills, broker order id, last event).
        submit_no: the venue's count of submits when it took the order (from 1): the
            order of submission, and what fault injection counts.
        answer_ts: the time of the venue's answer to the submit (ack or reject).
        eligible_from: while the order works, the first bar time it may fill at.
        trading_day: while a DAY order works, the trading day it expires after.
    """

    order: Order = attrs.field(validator=attrs.validators.instance_of(Order))
    submit_no: int = attrs.field(validator=_number)
    answer_ts: int
    eligible_from: int | None = None
    trading_day: int | None = None


@attrs.frozen
class PaperVenueFill:
    """A fill the paper venue made. Key: ``fill.execution_id``.

    Attributes:
        fill: the fill.
        fill_no: its place in the venue's execution order (from 1).
    """

    fill: Fill = attrs.field(validator=attrs.validators.instance_of(Fill))
    fill_no: int = attrs.field(validator=_number)


@attrs.frozen
class PaperVenueState:
    """Everything the paper venue keeps in its own tables (`Store.paper_venue`).

    Attributes:
        orders: the venue's copy of every order it was sent, by `submit_no`.
        fills: every fill it made, by `fill_no`.
        cursors: per (instrument, timeframe), the last bar time it traded and recorded.
    """

    orders: tuple[PaperVenueOrder, ...] = attrs.field(default=(), converter=_venue_orders)
    fills: tuple[PaperVenueFill, ...] = attrs.field(default=(), converter=_venue_fills)
    cursors: dict[tuple[str, str], int] = attrs.field(factory=dict)
