"""Shared Hypothesis strategies for the trading core's tests."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st
from tradewind.actors import (
    ClientOrderIds,
    Fill,
    Instrument,
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
    if order.execution_ids and draw(st.booleans()):
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
