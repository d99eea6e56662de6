"""Market data: validated bars and ticks, and the per-series bar sequencer.

Pure: no trio, no I/O. Prices and volumes are exact `Decimal`s; times are int nanoseconds.
"""

# Design notes
# ------------
# * A `Bar` or `Tick` that exists is valid. The attrs `__init__` checks every rule that
#   needs nothing but the value itself (finite positive prices, high/low consistent with
#   open/close, volume >= 0, a non-negative int timestamp, a timeframe such as "1m"); the
#   named constructors `from_raw` / `from_strings` add the rules that need the instrument
#   table (a known symbol, every price on its tick). Outside data enters only through the
#   named constructors.
# * Every data failure raises `InvalidMarketData(field, value, rule)`, so a feed can count
#   and log it uniformly. The one exception is a float: that is a programming error in the
#   caller (a number has already lost its exact value), and raises `FloatRefused` like
#   everywhere else in tradewind.
# * The sequencer remembers only the last accepted bar per (instrument, timeframe): memory
#   stays bounded over a replay of years of data. The consequence is stated, not hidden:
#   a bar older than the last accepted one is OUT_OF_ORDER even if it equals a bar accepted
#   earlier; only a repeat of the last accepted bar can be told apart as DUPLICATE or
#   CONFLICT. After a restart `resume` installs the last stored bar per series, so a replay
#   picks up right after it.

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TypeAlias

import attrs
from tradewind.actors._errors import DomainError, FloatRefused, InvalidMarketData
from tradewind.actors._values import DecimalLike, Instrument, to_decimal

#: A bar's natural key: (instrument symbol, timeframe, ts).
BarKey: TypeAlias = tuple[str, str, int]
#: A bar series: (instrument symbol, timeframe).
SeriesKey: TypeAlias = tuple[str, str]
#: Where the named constructors look instruments up.
Instruments: TypeAlias = Mapping[str, Instrument] | Instrument

_TIMEFRAME = re.compile(r"[1-9][0-9]*[a-zA-Z]{1,3}")
_TIMESTAMP = re.compile(r"[0-9]+")


def _market_decimal(value: object, field: str) -> Decimal:
    try:
        return to_decimal(value, field)
    except FloatRefused:
        raise
    except DomainError as exc:
        raise InvalidMarketData(field, value, "must be a finite decimal number") from exc


def _open(value: DecimalLike) -> Decimal:
    return _market_decimal(value, "open")


def _high(value: DecimalLike) -> Decimal:
    return _market_decimal(value, "high")


def _low(value: DecimalLike) -> Decimal:
    return _market_decimal(value, "low")


def _close(value: DecimalLike) -> Decimal:
    return _market_decimal(value, "close")


def _volume(value: DecimalLike) -> Decimal:
    return _market_decimal(value, "volume")


def _price(value: DecimalLike) -> Decimal:
    return _market_decimal(value, "price")


def _size(value: DecimalLike) -> Decimal:
    return _market_decimal(value, "size")


def _positive_price(_instance: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if value <= 0:
        raise InvalidMarketData(attribute.name, value, "price must be > 0")


def _non_negative(_instance: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if value < 0:
        raise InvalidMarketData(attribute.name, value, "must be >= 0")


# Symbols and timeframes that passed their check once: every bar of a series repeats
# them, so later bars skip the check (bounded: a feed has few series).
_GOOD_SYMBOLS: set[str] = set()
_GOOD_TIMEFRAMES: set[str] = set()
_GOOD_MAX = 4_096


def _remember(good: set[str], value: str) -> None:
    if len(good) < _GOOD_MAX:
        good.add(value)


def _symbol(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if type(value) is str and value in _GOOD_SYMBOLS:
        return
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidMarketData(
            attribute.name, value, "must be a non-empty symbol without surrounding spaces"
        )
    _remember(_GOOD_SYMBOLS, value)


def _timeframe(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if type(value) is str and value in _GOOD_TIMEFRAMES:
        return
    if not isinstance(value, str) or not _TIMEFRAME.fullmatch(value):
        raise InvalidMarketData(
            attribute.name, value, "must be a count and a unit, such as '1m', '5m', '1d'"
        )
    _remember(_GOOD_TIMEFRAMES, value)


def _timestamp(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidMarketData(
            attribute.name, value, "must be a non-negative int of nanoseconds since the epoch"
        )


def parse_timestamp(value: int | str, field: str = "ts") -> int:
    """Parse a timestamp of int nanoseconds since the epoch, given as an int or digits.

    Raises:
        InvalidMarketData: not a non-negative int or a string of decimal digits.
    """
    if isinstance(value, str):
        text = value.strip()
        if _TIMESTAMP.fullmatch(text):
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InvalidMarketData(
        field, value, "must be a non-negative int of nanoseconds since the epoch"
    )


def resolve_instrument(symbol: str, instruments: Instruments) -> Instrument:
    """Look `symbol` up in `instruments` (a mapping by symbol, or a single instrument).

    Raises:
        InvalidMarketData: the symbol is not known (field ``instrument``).
    """
    if isinstance(instruments, Instrument):
        if instruments.symbol == symbol:
            return instruments
    else:
        found = instruments.get(symbol)
        if found is not None:
            return found
    raise InvalidMarketData("instrument", symbol, "unknown instrument")


def _check_tick(instrument: Instrument, field: str, price: Decimal) -> None:
    if not instrument.is_on_tick(price):
        raise InvalidMarketData(
            field, price, f"not on the tick of {instrument.symbol} ({instrument.tick_size})"
        )


@attrs.frozen
class Bar:
    """One OHLCV bar of an instrument's price series.

    Attributes:
        instrument: the instrument's symbol.
        timeframe: the bar length, a count and a unit (``"1m"``, ``"1h"``, ``"1d"``).
        ts: the bar's open time, int nanoseconds since the epoch (UTC).
        open, high, low, close: prices, > 0, with high >= max(open, close) and
            low <= min(open, close).
        volume: traded volume, >= 0.

    The natural key is ``(instrument, timeframe, ts)``. Build bars from outside data with
    `from_raw` or `from_strings`, which also check the symbol and the tick.

    Raises:
        InvalidMarketData: a field breaks a rule (names the field, the value, the rule).
        FloatRefused: a price or volume was given as a float.
    """

    instrument: str = attrs.field(validator=_symbol)
    timeframe: str = attrs.field(validator=_timeframe)
    ts: int = attrs.field(validator=_timestamp)
    open: Decimal = attrs.field(converter=_open, validator=_positive_price)
    high: Decimal = attrs.field(converter=_high, validator=_positive_price)
    low: Decimal = attrs.field(converter=_low, validator=_positive_price)
    close: Decimal = attrs.field(converter=_close, validator=_positive_price)
    volume: Decimal = attrs.field(converter=_volume, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        top = max(self.open, self.close)
        if self.high < top:
            raise InvalidMarketData("high", self.high, f"must be >= max(open, close) = {top}")
        bottom = min(self.open, self.close)
        if self.low > bottom:
            raise InvalidMarketData("low", self.low, f"must be <= min(open, close) = {bottom}")

    @property
    def key(self) -> BarKey:
        """The natural key ``(instrument, timeframe, ts)``."""
        return (self.instrument, self.timeframe, self.ts)

    @property
    def series(self) -> SeriesKey:
        """The series this bar belongs to: ``(instrument, timeframe)``."""
        return (self.instrument, self.timeframe)

    @classmethod
    def from_raw(  # noqa: PLR0917 -- a bar row's columns, passed in their order
        cls,
        instrument: str,
        timeframe: str,
        ts: int,
        open: DecimalLike,
        high: DecimalLike,
        low: DecimalLike,
        close: DecimalLike,
        volume: DecimalLike,
        *,
        instruments: Instruments,
    ) -> Bar:
        """Build a bar from outside data, checking every rule.

        Args:
            instrument: the symbol; must be in `instruments`.
            timeframe, ts, open, high, low, close, volume: as the attributes; prices and
                volume as Decimal, int or decimal strings.
            instruments: the known instruments, by symbol (or a single instrument).

        Returns:
            The bar, with every price on the instrument's tick.

        Raises:
            InvalidMarketData: unknown instrument, a price off the tick, or any rule of
                the bar itself; names the field, the value and the rule.
            FloatRefused: a price or the volume is a float.
        """
        known = resolve_instrument(instrument, instruments)
        bar = cls(instrument, timeframe, ts, open, high, low, close, volume)
        for field in ("open", "high", "low", "close"):
            _check_tick(known, field, getattr(bar, field))
        return bar

    @classmethod
    def from_strings(  # noqa: PLR0917 -- a bar row's columns, passed in their order
        cls,
        instrument: str,
        timeframe: str,
        ts: str,
        open: str,
        high: str,
        low: str,
        close: str,
        volume: str,
        *,
        instruments: Instruments,
    ) -> Bar:
        """Build a bar from the text fields of a file row (e.g. CSV), exactly.

        `ts` is decimal digits of nanoseconds since the epoch; prices and volume are
        decimal strings, parsed without passing through float (``"101.10"`` stays
        ``Decimal("101.10")``). Surrounding whitespace is ignored.

        Raises:
            InvalidMarketData: as `from_raw`, or `ts` is not a string of digits.
        """
        return cls.from_raw(
            instrument.strip(),
            timeframe.strip(),
            parse_timestamp(ts),
            open,
            high,
            low,
            close,
            volume,
            instruments=instruments,
        )


@attrs.frozen
class Tick:
    """One trade (or last-price update) of an instrument.

    Attributes:
        instrument: the instrument's symbol.
        ts: int nanoseconds since the epoch (UTC).
        price: the trade price, > 0.
        size: the traded quantity, >= 0.

    Raises:
        InvalidMarketData: a field breaks a rule.
        FloatRefused: the price or size was given as a float.
    """

    instrument: str = attrs.field(validator=_symbol)
    ts: int = attrs.field(validator=_timestamp)
    price: Decimal = attrs.field(converter=_price, validator=_positive_price)
    size: Decimal = attrs.field(converter=_size, validator=_non_negative)

    @classmethod
    def from_raw(
        cls,
        instrument: str,
        ts: int,
        price: DecimalLike,
        size: DecimalLike,
        *,
        instruments: Instruments,
    ) -> Tick:
        """Build a tick from outside data: known instrument, price on its tick.

        Raises:
            InvalidMarketData: unknown instrument, price off the tick, or a field rule.
            FloatRefused: the price or size is a float.
        """
        known = resolve_instrument(instrument, instruments)
        tick = cls(instrument, ts, price, size)
        _check_tick(known, "price", tick.price)
        return tick

    @classmethod
    def from_strings(
        cls, instrument: str, ts: str, price: str, size: str, *, instruments: Instruments
    ) -> Tick:
        """Build a tick from the text fields of a file row, exactly (see `Bar.from_strings`).

        Raises:
            InvalidMarketData: as `from_raw`, or `ts` is not a string of digits.
        """
        return cls.from_raw(
            instrument.strip(), parse_timestamp(ts), price, size, instruments=instruments
        )


# ---------------------------------------------------------------- sequencing


class BarStatus(enum.Enum):
    """How the sequencer classified an incoming bar."""

    #: Newer than the last accepted bar of its series: accepted.
    NEW = "NEW"
    #: Same key and same values as the last accepted bar: dropped quietly.
    DUPLICATE = "DUPLICATE"
    #: Same key as the last accepted bar but different values: rejected.
    CONFLICT = "CONFLICT"
    #: Older than the last accepted bar of its series: rejected.
    OUT_OF_ORDER = "OUT_OF_ORDER"

    @property
    def accepted(self) -> bool:
        """Whether the bar should be passed on (only NEW bars are)."""
        return self is BarStatus.NEW


@attrs.frozen
class SequencerStatistics:
    """Counts of a `BarSequencer`, by classification, since it was created.

    Attributes:
        new, duplicate, conflict, out_of_order: bars offered and classified so.
        series: how many (instrument, timeframe) series have a last accepted bar.
    """

    new: int
    duplicate: int
    conflict: int
    out_of_order: int
    series: int

    @property
    def total(self) -> int:
        """Every bar offered."""
        return self.new + self.duplicate + self.conflict + self.out_of_order

    @property
    def rejected(self) -> int:
        """Bars refused as wrong (conflicts and out-of-order bars; not duplicates)."""
        return self.conflict + self.out_of_order


@attrs.define
class BarSequencer:
    """Orders bars per (instrument, timeframe): keeps new ones, sorts out the rest.

    Feed each incoming bar to `offer`. Per series, the accepted bars are strictly
    increasing in `ts`. Only the last accepted bar of each series is remembered (see
    the module notes): a repeat of it is a DUPLICATE (same values) or a CONFLICT
    (different values); anything older is OUT_OF_ORDER.

    Not thread-safe; an actor owns one.
    """

    _last: dict[SeriesKey, Bar] = attrs.field(factory=dict, init=False)
    _counts: dict[BarStatus, int] = attrs.field(
        factory=lambda: dict.fromkeys(BarStatus, 0), init=False
    )

    def classify(self, bar: Bar) -> BarStatus:
        """How `bar` would be classified now, without recording anything."""
        last = self._last.get(bar.series)
        if last is None or bar.ts > last.ts:
            return BarStatus.NEW
        if bar.ts < last.ts:
            return BarStatus.OUT_OF_ORDER
        return BarStatus.DUPLICATE if bar == last else BarStatus.CONFLICT

    def offer(self, bar: Bar) -> BarStatus:
        """Classify `bar`, count it, and make it the series' last bar if it is NEW.

        Returns:
            The classification; pass the bar on only if ``status.accepted``.
        """
        status = self.classify(bar)
        self._counts[status] += 1
        if status is BarStatus.NEW:
            self._last[bar.series] = bar
        return status

    def resume(self, bars: Bar | Iterable[Bar]) -> None:
        """Install last accepted bars (e.g. the last stored bar per series after a restart).

        For each bar, it becomes its series' last bar unless a later one is already
        known. Nothing is counted. A replay that follows resumes right after these bars:
        an exact repeat of one is a DUPLICATE, anything older OUT_OF_ORDER.
        """
        for bar in (bars,) if isinstance(bars, Bar) else bars:
            last = self._last.get(bar.series)
            if last is None or bar.ts > last.ts:
                self._last[bar.series] = bar

    def last(self, instrument: str, timeframe: str) -> Bar | None:
        """The last accepted bar of a series, or None."""
        return self._last.get((instrument, timeframe))

    def statistics(self) -> SequencerStatistics:
        """A frozen snapshot of the counts."""
        return SequencerStatistics(
            new=self._counts[BarStatus.NEW],
            duplicate=self._counts[BarStatus.DUPLICATE],
            conflict=self._counts[BarStatus.CONFLICT],
            out_of_order=self._counts[BarStatus.OUT_OF_ORDER],
            series=len(self._last),
        )
