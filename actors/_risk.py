"""Pre-trade risk: limits, trading state, the order check, the kill switch, the price band.

Pure: no trio, no I/O. Every limit, price and amount is an exact `Decimal`.
"""

# Design notes
# ------------
# * Everything here is a pure function of its arguments: `check_order` takes the limits, the
#   trading state, the portfolio, the open orders, the intent, the time, the recent order
#   times and the last prices, and returns `Accept` or `Deny(reason, detail)`. The risk
#   actor owns the state; this module owns the rules.
# * Exposure counts the position **plus the open orders** of each instrument, per side,
#   at its worst: the *committed* quantity of the buy side is ``position + remaining
#   quantity of the working buys`` (where the position ends if every buy fills and no
#   sell does), of the sell side ``position - remaining quantity of the working sells``.
#   A new order is checked on its own side. Working buys and sells never offset each
#   other: netted, a strategy quoting both sides could rest any number of orders within
#   a position limit, and a sell "reduced" a long that a working buy could still grow. A
#   fill moves quantity from "open order" to "position" on its own side, so that side's
#   committed quantity does not move; the other side's moves toward zero (one way the
#   worst case could happen has). In notional terms a position is valued at the
#   instrument's last trade price and an open order at its limit price (a market order
#   at the last price); an instrument's committed notional is the larger in size of its
#   two sides'.
# * An order that reduces the committed quantity of its side (toward zero, without
#   crossing it) is never refused by the position, concentration or exposure limits, nor
#   by the daily loss limit: refusing it would keep risk on the book. It is still subject
#   to the state, the order rate, the price band and the order notional (fat fingers).
#   REDUCING admits only such orders; HALTED admits none. Cancels always pass
#   (`check_cancel`).
# * Every limit compares a measured value with ``<=``, and the reduce-only exemption does
#   not depend on the limits, so tightening any limit can only turn an accept into a deny,
#   never the reverse (a property test checks this).
# * `max_portfolio_risk` is a concentration limit: the committed notional of one instrument
#   may not exceed that fraction of `max_gross_exposure`.
# * Amounts are compared in the limits' currency; an instrument in another currency is
#   converted with `FxRates.rate` (unrounded); no rate means no decision (`NO_FX_RATE`).
# * `BROKER_DISCONNECTED` and `STORE_UNAVAILABLE` are decided by the actors, which know the
#   connections; `check_order` takes them as flags so that one function gives every reason.

from __future__ import annotations

import enum
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import attrs
from tradewind.actors._errors import CurrencyMismatch, DomainError, FloatRefused, InvalidLimits
from tradewind.actors._orders import OrderIntent, OrderStatus, OrderType, TimeInForce
from tradewind.actors._values import Side, to_decimal

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tradewind.actors._orders import Order
    from tradewind.actors._portfolio import Portfolio
    from tradewind.actors._values import DecimalLike, FxRates, Instrument

_ZERO = Decimal(0)
#: The order-rate window: `max_orders_per_second` counts orders in the last second.
ORDER_RATE_WINDOW_NS: Final = 1_000_000_000


class TradingState(enum.Enum):
    """What the risk gate lets through: everything, only risk-reducing orders, nothing."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class DenyReason(enum.Enum):
    """Why an order intent was refused (a stable code; `Deny.detail` is for people)."""

    MAX_POSITION = "MAX_POSITION"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    MAX_GROSS_EXPOSURE = "MAX_GROSS_EXPOSURE"
    MAX_CONCENTRATION = "MAX_CONCENTRATION"
    MAX_ORDER_RATE = "MAX_ORDER_RATE"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    TRADING_HALTED = "TRADING_HALTED"
    REDUCING_ONLY = "REDUCING_ONLY"
    PRICE_BAND = "PRICE_BAND"
    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    INVALID_INTENT = "INVALID_INTENT"
    NO_PRICE = "NO_PRICE"
    NO_FX_RATE = "NO_FX_RATE"
    BROKER_DISCONNECTED = "BROKER_DISCONNECTED"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    #: The bounded queue toward the order actor (or risk) is full: the intent is shed at
    #: once instead of queued, because waiting would close a backpressure cycle.
    OVERLOADED = "OVERLOADED"


@attrs.frozen
class Accept:
    """The intent may go ahead."""

    @property
    def accepted(self) -> bool:
        """Always True."""
        return True


@attrs.frozen
class Deny:
    """The intent is refused: a reason code and a sentence for the operator."""

    reason: DenyReason
    detail: str

    @property
    def accepted(self) -> bool:
        """Always False."""
        return False


Decision = Accept | Deny
ACCEPT: Final = Accept()


# ----------------------------------------------------------------------------- limits


def _limit_decimal(problems: list[str], field: str, value: object, rule: str) -> Decimal:
    """Convert one limit, appending a problem (naming `field`) instead of raising."""
    try:
        number = to_decimal(value, field)
    except (FloatRefused, DomainError) as exc:
        problems.append(str(exc))
        return _ZERO
    checks = {
        ">= 0": number >= 0,
        "> 0": number > 0,
        "in (0, 1]": 0 < number <= 1,
    }
    if not checks[rule]:
        problems.append(f"{field}: must be {rule}, got {number}")
    return number


@attrs.frozen(init=False)
class RiskLimits:
    """Pre-trade limits, validated as a whole at construction.

    Attributes:
        max_position: largest absolute committed quantity per instrument (>= 0; 0 means
            only reducing orders).
        max_order_notional: largest notional of one order, in `currency` (> 0).
        max_gross_exposure: largest sum of absolute committed notionals, in `currency`
            (> 0).
        max_portfolio_risk: largest share of `max_gross_exposure` one instrument may
            take, a fraction in (0, 1].
        max_orders_per_second: most orders accepted within any one second (an int > 0).
        daily_loss_limit: the day's loss at which trading halts, in `currency` (> 0).
        currency: the currency the amounts above are in.
        price_band: largest distance of a limit price from the last trade, as a fraction
            of the last trade (> 0), or None for no band.
        flatten_on_halt: whether the kill switch also closes every position.

    Raises:
        InvalidLimits: one or more fields are invalid; the message lists every one of
            them, each by name, with the rule and the value.
    """

    max_position: Decimal
    max_order_notional: Decimal
    max_gross_exposure: Decimal
    max_portfolio_risk: Decimal
    max_orders_per_second: int
    daily_loss_limit: Decimal
    currency: str
    price_band: Decimal | None
    flatten_on_halt: bool

    def __init__(
        self,
        *,
        max_position: DecimalLike,
        max_order_notional: DecimalLike,
        max_gross_exposure: DecimalLike,
        max_orders_per_second: int,
        daily_loss_limit: DecimalLike,
        max_portfolio_risk: DecimalLike = Decimal(1),
        currency: str = "USD",
        price_band: DecimalLike | None = None,
        flatten_on_halt: bool = False,
    ) -> None:
        problems: list[str] = []
        position = _limit_decimal(problems, "max_position", max_position, ">= 0")
        notional = _limit_decimal(problems, "max_order_notional", max_order_notional, "> 0")
        gross = _limit_decimal(problems, "max_gross_exposure", max_gross_exposure, "> 0")
        fraction = _limit_decimal(problems, "max_portfolio_risk", max_portfolio_risk, "in (0, 1]")
        loss = _limit_decimal(problems, "daily_loss_limit", daily_loss_limit, "> 0")
        band = (
            None
            if price_band is None
            else _limit_decimal(problems, "price_band", price_band, "> 0")
        )
        rate: object = max_orders_per_second
        if isinstance(rate, bool) or not isinstance(rate, int):
            problems.append(
                f"max_orders_per_second: must be an int > 0, got {type(rate).__name__} {rate!r}"
            )
        elif rate <= 0:
            problems.append(f"max_orders_per_second: must be > 0, got {rate}")
        if not isinstance(currency, str) or not currency.isalnum() or not currency.isupper():
            problems.append(f"currency: must be a currency code, got {currency!r}")
        flatten: object = flatten_on_halt
        if not isinstance(flatten, bool):
            problems.append(f"flatten_on_halt: must be a bool, got {flatten!r}")
        if problems:
            listing = "; ".join(problems)
            msg = f"risk limits: {len(problems)} problem(s): {listing}"
            raise InvalidLimits(msg)
        self.__attrs_init__(
            max_position=position,
            max_order_notional=notional,
            max_gross_exposure=gross,
            max_portfolio_risk=fraction,
            max_orders_per_second=max_orders_per_second,
            daily_loss_limit=loss,
            currency=currency,
            price_band=band,
            flatten_on_halt=flatten_on_halt,
        )

    def replace(self, **changes: object) -> RiskLimits:
        """A validated copy with `changes` applied (the run-time limits swap).

        Raises:
            InvalidLimits: the result would be invalid (this one stays in force).
        """
        fields = {a.name: getattr(self, a.name) for a in attrs.fields(RiskLimits)}
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            msg = f"risk limits: unknown field(s): {', '.join(unknown)}"
            raise InvalidLimits(msg)
        fields.update(changes)
        return RiskLimits(**fields)

    @property
    def max_instrument_exposure(self) -> Decimal:
        """The committed notional one instrument may reach: the concentration limit."""
        return self.max_gross_exposure * self.max_portfolio_risk


# ----------------------------------------------------------------------------- rate


def orders_in_window(times: Iterable[int], now: int, window_ns: int = ORDER_RATE_WINDOW_NS) -> int:
    """How many of `times` fall in the window ``(now - window_ns, now]``."""
    start = now - window_ns
    return sum(1 for ts in times if start < ts <= now)


@attrs.define
class OrderRateWindow:
    """The times of recently accepted orders, pruned to a sliding window.

    The risk actor records every accepted order and passes `recent(now)` to
    `check_order` as its ``recent_order_times``.
    """

    window_ns: int = ORDER_RATE_WINDOW_NS
    _times: deque[int] = attrs.field(init=False, factory=deque)

    def record(self, ts: int) -> None:
        """Remember an order accepted at `ts` (times must not go backwards)."""
        self._times.append(ts)

    def recent(self, now: int) -> tuple[int, ...]:
        """The recorded times within ``(now - window_ns, now]`` (older ones are dropped)."""
        start = now - self.window_ns
        while self._times and self._times[0] <= start:
            self._times.popleft()
        return tuple(ts for ts in self._times if ts <= now)

    def count(self, now: int) -> int:
        """How many recorded orders fall within the window ending at `now`."""
        return len(self.recent(now))


# ----------------------------------------------------------------------------- rules


def within_price_band(price: Decimal, last: Decimal, band: Decimal) -> bool:
    """Whether `price` is at most ``band * last`` away from the last trade `last`."""
    return abs(price - last) <= band * last


def check_cancel(state: TradingState) -> Accept:
    """A cancel request always passes, in every trading state: it only removes risk."""
    del state
    return ACCEPT


def _committed(open_orders: Iterable[Order], symbol: str) -> list[Order]:
    return [
        o
        for o in open_orders
        if o.intent.instrument == symbol and o.status.is_working and o.remaining_quantity > 0
    ]


def _reduces(before: Decimal, after: Decimal) -> bool:
    """Whether `after` is strictly closer to zero than `before`, without crossing zero."""
    return abs(after) < abs(before) and after * before >= 0


class _NoDecision(Exception):
    def __init__(self, deny: Deny) -> None:
        super().__init__(deny.detail)
        self.deny = deny


def check_order(  # noqa: PLR0917 -- the agreed call shape: risk's inputs, positionally
    limits: RiskLimits,
    state: TradingState,
    portfolio: Portfolio,
    open_orders: Iterable[Order],
    intent: OrderIntent,
    now: int,
    recent_order_times: Iterable[int],
    last_prices: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    *,
    fx: FxRates | None = None,
    day_pnl: Decimal | None = None,
    broker_connected: bool = True,
    store_available: bool = True,
) -> Accept | Deny:
    """Decide whether `intent` may be sent, given everything risk knows.

    The rules, in the order their reason is reported: trading state (HALTED), broker and
    store availability, known instrument, the intent against its instrument (lot, min/max
    quantity, tick), prices available, REDUCING, daily loss, order rate, price band,
    order notional, position, concentration, gross exposure. See the module notes for
    how exposure is counted.

    Args:
        limits: the limits in force.
        state: the trading state.
        portfolio: positions (quantities only are used here).
        open_orders: orders that may still fill; terminal ones are ignored.
        intent: the order asked for.
        now: the decision time, ns.
        recent_order_times: times (ns) of the orders accepted recently (see
            `OrderRateWindow`).
        last_prices: last trade price per instrument symbol.
        instruments: the tradable instruments by symbol.
        fx: rates into `limits.currency` for instruments quoted in another currency.
        day_pnl: the day's realized + unrealized PnL in `limits.currency`, if known.
        broker_connected: False when the broker connection is down.
        store_available: False when the store cannot make the intent durable.

    Returns:
        `Accept`, or `Deny` with the first failing rule's reason and a detail naming
        the figures.
    """
    open_list = list(open_orders)
    try:
        _check(
            limits=limits,
            state=state,
            portfolio=portfolio,
            open_orders=open_list,
            intent=intent,
            now=now,
            recent_order_times=recent_order_times,
            last_prices=last_prices,
            instruments=instruments,
            fx=fx,
            day_pnl=day_pnl,
            broker_connected=broker_connected,
            store_available=store_available,
        )
    except _NoDecision as refused:
        return refused.deny
    return ACCEPT


def _deny(reason: DenyReason, detail: str) -> _NoDecision:
    return _NoDecision(Deny(reason, detail))


def _check(
    *,
    limits: RiskLimits,
    state: TradingState,
    portfolio: Portfolio,
    open_orders: list[Order],
    intent: OrderIntent,
    now: int,
    recent_order_times: Iterable[int],
    last_prices: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    fx: FxRates | None,
    day_pnl: Decimal | None,
    broker_connected: bool,
    store_available: bool,
) -> None:
    symbol = intent.instrument
    if state is TradingState.HALTED:
        raise _deny(DenyReason.TRADING_HALTED, "trading is halted: no new orders")
    if not broker_connected:
        raise _deny(DenyReason.BROKER_DISCONNECTED, "the broker connection is down")
    if not store_available:
        raise _deny(DenyReason.STORE_UNAVAILABLE, "the store cannot make the order durable")
    instrument = instruments.get(symbol)
    if instrument is None:
        raise _deny(DenyReason.UNKNOWN_INSTRUMENT, f"{symbol!r} is not a known instrument")
    _check_against_instrument(intent, instrument)

    last = last_prices.get(symbol)
    if intent.order_type is OrderType.MARKET and last is None:
        raise _deny(DenyReason.NO_PRICE, f"no last price for {symbol} to value a market order")
    if limits.price_band is not None and last is None:
        raise _deny(DenyReason.NO_PRICE, f"no last price for {symbol} to check the price band")
    price = intent.limit_price if intent.limit_price is not None else last
    assert price is not None  # noqa: S101 -- a LIMIT intent has a price, a MARKET one `last`

    position = portfolio.position(symbol).quantity if symbol in portfolio.instruments else _ZERO
    before = position + sum(
        (
            o.intent.side.sign * o.remaining_quantity
            for o in _committed(open_orders, symbol)
            if o.intent.side is intent.side
        ),
        _ZERO,
    )
    after = before + intent.signed_quantity
    reduces = _reduces(before, after)
    side = intent.side.value.lower()

    if state is TradingState.REDUCING and not reduces:
        raise _deny(
            DenyReason.REDUCING_ONLY,
            f"trading is reducing only: {symbol} committed on the {side} side "
            f"(position {position} and the working {side}s) {before} would become {after}",
        )
    if day_pnl is not None and day_pnl <= -limits.daily_loss_limit and not reduces:
        raise _deny(
            DenyReason.DAILY_LOSS_LIMIT,
            f"the day's PnL {day_pnl} {limits.currency} is at or past the loss limit "
            f"{limits.daily_loss_limit}",
        )
    count = orders_in_window(recent_order_times, now)
    if count >= limits.max_orders_per_second:
        raise _deny(
            DenyReason.MAX_ORDER_RATE,
            f"{count} orders within the last second; the limit is {limits.max_orders_per_second}",
        )
    if (
        limits.price_band is not None
        and last is not None
        and intent.limit_price is not None
        and not within_price_band(intent.limit_price, last, limits.price_band)
    ):
        raise _deny(
            DenyReason.PRICE_BAND,
            f"limit {intent.limit_price} is {abs(intent.limit_price - last)} away from the "
            f"last trade {last} of {symbol}; the band allows {limits.price_band * last} "
            f"({limits.price_band} of the last trade)",
        )
    to_base = _rate(fx, instrument.currency, limits.currency)
    order_notional = intent.quantity * price * instrument.multiplier * to_base
    if order_notional > limits.max_order_notional:
        raise _deny(
            DenyReason.MAX_ORDER_NOTIONAL,
            f"order notional {order_notional} {limits.currency} is above the limit "
            f"{limits.max_order_notional}",
        )
    if reduces:
        return
    if abs(after) > limits.max_position:
        raise _deny(
            DenyReason.MAX_POSITION,
            f"{symbol} committed quantity on the {side} side would be {after} (position "
            f"{position} plus the working {side}s and this order); the limit is "
            f"{limits.max_position}",
        )
    sides = _committed_notionals(
        portfolio=portfolio,
        open_orders=open_orders,
        last_prices=last_prices,
        instruments=instruments,
        fx=fx,
        limits=limits,
    )
    buys, sells = sides.get(symbol, (_ZERO, _ZERO))
    added = intent.signed_quantity * price * instrument.multiplier * to_base
    if intent.side is Side.BUY:
        buys += added
    else:
        sells += added
    sides[symbol] = (buys, sells)
    exposures = {s: max(abs(b), abs(v)) for s, (b, v) in sides.items()}
    mine = exposures[symbol]
    if mine > limits.max_instrument_exposure:
        raise _deny(
            DenyReason.MAX_CONCENTRATION,
            f"{symbol} committed notional would be {mine} {limits.currency}; the limit is "
            f"{limits.max_portfolio_risk} of {limits.max_gross_exposure}",
        )
    gross = sum(exposures.values(), _ZERO)
    if gross > limits.max_gross_exposure:
        raise _deny(
            DenyReason.MAX_GROSS_EXPOSURE,
            f"gross exposure would be {gross} {limits.currency}; the limit is "
            f"{limits.max_gross_exposure}",
        )


def _check_against_instrument(intent: OrderIntent, instrument: Instrument) -> None:
    try:
        instrument.check_quantity(intent.quantity)
    except DomainError as exc:
        raise _deny(DenyReason.INVALID_INTENT, str(exc)) from None
    if intent.limit_price is not None and not instrument.is_on_tick(intent.limit_price):
        raise _deny(
            DenyReason.INVALID_INTENT,
            f"limit_price: {intent.limit_price} is not on the tick {instrument.tick_size} "
            f"of {instrument.symbol}",
        )


def _rate(fx: FxRates | None, source: str, target: str) -> Decimal:
    if source == target:
        return Decimal(1)
    if fx is None:
        raise _deny(DenyReason.NO_FX_RATE, f"no FX rates given to convert {source} to {target}")
    try:
        return fx.rate(source, target)
    except CurrencyMismatch as exc:
        raise _deny(DenyReason.NO_FX_RATE, str(exc)) from None


def _committed_notionals(
    *,
    portfolio: Portfolio,
    open_orders: list[Order],
    last_prices: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    fx: FxRates | None,
    limits: RiskLimits,
) -> dict[str, tuple[Decimal, Decimal]]:
    """Signed committed notional per instrument in the limits' currency: of its buy
    side and of its sell side (the position's value plus the working buys', or minus
    the working sells')."""
    per_symbol: dict[str, tuple[Decimal, Decimal]] = {}
    symbols = {s for s, p in portfolio.positions.items() if not p.is_flat}
    symbols |= {o.intent.instrument for o in open_orders if o.status.is_working}
    for symbol in sorted(symbols):
        instrument = instruments.get(symbol)
        if instrument is None:
            raise _deny(
                DenyReason.UNKNOWN_INSTRUMENT,
                f"{symbol!r} is held or on order but is not a known instrument",
            )
        held = _ZERO
        quantity = portfolio.position(symbol).quantity if symbol in portfolio.instruments else _ZERO
        if quantity:
            held = quantity * _last(last_prices, symbol)
        buys = sells = held
        for order in _committed(open_orders, symbol):
            at = order.intent.limit_price
            if at is None:
                at = _last(last_prices, symbol)
            if order.intent.side is Side.BUY:
                buys += order.remaining_quantity * at
            else:
                sells -= order.remaining_quantity * at
        scale = instrument.multiplier * _rate(fx, instrument.currency, limits.currency)
        per_symbol[symbol] = (buys * scale, sells * scale)
    return per_symbol


def _last(last_prices: Mapping[str, Decimal], symbol: str) -> Decimal:
    price = last_prices.get(symbol)
    if price is None:
        raise _deny(DenyReason.NO_PRICE, f"no last price for {symbol} to value its exposure")
    return price


# ----------------------------------------------------------------------------- kill switch


@attrs.frozen
class KillSwitchDecision:
    """What the kill switch decided: whether to halt, and the orders that follow from it.

    Attributes:
        halt: True when the loss limit is breached and trading must stop.
        state: the trading state to be in (HALTED when `halt`, else unchanged).
        cancel: client order ids of the working orders to cancel, sorted.
        flatten: market IOC intents that close every open position (empty unless the
            limits ask for it).
        detail: a sentence for the operator.
    """

    halt: bool
    state: TradingState
    cancel: tuple[str, ...] = ()
    flatten: tuple[OrderIntent, ...] = ()
    detail: str = ""


FLATTEN_TAG: Final = "kill-switch"
"""The tag of the kill switch's flattening orders."""

_CANCELABLE: Final = frozenset(
    {OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED}
)


def flatten_intents(
    portfolio: Portfolio,
    symbols: Iterable[str] | None = None,
    *,
    strategy_id: str = "risk",
    tag: str = FLATTEN_TAG,
) -> tuple[OrderIntent, ...]:
    """One market IOC intent per open position (of `symbols`, or of every instrument)
    that closes it, by symbol."""
    chosen = None if symbols is None else frozenset(symbols)
    return tuple(
        OrderIntent(
            strategy_id=strategy_id,
            instrument=symbol,
            side=Side.SELL if position.quantity > 0 else Side.BUY,
            quantity=abs(position.quantity),
            order_type=OrderType.MARKET,
            limit_price=None,
            time_in_force=TimeInForce.IOC,
            tag=tag,
        )
        for symbol, position in sorted(portfolio.positions.items())
        if not position.is_flat and (chosen is None or symbol in chosen)
    )


def kill_switch(
    limits: RiskLimits,
    state: TradingState,
    day_pnl: Decimal,
    portfolio: Portfolio,
    open_orders: Iterable[Order],
    *,
    strategy_id: str = "risk",
    tag: str = FLATTEN_TAG,
) -> KillSwitchDecision:
    """Decide whether the day's loss trips the kill switch, and what to do if it does.

    It trips when ``day_pnl <= -limits.daily_loss_limit`` and trading is not already
    halted (tripping twice would cancel twice). Tripping means: go HALTED, cancel every
    working order at the broker (PENDING_CANCEL ones are already being canceled), and,
    when ``limits.flatten_on_halt``, send one market IOC order per open position that
    closes it. Flatten intents pass risk: they reduce.

    Args:
        limits: the limits in force.
        state: the current trading state.
        day_pnl: the day's realized + unrealized PnL in `limits.currency`.
        portfolio: the positions to flatten.
        open_orders: the orders to cancel (non-working ones are ignored).
        strategy_id: the strategy id the flatten intents are issued under.
        tag: the tag of the flatten intents.

    Returns:
        The decision; when it does not trip, `state` is returned unchanged and there are
        no orders.
    """
    loss_limit = -limits.daily_loss_limit
    if state is TradingState.HALTED or day_pnl > loss_limit:
        detail = (
            "already halted"
            if state is TradingState.HALTED
            else f"day PnL {day_pnl} is within the loss limit {limits.daily_loss_limit}"
        )
        return KillSwitchDecision(halt=False, state=state, detail=detail)
    cancel = tuple(sorted(o.client_order_id for o in open_orders if o.status in _CANCELABLE))
    flatten: tuple[OrderIntent, ...] = ()
    if limits.flatten_on_halt:
        flatten = flatten_intents(portfolio, strategy_id=strategy_id, tag=tag)
    return KillSwitchDecision(
        halt=True,
        state=TradingState.HALTED,
        cancel=cancel,
        flatten=flatten,
        detail=(
            f"day PnL {day_pnl} {limits.currency} breached the loss limit "
            f"{limits.daily_loss_limit}: halting, canceling {len(cancel)} order(s), "
            f"flattening {len(flatten)} position(s)"
        ),
    )
