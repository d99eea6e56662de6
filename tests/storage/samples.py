"""Sample trading values for the storage tests: small, valid and easy to tell apart."""

from __future__ import annotations

from decimal import Decimal

from tradewind.actors import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderSubmitted,
    OrderType,
    Side,
    TimeInForce,
)

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
MSFT = Instrument("MSFT", "USD", Decimal("0.01"))


def bar(ts: int, close: str = "100.50", instrument: str = "AAPL", timeframe: str = "1m") -> Bar:
    """A bar whose open/high/low derive from ``close``."""
    price = Decimal(close)
    return Bar(
        instrument=instrument,
        timeframe=timeframe,
        ts=ts,
        open=price,
        high=price + Decimal("0.50"),
        low=price - Decimal("0.25"),
        close=price,
        volume=Decimal("1200.5"),
    )


def fill(
    execution_id: str,
    *,
    client_order_id: str = "s1-00000001",
    quantity: str = "10",
    price: str = "100.25",
    side: Side = Side.BUY,
    instrument: str = "AAPL",
    ts: int = 1_000,
) -> Fill:
    """A fill of ``quantity`` at ``price``."""
    return Fill(
        execution_id=execution_id,
        client_order_id=client_order_id,
        instrument=instrument,
        side=side,
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal("0.35"),
        fee_currency="USD",
        ts=ts,
    )


def new_order(seq: int, strategy_id: str = "s1", quantity: str = "10", ts: int = 100) -> Order:
    """An INITIALIZED limit order to buy AAPL."""
    intent = OrderIntent(
        strategy_id=strategy_id,
        instrument="AAPL",
        side=Side.BUY,
        quantity=Decimal(quantity),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("100.25"),
        time_in_force=TimeInForce.DAY,
        tag="entry",
    )
    return Order.create(f"{strategy_id}-{seq:08d}", intent, ts)


def lifecycle(order: Order, *fill_quantities: str) -> list[Order]:
    """The order after submit, accept and one fill per quantity: every snapshot in turn."""
    cid = order.client_order_id
    snapshots = [order.apply(OrderSubmitted(client_order_id=cid, ts=order.created_ts + 1))]
    accepted = OrderAccepted(client_order_id=cid, ts=order.created_ts + 2, broker_order_id="B-7")
    snapshots.append(snapshots[-1].apply(accepted))
    for n, quantity in enumerate(fill_quantities, start=1):
        ts = order.created_ts + 2 + n
        the_fill = fill(f"{cid}-x{n}", client_order_id=cid, quantity=quantity, ts=ts)
        event = OrderFilled(client_order_id=cid, ts=ts, fill=the_fill)
        snapshots.append(snapshots[-1].apply(event))
    return snapshots
