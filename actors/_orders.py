"""Orders: what a strategy asks for, what the system tracks, and the order state machine.

Pure: no trio, no I/O. Quantities and prices are exact `Decimal`s; times are int nanoseconds.
"""

# Design notes
# ------------
# * The whole lifecycle is one table, `TRANSITIONS`, mapping ``(status, event kind)`` to the
#   next status, kept at the top of the module so it can be read (and reviewed) in one
#   place. `Order.apply` is the only way an order changes: it looks the pair up, raises
#   `IllegalTransition` when it is missing and otherwise returns a new frozen `Order`; the
#   old value is never touched, so "an illegal event changes nothing" holds by construction.
# * Two rules cannot be a plain lookup and are spelled as markers in the table:
#   - a fill that leaves quantity open moves to the status the table names, but a fill that
#     completes the order always ends in FILLED (whatever state it raced with);
#   - a cancel reject returns to the open state the order was in when the cancel was
#     requested (kept in `Order.status_before_cancel`; a fill that landed in between turns
#     ACCEPTED into PARTIALLY_FILLED, because that is the state the order is really in).
# * Real-world races are legal on purpose: a fill after a cancel request (PENDING_CANCEL), a
#   fill after a confirmed cancel or expiry (a late fill that raced the cancel: it is
#   recorded, the quantity counts, the order stays CANCELED / EXPIRED unless the fill
#   completes it, in which case the cancel really lost the race and the order is FILLED),
#   a fill or an acknowledgement while a cancel is pending, and a "too late to cancel"
#   reject arriving after the order filled (recorded, status stays FILLED).
# * A venue's terminal news does not wait for its acknowledgement, nor end with it: an
#   exchange may reject an order its broker already acked (ACCEPTED or PARTIALLY_FILLED
#   to REJECTED: the fills stand, the rest is refused), and an IOC remainder may be
#   canceled, or an order expire, before any ack reached us (SUBMITTED to CANCELED or
#   EXPIRED). Refusing them left the order working here forever (every reconciliation
#   refused the same event again), so they are rows of the table like any other.
# * DENIED (risk refused the intent) is reachable only from INITIALIZED: a denied order never
#   reached the broker.
# * Fills are idempotent by execution id: the order keeps the ids it applied and a repeated
#   one returns the order unchanged (no journal entry either). A fill larger than the
#   remaining quantity is not an illegal transition but a broken fill: `InvalidOrder`.
# * The average fill price is derived from exact running sums (quantity and notional), not
#   updated incrementally, so it never drifts; the one division is done at the end.
# * Journal: events are inputs without a status. `Order.apply` stamps the event it applied
#   with the resulting status and its per-order sequence number (from 1) and keeps it as
#   `Order.last_event`; ``(client_order_id, seq)`` is the journal row key. Replaying stamped
#   events through `apply` recomputes the status and refuses a stamp that disagrees, so a
#   corrupted journal is caught at cold start instead of rebuilding a wrong order.
# * Client order ids are ``f"{strategy_id}-{seq:08d}"``: deterministic, sortable per strategy,
#   and resumable after a restart from the highest sequence in the store.

from __future__ import annotations

import enum
import re
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, Final, Literal, TypeAlias

import attrs
from tradewind.actors._errors import DomainError, FloatRefused, IllegalTransition, InvalidOrder
from tradewind.actors._values import Side, to_decimal

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tradewind.actors._values import DecimalLike


class OrderType(enum.Enum):
    """How an order is priced: at the market, or no worse than a limit price."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"


class TimeInForce(enum.Enum):
    """How long an order works: the trading day, until canceled, or immediate-or-cancel."""

    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"


class OrderStatus(enum.Enum):
    """Where an order stands in its lifecycle (see `TRANSITIONS`)."""

    INITIALIZED = "INITIALIZED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    DENIED = "DENIED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        """True when no new quantity can be worked (late fills may still be recorded)."""
        return self in _TERMINAL

    @property
    def is_working(self) -> bool:
        """True when the order may still fill: it counts as exposure in risk checks."""
        return self in _WORKING


class OrderEventKind(enum.Enum):
    """The kinds of things that happen to an order: the columns of `TRANSITIONS`."""

    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    DENIED = "DENIED"
    FILLED = "FILLED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELED = "CANCELED"
    CANCEL_REJECTED = "CANCEL_REJECTED"
    EXPIRED = "EXPIRED"


# Table markers for the two rules that are not a fixed target (see the module notes).
PREVIOUS: Final = "PREVIOUS"  # back to `Order.status_before_cancel`
Target: TypeAlias = OrderStatus | Literal["PREVIOUS"]

_S = OrderStatus
_E = OrderEventKind

# (status, event kind) -> next status. For FILLED events the target is the status after a
# fill that leaves quantity open; a fill that completes the order always ends in FILLED.
TRANSITIONS: Final[dict[tuple[OrderStatus, OrderEventKind], Target]] = {
    # risk decided; the intent is durable and goes to the broker, or never leaves
    (_S.INITIALIZED, _E.SUBMITTED): _S.SUBMITTED,
    (_S.INITIALIZED, _E.DENIED): _S.DENIED,
    # the broker answers the submission
    (_S.SUBMITTED, _E.ACCEPTED): _S.ACCEPTED,
    (_S.SUBMITTED, _E.REJECTED): _S.REJECTED,
    (_S.SUBMITTED, _E.CANCEL_REQUESTED): _S.PENDING_CANCEL,
    # the venue's news need not wait for its ack: an IOC remainder canceled or an expiry
    # before any ack reached us (see the module notes), or a fill
    (_S.SUBMITTED, _E.CANCELED): _S.CANCELED,
    (_S.SUBMITTED, _E.EXPIRED): _S.EXPIRED,
    (_S.SUBMITTED, _E.FILLED): _S.PARTIALLY_FILLED,
    # ... and the ack may then arrive after those fills
    (_S.PARTIALLY_FILLED, _E.ACCEPTED): _S.PARTIALLY_FILLED,
    (_S.FILLED, _E.ACCEPTED): _S.FILLED,
    # working orders; a reject after the ack is the exchange refusing what the broker acked
    (_S.ACCEPTED, _E.FILLED): _S.PARTIALLY_FILLED,
    (_S.ACCEPTED, _E.CANCEL_REQUESTED): _S.PENDING_CANCEL,
    (_S.ACCEPTED, _E.CANCELED): _S.CANCELED,  # unsolicited: IOC remainder, broker action
    (_S.ACCEPTED, _E.EXPIRED): _S.EXPIRED,
    (_S.ACCEPTED, _E.REJECTED): _S.REJECTED,
    (_S.PARTIALLY_FILLED, _E.FILLED): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, _E.CANCEL_REQUESTED): _S.PENDING_CANCEL,
    (_S.PARTIALLY_FILLED, _E.CANCELED): _S.CANCELED,
    (_S.PARTIALLY_FILLED, _E.EXPIRED): _S.EXPIRED,
    (_S.PARTIALLY_FILLED, _E.REJECTED): _S.REJECTED,  # the fills stand, the rest is refused
    # a cancel is in flight: the order may still be acked, fill, expire or be rejected
    (_S.PENDING_CANCEL, _E.ACCEPTED): _S.PENDING_CANCEL,
    (_S.PENDING_CANCEL, _E.FILLED): _S.PENDING_CANCEL,
    (_S.PENDING_CANCEL, _E.CANCELED): _S.CANCELED,
    (_S.PENDING_CANCEL, _E.CANCEL_REJECTED): PREVIOUS,
    (_S.PENDING_CANCEL, _E.EXPIRED): _S.EXPIRED,
    (_S.PENDING_CANCEL, _E.REJECTED): _S.REJECTED,
    # late news after the end: recorded, the status stays (unless a fill completes it)
    (_S.CANCELED, _E.FILLED): _S.CANCELED,
    (_S.EXPIRED, _E.FILLED): _S.EXPIRED,
    (_S.FILLED, _E.CANCEL_REJECTED): _S.FILLED,  # "too late to cancel"
}

_TERMINAL: Final = frozenset(
    {_S.FILLED, _S.CANCELED, _S.REJECTED, _S.DENIED, _S.EXPIRED},
)
_WORKING: Final = frozenset(
    {_S.INITIALIZED, _S.SUBMITTED, _S.ACCEPTED, _S.PARTIALLY_FILLED, _S.PENDING_CANCEL},
)
# The states a cancel reject may return to.
_OPEN_BEFORE_CANCEL: Final = frozenset({_S.SUBMITTED, _S.ACCEPTED, _S.PARTIALLY_FILLED})


# ----------------------------------------------------------------------------- checks


def _order_decimal(value: object, field: str) -> Decimal:
    """`to_decimal`, with its domain errors reported as `InvalidOrder` (floats still raise
    `FloatRefused`)."""
    try:
        return to_decimal(value, field)
    except FloatRefused:
        raise
    except DomainError as exc:
        raise InvalidOrder(str(exc)) from exc


def _quantity(value: DecimalLike) -> Decimal:
    return _order_decimal(value, "quantity")


def _limit_price(value: DecimalLike | None) -> Decimal | None:
    return None if value is None else _order_decimal(value, "limit_price")


def _price(value: DecimalLike) -> Decimal:
    return _order_decimal(value, "price")


def _fee(value: DecimalLike) -> Decimal:
    return _order_decimal(value, "fee")


def _positive(_instance: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if value <= 0:
        msg = f"{attribute.name}: must be > 0, got {value}"
        raise InvalidOrder(msg)


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        msg = f"{attribute.name}: must be a non-empty string, got {value!r}"
        raise InvalidOrder(msg)


_STRATEGY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _strategy_id(_instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not _STRATEGY_ID.fullmatch(value):
        msg = (
            f"{attribute.name}: must start with a letter or digit and use only letters, "
            f"digits, '_', '.', '-', got {value!r}"
        )
        raise InvalidOrder(msg)


def _nanoseconds(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{attribute.name}: must be an int of nanoseconds >= 0, got {value!r}"
        raise InvalidOrder(msg)


# ----------------------------------------------------------------------------- intent


@attrs.frozen
class OrderIntent:
    """What a strategy asks for: buy or sell a quantity, at the market or a limit.

    A LIMIT intent needs a positive limit price; a MARKET intent must have none.
    Quantization to the instrument's tick and lot is the strategy's business (with an
    explicit rounding direction); risk checks an intent against its instrument.

    Raises:
        InvalidOrder: a field is malformed; the message names the field.
        FloatRefused: the quantity or limit price was a float.
    """

    strategy_id: str = attrs.field(validator=_strategy_id)
    instrument: str = attrs.field(validator=_non_empty)
    side: Side = attrs.field(validator=attrs.validators.instance_of(Side))
    quantity: Decimal = attrs.field(converter=_quantity, validator=_positive)
    order_type: OrderType = attrs.field(validator=attrs.validators.instance_of(OrderType))
    limit_price: Decimal | None = attrs.field(converter=_limit_price)
    time_in_force: TimeInForce = attrs.field(
        validator=attrs.validators.instance_of(TimeInForce),
    )
    tag: str = attrs.field(default="", validator=attrs.validators.instance_of(str))

    @limit_price.validator
    def _check_limit_price(
        self, attribute: attrs.Attribute[Decimal | None], value: Decimal | None
    ) -> None:
        if self.order_type is OrderType.MARKET:
            if value is not None:
                msg = f"limit_price: a MARKET order takes no limit price, got {value}"
                raise InvalidOrder(msg)
            return
        if value is None:
            msg = "limit_price: a LIMIT order needs a limit price, got None"
            raise InvalidOrder(msg)
        if value <= 0:
            msg = f"limit_price: must be > 0, got {value}"
            raise InvalidOrder(msg)

    @property
    def signed_quantity(self) -> Decimal:
        """The quantity with the side's sign: positive to buy, negative to sell."""
        return self.quantity * self.side.sign


# ----------------------------------------------------------------------------- fill


@attrs.frozen
class Fill:
    """An execution reported by the broker; `execution_id` is its natural key.

    The fee may be negative (a rebate); it is in `fee_currency`, which need not be the
    instrument's currency.

    Raises:
        InvalidOrder: a field is malformed; the message names the field.
        FloatRefused: a quantity, price or fee was a float.
    """

    execution_id: str = attrs.field(validator=_non_empty)
    client_order_id: str = attrs.field(validator=_non_empty)
    instrument: str = attrs.field(validator=_non_empty)
    side: Side = attrs.field(validator=attrs.validators.instance_of(Side))
    quantity: Decimal = attrs.field(converter=_quantity, validator=_positive)
    price: Decimal = attrs.field(converter=_price, validator=_positive)
    fee: Decimal = attrs.field(converter=_fee)
    fee_currency: str = attrs.field(validator=_non_empty)
    ts: int = attrs.field(validator=_nanoseconds)

    @property
    def signed_quantity(self) -> Decimal:
        """The quantity with the side's sign: positive for a buy, negative for a sell."""
        return self.quantity * self.side.sign


# ----------------------------------------------------------------------------- events


def _status_stamp(
    _instance: object, attribute: attrs.Attribute[OrderStatus | None], value: object
) -> None:
    if value is not None and not isinstance(value, OrderStatus):
        msg = f"{attribute.name}: must be an OrderStatus or None, got {value!r}"
        raise InvalidOrder(msg)


def _seq_stamp(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{attribute.name}: must be an int >= 0 (0 = not yet journaled), got {value!r}"
        raise InvalidOrder(msg)


@attrs.frozen(kw_only=True)
class _EventBase:
    """Fields every order event has: the order, the time, and the journal stamp.

    ``status`` and ``seq`` are None / 0 on an event that has not been applied yet;
    `Order.apply` fills them in (resulting status, per-order sequence from 1).
    """

    kind: ClassVar[OrderEventKind]
    client_order_id: str = attrs.field(validator=_non_empty)
    ts: int = attrs.field(validator=_nanoseconds)
    status: OrderStatus | None = attrs.field(default=None, validator=_status_stamp)
    seq: int = attrs.field(default=0, validator=_seq_stamp)


@attrs.frozen(kw_only=True)
class OrderSubmitted(_EventBase):
    """The intent is durable and the order was sent to the broker."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.SUBMITTED


@attrs.frozen(kw_only=True)
class OrderAccepted(_EventBase):
    """The broker acknowledged the order and gave it its own id."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.ACCEPTED
    broker_order_id: str = attrs.field(validator=_non_empty)


@attrs.frozen(kw_only=True)
class OrderRejected(_EventBase):
    """The broker refused the order."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.REJECTED
    reason: str = attrs.field(default="", validator=attrs.validators.instance_of(str))


@attrs.frozen(kw_only=True)
class OrderDenied(_EventBase):
    """Risk refused the intent before it was submitted."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.DENIED
    reason: str = attrs.field(default="", validator=attrs.validators.instance_of(str))


@attrs.frozen(kw_only=True)
class OrderFilled(_EventBase):
    """An execution against the order (its `fill` carries the execution id)."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.FILLED
    fill: Fill = attrs.field(validator=attrs.validators.instance_of(Fill))


@attrs.frozen(kw_only=True)
class OrderCancelRequested(_EventBase):
    """A cancel was sent to the broker; the order may still fill until it is confirmed."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.CANCEL_REQUESTED


@attrs.frozen(kw_only=True)
class OrderCanceled(_EventBase):
    """The broker confirmed that the order's open quantity is canceled."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.CANCELED


@attrs.frozen(kw_only=True)
class OrderCancelRejected(_EventBase):
    """The broker refused a cancel; the order goes back to its previous open state."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.CANCEL_REJECTED
    reason: str = attrs.field(default="", validator=attrs.validators.instance_of(str))


@attrs.frozen(kw_only=True)
class OrderExpired(_EventBase):
    """The order's time in force ran out."""

    kind: ClassVar[OrderEventKind] = OrderEventKind.EXPIRED


OrderEvent = (
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

ORDER_EVENT_TYPES: Final[tuple[type[OrderEvent], ...]] = (
    OrderSubmitted,
    OrderAccepted,
    OrderRejected,
    OrderDenied,
    OrderFilled,
    OrderCancelRequested,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
)


# ----------------------------------------------------------------------------- order


@attrs.frozen
class Order:
    """An order as the system tracks it: the intent plus everything that happened to it.

    Build one with `Order.create`, change it only with `apply`. Every `Order` value is
    immutable; `apply` returns a new one.
    """

    client_order_id: str
    intent: OrderIntent
    status: OrderStatus
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    broker_order_id: str | None
    created_ts: int
    updated_ts: int
    # Exact running sum of price x quantity over the applied fills.
    fill_notional: Decimal = Decimal(0)
    # Open state to return to when a pending cancel is rejected (None when no cancel).
    status_before_cancel: OrderStatus | None = None
    # Execution ids already applied: a repeated fill changes nothing.
    execution_ids: frozenset[str] = frozenset()
    # The last event applied, stamped with its resulting status and its journal seq.
    last_event: OrderEvent | None = None
    # The broker's or risk's reason for the last reject/deny, if any.
    reason: str = ""

    @classmethod
    def create(cls, client_order_id: str, intent: OrderIntent, ts: int) -> Order:
        """A new INITIALIZED order for `intent` under the id `client_order_id`.

        Raises:
            InvalidOrder: the id is not ``{intent.strategy_id}-{seq:08d}`` or `ts` is bad.
        """
        strategy_id, _seq = parse_client_order_id(client_order_id)
        if strategy_id != intent.strategy_id:
            msg = (
                f"client_order_id: {client_order_id!r} belongs to strategy {strategy_id!r}, "
                f"not to the intent's {intent.strategy_id!r}"
            )
            raise InvalidOrder(msg)
        _nanoseconds(None, attrs.fields(Order).created_ts, ts)
        return cls(
            client_order_id=client_order_id,
            intent=intent,
            status=OrderStatus.INITIALIZED,
            filled_quantity=Decimal(0),
            avg_fill_price=None,
            broker_order_id=None,
            created_ts=ts,
            updated_ts=ts,
        )

    @property
    def remaining_quantity(self) -> Decimal:
        """Quantity not yet filled (zero once FILLED)."""
        return self.intent.quantity - self.filled_quantity

    @property
    def open_quantity(self) -> Decimal:
        """Quantity that may still fill: the remaining quantity while working, else zero."""
        return self.remaining_quantity if self.status.is_working else Decimal(0)

    @property
    def event_seq(self) -> int:
        """How many events this order has journaled (the seq of `last_event`)."""
        return 0 if self.last_event is None else self.last_event.seq

    def apply(self, event: OrderEvent) -> Order:
        """Return the order after `event`, stamping the event for the journal.

        A fill whose execution id was already applied returns this very order. The
        returned order's `last_event` is `event` with ``status`` (the resulting status)
        and ``seq`` (this order's event count, from 1) filled in. An event that already
        carries a stamp (a journal replay) must agree with the recomputation.

        Args:
            event: one of the order events, for this order.

        Returns:
            The new order; this one is never modified.

        Raises:
            IllegalTransition: the table has no entry for (status, event kind), or the
                event's stamp disagrees with the recomputed status or sequence.
            InvalidOrder: the event is for another order, or a fill does not match the
                order (instrument, side) or exceeds the remaining quantity.
        """
        if event.client_order_id != self.client_order_id:
            msg = (
                f"client_order_id: event {event.kind.value} is for "
                f"{event.client_order_id!r}, not for {self.client_order_id!r}"
            )
            raise InvalidOrder(msg)
        if isinstance(event, OrderFilled) and event.fill.execution_id in self.execution_ids:
            return self
        target = TRANSITIONS.get((self.status, event.kind))
        if target is None:
            msg = (
                f"order {self.client_order_id}: {event.kind.value} is not allowed "
                f"in status {self.status.value}"
            )
            raise IllegalTransition(msg)
        changed = self._next(event, target)
        if changed.status is not OrderStatus.PENDING_CANCEL and changed.status_before_cancel:
            # Only a pending cancel has a state to return to (e.g. it was rejected instead).
            changed = attrs.evolve(changed, status_before_cancel=None)
        seq = self.event_seq + 1
        if event.status is not None and (event.status is not changed.status or event.seq != seq):
            msg = (
                f"order {self.client_order_id}: journaled {event.kind.value} says "
                f"{event.status.value} at seq {event.seq}, recomputed "
                f"{changed.status.value} at seq {seq}"
            )
            raise IllegalTransition(msg)
        stamped = attrs.evolve(event, status=changed.status, seq=seq)
        return attrs.evolve(changed, updated_ts=event.ts, last_event=stamped)

    def _next(self, event: OrderEvent, target: Target) -> Order:
        """This order with the changes `event` makes, given the table's `target`."""
        if not isinstance(target, OrderStatus):  # PREVIOUS: a cancel was rejected
            previous = self.status_before_cancel
            assert previous is not None  # noqa: S101 -- PENDING_CANCEL always records it
            reason = event.reason if isinstance(event, OrderCancelRejected) else self.reason
            return attrs.evolve(self, status=previous, status_before_cancel=None, reason=reason)
        if isinstance(event, OrderCancelRequested):
            return attrs.evolve(self, status=target, status_before_cancel=self.status)
        if isinstance(event, OrderAccepted):
            before = self.status_before_cancel
            if before is OrderStatus.SUBMITTED:
                before = OrderStatus.ACCEPTED
            return attrs.evolve(
                self,
                status=target,
                broker_order_id=event.broker_order_id,
                status_before_cancel=before,
            )
        if isinstance(event, OrderRejected | OrderDenied | OrderCancelRejected):
            return attrs.evolve(self, status=target, reason=event.reason)
        if isinstance(event, OrderFilled):
            return self._filled(event.fill, target)
        return attrs.evolve(self, status=target)

    def _filled(self, fill: Fill, target: OrderStatus) -> Order:
        if fill.client_order_id != self.client_order_id:
            msg = (
                f"fill {fill.execution_id}: client_order_id {fill.client_order_id!r} "
                f"is not {self.client_order_id!r}"
            )
            raise InvalidOrder(msg)
        if fill.instrument != self.intent.instrument or fill.side is not self.intent.side:
            msg = (
                f"fill {fill.execution_id}: {fill.side.value} {fill.instrument} does not "
                f"match order {self.client_order_id} ({self.intent.side.value} "
                f"{self.intent.instrument})"
            )
            raise InvalidOrder(msg)
        if fill.quantity > self.remaining_quantity:
            msg = (
                f"fill {fill.execution_id}: quantity {fill.quantity} exceeds the remaining "
                f"{self.remaining_quantity} of order {self.client_order_id} "
                f"(ordered {self.intent.quantity}, filled {self.filled_quantity})"
            )
            raise InvalidOrder(msg)
        filled = self.filled_quantity + fill.quantity
        notional = self.fill_notional + fill.price * fill.quantity
        status = target
        before = self.status_before_cancel
        if filled == self.intent.quantity:
            status, before = OrderStatus.FILLED, None
        elif before in {OrderStatus.SUBMITTED, OrderStatus.ACCEPTED}:
            before = OrderStatus.PARTIALLY_FILLED
        return attrs.evolve(
            self,
            status=status,
            status_before_cancel=before,
            filled_quantity=filled,
            fill_notional=notional,
            avg_fill_price=notional / filled,
            execution_ids=self.execution_ids | {fill.execution_id},
        )


def replay_order_events(order: Order, events: Iterable[OrderEvent]) -> Order:
    """Apply `events` in order to `order` (e.g. a journal at cold start).

    Raises:
        IllegalTransition, InvalidOrder: as `Order.apply`, at the first bad event.
    """
    for event in events:
        order = order.apply(event)
    return order


# ----------------------------------------------------------------------------- ids

_SEQ_WIDTH: Final = 8


def format_client_order_id(strategy_id: str, seq: int) -> str:
    """The client order id for `strategy_id` and the positive sequence `seq`.

    Raises:
        InvalidOrder: `strategy_id` is malformed or `seq` is not a positive int.
    """
    _strategy_id(None, attrs.fields(OrderIntent).strategy_id, strategy_id)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        msg = f"seq: must be a positive int, got {seq!r}"
        raise InvalidOrder(msg)
    return f"{strategy_id}-{seq:0{_SEQ_WIDTH}d}"


def parse_client_order_id(client_order_id: str) -> tuple[str, int]:
    """Split a client order id into ``(strategy_id, seq)``.

    Only the canonical form `format_client_order_id` produces is accepted, so that
    parsing and formatting round-trip exactly.

    Raises:
        InvalidOrder: the id is not ``{strategy_id}-{seq:08d}`` with a positive seq.
    """
    strategy_id, dash, digits = client_order_id.rpartition("-")
    if (
        not dash
        or not digits.isascii()
        or not digits.isdigit()
        or not _STRATEGY_ID.fullmatch(strategy_id)
    ):
        msg = f"client_order_id: expected '<strategy_id>-<seq:08d>', got {client_order_id!r}"
        raise InvalidOrder(msg)
    seq = int(digits)
    if seq < 1 or f"{seq:0{_SEQ_WIDTH}d}" != digits:
        msg = (
            f"client_order_id: sequence must be a positive int written with at least "
            f"{_SEQ_WIDTH} digits and no extra leading zeros, got {client_order_id!r}"
        )
        raise InvalidOrder(msg)
    return strategy_id, seq


@attrs.define
class ClientOrderIds:
    """Deterministic, unique client order ids for one strategy.

    Ids are ``{strategy_id}-{seq:08d}`` with seq counting from ``last_seq + 1``. After a
    restart, resume from the highest sequence in the store (`resume`, or `observe` each
    stored id) so that no id is ever issued twice.

    Raises:
        InvalidOrder: a malformed strategy id or a negative `last_seq`.
    """

    strategy_id: str = attrs.field(validator=_strategy_id)
    last_seq: int = attrs.field(default=0)

    @last_seq.validator
    def _check_last_seq(self, attribute: attrs.Attribute[int], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"{attribute.name}: must be an int >= 0, got {value!r}"
            raise InvalidOrder(msg)

    @classmethod
    def resume(cls, strategy_id: str, seen: Iterable[str]) -> ClientOrderIds:
        """A generator continuing after the highest sequence of `strategy_id` in `seen`.

        Ids of other strategies in `seen` are ignored.

        Raises:
            InvalidOrder: an id in `seen` is malformed.
        """
        ids = cls(strategy_id)
        for client_order_id in seen:
            ids.observe(client_order_id)
        return ids

    def observe(self, client_order_id: str) -> None:
        """Note an id issued earlier, so the next one comes after it if it is ours.

        Raises:
            InvalidOrder: the id is malformed.
        """
        strategy_id, seq = parse_client_order_id(client_order_id)
        if strategy_id == self.strategy_id and seq > self.last_seq:
            self.last_seq = seq

    def next(self) -> str:
        """Issue the next id (and advance)."""
        self.last_seq += 1
        return format_client_order_id(self.strategy_id, self.last_seq)

    def peek(self) -> str:
        """The id `next` would issue, without advancing."""
        return format_client_order_id(self.strategy_id, self.last_seq + 1)


def track_order(orders: dict[str, Order], seen_seq: dict[str, int], order: Order) -> bool:
    """Keep `order` in the view of working orders if it is newer than what is held.

    A snapshot replaces the held one only when its journal sequence is higher, so a stale
    or redelivered update never rolls an order back; a snapshot in a terminal state
    removes the order from `orders`. `seen_seq` remembers the highest sequence seen per
    client order id, also for orders no longer working.

    Returns:
        True when the client order id had never been seen before.
    """
    known = seen_seq.get(order.client_order_id)
    if known is None or order.event_seq > known:
        seen_seq[order.client_order_id] = order.event_seq
        if order.status.is_working:
            orders[order.client_order_id] = order
        else:
            orders.pop(order.client_order_id, None)
    return known is None
