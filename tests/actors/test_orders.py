"""Orders: intents, fills, the transition table, idempotent fills, client order ids."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.actors import (
    ORDER_EVENT_TYPES,
    TRANSITIONS,
    ClientOrderIds,
    DomainError,
    Fill,
    FloatRefused,
    IllegalTransition,
    InvalidOrder,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderEvent,
    OrderEventKind,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    Side,
    TimeInForce,
    format_client_order_id,
    parse_client_order_id,
    replay_order_events,
)

from tests.strategies import fills_for, new_orders, order_events_for, order_intents, strategy_ids

CID = "s1-00000001"


def limit_intent(quantity: str = "10", price: str = "100.00", side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(
        strategy_id="s1",
        instrument="AAPL",
        side=side,
        quantity=Decimal(quantity),
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
        time_in_force=TimeInForce.DAY,
    )


def fill(quantity: str, price: str = "100.00", execution_id: str = "x1", **kw: object) -> Fill:
    fields: dict[str, object] = {
        "execution_id": execution_id,
        "client_order_id": CID,
        "instrument": "AAPL",
        "side": Side.BUY,
        "quantity": Decimal(quantity),
        "price": Decimal(price),
        "fee": Decimal("0.10"),
        "fee_currency": "USD",
        "ts": 5,
    }
    fields.update(kw)
    return Fill(**fields)  # type: ignore[arg-type]


def filled(quantity: str, price: str = "100.00", execution_id: str = "x1") -> OrderFilled:
    return OrderFilled(client_order_id=CID, ts=5, fill=fill(quantity, price, execution_id))


def order_in(*events: object) -> Order:
    order = Order.create(CID, limit_intent(), ts=1)
    for event in events:
        order = order.apply(event)  # type: ignore[arg-type]
    return order


SUBMITTED = OrderSubmitted(client_order_id=CID, ts=2)
ACCEPTED = OrderAccepted(client_order_id=CID, ts=3, broker_order_id="B1")
CANCEL = OrderCancelRequested(client_order_id=CID, ts=6)
CANCELED = OrderCanceled(client_order_id=CID, ts=7)
CANCEL_REJECTED = OrderCancelRejected(client_order_id=CID, ts=7, reason="too late")


class TestOrderIntent:
    def test_limit_intent_keeps_exact_decimals(self):
        intent = limit_intent("1.5", "100.25")
        assert (intent.quantity, intent.limit_price) == (Decimal("1.5"), Decimal("100.25"))

    def test_strings_and_ints_convert_exactly(self):
        intent = attrs.evolve(limit_intent(), quantity="0.1", limit_price=7)
        assert (intent.quantity, intent.limit_price) == (Decimal("0.1"), Decimal(7))

    def test_float_quantity_is_refused(self):
        with pytest.raises(FloatRefused, match="quantity"):
            attrs.evolve(limit_intent(), quantity=0.1)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("field", "value", "rule"),
        [
            ("quantity", Decimal(0), "must be > 0"),
            ("quantity", Decimal(-3), "must be > 0"),
            ("quantity", "NaN", "not a decimal number"),
            ("limit_price", Decimal(0), "must be > 0"),
            ("limit_price", None, "needs a limit price"),
            ("strategy_id", "", "must start with"),
            ("strategy_id", "a b", "must start with"),
            ("instrument", " ", "non-empty"),
        ],
    )
    def test_invalid_field_is_refused_naming_it(self, field, value, rule):
        with pytest.raises(InvalidOrder, match=rf"^{field}: .*{rule}"):
            attrs.evolve(limit_intent(), **{field: value})

    def test_market_intent_refuses_a_limit_price(self):
        with pytest.raises(InvalidOrder, match="limit_price: a MARKET order takes no limit"):
            attrs.evolve(limit_intent(), order_type=OrderType.MARKET)

    def test_signed_quantity_carries_the_side(self):
        assert limit_intent("3", side=Side.SELL).signed_quantity == Decimal(-3)

    @given(
        st.sampled_from(
            [
                ("quantity", st.integers(-(10**6), 0).map(Decimal)),
                ("quantity", st.sampled_from(["NaN", "inf", "1_0", "", "x"])),
                ("limit_price", st.integers(-(10**6), 0).map(Decimal)),
                ("strategy_id", st.text(max_size=3).filter(lambda t: not t[:1].isalnum())),
                ("instrument", st.sampled_from(["", " ", "\t"])),
            ]
        ).flatmap(lambda pair: st.tuples(st.just(pair[0]), pair[1]))
    )
    def test_every_validation_message_names_the_field(self, bad):
        field, value = bad
        with pytest.raises(DomainError, match=rf"^{field}: "):
            attrs.evolve(limit_intent(), **{field: value})

    @given(order_intents())
    def test_generated_intents_round_trip_through_evolve(self, intent):
        assert attrs.evolve(intent) == intent


class TestFill:
    def test_fee_may_be_a_rebate(self):
        assert fill("1", fee=Decimal("-0.02")).fee == Decimal("-0.02")

    @pytest.mark.parametrize(
        ("field", "value"),
        [("quantity", Decimal(0)), ("price", Decimal(-1)), ("execution_id", ""), ("ts", -1)],
    )
    def test_invalid_field_is_refused_naming_it(self, field, value):
        with pytest.raises(InvalidOrder, match=rf"^{field}: "):
            attrs.evolve(fill("1"), **{field: value})

    def test_float_price_is_refused(self):
        with pytest.raises(FloatRefused, match="price"):
            attrs.evolve(fill("1"), price=100.5)  # type: ignore[arg-type]

    def test_infinite_fee_is_refused(self):
        with pytest.raises(InvalidOrder, match="fee"):
            fill("1", fee=Decimal("Infinity"))

    def test_signed_quantity_is_negative_for_a_sell(self):
        assert fill("2", side=Side.SELL).signed_quantity == Decimal(-2)


class TestOrderLifecycle:
    def test_create_starts_initialized_and_unfilled(self):
        order = order_in()
        assert (order.status, order.filled_quantity, order.avg_fill_price) == (
            OrderStatus.INITIALIZED,
            Decimal(0),
            None,
        )

    def test_create_refuses_an_id_of_another_strategy(self):
        with pytest.raises(InvalidOrder, match="belongs to strategy 'other'"):
            Order.create("other-00000001", limit_intent(), ts=1)

    def test_create_refuses_a_negative_time(self):
        with pytest.raises(InvalidOrder, match="created_ts"):
            Order.create(CID, limit_intent(), ts=-1)

    def test_happy_path_reaches_filled_with_exact_average_price(self):
        order = order_in(
            SUBMITTED, ACCEPTED, filled("3", "100.00", "a"), filled("7", "100.10", "b")
        )
        assert order.status is OrderStatus.FILLED
        assert order.avg_fill_price == Decimal("100.07")
        assert order.broker_order_id == "B1"

    def test_partial_fill_is_partially_filled(self):
        order = order_in(SUBMITTED, ACCEPTED, filled("4"))
        assert (order.status, order.remaining_quantity) == (
            OrderStatus.PARTIALLY_FILLED,
            Decimal(6),
        )

    def test_average_price_of_thirds_has_no_drift(self):
        order = order_in(
            SUBMITTED,
            ACCEPTED,
            filled("1", "1.00", "a"),
            filled("1", "1.00", "b"),
            filled("1", "2.00", "c"),
        )
        assert order.fill_notional == Decimal("4.00")
        assert order.avg_fill_price == Decimal("4.00") / 3

    def test_denied_only_from_initialized(self):
        denied = order_in(OrderDenied(client_order_id=CID, ts=2, reason="MAX_POSITION"))
        assert (denied.status, denied.reason) == (OrderStatus.DENIED, "MAX_POSITION")
        with pytest.raises(IllegalTransition, match="DENIED is not allowed in status SUBMITTED"):
            order_in(SUBMITTED).apply(OrderDenied(client_order_id=CID, ts=3))

    def test_rejected_keeps_the_reason(self):
        order = order_in(SUBMITTED, OrderRejected(client_order_id=CID, ts=3, reason="margin"))
        assert (order.status, order.reason) == (OrderStatus.REJECTED, "margin")

    def test_expired_from_accepted(self):
        order = order_in(SUBMITTED, ACCEPTED, OrderExpired(client_order_id=CID, ts=9))
        assert order.status is OrderStatus.EXPIRED

    def test_unsolicited_cancel_of_an_ioc_remainder(self):
        order = order_in(SUBMITTED, ACCEPTED, filled("4"), CANCELED)
        assert (order.status, order.filled_quantity) == (OrderStatus.CANCELED, Decimal(4))

    def test_updated_ts_follows_the_last_event(self):
        assert order_in(SUBMITTED, ACCEPTED).updated_ts == 3

    def test_open_quantity_is_zero_once_terminal(self):
        order = order_in(SUBMITTED, ACCEPTED, filled("4"), CANCELED)
        assert (order.remaining_quantity, order.open_quantity) == (Decimal(6), Decimal(0))


class TestVenueNewsAroundTheAck:
    """A venue's terminal news neither waits for its ack nor ends with it."""

    def test_a_reject_after_the_ack_is_rejected_with_its_reason(self):
        order = order_in(SUBMITTED, ACCEPTED, OrderRejected(client_order_id=CID, ts=8, reason="x"))
        assert (order.status, order.reason, order.broker_order_id) == (
            OrderStatus.REJECTED,
            "x",
            "B1",
        )
        assert order.last_event is not None
        assert (order.open_quantity, order.last_event.status, order.event_seq) == (
            Decimal(0),
            OrderStatus.REJECTED,
            3,
        )

    def test_a_reject_after_a_partial_fill_keeps_the_fills(self):
        rejected = OrderRejected(client_order_id=CID, ts=8, reason="exchange halt")
        order = order_in(SUBMITTED, ACCEPTED, filled("4", "100.50"), rejected)
        assert (order.status, order.reason) == (OrderStatus.REJECTED, "exchange halt")
        assert (order.filled_quantity, order.avg_fill_price, order.open_quantity) == (
            Decimal(4),
            Decimal("100.50"),
            Decimal(0),
        )

    def test_a_cancel_before_any_ack_is_canceled(self):
        order = order_in(SUBMITTED, CANCELED)
        assert (order.status, order.broker_order_id, order.open_quantity) == (
            OrderStatus.CANCELED,
            None,
            Decimal(0),
        )

    def test_an_expiry_before_any_ack_is_expired(self):
        order = order_in(SUBMITTED, OrderExpired(client_order_id=CID, ts=9))
        assert (order.status, order.updated_ts, order.open_quantity) == (
            OrderStatus.EXPIRED,
            9,
            Decimal(0),
        )


# An order in each status, and one event of each kind: `test_apply_follows_the_table`.
_PATH_TO: dict[OrderStatus, tuple[OrderEvent, ...]] = {
    OrderStatus.INITIALIZED: (),
    OrderStatus.SUBMITTED: (SUBMITTED,),
    OrderStatus.ACCEPTED: (SUBMITTED, ACCEPTED),
    OrderStatus.PARTIALLY_FILLED: (SUBMITTED, ACCEPTED, filled("4", execution_id="p")),
    OrderStatus.FILLED: (SUBMITTED, ACCEPTED, filled("10", execution_id="p")),
    OrderStatus.PENDING_CANCEL: (SUBMITTED, ACCEPTED, CANCEL),
    OrderStatus.CANCELED: (SUBMITTED, ACCEPTED, CANCELED),
    OrderStatus.REJECTED: (SUBMITTED, OrderRejected(client_order_id=CID, ts=3, reason="r")),
    OrderStatus.DENIED: (OrderDenied(client_order_id=CID, ts=2, reason="d"),),
    OrderStatus.EXPIRED: (SUBMITTED, ACCEPTED, OrderExpired(client_order_id=CID, ts=4)),
}
_ONE_OF_EACH: dict[OrderEventKind, OrderEvent] = {
    OrderEventKind.SUBMITTED: SUBMITTED,
    OrderEventKind.ACCEPTED: ACCEPTED,
    OrderEventKind.REJECTED: OrderRejected(client_order_id=CID, ts=8, reason="r"),
    OrderEventKind.DENIED: OrderDenied(client_order_id=CID, ts=8, reason="d"),
    OrderEventKind.FILLED: filled("1", execution_id="q"),
    OrderEventKind.CANCEL_REQUESTED: CANCEL,
    OrderEventKind.CANCELED: CANCELED,
    OrderEventKind.CANCEL_REJECTED: CANCEL_REJECTED,
    OrderEventKind.EXPIRED: OrderExpired(client_order_id=CID, ts=8),
}


@pytest.mark.parametrize("status", list(OrderStatus), ids=lambda s: s.value)
@pytest.mark.parametrize("kind", list(OrderEventKind), ids=lambda k: k.value)
def test_apply_follows_the_table(status, kind):
    """Every (status, event kind) pair: legal exactly when the table lists it, and then
    the order ends in the table's target (a partial fill; PREVIOUS for a cancel reject)."""
    order = order_in(*_PATH_TO[status])
    assert order.status is status
    target = TRANSITIONS.get((status, kind))
    if target is None:
        with pytest.raises(IllegalTransition):
            order.apply(_ONE_OF_EACH[kind])
        return
    expected = order.status_before_cancel if target == "PREVIOUS" else target
    assert order.apply(_ONE_OF_EACH[kind]).status is expected


class TestCancelRaces:
    def test_fill_after_cancel_request_stays_pending_cancel(self):
        order = order_in(SUBMITTED, ACCEPTED, CANCEL, filled("4"))
        assert (order.status, order.filled_quantity) == (
            OrderStatus.PENDING_CANCEL,
            Decimal(4),
        )

    def test_cancel_reject_returns_to_accepted(self):
        order = order_in(SUBMITTED, ACCEPTED, CANCEL, CANCEL_REJECTED)
        assert (order.status, order.status_before_cancel, order.reason) == (
            OrderStatus.ACCEPTED,
            None,
            "too late",
        )

    def test_cancel_reject_returns_to_partially_filled(self):
        order = order_in(SUBMITTED, ACCEPTED, filled("2"), CANCEL, CANCEL_REJECTED)
        assert order.status is OrderStatus.PARTIALLY_FILLED

    def test_cancel_reject_after_a_fill_during_the_cancel_is_partially_filled(self):
        order = order_in(SUBMITTED, ACCEPTED, CANCEL, filled("2"), CANCEL_REJECTED)
        assert order.status is OrderStatus.PARTIALLY_FILLED

    def test_cancel_before_ack_then_ack_then_reject_returns_to_accepted(self):
        order = order_in(SUBMITTED, CANCEL, ACCEPTED, CANCEL_REJECTED)
        assert (order.status, order.broker_order_id) == (OrderStatus.ACCEPTED, "B1")

    def test_late_fill_after_confirmed_cancel_is_recorded_and_stays_canceled(self):
        order = order_in(SUBMITTED, ACCEPTED, CANCEL, CANCELED, filled("4"))
        assert (order.status, order.filled_quantity) == (OrderStatus.CANCELED, Decimal(4))

    def test_late_fill_completing_a_canceled_order_is_filled(self):
        order = order_in(SUBMITTED, ACCEPTED, CANCEL, CANCELED, filled("10"))
        assert order.status is OrderStatus.FILLED

    def test_full_fill_during_pending_cancel_is_filled_and_late_reject_is_recorded(self):
        order = order_in(SUBMITTED, ACCEPTED, CANCEL, filled("10"), CANCEL_REJECTED)
        assert (order.status, order.event_seq) == (OrderStatus.FILLED, 5)

    def test_fill_overtaking_the_ack(self):
        order = order_in(SUBMITTED, filled("3"), ACCEPTED)
        assert (order.status, order.broker_order_id) == (OrderStatus.PARTIALLY_FILLED, "B1")


class TestIllegalTransitions:
    def test_illegal_event_raises_and_leaves_the_order_unchanged(self):
        order = order_in(SUBMITTED, ACCEPTED, filled("10"))
        before = attrs.asdict(order, recurse=False)
        with pytest.raises(IllegalTransition, match="CANCELED is not allowed in status FILLED"):
            order.apply(CANCELED)
        assert attrs.asdict(order, recurse=False) == before

    def test_event_for_another_order_is_refused(self):
        with pytest.raises(InvalidOrder, match="is for 's1-00000002'"):
            order_in().apply(OrderSubmitted(client_order_id="s1-00000002", ts=2))

    def test_fill_beyond_the_remaining_quantity_is_refused_clearly(self):
        order = order_in(SUBMITTED, ACCEPTED, filled("8", execution_id="a"))
        with pytest.raises(InvalidOrder, match="quantity 3 exceeds the remaining 2"):
            order.apply(filled("3", execution_id="b"))

    def test_fill_for_the_wrong_side_is_refused(self):
        event = OrderFilled(client_order_id=CID, ts=5, fill=fill("1", side=Side.SELL))
        with pytest.raises(InvalidOrder, match="does not match order"):
            order_in(SUBMITTED, ACCEPTED).apply(event)

    def test_fill_naming_another_order_is_refused(self):
        event = OrderFilled(
            client_order_id=CID, ts=5, fill=fill("1", client_order_id="s1-00000009")
        )
        with pytest.raises(InvalidOrder, match="client_order_id 's1-00000009'"):
            order_in(SUBMITTED, ACCEPTED).apply(event)

    @pytest.mark.parametrize("field", ["status", "seq"])
    def test_event_stamp_validation_names_the_field(self, field):
        with pytest.raises(InvalidOrder, match=rf"^{field}: "):
            OrderSubmitted(client_order_id=CID, ts=1, **{field: "x"})  # type: ignore[arg-type]

    @given(new_orders(), st.data())
    def test_random_events_stay_in_the_table_and_illegal_ones_change_nothing(self, order, data):
        statuses = set(OrderStatus)
        for _ in range(12):
            event = data.draw(order_events_for(order))
            try:
                after = order.apply(event)
            except (IllegalTransition, InvalidOrder):
                assert (order.status, event.kind) not in TRANSITIONS or isinstance(
                    event, OrderFilled
                )
                continue
            if after is order:  # a repeated execution id
                assert isinstance(event, OrderFilled)
                assert event.fill.execution_id in order.execution_ids
                continue
            assert (order.status, event.kind) in TRANSITIONS
            assert after.status in statuses
            assert after.filled_quantity <= after.intent.quantity
            assert after.event_seq == order.event_seq + 1
            assert (after.status_before_cancel is not None) == (
                after.status is OrderStatus.PENDING_CANCEL
            )
            order = after

    @given(new_orders(), st.data())
    def test_duplicate_fill_is_idempotent(self, order, data):
        order = order.apply(OrderSubmitted(client_order_id=order.client_order_id, ts=1))
        once = order.apply(
            OrderFilled(
                client_order_id=order.client_order_id, ts=2, fill=data.draw(fills_for(order))
            )
        )
        event = once.last_event
        assert isinstance(event, OrderFilled)
        assert once.apply(attrs.evolve(event, status=None, seq=0)) is once


class TestJournalStamps:
    def test_applied_events_carry_status_and_sequence(self):
        order = order_in(SUBMITTED, ACCEPTED)
        assert order.last_event == attrs.evolve(ACCEPTED, status=OrderStatus.ACCEPTED, seq=2)

    def test_replaying_stamped_events_rebuilds_the_order(self):
        events: list[OrderEvent] = []
        order = Order.create(CID, limit_intent(), ts=1)
        for event in (SUBMITTED, ACCEPTED, filled("4"), CANCEL, CANCEL_REJECTED):
            order = order.apply(event)
            assert order.last_event is not None
            events.append(order.last_event)
        rebuilt = replay_order_events(Order.create(CID, limit_intent(), ts=1), events)
        assert rebuilt == order

    def test_replay_refuses_a_stamp_that_disagrees(self):
        forged = attrs.evolve(SUBMITTED, status=OrderStatus.ACCEPTED, seq=1)
        with pytest.raises(IllegalTransition, match="says ACCEPTED at seq 1, recomputed SUBMITTED"):
            order_in().apply(forged)

    def test_every_event_type_has_a_distinct_kind(self):
        assert {t.kind for t in ORDER_EVENT_TYPES} == set(OrderEventKind)

    def test_table_targets_are_statuses_or_the_previous_marker(self):
        assert all(t == "PREVIOUS" or isinstance(t, OrderStatus) for t in TRANSITIONS.values())

    def test_terminal_and_working_statuses_partition_all_statuses(self):
        terminal = {s for s in OrderStatus if s.is_terminal}
        working = {s for s in OrderStatus if s.is_working}
        assert (terminal & working, terminal | working) == (set(), set(OrderStatus))


class TestClientOrderIds:
    def test_ids_are_strategy_and_zero_padded_sequence(self):
        ids = ClientOrderIds("sma")
        assert [ids.next(), ids.next()] == ["sma-00000001", "sma-00000002"]

    def test_peek_does_not_advance(self):
        ids = ClientOrderIds("sma", last_seq=4)
        assert (ids.peek(), ids.next()) == ("sma-00000005", "sma-00000005")

    def test_resume_continues_after_the_highest_sequence_of_its_strategy(self):
        ids = ClientOrderIds.resume(
            "sma", ["sma-00000003", "other-00000099", "sma-00000012", "sma-00000007"]
        )
        assert ids.next() == "sma-00000013"

    def test_sequences_beyond_eight_digits_keep_counting(self):
        assert ClientOrderIds("a", last_seq=99_999_999).next() == "a-100000000"

    @pytest.mark.parametrize(
        "bad",
        [
            "sma",
            "sma-1",
            "sma-00000000",
            "sma-000000001",
            "-00000001",
            "sma-0000000x",
            "s m-00000001",
        ],
    )
    def test_parse_refuses_non_canonical_ids(self, bad):
        with pytest.raises(InvalidOrder, match="client_order_id"):
            parse_client_order_id(bad)

    def test_negative_last_seq_is_refused_naming_it(self):
        with pytest.raises(InvalidOrder, match=r"^last_seq: "):
            ClientOrderIds("sma", last_seq=-1)

    def test_format_refuses_a_zero_sequence(self):
        with pytest.raises(InvalidOrder, match=r"^seq: "):
            format_client_order_id("sma", 0)

    def test_invalid_order_is_a_domain_value_error(self):
        assert issubclass(InvalidOrder, DomainError)
        assert issubclass(InvalidOrder, ValueError)

    @given(strategy_ids, st.integers(1, 10**12))
    def test_format_and_parse_round_trip(self, strategy_id, seq):
        assert parse_client_order_id(format_client_order_id(strategy_id, seq)) == (
            strategy_id,
            seq,
        )

    @given(strategy_ids, st.lists(st.integers(1, 10**6), max_size=20), st.integers(1, 30))
    def test_resumed_ids_never_repeat_an_issued_one(self, strategy_id, seen_seqs, count):
        seen = [format_client_order_id(strategy_id, s) for s in seen_seqs]
        ids = ClientOrderIds.resume(strategy_id, seen)
        issued = [ids.next() for _ in range(count)]
        assert len(set(issued)) == count
        assert not set(issued) & set(seen)


class TestTrackOrder:
    def test_a_newer_snapshot_replaces_and_a_stale_one_is_ignored(self):
        from tradewind.actors._orders import track_order

        orders: dict[str, Order] = {}
        seen: dict[str, int] = {}
        accepted = order_in(SUBMITTED, ACCEPTED)
        submitted = order_in(SUBMITTED)
        assert track_order(orders, seen, accepted) is True
        assert track_order(orders, seen, submitted) is False  # stale: no roll-back
        assert orders[CID] is accepted
        assert seen[CID] == accepted.event_seq

    def test_a_terminal_snapshot_leaves_the_working_view(self):
        from tradewind.actors._orders import track_order

        orders: dict[str, Order] = {}
        seen: dict[str, int] = {}
        track_order(orders, seen, order_in(SUBMITTED, ACCEPTED))
        track_order(orders, seen, order_in(SUBMITTED, ACCEPTED, CANCEL, CANCELED))
        assert orders == {}
        assert seen[CID] == 4
