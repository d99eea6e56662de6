"""Risk: limits validation, check_order rules, fill-timing invariance, monotonicity, kill switch."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.actors import Accept as AcceptDecision
from tradewind.actors import (
    ClientOrderIds,
    DenyReason,
    Fill,
    FloatRefused,
    FxRates,
    InvalidLimits,
    KillSwitchDecision,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderFilled,
    OrderIntent,
    OrderRateWindow,
    OrderSubmitted,
    OrderType,
    Portfolio,
    RiskLimits,
    Side,
    TimeInForce,
    TradingState,
    check_cancel,
    check_order,
    kill_switch,
    orders_in_window,
    within_price_band,
)
from tradewind.actors import Deny as DenyDecision

from tests.strategies import ORDER_TEST_INSTRUMENTS, order_intents, risk_limits, tightened

D = Decimal
SECOND = 1_000_000_000
NOW = 100 * SECOND
INSTRUMENTS = ORDER_TEST_INSTRUMENTS
LAST = {"AAPL": D("100.00"), "ES": D("4000.00"), "SAP": D("50.00")}
FX = FxRates.from_mapping({("EUR", "USD"): "1.10"})

LOOSE = {
    "max_position": "1000",
    "max_order_notional": "1000000",
    "max_gross_exposure": "5000000",
    "max_orders_per_second": 10,
    "daily_loss_limit": "10000",
}


def limits(**changes: object) -> RiskLimits:
    return RiskLimits(**{**LOOSE, **changes})  # type: ignore[arg-type]


def intent(
    quantity: str = "10",
    side: Side = Side.BUY,
    instrument: str = "AAPL",
    price: str | None = "100.00",
) -> OrderIntent:
    return OrderIntent(
        strategy_id="s1",
        instrument=instrument,
        side=side,
        quantity=D(quantity),
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
        limit_price=None if price is None else D(price),
        time_in_force=TimeInForce.DAY,
    )


_ids = ClientOrderIds("s1")


def working(order_intent: OrderIntent, filled: str = "0") -> Order:
    """An ACCEPTED (or PARTIALLY_FILLED) order for `order_intent`."""
    order = Order.create(_ids.next(), order_intent, ts=1)
    cid = order.client_order_id
    order = order.apply(OrderSubmitted(client_order_id=cid, ts=2))
    order = order.apply(OrderAccepted(client_order_id=cid, ts=3, broker_order_id="B"))
    if D(filled):
        order = order.apply(
            OrderFilled(client_order_id=cid, ts=4, fill=fill_of(order, D(filled), "f-" + cid))
        )
    return order


def fill_of(
    order: Order, quantity: Decimal, execution_id: str, price: Decimal | None = None
) -> Fill:
    return Fill(
        execution_id=execution_id,
        client_order_id=order.client_order_id,
        instrument=order.intent.instrument,
        side=order.intent.side,
        quantity=quantity,
        price=price if price is not None else (order.intent.limit_price or D(1)),
        fee=D(0),
        fee_currency="USD",
        ts=4,
    )


def book(**positions: str) -> Portfolio:
    """A portfolio holding the given signed quantities, bought at the last price."""
    portfolio = Portfolio(INSTRUMENTS)
    for symbol, quantity in positions.items():
        q = D(quantity)
        portfolio.apply_fill(
            Fill(
                execution_id=f"pos-{symbol}",
                client_order_id="s0-00000001",
                instrument=symbol,
                side=Side.BUY if q > 0 else Side.SELL,
                quantity=abs(q),
                price=LAST[symbol],
                fee=D(0),
                fee_currency="USD",
                ts=1,
            )
        )
    return portfolio


def check(
    order_intent: OrderIntent,
    *,
    risk: RiskLimits | None = None,
    state: TradingState = TradingState.ACTIVE,
    portfolio: Portfolio | None = None,
    open_orders: tuple[Order, ...] = (),
    recent: tuple[int, ...] = (),
    last: dict[str, Decimal] | None = None,
    fx: FxRates = FX,
    **kw: object,
) -> AcceptDecision | DenyDecision:
    return check_order(
        risk or limits(),
        state,
        portfolio or book(),
        open_orders,
        order_intent,
        NOW,
        recent,
        LAST if last is None else last,
        INSTRUMENTS,
        fx=fx,
        **kw,  # type: ignore[arg-type]
    )


def reason(decision: AcceptDecision | DenyDecision) -> DenyReason | None:
    return None if isinstance(decision, AcceptDecision) else decision.reason


# ---------------------------------------------------------------- limits


class TestRiskLimits:
    def test_valid_limits_convert_to_decimal(self):
        risk = limits(max_portfolio_risk="0.25", price_band="0.05")
        assert (risk.max_position, risk.max_portfolio_risk, risk.price_band) == (
            D(1000),
            D("0.25"),
            D("0.05"),
        )

    @pytest.mark.parametrize(
        ("field", "value", "rule"),
        [
            ("max_position", "-5", "must be >= 0, got -5"),
            ("max_order_notional", "0", "must be > 0"),
            ("max_gross_exposure", "-1", "must be > 0"),
            ("max_portfolio_risk", "1.5", r"must be in \(0, 1\], got 1.5"),
            ("max_portfolio_risk", "0", r"must be in \(0, 1\]"),
            ("max_orders_per_second", 0, "must be > 0"),
            ("max_orders_per_second", True, "must be an int > 0"),
            ("max_orders_per_second", "5", "must be an int > 0"),
            ("daily_loss_limit", "0", "must be > 0"),
            ("daily_loss_limit", "lots", "not a decimal number"),
            ("price_band", "0", "must be > 0"),
            ("currency", "usd", "must be a currency code"),
            ("flatten_on_halt", "yes", "must be a bool"),
        ],
    )
    def test_invalid_field_is_named_with_its_rule(self, field, value, rule):
        with pytest.raises(InvalidLimits, match=rf"{field}: .*{rule}"):
            limits(**{field: value})

    def test_every_failing_field_is_named_in_one_message(self):
        with pytest.raises(InvalidLimits) as caught:
            limits(max_position="-1", max_portfolio_risk="1.5", max_orders_per_second=0)
        message = str(caught.value)
        assert message.startswith("risk limits: 3 problem(s)")
        assert all(
            name in message
            for name in ("max_position", "max_portfolio_risk", "max_orders_per_second")
        )

    def test_float_is_refused_naming_the_field(self):
        with pytest.raises(InvalidLimits, match=r"max_order_notional: float 1\.5 refused"):
            limits(max_order_notional=1.5)
        assert not issubclass(InvalidLimits, FloatRefused)

    def test_replace_is_a_validated_swap(self):
        risk = limits()
        assert risk.replace(max_position="5").max_position == D(5)
        with pytest.raises(InvalidLimits, match="max_position: must be >= 0"):
            risk.replace(max_position="-5")

    def test_replace_refuses_unknown_fields(self):
        with pytest.raises(InvalidLimits, match="unknown field"):
            limits().replace(max_leverage="2")

    def test_concentration_limit_is_a_share_of_gross(self):
        assert limits(max_portfolio_risk="0.2").max_instrument_exposure == D(1_000_000)

    @given(
        st.sampled_from(
            [
                ("max_position", st.integers(-(10**6), -1).map(D)),
                ("max_order_notional", st.integers(-(10**6), 0).map(D)),
                ("max_gross_exposure", st.integers(-(10**6), 0).map(D)),
                ("max_portfolio_risk", st.integers(101, 10**4).map(lambda n: D(n) / 100)),
                ("max_orders_per_second", st.integers(-100, 0)),
                ("daily_loss_limit", st.floats(allow_nan=False)),
                ("price_band", st.integers(-100, 0).map(D)),
            ]
        ).flatmap(lambda pair: st.tuples(st.just(pair[0]), pair[1]))
    )
    def test_every_validation_message_names_the_field(self, bad):
        field, value = bad
        with pytest.raises(InvalidLimits) as caught:
            limits(**{field: value})
        assert f"{field}: " in str(caught.value)


# ---------------------------------------------------------------- check_order


class TestCheckOrderGates:
    def test_an_ordinary_order_is_accepted(self):
        decision = check(intent())
        assert (decision, decision.accepted) == (AcceptDecision(), True)

    def test_halted_denies_everything(self):
        assert reason(check(intent(), state=TradingState.HALTED)) is DenyReason.TRADING_HALTED

    @pytest.mark.parametrize("state", list(TradingState))
    def test_cancels_always_pass(self, state):
        assert check_cancel(state).accepted

    def test_broker_disconnected_denies(self):
        decision = check(intent(), broker_connected=False)
        assert reason(decision) is DenyReason.BROKER_DISCONNECTED
        assert decision.accepted is False

    def test_store_unavailable_denies(self):
        assert reason(check(intent(), store_available=False)) is DenyReason.STORE_UNAVAILABLE

    def test_unknown_instrument_denies(self):
        assert reason(check(intent(instrument="MSFT"))) is DenyReason.UNKNOWN_INSTRUMENT

    def test_quantity_off_the_lot_denies(self):
        decision = check(intent(quantity="1.5"))
        assert reason(decision) is DenyReason.INVALID_INTENT
        assert isinstance(decision, DenyDecision)
        assert "lot size" in decision.detail

    def test_limit_off_the_tick_denies(self):
        decision = check(intent(instrument="ES", quantity="1", price="4000.10"))
        assert reason(decision) is DenyReason.INVALID_INTENT

    def test_market_order_without_a_last_price_denies(self):
        assert reason(check(intent(price=None), last={})) is DenyReason.NO_PRICE

    def test_price_band_without_a_last_price_denies(self):
        decision = check(intent(), risk=limits(price_band="0.05"), last={})
        assert reason(decision) is DenyReason.NO_PRICE

    def test_held_position_without_a_last_price_denies(self):
        decision = check(intent(), portfolio=book(ES="1"), last={"AAPL": D(100)})
        assert reason(decision) is DenyReason.NO_PRICE

    def test_foreign_instrument_without_fx_denies(self):
        decision = check_order(
            limits(),
            TradingState.ACTIVE,
            book(),
            (),
            intent(instrument="SAP", price="50.00"),
            NOW,
            (),
            LAST,
            INSTRUMENTS,
        )
        assert reason(decision) is DenyReason.NO_FX_RATE

    def test_foreign_instrument_with_an_unquoted_currency_denies(self):
        decision = check(
            intent(instrument="SAP", price="50.00"),
            fx=FxRates.from_mapping({("GBP", "USD"): "1.3"}),
        )
        assert reason(decision) is DenyReason.NO_FX_RATE

    def test_open_order_in_an_unknown_instrument_denies(self):
        stray = working(attrs.evolve(intent(), instrument="MSFT"))
        assert reason(check(intent(), open_orders=(stray,))) is DenyReason.UNKNOWN_INSTRUMENT


class TestCheckOrderLimits:
    def test_order_rate_counts_the_last_second(self):
        recent = (NOW - SECOND, NOW - 10, NOW)  # the first is just outside the window
        assert check(intent(), risk=limits(max_orders_per_second=3), recent=recent).accepted
        decision = check(intent(), risk=limits(max_orders_per_second=2), recent=recent)
        assert reason(decision) is DenyReason.MAX_ORDER_RATE

    def test_price_band_denies_a_fat_finger(self):
        decision = check(intent(price="106.00"), risk=limits(price_band="0.05"))
        assert reason(decision) is DenyReason.PRICE_BAND

    def test_price_band_edge_is_inside(self):
        assert check(intent(price="95.00"), risk=limits(price_band="0.05")).accepted

    def test_order_notional_applies_the_multiplier(self):
        es = intent(instrument="ES", quantity="5", price="4000.00")  # 5 * 4000 * 50
        assert check(es, risk=limits(max_order_notional="1000000")).accepted
        decision = check(es, risk=limits(max_order_notional="999999"))
        assert reason(decision) is DenyReason.MAX_ORDER_NOTIONAL

    def test_order_notional_converts_through_fx(self):
        sap = intent(instrument="SAP", quantity="10", price="50.00")  # 500 EUR = 550 USD
        assert check(sap, risk=limits(max_order_notional="550")).accepted
        assert reason(check(sap, risk=limits(max_order_notional="549"))) is (
            DenyReason.MAX_ORDER_NOTIONAL
        )

    def test_market_order_is_valued_at_the_last_price(self):
        decision = check(intent(price=None), risk=limits(max_order_notional="999"))
        assert reason(decision) is DenyReason.MAX_ORDER_NOTIONAL

    def test_max_position_counts_open_orders(self):
        pending = working(intent("30"))
        risk = limits(max_position="50")
        assert check(intent("20"), risk=risk, open_orders=(pending,)).accepted
        decision = check(intent("21"), risk=risk, open_orders=(pending,))
        assert reason(decision) is DenyReason.MAX_POSITION

    def test_working_orders_on_the_other_side_do_not_offset(self):
        # Netted, a resting sell made room for another buy: with both filled... the sell
        # can be canceled first, and the buys alone would make 200 of a limit of 100.
        risk = limits(max_position="100")
        bid = working(intent("100"))
        assert reason(check(intent("1"), risk=risk, open_orders=(bid,))) is DenyReason.MAX_POSITION
        ask = working(intent("100", Side.SELL, price="101.00"))
        decision = check(intent("1"), risk=risk, open_orders=(bid, ask))
        assert reason(decision) is DenyReason.MAX_POSITION

    def test_each_side_has_the_whole_position_limit(self):
        # Quoting both sides: 100 bid and 100 offered both fit a limit of 100.
        risk = limits(max_position="100")
        bid = working(intent("100"))
        assert check(
            intent("100", Side.SELL, price="101.00"), risk=risk, open_orders=(bid,)
        ).accepted
        decision = check(intent("101", Side.SELL, price="101.00"), risk=risk, open_orders=(bid,))
        assert reason(decision) is DenyReason.MAX_POSITION

    def test_exposure_takes_the_larger_side_of_an_instrument(self):
        # A bid of 4,000 does not offset an offer of 6,000: at worst the book is short
        # 6,000 (the bid canceled), not 2,000.
        risk = limits(max_gross_exposure="5000")
        bid = working(intent("40"))
        decision = check(intent("60", Side.SELL), risk=risk, open_orders=(bid,))
        assert reason(decision) is DenyReason.MAX_CONCENTRATION
        assert check(intent("50", Side.SELL), risk=risk, open_orders=(bid,)).accepted

    def test_terminal_orders_do_not_count(self):
        gone = working(intent("30"))
        cid = gone.client_order_id
        gone = gone.apply(OrderCancelRequested(client_order_id=cid, ts=5))
        gone = gone.apply(OrderCanceled(client_order_id=cid, ts=6))
        assert check(intent("50"), risk=limits(max_position="50"), open_orders=(gone,)).accepted

    def test_reducing_order_passes_a_breached_position_limit(self):
        risk = limits(max_position="5")
        held = book(AAPL="20")
        assert check(intent("5", Side.SELL), risk=risk, portfolio=held).accepted
        assert reason(check(intent("5"), risk=risk, portfolio=held)) is DenyReason.MAX_POSITION

    def test_concentration_limit(self):
        risk = limits(max_gross_exposure="10000", max_portfolio_risk="0.5")
        assert check(intent("50"), risk=risk).accepted  # 5000
        assert reason(check(intent("51"), risk=risk)) is DenyReason.MAX_CONCENTRATION

    def test_gross_exposure_counts_other_instruments_and_open_orders(self):
        risk = limits(max_gross_exposure="15000")
        other = book(SAP="-100")  # 5000 EUR = 5500 USD, short counts in absolute value
        pending = working(intent("40"))  # 4000 USD at its limit
        decision = check(intent("56"), risk=risk, portfolio=other, open_orders=(pending,))
        assert reason(decision) is DenyReason.MAX_GROSS_EXPOSURE
        assert check(intent("55"), risk=risk, portfolio=other, open_orders=(pending,)).accepted

    def test_open_market_order_is_valued_at_the_last_price(self):
        pending = working(intent("40", price=None))  # 4000 at the last price of 100
        risk = limits(max_gross_exposure="5000")
        assert check(intent("10"), risk=risk, open_orders=(pending,)).accepted
        assert reason(check(intent("11"), risk=risk, open_orders=(pending,))) is (
            DenyReason.MAX_CONCENTRATION
        )


class TestTradingStates:
    def test_reducing_admits_a_reducing_order(self):
        held = book(AAPL="10")
        assert check(intent("4", Side.SELL), state=TradingState.REDUCING, portfolio=held).accepted

    def test_reducing_refuses_an_increase(self):
        decision = check(intent("4"), state=TradingState.REDUCING, portfolio=book(AAPL="10"))
        assert reason(decision) is DenyReason.REDUCING_ONLY

    def test_reducing_refuses_a_flip(self):
        decision = check(
            intent("15", Side.SELL), state=TradingState.REDUCING, portfolio=book(AAPL="10")
        )
        assert reason(decision) is DenyReason.REDUCING_ONLY

    def test_reducing_counts_open_orders(self):
        closing = working(intent("10", Side.SELL))
        decision = check(
            intent("5", Side.SELL),
            state=TradingState.REDUCING,
            portfolio=book(AAPL="10"),
            open_orders=(closing,),
        )
        assert reason(decision) is DenyReason.REDUCING_ONLY

    def test_reducing_is_judged_on_the_orders_side(self):
        # Long 10 with a working buy of 20: a sell of 25 nets to 5 but makes a short of
        # 15 if the buy is canceled; a sell of 10 only ever closes.
        held = book(AAPL="10")
        bid = working(intent("20"))
        decision = check(
            intent("25", Side.SELL), state=TradingState.REDUCING, portfolio=held, open_orders=(bid,)
        )
        assert reason(decision) is DenyReason.REDUCING_ONLY
        assert check(
            intent("10", Side.SELL), state=TradingState.REDUCING, portfolio=held, open_orders=(bid,)
        ).accepted

    def test_daily_loss_refuses_new_risk_but_not_reduction(self):
        held = book(AAPL="10")
        lost = D(-10000)
        assert reason(check(intent("1"), portfolio=held, day_pnl=lost)) is (
            DenyReason.DAILY_LOSS_LIMIT
        )
        assert check(intent("1", Side.SELL), portfolio=held, day_pnl=lost).accepted
        assert check(intent("1"), portfolio=held, day_pnl=D("-9999.99")).accepted


# ---------------------------------------------------------------- helpers


class TestOrderRate:
    def test_window_is_open_at_the_start_and_closed_at_now(self):
        assert orders_in_window([0, 1, SECOND, SECOND + 1], now=SECOND) == 2

    def test_rate_window_prunes_old_times(self):
        window = OrderRateWindow()
        for ts in (0, SECOND // 2, SECOND, 2 * SECOND):
            window.record(ts)
        assert window.recent(SECOND) == (SECOND // 2, SECOND)
        assert window.count(2 * SECOND) == 1

    def test_price_band_is_symmetric(self):
        assert within_price_band(D(90), D(100), D("0.1"))
        assert not within_price_band(D("110.01"), D(100), D("0.1"))


class TestKillSwitch:
    def test_within_the_limit_nothing_happens(self):
        decision = kill_switch(limits(), TradingState.ACTIVE, D(-9999), book(), ())
        assert decision == KillSwitchDecision(
            halt=False,
            state=TradingState.ACTIVE,
            detail="day PnL -9999 is within the loss limit 10000",
        )

    def test_at_the_limit_it_halts_and_cancels_working_orders(self):
        live = [working(intent("1")), working(intent("2"), filled="1")]
        pending = working(intent("3"))
        pending = pending.apply(OrderCancelRequested(client_order_id=pending.client_order_id, ts=5))
        decision = kill_switch(
            limits(), TradingState.REDUCING, D(-10000), book(), [*reversed(live), pending]
        )
        assert (decision.halt, decision.state, decision.flatten) == (
            True,
            TradingState.HALTED,
            (),
        )
        assert decision.cancel == tuple(sorted(o.client_order_id for o in live))

    def test_flatten_closes_every_position_with_market_ioc(self):
        risk = limits(flatten_on_halt=True)
        decision = kill_switch(risk, TradingState.ACTIVE, D(-20000), book(AAPL="10", ES="-2"), ())
        assert [(i.instrument, i.side, i.quantity) for i in decision.flatten] == [
            ("AAPL", Side.SELL, D(10)),
            ("ES", Side.BUY, D(2)),
        ]
        assert {(i.order_type, i.time_in_force, i.tag) for i in decision.flatten} == {
            (OrderType.MARKET, TimeInForce.IOC, "kill-switch")
        }

    def test_flatten_intents_pass_risk_while_reducing(self):
        held = book(AAPL="10", ES="-2")
        risk = limits(flatten_on_halt=True)
        decision = kill_switch(risk, TradingState.ACTIVE, D(-20000), held, ())
        for flatten in decision.flatten:
            assert check(flatten, risk=risk, state=TradingState.REDUCING, portfolio=held).accepted

    def test_already_halted_does_not_trip_again(self):
        decision = kill_switch(limits(), TradingState.HALTED, D(-50000), book(AAPL="1"), ())
        assert (decision.halt, decision.cancel, decision.detail) == (False, (), "already halted")


# ---------------------------------------------------------------- properties


@st.composite
def books(draw: st.DrawFn) -> tuple[Portfolio, list[Order], dict[str, Decimal]]:
    """A portfolio, working orders and last prices for the test instruments."""
    last = {s: draw(st.integers(4, 4_000).map(lambda n: D(n) / 4)) for s in sorted(INSTRUMENTS)}
    portfolio = Portfolio(INSTRUMENTS)
    for n, symbol in enumerate(sorted(INSTRUMENTS)):
        quantity = draw(st.integers(-40, 40))
        if quantity:
            portfolio.apply_fill(
                Fill(
                    execution_id=f"p{n}",
                    client_order_id="s0-00000001",
                    instrument=symbol,
                    side=Side.BUY if quantity > 0 else Side.SELL,
                    quantity=D(abs(quantity)),
                    price=last[symbol],
                    fee=D(0),
                    fee_currency="USD",
                    ts=1,
                )
            )
    ids = ClientOrderIds("s1")
    orders = []
    for order_intent in draw(st.lists(order_intents(max_units=30), max_size=4)):
        order = Order.create(ids.next(), order_intent, ts=1)
        cid = order.client_order_id
        order = order.apply(OrderSubmitted(client_order_id=cid, ts=2))
        orders.append(order.apply(OrderAccepted(client_order_id=cid, ts=3, broker_order_id="B")))
    return portfolio, orders, last


@attrs.frozen
class Scenario:
    """Everything but the limits that `check_order` looks at."""

    state: TradingState
    portfolio: Portfolio
    orders: list[Order]
    last: dict[str, Decimal]
    intent: OrderIntent
    recent: tuple[int, ...]
    day_pnl: Decimal | None

    def decide(self, risk: RiskLimits, **changes: object) -> AcceptDecision | DenyDecision:
        s = attrs.evolve(self, **changes)  # type: ignore[arg-type]
        return check_order(
            risk,
            s.state,
            s.portfolio,
            s.orders,
            s.intent,
            NOW,
            s.recent,
            s.last,
            INSTRUMENTS,
            fx=FX,
            day_pnl=s.day_pnl,
        )


# ACTIVE is where most rules are reached; REDUCING and HALTED still get their share.
MOSTLY_ACTIVE = [TradingState.ACTIVE] * 4 + [TradingState.REDUCING, TradingState.HALTED]


@st.composite
def scenarios(draw: st.DrawFn, state: TradingState | None = None) -> Scenario:
    portfolio, orders, last = draw(books())
    return Scenario(
        state=draw(st.sampled_from(MOSTLY_ACTIVE)) if state is None else state,
        portfolio=portfolio,
        orders=orders,
        last=last,
        intent=draw(order_intents(max_units=20)),
        recent=tuple(draw(st.lists(st.integers(NOW - 2 * SECOND, NOW), max_size=25))),
        day_pnl=draw(st.none() | st.integers(-100_000, 100_000).map(D)),
    )


class TestRiskProperties:
    @given(risk_limits(), scenarios(), st.data())
    def test_a_fill_arriving_earlier_never_turns_an_accept_into_a_deny(self, risk, scenario, data):
        # A fill moves quantity from an order to the position on its own side (that
        # side's committed quantity and notional stay) and takes one worst case off the
        # other side: a decision can only become looser, and the position rule on the
        # fill's own side does not move at all.
        orders = scenario.orders or [working(intent("5"))]
        index = data.draw(st.integers(0, len(orders) - 1))
        order = orders[index]
        quantity = D(data.draw(st.integers(1, int(order.remaining_quantity))))
        price = order.intent.limit_price or scenario.last[order.intent.instrument]
        last = {**scenario.last, order.intent.instrument: price}  # the fill is the last trade
        fill = fill_of(order, quantity, "moved", price)
        filled_portfolio = scenario.portfolio.copy()
        filled_portfolio.apply_fill(fill)
        filled_orders = list(orders)
        filled_orders[index] = order.apply(
            OrderFilled(client_order_id=order.client_order_id, ts=5, fill=fill)
        )
        before = scenario.decide(risk, orders=orders, last=last)
        after = scenario.decide(risk, portfolio=filled_portfolio, orders=filled_orders, last=last)
        if before.accepted:
            assert after.accepted
        same_side = (order.intent.instrument, order.intent.side) == (
            scenario.intent.instrument,
            scenario.intent.side,
        )
        if same_side:
            position_rules = {DenyReason.MAX_POSITION, DenyReason.REDUCING_ONLY}
            assert (reason(before) in position_rules) == (reason(after) in position_rules)

    @given(risk_limits(), scenarios(), st.data())
    def test_tightening_any_limit_never_accepts_what_looser_limits_denied(
        self, loose, scenario, data
    ):
        tight = data.draw(tightened(loose))
        if scenario.decide(tight).accepted:
            assert scenario.decide(loose).accepted

    @given(risk_limits(), scenarios(TradingState.HALTED))
    def test_halted_accepts_nothing(self, risk, scenario):
        assert reason(scenario.decide(risk)) is DenyReason.TRADING_HALTED

    @given(risk_limits(), scenarios(TradingState.REDUCING))
    def test_reducing_accepts_only_what_moves_its_sides_committed_quantity_toward_zero(
        self, risk, scenario
    ):
        symbol, side = scenario.intent.instrument, scenario.intent.side
        before = scenario.portfolio.position(symbol).quantity + sum(
            (
                o.intent.signed_quantity
                for o in scenario.orders
                if o.intent.instrument == symbol and o.intent.side is side
            ),
            D(0),
        )
        after = before + scenario.intent.signed_quantity
        if scenario.decide(risk).accepted:
            assert abs(after) < abs(before)
            assert after * before >= 0
