"""Shared Hypothesis strategies for the trading core's tests."""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal

from hypothesis import strategies as st
from tradewind.actors import (
    Bar,
    ClientOrderIds,
    Fill,
    Instrument,
    Money,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderSubmitted,
    OrderType,
    RiskLimits,
    Side,
    Tick,
    TimeInForce,
)

# --- orders, portfolio, risk ---

#: Instruments the order, portfolio and risk tests trade: two currencies, a multiplier.
ORDER_TEST_INSTRUMENTS: dict[str, Instrument] = {
    "AAPL": Instrument("AAPL", "USD", Decimal("0.01"), Decimal(1)),
    "ES": Instrument("ES", "USD", Decimal("0.25"), Decimal(1), multiplier=Decimal(50)),
    "SAP": Instrument("SAP", "EUR", Decimal("0.01"), Decimal(1)),
}

strategy_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,11}", fullmatch=True)


def order_quantities(max_units: int = 1_000) -> st.SearchStrategy[Decimal]:
    """Positive whole quantities (on a lot of 1)."""
    return st.integers(1, max_units).map(Decimal)


def order_prices(low_cents: int = 1, high_cents: int = 1_000_000) -> st.SearchStrategy[Decimal]:
    """Positive prices on a 0.01 grid."""
    return st.integers(low_cents, high_cents).map(lambda n: Decimal(n).scaleb(-2))


@st.composite
def order_intents(
    draw: st.DrawFn,
    instrument: str | st.SearchStrategy[str] | None = None,
    strategy_id: str = "s1",
    max_units: int = 1_000,
) -> OrderIntent:
    """Valid intents on `ORDER_TEST_INSTRUMENTS` (prices on a 0.25 grid fit every tick)."""
    if instrument is None:
        symbol = draw(st.sampled_from(sorted(ORDER_TEST_INSTRUMENTS)))
    elif isinstance(instrument, str):
        symbol = instrument
    else:
        symbol = draw(instrument)
    order_type = draw(st.sampled_from(OrderType))
    price = (
        None
        if order_type is OrderType.MARKET
        else draw(st.integers(1, 4_000).map(lambda n: Decimal(n) / 4))
    )
    return OrderIntent(
        strategy_id=strategy_id,
        instrument=symbol,
        side=draw(st.sampled_from(Side)),
        quantity=draw(order_quantities(max_units)),
        order_type=order_type,
        limit_price=price,
        time_in_force=draw(st.sampled_from(TimeInForce)),
        tag=draw(st.sampled_from(["", "entry", "exit"])),
    )


@st.composite
def new_orders(draw: st.DrawFn, max_units: int = 20) -> Order:
    """A fresh INITIALIZED order with a random intent."""
    intent = draw(order_intents(max_units=max_units))
    seq = draw(st.integers(1, 10**9))
    ids = ClientOrderIds(intent.strategy_id, last_seq=seq - 1)
    return Order.create(ids.next(), intent, ts=draw(st.integers(0, 10**18)))


@st.composite
def fills_for(
    draw: st.DrawFn, order: Order, quantity: Decimal | None = None, execution_id: str | None = None
) -> Fill:
    """A fill that matches `order` (quantity defaults to 1..remaining, at least 1)."""
    if quantity is None:
        top = max(int(order.remaining_quantity), 1)
        quantity = Decimal(draw(st.integers(1, top)))
    return Fill(
        execution_id=execution_id or draw(st.uuids()).hex,
        client_order_id=order.client_order_id,
        instrument=order.intent.instrument,
        side=order.intent.side,
        quantity=quantity,
        price=draw(order_prices()),
        fee=draw(st.integers(-100, 1_000).map(lambda n: Decimal(n).scaleb(-2))),
        fee_currency=draw(st.sampled_from(["USD", "EUR"])),
        ts=draw(st.integers(0, 10**18)),
    )


@st.composite
def order_events_for(draw: st.DrawFn, order: Order) -> OrderEvent:
    """Any kind of event for `order`, legal or not in its current state."""
    client_order_id = order.client_order_id
    ts = draw(st.integers(0, 10**18))
    kind = draw(st.integers(0, 8))
    events: list[OrderEvent] = [
        OrderSubmitted(client_order_id=client_order_id, ts=ts),
        OrderAccepted(client_order_id=client_order_id, ts=ts, broker_order_id="B-1"),
        OrderRejected(client_order_id=client_order_id, ts=ts, reason="no"),
        OrderDenied(client_order_id=client_order_id, ts=ts, reason="risk"),
        OrderCancelRequested(client_order_id=client_order_id, ts=ts),
        OrderCanceled(client_order_id=client_order_id, ts=ts),
        OrderCancelRejected(client_order_id=client_order_id, ts=ts, reason="too late"),
        OrderExpired(client_order_id=client_order_id, ts=ts),
    ]
    if kind < len(events):
        return events[kind]
    # Fills: usually new and within the remaining quantity; sometimes a repeat.
    repeat = draw(st.booleans())
    if order.execution_ids and repeat:
        execution_id = draw(st.sampled_from(sorted(order.execution_ids)))
        return OrderFilled(
            client_order_id=client_order_id,
            ts=ts,
            fill=draw(fills_for(order, Decimal(1), execution_id=execution_id)),
        )
    return OrderFilled(client_order_id=client_order_id, ts=ts, fill=draw(fills_for(order)))


def _amounts(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(Decimal)


@st.composite
def risk_limits(draw: st.DrawFn) -> RiskLimits:
    """Valid limits, from tight to loose, with or without a price band."""
    return RiskLimits(
        max_position=draw(_amounts(0, 2_000)),
        max_order_notional=draw(_amounts(1, 2_000_000)),
        max_gross_exposure=draw(_amounts(1, 5_000_000)),
        max_portfolio_risk=draw(st.integers(1, 100).map(lambda n: Decimal(n) / 100)),
        max_orders_per_second=draw(st.integers(1, 20)),
        daily_loss_limit=draw(_amounts(1, 100_000)),
        price_band=draw(st.none() | st.integers(1, 50).map(lambda n: Decimal(n) / 100)),
        flatten_on_halt=draw(st.booleans()),
    )


@st.composite
def tightened(draw: st.DrawFn, limits: RiskLimits) -> RiskLimits:
    """`limits` with any subset of its limits made tighter (or left equal)."""

    def shrink(value: Decimal, floor: Decimal) -> Decimal:
        if not draw(st.booleans()):
            return value
        fraction = Decimal(draw(st.integers(0, 100))) / 100
        return max(floor, value * fraction)

    band = limits.price_band
    if draw(st.booleans()):
        band = (
            Decimal(draw(st.integers(1, 50))) / 100
            if band is None
            else shrink(band, Decimal("0.0001"))
        )
    return limits.replace(
        max_position=shrink(limits.max_position, Decimal(0)),
        max_order_notional=shrink(limits.max_order_notional, Decimal("0.01")),
        max_gross_exposure=shrink(limits.max_gross_exposure, Decimal("0.01")),
        max_portfolio_risk=shrink(limits.max_portfolio_risk, Decimal("0.01")),
        max_orders_per_second=draw(st.integers(1, limits.max_orders_per_second)),
        daily_loss_limit=shrink(limits.daily_loss_limit, Decimal("0.01")),
        price_band=band,
    )


# --- values and market data ---

#: Tick and lot sizes seen in practice: cents, quarter points, pips, whole units, tens.
STEPS = (
    Decimal("0.01"),
    Decimal("0.05"),
    Decimal("0.25"),
    Decimal("0.5"),
    Decimal("1"),
    Decimal("5"),
    Decimal("10"),
    Decimal("0.0001"),
    Decimal("0.00000001"),
    Decimal("0.125"),
)
SYMBOLS = ("AAPL", "MSFT", "ES", "BTC-USD", "EURUSD")
CURRENCIES = ("USD", "EUR", "JPY", "GBP", "CHF")
TIMEFRAMES = ("1m", "5m", "1h", "1d")
#: 2000-01-01 and 2100-01-01 in ns since the epoch.
NS_2000 = 946_684_800 * 10**9
NS_2100 = 4_102_444_800 * 10**9


def steps() -> st.SearchStrategy[Decimal]:
    """A tick or lot size."""
    return st.sampled_from(STEPS)


def on_grid(
    step: Decimal, min_steps: int = 1, max_steps: int = 10**7
) -> st.SearchStrategy[Decimal]:
    """A multiple of `step` (n * step, n in [min_steps, max_steps]), with the step's exponent."""
    return st.integers(min_steps, max_steps).map(lambda n: Decimal(n) * step)


def finite_decimals(
    min_value: str = "-1000000", max_value: str = "1000000", places: int | None = None
) -> st.SearchStrategy[Decimal]:
    """Finite decimals in a range; with `places`, exactly that many decimal places."""
    return st.decimals(
        min_value=Decimal(min_value),
        max_value=Decimal(max_value),
        allow_nan=False,
        allow_infinity=False,
        places=places,
    )


def instruments(symbol: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Instrument]:
    """A valid instrument: tick and lot from `STEPS`, optional max quantity."""
    return st.builds(
        Instrument,
        symbol=symbol if symbol is not None else st.sampled_from(SYMBOLS),
        currency=st.sampled_from(CURRENCIES),
        tick_size=steps(),
        lot_size=steps(),
        min_quantity=st.just(Decimal(0)),
        max_quantity=st.none() | st.just(Decimal(10**9)),
        multiplier=st.sampled_from((Decimal(1), Decimal(50), Decimal("0.1"))),
    )


def timestamps(min_value: int = NS_2000, max_value: int = NS_2100) -> st.SearchStrategy[int]:
    """Int nanoseconds since the epoch, by default within this century."""
    return st.integers(min_value, max_value)


def aware_datetimes() -> st.SearchStrategy[_dt.datetime]:
    """Time-zone-aware datetimes (UTC or a fixed offset) between 1970 and 2100."""
    zones = st.sampled_from(
        (_dt.UTC, _dt.timezone(_dt.timedelta(hours=-5)), _dt.timezone(_dt.timedelta(hours=9)))
    )
    return st.datetimes(
        min_value=_dt.datetime(1970, 1, 2),  # noqa: DTZ001 -- hypothesis bounds are naive
        max_value=_dt.datetime(2099, 12, 31),  # noqa: DTZ001 -- hypothesis bounds are naive
        timezones=zones,
    )


def money(currency: str | None = None) -> st.SearchStrategy[Money]:
    """Money with up to 4 decimal places, within a million either way."""
    return st.builds(
        Money,
        amount=finite_decimals(places=4),
        currency=st.just(currency) if currency is not None else st.sampled_from(CURRENCIES),
    )


@st.composite
def bars(
    draw: st.DrawFn,
    instrument: Instrument | None = None,
    timeframe: str | None = None,
    ts: int | None = None,
) -> Bar:
    """A valid bar on `instrument`'s tick (a drawn instrument if None)."""
    inst = instrument if instrument is not None else draw(instruments())
    prices = sorted(draw(st.lists(on_grid(inst.tick_size, 1, 100_000), min_size=4, max_size=4)))
    low, high = prices[0], prices[3]
    open_, close = draw(st.permutations([prices[1], prices[2]]))
    return Bar(
        instrument=inst.symbol,
        timeframe=timeframe if timeframe is not None else draw(st.sampled_from(TIMEFRAMES)),
        ts=ts if ts is not None else draw(timestamps()),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=draw(on_grid(Decimal("0.001"), 0, 10**9)),
    )


@st.composite
def instrument_and_bar(draw: st.DrawFn) -> tuple[Instrument, Bar]:
    """An instrument and a valid bar of it."""
    inst = draw(instruments())
    return inst, draw(bars(inst))


@st.composite
def ticks(draw: st.DrawFn, instrument: Instrument | None = None) -> Tick:
    """A valid tick on `instrument`'s tick grid (a drawn instrument if None)."""
    inst = instrument if instrument is not None else draw(instruments())
    return Tick(
        instrument=inst.symbol,
        ts=draw(timestamps()),
        price=draw(on_grid(inst.tick_size, 1, 10**6)),
        size=draw(on_grid(inst.lot_size, 0, 10**6)),
    )
