"""Reconciliation: bring our view of the working orders in line with the broker's.

Pure: orders and fills in, order events out; no trio, no I/O. The order actor calls
`reconcile` after a reconnect, and a cold start calls it with the open orders of the
journal.
"""

# Design notes
# ------------
# * Input: the orders our journal says may still change (every working order, plus any
#   finished order a reported fill names: a late fill after a cancel is legal), and the
#   broker's view (`BrokerView`): its working orders, its fills since the connection was
#   lost (or since the oldest working order, at a cold start), and its own copies of our
#   working orders it no longer lists as working (finished at the venue). Output
#   (`Reconciliation`): the unstamped order events that bring each order in line, in the
#   order to apply them, plus what could not be settled (fills of orders we do not know,
#   working orders of the venue we do not track, discrepancies), reported, never guessed.
# * Per order, against the broker's copy:
#   - still open at the broker: keep tracking; apply what we missed (SUBMITTED when our
#     journal stopped at INITIALIZED, the ACCEPTED with the broker's order id, fills);
#     a PENDING_CANCEL the broker never saw (it still works there) is listed in
#     `cancels`, for the order actor to send again: the request was journaled, so we
#     meant it (only a cold start meets one: a cancel lost with the connection is
#     rejected locally at once). Asymmetric with an unknown INITIALIZED order, which is
#     rejected, never submitted late: a late cancel only takes risk away, a late order
#     would trade on a stale decision;
#   - filled while we were away: the missing fills, each once (by execution id);
#   - canceled, expired or rejected at the broker: the missing fills, then the terminal
#     event at the time the broker last changed the order. The state machine takes a
#     reject after the ack (the exchange refused what the broker acked) and a cancel or
#     expiry before any ack (an IOC remainder), so neither is a discrepancy;
#   - unknown to the broker (no copy, no fill): REJECTED with the reason
#     `UNKNOWN_TO_BROKER` (an INITIALIZED order first gets the SUBMITTED it may or may
#     not have reached the wire with). An order we hold as ACCEPTED or PARTIALLY_FILLED
#     was not refused: the venue acknowledged it and then forgot it, a fault to look at;
#     it is closed with an unsolicited CANCELED (nothing works there any more) and the
#     discrepancy is reported. Rejected: REJECTED for these too, which the table allows
#     since a reject may follow the ack: it would claim a refusal no venue made, and
#     hide the fault among ordinary rejects.
# * Order of the events: preambles (SUBMITTED, ACCEPTED), fills and terminal events
#   merged by event time, fills in the broker's execution order. At one time they come in
#   the order an uninterrupted run produced them: a bar's fills (an IOC's fill precedes
#   its cancel), then the end of an order the broker already knew (a journaled cancel
#   carried out: the order actor sends a decision's cancels before its places), then the
#   preamble of an order placed at that time, then the end of such an order. A strategy
#   that reacts to an ack therefore sees, after a restart, the same orders still open as
#   in the run that was killed. The portfolio books fills in the order it gets them, so
#   replaying them in execution order gives the same positions and PnL as an
#   uninterrupted run; finally the rejects of orders unknown to the broker, at the
#   reconciliation time.
# * Every event is applied to a working copy of its order as it is derived (`Order.apply`),
#   so the result only contains events the state machine accepts, in an order it
#   accepts; an event it refuses is reported as a discrepancy instead. Hence:
#   reconciling the result again yields no event (fills carry their execution ids, the
#   statuses now agree with the broker), and no execution id appears twice.
# * Times: a missing SUBMITTED takes the order's creation time, a missing ACCEPTED the
#   order's last known time (a venue acknowledges at submission), a fill its own time, a
#   terminal event the broker copy's `updated_ts`; only what has no time of its own (an
#   unknown order's reject) takes the reconciliation time `ts`.
#   All of them come from the data, so a replay reconciles identically every time.

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
from tradewind.actors._errors import IllegalTransition, InvalidOrder
from tradewind.actors._orders import (
    TRANSITIONS,
    Fill,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderEventKind,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The reason of the REJECTED given to a working order the broker does not know.
UNKNOWN_TO_BROKER: Final = "unknown to the broker after reconnect/restart"

_TERMINAL_AT_BROKER: Final = frozenset(
    {OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)
# Our statuses in which an order unknown to the broker is REJECTED (after a SUBMITTED
# for INITIALIZED); ACCEPTED and PARTIALLY_FILLED ones are CANCELED (see the notes).
_REJECTABLE: Final = frozenset(
    {OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.PENDING_CANCEL}
)


def _orders(value: Iterable[Order]) -> tuple[Order, ...]:
    return tuple(value)


def _fills(value: Iterable[Fill]) -> tuple[Fill, ...]:
    return tuple(value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _events(value: Iterable[OrderEvent]) -> tuple[OrderEvent, ...]:
    return tuple(value)


@attrs.frozen
class BrokerView:
    """What the broker reports, read right after a reconnect (or at a cold start).

    Attributes:
        open_orders: the venue's copies of the orders it considers working
            (`Broker.open_orders`).
        fills: every fill since the connection was lost, in execution order
            (`Broker.fills_since`); fills of other orders are harmless.
        orders: the venue's copies of our working orders it does not list as working
            (`Broker.lookup_orders`): finished at the venue. An order in none of these
            and without a fill is unknown to the broker.
    """

    open_orders: tuple[Order, ...] = attrs.field(default=(), converter=_orders)
    fills: tuple[Fill, ...] = attrs.field(default=(), converter=_fills)
    orders: tuple[Order, ...] = attrs.field(default=(), converter=_orders)


@attrs.frozen
class Reconciliation:
    """The outcome of `reconcile`.

    Attributes:
        events: unstamped order events, in the order to apply them (`Order.apply` or
            `BookChange.apply_all` stamps them).
        orders: the orders the events changed, as they are after all of them, in the
            order of the input.
        unknown_fills: reported fills of orders not among ours (not applied).
        orphans: orders the broker lists as working that are not among ours.
        discrepancies: what could not be settled, one readable line each.
        cancels: client order ids of our PENDING_CANCEL orders that still work at the
            broker: the cancel never reached it and is to be sent again.
    """

    events: tuple[OrderEvent, ...] = attrs.field(default=(), converter=_events)
    orders: tuple[Order, ...] = attrs.field(default=(), converter=_orders)
    unknown_fills: tuple[Fill, ...] = attrs.field(default=(), converter=_fills)
    orphans: tuple[Order, ...] = attrs.field(default=(), converter=_orders)
    discrepancies: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    cancels: tuple[str, ...] = attrs.field(default=(), converter=_strings)

    @property
    def fills(self) -> tuple[Fill, ...]:
        """The fills among `events`, in order."""
        return tuple(e.fill for e in self.events if isinstance(e, OrderFilled))


@attrs.define
class _Work:
    """The orders as the derived events leave them, and what was derived so far."""

    orders: dict[str, Order]
    changed: dict[str, None] = attrs.field(factory=dict)
    events: list[OrderEvent] = attrs.field(factory=list)
    discrepancies: list[str] = attrs.field(factory=list)

    def apply(self, event: OrderEvent) -> bool:
        coid = event.client_order_id
        try:
            changed = self.orders[coid].apply(event)
        except (IllegalTransition, InvalidOrder) as exc:
            self.discrepancies.append(f"{coid}: {event.kind.value} from the broker refused: {exc}")
            return False
        self.orders[coid] = changed
        self.changed[coid] = None
        self.events.append(event)
        return True


def reconcile(ours: Iterable[Order], view: BrokerView, *, ts: int) -> Reconciliation:
    """Derive the events that bring `ours` in line with the broker's `view`.

    Args:
        ours: the orders our journal knows that may still change: every working order,
            and any finished one a reported fill may belong to (a late fill). Finished
            orders only receive missing fills.
        view: what the broker reports.
        ts: the reconciliation's event time, for the events that have no time of their
            own (see the module notes).

    Returns:
        The events, the orders they change, and what could not be settled. The same
        inputs always give the same result; reconciling the returned orders against the
        same view gives no event.
    """
    mine = {order.client_order_id: order for order in ours}
    work = _Work(dict(mine))
    at_venue = {o.client_order_id: o for o in view.open_orders}
    for order in view.orders:
        at_venue.setdefault(order.client_order_id, order)
    fills_of: dict[str, list[Fill]] = {}
    unknown_fills: list[Fill] = []
    for fill in view.fills:
        if fill.client_order_id in mine:
            fills_of.setdefault(fill.client_order_id, []).append(fill)
        else:
            unknown_fills.append(fill)

    # 1. preambles, fills and terminal events, merged by event time (module notes)
    timeline: list[tuple[int, int, int, OrderEvent]] = []
    position = 0

    def add(event: OrderEvent, phase: int) -> None:
        nonlocal position
        timeline.append((event.ts, phase, position, event))
        position += 1

    unknown: list[str] = []
    introduced: set[str] = set()
    for coid, order in mine.items():
        theirs = at_venue.get(coid)
        if not order.status.is_working:
            # A finished order may still miss its (legal) late acknowledgement: a fill
            # that overtook a delayed ack finished it.
            if theirs is not None and (order.status, OrderEventKind.ACCEPTED) in TRANSITIONS:
                ack = _acknowledgement(order, theirs)
                if ack is not None:
                    add(ack, _PREAMBLE)
            continue
        if theirs is None:
            if coid not in fills_of:
                unknown.append(coid)
                continue
            work.discrepancies.append(
                f"{coid}: the broker reports fills but not the order; fills applied"
            )
        if order.status is OrderStatus.INITIALIZED:
            add(OrderSubmitted(client_order_id=coid, ts=order.created_ts), _PREAMBLE)
            introduced.add(coid)
        if theirs is not None:
            ack = _acknowledgement(order, theirs)
            if ack is not None:
                add(ack, _PREAMBLE)
                introduced.add(coid)
    for fill in view.fills:
        if fill.client_order_id in mine:
            add(OrderFilled(client_order_id=fill.client_order_id, ts=fill.ts, fill=fill), _FILL)
    for coid, order in mine.items():
        theirs = at_venue.get(coid)
        if not order.status.is_working or theirs is None:
            continue
        terminal = _terminal_event(theirs)
        if terminal is not None:
            add(terminal, _LATE_END if coid in introduced else _END)
    seen: set[str] = set()
    for _time, phase, _position, step in sorted(timeline, key=lambda item: item[:3]):
        current = work.orders[step.client_order_id]
        if isinstance(step, OrderFilled):
            execution_id = step.fill.execution_id
            if execution_id in current.execution_ids or execution_id in seen:
                continue
            seen.add(execution_id)
        elif phase != _PREAMBLE and current.status.is_terminal:
            continue  # the fills already finished it (the broker's FILLED raced its cancel)
        work.apply(step)

    # 3. what has no time of its own: unknown orders, cancels to send again; the checks
    for coid in unknown:
        _settle_unknown(work, coid, ts)
    cancels: list[str] = []
    for coid, order in mine.items():
        theirs = at_venue.get(coid)
        if not order.status.is_working or theirs is None:
            continue
        current = work.orders[coid]
        if current.status is OrderStatus.PENDING_CANCEL and theirs.status.is_working:
            cancels.append(coid)
        if theirs.filled_quantity != current.filled_quantity:
            work.discrepancies.append(
                f"{coid}: the broker reports {theirs.filled_quantity} filled, the fills "
                f"it reported explain {current.filled_quantity}"
            )
        if theirs.status is OrderStatus.FILLED and current.status is not OrderStatus.FILLED:
            work.discrepancies.append(
                f"{coid}: FILLED at the broker, {current.status.value} here after its fills"
            )

    return Reconciliation(
        events=work.events,
        orders=(work.orders[coid] for coid in mine if coid in work.changed),
        unknown_fills=unknown_fills,
        orphans=(o for o in view.open_orders if o.client_order_id not in mine),
        discrepancies=work.discrepancies,
        cancels=cancels,
    )


# The phases of events at one time, in the order an uninterrupted run produced them:
# a bar's fills, then the end of an order already known to the broker (a journaled
# cancel carried out: the order actor sends a decision's cancels before its places), then
# the preamble of an order placed at that time, then the end of such an order.
_FILL, _END, _PREAMBLE, _LATE_END = range(4)


def _acknowledgement(order: Order, theirs: Order) -> OrderAccepted | None:
    """The broker's acknowledgement, if the venue has one and we do not (at the time of
    our last event of the order: the submission)."""
    broker_order_id = theirs.broker_order_id
    if broker_order_id is None or order.broker_order_id is not None:
        return None
    return OrderAccepted(
        client_order_id=order.client_order_id, ts=order.updated_ts, broker_order_id=broker_order_id
    )


def _terminal_event(theirs: Order) -> OrderEvent | None:
    """The terminal event the broker's copy of an order says we missed, if any."""
    if theirs.status not in _TERMINAL_AT_BROKER:
        return None
    coid, at = theirs.client_order_id, theirs.updated_ts
    if theirs.status is OrderStatus.CANCELED:
        return OrderCanceled(client_order_id=coid, ts=at)
    if theirs.status is OrderStatus.EXPIRED:
        return OrderExpired(client_order_id=coid, ts=at)
    return OrderRejected(client_order_id=coid, ts=at, reason=theirs.reason)


def _settle_unknown(work: _Work, coid: str, ts: int) -> None:
    """Close a working order the broker does not know (see the module notes)."""
    order = work.orders[coid]
    if order.status in _REJECTABLE:
        if order.status is OrderStatus.INITIALIZED:
            work.apply(OrderSubmitted(client_order_id=coid, ts=order.created_ts))
        work.apply(OrderRejected(client_order_id=coid, ts=ts, reason=UNKNOWN_TO_BROKER))
        return
    work.discrepancies.append(
        f"{coid}: {order.status.value} here but unknown to the broker; counted as canceled"
    )
    work.apply(OrderCanceled(client_order_id=coid, ts=ts))
