"""The paper broker: a deterministic matching engine over bars, and the `Broker` over it.

Pure: plain data in, order events out; no clock, no randomness, no I/O.
"""

# Design notes
# ------------
# * Matching rules (one bar at a time, per instrument, orders in submission order):
#   - an order is eligible only for bars with ``ts > submit_ts`` and
#     ``ts >= submit_ts + latency_ns``: it never fills on the bar it was placed on (that bar
#     has already traded when the strategy saw it), and latency pushes it further out;
#   - a MARKET order fills at the eligible bar's open;
#   - a LIMIT buy fills when ``low <= limit``, at the limit, or at the open when the bar
#     opens through it (``open <= limit``: the better price); a LIMIT sell symmetrically
#     when ``high >= limit``, at ``max(limit, open)``. So before slippage every fill price
#     lies inside the bar's [low, high];
#   - slippage moves the price against the order by ``slippage_ticks`` ticks and quantizes
#     it to the tick with a named rounding direction (default: adverse, buys UP, sells
#     DOWN); a limit order never fills beyond its limit, so slippage is capped there;
#   - partial fills: with ``max_volume_fraction`` a bar fills at most that share of its
#     volume (rounded DOWN to the lot), shared by its instrument's orders in submission
#     order (the first takes what it needs, the next what is left); the rest of each
#     stays working for later bars;
#   - fees: ``quantity * fee_per_unit + notional * fee_bps / 10_000``, exact Decimal, in the
#     instrument's currency (notional includes the contract multiplier);
#   - IOC: whatever the first eligible bar does not fill is canceled (`OrderCanceled`, the
#     table's "unsolicited cancel"); DAY: expires (`OrderExpired`) on the first bar of a
#     later day (the local date in the calendar's `timezone`, as risk's trading day;
#     without one, days of ``day_ns`` from ``day_offset_ns``); GTC works until done;
#   - a cancel asked at time t reaches the venue at ``t + latency_ns``, as an order does,
#     and by the rule that places an order: the order still trades on every bar with
#     ``ts <= t`` or ``ts < t + latency_ns``. A decision stamped t is made once the bars
#     stamped t have traded, so a cancel decided on AAPL's bar at t cannot stop the fill
#     MSFT's bar at t gives a resting MSFT order: that trading happened before the
#     decision. The cancel takes effect (`OrderCanceled`, stamped ``t + latency_ns``) as
#     soon as no bar that could still trade the order can come: at once when the order's
#     instrument has traded up to then (the usual case: a strategy cancels on its own
#     instrument's bar, without latency), else after the matching of the bar of the
#     order's instrument that settles it, or before the matching of the first bar of any
#     instrument at or after its arrival. An order a bar fills completely while its
#     cancel waits gets ``OrderCancelRejected`` ("too late to cancel"); an expiry or an
#     IOC cancel ends it as usual. Until then the order is working at the venue (in
#     `open_orders`); asking again changes nothing;
# * The engine keeps its own copy of every order and applies its own events to it with
#   `Order.apply`, so the venue's view is checked by the same state machine as the order
#   actor's, and `open_orders` is a list of real `Order` values for reconciliation. The
#   events it returns are unstamped: the receiver stamps them in its own journal.
# * Idempotence: a repeated submit of a client order id returns the first answer and
#   sends nothing; a bar at or before the last one seen for its series is ignored. Both
#   make a redelivered message after an order-actor crash harmless.
# * Decide, then change: every method computes everything that can fail before it
#   touches the engine's state, so an exception (an injected disconnect, a bad order)
#   leaves the engine as it was.
# * Execution ids are ``f"{client_order_id}-F{n}"`` (n from 1 per order) and broker order
#   ids ``f"PAPER-{n:08d}"`` (n = accepted submits): both follow from the data alone.
# * Fault injection (tests): reject the Nth submit or every submit matching a predicate,
#   hold acknowledgements back for a number of bars (fills may then overtake the ack, as
#   the order state machine allows), drop the connection at given bar times (each
#   once; `connect` brings it back, working orders survive at the venue), and refuse a
#   number of `connect` attempts after each injected drop (so a caller's reconnect
#   backoff is exercised). An ack still held when the order is canceled, expires or is
#   IOC-canceled is released first, so the receiver always sees a legal sequence.
# * The market does not stop when our connection does: `on_bar` trades every bar whether
#   or not the connection is up, and only its *news* is lost while it is down (the call
#   raises `BrokerDisconnected` after matching). The venue keeps the truth (its order
#   copies, its fills), so a reconnecting caller finds what happened through
#   `open_orders`, `lookup_orders` and `fills_since`: reconciliation meets real fills,
#   expiries and cancels. This is the one call that changes the engine and then raises;
#   the bar is still recorded as seen, so a redelivered bar changes nothing.
# * Subscriptions belong to a connection: `subscribe` records the instruments, a
#   disconnect forgets them, so a test sees whether the caller restored them.
# * Cold start (`restore`): the engine dies with the process, and is rebuilt from the
#   order journal of the store, which is taken as the venue's truth (an INITIALIZED or
#   SUBMITTED order is taken as if it had just arrived; an accepted one keeps its status,
#   fills and broker order id; the series are traded up to the last stored bar): the
#   two then agree by construction, and a restarted replay ends as an uninterrupted one.
#   The other choice, ``[broker] state = "tables"``, is `DurablePaperBroker`
#   (`_paper_venue.py`): the venue keeps its own tables, written through before it
#   answers, so after a kill it may be ahead of or behind the journal and the restart's
#   reconciliation meets real differences (``docs/trading-system.md``, "Cold start").
# * `PaperBroker` is the `Broker` over the engine. Its async methods never block and
#   are not checkpoints: the engine is pure, and a replay pays no scheduler round trip
#   per bar for a simulated venue.

from __future__ import annotations

import datetime as _dt
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import attrs
from tradewind.actors._broker import BrokerEvent
from tradewind.actors._errors import BrokerDisconnected, DomainError, InvalidOrder
from tradewind.actors._marketdata import SeriesKey
from tradewind.actors._orders import (
    Fill,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    TimeInForce,
)
from tradewind.actors._values import (
    Instrument,
    Rounding,
    Side,
    datetime_from_ns,
    round_to_step,
    to_decimal,
)

if TYPE_CHECKING:
    from tradewind.actors._marketdata import Bar

_NS_PER_DAY: Final = 86_400 * 10**9
_BPS: Final = Decimal(10_000)
_NOTHING: Final = Decimal(0)
_EPOCH_DATE: Final = _dt.date(1970, 1, 1)


# ----------------------------------------------------------------------------- config


def _slippage_ticks(value: object) -> Decimal:
    return to_decimal(value, "slippage_ticks")


def _fee_per_unit(value: object) -> Decimal:
    return to_decimal(value, "fee_per_unit")


def _fee_bps(value: object) -> Decimal:
    return to_decimal(value, "fee_bps")


def _optional_fraction(value: object) -> Decimal | None:
    return None if value is None else to_decimal(value, "max_volume_fraction")


def _instruments(value: object) -> dict[str, Instrument]:
    if isinstance(value, Instrument):
        return {value.symbol: value}
    items = list(value.values()) if isinstance(value, Mapping) else value
    if not isinstance(items, Sequence) or not all(isinstance(i, Instrument) for i in items):
        msg = f"instruments: must be Instruments (one, a sequence or a mapping), got {value!r}"
        raise DomainError(msg)
    return {i.symbol: i for i in items}


def _submit_numbers(value: Iterable[int]) -> frozenset[int]:
    return frozenset(value)


def _times(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


def _non_negative(_instance: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if value < 0:
        msg = f"{attribute.name}: must be >= 0, got {value}"
        raise DomainError(msg)


def _non_negative_int(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{attribute.name}: must be an int >= 0, got {value!r}"
        raise DomainError(msg)


def _positive_int(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        msg = f"{attribute.name}: must be an int > 0, got {value!r}"
        raise DomainError(msg)


@attrs.frozen
class PaperConfig:
    """How the paper broker fills orders.

    Attributes:
        instruments: the tradable instruments by symbol (a mapping, a sequence or one
            instrument); an order for any other symbol is rejected.
        slippage_ticks: adverse price move per fill, in ticks (>= 0; may be fractional).
        slippage_rounding: the direction a slipped price is quantized to the tick; None
            means adverse to the order (a buy rounds UP, a sell DOWN).
        fee_per_unit: fee per unit of quantity, in the instrument's currency.
        fee_bps: fee in basis points of the fill's notional (price * quantity * multiplier).
        max_volume_fraction: at most this share (0 < f <= 1) of a bar's volume fills per
            bar; None for no cap.
        latency_ns: an order is eligible only for bars with ``ts >= submit_ts + latency``.
        timeframe: only bars of this timeframe match orders; None for every bar.
        day_ns, day_offset_ns: the trading day for DAY orders: day number
            ``(ts - day_offset_ns) // day_ns`` (without a `timezone`).
        timezone: an IANA zone (the trading calendar's): the trading day for DAY orders
            is then the local date there, as risk's trading day is (days since
            1970-01-01), whatever the UTC offset of the day (daylight saving).

    Raises:
        DomainError: a field is out of range; the message names it.
        FloatRefused: a Decimal field was given as a float.
    """

    instruments: dict[str, Instrument] = attrs.field(converter=_instruments)
    slippage_ticks: Decimal = attrs.field(
        default=Decimal(0), converter=_slippage_ticks, validator=_non_negative
    )
    slippage_rounding: Rounding | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(Rounding)),
    )
    fee_per_unit: Decimal = attrs.field(default=Decimal(0), converter=_fee_per_unit)
    fee_bps: Decimal = attrs.field(default=Decimal(0), converter=_fee_bps)
    max_volume_fraction: Decimal | None = attrs.field(default=None, converter=_optional_fraction)
    latency_ns: int = attrs.field(default=0, validator=_non_negative_int)
    timeframe: str | None = None
    day_ns: int = attrs.field(default=_NS_PER_DAY, validator=_positive_int)
    day_offset_ns: int = attrs.field(default=0, validator=_non_negative_int)
    timezone: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    _zone: zoneinfo.ZoneInfo | None = attrs.field(init=False, repr=False, eq=False, hash=False)

    @_zone.default
    def _zone_of(self) -> zoneinfo.ZoneInfo | None:
        if self.timezone is None:
            return None
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"timezone: {self.timezone!r} is not a known time zone"
            raise DomainError(msg) from exc

    @max_volume_fraction.validator
    def _check_fraction(
        self, attribute: attrs.Attribute[Decimal | None], value: Decimal | None
    ) -> None:
        if value is not None and not 0 < value <= 1:
            msg = f"{attribute.name}: must be > 0 and <= 1, got {value}"
            raise DomainError(msg)

    def day_of(self, ts: int) -> int:
        """The trading-day number of event time `ts` (for DAY orders)."""
        if self._zone is not None:
            local = datetime_from_ns(ts).astimezone(self._zone).date()
            return (local - _EPOCH_DATE).days
        return (ts - self.day_offset_ns) // self.day_ns

    def fee(self, instrument: Instrument, price: Decimal, quantity: Decimal) -> Decimal:
        """The fee of one fill: per unit plus basis points of its notional, exact."""
        notional = price * quantity * instrument.multiplier
        return quantity * self.fee_per_unit + notional * self.fee_bps / _BPS

    def fill_price(self, side: Side, base: Decimal, instrument: Instrument) -> Decimal:
        """`base` moved against `side` by the slippage and quantized to the tick.

        Without slippage the price is returned as it is. A slipped sell never goes
        below one tick.
        """
        if not self.slippage_ticks:
            return base
        raw = base + side.sign * self.slippage_ticks * instrument.tick_size
        rounding = self.slippage_rounding
        if rounding is None:
            rounding = Rounding.UP if side is Side.BUY else Rounding.DOWN
        return max(round_to_step(raw, instrument.tick_size, rounding), instrument.tick_size)


@attrs.frozen
class PaperFaults:
    """Faults the paper broker injects, for tests.

    Attributes:
        reject_submits: reject the Nth new submit (1-based, counting every new client
            order id) for each N in the set.
        reject_if: reject every submitted order for which this returns True.
        reject_reason: the reason the injected rejects carry.
        ack_delay_bars: hold each acknowledgement back for this many matching bars.
        disconnect_at: drop the connection when the first bar with ``ts >=`` each of
            these times arrives (once per time; the venue still trades that bar, its
            news is lost).
        failed_reconnects: after each injected drop, refuse this many `connect`
            attempts (`BrokerDisconnected`) before one succeeds.
    """

    reject_submits: frozenset[int] = attrs.field(default=frozenset(), converter=_submit_numbers)
    reject_if: Callable[[Order], bool] | None = None
    reject_reason: str = "rejected by fault injection"
    ack_delay_bars: int = attrs.field(default=0, validator=_non_negative_int)
    disconnect_at: tuple[int, ...] = attrs.field(default=(), converter=_times)
    failed_reconnects: int = attrs.field(default=0, validator=_non_negative_int)


@attrs.frozen
class PaperStatistics:
    """Counters of a paper broker (see `PaperExchange.statistics`)."""

    submits: int
    accepted: int
    rejected: int
    fills: int
    canceled: int
    expired: int
    working: int
    bars: int
    disconnects: int
    connect_attempts: int
    refused_connects: int
    subscribes: int


# ----------------------------------------------------------------------------- engine


@attrs.frozen
class VenueOrderRecord:
    """What the venue keeps of one order it took, beyond the order itself: enough to
    store it and to load it back (`PaperExchange.record` and `PaperExchange.load`).

    Attributes:
        order: the venue's copy of the order.
        submit_no: the venue's count of submits when it took the order.
        answer_ts: the time of its answer (accepted or rejected).
        eligible_from: a working order matches bars from this time on; None once final.
        trading_day: a working order's trading day (for DAY expiry); None once final.
    """

    order: Order
    submit_no: int
    answer_ts: int
    eligible_from: int | None = None
    trading_day: int | None = None


@attrs.define
class _HeldAck:
    event: OrderAccepted
    bars_left: int


@attrs.define
class PaperExchange:
    """The paper broker's matching engine: orders in, order events out, bar by bar.

    Starts disconnected; call `connect` first. Not thread-safe; one owner (the order
    actor's broker) drives it.
    """

    config: PaperConfig
    faults: PaperFaults = attrs.field(factory=PaperFaults)
    connected: bool = False
    # Every order the venue has seen (its own copy), by client order id.
    _orders: dict[str, Order] = attrs.field(factory=dict, init=False)
    # Working client order ids, in submission order (a dict as an ordered set).
    _working: dict[str, None] = attrs.field(factory=dict, init=False)
    _eligible_from: dict[str, int] = attrs.field(factory=dict, init=False)
    _day: dict[str, int] = attrs.field(factory=dict, init=False)
    _answers: dict[str, tuple[BrokerEvent, ...]] = attrs.field(factory=dict, init=False)
    _held_acks: dict[str, _HeldAck] = attrs.field(factory=dict, init=False)
    _fills: list[Fill] = attrs.field(factory=list, init=False)
    _last_bar: dict[SeriesKey, int] = attrs.field(factory=dict, init=False)
    _dropped: set[int] = attrs.field(factory=set, init=False)
    _submits: int = attrs.field(default=0, init=False)
    _accepted: int = attrs.field(default=0, init=False)
    _rejected: int = attrs.field(default=0, init=False)
    _canceled: int = attrs.field(default=0, init=False)
    _expired: int = attrs.field(default=0, init=False)
    _bars: int = attrs.field(default=0, init=False)
    _disconnects: int = attrs.field(default=0, init=False)
    _connect_attempts: int = attrs.field(default=0, init=False)
    _refused_connects: int = attrs.field(default=0, init=False)
    _refusals_left: int = attrs.field(default=0, init=False)
    _subscriptions: frozenset[str] = attrs.field(default=frozenset(), init=False)
    _subscribes: int = attrs.field(default=0, init=False)
    # The venue's count of submits when it took each order (its submission number).
    _submit_no: dict[str, int] = attrs.field(factory=dict, init=False)
    # Cancels received whose effect waits (see the module notes): the time each was
    # asked, by client order id (working orders only).
    _cancel_asked: dict[str, int] = attrs.field(factory=dict, init=False)

    # ------------------------------------------------------------------ connection
    def connect(self) -> None:
        """Bring the connection up (working orders are still there); no-op when up.

        Raises:
            BrokerDisconnected: an injected refusal (`PaperFaults.failed_reconnects`).
        """
        if self.connected:
            return
        self._connect_attempts += 1
        if self._refusals_left:
            self._refusals_left -= 1
            self._refused_connects += 1
            msg = (
                f"paper broker: connection refused (fault injection, "
                f"{self._refusals_left} more refusals)"
            )
            raise BrokerDisconnected(msg)
        self.connected = True

    def disconnect(self) -> None:
        """Drop the connection and its subscriptions; working orders stay at the venue
        (and keep trading against the bars)."""
        if self.connected:
            self._disconnects += 1
        self.connected = False
        self._subscriptions = frozenset()

    @property
    def subscriptions(self) -> frozenset[str]:
        """The instruments subscribed on the current connection."""
        return self._subscriptions

    def subscribe(self, instruments: Iterable[str]) -> None:
        """Subscribe the current connection to market data of `instruments` (added to
        what it has).

        Raises:
            BrokerDisconnected: not connected.
        """
        wanted = frozenset(instruments)
        self._require_connection(f"subscription to {sorted(wanted)}")
        self._subscriptions |= wanted
        self._subscribes += 1

    def _require_connection(self, what: str) -> None:
        if not self.connected:
            msg = f"paper broker: not connected, {what} not delivered"
            raise BrokerDisconnected(msg)

    # ------------------------------------------------------------------ orders
    def submit(self, order: Order) -> tuple[BrokerEvent, ...]:
        """Take a SUBMITTED order; return its ack (unless held back) or its reject.

        The submission time is ``order.updated_ts`` (the time of its SUBMITTED event).
        A client order id seen before returns the first answer again.

        Raises:
            BrokerDisconnected: not connected.
            InvalidOrder: a new order that is not SUBMITTED (a caller bug).
        """
        if not self.connected:
            self._require_connection(f"submit of {order.client_order_id}")
        coid = order.client_order_id
        answer = self._answers.get(coid)
        if answer is not None:
            return answer
        if order.status is not OrderStatus.SUBMITTED:
            msg = f"paper broker: order {coid} is {order.status.value}, not SUBMITTED"
            raise InvalidOrder(msg)
        number = self._submits + 1
        reason = self._reject_reason(order, number)
        ts = order.updated_ts
        event: OrderAccepted | OrderRejected
        if reason:
            event = OrderRejected(client_order_id=coid, ts=ts, reason=reason)
        else:
            event = OrderAccepted(
                client_order_id=coid, ts=ts, broker_order_id=f"PAPER-{self._accepted + 1:08d}"
            )
        copy = order.apply(event)  # may raise: nothing has changed yet
        self._submits = number
        self._submit_no[coid] = number
        if isinstance(event, OrderRejected):
            self._rejected += 1
            self._orders[coid] = copy
            answer = (event,)
        else:
            self._accepted += 1
            self._working[coid] = None
            self._eligible_from[coid] = ts + max(self.config.latency_ns, 1)
            self._day[coid] = self.config.day_of(ts)
            if self.faults.ack_delay_bars:
                self._orders[coid] = order
                self._held_acks[coid] = _HeldAck(event, self.faults.ack_delay_bars)
                answer = ()
            else:
                self._orders[coid] = copy
                answer = (event,)
        self._answers[coid] = answer
        return answer

    def _reject_reason(self, order: Order, number: int) -> str:
        symbol = order.intent.instrument
        if symbol not in self.config.instruments:
            return f"unknown instrument {symbol!r}"
        if number in self.faults.reject_submits:
            return self.faults.reject_reason
        if self.faults.reject_if is not None and self.faults.reject_if(order):
            return self.faults.reject_reason
        return ""

    def cancel(self, client_order_id: str, ts: int) -> tuple[BrokerEvent, ...]:
        """Ask to cancel a working order at `ts`: `OrderCanceled` (after a held ack, if
        any) once it takes effect -- now, or with a later bar when a bar that could still
        trade the order may come (nothing now; see the module notes) -- or
        `OrderCancelRejected` for an unknown or finished order.

        Raises:
            BrokerDisconnected: not connected.
        """
        if not self.connected:
            self._require_connection(f"cancel of {client_order_id}")
        order = self._orders.get(client_order_id)
        if order is None:
            return (
                OrderCancelRejected(client_order_id=client_order_id, ts=ts, reason="unknown order"),
            )
        if client_order_id not in self._working:
            reason = f"too late to cancel: order is {order.status.value}"
            return (OrderCancelRejected(client_order_id=client_order_id, ts=ts, reason=reason),)
        if client_order_id in self._cancel_asked:
            return ()  # asked before: that request stands
        self._cancel_asked[client_order_id] = ts
        events: list[BrokerEvent] = []
        self._cancel_if_settled(client_order_id, events)
        return tuple(events)

    def _cancel_if_settled(self, coid: str, events: list[BrokerEvent]) -> None:
        """Cancel `coid` now if no bar that could still trade it can come before the
        cancel arrives: none is eligible yet, or its instrument has traded every bar up
        to then (see the module notes)."""
        arrival = self._cancel_asked[coid] + max(self.config.latency_ns, 1)
        first = self._eligible_from[coid]  # the first bar time that could trade it
        traded = self._traded_until(self._orders[coid].intent.instrument)
        if traded is not None:
            first = max(first, traded + 1)
        if first >= arrival:
            self._cancel_arrived(coid, events)

    def _cancel_arrived(self, coid: str, events: list[BrokerEvent]) -> None:
        ts = self._cancel_asked[coid] + self.config.latency_ns
        self._release_ack(coid, events)
        self._end(coid, OrderCanceled(client_order_id=coid, ts=ts), events)

    def _traded_until(self, instrument: str) -> int | None:
        """The time of the last bar of `instrument` the venue traded (of the configured
        timeframe; of any, without one), or None before its first."""
        timeframe = self.config.timeframe
        if timeframe is not None:
            return self._last_bar.get((instrument, timeframe))
        seen = [ts for (symbol, _), ts in self._last_bar.items() if symbol == instrument]
        return max(seen, default=None)

    def open_orders(self) -> tuple[Order, ...]:
        """The venue's copies of its working orders, in submission order.

        Raises:
            BrokerDisconnected: not connected.
        """
        self._require_connection("open orders request")
        return tuple(self._orders[coid] for coid in self._working)

    def lookup_orders(self, client_order_ids: Iterable[str]) -> tuple[Order, ...]:
        """The venue's copies of the named orders it knows, working or finished, in the
        order asked; unknown ids are left out.

        Raises:
            BrokerDisconnected: not connected.
        """
        self._require_connection("order lookup")
        orders = self._orders
        return tuple(orders[coid] for coid in client_order_ids if coid in orders)

    def fills_since(self, ts: int) -> tuple[Fill, ...]:
        """Every fill with ``ts >= ts``, in execution order.

        Raises:
            BrokerDisconnected: not connected.
        """
        self._require_connection("fills request")
        return tuple(fill for fill in self._fills if fill.ts >= ts)

    # ------------------------------------------------------------------ cold start
    def restore(
        self,
        orders: Iterable[Order],
        fills: Iterable[Fill],
        last_bars: Mapping[SeriesKey, int],
        *,
        cancels_asked: Mapping[str, int] | None = None,
    ) -> None:
        """Cold start: rebuild the venue from the journal of the run that crashed.

        The paper venue lives in the process that died with it, so the store is taken
        as the venue's truth (see ``docs/trading-system.md``, "Cold start"): every
        journaled order reached the venue (the order actor journals an intent before it
        submits it, so an INITIALIZED or SUBMITTED order may have been on the wire and
        is taken now, with the answer a live venue would have given); an order with a
        broker order id was accepted and keeps its status and fills, and a
        PENDING_CANCEL one (its cancel request is journaled before the venue hears it)
        has its cancel taken as asked at the time of the request (canceled now when the
        bars traded up to `last_bars` settle it; see the module notes); a REJECTED one
        without a broker order id was rejected here; a DENIED one never left us. The
        venue has traded every series up to `last_bars` (the last stored bar times).

        Args:
            orders: every stored order, in submission (client order id) order.
            fills: every stored fill, in execution order.
            last_bars: the time of the last stored bar per (instrument, timeframe).
            cancels_asked: when each PENDING_CANCEL order's cancel was asked (its
                journaled request); without one, the order's last change is taken.

        Raises:
            DomainError: the engine has already seen orders or bars.
            InvalidOrder: a stored order the state machine refuses (a corrupt store).
        """
        if self._orders or self._last_bar or self._submits:
            msg = "paper broker: restore needs a fresh engine"
            raise DomainError(msg)
        was_connected, self.connected = self.connected, True
        try:
            asked = cancels_asked or {}
            for order in orders:
                self._restore_order(order, asked.get(order.client_order_id))
        finally:
            self.connected = was_connected
        self._last_bar.update(last_bars)
        for coid in list(self._cancel_asked):
            self._cancel_if_settled(coid, [])
        self._fills = [fill for fill in fills if fill.client_order_id in self._working]

    def _restore_order(self, order: Order, cancel_asked: int | None = None) -> None:
        coid = order.client_order_id
        status = order.status
        if status is OrderStatus.DENIED:
            return
        if status is OrderStatus.INITIALIZED:
            order = order.apply(OrderSubmitted(client_order_id=coid, ts=order.created_ts))
            status = order.status
        if status is OrderStatus.SUBMITTED:
            self.submit(order)
            return
        self._submits += 1
        self._submit_no[coid] = self._submits
        if order.broker_order_id is None:  # rejected by the venue
            self._rejected += 1
            self._orders[coid] = order
            reason = order.reason or "rejected"
            self._answers[coid] = (
                OrderRejected(client_order_id=coid, ts=order.created_ts, reason=reason),
            )
            return
        number = order.broker_order_id.removeprefix("PAPER-")
        self._accepted = max(self._accepted + 1, int(number) if number.isdigit() else 0)
        self._orders[coid] = order
        self._answers[coid] = (
            OrderAccepted(
                client_order_id=coid, ts=order.created_ts, broker_order_id=order.broker_order_id
            ),
        )
        if status.is_working:
            self._working[coid] = None
            self._eligible_from[coid] = order.created_ts + max(self.config.latency_ns, 1)
            self._day[coid] = self.config.day_of(order.created_ts)
        if status is OrderStatus.PENDING_CANCEL:
            # A cancel request is journaled before the venue hears it, as an intent is
            # before its submit: it may have reached the venue, so the venue takes it, as
            # asked at the time of the request (a fill may have changed the order since).
            asked = cancel_asked if cancel_asked is not None else order.updated_ts
            self._cancel_asked[coid] = asked

    # ------------------------------------------------------------------ its own state
    # What a venue that keeps its state in a store (`DurablePaperBroker`) reads after
    # each call and loads at start. No connection is needed: this is the venue's own
    # book, not a request over the wire.

    def knows(self, client_order_id: str) -> bool:
        """Whether the venue has answered a submit of this client order id."""
        return client_order_id in self._answers

    def copy_of(self, client_order_id: str) -> Order:
        """The venue's copy of an order it knows (a new object after every change).

        Raises:
            KeyError: the venue does not know the order.
        """
        return self._orders[client_order_id]

    def working_orders(self) -> dict[str, Order]:
        """The venue's copies of its working orders, by client order id, in submission
        order."""
        return {coid: self._orders[coid] for coid in self._working}

    @property
    def fill_count(self) -> int:
        """How many fills the venue has made."""
        return len(self._fills)

    def fills_from(self, count: int) -> tuple[Fill, ...]:
        """The fills made after the first `count`, in execution order."""
        return tuple(self._fills[count:])

    def record(self, client_order_id: str) -> VenueOrderRecord:
        """What the venue keeps of an order it knows (see `VenueOrderRecord`).

        Raises:
            KeyError: the venue does not know the order.
        """
        answer = self._answers[client_order_id]
        return VenueOrderRecord(
            order=self._orders[client_order_id],
            submit_no=self._submit_no[client_order_id],
            answer_ts=answer[0].ts,
            eligible_from=self._eligible_from.get(client_order_id),
            trading_day=self._day.get(client_order_id),
        )

    def load(
        self,
        records: Iterable[VenueOrderRecord],
        fills: Iterable[Fill],
        cursors: Mapping[SeriesKey, int],
        *,
        carry_over: PaperExchange | None = None,
    ) -> None:
        """Fill a fresh engine with a state it stored (`record`, `fills_from`, the
        series cursors): the venue exactly as it was, unlike `restore`, which rebuilds
        one from our journal.

        Args:
            records: every order the venue took.
            fills: every fill it made, in execution order.
            cursors: the time of the last bar it traded per (instrument, timeframe).
            carry_over: the engine this one replaces (a reload): its connection, its
                subscriptions and the injected drops that already fired carry over.

        Raises:
            DomainError: the engine is not fresh, or a working order lacks its
                eligibility or trading day (a corrupt store).
        """
        if self._orders or self._last_bar or self._submits:
            msg = "paper venue: load needs a fresh engine"
            raise DomainError(msg)
        for stored in sorted(records, key=lambda r: r.submit_no):
            self._load_record(stored)
        self._submits = max(self._submit_no.values(), default=0)
        self._fills = list(fills)
        self._last_bar.update(cursors)
        if carry_over is not None:
            self.connected = carry_over.connected
            self._subscriptions = carry_over._subscriptions
            self._dropped = set(carry_over._dropped)

    def _load_record(self, stored: VenueOrderRecord) -> None:
        order = stored.order
        coid = order.client_order_id
        self._orders[coid] = order
        self._submit_no[coid] = stored.submit_no
        answer: BrokerEvent
        if order.broker_order_id is None:
            answer = OrderRejected(client_order_id=coid, ts=stored.answer_ts, reason=order.reason)
            self._rejected += 1
        else:
            answer = OrderAccepted(
                client_order_id=coid, ts=stored.answer_ts, broker_order_id=order.broker_order_id
            )
            self._accepted += 1
        self._answers[coid] = (answer,)
        if order.status is OrderStatus.CANCELED:
            self._canceled += 1
        elif order.status is OrderStatus.EXPIRED:
            self._expired += 1
        if order.status.is_working:
            if stored.eligible_from is None or stored.trading_day is None:
                msg = f"paper venue: working order {coid} is stored without its eligibility"
                raise DomainError(msg)
            self._working[coid] = None
            self._eligible_from[coid] = stored.eligible_from
            self._day[coid] = stored.trading_day

    # ------------------------------------------------------------------ market data
    def on_bar(self, bar: Bar) -> tuple[BrokerEvent, ...]:
        """Process one bar: held acks due, DAY expiries, then matching and IOC cancels.

        A bar of another timeframe than the configured one, or at or before the last bar
        seen for its series, changes nothing and returns nothing. The venue trades the bar
        whether or not the connection is up; only the events are lost while it is down.

        Raises:
            BrokerDisconnected: not connected, or an injected disconnect fires at this
                bar; the bar was traded all the same (see the module notes).
        """
        dropped = bool(self.faults.disconnect_at) and self._inject_disconnect(bar.ts)
        events = self._trade(bar)
        if dropped:
            msg = f"paper broker: connection dropped at bar ts {bar.ts} (fault injection)"
            raise BrokerDisconnected(msg)
        if not self.connected:
            msg = (
                f"paper broker: not connected, the news of bar {bar.instrument} {bar.ts} "
                f"not delivered ({len(events)} events)"
            )
            raise BrokerDisconnected(msg)
        return events

    def _trade(self, bar: Bar) -> tuple[BrokerEvent, ...]:
        timeframe = self.config.timeframe
        if timeframe is not None and bar.timeframe != timeframe:
            return ()
        series = (bar.instrument, bar.timeframe)
        last = self._last_bar.get(series)
        if last is not None and bar.ts <= last:
            return ()
        self._last_bar[series] = bar.ts
        self._bars += 1
        if not self._working and not self._held_acks:
            return ()  # the common case of a replay: nothing rests at the venue
        events: list[BrokerEvent] = []
        latency = max(self.config.latency_ns, 1)
        for coid, asked in list(self._cancel_asked.items()):
            if bar.ts >= asked + latency:  # the cancel arrived before this bar traded
                self._cancel_arrived(coid, events)
        for coid in list(self._held_acks):
            held = self._held_acks[coid]
            held.bars_left -= 1
            if held.bars_left <= 0:
                self._release_ack(coid, events)
        today = self.config.day_of(bar.ts)
        for coid in list(self._working):
            order = self._orders[coid]
            if order.intent.time_in_force is TimeInForce.DAY and today > self._day[coid]:
                self._release_ack(coid, events)
                self._end(coid, OrderExpired(client_order_id=coid, ts=bar.ts), events)
        fraction = self.config.max_volume_fraction
        volume_left = None  # the bar's share of volume not yet filled, with a cap
        if fraction is not None and bar.instrument in self.config.instruments:
            instrument = self.config.instruments[bar.instrument]
            volume_left = instrument.round_quantity(bar.volume * fraction, Rounding.DOWN)
        for coid in list(self._working):
            order = self._orders[coid]
            if order.intent.instrument != bar.instrument or bar.ts < self._eligible_from[coid]:
                continue
            filled = self._match(order, bar, volume_left, events)
            if volume_left is not None:
                volume_left -= filled
            if order.intent.time_in_force is TimeInForce.IOC and coid in self._working:
                self._release_ack(coid, events)
                self._end(coid, OrderCanceled(client_order_id=coid, ts=bar.ts), events)
        for coid in list(self._cancel_asked):
            if self._orders[coid].intent.instrument == bar.instrument:
                self._cancel_if_settled(coid, events)
        return tuple(events)

    def _inject_disconnect(self, ts: int) -> bool:
        """Drop the connection if a drop is due at `ts` (a drop due while the connection
        is already down is spent quietly); True when this call dropped it."""
        due = [t for t in self.faults.disconnect_at if t not in self._dropped and ts >= t]
        if not due:
            return False
        self._dropped.update(due)
        if not self.connected:
            return False
        self.disconnect()
        self._refusals_left = self.faults.failed_reconnects
        return True

    def _match(
        self, order: Order, bar: Bar, volume_left: Decimal | None, events: list[BrokerEvent]
    ) -> Decimal:
        """Fill what `bar` gives `order` (at most `volume_left` when the volume is
        capped); returns the quantity filled."""
        intent = order.intent
        instrument = self.config.instruments[intent.instrument]
        limit = intent.limit_price
        if intent.order_type is OrderType.MARKET or limit is None:
            base = bar.open
        elif intent.side is Side.BUY:
            if bar.low > limit:
                return _NOTHING
            base = min(limit, bar.open)
        else:
            if bar.high < limit:
                return _NOTHING
            base = max(limit, bar.open)
        quantity = order.remaining_quantity
        if volume_left is not None:
            quantity = min(quantity, volume_left)
            if quantity <= 0:
                return _NOTHING
        price = self.config.fill_price(intent.side, base, instrument)
        if limit is not None:
            price = min(price, limit) if intent.side is Side.BUY else max(price, limit)
        coid = order.client_order_id
        fill = Fill(
            execution_id=f"{coid}-F{len(order.execution_ids) + 1}",
            client_order_id=coid,
            instrument=intent.instrument,
            side=intent.side,
            quantity=quantity,
            price=price,
            fee=self.config.fee(instrument, price, quantity),
            fee_currency=instrument.currency,
            ts=bar.ts,
        )
        event = OrderFilled(client_order_id=coid, ts=bar.ts, fill=fill)
        changed = order.apply(event)
        self._orders[coid] = changed
        self._fills.append(fill)
        events.append(event)
        if not changed.status.is_working:
            if coid in self._cancel_asked:
                reason = f"too late to cancel: order is {changed.status.value}"
                events.append(OrderCancelRejected(client_order_id=coid, ts=bar.ts, reason=reason))
            self._forget(coid)
        return quantity

    def _release_ack(self, coid: str, events: list[BrokerEvent]) -> None:
        held = self._held_acks.pop(coid, None)
        if held is not None:
            self._orders[coid] = self._orders[coid].apply(held.event)
            events.append(held.event)

    def _end(
        self, coid: str, event: OrderCanceled | OrderExpired, events: list[BrokerEvent]
    ) -> None:
        self._orders[coid] = self._orders[coid].apply(event)
        events.append(event)
        if isinstance(event, OrderCanceled):
            self._canceled += 1
        else:
            self._expired += 1
        self._forget(coid)

    def _forget(self, coid: str) -> None:
        self._working.pop(coid, None)
        self._eligible_from.pop(coid, None)
        self._day.pop(coid, None)
        self._cancel_asked.pop(coid, None)

    # ------------------------------------------------------------------ counters
    def statistics(self) -> PaperStatistics:
        """A frozen snapshot of the engine's counters."""
        return PaperStatistics(
            submits=self._submits,
            accepted=self._accepted,
            rejected=self._rejected,
            fills=len(self._fills),
            canceled=self._canceled,
            expired=self._expired,
            working=len(self._working),
            bars=self._bars,
            disconnects=self._disconnects,
            connect_attempts=self._connect_attempts,
            refused_connects=self._refused_connects,
            subscribes=self._subscribes,
        )


# ----------------------------------------------------------------------------- broker


class PaperBroker:
    """The built-in `Broker`: a `PaperExchange` behind the async broker interface.

    Args:
        config: how orders fill.
        faults: faults to inject (tests).

    Its methods never block and are not checkpoints (see the module notes); each raises
    `BrokerDisconnected` exactly when the engine's method does.
    """

    def __init__(self, config: PaperConfig, faults: PaperFaults | None = None) -> None:
        self.exchange = PaperExchange(config, faults if faults is not None else PaperFaults())

    @property
    def connected(self) -> bool:
        """Whether the simulated connection is up."""
        return self.exchange.connected

    async def connect(self) -> None:
        """Bring the simulated connection up (see `PaperExchange.connect`)."""
        self.exchange.connect()

    async def disconnect(self) -> None:
        """Drop the simulated connection (working orders stay at the venue)."""
        self.exchange.disconnect()

    async def submit(self, order: Order) -> tuple[BrokerEvent, ...]:
        """See `Broker.submit` and `PaperExchange.submit`."""
        return self.exchange.submit(order)

    async def cancel(self, client_order_id: str, ts: int) -> tuple[BrokerEvent, ...]:
        """See `Broker.cancel` and `PaperExchange.cancel`."""
        return self.exchange.cancel(client_order_id, ts)

    async def on_bar(self, bar: Bar) -> tuple[BrokerEvent, ...]:
        """See `Broker.on_bar` and `PaperExchange.on_bar`."""
        return self.exchange.on_bar(bar)

    async def subscribe(self, instruments: Sequence[str]) -> None:
        """See `Broker.subscribe` and `PaperExchange.subscribe`."""
        self.exchange.subscribe(instruments)

    @property
    def subscriptions(self) -> frozenset[str]:
        """The instruments subscribed on the current connection."""
        return self.exchange.subscriptions

    async def open_orders(self) -> tuple[Order, ...]:
        """See `Broker.open_orders`."""
        return self.exchange.open_orders()

    async def lookup_orders(self, client_order_ids: Sequence[str]) -> tuple[Order, ...]:
        """See `Broker.lookup_orders`."""
        return self.exchange.lookup_orders(client_order_ids)

    async def fills_since(self, ts: int) -> tuple[Fill, ...]:
        """See `Broker.fills_since`."""
        return self.exchange.fills_since(ts)

    def restore(
        self,
        orders: Iterable[Order],
        fills: Iterable[Fill],
        last_bars: Mapping[SeriesKey, int],
        *,
        cancels_asked: Mapping[str, int] | None = None,
    ) -> None:
        """Cold start: rebuild the venue from the stored journal (see
        `PaperExchange.restore`)."""
        self.exchange.restore(orders, fills, last_bars, cancels_asked=cancels_asked)

    def statistics(self) -> PaperStatistics:
        """The engine's counters."""
        return self.exchange.statistics()
