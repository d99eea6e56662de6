"""Market-data sources: CSV parsing (exact decimals, every bad row reported with file:line
and reason, good rows all delivered) and the synthetic generator (seeded, always valid)."""

from __future__ import annotations

import datetime as _dt
import itertools
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tradewind.actors import BarSequencer, BarStatus, Instrument, InvalidMarketData
from tradewind.actors._sources import (
    BarSource,
    CsvBarSource,
    InvalidBarFile,
    SourceBar,
    SourceItem,
    SourceRejection,
    SyntheticBarSource,
    format_csv_row,
    parse_csv_line,
    parse_csv_ts,
    write_bars_csv,
)
from tradewind.actors._synthetic import synthetic_bars, timeframe_ns

from tests.strategies import bars as bar_values
from tests.strategies import instruments as instrument_values
from tests.strategies import timestamps

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
MSFT = Instrument("MSFT", "USD", Decimal("0.01"))
INSTRUMENTS = {"AAPL": AAPL, "MSFT": MSFT}
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
MINUTE = 60 * 10**9
HEADER = "ts,instrument,open,high,low,close,volume\n"
DATA = Path(__file__).resolve().parents[2] / "docs" / "examples" / "data"


async def collect(source: BarSource, skip: int = 0) -> list[SourceItem]:
    return [item async for item in source.items(skip=skip)]


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class TestCsvParsing:
    async def test_prices_parse_to_exact_decimals(self, tmp_path: Path) -> None:
        path = write(tmp_path, HEADER + f"{T0},AAPL,101.10,101.50,100.90,101.20,1500.000\n")
        items = await collect(CsvBarSource(path, INSTRUMENTS))
        assert len(items) == 1
        item = items[0]
        assert isinstance(item, SourceBar)
        assert item.bar.open == Decimal("101.10")
        assert str(item.bar.open) == "101.10"
        assert str(item.bar.volume) == "1500.000"
        assert item.location == "bars.csv:2"
        assert item.bar.timeframe == "1m"

    async def test_iso_timestamps_are_utc(self, tmp_path: Path) -> None:
        text = (
            HEADER
            + "2026-01-01T00:01:00Z,AAPL,1,1,1,1,0\n2026-01-01T01:02:00+01:00,AAPL,1,1,1,1,0\n"
        )
        items = await collect(CsvBarSource(write(tmp_path, text), INSTRUMENTS))
        assert [i.bar.ts for i in items if isinstance(i, SourceBar)] == [
            T0 + MINUTE,
            T0 + 2 * MINUTE,
        ]

    def test_naive_iso_timestamp_is_taken_as_utc(self) -> None:
        assert parse_csv_ts("2026-01-01T00:00:00") == T0

    def test_timestamp_before_the_epoch_is_refused(self) -> None:
        with pytest.raises(InvalidMarketData, match="1970"):
            parse_csv_ts("1969-12-31T23:59:00Z")

    async def test_timeframe_is_set_by_the_source(self, tmp_path: Path) -> None:
        path = write(tmp_path, HEADER + f"{T0},AAPL,1,1,1,1,0\n")
        items = await collect(CsvBarSource(path, INSTRUMENTS, timeframe="5m"))
        assert isinstance(items[0], SourceBar)
        assert items[0].bar.timeframe == "5m"

    async def test_blank_lines_are_skipped_and_line_numbers_kept(self, tmp_path: Path) -> None:
        text = HEADER + f"\n{T0},AAPL,1,1,1,1,0\n\n{T0},XXX,1,1,1,1,0\n"
        items = await collect(CsvBarSource(write(tmp_path, text), INSTRUMENTS))
        assert [i.location for i in items] == ["bars.csv:3", "bars.csv:5"]

    async def test_windows_line_endings_are_accepted(self, tmp_path: Path) -> None:
        path = tmp_path / "crlf.csv"
        path.write_bytes((HEADER + f"{T0},AAPL,1.5,2,1,1.5,3\n").replace("\n", "\r\n").encode())
        items = await collect(CsvBarSource(path, INSTRUMENTS))
        assert isinstance(items[0], SourceBar)
        assert items[0].bar.volume == Decimal(3)


class TestCsvTimestamps:
    @pytest.mark.parametrize("ts", ["\u00b2", "\uff11\uff12\uff13", "\u0661\u0662", "12\u00b3"])
    def test_only_ascii_digits_are_nanoseconds(self, ts: str) -> None:
        # All are `isdigit()`; int() raises on the superscripts, reads fullwidth 123 as 123.
        item = parse_csv_line(f"{ts},AAPL,1,1,1,1,0", "bars.csv:9", INSTRUMENTS, "1m")
        assert isinstance(item, SourceRejection)
        assert (item.location, item.field, item.value) == ("bars.csv:9", "ts", ts)
        assert item.rule == "must be int nanoseconds since the epoch or ISO-8601 UTC"

    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("2026-01-01T00:00:00.0000001Z", T0 + 100),
            ("2026-01-01T00:00:00.0000009Z", T0 + 900),
            ("2026-01-01T00:00:00.123456789Z", T0 + 123_456_789),
            ("2026-01-01T00:00:00.5", T0 + 500_000_000),
            ("2026-01-01T00:00:00,25Z", T0 + 250_000_000),
            ("2026-01-01T01:00:00.000000001+01:00", T0 + 1),
            ("20260101T000000.000001Z", T0 + 1_000),
        ],
    )
    def test_fractional_seconds_are_exact_to_the_nanosecond(self, text: str, ns: int) -> None:
        assert parse_csv_ts(text) == ns

    def test_more_than_nine_fractional_digits_are_refused(self) -> None:
        with pytest.raises(InvalidMarketData, match="10 fractional digits; at most 9") as info:
            parse_csv_ts("2026-01-01T00:00:00.0000000001Z")
        assert info.value.field == "ts"

    @pytest.mark.parametrize(
        "text", ["2026-01-01T00:00:00+01:00:00.5", "2026-01-01T00:00:00+00:00:00.0000001"]
    )
    def test_a_fraction_on_the_utc_offset_is_refused(self, text: str) -> None:
        with pytest.raises(InvalidMarketData, match="not the UTC offset"):
            parse_csv_ts(text)

    def test_two_fractions_are_refused(self) -> None:
        with pytest.raises(InvalidMarketData, match="at most one fraction"):
            parse_csv_ts("2026-01-01T00:00:00.5+01:00:00.5")

    @given(ts=timestamps(), digits=st.integers(1, 9))
    def test_iso_text_reads_back_its_nanoseconds(self, ts: int, digits: int) -> None:
        seconds, ns = divmod(ts, 10**9)
        ns -= ns % 10 ** (9 - digits)  # what `digits` fractional digits can hold
        moment = _dt.datetime.fromtimestamp(seconds, _dt.UTC)
        text = f"{moment:%Y-%m-%dT%H:%M:%S}.{ns:09d}"[: 20 + digits] + "Z"
        assert parse_csv_ts(text) == seconds * 10**9 + ns

    async def test_rows_apart_by_less_than_a_microsecond_are_distinct_bars(
        self, tmp_path: Path
    ) -> None:
        text = (
            HEADER
            + "2026-01-01T00:00:00.0000001Z,AAPL,1,1,1,1,0\n"
            + "2026-01-01T00:00:00.0000009Z,AAPL,1,1,1,1,0\n"
        )
        items = await collect(CsvBarSource(write(tmp_path, text), INSTRUMENTS))
        sequencer = BarSequencer()
        bars = [i.bar for i in items if isinstance(i, SourceBar)]
        assert [b.ts for b in bars] == [T0 + 100, T0 + 900]
        assert [sequencer.offer(b) for b in bars] == [BarStatus.NEW, BarStatus.NEW]


class TestCsvRejections:
    @pytest.mark.parametrize(
        ("row", "field", "rule"),
        [
            (f"{T0},AAPL,1,2,1", "row", "expected 7 comma-separated columns, got 5"),
            (f"{T0},AAPL,NaN,2,1,1,0", "open", "must be a finite decimal number"),
            (f"{T0},AAPL,abc,2,1,1,0", "open", "must be a finite decimal number"),
            (f"{T0},AAPL,-1,2,1,1,0", "open", "price must be > 0"),
            (f"{T0},AAPL,2,1,3,2,0", "high", "must be >= max(open, close) = 2"),
            (f"{T0},AAPL,2,3,2.5,2,0", "low", "must be <= min(open, close) = 2"),
            (f"{T0},XXX,1,1,1,1,0", "instrument", "unknown instrument"),
            (f"{T0},AAPL,1.001,1.001,1.001,1.001,0", "open", "not on the tick of AAPL (0.01)"),
            (f"{T0},AAPL,1,1,1,1,-5", "volume", "must be >= 0"),
            (
                "yesterday,AAPL,1,1,1,1,0",
                "ts",
                "must be int nanoseconds since the epoch or ISO-8601 UTC",
            ),
        ],
    )
    def test_each_bad_row_names_field_and_rule(self, row: str, field: str, rule: str) -> None:
        item = parse_csv_line(row, "bars.csv:9", INSTRUMENTS, "1m")
        assert isinstance(item, SourceRejection)
        assert (item.location, item.field, item.rule) == ("bars.csv:9", field, rule)
        assert item.reason.startswith(f"{field}=")

    async def test_bad_rows_do_not_stop_good_rows(self, tmp_path: Path) -> None:
        text = (
            HEADER
            + "\n".join(
                [
                    f"{T0},AAPL,1,1,1,1,0",
                    f"{T0},AAPL,NaN,1,1,1,0",
                    f"{T0 + MINUTE},AAPL,1,1,1",
                    f"{T0 + MINUTE},AAPL,2,2,2,2,0",
                ]
            )
            + "\n"
        )
        items = await collect(CsvBarSource(write(tmp_path, text), INSTRUMENTS))
        kinds = [(type(i).__name__, i.location) for i in items]
        assert kinds == [
            ("SourceBar", "bars.csv:2"),
            ("SourceRejection", "bars.csv:3"),
            ("SourceRejection", "bars.csv:4"),
            ("SourceBar", "bars.csv:5"),
        ]

    async def test_bundled_bad_file_reports_every_bad_line(self) -> None:
        source = CsvBarSource(DATA / "bad_bars.csv", INSTRUMENTS)
        items = await collect(source)
        rejected = {i.location: i.field for i in items if isinstance(i, SourceRejection)}
        assert rejected == {
            "bad_bars.csv:4": "row",
            "bad_bars.csv:5": "open",
            "bad_bars.csv:6": "low",
            "bad_bars.csv:8": "high",
            "bad_bars.csv:9": "instrument",
        }
        assert sum(isinstance(i, SourceBar) for i in items) == 8

    async def test_a_unicode_digit_timestamp_does_not_stop_the_file(self, tmp_path: Path) -> None:
        text = HEADER + f"{T0},AAPL,1,1,1,1,0\n²,AAPL,1,1,1,1,0\n{T0 + MINUTE},AAPL,1,1,1,1,0\n"
        items = await collect(CsvBarSource(write(tmp_path, text), INSTRUMENTS))
        kinds = [(type(i).__name__, i.location) for i in items]
        assert kinds == [
            ("SourceBar", "bars.csv:2"),
            ("SourceRejection", "bars.csv:3"),
            ("SourceBar", "bars.csv:4"),
        ]
        assert isinstance(items[1], SourceRejection)
        assert items[1].field == "ts"

    def test_any_error_on_a_row_becomes_its_rejection(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An error no rule foresaw still names the row and the error, and never escapes."""

        def broken(text: str) -> int:
            raise ZeroDivisionError(f"unforeseen in {text}")

        monkeypatch.setattr("tradewind.actors._sources.parse_csv_ts", broken)
        row = f"{T0},AAPL,1,1,1,1,0"
        item = parse_csv_line(row, "bars.csv:9", INSTRUMENTS, "1m")
        assert item == SourceRejection(
            "bars.csv:9",
            "row",
            row,
            f"cannot be parsed: ZeroDivisionError: unforeseen in {T0}",
        )

    @settings(max_examples=300)
    @given(fields=st.lists(st.text(), min_size=7, max_size=7), line=st.text())
    def test_no_line_raises(self, fields: list[str], line: str) -> None:
        for text in (",".join(fields), line):
            item = parse_csv_line(text, "bars.csv:9", INSTRUMENTS, "1m")
            assert isinstance(item, SourceBar | SourceRejection)
            assert item.location == "bars.csv:9"

    async def test_a_line_that_is_not_utf8_is_rejected_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "bytes.csv"
        path.write_bytes(
            HEADER.encode()
            + f"{T0},AAPL,1,1,1,1,0\n".encode()
            + f"{T0 + MINUTE},AAPL\xe9,1,1,1,1,0\n".encode("latin-1")
            + f"{T0 + MINUTE},AAPL\u00e9,1,1,1,1,0\n".encode()  # UTF-8: an unknown symbol
            + f"{T0 + 2 * MINUTE},AAPL,1,1,1,1,0\r\n".encode()
        )
        source = CsvBarSource(path, INSTRUMENTS)
        items = await collect(source)
        kinds = [(type(i).__name__, i.location) for i in items]
        assert kinds == [
            ("SourceBar", "bytes.csv:2"),
            ("SourceRejection", "bytes.csv:3"),
            ("SourceRejection", "bytes.csv:4"),
            ("SourceBar", "bytes.csv:5"),
        ]
        assert items[1] == SourceRejection(
            "bytes.csv:3",
            "row",
            f"{T0 + MINUTE},AAPL\ufffd,1,1,1,1,0",
            "not valid UTF-8 text (byte 0xe9 at column 25)",
        )
        assert isinstance(items[2], SourceRejection)
        assert (items[2].field, items[2].rule) == ("instrument", "unknown instrument")
        assert await collect(source, skip=2) == items[2:]

    async def test_a_byte_order_mark_before_the_header_is_not_part_of_it(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "bars.csv"
        row = "1767225600000000000,AAPL,100,101,99,100,1"
        path.write_bytes(("\ufeffts,instrument,open,high,low,close,volume\n" + row + "\n").encode())
        items = await collect(CsvBarSource(path, INSTRUMENTS))
        assert [type(item).__name__ for item in items] == ["SourceBar"]

    async def test_missing_header_is_refused_with_its_line(self, tmp_path: Path) -> None:
        path = write(tmp_path, f"\n{T0},AAPL,1,1,1,1,0\n")
        with pytest.raises(InvalidBarFile, match=r"bars.csv:2: the first line must be the header"):
            await collect(CsvBarSource(path, INSTRUMENTS))

    async def test_missing_file_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidBarFile, match="cannot be read"):
            await collect(CsvBarSource(tmp_path / "none.csv", INSTRUMENTS))


class TestCsvResume:
    async def test_skip_resumes_after_that_many_items(self, tmp_path: Path) -> None:
        rows = [f"{T0 + n * MINUTE},AAPL,{n + 1},{n + 1},{n + 1},{n + 1},0" for n in range(5)]
        text = HEADER + rows[0] + "\n\n" + "\n".join(rows[1:]) + "\n"
        source = CsvBarSource(write(tmp_path, text), INSTRUMENTS)
        everything = await collect(source)
        rest = await collect(source, skip=2)
        assert rest == everything[2:]
        assert rest[0].location == "bars.csv:5"

    async def test_skip_past_the_end_yields_nothing(self, tmp_path: Path) -> None:
        source = CsvBarSource(write(tmp_path, HEADER + f"{T0},AAPL,1,1,1,1,0\n"), INSTRUMENTS)
        assert await collect(source, skip=10) == []

    def test_describe_names_file_and_timeframe(self, tmp_path: Path) -> None:
        source = CsvBarSource(tmp_path / "x.csv", INSTRUMENTS, timeframe="1h")
        assert source.name == "x.csv"
        assert source.describe() == f"csv {tmp_path / 'x.csv'} (1h)"
        assert isinstance(source, BarSource)


class TestCsvRoundTrip:
    @settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_any_valid_bar_parses_back_identical(self, data: st.DataObject) -> None:
        instrument = data.draw(instrument_values())
        bar = data.draw(bar_values(instrument, timeframe="1m"))
        item = parse_csv_line(format_csv_row(bar), "f.csv:2", {instrument.symbol: instrument}, "1m")
        assert item == SourceBar(bar, "f.csv:2")

    async def test_written_file_reads_back_identical(self, tmp_path: Path) -> None:
        bars = list(synthetic_bars([AAPL, MSFT], seed=3, start_ts=T0, count=50))
        path = tmp_path / "out.csv"
        assert write_bars_csv(path, bars) == len(bars)
        items = await collect(CsvBarSource(path, INSTRUMENTS))
        assert [i.bar for i in items if isinstance(i, SourceBar)] == bars


class TestSynthetic:
    def test_same_seed_same_bars(self) -> None:
        first = list(synthetic_bars([AAPL, MSFT], seed=7, start_ts=T0, count=500))
        again = list(synthetic_bars([AAPL, MSFT], seed=7, start_ts=T0, count=500))
        other = list(synthetic_bars([AAPL, MSFT], seed=8, start_ts=T0, count=500))
        assert first == again
        assert first != other

    @settings(max_examples=30, deadline=None)
    @given(seed=st.integers(0, 2**32), count=st.integers(0, 300))
    def test_bars_are_valid_on_tick_and_increasing(self, seed: int, count: int) -> None:
        bars = list(
            synthetic_bars(
                [AAPL, MSFT],
                seed=seed,
                start_ts=T0,
                count=count,
                gap_probability=0.05,
                start_price=Decimal("0.05"),
            )
        )
        sequencer = BarSequencer()
        for bar in bars:
            instrument = INSTRUMENTS[bar.instrument]
            for price in (bar.open, bar.high, bar.low, bar.close):
                assert instrument.is_on_tick(price)
            assert sequencer.offer(bar) is BarStatus.NEW
            assert (bar.ts - T0) % MINUTE == 0
            assert bar.ts < T0 + count * MINUTE
        assert len(bars) <= 2 * count

    def test_gaps_skip_bars(self) -> None:
        bars = list(synthetic_bars([AAPL], seed=1, start_ts=T0, count=2_000, gap_probability=0.01))
        steps = {b.ts - a.ts for a, b in itertools.pairwise(bars)}
        assert MINUTE in steps
        assert max(steps) > MINUTE

    def test_timeframes_in_ns(self) -> None:
        assert timeframe_ns("1m") == MINUTE
        assert timeframe_ns("5s") == 5 * 10**9
        assert timeframe_ns("2h") == 7_200 * 10**9
        assert timeframe_ns("1d") == 86_400 * 10**9
        with pytest.raises(InvalidMarketData):
            timeframe_ns("1w")

    def test_bad_arguments_are_refused(self) -> None:
        with pytest.raises(ValueError, match="count"):
            list(synthetic_bars([AAPL], seed=1, start_ts=T0, count=-1))
        with pytest.raises(ValueError, match="instruments"):
            list(synthetic_bars([], seed=1, start_ts=T0))

    async def test_source_yields_the_generator_and_resumes(self) -> None:
        source = SyntheticBarSource([AAPL, MSFT], seed=5, start_ts=T0, count=100)
        items = await collect(source)
        expected = list(synthetic_bars([AAPL, MSFT], seed=5, start_ts=T0, count=100))
        assert [i.bar for i in items if isinstance(i, SourceBar)] == expected
        assert items[0].location == "synthetic:1"
        assert await collect(source, skip=10) == items[10:]
        assert source.describe() == "synthetic AAPL,MSFT seed=5 100x1m"

    async def test_source_with_interval_paces_on_trio_time(self, autojump_clock: object) -> None:
        import trio

        source = SyntheticBarSource([AAPL], seed=5, start_ts=T0, count=4, interval=10.0)
        start = trio.current_time()
        items = await collect(source)
        assert len(items) >= 3
        assert trio.current_time() - start == pytest.approx(10.0 * (len(items) - 1))

    async def test_steps_up_to_unpaced_until_are_not_paced(self, autojump_clock: object) -> None:
        import trio

        paced = SyntheticBarSource([AAPL], seed=5, start_ts=T0, count=10, interval=10.0)
        bars = [i.bar for i in await collect(paced) if isinstance(i, SourceBar)]
        history = bars[5].ts  # a cold start's newest stored bar
        source = attrs.evolve(paced, unpaced_until=history)
        start = trio.current_time()
        items = [i.bar for i in await collect(source) if isinstance(i, SourceBar)]
        assert items == bars  # the same bars, only sooner
        later_steps = len({b.ts for b in bars if b.ts > history})
        assert trio.current_time() - start == pytest.approx(10.0 * later_steps)
