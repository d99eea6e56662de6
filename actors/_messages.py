"""The messages the trading actors exchange.

Design notes
------------
* Commands are imperative (`SubmitIntent`, `PlaceOrder`), events past tense
  (`IntentDenied`, `OrderUpdated`). All are frozen attrs values: a message is never
  changed after it was sent, so one message can go to several mailboxes.
* Market data travels as the domain `Bar` itself, and order and fill news as the domain
  `Order` snapshot plus the stamped event that produced it (`OrderUpdated`): the receiver
  never has to ask for the rest of the order.
* Every message carries `ts`, the event time in integer nanoseconds that caused it (the
  bar's time in a replay, the wall clock in paper mode), so stored records and the event
  log never depend on when a handler happened to run.
* `Persist` carries already-accepted records to the persistence actor; `PersistDurably`
  is the same, but asked, and answered only after the records (and everything queued before
  them) are committed: the order actor journals an intent this way before the broker may
  see it.

This module is pure: values only.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs
from tradewind.actors._calendar import TransitionKind
from tradewind.actors._marketdata import Bar
from tradewind.actors._orders import (
    Fill,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderSubmitted,
)
from tradewind.actors._risk import DenyReason, RiskLimits, TradingState

OrderEvent: TypeAlias = (
    OrderSubmitted
    | OrderAccepted
    | OrderRejected
    | OrderDenied
    | OrderFilled
    | OrderCancelRequested
    | OrderCanceled
    | OrderCancelRejected
    | OrderExpired
)


# ----------------------------------------------------------------------------- feed


@attrs.frozen
class SessionChanged:
    """The trading calendar opened or closed a session at `ts`."""

    kind: TransitionKind
    ts: int


@attrs.frozen
class FeedStale:
    """No market data arrived for `silent_ns` during an open session (watchdog)."""

    ts: int
    silent_ns: int


@attrs.frozen
class FeedResumed:
    """Market data flows again after a `FeedStale`."""

    ts: int


@attrs.frozen
class EndOfData:
    """The replay source is exhausted; nothing more will come from the feed."""

    ts: int


@attrs.frozen
class BarRejected:
    """A bar from the source was refused (invalid, conflicting or out of order)."""

    ts: int
    reason: str
    source_location: str = ""  # e.g. "bars.csv:17"


# ----------------------------------------------------------------------------- strategy -> risk


@attrs.frozen
class SubmitIntent:
    """A strategy asks for an order."""

    intent: OrderIntent
    ts: int


@attrs.frozen
class CancelOrder:
    """Cancel one working order by client order id (cancels always pass risk)."""

    client_order_id: str
    ts: int
    reason: str = ""


# ----------------------------------------------------------------------------- risk -> orders


@attrs.frozen
class PlaceOrder:
    """Risk accepted the intent: the order actor assigns an id, journals, submits."""

    intent: OrderIntent
    ts: int


@attrs.frozen
class OrderActions:
    """Places and cancels that reached risk's outbox one after another (one decision, or
    one cascade's): the order actor journals every intent (INITIALIZED) and every cancel
    request (PENDING_CANCEL) among them in one durable write, then acts on each in order,
    so a kill finds all of them journaled or none. A `CancelAllOrders` may come first
    (the kill switch, with its flattening orders after it); it stands for a cancel of
    every order working before the group."""

    actions: tuple[PlaceOrder | CancelOrder | CancelAllOrders, ...]


@attrs.frozen
class CancelAllOrders:
    """Cancel every working order (the kill switch, or an operator)."""

    ts: int
    reason: str


@attrs.frozen
class IntentDenied:
    """Risk refused an intent; it never reached the order actor or the broker."""

    intent: OrderIntent
    reason: DenyReason
    detail: str
    ts: int


@attrs.frozen
class TradingStateChanged:
    """Risk moved trading to `state` (e.g. HALTED by the kill switch) for `reason`."""

    state: TradingState
    reason: str
    ts: int


@attrs.frozen
class SwapRiskLimits:
    """Replace the risk limits at run time (already validated: `RiskLimits` cannot be
    built invalid). Answered with the limits now in force."""

    limits: RiskLimits


# ------------------------------------------------------------------ orders -> risk, strategy


@attrs.frozen
class OrderUpdated:
    """An order changed: its new snapshot and the stamped event that changed it."""

    order: Order
    event: OrderEvent
    ts: int

    @property
    def fill(self) -> Fill | None:
        """The fill this update carries, if the event was a fill."""
        return self.event.fill if isinstance(self.event, OrderFilled) else None


@attrs.frozen
class BrokerConnectionChanged:
    """The order actor's broker connection went up or down."""

    connected: bool
    ts: int
    reason: str = ""


# ----------------------------------------------------------------------------- persistence


@attrs.frozen
class Persist:
    """Records to store in the next batch (bars, order updates, fills, denials, ...)."""

    records: tuple[object, ...]


@attrs.frozen
class PersistDurably:
    """Records to commit now; asked, and answered only after the commit."""

    records: tuple[object, ...]


@attrs.frozen
class Flush:
    """Commit everything queued so far; asked, answered after the commit."""


# ----------------------------------------------------------------------------- store outage


@attrs.frozen
class StoreAvailabilityChanged:
    """The persistence actor lost (``available=False``) or regained its store.

    Sent to risk: while the store is unavailable no intent can be journaled, so trading
    is HALTED with the reason ``STORE_UNAVAILABLE`` until the store is back.
    """

    available: bool
    ts: int
    reason: str = ""


@attrs.frozen
class NotDurable:
    """The answer to `PersistDurably` when its records could not be committed now.

    The store is unavailable: the records stay accepted (buffered or spilled) and are
    written once the store is back, but they are not durable yet, so whatever waited on
    them (an order on its way to the broker) must not go ahead.
    """

    reason: str
    pending: int


__all__ = [
    "Bar",
    "BarRejected",
    "BrokerConnectionChanged",
    "CancelAllOrders",
    "CancelOrder",
    "EndOfData",
    "FeedResumed",
    "FeedStale",
    "Flush",
    "IntentDenied",
    "NotDurable",
    "OrderActions",
    "OrderEvent",
    "OrderUpdated",
    "Persist",
    "PersistDurably",
    "PlaceOrder",
    "SessionChanged",
    "StoreAvailabilityChanged",
    "SubmitIntent",
    "SwapRiskLimits",
    "TradingStateChanged",
]
