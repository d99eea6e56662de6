"""Market-data sources: the `BarSource` interface, CSV replay and the synthetic generator.

A source is what the feed pulls bars from: an async iterator of `SourceItem`s, each either
a parsed `Bar` with where it came from (`SourceBar`) or a row that could not become a bar,
with where it was and why (`SourceRejection`). A bad row never stops a source.
"""

# Design notes
# ------------
# * The interface is small on purpose (`name`, `describe()`, `items(skip=...)`) so a
#   broker's live feed can plug in beside CSV replay and the synthetic generator.
# * `items(skip=n)` resumes after the first n items. The feed counts the items it has
#   taken in (its keeper survives restarts), so a restarted feed re-opens its source and
#   skips exactly what it already had; nothing is emitted twice and nothing is missed.
#   Positions rather than timestamps: a file may hold bad and out-of-order rows, and
#   resuming "after the last good bar's time" would silently drop rows behind it.
# * CSV reading and parsing happen in a worker thread, a chunk of lines at a time
#   (`trio.to_thread.run_sync`): the trio loop never blocks on the disk, and the
#   per-chunk hop costs microseconds per thousand rows. Rows are split on commas, not
#   run through the `csv` module: market data has no quoted fields, and a quoted field
#   is then simply a malformed row, reported as such.
# * Numbers go straight from the text to `Decimal` through `Bar.from_strings`; a price
#   never passes through float.
# * A bad row never stops a source. `parse_csv_line` turns *every* exception a row
#   causes into that row's rejection, not only the `InvalidMarketData` the rules raise:
#   an exception escaping it would crash the feed, and the restarted feed would resume
#   into the same row until its supervisor gives up, losing every good row behind it.
# * The file is decoded with ``errors="surrogateescape"``: a byte that is not UTF-8
#   comes through as a lone surrogate in its own line, and that line alone is rejected
#   ("not valid UTF-8 text"). Strict decoding fails a whole chunk with no line number;
#   reading bytes and decoding per line costs a method call per row. Lines are still
#   split by the text layer, so line numbers and endings are exactly as before, and a
#   good (ASCII) line pays one `str.isascii` for the check.
# * Timestamps: only ASCII digits are int nanoseconds (`str.isdigit` is also true for
#   superscript and fullwidth digits: `int` raises on the first and quietly reads
#   the second). ISO-8601 fractional seconds are read exactly, up to 9 digits:
#   letting `datetime.fromisoformat` truncate them to microseconds would make two
#   distinct rows one, and drop the second as a duplicate. More than 9 digits is
#   refused, as not representable, rather than rounded.

from __future__ import annotations

import datetime as _dt
import itertools
import re
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Protocol, TypeAlias, runtime_checkable

import attrs
import trio
from tradewind.actors._errors import DomainError, InvalidMarketData
from tradewind.actors._marketdata import Bar
from tradewind.actors._synthetic import synthetic_bars
from tradewind.actors._values import Instrument, ns_from_datetime

#: The CSV header every bar file starts with.
CSV_HEADER = ("ts", "instrument", "open", "high", "low", "close", "volume")

_CHUNK_LINES = 4_096
#: Nanosecond digits a fraction of a second may have.
_MAX_FRACTION_DIGITS = 9
#: A fraction of a second in ISO-8601 text (either decimal mark, ASCII digits only).
_ISO_FRACTION = re.compile(r"[.,]([0-9]+)")
#: What the fraction is replaced by to find out whose fraction it is (see `parse_csv_ts`).
_PROBE_FRACTION = ".5"
_PROBE_MICROSECONDS = 500_000
_TS_RULE = "must be int nanoseconds since the epoch or ISO-8601 UTC"


@attrs.frozen
class SourceBar:
    """A bar a source produced, and where it came from (``"bars.csv:17"``)."""

    bar: Bar
    location: str


@attrs.frozen
class SourceRejection:
    """A row a source could not turn into a bar.

    Attributes:
        location: where the row was (``"bars.csv:17"``).
        field: the field that broke a rule (``"high"``, ``"row"`` for the row's shape).
        value: the offending text.
        rule: the rule it broke.
    """

    location: str
    field: str
    value: str
    rule: str

    @property
    def reason(self) -> str:
        """``field=value: rule``, for logs and reports."""
        return f"{self.field}={self.value!r}: {self.rule}"


SourceItem: TypeAlias = SourceBar | SourceRejection


@runtime_checkable
class BarSource(Protocol):
    """Where the feed gets bars from.

    Attributes:
        name: a short label for logs and locations (the file name, ``"synthetic"``).
    """

    @property
    def name(self) -> str:
        """A short label for logs and locations."""
        ...

    def describe(self) -> str:
        """A one-line description for logs and the run summary."""
        ...

    def items(self, *, skip: int = 0) -> AsyncGenerator[SourceItem, None]:
        """The items of the source in order, after the first `skip` of them.

        Cancellation: iterate it within one task; close it (``aclosing``) when leaving
        early. Cancelling between items loses nothing: the caller counts what it took.
        """
        ...


class InvalidBarFile(DomainError):
    """A bar file cannot be read at all (missing, or not the expected header)."""


# ----------------------------------------------------------------------------- CSV


def parse_csv_ts(text: str) -> int:
    """Parse a CSV timestamp: int nanoseconds since the epoch, or ISO-8601 in UTC.

    Int nanoseconds are ASCII digits only. ISO-8601 text may end in ``Z`` or carry an
    offset (converted to UTC); text without an offset is taken as UTC. Fractional
    seconds are exact to the nanosecond (up to 9 digits, ``.`` or ``,`` as the mark).

    Args:
        text: the ``ts`` field; surrounding whitespace is ignored.

    Returns:
        Nanoseconds since the epoch.

    Raises:
        InvalidMarketData: (field ``ts``) neither form; more than 9 fractional digits
            (not representable in nanoseconds); a fraction on the UTC offset; or a
            time before 1970-01-01.
    """
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    fractions = _ISO_FRACTION.findall(text)
    if not fractions:
        moment = _from_iso(text, text)
        fraction_ns = 0
    else:
        digits = fractions[0]
        if len(fractions) > 1:
            raise InvalidMarketData("ts", text, "must have at most one fraction of a second")
        if len(digits) > _MAX_FRACTION_DIGITS:
            raise InvalidMarketData(
                "ts",
                text,
                f"has {len(digits)} fractional digits; at most {_MAX_FRACTION_DIGITS} "
                "(nanoseconds) are representable",
            )
        # `fromisoformat` would truncate the digits to microseconds. Parse with a known
        # fraction instead, which also shows whose fraction it is: the seconds' (it
        # appears as the microseconds) or the UTC offset's (refused).
        moment = _from_iso(_ISO_FRACTION.sub(_PROBE_FRACTION, text, count=1), text)
        offset = moment.utcoffset()
        if moment.microsecond != _PROBE_MICROSECONDS or (offset and offset.microseconds):
            raise InvalidMarketData(
                "ts", text, "a fraction must belong to the seconds, not the UTC offset"
            )
        moment = moment.replace(microsecond=0)
        fraction_ns = int(digits.ljust(_MAX_FRACTION_DIGITS, "0"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    ts = ns_from_datetime(moment) + fraction_ns
    if ts < 0:
        raise InvalidMarketData("ts", text, "must not be before 1970-01-01")
    return ts


def _from_iso(text: str, original: str) -> _dt.datetime:
    """`datetime.fromisoformat`, failing as `InvalidMarketData` about `original`."""
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidMarketData("ts", original, _TS_RULE) from None


def format_csv_row(bar: Bar) -> str:
    """A bar as one CSV line (no newline) in `CSV_HEADER` order, exactly: ts as int ns,
    Decimals as their exact string."""
    return f"{bar.ts},{bar.instrument},{bar.open},{bar.high},{bar.low},{bar.close},{bar.volume}"


def parse_csv_line(
    line: str, location: str, instruments: Mapping[str, Instrument], timeframe: str
) -> SourceItem:
    """Turn one data line of a bar file into a `SourceBar` or a `SourceRejection`.

    Never raises: every problem with the row becomes its rejection, naming the field
    and the rule; an error no rule foresaw names the whole row and the error (see the
    module notes). A line read with ``errors="surrogateescape"`` carries bytes that are
    not UTF-8 as lone surrogates: it is rejected as not valid UTF-8 text.

    Args:
        line: the line, without its line ending.
        location: where it was (``"bars.csv:17"``).
        instruments: the known instruments, by symbol.
        timeframe: the timeframe the bar gets.

    Returns:
        The bar with its location, or the row's rejection.
    """
    try:
        return _parse_csv_fields(line, location, instruments, timeframe)
    except InvalidMarketData as exc:
        return SourceRejection(location, exc.field, str(exc.value), exc.rule)
    except Exception as exc:  # noqa: BLE001 -- a bad row never stops a source
        return SourceRejection(
            location, "row", line, f"cannot be parsed: {type(exc).__name__}: {exc}"
        )


def _parse_csv_fields(
    line: str, location: str, instruments: Mapping[str, Instrument], timeframe: str
) -> SourceItem:
    if not line.isascii():
        bad = _first_undecodable(line)
        if bad is not None:
            text = line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            return SourceRejection(location, "row", text, f"not valid UTF-8 text ({bad})")
    fields = line.split(",")
    if len(fields) != len(CSV_HEADER):
        return SourceRejection(
            location,
            "row",
            line,
            f"expected {len(CSV_HEADER)} comma-separated columns, got {len(fields)}",
        )
    ts, instrument, open_, high, low, close, volume = fields
    bar = Bar.from_raw(
        instrument.strip(),
        timeframe,
        parse_csv_ts(ts),
        open_,
        high,
        low,
        close,
        volume,
        instruments=instruments,
    )
    return SourceBar(bar, location)


def _first_undecodable(line: str) -> str | None:
    """Where the first byte that was not UTF-8 is (``byte 0xe9 at column 26``), or None."""
    for column, char in enumerate(line, 1):
        if "\udc80" <= char <= "\udcff":  # surrogateescape's stand-ins for bytes
            return f"byte 0x{ord(char) - 0xDC00:02x} at column {column}"
    return None


def _read_chunk(
    handle: IO[str],
    first_line: int,
    name: str,
    instruments: Mapping[str, Instrument],
    timeframe: str,
) -> tuple[list[SourceItem], int]:
    """Read and parse up to a chunk of lines (in a worker thread). Returns the items and
    the number of physical lines read (0 at the end of the file)."""
    items: list[SourceItem] = []
    count = 0
    for line in itertools.islice(handle, _CHUNK_LINES):
        count += 1
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        items.append(
            parse_csv_line(text, f"{name}:{first_line + count - 1}", instruments, timeframe)
        )
    return items, count


def _open_checked(path: Path) -> tuple[IO[str], int]:
    """Open a bar file and check its header (in a worker thread); returns the handle
    positioned after the header, and the header's line number."""
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports write one) is not part of the
        # header
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        msg = f"{path}: cannot be read: {exc.strerror or exc}"
        raise InvalidBarFile(msg) from exc
    line_no = 0
    for line in handle:
        line_no += 1
        text = line.strip()
        if not text:
            continue
        header = tuple(part.strip().lower() for part in text.split(","))
        if header == CSV_HEADER:
            return handle, line_no
        break
    handle.close()
    msg = f"{path}:{line_no}: the first line must be the header {','.join(CSV_HEADER)}"
    raise InvalidBarFile(msg)


def _skip_lines(handle: IO[str], items: int) -> int:
    """Skip the physical lines holding the next `items` data rows; returns lines read."""
    read = 0
    remaining = items
    while remaining > 0:
        line = handle.readline()
        if not line:
            break
        read += 1
        if line.strip():
            remaining -= 1
    return read


def _instrument_table(value: Mapping[str, Instrument]) -> dict[str, Instrument]:
    return dict(value)


def _instrument_list(value: Sequence[Instrument]) -> tuple[Instrument, ...]:
    return tuple(value)


@attrs.define
class CsvBarSource:
    """Bars replayed from a CSV file.

    The file starts with the header ``ts,instrument,open,high,low,close,volume``. ``ts``
    is the bar's open time, either int nanoseconds since the epoch or ISO-8601 in UTC
    (``2026-01-05T14:30:00Z``; an offset is converted, no offset means UTC; fractional
    seconds exact to 9 digits). Prices and volume are plain decimal text, parsed exactly.
    The file is UTF-8. Blank lines are ignored; every other line is one item: a bar, or
    a rejection naming ``file:line``, the field and the rule (malformed or NaN numbers, a
    price <= 0 or off the tick, high below low or the body, an unknown instrument, a
    wrong number of columns, a line that is not valid UTF-8 text). A bad line never
    stops the source.

    Args:
        path: the file.
        instruments: the known instruments, by symbol.
        timeframe: the timeframe of every bar in the file.

    Raises (from iterating):
        InvalidBarFile: the file cannot be opened or lacks the header.
    """

    path: Path = attrs.field(converter=Path)
    instruments: Mapping[str, Instrument] = attrs.field(converter=_instrument_table)
    timeframe: str = "1m"

    @property
    def name(self) -> str:
        """The file's name, used in every location (``bars.csv:17``)."""
        return self.path.name

    def describe(self) -> str:
        """``csv <path> (<timeframe>)``."""
        return f"csv {self.path} ({self.timeframe})"

    async def items(self, *, skip: int = 0) -> AsyncGenerator[SourceItem, None]:
        """The file's items, after the first `skip` (see `BarSource.items`).

        Raises:
            InvalidBarFile: the file cannot be opened or lacks the header.
        """
        handle, line_no = await trio.to_thread.run_sync(_open_checked, self.path)
        try:
            if skip:
                line_no += await trio.to_thread.run_sync(_skip_lines, handle, skip)
            while True:
                items, read = await trio.to_thread.run_sync(
                    _read_chunk, handle, line_no + 1, self.name, self.instruments, self.timeframe
                )
                if not read:
                    return
                line_no += read
                for item in items:
                    yield item
        finally:
            handle.close()


def write_bars_csv(path: Path, bars: Iterator[Bar] | Sequence[Bar]) -> int:
    """Write bars as a CSV bar file (header first); returns how many were written.

    Blocking file I/O: call it from a worker thread inside trio.
    """
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(CSV_HEADER) + "\n")
        for bar in bars:
            out.write(format_csv_row(bar) + "\n")
            count += 1
    return count


# ----------------------------------------------------------------------------- synthetic


@attrs.define
class SyntheticBarSource:
    """Bars from the seeded random walk of `synthetic_bars` (see there for the model).

    Args:
        instruments: the instruments, in the order bars of one step are emitted.
        seed: the same seed gives the same bars.
        start_ts: the first step's time, ns since the epoch.
        timeframe: the bar length.
        count: how many time steps.
        start_price: each instrument's first open.
        interval: seconds (trio time) to wait between time steps; 0 replays as fast as
            the consumer takes them (paper mode uses e.g. the timeframe's length).
        unpaced_until: time steps at or before this bar time are not paced: a cold
            start's history, which the crashed run already waited for (None: pace all).
    """

    instruments: Sequence[Instrument] = attrs.field(converter=_instrument_list)
    seed: int
    start_ts: int
    timeframe: str = "1m"
    count: int = 1_000
    start_price: Decimal = Decimal(100)
    interval: float = 0.0
    unpaced_until: int | None = None

    @property
    def name(self) -> str:
        """``synthetic``."""
        return "synthetic"

    def describe(self) -> str:
        """The generator and its seed."""
        symbols = ",".join(i.symbol for i in self.instruments)
        return f"synthetic {symbols} seed={self.seed} {self.count}x{self.timeframe}"

    async def items(self, *, skip: int = 0) -> AsyncGenerator[SourceItem, None]:
        """The generated bars, after the first `skip` (see `BarSource.items`)."""
        bars = synthetic_bars(
            self.instruments,
            self.seed,
            self.start_ts,
            self.timeframe,
            self.count,
            self.start_price,
        )
        last_ts: int | None = None
        for index, bar in enumerate(bars):
            if index < skip:
                last_ts = bar.ts
                continue
            if (
                self.interval > 0
                and last_ts is not None
                and bar.ts != last_ts
                and (self.unpaced_until is None or bar.ts > self.unpaced_until)
            ):
                await trio.sleep(self.interval)
            elif index % _CHUNK_LINES == 0:
                await trio.lowlevel.checkpoint()
            last_ts = bar.ts
            yield SourceBar(bar, f"{self.name}:{index + 1}")
