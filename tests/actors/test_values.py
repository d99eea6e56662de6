"""Trading values: exact decimals, quantization, money, FX, event time."""

from __future__ import annotations

import datetime as _dt
import operator
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.actors import (
    CurrencyMismatch,
    DomainError,
    EventTime,
    FloatRefused,
    FxRate,
    FxRates,
    Instrument,
    Money,
    Rounding,
    Side,
    datetime_from_ns,
    ns_from_datetime,
    to_decimal,
)
from tradewind.actors._values import is_multiple_of, round_to_step

from tests.strategies import (
    aware_datetimes,
    finite_decimals,
    instruments,
    money,
    on_grid,
    steps,
    timestamps,
)

USD_STOCK = Instrument("AAPL", "USD", Decimal("0.01"))
ES = Instrument("ES", "USD", Decimal("0.25"), multiplier=Decimal(50))


class TestToDecimal:
    def test_decimal_passes_through_unchanged(self):
        value = Decimal("101.10")
        assert to_decimal(value, "price") is value

    def test_int_converts_exactly(self):
        assert to_decimal(10**30 + 1, "quantity") == Decimal("1000000000000000000000000000001")

    def test_string_keeps_its_exponent(self):
        assert to_decimal("101.10", "price").as_tuple() == Decimal("101.10").as_tuple()

    def test_string_with_surrounding_whitespace_is_accepted(self):
        assert to_decimal(" 1.5E-3\n", "price") == Decimal("0.0015")

    def test_float_is_refused_naming_the_field(self):
        with pytest.raises(FloatRefused, match=r"tick_size: float 0\.1"):
            to_decimal(0.1, "tick_size")

    def test_float_refusal_is_also_a_type_error(self):
        with pytest.raises(TypeError):
            to_decimal(1.0, "price")

    def test_bool_is_refused(self):
        with pytest.raises(DomainError, match="price: bool True"):
            to_decimal(True, "price")

    @pytest.mark.parametrize(
        "text",
        ["NaN", "nan", "inf", "-Infinity", "sNaN", "abc", "", "1_000", "0x10", "1.2.3", "1e"],
    )
    def test_non_numeric_strings_are_refused_naming_field_and_value(self, text):
        with pytest.raises(DomainError, match="amount: ") as info:
            to_decimal(text, "amount")
        assert repr(text) in str(info.value)

    @pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity")])
    def test_non_finite_decimals_are_refused(self, value):
        with pytest.raises(DomainError, match=r"volume: .* is not a finite number"):
            to_decimal(value, "volume")

    @pytest.mark.parametrize("value", [None, [1], b"1", 1j])
    def test_other_types_are_refused_with_their_type(self, value):
        with pytest.raises(DomainError, match=f"size: .* of type {type(value).__name__}"):
            to_decimal(value, "size")

    @given(st.decimals(allow_nan=False, allow_infinity=False))
    def test_string_form_round_trips_exactly(self, value):
        assert to_decimal(str(value), "price").as_tuple() == value.as_tuple()

    @given(st.integers())
    def test_any_int_is_exact(self, value):
        assert to_decimal(value, "quantity") == value


class TestSide:
    def test_buy_adds_and_sell_subtracts(self):
        assert (Side.BUY.sign, Side.SELL.sign) == (1, -1)

    def test_opposite_swaps_sides(self):
        assert (Side.BUY.opposite, Side.SELL.opposite) == (Side.SELL, Side.BUY)

    def test_values_are_the_agreed_strings(self):
        assert (Side("BUY"), Side("SELL")) == (Side.BUY, Side.SELL)


class TestRounding:
    @given(finite_decimals(places=4), st.sampled_from(Rounding))
    def test_decimal_mode_agrees_with_round_to_step(self, value, rounding):
        quantized = value.quantize(Decimal("0.01"), rounding=rounding.decimal_mode)
        assert quantized == round_to_step(value, Decimal("0.01"), rounding)


class TestRoundToStep:
    @pytest.mark.parametrize(
        ("value", "rounding", "expected"),
        [
            ("10.13", Rounding.DOWN, "10.00"),
            ("10.13", Rounding.UP, "10.25"),
            ("10.13", Rounding.NEAREST, "10.25"),
            ("10.125", Rounding.NEAREST, "10.00"),  # a tie goes to the even step (40)
            ("10.375", Rounding.NEAREST, "10.50"),  # a tie goes to the even step (42)
            ("-10.13", Rounding.DOWN, "-10.25"),
            ("-10.13", Rounding.UP, "-10.00"),
            ("-10.125", Rounding.NEAREST, "-10.00"),
            ("-0.1", Rounding.UP, "0.00"),
            ("10", Rounding.UP, "10.00"),
        ],
    )
    def test_rounds_in_the_named_direction(self, value, rounding, expected):
        result = round_to_step(Decimal(value), Decimal("0.25"), rounding)
        assert result.as_tuple() == Decimal(expected).as_tuple()

    def test_zero_is_never_negative(self):
        assert not round_to_step(Decimal("-0.001"), Decimal("0.01"), Rounding.UP).is_signed()

    def test_a_multiple_too_large_to_be_exact_is_refused(self):
        with pytest.raises(DomainError, match="cannot round"):
            round_to_step(Decimal("1E+100"), Decimal("1E-100"), Rounding.DOWN)

    @given(finite_decimals(places=6), steps(), st.sampled_from(Rounding))
    def test_result_is_on_the_grid_with_the_step_exponent(self, value, step, rounding):
        result = round_to_step(value, step, rounding)
        assert is_multiple_of(result, step)
        assert result.as_tuple().exponent == step.as_tuple().exponent

    @given(finite_decimals(places=6), steps())
    def test_direction_is_respected_and_within_one_step(self, value, step):
        down = round_to_step(value, step, Rounding.DOWN)
        up = round_to_step(value, step, Rounding.UP)
        nearest = round_to_step(value, step, Rounding.NEAREST)
        assert down <= value <= up
        assert up - down in {Decimal(0), step}
        assert abs(nearest - value) * 2 <= step

    @given(finite_decimals(places=6), steps(), st.sampled_from(Rounding))
    def test_rounding_is_idempotent(self, value, step, rounding):
        once = round_to_step(value, step, rounding)
        assert round_to_step(once, step, rounding) == once

    def test_is_multiple_of_is_false_for_an_impossible_division(self):
        assert not is_multiple_of(Decimal("1E+100"), Decimal("1E-100"))


class TestInstrumentValidation:
    def test_defaults_are_one_lot_no_limits_unit_multiplier(self):
        inst = Instrument("X", "USD", "0.01")
        assert (inst.lot_size, inst.min_quantity, inst.max_quantity, inst.multiplier) == (
            Decimal(1),
            Decimal(0),
            None,
            Decimal(1),
        )

    def test_float_tick_size_is_refused(self):
        with pytest.raises(FloatRefused, match="tick_size"):
            Instrument("X", "USD", 0.01)  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", ["tick_size", "lot_size", "multiplier"])
    @pytest.mark.parametrize("value", ["0", "-1"])
    def test_non_positive_steps_are_refused_naming_the_field(self, field, value):
        kwargs = {"symbol": "X", "currency": "USD", "tick_size": "0.01", field: value}
        with pytest.raises(DomainError, match=f"{field}: must be > 0"):
            Instrument(**kwargs)

    @pytest.mark.parametrize("field", ["lot_size", "min_quantity", "max_quantity", "multiplier"])
    def test_every_decimal_field_refuses_float(self, field):
        with pytest.raises(FloatRefused, match=field):
            Instrument("X", "USD", "0.01", **{field: 1.0})  # type: ignore[arg-type]

    def test_negative_min_quantity_is_refused(self):
        with pytest.raises(DomainError, match="min_quantity: must be >= 0"):
            Instrument("X", "USD", "0.01", min_quantity="-1")

    def test_max_below_min_is_refused(self):
        with pytest.raises(DomainError, match=r"max_quantity: must be >= min_quantity \(5\)"):
            Instrument("X", "USD", "0.01", min_quantity=5, max_quantity=4)

    @pytest.mark.parametrize("currency", ["usd", "U", "", "US D", "1USD"])
    def test_bad_currency_codes_are_refused(self, currency):
        with pytest.raises(DomainError, match="currency: "):
            Instrument("X", currency, "0.01")

    @pytest.mark.parametrize("symbol", ["", " X", "X ", 5])
    def test_bad_symbols_are_refused(self, symbol):
        with pytest.raises(DomainError, match="symbol: "):
            Instrument(symbol, "USD", "0.01")

    def test_instruments_are_frozen(self):
        with pytest.raises(AttributeError):
            USD_STOCK.tick_size = Decimal(1)  # type: ignore[misc]


class TestInstrumentQuantization:
    def test_buy_limit_rounds_down_to_the_tick(self):
        assert ES.limit_price(Side.BUY, "10.13") == Decimal("10.00")

    def test_sell_limit_rounds_up_to_the_tick(self):
        assert ES.limit_price(Side.SELL, "10.13") == Decimal("10.25")

    def test_explicit_rounding_overrides_the_side_default(self):
        assert ES.limit_price(Side.BUY, "10.13", Rounding.UP) == Decimal("10.25")

    @pytest.mark.parametrize("price", ["0", "-1"])
    def test_non_positive_limit_is_refused(self, price):
        with pytest.raises(DomainError, match="limit_price: must be > 0"):
            ES.limit_price(Side.SELL, price)

    def test_limit_that_rounds_to_zero_is_refused(self):
        with pytest.raises(DomainError, match=r"limit_price: 0.1 rounds to 0.00"):
            ES.limit_price(Side.BUY, "0.1")

    def test_round_price_takes_an_explicit_direction(self):
        assert ES.round_price("10.13", Rounding.NEAREST) == Decimal("10.25")

    def test_round_price_refuses_float(self):
        with pytest.raises(FloatRefused, match="price"):
            ES.round_price(10.13, Rounding.DOWN)  # type: ignore[arg-type]

    def test_round_quantity_rounds_down_by_default(self):
        inst = Instrument("X", "USD", "0.01", lot_size="100")
        assert inst.round_quantity(250) == Decimal(200)

    def test_round_quantity_can_round_up(self):
        inst = Instrument("X", "USD", "0.01", lot_size="0.001")
        assert inst.round_quantity("0.0011", Rounding.UP) == Decimal("0.002")

    def test_on_tick_and_on_lot(self):
        assert ES.is_on_tick(Decimal("10.75"))
        assert not ES.is_on_tick(Decimal("10.10"))
        assert ES.is_on_lot(Decimal(3))
        assert not ES.is_on_lot(Decimal("0.5"))

    def test_notional_includes_the_multiplier(self):
        assert ES.notional(Decimal("5000.25"), Decimal(2)) == Money("500025.00", "USD")

    @given(instruments(), on_grid(Decimal("0.0001"), 1, 10**9), st.sampled_from(Side))
    def test_limit_is_on_grid_and_never_more_aggressive(self, inst, price, side):
        try:
            limit = inst.limit_price(side, price)
        except DomainError:
            assert price < inst.tick_size  # only a buy below one tick can round to zero
            return
        assert inst.is_on_tick(limit)
        assert limit.as_tuple().exponent == inst.tick_size.as_tuple().exponent
        assert limit <= price if side is Side.BUY else limit >= price
        assert abs(limit - price) < inst.tick_size
        assert inst.limit_price(side, limit) == limit


class TestCheckQuantity:
    INST = Instrument("X", "USD", "0.01", lot_size="10", min_quantity="20", max_quantity="100")

    def test_valid_quantity_is_returned_as_decimal(self):
        assert self.INST.check_quantity(50 - 20) == Decimal(30)

    @pytest.mark.parametrize(
        ("quantity", "rule"),
        [
            ("0", "must be > 0"),
            ("-10", "must be > 0"),
            ("25", "not a multiple of lot size 10"),
            ("10", "below min_quantity 20"),
            ("110", "above max_quantity 100"),
        ],
    )
    def test_each_rule_is_named(self, quantity, rule):
        with pytest.raises(DomainError, match=f"qty: .*{rule}"):
            self.INST.check_quantity(quantity, field="qty")


class TestMoney:
    def test_same_currency_adds_and_subtracts(self):
        a, b = Money("10.50", "USD"), Money("0.25", "USD")
        assert (a + b, a - b) == (Money("10.75", "USD"), Money("10.25", "USD"))

    @pytest.mark.parametrize(
        "op", [operator.add, operator.sub, operator.lt, operator.le, operator.gt, operator.ge]
    )
    def test_currency_mismatch_raises(self, op):
        with pytest.raises(CurrencyMismatch, match="USD and EUR"):
            op(Money(1, "USD"), Money(1, "EUR"))

    def test_equality_across_currencies_is_false_not_an_error(self):
        assert Money(1, "USD") != Money(1, "EUR")

    def test_equal_amounts_with_different_exponents_are_equal_and_hash_alike(self):
        assert Money("1.0", "USD") == Money(1, "USD")
        assert hash(Money("1.0", "USD")) == hash(Money(1, "USD"))

    def test_ordering_within_one_currency(self):
        small, large = Money(1, "USD"), Money(2, "USD")
        assert small < large
        assert small <= large
        assert large > small
        assert large >= small

    def test_adding_a_number_is_a_type_error(self):
        with pytest.raises(TypeError):
            _ = Money(1, "USD") + Decimal(1)  # type: ignore[operator]

    def test_subtracting_a_number_is_a_type_error(self):
        with pytest.raises(TypeError):
            _ = Money(1, "USD") - 1  # type: ignore[operator]

    def test_scaling_by_decimal_and_int_either_side(self):
        m = Money("2.5", "USD")
        assert (m * Decimal(2), 3 * m) == (Money(5, "USD"), Money("7.5", "USD"))

    def test_scaling_by_float_is_refused(self):
        with pytest.raises(FloatRefused, match="factor"):
            _ = Money(1, "USD") * 1.5  # type: ignore[operator]

    @pytest.mark.parametrize("factor", [True, "2", Money(1, "USD")])
    def test_scaling_by_anything_else_is_a_type_error(self, factor):
        with pytest.raises(TypeError):
            _ = Money(1, "USD") * factor

    def test_negation_and_absolute_value(self):
        assert (-Money(2, "EUR"), abs(Money(-2, "EUR"))) == (Money(-2, "EUR"), Money(2, "EUR"))

    def test_total_of_nothing_is_zero(self):
        assert Money.total([], "USD") == Money.zero("USD")

    def test_total_refuses_a_foreign_item(self):
        with pytest.raises(CurrencyMismatch):
            Money.total([Money(1, "USD"), Money(1, "EUR")], "USD")

    def test_float_amount_is_refused(self):
        with pytest.raises(FloatRefused, match="amount"):
            Money(0.1, "USD")  # type: ignore[arg-type]

    def test_quantize_names_its_direction(self):
        m = Money("1.005", "USD")
        assert m.quantize("0.01", Rounding.DOWN) == Money("1.00", "USD")
        assert m.quantize("0.01", Rounding.UP) == Money("1.01", "USD")
        assert m.quantize("0.01", Rounding.NEAREST) == Money("1.00", "USD")

    def test_quantize_refuses_a_non_positive_quantum(self):
        with pytest.raises(DomainError, match="quantum: must be > 0"):
            Money(1, "USD").quantize("0", Rounding.DOWN)

    @given(money("USD"), money("USD"))
    def test_subtraction_undoes_addition_exactly(self, a, b):
        assert (a + b) - b == a

    @given(st.lists(money("EUR"), max_size=10))
    def test_total_equals_the_sum_of_amounts(self, items):
        assert Money.total(items, "EUR").amount == sum((m.amount for m in items), Decimal(0))


FX = FxRates.from_mapping({("EUR", "USD"): "1.0850", ("USD", "JPY"): "150.25"})


class TestFxRates:
    def test_direct_rate_converts_and_rounds_to_the_cent(self):
        assert FX.convert(Money(100, "EUR"), "USD") == Money("108.50", "USD")

    def test_inverse_rate_divides(self):
        assert FX.convert(Money("108.50", "USD"), "EUR") == Money("100.00", "EUR")

    def test_cross_rate_goes_through_a_common_currency(self):
        # 100 EUR * 1.0850 * 150.25 = 16302.125 JPY; half-even to the cent keeps .12
        assert FX.convert(Money(100, "EUR"), "JPY") == Money("16302.12", "JPY")

    def test_cross_rate_with_inverse_legs(self):
        # 16302.125 JPY / 150.25 / 1.0850 = 100 EUR exactly
        assert FX.convert(Money("16302.125", "JPY"), "EUR", quantum="0.0001") == Money(
            "100.0000", "EUR"
        )

    def test_rounding_is_stated_by_the_caller(self):
        m = Money(100, "EUR")
        down = FX.convert(m, "JPY", quantum=1, rounding=Rounding.DOWN)
        up = FX.convert(m, "JPY", quantum=1, rounding=Rounding.UP)
        assert (down, up) == (Money(16302, "JPY"), Money(16303, "JPY"))

    def test_same_currency_only_rounds(self):
        assert FX.convert(Money("1.234", "USD"), "USD") == Money("1.23", "USD")

    def test_unknown_pair_names_the_pair(self):
        with pytest.raises(CurrencyMismatch, match="no FX rate for GBP/USD"):
            FX.convert(Money(1, "GBP"), "USD")

    def test_rate_of_an_inverse_pair(self):
        assert FX.rate("USD", "EUR") * Decimal("1.0850") == pytest.approx(Decimal(1))
        assert FX.rate("USD", "USD") == 1

    def test_rate_of_an_unknown_pair_raises(self):
        with pytest.raises(CurrencyMismatch, match="CHF/JPY"):
            FX.rate("CHF", "JPY")

    def test_currencies_lists_every_quoted_currency(self):
        assert FX.currencies() == {"EUR", "USD", "JPY"}

    @pytest.mark.parametrize(
        "pairs", [[("EUR", "USD"), ("EUR", "USD")], [("EUR", "USD"), ("USD", "EUR")]]
    )
    def test_a_pair_quoted_twice_is_refused(self, pairs):
        with pytest.raises(DomainError, match="quoted more than once"):
            FxRates(FxRate(base, quote, "1.1") for base, quote in pairs)

    def test_a_currency_against_itself_is_refused(self):
        with pytest.raises(DomainError, match="USD/USD"):
            FxRate("USD", "USD", 1)

    @pytest.mark.parametrize("rate", ["0", "-1.1"])
    def test_non_positive_rate_is_refused(self, rate):
        with pytest.raises(DomainError, match="rate: must be > 0"):
            FxRate("EUR", "USD", rate)

    def test_float_rate_is_refused(self):
        with pytest.raises(FloatRefused, match="rate"):
            FxRate("EUR", "USD", 1.08)  # type: ignore[arg-type]

    def test_non_positive_quantum_is_refused(self):
        with pytest.raises(DomainError, match="quantum"):
            FX.convert(Money(1, "EUR"), "USD", quantum="-0.01")

    def test_table_is_order_independent(self):
        a = FxRates([FxRate("EUR", "USD", "1.1"), FxRate("USD", "JPY", "150")])
        b = FxRates([FxRate("USD", "JPY", "150"), FxRate("EUR", "USD", "1.1")])
        assert a == b
        assert hash(a) == hash(b)

    @given(
        money("EUR"),
        st.sampled_from(["USD", "JPY"]),
        st.sampled_from([Decimal("0.01"), Decimal(1), Decimal("0.0001")]),
    )
    def test_directions_bracket_nearest_within_one_quantum(self, m, target, quantum):
        down = FX.convert(m, target, quantum=quantum, rounding=Rounding.DOWN)
        near = FX.convert(m, target, quantum=quantum, rounding=Rounding.NEAREST)
        up = FX.convert(m, target, quantum=quantum, rounding=Rounding.UP)
        assert down.amount <= near.amount <= up.amount
        assert up.amount - down.amount in {Decimal(0), quantum}
        assert is_multiple_of(near.amount, quantum)

    @given(money("EUR"))
    def test_inverse_conversion_matches_division_rounded_once(self, m):
        only_usd_eur = FxRates.from_mapping({("USD", "EUR"): "0.92"})
        expected = round_to_step(m.amount / Decimal("0.92"), Decimal("0.01"), Rounding.NEAREST)
        assert only_usd_eur.convert(m, "USD").amount == expected


class TestEventTime:
    def test_orders_by_timestamp_then_sequence(self):
        assert EventTime(5, 9) < EventTime(6, 0) < EventTime(6, 1)

    def test_next_keeps_the_timestamp(self):
        assert EventTime(5, 1).next() == EventTime(5, 2)

    @pytest.mark.parametrize(
        ("ts", "seq", "field"), [(-1, 0, "ts"), (0, -1, "seq"), (True, 0, "ts"), ("1", 0, "ts")]
    )
    def test_invalid_fields_are_named(self, ts, seq, field):
        with pytest.raises(DomainError, match=f"{field}: "):
            EventTime(ts, seq)

    def test_from_datetime_is_exact_to_the_microsecond(self):
        moment = _dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=_dt.UTC)
        assert EventTime.from_datetime(moment, 3) == EventTime(1767323045678901000, 3)

    def test_naive_datetime_is_refused(self):
        with pytest.raises(DomainError, match="naive"):
            ns_from_datetime(_dt.datetime(2026, 1, 1))  # noqa: DTZ001 -- the naive case

    @given(aware_datetimes())
    def test_datetime_round_trips(self, moment):
        assert EventTime.from_datetime(moment).to_datetime() == moment

    @given(timestamps(min_value=0))
    def test_ns_round_trips_to_the_microsecond(self, ts):
        assert ns_from_datetime(datetime_from_ns(ts)) == ts - ts % 1000

    @given(st.lists(st.tuples(timestamps(), st.integers(0, 5)), min_size=2, max_size=20))
    def test_order_matches_ts_then_seq(self, pairs):
        times = [EventTime(ts, seq) for ts, seq in pairs]
        assert [(t.ts, t.seq) for t in sorted(times)] == sorted(pairs)


class TestPublicSurface:
    @pytest.mark.parametrize(
        ("module", "names"),
        [
            (
                "_values",
                (
                    "DecimalLike EventTime FxRate FxRates Instrument Money Rounding Side "
                    "datetime_from_ns ns_from_datetime to_decimal"
                ),
            ),
            (
                "_marketdata",
                "Bar BarKey BarSequencer BarStatus SequencerStatistics SeriesKey Tick",
            ),
            ("_calendar", "Session SessionTransition TradingCalendar TransitionKind"),
            (
                "_errors",
                "CurrencyMismatch DomainError FloatRefused InvalidCalendar InvalidMarketData",
            ),
        ],
    )
    def test_names_are_re_exported_from_the_package(self, module, names):
        import importlib

        import tradewind.actors

        private = importlib.import_module(f"tradewind.actors.{module}")
        for name in names.split():
            assert getattr(tradewind.actors, name) is getattr(private, name)
