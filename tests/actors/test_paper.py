"""The paper broker: matching rules, slippage, fees, partial fills, latency, expiry, faults."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tradewind.actors import (
    BROKER_EVENT_TYPES,
    Bar,
    Broker,
    BrokerDisconnected,
    DomainError,
    FloatRefused,
    Instrument,
    InvalidOrder,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PaperBroker,
    PaperConfig,
    PaperExchange,
    PaperFaults,
    Rounding,
    Side,
    TimeInForce,
)

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
ES = Instrument("ES", "USD", Decimal("0.25"), multiplier=Decimal(50))
LOT10 = Instrument("LOT", "EUR", Decimal("0.01"), lot_size=Decimal(10))
INSTRUMENTS = {i.symbol: i for i in (AAPL, ES, LOT10)}
T0 = 1_700_000_000 * 10**9
MIN = 60 * 10**9
DAY = 86_400 * 10**9


def bar(
    ts: int,
    open_: str,
    high: str,
    low: str,
    close: str,
    *,
    volume: str = "1000",
    symbol: str = "AAPL",
    timeframe: str = "1m",
) -> Bar:
    return Bar(symbol, timeframe, ts, open_, high, low, close, volume)


def flat(ts: int, price: str = "100.00", symbol: str = "AAPL", volume: str = "1000") -> Bar:
    return bar(ts, price, price, price, price, volume=volume, symbol=symbol)


def intent(
    side: Side = Side.BUY,
    quantity: int | str = 10,
    limit: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "AAPL",
) -> OrderIntent:
    return OrderIntent(
        strategy_id="s1",
        instrument=symbol,
        side=side,
        quantity=quantity,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        limit_price=limit,
        time_in_force=tif,
    )


def submitted(order_intent: OrderIntent, ts: int = T0, seq: int = 1) -> Order:
    order = Order.create(f"s1-{seq:08d}", order_intent, ts)
    return order.apply(OrderSubmitted(client_order_id=order.client_order_id, ts=ts))


def exchange(faults: PaperFaults | None = None, **config: object) -> PaperExchange:
    engine = PaperExchange(
        PaperConfig(INSTRUMENTS, **config),  # type: ignore[arg-type]
        faults if faults is not None else PaperFaults(),
    )
    engine.connect()
    return engine


def fills(events: tuple[object, ...]) -> list[OrderFilled]:
    return [e for e in events if isinstance(e, OrderFilled)]


class TestSubmit:
    def test_a_new_order_is_acknowledged_with_a_deterministic_broker_id(self):
        engine = exchange()
        (ack,) = engine.submit(submitted(intent()))
        assert isinstance(ack, OrderAccepted)
        assert ack.broker_order_id == "PAPER-00000001"
        assert (ack.client_order_id, ack.ts, ack.status, ack.seq) == ("s1-00000001", T0, None, 0)

    def test_an_order_for_an_unknown_instrument_is_rejected(self):
        engine = exchange()
        (reject,) = engine.submit(submitted(intent(symbol="MSFT")))
        assert isinstance(reject, OrderRejected)
        assert reject.reason == "unknown instrument 'MSFT'"
        assert engine.statistics().rejected == 1

    def test_a_repeated_submit_returns_the_first_answer_and_sends_nothing_new(self):
        engine = exchange()
        order = submitted(intent())
        first = engine.submit(order)
        assert engine.submit(order) == first
        assert engine.statistics().submits == 1
        assert engine.statistics().accepted == 1

    def test_an_order_that_is_not_submitted_is_refused_and_changes_nothing(self):
        engine = exchange()
        order = Order.create("s1-00000001", intent(), T0)
        with pytest.raises(InvalidOrder, match="INITIALIZED, not SUBMITTED"):
            engine.submit(order)
        assert engine.statistics().submits == 0
        assert engine.open_orders() == ()

    def test_a_disconnected_exchange_refuses_every_request(self):
        engine = PaperExchange(PaperConfig(INSTRUMENTS))
        with pytest.raises(BrokerDisconnected, match="submit of s1-00000001"):
            engine.submit(submitted(intent()))
        with pytest.raises(BrokerDisconnected):
            engine.cancel("s1-00000001", T0)
        with pytest.raises(BrokerDisconnected):
            engine.on_bar(flat(T0))
        with pytest.raises(BrokerDisconnected):
            engine.open_orders()
        with pytest.raises(BrokerDisconnected):
            engine.fills_since(0)


class TestMarketOrders:
    def test_a_market_order_never_fills_on_the_bar_it_was_placed_on(self):
        engine = exchange()
        engine.on_bar(flat(T0))
        engine.submit(submitted(intent(), ts=T0))
        assert engine.on_bar(bar(T0, "99", "99", "99", "99", symbol="ES")) == ()
        assert engine.open_orders()[0].status is OrderStatus.ACCEPTED

    def test_a_market_order_fills_at_the_next_bars_open(self):
        engine = exchange()
        engine.submit(submitted(intent(quantity=7), ts=T0))
        (event,) = engine.on_bar(bar(T0 + MIN, "101.50", "103", "99", "102"))
        assert isinstance(event, OrderFilled)
        fill = event.fill
        assert (fill.price, fill.quantity, fill.ts) == (Decimal("101.50"), Decimal(7), T0 + MIN)
        assert fill.execution_id == "s1-00000001-F1"
        assert fill.fee_currency == "USD"
        assert engine.open_orders() == ()

    def test_a_bar_of_another_instrument_does_not_fill_the_order(self):
        engine = exchange()
        engine.submit(submitted(intent(), ts=T0))
        assert engine.on_bar(flat(T0 + MIN, symbol="ES")) == ()
        assert len(engine.open_orders()) == 1


class TestLimitOrders:
    @pytest.mark.parametrize(
        ("side", "limit", "ohlc", "price"),
        [
            (Side.BUY, "99.00", ("100", "101", "98", "100"), "99.00"),  # trades through
            (Side.BUY, "101.00", ("100", "102", "99", "101"), "100"),  # opens below: open
            (Side.SELL, "101.00", ("100", "102", "99", "100"), "101.00"),
            (Side.SELL, "99.00", ("100", "101", "98", "99"), "100"),  # opens above: open
            (Side.BUY, "98.00", ("100", "101", "98", "100"), "98.00"),  # low touches
        ],
    )
    def test_a_limit_order_fills_at_its_limit_or_the_better_open(self, side, limit, ohlc, price):
        engine = exchange()
        engine.submit(submitted(intent(side=side, limit=limit), ts=T0))
        (event,) = engine.on_bar(bar(T0 + MIN, *ohlc))
        assert isinstance(event, OrderFilled)
        assert event.fill.price == Decimal(price)

    @pytest.mark.parametrize(("side", "limit"), [(Side.BUY, "97.99"), (Side.SELL, "101.01")])
    def test_a_limit_order_the_bar_does_not_reach_keeps_working(self, side, limit):
        engine = exchange()
        engine.submit(submitted(intent(side=side, limit=limit), ts=T0))
        assert engine.on_bar(bar(T0 + MIN, "100", "101", "98", "100")) == ()
        assert engine.open_orders()[0].status is OrderStatus.ACCEPTED


class TestSlippage:
    @pytest.mark.parametrize(("side", "price"), [(Side.BUY, "100.02"), (Side.SELL, "99.98")])
    def test_slippage_moves_a_market_fill_against_the_order(self, side, price):
        engine = exchange(slippage_ticks=2)
        engine.submit(submitted(intent(side=side), ts=T0))
        (event,) = engine.on_bar(flat(T0 + MIN))
        assert isinstance(event, OrderFilled)
        assert event.fill.price == Decimal(price)

    @pytest.mark.parametrize(
        ("side", "rounding", "price"),
        [
            (Side.BUY, None, "100.25"),  # 100.125 adverse: up
            (Side.SELL, None, "99.75"),  # 99.875 adverse: down
            (Side.BUY, Rounding.DOWN, "100.00"),
            (Side.SELL, Rounding.NEAREST, "100.00"),  # 99.875 -> 100.00 (nearest tick)
        ],
    )
    def test_a_fractional_slippage_is_quantized_in_the_named_direction(self, side, rounding, price):
        engine = exchange(slippage_ticks="0.5", slippage_rounding=rounding)
        engine.submit(submitted(intent(side=side, symbol="ES"), ts=T0))
        (event,) = engine.on_bar(flat(T0 + MIN, "100.00", symbol="ES"))
        assert isinstance(event, OrderFilled)
        assert event.fill.price == Decimal(price)

    def test_slippage_never_takes_a_limit_fill_beyond_the_limit(self):
        engine = exchange(slippage_ticks=5)
        engine.submit(submitted(intent(limit="100.02"), ts=T0))
        (event,) = engine.on_bar(bar(T0 + MIN, "100.00", "100.10", "99.90", "100.00"))
        assert isinstance(event, OrderFilled)
        assert event.fill.price == Decimal("100.02")

    def test_a_slipped_sell_never_goes_below_one_tick(self):
        engine = exchange(slippage_ticks=10)
        engine.submit(submitted(intent(side=Side.SELL), ts=T0))
        (event,) = engine.on_bar(flat(T0 + MIN, "0.05"))
        assert isinstance(event, OrderFilled)
        assert event.fill.price == Decimal("0.01")


class TestFees:
    def test_the_fee_is_per_unit_plus_basis_points_of_the_notional_exactly(self):
        engine = exchange(fee_per_unit="0.005", fee_bps="1.5")
        engine.submit(submitted(intent(quantity=3, symbol="ES"), ts=T0))
        (event,) = engine.on_bar(flat(T0 + MIN, "4500.25", symbol="ES"))
        assert isinstance(event, OrderFilled)
        # 3 * 0.005 + 4500.25 * 3 * 50 * 1.5 / 10_000
        assert event.fill.fee == Decimal("0.015") + Decimal("101.255625")
        assert event.fill.fee_currency == "USD"

    def test_without_fees_configured_a_fill_is_free(self):
        engine = exchange()
        engine.submit(submitted(intent(), ts=T0))
        (event,) = engine.on_bar(flat(T0 + MIN))
        assert isinstance(event, OrderFilled)
        assert event.fill.fee == 0


class TestPartialFills:
    def test_a_bar_fills_at_most_its_volume_share_rounded_down_to_the_lot(self):
        engine = exchange(max_volume_fraction="0.1")
        engine.submit(submitted(intent(quantity=100, symbol="LOT"), ts=T0))
        (first,) = engine.on_bar(flat(T0 + MIN, symbol="LOT", volume="259"))
        (second,) = engine.on_bar(flat(T0 + 2 * MIN, symbol="LOT", volume="10000"))
        assert isinstance(first, OrderFilled)
        assert isinstance(second, OrderFilled)
        assert first.fill.quantity == Decimal(20)
        assert second.fill.quantity == Decimal(80)
        assert [first.fill.execution_id, second.fill.execution_id] == [
            "s1-00000001-F1",
            "s1-00000001-F2",
        ]
        assert engine.open_orders() == ()

    def test_orders_share_the_bars_volume_in_submission_order(self):
        # 10% of 1,000 is 100 a bar for every order of the instrument together.
        engine = exchange(max_volume_fraction="0.1")
        engine.submit(submitted(intent(quantity=70), ts=T0, seq=1))
        engine.submit(submitted(intent(quantity=50, side=Side.SELL), ts=T0, seq=2))
        engine.submit(submitted(intent(quantity=10, symbol="ES"), ts=T0, seq=3))
        shared = fills(engine.on_bar(flat(T0 + MIN, volume="1000")))
        assert [(f.client_order_id, f.fill.quantity) for f in shared] == [
            ("s1-00000001", Decimal(70)),
            ("s1-00000002", Decimal(30)),
        ]
        (rest,) = fills(engine.on_bar(flat(T0 + 2 * MIN, volume="1000")))
        assert (rest.client_order_id, rest.fill.quantity) == ("s1-00000002", Decimal(20))
        (other,) = fills(engine.on_bar(flat(T0 + MIN, "4000.00", symbol="ES", volume="100")))
        assert other.fill.quantity == Decimal(10)

    def test_a_bar_whose_share_is_below_one_lot_fills_nothing(self):
        engine = exchange(max_volume_fraction="0.5")
        engine.submit(submitted(intent(quantity=10, symbol="LOT"), ts=T0))
        assert engine.on_bar(flat(T0 + MIN, symbol="LOT", volume="19")) == ()
        assert engine.open_orders()[0].filled_quantity == 0


class TestLatency:
    def test_an_order_is_eligible_only_once_its_latency_has_passed(self):
        engine = exchange(latency_ns=2 * MIN)
        engine.submit(submitted(intent(), ts=T0))
        assert engine.on_bar(flat(T0 + MIN)) == ()
        (event,) = engine.on_bar(flat(T0 + 2 * MIN, "100.50"))
        assert isinstance(event, OrderFilled)
        assert event.fill.price == Decimal("100.50")


class TestTimeInForce:
    def test_an_ioc_remainder_is_canceled_after_its_first_eligible_bar(self):
        engine = exchange(max_volume_fraction="0.01")
        engine.submit(submitted(intent(quantity=50, tif=TimeInForce.IOC), ts=T0))
        filled, canceled = engine.on_bar(flat(T0 + MIN, volume="1000"))
        assert isinstance(filled, OrderFilled)
        assert filled.fill.quantity == Decimal(10)
        assert isinstance(canceled, OrderCanceled)
        assert engine.open_orders() == ()

    def test_an_ioc_limit_the_bar_does_not_reach_is_canceled(self):
        engine = exchange()
        engine.submit(submitted(intent(limit="90.00", tif=TimeInForce.IOC), ts=T0))
        (event,) = engine.on_bar(flat(T0 + MIN))
        assert isinstance(event, OrderCanceled)
        assert engine.statistics().canceled == 1

    def test_a_day_order_expires_on_the_first_bar_of_the_next_day(self):
        engine = exchange()
        engine.submit(submitted(intent(limit="90.00", tif=TimeInForce.DAY), ts=T0))
        assert engine.on_bar(flat(T0 + MIN)) == ()
        (event,) = engine.on_bar(flat(T0 + DAY, "89.00"))
        assert isinstance(event, OrderExpired)
        assert event.ts == T0 + DAY
        assert engine.statistics().expired == 1

    def test_a_gtc_order_works_across_days(self):
        engine = exchange()
        engine.submit(submitted(intent(limit="90.00"), ts=T0))
        (event,) = engine.on_bar(flat(T0 + 3 * DAY, "89.00"))
        assert isinstance(event, OrderFilled)

    def test_the_trading_day_is_the_local_date_of_the_calendar_zone(self):
        # Sydney opens at 10:00 local, 23:00 UTC of the day before (daylight saving):
        # 10:00 and 11:00 of Tuesday 6 January 2026 are one trading day, not two UTC days
        config = PaperConfig(INSTRUMENTS, timezone="Australia/Sydney")
        ten = 1_767_654_000 * 10**9  # 2026-01-05T23:00Z
        assert config.day_of(ten) == config.day_of(ten + 3600 * 10**9)
        assert config.day_of(ten) == config.day_of(ten - 36_000 * 10**9 + DAY - 1)  # 23:59:59
        assert config.day_of(ten) + 1 == config.day_of(ten - 36_000 * 10**9 + DAY)  # midnight
        engine = exchange(timezone="Australia/Sydney")
        engine.submit(submitted(intent(limit="99.00", tif=TimeInForce.DAY), ts=ten))
        (event,) = engine.on_bar(flat(ten + 3600 * 10**9, "98.50"))
        assert isinstance(event, OrderFilled)

    def test_an_unknown_zone_is_refused(self):
        with pytest.raises(DomainError, match="timezone: 'Mars/Olympus' is not a known"):
            PaperConfig(INSTRUMENTS, timezone="Mars/Olympus")

    def test_the_trading_day_follows_the_configured_offset(self):
        config = PaperConfig(INSTRUMENTS, day_offset_ns=DAY // 2)
        assert config.day_of(DAY // 2 - 1) == -1
        assert config.day_of(DAY // 2) == 0


class TestCancel:
    def test_a_working_order_is_canceled(self):
        engine = exchange()
        engine.submit(submitted(intent(limit="90.00"), ts=T0))
        engine.on_bar(flat(T0 + MIN))
        (event,) = engine.cancel("s1-00000001", T0 + MIN)
        assert isinstance(event, OrderCanceled)
        assert event.ts == T0 + MIN
        assert engine.open_orders() == ()
        assert engine.statistics().canceled == 1

    def test_an_order_canceled_as_it_is_placed_never_trades(self):
        engine = exchange(latency_ns=5 * MIN)
        engine.submit(submitted(intent(), ts=T0))
        (event,) = engine.cancel("s1-00000001", T0)  # it would be eligible from T0 + 5m
        assert isinstance(event, OrderCanceled)
        assert event.ts == T0 + 5 * MIN  # the time the cancel reaches the venue

    def test_a_cancel_of_another_instrument_does_not_stop_that_instruments_bar_of_the_same_time(
        self,
    ):
        # The strategy decided on AAPL's bar at t + 1m: ES's bar at t + 1m traded before
        # that decision could be made, so it still fills the resting ES order.
        engine = exchange()
        engine.submit(submitted(intent(limit="4000.00", symbol="ES"), ts=T0))
        assert engine.on_bar(flat(T0 + MIN)) == ()
        assert engine.cancel("s1-00000001", T0 + MIN) == ()
        assert [o.client_order_id for o in engine.open_orders()] == ["s1-00000001"]
        fill, too_late = engine.on_bar(flat(T0 + MIN, "3999.00", symbol="ES"))
        assert isinstance(fill, OrderFilled)
        assert fill.fill.price == Decimal("3999.00")
        assert isinstance(too_late, OrderCancelRejected)
        assert (too_late.ts, too_late.reason) == (T0 + MIN, "too late to cancel: order is FILLED")
        assert engine.statistics().canceled == 0

    def test_a_waiting_cancel_takes_effect_once_the_orders_bar_has_traded(self):
        engine = exchange()
        engine.submit(submitted(intent(limit="4000.00", symbol="ES"), ts=T0))
        engine.on_bar(flat(T0 + MIN))
        assert engine.cancel("s1-00000001", T0 + MIN) == ()
        assert engine.cancel("s1-00000001", T0 + MIN) == ()  # asked again: nothing new
        (canceled,) = engine.on_bar(flat(T0 + MIN, "4001.00", symbol="ES"))
        assert isinstance(canceled, OrderCanceled)
        assert canceled.ts == T0 + MIN
        assert engine.open_orders() == ()
        assert engine.on_bar(flat(T0 + 2 * MIN, "3000.00", symbol="ES")) == ()

    def test_a_waiting_cancel_arrives_before_the_next_time_step_trades(self):
        # ES has no bar at t + 1m: the cancel is in place before anything at t + 2m trades.
        engine = exchange()
        engine.submit(submitted(intent(limit="4000.00", symbol="ES"), ts=T0))
        engine.on_bar(flat(T0 + MIN))
        assert engine.cancel("s1-00000001", T0 + MIN) == ()
        (canceled,) = engine.on_bar(flat(T0 + 2 * MIN, "3000.00", symbol="ES"))
        assert isinstance(canceled, OrderCanceled)
        assert canceled.ts == T0 + MIN
        assert engine.statistics().fills == 0

    def test_a_cancel_reaches_the_venue_after_the_latency_as_an_order_does(self):
        engine = exchange(latency_ns=2 * MIN)
        engine.submit(submitted(intent(limit="90.00"), ts=T0))
        engine.on_bar(flat(T0 + 2 * MIN))
        assert engine.cancel("s1-00000001", T0 + 2 * MIN) == ()
        assert engine.on_bar(flat(T0 + 3 * MIN)) == ()  # still working: no fill, no cancel
        assert [o.client_order_id for o in engine.open_orders()] == ["s1-00000001"]
        # the bar at t + 4m would fill it, but the cancel arrived first
        (canceled,) = engine.on_bar(flat(T0 + 4 * MIN, "89.00"))
        assert isinstance(canceled, OrderCanceled)
        assert canceled.ts == T0 + 4 * MIN

    def test_a_fill_within_the_latency_beats_the_cancel(self):
        engine = exchange(latency_ns=2 * MIN, max_volume_fraction="0.005")
        engine.submit(submitted(intent(limit="90.00"), ts=T0))
        engine.on_bar(flat(T0 + 2 * MIN))
        assert engine.cancel("s1-00000001", T0 + 2 * MIN) == ()
        # 0.5% of 1,000 fills 5 of 10; the rest is canceled as the cancel arrives
        (partial,) = engine.on_bar(flat(T0 + 3 * MIN, "89.00"))
        assert isinstance(partial, OrderFilled)
        assert partial.fill.quantity == Decimal(5)
        (canceled,) = engine.on_bar(flat(T0 + 4 * MIN, "89.00"))
        assert isinstance(canceled, OrderCanceled)
        assert engine.copy_of("s1-00000001").filled_quantity == Decimal(5)

    def test_an_expiry_ends_an_order_whose_cancel_waits(self):
        engine = exchange(latency_ns=DAY)
        engine.submit(submitted(intent(limit="90.00", tif=TimeInForce.DAY), ts=T0))
        engine.on_bar(flat(T0 + MIN))
        assert engine.cancel("s1-00000001", T0 + MIN) == ()
        (expired,) = engine.on_bar(flat(T0 + DAY))
        assert isinstance(expired, OrderExpired)
        assert engine.on_bar(flat(T0 + DAY + 2 * MIN)) == ()  # nothing left to cancel

    def test_a_restored_cancel_keeps_the_time_it_was_asked(self):
        # Latency 2m, a 0.5% volume cap: the cancel asked at 2m arrives at 4m; the bar
        # at 3m fills 5 more meanwhile. Killed after that bar, the journal holds the
        # order PENDING_CANCEL with its last change at 3m: taken as asked then, the
        # cancel would arrive at 5m and the bar at 4m would fill 5 more.
        def engine() -> PaperExchange:
            return exchange(latency_ns=2 * MIN, max_volume_fraction="0.005")

        uninterrupted = engine()
        order = submitted(intent(quantity=20), ts=T0)
        journal = order
        fills_so_far = []
        (ack,) = uninterrupted.submit(order)
        journal = journal.apply(ack)
        for minute in (1, 2, 3):
            events = uninterrupted.on_bar(flat(T0 + minute * MIN))
            for event in events:
                journal = journal.apply(event)
                if isinstance(event, OrderFilled):
                    fills_so_far.append(event.fill)
            if minute == 2:
                coid = journal.client_order_id
                journal = journal.apply(OrderCancelRequested(client_order_id=coid, ts=T0 + 2 * MIN))
                assert uninterrupted.cancel(coid, T0 + 2 * MIN) == ()
        assert (journal.status, journal.filled_quantity) == (
            OrderStatus.PENDING_CANCEL,
            Decimal(10),
        )
        restored = engine()
        asked = {journal.client_order_id: T0 + 2 * MIN}
        restored.restore(
            [journal], fills_so_far, {("AAPL", "1m"): T0 + 3 * MIN}, cancels_asked=asked
        )
        expected = uninterrupted.on_bar(flat(T0 + 4 * MIN))
        assert [type(e).__name__ for e in expected] == ["OrderCanceled"]
        assert restored.on_bar(flat(T0 + 4 * MIN)) == expected
        assert restored.copy_of(journal.client_order_id).filled_quantity == 10

    def test_a_restored_cancel_request_waits_for_the_bars_that_traded_before_it(self):
        order = submitted(intent(limit="4000.00", symbol="ES"), ts=T0)
        order = order.apply(
            OrderAccepted(client_order_id=order.client_order_id, ts=T0, broker_order_id="PAPER-1")
        )
        order = order.apply(
            OrderCancelRequested(client_order_id=order.client_order_id, ts=T0 + MIN)
        )
        settled, waiting = exchange(), exchange()
        settled.restore([order], [], {("AAPL", "1m"): T0 + MIN, ("ES", "1m"): T0 + MIN})
        assert settled.open_orders() == ()
        assert settled.copy_of(order.client_order_id).status is OrderStatus.CANCELED
        waiting.restore([order], [], {("AAPL", "1m"): T0 + MIN, ("ES", "1m"): T0})
        assert [o.status for o in waiting.open_orders()] == [OrderStatus.PENDING_CANCEL]
        fill, too_late = waiting.on_bar(flat(T0 + MIN, "3999.00", symbol="ES"))
        assert isinstance(fill, OrderFilled)
        assert isinstance(too_late, OrderCancelRejected)
        assert order.apply(fill).apply(too_late).status is OrderStatus.FILLED

    def test_an_unknown_order_cannot_be_canceled(self):
        (event,) = exchange().cancel("s1-00000009", T0)
        assert isinstance(event, OrderCancelRejected)
        assert event.reason == "unknown order"

    def test_a_filled_order_is_too_late_to_cancel(self):
        engine = exchange()
        engine.submit(submitted(intent(), ts=T0))
        engine.on_bar(flat(T0 + MIN))
        (event,) = engine.cancel("s1-00000001", T0 + 2 * MIN)
        assert isinstance(event, OrderCancelRejected)
        assert event.reason == "too late to cancel: order is FILLED"


class TestFaults:
    def test_the_nth_submit_is_rejected(self):
        engine = exchange(PaperFaults(reject_submits={2}, reject_reason="venue says no"))
        answers = [engine.submit(submitted(intent(), seq=n)) for n in (1, 2, 3)]
        kinds = [type(a[0]).__name__ for a in answers]
        assert kinds == ["OrderAccepted", "OrderRejected", "OrderAccepted"]
        assert answers[1][0].reason == "venue says no"  # type: ignore[union-attr]

    def test_every_submit_matching_the_predicate_is_rejected(self):
        faults = PaperFaults(reject_if=lambda order: order.intent.side is Side.SELL)
        engine = exchange(faults)
        (buy,) = engine.submit(submitted(intent(side=Side.BUY), seq=1))
        (sell,) = engine.submit(submitted(intent(side=Side.SELL), seq=2))
        assert isinstance(buy, OrderAccepted)
        assert isinstance(sell, OrderRejected)

    def test_a_delayed_ack_arrives_with_a_later_bar(self):
        engine = exchange(PaperFaults(ack_delay_bars=2))
        assert engine.submit(submitted(intent(limit="90.00"), ts=T0)) == ()
        assert engine.on_bar(flat(T0 + MIN)) == ()
        (ack,) = engine.on_bar(flat(T0 + 2 * MIN))
        assert isinstance(ack, OrderAccepted)
        assert engine.open_orders()[0].status is OrderStatus.ACCEPTED

    def test_a_fill_may_overtake_a_delayed_ack(self):
        engine = exchange(PaperFaults(ack_delay_bars=2))
        order = submitted(intent(), ts=T0)
        engine.submit(order)
        (fill,) = engine.on_bar(flat(T0 + MIN))
        (ack,) = engine.on_bar(flat(T0 + 2 * MIN))
        assert isinstance(fill, OrderFilled)
        assert isinstance(ack, OrderAccepted)
        assert order.apply(fill).apply(ack).status is OrderStatus.FILLED

    def test_a_cancel_releases_a_held_ack_first(self):
        engine = exchange(PaperFaults(ack_delay_bars=5))
        engine.submit(submitted(intent(limit="90.00"), ts=T0))
        ack, canceled = engine.cancel("s1-00000001", T0)
        assert isinstance(ack, OrderAccepted)
        assert isinstance(canceled, OrderCanceled)

    def test_an_injected_disconnect_drops_the_connection_once_and_loses_that_bars_news(self):
        engine = exchange(PaperFaults(disconnect_at=(T0 + 2 * MIN,)))
        engine.submit(submitted(intent(limit="90.00"), ts=T0))
        engine.on_bar(flat(T0 + MIN))
        with pytest.raises(BrokerDisconnected, match="fault injection"):
            engine.on_bar(flat(T0 + 2 * MIN, "89.00"))
        assert not engine.connected
        assert engine.statistics().disconnects == 1
        engine.connect()
        assert engine.on_bar(flat(T0 + 3 * MIN, "89.00")) == ()  # no second drop either
        (fill,) = engine.fills_since(T0)
        assert fill.ts == T0 + 2 * MIN
        assert engine.lookup_orders(["s1-00000001"])[0].status is OrderStatus.FILLED

    def test_the_market_trades_on_while_the_connection_is_down(self):
        engine = exchange()
        engine.submit(submitted(intent(limit="90.00", tif=TimeInForce.DAY), ts=T0))
        engine.submit(submitted(intent(limit="80.00"), ts=T0 + 1, seq=2))
        engine.disconnect()
        with pytest.raises(BrokerDisconnected, match="not delivered"):
            engine.on_bar(flat(T0 + MIN, "89.00"))
        with pytest.raises(BrokerDisconnected):
            engine.on_bar(flat(T0 + DAY, "95.00"))
        engine.connect()
        assert [f.client_order_id for f in engine.fills_since(T0)] == ["s1-00000001"]
        assert engine.open_orders()[0].client_order_id == "s1-00000002"
        assert engine.statistics().bars == 2

    def test_a_drop_due_while_already_down_is_spent_quietly(self):
        engine = exchange(PaperFaults(disconnect_at=(T0 + MIN,)))
        engine.disconnect()
        with pytest.raises(BrokerDisconnected, match="not delivered"):
            engine.on_bar(flat(T0 + MIN))
        engine.connect()
        assert engine.on_bar(flat(T0 + 2 * MIN)) == ()
        assert engine.statistics().disconnects == 1

    def test_reconnects_are_refused_the_given_number_of_times_after_a_drop(self):
        engine = exchange(PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=2))
        engine.connect()  # the first connection is never refused
        with pytest.raises(BrokerDisconnected):
            engine.on_bar(flat(T0 + MIN))
        for left in (1, 0):
            with pytest.raises(BrokerDisconnected, match=f"{left} more refusals"):
                engine.connect()
        engine.connect()
        assert engine.connected
        stats = engine.statistics()
        assert (stats.connect_attempts, stats.refused_connects) == (4, 2)

    def test_a_connect_while_up_is_not_an_attempt(self):
        engine = exchange()
        engine.connect()
        assert engine.statistics().connect_attempts == 1


class TestSubscriptionsAndLookups:
    def test_subscriptions_belong_to_the_connection(self):
        engine = exchange()
        engine.subscribe(["AAPL"])
        engine.subscribe(["ES"])
        assert engine.subscriptions == {"AAPL", "ES"}
        engine.disconnect()
        assert engine.subscriptions == frozenset()
        assert engine.statistics().subscribes == 2

    def test_a_subscription_needs_the_connection(self):
        engine = exchange()
        engine.disconnect()
        with pytest.raises(BrokerDisconnected, match="subscription"):
            engine.subscribe(["AAPL"])

    def test_a_lookup_returns_known_orders_in_the_order_asked(self):
        engine = exchange()
        engine.submit(submitted(intent(limit="90.00"), ts=T0))
        engine.submit(submitted(intent(limit="91.00"), ts=T0 + 1, seq=2))
        engine.on_bar(flat(T0 + 2))
        engine.cancel("s1-00000001", T0 + 2)
        found = engine.lookup_orders(["s1-00000002", "s1-00000009", "s1-00000001"])
        assert [(o.client_order_id, o.status) for o in found] == [
            ("s1-00000002", OrderStatus.ACCEPTED),
            ("s1-00000001", OrderStatus.CANCELED),
        ]

    def test_a_lookup_needs_the_connection(self):
        engine = exchange()
        engine.disconnect()
        with pytest.raises(BrokerDisconnected, match="lookup"):
            engine.lookup_orders(["s1-00000001"])

    async def test_the_async_broker_passes_subscriptions_and_lookups_through(self):
        broker = PaperBroker(PaperConfig(AAPL))
        await broker.connect()
        await broker.subscribe(["AAPL"])
        assert broker.subscriptions == {"AAPL"}
        assert await broker.lookup_orders(["s1-00000001"]) == ()


class TestBars:
    def test_a_bar_at_or_before_the_last_of_its_series_is_ignored(self):
        engine = exchange()
        engine.submit(submitted(intent(), ts=T0))
        engine.on_bar(flat(T0 + 2 * MIN, symbol="ES"))
        assert engine.on_bar(flat(T0 + 2 * MIN, symbol="ES")) == ()
        assert engine.statistics().bars == 1

    def test_only_the_configured_timeframe_matches(self):
        engine = exchange(timeframe="5m")
        engine.submit(submitted(intent(), ts=T0))
        assert engine.on_bar(flat(T0 + MIN)) == ()
        (event,) = engine.on_bar(bar(T0 + 5 * MIN, "100", "100", "100", "100", timeframe="5m"))
        assert isinstance(event, OrderFilled)


class TestReconciliation:
    def test_open_orders_are_the_venues_copies_in_submission_order(self):
        engine = exchange()
        engine.submit(submitted(intent(limit="90.00"), seq=1))
        engine.submit(submitted(intent(side=Side.SELL, limit="110.00"), seq=2))
        assert [o.client_order_id for o in engine.open_orders()] == ["s1-00000001", "s1-00000002"]

    def test_fills_since_returns_the_fills_from_that_time_on(self):
        engine = exchange()
        engine.submit(submitted(intent(), ts=T0, seq=1))
        engine.on_bar(flat(T0 + MIN))
        engine.submit(submitted(intent(), ts=T0 + MIN, seq=2))
        engine.on_bar(flat(T0 + 2 * MIN))
        assert [f.execution_id for f in engine.fills_since(T0 + 2 * MIN)] == ["s1-00000002-F1"]
        assert len(engine.fills_since(0)) == 2


class TestOwnState:
    """`record` / `fills_from` / `load`: a venue stored and loaded is the same venue."""

    def test_a_loaded_engine_trades_on_exactly_as_the_original(self):
        original = exchange()
        original.submit(submitted(intent(), ts=T0, seq=1))  # fills at the next bar
        original.submit(submitted(intent(limit="90.00"), ts=T0, seq=2))  # rests
        original.submit(submitted(intent(symbol="NOPE"), ts=T0, seq=3))  # rejected
        original.on_bar(flat(T0 + MIN))
        coids = ["s1-00000001", "s1-00000002", "s1-00000003"]
        records = [original.record(coid) for coid in coids]
        assert [r.submit_no for r in records] == [1, 2, 3]
        assert records[1].eligible_from is not None  # working
        assert records[0].eligible_from is None  # filled: final

        loaded = exchange()
        loaded.disconnect()
        loaded.load(records, original.fills_from(0), {("AAPL", "1m"): T0 + MIN})
        loaded.connect()
        assert loaded.fill_count == original.fill_count == 1
        assert loaded.working_orders() == original.working_orders()
        assert all(loaded.copy_of(c) == original.copy_of(c) for c in coids)
        assert loaded.knows("s1-00000003")
        assert not loaded.knows("s1-00000004")
        # both go on identically: the resting limit fills, the next ids continue
        for engine in (original, loaded):
            engine.submit(submitted(intent(), ts=T0 + MIN, seq=4))
        after = [
            e.on_bar(bar(T0 + 2 * MIN, "95.00", "95.00", "89.00", "90.00"))
            for e in (original, loaded)
        ]
        assert after[0] == after[1]
        assert loaded.record("s1-00000004") == original.record("s1-00000004")
        assert loaded.fills_from(1) == original.fills_from(1)
        assert loaded.statistics().accepted == original.statistics().accepted

    def test_load_needs_a_fresh_engine(self):
        engine = exchange()
        engine.submit(submitted(intent(), seq=1))
        with pytest.raises(DomainError, match="fresh engine"):
            engine.load([], [], {})


class TestConfig:
    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("slippage_ticks", -1, "slippage_ticks: must be >= 0"),
            ("max_volume_fraction", "1.5", "max_volume_fraction: must be > 0 and <= 1"),
            ("max_volume_fraction", 0, "max_volume_fraction: must be > 0 and <= 1"),
            ("latency_ns", -1, "latency_ns: must be an int >= 0"),
            ("day_ns", 0, "day_ns: must be an int > 0"),
        ],
    )
    def test_an_out_of_range_setting_is_refused_by_name(self, field, value, message):
        with pytest.raises(DomainError, match=message):
            PaperConfig(INSTRUMENTS, **{field: value})

    def test_a_float_fee_is_refused(self):
        with pytest.raises(FloatRefused):
            PaperConfig(INSTRUMENTS, fee_bps=1.5)

    @pytest.mark.parametrize("instruments", [AAPL, [AAPL], {"AAPL": AAPL}])
    def test_instruments_may_be_one_a_sequence_or_a_mapping(self, instruments):
        assert PaperConfig(instruments).instruments == {"AAPL": AAPL}

    @pytest.mark.parametrize("instruments", ["AAPL", ["AAPL"], {"AAPL": "AAPL"}])
    def test_anything_but_instruments_is_refused(self, instruments):
        with pytest.raises(DomainError, match="instruments: must be Instruments"):
            PaperConfig(instruments)


class TestPaperBroker:
    def test_it_is_a_broker(self):
        assert isinstance(PaperBroker(PaperConfig(INSTRUMENTS)), Broker)
        assert OrderFilled in BROKER_EVENT_TYPES

    async def test_its_calls_drive_the_exchange(self):
        broker = PaperBroker(PaperConfig(INSTRUMENTS))
        states = [broker.connected]
        await broker.connect()
        states.append(broker.connected)
        assert states == [False, True]
        (ack,) = await broker.submit(submitted(intent(), ts=T0, seq=1))
        assert isinstance(ack, OrderAccepted)
        await broker.submit(submitted(intent(limit="1.00"), ts=T0, seq=2))
        (fill,) = await broker.on_bar(flat(T0 + MIN))
        assert isinstance(fill, OrderFilled)
        assert [o.client_order_id for o in await broker.open_orders()] == ["s1-00000002"]
        assert len(await broker.fills_since(T0)) == 1
        (canceled,) = await broker.cancel("s1-00000002", T0 + MIN)
        assert isinstance(canceled, OrderCanceled)
        assert broker.statistics().canceled == 1
        await broker.disconnect()
        states.append(broker.connected)
        assert states == [False, True, False]


# ----------------------------------------------------------------------------- properties


@st.composite
def bar_series(draw: st.DrawFn, count: int = 12) -> list[Bar]:
    series = []
    for i in range(count):
        prices = sorted(draw(st.lists(st.integers(9_000, 11_000), min_size=4, max_size=4)))
        low, high = prices[0], prices[3]
        open_, close = draw(st.permutations([prices[1], prices[2]]))
        volume = draw(st.integers(0, 500))
        series.append(
            Bar(
                "AAPL",
                "1m",
                T0 + i * MIN,
                Decimal(open_).scaleb(-2),
                Decimal(high).scaleb(-2),
                Decimal(low).scaleb(-2),
                Decimal(close).scaleb(-2),
                Decimal(volume),
            )
        )
    return series


@st.composite
def placements(draw: st.DrawFn) -> list[tuple[int, OrderIntent]]:
    """(index of the bar an order is placed on, its intent)."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        limit = draw(st.none() | st.integers(9_000, 11_000).map(lambda n: str(Decimal(n) / 100)))
        out.append(
            (
                draw(st.integers(0, 10)),
                intent(
                    side=draw(st.sampled_from(Side)),
                    quantity=draw(st.integers(1, 300)),
                    limit=limit,
                    tif=draw(st.sampled_from(TimeInForce)),
                ),
            )
        )
    return out


configs = st.fixed_dictionaries(
    {
        "latency_ns": st.sampled_from([0, MIN // 2, MIN, 3 * MIN]),
        "max_volume_fraction": st.sampled_from([None, "0.1", "0.5", "1"]),
        "fee_per_unit": st.sampled_from(["0", "0.01", "0.005"]),
        "fee_bps": st.sampled_from(["0", "1", "2.5"]),
    }
)


def run(
    series: list[Bar], placed: list[tuple[int, OrderIntent]], config: dict[str, object], delay: int
) -> tuple[PaperExchange, dict[str, Order], dict[str, int], list[tuple[Bar, OrderFilled]]]:
    """Replay `series`, placing each order on its bar after the bar was processed; apply
    every returned event to the receiver's copy of the order (which must accept it)."""
    engine = exchange(PaperFaults(ack_delay_bars=delay), **config)
    mine: dict[str, Order] = {}
    placed_ts: dict[str, int] = {}
    seen: list[tuple[Bar, OrderFilled]] = []
    seq = 0
    for i, current in enumerate(series):
        for event in engine.on_bar(current):
            mine[event.client_order_id] = mine[event.client_order_id].apply(event)
            if isinstance(event, OrderFilled):
                seen.append((current, event))
        for index, order_intent in placed:
            if index != i:
                continue
            seq += 1
            order = submitted(order_intent, ts=current.ts, seq=seq)
            mine[order.client_order_id] = order
            placed_ts[order.client_order_id] = current.ts
            for event in engine.submit(order):
                mine[event.client_order_id] = mine[event.client_order_id].apply(event)
    return engine, mine, placed_ts, seen


class TestMatchingProperties:
    @settings(max_examples=80, deadline=None)
    @given(bar_series(), placements(), configs, st.integers(0, 2))
    def test_a_bars_fills_never_exceed_its_volume_share(self, series, placed, config, delay):
        _, _, _, seen = run(series, placed, config, delay)
        fraction = config["max_volume_fraction"]
        for current in series:
            total = sum((e.fill.quantity for b, e in seen if b is current), Decimal(0))
            if fraction is not None:
                assert total <= (current.volume * Decimal(str(fraction))).to_integral_value(
                    rounding="ROUND_DOWN"
                )

    @settings(max_examples=80, deadline=None)
    @given(bar_series(), placements(), configs, st.integers(0, 2))
    def test_fills_never_exceed_the_order_quantity(self, series, placed, config, delay):
        _, mine, _, seen = run(series, placed, config, delay)
        for order in mine.values():
            assert order.filled_quantity <= order.intent.quantity
            total = sum(
                (e.fill.quantity for _, e in seen if e.client_order_id == order.client_order_id),
                Decimal(0),
            )
            assert total == order.filled_quantity

    @settings(max_examples=80, deadline=None)
    @given(bar_series(), placements(), configs, st.integers(0, 2))
    def test_without_slippage_every_fill_is_inside_its_bars_range_and_within_the_limit(
        self, series, placed, config, delay
    ):
        _, mine, _, seen = run(series, placed, config, delay)
        for current, event in seen:
            price = event.fill.price
            assert current.low <= price <= current.high
            limit = mine[event.client_order_id].intent.limit_price
            if limit is not None:
                assert price <= limit if event.fill.side is Side.BUY else price >= limit

    @settings(max_examples=80, deadline=None)
    @given(bar_series(), placements(), configs, st.integers(0, 2))
    def test_market_orders_fill_at_the_open_of_a_later_bar_after_the_latency(
        self, series, placed, config, delay
    ):
        _, mine, placed_ts, seen = run(series, placed, config, delay)
        latency = int(str(config["latency_ns"]))
        for current, event in seen:
            submitted_at = placed_ts[event.client_order_id]
            assert current.ts > submitted_at
            assert current.ts >= submitted_at + latency
            if mine[event.client_order_id].intent.order_type is OrderType.MARKET:
                assert event.fill.price == current.open

    @settings(max_examples=80, deadline=None)
    @given(bar_series(), placements(), configs, st.integers(0, 2))
    def test_every_fee_is_exactly_per_unit_plus_bps_of_notional(
        self, series, placed, config, delay
    ):
        _, _, _, seen = run(series, placed, config, delay)
        per_unit = Decimal(str(config["fee_per_unit"]))
        bps = Decimal(str(config["fee_bps"]))
        for _, event in seen:
            fill = event.fill
            expected = fill.quantity * per_unit + fill.quantity * fill.price * bps / 10_000
            assert fill.fee == expected

    @settings(max_examples=80, deadline=None)
    @given(bar_series(), placements(), configs, st.integers(0, 2))
    def test_the_venue_and_the_receiver_agree_on_every_order(self, series, placed, config, delay):
        engine, mine, _, _ = run(series, placed, config, delay)
        venue = {o.client_order_id: o for o in engine.open_orders()}
        for client_order_id, order in mine.items():
            if client_order_id in venue:
                assert venue[client_order_id].filled_quantity == order.filled_quantity
                assert order.status.is_working
            elif order.status is not OrderStatus.SUBMITTED:  # an ack may still be held
                assert not order.status.is_working
