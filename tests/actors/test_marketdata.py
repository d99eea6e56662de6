"""Market data: validated bars and ticks, named constructors, the bar sequencer."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.actors import (
    Bar,
    BarSequencer,
    BarStatus,
    FloatRefused,
    Instrument,
    InvalidMarketData,
    Rounding,
    SequencerStatistics,
    Tick,
)
from tradewind.actors._marketdata import parse_timestamp

from tests.strategies import bars, instrument_and_bar, instruments, on_grid, ticks, timestamps

ES = Instrument("ES", "USD", Decimal("0.25"), multiplier=Decimal(50))
AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
KNOWN = {"ES": ES, "AAPL": AAPL}
ROW = {
    "instrument": "ES",
    "timeframe": "1m",
    "ts": "1767225600000000000",
    "open": "5000.25",
    "high": "5001.00",
    "low": "4999.50",
    "close": "5000.75",
    "volume": "1234.5",
}


def bar_from(**changes: str) -> Bar:
    row = {**ROW, **changes}
    return Bar.from_strings(**row, instruments=KNOWN)


class TestBarFromStrings:
    def test_fields_become_exact_decimals(self):
        bar = bar_from()
        assert bar.high.as_tuple() == Decimal("5001.00").as_tuple()
        assert (bar.ts, bar.volume) == (1767225600000000000, Decimal("1234.5"))

    def test_surrounding_whitespace_is_ignored(self):
        bar = bar_from(instrument=" ES ", ts=" 5 ", open=" 5000.25 ")
        assert (bar.instrument, bar.ts, bar.open) == ("ES", 5, Decimal("5000.25"))

    def test_natural_key_and_series(self):
        bar = bar_from()
        assert bar.key == ("ES", "1m", 1767225600000000000)
        assert bar.series == ("ES", "1m")

    def test_a_single_instrument_may_stand_for_the_table(self):
        row = {**ROW, "instrument": "AAPL", "open": "1.01", "high": "1.02"}
        row.update(low="1.00", close="1.01")
        assert Bar.from_strings(**row, instruments=AAPL).instrument == "AAPL"

    @pytest.mark.parametrize(
        ("changes", "field", "rule"),
        [
            ({"instrument": "NQ"}, "instrument", "unknown instrument"),
            ({"timeframe": "minute"}, "timeframe", "count and a unit"),
            ({"timeframe": "0m"}, "timeframe", "count and a unit"),
            ({"ts": "-5"}, "ts", "non-negative int"),
            ({"ts": "2026-01-01"}, "ts", "non-negative int"),
            ({"open": "abc"}, "open", "finite decimal number"),
            ({"close": "NaN"}, "close", "finite decimal number"),
            ({"high": "inf"}, "high", "finite decimal number"),
            ({"volume": ""}, "volume", "finite decimal number"),
            ({"open": "0", "low": "0"}, "open", "price must be > 0"),
            ({"low": "-1"}, "low", "price must be > 0"),
            ({"high": "5000.50"}, "high", r"must be >= max\(open, close\) = 5000.75"),
            ({"low": "5000.50"}, "low", r"must be <= min\(open, close\) = 5000.25"),
            ({"volume": "-1"}, "volume", "must be >= 0"),
            ({"open": "5000.30"}, "open", r"not on the tick of ES \(0.25\)"),
            ({"close": "5000.80"}, "close", "not on the tick"),
        ],
    )
    def test_each_rule_names_field_value_and_rule(self, changes, field, rule):
        with pytest.raises(InvalidMarketData, match=rule) as info:
            bar_from(**changes)
        assert info.value.field == field
        assert str(info.value).startswith(f"{field}=")

    def test_the_failing_value_is_kept(self):
        with pytest.raises(InvalidMarketData) as info:
            bar_from(open="abc")
        assert (info.value.value, info.value.rule) == ("abc", "must be a finite decimal number")

    def test_a_single_instrument_with_another_symbol_is_unknown(self):
        with pytest.raises(InvalidMarketData, match="unknown instrument"):
            Bar.from_strings(**ROW, instruments=AAPL)

    def test_invalid_market_data_is_a_value_error(self):
        with pytest.raises(ValueError, match="unknown instrument"):
            bar_from(instrument="XX")

    @given(instrument_and_bar())
    def test_any_valid_bar_round_trips_through_its_text(self, pair):
        inst, bar = pair
        text = {f.name: str(getattr(bar, f.name)) for f in attrs.fields(Bar)}
        rebuilt = Bar.from_strings(**text, instruments=inst)
        assert rebuilt == bar
        assert rebuilt.close.as_tuple() == bar.close.as_tuple()

    @given(instrument_and_bar(), st.integers(1, 1000))
    def test_a_high_below_open_or_close_is_always_refused(self, pair, steps_below):
        inst, bar = pair
        high = max(bar.open, bar.close) - steps_below * inst.tick_size
        with pytest.raises(InvalidMarketData) as info:
            Bar.from_raw(
                bar.instrument,
                bar.timeframe,
                bar.ts,
                bar.open,
                high,
                bar.low,
                bar.close,
                bar.volume,
                instruments=inst,
            )
        assert info.value.field == "high"

    @given(instrument_and_bar(), st.integers(1, 9))
    def test_a_close_off_the_tick_is_always_refused(self, pair, tenths):
        inst, bar = pair
        off = bar.close + inst.tick_size * tenths / 10
        high = max(bar.high, inst.round_price(off, Rounding.UP))
        with pytest.raises(InvalidMarketData, match="not on the tick") as info:
            Bar.from_raw(
                bar.instrument,
                bar.timeframe,
                bar.ts,
                bar.open,
                high,
                bar.low,
                off,
                bar.volume,
                instruments=inst,
            )
        assert (info.value.field, info.value.value) == ("close", off)


class TestBarFromRaw:
    def test_ints_and_decimals_are_accepted(self):
        bar = Bar.from_raw("ES", "1d", 0, 5000, 5001, Decimal(4999), 5000, 0, instruments=KNOWN)
        assert bar.open == Decimal(5000)

    def test_float_price_is_refused_as_a_float(self):
        with pytest.raises(FloatRefused, match="open"):
            Bar.from_raw("ES", "1d", 0, 5000.0, 5001, 4999, 5000, 0, instruments=KNOWN)  # type: ignore[arg-type]

    @pytest.mark.parametrize("ts", [-1, True, "5"])
    def test_a_timestamp_must_be_a_non_negative_int(self, ts):
        with pytest.raises(InvalidMarketData, match="non-negative int") as info:
            Bar.from_raw("ES", "1d", ts, 5000, 5001, 4999, 5000, 0, instruments=KNOWN)
        assert info.value.field == "ts"

    @pytest.mark.parametrize("symbol", ["", " ES"])
    def test_a_blank_or_padded_symbol_is_refused_by_the_value_itself(self, symbol):
        with pytest.raises(InvalidMarketData) as info:
            Bar(symbol, "1d", 0, 1, 1, 1, 1, 0)
        assert info.value.field == "instrument"


class TestParseTimestamp:
    @pytest.mark.parametrize(("value", "expected"), [("0", 0), (" 42 ", 42), (7, 7)])
    def test_accepts_digits_and_non_negative_ints(self, value, expected):
        assert parse_timestamp(value) == expected

    @pytest.mark.parametrize("value", ["", "1.5", "+1", "-1", "1e9", -1, False])
    def test_refuses_anything_else_naming_the_field(self, value):
        with pytest.raises(InvalidMarketData) as info:
            parse_timestamp(value, field="opened_at")
        assert info.value.field == "opened_at"

    @given(timestamps(min_value=0, max_value=2**63))
    def test_digits_round_trip(self, ts):
        assert parse_timestamp(str(ts)) == ts


class TestTick:
    def test_from_strings_is_exact(self):
        tick = Tick.from_strings("AAPL", "17", "187.10", "100", instruments=KNOWN)
        assert tick == Tick("AAPL", 17, Decimal("187.10"), Decimal(100))
        assert tick.price.as_tuple() == Decimal("187.10").as_tuple()

    @pytest.mark.parametrize(
        ("args", "field", "rule"),
        [
            (("MSFT", "1", "1.00", "1"), "instrument", "unknown instrument"),
            (("AAPL", "x", "1.00", "1"), "ts", "non-negative int"),
            (("AAPL", "1", "0", "1"), "price", "must be > 0"),
            (("AAPL", "1", "-1.00", "1"), "price", "must be > 0"),
            (("AAPL", "1", "1.001", "1"), "price", "not on the tick"),
            (("AAPL", "1", "NaN", "1"), "price", "finite decimal"),
            (("AAPL", "1", "1.00", "-1"), "size", "must be >= 0"),
            (("AAPL", "1", "1.00", "inf"), "size", "finite decimal"),
        ],
    )
    def test_each_rule_names_its_field(self, args, field, rule):
        with pytest.raises(InvalidMarketData, match=rule) as info:
            Tick.from_strings(*args, instruments=KNOWN)
        assert info.value.field == field

    def test_float_size_is_refused(self):
        with pytest.raises(FloatRefused, match="size"):
            Tick.from_raw("AAPL", 1, "1.00", 1.5, instruments=KNOWN)  # type: ignore[arg-type]

    @given(instruments().flatmap(lambda inst: st.tuples(st.just(inst), ticks(inst))))
    def test_any_valid_tick_round_trips_through_its_text(self, pair):
        inst, tick = pair
        rebuilt = Tick.from_strings(
            tick.instrument, str(tick.ts), str(tick.price), str(tick.size), instruments=inst
        )
        assert rebuilt == tick


def make_bar(ts: int, close: str = "5000.00", instrument: str = "ES", timeframe: str = "1m") -> Bar:
    return Bar(instrument, timeframe, ts, close, close, close, close, "1")


class TestBarSequencer:
    def test_first_bar_of_a_series_is_new(self):
        assert BarSequencer().offer(make_bar(1)) is BarStatus.NEW

    def test_same_key_same_values_is_a_duplicate(self):
        seq = BarSequencer()
        seq.offer(make_bar(1))
        assert seq.offer(make_bar(1)) is BarStatus.DUPLICATE

    def test_same_key_different_values_is_a_conflict(self):
        seq = BarSequencer()
        seq.offer(make_bar(1))
        assert seq.offer(make_bar(1, close="5000.25")) is BarStatus.CONFLICT

    def test_an_older_bar_is_out_of_order(self):
        seq = BarSequencer()
        seq.offer(make_bar(2))
        assert seq.offer(make_bar(1)) is BarStatus.OUT_OF_ORDER

    def test_a_rejected_bar_does_not_replace_the_last(self):
        seq = BarSequencer()
        seq.offer(make_bar(2))
        seq.offer(make_bar(2, close="1.00"))
        seq.offer(make_bar(1))
        assert seq.last("ES", "1m") == make_bar(2)

    def test_series_are_independent_per_instrument_and_timeframe(self):
        seq = BarSequencer()
        seq.offer(make_bar(5))
        statuses = [
            seq.offer(make_bar(1, instrument="NQ")),
            seq.offer(make_bar(1, timeframe="5m")),
        ]
        assert statuses == [BarStatus.NEW, BarStatus.NEW]

    def test_classify_records_nothing(self):
        seq = BarSequencer()
        assert seq.classify(make_bar(1)) is BarStatus.NEW
        assert seq.statistics() == SequencerStatistics(0, 0, 0, 0, 0)
        assert seq.last("ES", "1m") is None

    def test_statistics_count_each_kind(self):
        seq = BarSequencer()
        for bar in [make_bar(1), make_bar(2), make_bar(2), make_bar(2, "1.00"), make_bar(1)]:
            seq.offer(bar)
        stats = seq.statistics()
        assert stats == SequencerStatistics(
            new=2, duplicate=1, conflict=1, out_of_order=1, series=1
        )
        assert (stats.total, stats.rejected) == (5, 2)

    def test_statistics_are_a_frozen_snapshot(self):
        seq = BarSequencer()
        stats = seq.statistics()
        seq.offer(make_bar(1))
        assert stats.new == 0
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            stats.new = 5  # type: ignore[misc]

    def test_only_new_is_accepted(self):
        assert [s for s in BarStatus if s.accepted] == [BarStatus.NEW]

    def test_resume_continues_after_the_stored_bar(self):
        seq = BarSequencer()
        seq.resume(make_bar(10))
        assert [seq.offer(make_bar(t)) for t in (9, 10, 11)] == [
            BarStatus.OUT_OF_ORDER,
            BarStatus.DUPLICATE,
            BarStatus.NEW,
        ]

    def test_resume_counts_nothing(self):
        seq = BarSequencer()
        seq.resume([make_bar(10), make_bar(3, instrument="NQ")])
        assert seq.statistics() == SequencerStatistics(0, 0, 0, 0, series=2)

    def test_resume_never_moves_a_series_backwards(self):
        seq = BarSequencer()
        seq.offer(make_bar(10))
        seq.resume(make_bar(5))
        assert seq.last("ES", "1m") == make_bar(10)

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["ES", "NQ"]),
                st.sampled_from(["1m", "1h"]),
                st.integers(0, 30),
                st.booleans(),
            ),
            max_size=80,
        )
    )
    def test_random_stream_accepts_strictly_increasing_bars_and_counts_add_up(self, stream):
        seq = BarSequencer()
        accepted: dict[tuple[str, str], list[int]] = {}
        for instrument, timeframe, ts, variant in stream:
            bar = make_bar(ts, "5000.25" if variant else "5000.00", instrument, timeframe)
            before = seq.last(instrument, timeframe)
            status = seq.offer(bar)
            if status.accepted:
                accepted.setdefault(bar.series, []).append(ts)
            elif status is BarStatus.DUPLICATE:
                assert bar == before
            elif status is BarStatus.CONFLICT:
                assert before is not None
                assert (bar.key, bar != before) == (before.key, True)
            else:
                assert before is not None
                assert bar.ts < before.ts
        for series in accepted.values():
            assert series == sorted(set(series))
        stats = seq.statistics()
        assert stats.total == len(stream)
        assert stats.new == sum(len(s) for s in accepted.values())
        assert stats.series == len(accepted)

    @given(
        st.lists(st.integers(0, 50), min_size=1, max_size=40, unique=True),
        st.randoms(use_true_random=False),
        st.integers(0, 20),
    )
    def test_shuffled_stream_with_duplicates_keeps_a_running_maximum(self, times, rng, repeats):
        stream = [make_bar(t) for t in times]
        stream += [make_bar(rng.choice(times)) for _ in range(repeats)]
        rng.shuffle(stream)
        seq = BarSequencer()
        statuses = [seq.offer(bar) for bar in stream]
        running_max = -1
        for bar, status in zip(stream, statuses, strict=True):
            expected_new = bar.ts > running_max
            assert status.accepted == expected_new
            running_max = max(running_max, bar.ts)
        assert seq.last("ES", "1m") == make_bar(max(times))
        assert BarStatus.CONFLICT not in statuses

    @given(st.lists(bars(ES, timeframe="1m"), max_size=30))
    def test_a_sorted_replay_after_resume_accepts_only_later_bars(self, stream):
        ordered = sorted({b.ts: b for b in stream}.values(), key=lambda b: b.ts)
        cut = len(ordered) // 2
        seq = BarSequencer()
        if cut:
            seq.resume(ordered[cut - 1])
        statuses = [seq.offer(bar) for bar in ordered]
        assert statuses[cut:] == [BarStatus.NEW] * (len(ordered) - cut)
        assert BarStatus.NEW not in statuses[:cut]


class TestStrategies:
    @given(instrument_and_bar())
    def test_generated_bars_are_on_their_tick(self, pair):
        inst, bar = pair
        assert all(inst.is_on_tick(p) for p in (bar.open, bar.high, bar.low, bar.close))

    @given(on_grid(Decimal("0.25")))
    def test_on_grid_keeps_the_step_exponent(self, value):
        assert value.as_tuple().exponent == -2
