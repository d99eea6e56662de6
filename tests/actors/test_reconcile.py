"""Reconciliation: our working orders brought in line with the broker's view (pure)."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tradewind.actors import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PaperConfig,
    PaperExchange,
    PaperFaults,
    Side,
    TimeInForce,
)
from tradewind.actors._reconcile import (
    UNKNOWN_TO_BROKER,
    BrokerView,
    Reconciliation,
    reconcile,
)

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
T0 = 1_700_000_000 * 10**9
MIN = 60 * 10**9


def intent(
    side: Side = Side.BUY,
    limit: str | None = "90.00",
    tif: TimeInForce = TimeInForce.GTC,
    quantity: int = 10,
) -> OrderIntent:
    return OrderIntent(
        strategy_id="s1",
        instrument="AAPL",
        side=side,
        quantity=quantity,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        limit_price=limit,
        time_in_force=tif,
    )


def flat(ts: int, price: str) -> Bar:
    return Bar("AAPL", "1m", ts, price, price, price, price, "1000")


def initialized(seq: int = 1, ts: int = T0, **kwargs: object) -> Order:
    return Order.create(f"s1-{seq:08d}", intent(**kwargs), ts)  # type: ignore[arg-type]


def submitted(seq: int = 1, ts: int = T0, **kwargs: object) -> Order:
    order = initialized(seq, ts, **kwargs)
    return order.apply(OrderSubmitted(client_order_id=order.client_order_id, ts=ts))


def venue(*orders: Order, faults: PaperFaults | None = None) -> PaperExchange:
    engine = PaperExchange(PaperConfig(AAPL, day_ns=10 * MIN), faults or PaperFaults())
    engine.connect()
    for order in orders:
        engine.submit(order)
    return engine


def view_of(engine: PaperExchange, ours: list[Order], since: int) -> BrokerView:
    open_orders = engine.open_orders()
    listed = {o.client_order_id for o in open_orders}
    missing = [o.client_order_id for o in ours if o.client_order_id not in listed]
    return BrokerView(
        open_orders=open_orders,
        fills=engine.fills_since(since),
        orders=engine.lookup_orders(missing),
    )


def applied(ours: list[Order], result: Reconciliation) -> dict[str, Order]:
    book = {o.client_order_id: o for o in ours}
    for event in result.events:
        book[event.client_order_id] = book[event.client_order_id].apply(event)
    return book


def acked(order: Order, broker_order_id: str = "PAPER-00000001") -> Order:
    return order.apply(
        OrderAccepted(
            client_order_id=order.client_order_id,
            ts=order.updated_ts,
            broker_order_id=broker_order_id,
        )
    )


class TestStillOpen:
    def test_an_order_still_working_at_the_broker_needs_nothing(self):
        ours = acked(submitted())
        engine = venue(submitted())
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + MIN)
        assert result == Reconciliation()

    def test_a_missing_acknowledgement_is_applied(self):
        ours = submitted()
        engine = venue(submitted())
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + MIN)
        (ack,) = result.events
        assert isinstance(ack, OrderAccepted)
        assert ack.broker_order_id == "PAPER-00000001"
        assert ack.ts == T0
        assert result.orders[0].status is OrderStatus.ACCEPTED

    def test_an_order_journaled_only_as_initialized_gets_its_submission(self):
        ours = initialized()
        engine = venue(submitted())
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + MIN)
        assert [e.kind.value for e in result.events] == ["SUBMITTED", "ACCEPTED"]

    def test_a_cancel_the_broker_never_saw_is_to_be_sent_again(self):
        ours = acked(submitted())
        ours = ours.apply(OrderCancelRequested(client_order_id=ours.client_order_id, ts=T0 + 1))
        engine = venue(submitted())
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + MIN)
        assert result.events == ()  # still PENDING_CANCEL: nothing happened to it yet
        assert result.cancels == (ours.client_order_id,)

    def test_a_cancel_the_broker_carried_out_is_not_sent_again(self):
        ours = acked(submitted())
        ours = ours.apply(OrderCancelRequested(client_order_id=ours.client_order_id, ts=T0 + 1))
        engine = venue(submitted())
        engine.on_bar(flat(T0 + 1, "95.00"))
        engine.cancel(ours.client_order_id, T0 + 1)
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + MIN)
        assert [e.kind.value for e in result.events] == ["CANCELED"]
        assert result.cancels == ()


class TestMissedNews:
    def test_a_journaled_cancel_carried_out_comes_before_an_order_placed_with_it(self):
        # One decision at t + 1m: cancel the resting order 1, place order 2. The order
        # actor sends the cancel first, so an uninterrupted run told the strategy of the
        # cancel before the new order's ack; a restart must tell it in that order too.
        resting = acked(submitted())
        asked = resting.apply(
            OrderCancelRequested(client_order_id=resting.client_order_id, ts=T0 + MIN)
        )
        placed = initialized(2, ts=T0 + MIN)
        engine = venue(submitted())
        engine.on_bar(flat(T0 + MIN, "95.00"))
        engine.cancel(resting.client_order_id, T0 + MIN)
        engine.submit(submitted(2, ts=T0 + MIN))
        result = reconcile([asked, placed], view_of(engine, [asked, placed], T0), ts=T0 + MIN)
        assert [(e.client_order_id, e.kind.value) for e in result.events] == [
            ("s1-00000001", "CANCELED"),
            ("s1-00000002", "SUBMITTED"),
            ("s1-00000002", "ACCEPTED"),
        ]

    def test_fills_while_away_are_applied_once_each(self):
        ours = acked(submitted(quantity=10))
        engine = venue(submitted(quantity=10))
        engine.on_bar(flat(T0 + MIN, "89.00"))
        view = view_of(engine, [ours], T0)
        doubled = BrokerView(view.open_orders, view.fills * 2, view.orders)
        result = reconcile([ours], doubled, ts=T0 + 2 * MIN)
        assert [f.execution_id for f in result.fills] == ["s1-00000001-F1"]
        assert result.orders[0].status is OrderStatus.FILLED

    def test_a_fill_already_applied_is_not_applied_again(self):
        ours = acked(submitted())
        engine = venue(submitted())
        (fill,) = engine.on_bar(flat(T0 + MIN, "89.00"))
        assert isinstance(fill, OrderFilled)
        ours = ours.apply(fill)
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + 2 * MIN)
        assert result.events == ()

    def test_a_cancel_at_the_broker_becomes_the_terminal_event_at_its_time(self):
        ours = acked(submitted())
        engine = venue(submitted())
        engine.on_bar(flat(T0 + 5, "95.00"))
        engine.cancel(ours.client_order_id, T0 + 5)
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + MIN)
        (canceled,) = result.events
        assert canceled.kind.value == "CANCELED"
        assert canceled.ts == T0 + 5

    def test_an_expiry_at_the_broker_becomes_the_terminal_event(self):
        ours = acked(submitted(tif=TimeInForce.DAY))
        engine = venue(submitted(tif=TimeInForce.DAY))
        engine.on_bar(flat(T0 + 20 * MIN, "95.00"))
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + 21 * MIN)
        assert result.orders[0].status is OrderStatus.EXPIRED

    def test_a_reject_at_the_broker_carries_its_reason(self):
        ours = submitted()
        engine = venue(submitted(), faults=PaperFaults(reject_submits={1}, reject_reason="no"))
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + MIN)
        (order,) = result.orders
        assert (order.status, order.reason) == (OrderStatus.REJECTED, "no")

    def test_an_ioc_fill_comes_before_its_cancel(self):
        ours = acked(submitted(tif=TimeInForce.IOC, quantity=10))
        engine = PaperExchange(PaperConfig(AAPL, max_volume_fraction="0.005"))
        engine.connect()
        engine.submit(submitted(tif=TimeInForce.IOC, quantity=10))
        engine.on_bar(flat(T0 + MIN, "89.00"))
        result = reconcile([ours], view_of(engine, [ours], T0), ts=T0 + 2 * MIN)
        assert [e.kind.value for e in result.events] == ["FILLED", "CANCELED"]

    def test_a_late_fill_of_a_finished_order_is_applied(self):
        ours = acked(submitted())
        ours = ours.apply(OrderCancelRequested(client_order_id=ours.client_order_id, ts=T0 + 1))
        ours = ours.apply(OrderCanceled(client_order_id=ours.client_order_id, ts=T0 + 2))
        late = fill_of(ours, "F9", T0 + 3)
        result = reconcile([ours], BrokerView(fills=[late]), ts=T0 + MIN)
        (order,) = result.orders
        assert (order.status, order.filled_quantity) == (OrderStatus.CANCELED, Decimal(4))


def ended_at_venue(order: Order, status: OrderStatus, ts: int, reason: str = "") -> Order:
    """The venue's copy of `order` after it ended it (the venue is not bound by our
    state machine: built as it reports it, not through `Order.apply`)."""
    return attrs.evolve(order, status=status, updated_ts=ts, reason=reason)


class TestTerminalNewsAroundTheAck:
    """A venue's terminal news settles our order whether or not we saw its ack."""

    def test_a_reject_after_the_ack_settles_the_order(self):
        ours = acked(submitted())
        theirs = ended_at_venue(ours, OrderStatus.REJECTED, T0 + 5, reason="halt")
        result = reconcile([ours], BrokerView(orders=[theirs]), ts=T0 + MIN)
        assert result.discrepancies == ()
        rejected = OrderRejected(client_order_id=ours.client_order_id, ts=T0 + 5, reason="halt")
        assert result.events == (rejected,)
        (order,) = result.orders
        assert (order.status, order.reason, order.open_quantity) == (
            OrderStatus.REJECTED,
            "halt",
            Decimal(0),
        )
        again = reconcile(result.orders, BrokerView(orders=[theirs]), ts=T0 + MIN)
        assert again.events == ()

    def test_a_reject_after_a_partial_fill_applies_the_fill_first(self):
        ours = acked(submitted())
        coid = ours.client_order_id
        fill = fill_of(ours, "F1", T0 + 1)
        partly = ours.apply(OrderFilled(client_order_id=coid, ts=T0 + 1, fill=fill))
        theirs = ended_at_venue(partly, OrderStatus.REJECTED, T0 + 5, reason="halt")
        view = BrokerView(fills=[fill], orders=[theirs])
        result = reconcile([ours], view, ts=T0 + MIN)
        assert result.discrepancies == ()
        assert [e.kind.value for e in result.events] == ["FILLED", "REJECTED"]
        (order,) = result.orders
        assert (order.status, order.filled_quantity) == (OrderStatus.REJECTED, Decimal(4))

    @pytest.mark.parametrize(
        "journaled", [initialized, submitted], ids=["initialized", "submitted"]
    )
    @pytest.mark.parametrize(
        ("status", "ended"),
        [(OrderStatus.CANCELED, OrderCanceled), (OrderStatus.EXPIRED, OrderExpired)],
        ids=["canceled", "expired"],
    )
    def test_a_cancel_or_expiry_before_any_ack_settles_the_order(self, journaled, status, ended):
        ours = journaled(tif=TimeInForce.IOC)
        coid = ours.client_order_id
        theirs = ended_at_venue(submitted(tif=TimeInForce.IOC), status, T0 + 5)
        result = reconcile([ours], BrokerView(orders=[theirs]), ts=T0 + MIN)
        assert result.discrepancies == ()
        assert result.events[-1] == ended(client_order_id=coid, ts=T0 + 5)
        (order,) = result.orders
        assert (order.status, order.broker_order_id, order.open_quantity) == (
            status,
            None,
            Decimal(0),
        )


def fill_of(order: Order, suffix: str, ts: int, quantity: int = 4) -> Fill:
    return Fill(
        execution_id=f"{order.client_order_id}-{suffix}",
        client_order_id=order.client_order_id,
        instrument="AAPL",
        side=order.intent.side,
        quantity=quantity,
        price="89.00",
        fee="0",
        fee_currency="USD",
        ts=ts,
    )


class TestUnknownToTheBroker:
    def test_a_submitted_order_the_broker_does_not_know_is_rejected_with_a_reason(self):
        ours = submitted()
        result = reconcile([ours], BrokerView(), ts=T0 + MIN)
        (order,) = result.orders
        assert order.status is OrderStatus.REJECTED
        assert order.reason == UNKNOWN_TO_BROKER
        assert result.events[-1].ts == T0 + MIN

    def test_an_initialized_order_is_submitted_then_rejected(self):
        result = reconcile([initialized()], BrokerView(), ts=T0 + MIN)
        assert [e.kind.value for e in result.events] == ["SUBMITTED", "REJECTED"]

    def test_an_acknowledged_order_the_broker_forgot_is_canceled_and_reported(self):
        result = reconcile([acked(submitted())], BrokerView(), ts=T0 + MIN)
        assert result.orders[0].status is OrderStatus.CANCELED
        assert "unknown to the broker" in result.discrepancies[0]

    def test_fills_of_an_order_the_broker_does_not_list_are_applied_and_reported(self):
        ours = acked(submitted())
        result = reconcile([ours], BrokerView(fills=[fill_of(ours, "F1", T0 + 1)]), ts=T0 + MIN)
        assert result.orders[0].status is OrderStatus.PARTIALLY_FILLED
        assert "fills but not the order" in result.discrepancies[0]


class TestReported:
    def test_fills_of_orders_not_ours_are_reported_not_applied(self):
        other = acked(submitted(seq=7))
        result = reconcile([], BrokerView(fills=[fill_of(other, "F1", T0)]), ts=T0)
        assert result.events == ()
        assert [f.client_order_id for f in result.unknown_fills] == ["s1-00000007"]

    def test_working_orders_of_the_broker_we_do_not_track_are_orphans(self):
        engine = venue(submitted(seq=3))
        result = reconcile([], view_of(engine, [], T0), ts=T0)
        assert [o.client_order_id for o in result.orphans] == ["s1-00000003"]

    def test_a_broker_fill_count_the_fills_do_not_explain_is_a_discrepancy(self):
        ours = acked(submitted())
        engine = venue(submitted())
        engine.on_bar(flat(T0 + MIN, "89.00"))
        view = view_of(engine, [ours], T0 + 2 * MIN)  # asked too late: no fills
        result = reconcile([ours], view, ts=T0 + 2 * MIN)
        assert any("explain" in line for line in result.discrepancies)
        assert any("FILLED at the broker" in line for line in result.discrepancies)

    def test_an_event_the_state_machine_refuses_is_a_discrepancy(self):
        ours = acked(submitted(quantity=4))
        ours = ours.apply(
            OrderFilled(
                client_order_id=ours.client_order_id, ts=T0 + 1, fill=fill_of(ours, "F1", T0 + 1)
            )
        )
        assert ours.status is OrderStatus.FILLED
        extra = fill_of(ours, "F2", T0 + 2, quantity=1)
        result = reconcile([ours], BrokerView(fills=[extra]), ts=T0 + MIN)
        assert result.events == ()
        assert "refused" in result.discrepancies[0]


# ----------------------------------------------------------------------------- properties


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Order], PaperExchange, int]:
    """A broker that traded a random session, and our journal that stopped part-way.

    Orders go to the paper venue at random times between bars; some are canceled (the
    cancel reaches the venue, or is lost on the way); the journal holds everything that
    happened before the cut, an INITIALIZED record for the orders submitted after it, a
    PENDING_CANCEL for a cancel whose answer was lost, and a few orders that never
    reached the venue at all.
    """
    fraction = draw(st.sampled_from([None, "0.005", "0.01"]))
    faults = PaperFaults(ack_delay_bars=draw(st.integers(0, 2)))
    engine = PaperExchange(PaperConfig(AAPL, day_ns=5 * MIN, max_volume_fraction=fraction), faults)
    engine.connect()
    bars = draw(st.integers(1, 8))
    n = draw(st.integers(1, 6))
    ops: list[tuple[int, str, int]] = []
    for seq in range(1, n + 1):
        at = T0 + draw(st.integers(0, bars)) * MIN + seq
        ops.append((at, "submit", seq))
        if draw(st.booleans()):
            kind = draw(st.sampled_from(["cancel", "lost_cancel"]))
            ops.append((at + draw(st.integers(1, bars + 1)) * MIN, kind, seq))
    ops.extend((T0 + k * MIN, "bar", draw(st.integers(8_500, 9_500))) for k in range(1, bars + 1))
    ops.sort()
    cut = draw(st.integers(0, len(ops)))
    since = ops[cut][0] if cut < len(ops) else ops[-1][0] + 1
    intents = {
        seq: intent(
            side=draw(st.sampled_from(Side)),
            limit=draw(st.sampled_from([None, "88.00", "90.00", "92.00"])),
            tif=draw(st.sampled_from(TimeInForce)),
            quantity=draw(st.integers(1, 20)),
        )
        for seq in range(1, n + 1)
    }
    ours: dict[str, Order] = {}
    for index, (at, kind, arg) in enumerate(ops):
        before_cut = index < cut
        if kind == "bar":
            price = str(Decimal(arg) / 100)
            events = engine.on_bar(flat(at, price))
        elif kind == "submit":
            order = Order.create(f"s1-{arg:08d}", intents[arg], at)
            sent = order.apply(OrderSubmitted(client_order_id=order.client_order_id, ts=at))
            events = engine.submit(sent)
            ours[sent.client_order_id] = sent if before_cut else order
        else:
            coid = f"s1-{arg:08d}"
            mine = ours.get(coid)
            if mine is None or mine.status not in _CANCELABLE:
                continue
            if before_cut or index == cut:
                ours[coid] = mine.apply(OrderCancelRequested(client_order_id=coid, ts=at))
            events = engine.cancel(coid, at) if kind == "cancel" else ()
        if before_cut:
            for event in events:
                ours[event.client_order_id] = ours[event.client_order_id].apply(event)
    for extra in range(n + 1, n + 1 + draw(st.integers(0, 2))):
        order = Order.create(f"s1-{extra:08d}", intent(), T0)
        ours[order.client_order_id] = order
    return list(ours.values()), engine, since


_CANCELABLE = frozenset({OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(scenarios())
    def test_every_working_order_ends_consistent_with_the_broker(self, scenario):
        ours, engine, since = scenario
        result = reconcile(ours, view_of(engine, ours, since), ts=T0 + 100 * MIN)
        book = applied(ours, result)
        assert result.discrepancies == ()
        for coid in result.cancels:  # the order actor sends each again
            assert book[coid].status is OrderStatus.PENDING_CANCEL
            for event in engine.cancel(coid, T0 + 100 * MIN):
                book[coid] = book[coid].apply(event)
        # a cancel that waits at the venue for a bar (paper broker notes) takes effect
        # before the next one trades
        for event in engine.on_bar(flat(T0 + 101 * MIN, "90.00")):
            book[event.client_order_id] = book[event.client_order_id].apply(event)
        for coid, order in book.items():
            theirs = engine.lookup_orders([coid])
            if not theirs:
                assert order.status is OrderStatus.REJECTED
                assert order.reason == UNKNOWN_TO_BROKER
                continue
            (venue_copy,) = theirs
            assert order.status is venue_copy.status
            assert order.filled_quantity == venue_copy.filled_quantity
            assert order.execution_ids == venue_copy.execution_ids
            assert order.broker_order_id == venue_copy.broker_order_id

    @settings(max_examples=300, deadline=None)
    @given(scenarios())
    def test_reconciling_twice_changes_nothing(self, scenario):
        ours, engine, since = scenario
        view = view_of(engine, ours, since)
        first = reconcile(ours, view, ts=T0 + 100 * MIN)
        after = list(applied(ours, first).values())
        again = reconcile(after, view_of(engine, after, since), ts=T0 + 100 * MIN)
        assert again.events == ()

    @settings(max_examples=300, deadline=None)
    @given(scenarios())
    def test_the_result_never_holds_a_fill_twice_or_one_already_applied(self, scenario):
        ours, engine, since = scenario
        view = view_of(engine, ours, since)
        result = reconcile(ours, BrokerView(view.open_orders, view.fills * 2, view.orders), ts=0)
        ids = [f.execution_id for f in result.fills]
        assert len(ids) == len(set(ids))
        known = {e for o in ours for e in o.execution_ids}
        assert not known & set(ids)

    @settings(max_examples=200, deadline=None)
    @given(scenarios())
    def test_the_returned_orders_are_the_events_applied_in_order(self, scenario):
        ours, engine, since = scenario
        result = reconcile(ours, view_of(engine, ours, since), ts=T0 + 100 * MIN)
        book = applied(ours, result)
        assert {o.client_order_id: o for o in result.orders} == {
            coid: book[coid] for coid in {e.client_order_id for e in result.events}
        }
