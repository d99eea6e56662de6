"""The broker interface: what the order actor needs from a venue, and the events it returns.

Pure: an interface and a type alias, no I/O.
"""

# Design notes
# ------------
# * Calls return events. `submit`, `cancel` and `on_bar` answer with the domain order
#   events the call caused (an ack or a reject, fills, cancels, expiries), in the order the
#   broker produced them. The order actor applies them before it handles its next message,
#   so in a replay every consequence of a bar is decided inside that bar's cascade and the
#   run is deterministic. Rejected alternative: a callback or a channel of events from the
#   start; it makes the paper broker's output depend on when the scheduler runs the
#   consumer, which is exactly what a replay must not do.
# * Extension point for live venues: an adapter whose venue pushes events on its own
#   (fills on a socket) keeps returning what it knows synchronously (the ack of a submit,
#   often nothing from `on_bar`) and delivers the rest through an event stream that a
#   later issue adds to this protocol as an optional ``open_event_stream()`` async context
#   manager; the order actor then runs a small reader that forwards each event to its own
#   mailbox. Events are idempotent (fills by execution id, the rest by the order's state
#   machine), so an event seen both in a call's answer and on the stream is applied once.
# * Reconciliation: `open_orders`, `lookup_orders` and `fills_since` let the order actor
#   compare its book with the venue after a reconnect or a cold start; the events it
#   missed are derived from the difference by the pure `tradewind.actors._reconcile`
#   (a fill whose execution id it has not applied yet, a cancel or expiry it never heard
#   of, an order the venue does not know).
# * `on_bar` is called for every bar, connected or not: a simulated venue's market goes
#   on while our connection is down (it trades the bar and raises `BrokerDisconnected`;
#   reconciliation later finds what happened), a live adapter simply raises.
# * Subscriptions (market data from the venue) belong to one connection: the order actor
#   remembers what it subscribed and calls `subscribe` again after every reconnect.
# * `BrokerDisconnected` (in `tradewind.actors._errors`) is the one error of the calls: the
#   request did not reach the venue. Anything the venue refuses is an event
#   (`OrderRejected`, `OrderCancelRejected`), never an exception.
# * The methods are async so that a network adapter fits; the built-in `PaperBroker`
#   never blocks (it is pure), so its calls are not checkpoints.

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, TypeAlias, runtime_checkable

from tradewind.actors._orders import (
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tradewind.actors._marketdata import Bar
    from tradewind.actors._orders import Fill, Order

#: What a broker reports about an order (unstamped: ``status`` None, ``seq`` 0).
BrokerEvent: TypeAlias = (
    OrderAccepted | OrderRejected | OrderFilled | OrderCanceled | OrderCancelRejected | OrderExpired
)

BROKER_EVENT_TYPES: Final[tuple[type[BrokerEvent], ...]] = (
    OrderAccepted,
    OrderRejected,
    OrderFilled,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
)


@runtime_checkable
class Broker(Protocol):
    """A trading venue as the order actor sees it.

    Every call that changes something returns the order events it caused, unstamped, in
    the order they happened; the caller applies them to its own `Order` values.
    """

    @property
    def connected(self) -> bool:
        """Whether the connection is up (calls other than `connect` may succeed)."""
        ...

    async def connect(self) -> None:
        """Open the connection (or reopen it after a disconnect); no-op when up.

        Raises:
            BrokerDisconnected: the venue could not be reached; retry later.
        """
        ...

    async def disconnect(self) -> None:
        """Close the connection. Working orders stay at the venue. No-op when down."""
        ...

    async def submit(self, order: Order) -> Sequence[BrokerEvent]:
        """Send a SUBMITTED order; return its acknowledgement or reject (and any fills).

        Idempotent by client order id: submitting the same order again sends nothing new
        and returns what the first submission returned.

        Raises:
            BrokerDisconnected: the order did not reach the venue.
        """
        ...

    async def cancel(self, client_order_id: str, ts: int) -> Sequence[BrokerEvent]:
        """Ask the venue to cancel an order at event time `ts`.

        Returns:
            `OrderCanceled`, or `OrderCancelRejected` with a reason (unknown order, already
            done), possibly preceded by events the venue had not reported yet.

        Raises:
            BrokerDisconnected: the request did not reach the venue.
        """
        ...

    async def subscribe(self, instruments: Sequence[str]) -> None:
        """Subscribe this connection to the venue's market data of `instruments`.

        Subscriptions end with the connection; the caller re-issues them after a
        reconnect.

        Raises:
            BrokerDisconnected: the connection is down.
        """
        ...

    async def on_bar(self, bar: Bar) -> Sequence[BrokerEvent]:
        """Market data reaches the broker: a simulated venue matches resting orders here;
        a live adapter may return events it has queued, or nothing.

        Called for every bar, whether or not the connection is up.

        Raises:
            BrokerDisconnected: the connection is down: the events of the bar were not
                delivered (a simulated venue still traded it; reconcile to learn them).
        """
        ...

    async def open_orders(self) -> Sequence[Order]:
        """The orders the venue considers working, by submission order (reconciliation).

        Raises:
            BrokerDisconnected: the connection is down.
        """
        ...

    async def lookup_orders(self, client_order_ids: Sequence[str]) -> Sequence[Order]:
        """The venue's copies of the named orders, working or finished, in the order
        asked; ids the venue does not know are left out (reconciliation).

        Raises:
            BrokerDisconnected: the connection is down.
        """
        ...

    async def fills_since(self, ts: int) -> Sequence[Fill]:
        """Every fill with ``fill.ts >= ts``, in execution order (reconciliation).

        Raises:
            BrokerDisconnected: the connection is down.
        """
        ...
