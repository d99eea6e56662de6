"""The spill journal: accepted records the store could not take yet, in a local file.

While the store is unavailable and the persistence actor's in-memory buffer is full, a
live feed cannot be slowed down; the buffer then goes to this append-only file, one
record per line, and the file is replayed into the store once it is back, then removed.

`encode_record` and `decode_record` are the line format (pure); `SpillJournal` is the
file (every file operation in a worker thread).
"""

# Design notes
# ------------
# * One record per line, as JSON made by one cattrs converter: ``{"record": {...},
#   "type": "Bar"}`` with sorted keys. Decimals are their exact strings (``1.10`` stays
#   ``1.10``; the exponent is part of the accepted value), enums their values, a set of
#   execution ids a sorted list, an order event carries its ``kind`` to say which class
#   it is. JSON escapes newlines inside strings, so a record can never span two lines;
#   ASCII-only output keeps any Python string (even a lone surrogate) encodable.
#   Rejected: the event log's canonical form. It is a digest input, made to be stable and
#   readable, not parsed back; reading it would need a second, hand-written parser.
# * Only the records persistence stores (or keeps in its event log) have a line form:
#   `SPILL_TYPES`. They are the stored forms: a denial is a `Denial` with its key already
#   fixed, a runtime dead letter a storage `DeadLetter`, so a replay writes exactly the
#   rows a direct flush would have written.
# * An append is one `write` of whole lines and one `fsync`; the file's known good
#   length is kept, and each append first truncates the file to it. A failed or torn
#   append therefore never leaves half a line in the middle of the file: the next append
#   overwrites it. A new file's directory is fsync'd as well, so the file itself survives
#   a crash.
# * A crash (of the process or the machine) can still leave a torn last line. `recover`
#   finds it (no line end, or a last line that does not decode), reports it and cuts it
#   off. Any other line that does not decode is not the result of a torn write: reading
#   it raises `SpillJournalCorrupt` (loud, never skipped).
# * Replay reads from a byte offset that only advances after the batch read was
#   committed (`mark_replayed`), so an outage during the replay resumes where it stopped;
#   repeating a batch is harmless because every store write is idempotent on its key.
# * The worker-thread calls are not abandoned on cancellation (trio's default): the file
#   operation completes and the bookkeeping after it is done before the cancellation is
#   delivered, so the known length and the replay offset always match the file.

from __future__ import annotations

import json
import os
import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import cattrs
import trio
from tradewind.actors._errors import SpillJournalCorrupt
from tradewind.actors._marketdata import Bar
from tradewind.actors._messages import (
    BarRejected,
    EndOfData,
    FeedResumed,
    FeedStale,
    OrderUpdated,
    SessionChanged,
    TradingStateChanged,
)
from tradewind.actors._orders import ORDER_EVENT_TYPES, Fill, Order
from tradewind.actors._values import Instrument
from tradewind.storage._records import DeadLetter, Denial, RunRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tradewind.actors._orders import OrderEvent

#: The record types a spill journal holds (the stored forms persistence handles).
SPILL_TYPES: Final[tuple[type, ...]] = (
    Bar,
    OrderUpdated,
    Order,
    Fill,
    Instrument,
    Denial,
    DeadLetter,
    RunRecord,
    TradingStateChanged,
    SessionChanged,
    FeedStale,
    FeedResumed,
    EndOfData,
    BarRejected,
)
_BY_NAME: Final = {cls.__name__: cls for cls in SPILL_TYPES}
_EVENTS: Final = {cls.kind.value: cls for cls in ORDER_EVENT_TYPES}
_EVENT_SET: Final = frozenset(ORDER_EVENT_TYPES)
_BLOCK: Final = 1 << 20
_PREVIEW: Final = 80


# ----------------------------------------------------------------------------- line format

_converter = cattrs.Converter()
_converter.register_unstructure_hook(Decimal, str)
_converter.register_structure_hook(Decimal, lambda value, _type: Decimal(value))


def _is_frozenset(kind: object) -> bool:
    return kind is frozenset or typing.get_origin(kind) is frozenset


# A set of execution ids is written sorted: the same set is always the same line.
_converter.register_unstructure_hook_func(_is_frozenset, sorted)


def _unstructure_event(event: OrderEvent) -> dict[str, Any]:
    data = {
        field.name: _converter.unstructure(getattr(event, field.name))
        for field in attrs.fields(type(event))
    }
    data["kind"] = event.kind.value
    return data


def _is_event_union(kind: object) -> bool:
    if typing.get_origin(kind) not in {typing.Union, types.UnionType}:
        return False
    members = set(typing.get_args(kind)) - {type(None)}
    return bool(members) and members <= _EVENT_SET


def _structure_event(value: object, _kind: object) -> OrderEvent | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        msg = f"an order event must be an object, got {type(value).__name__}"
        raise TypeError(msg)
    fields = dict(value)
    cls = _EVENTS[fields.pop("kind")]
    event: OrderEvent = _converter.structure(fields, cls)
    return event


_converter.register_unstructure_hook_func(lambda kind: kind in _EVENT_SET, _unstructure_event)
_converter.register_structure_hook_func(_is_event_union, _structure_event)


def encode_record(record: object) -> str:
    """The journal line of a record (without its line end).

    Raises:
        TypeError: the record's type is not one of `SPILL_TYPES`.
    """
    kind = type(record)
    if _BY_NAME.get(kind.__name__) is not kind:
        msg = f"a spill journal cannot hold a {kind.__name__}"
        raise TypeError(msg)
    document = {"type": kind.__name__, "record": _converter.unstructure(record)}
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def decode_record(line: str | bytes) -> object:
    """The record a journal line holds (`encode_record` reversed).

    Raises:
        ValueError: the line is not a journal line (bad JSON, an unknown type, a field
            missing or refused by the record's own validation); the cause is chained.
    """
    try:
        document = json.loads(line)
        cls = _BY_NAME[document["type"]]
        return _converter.structure(document["record"], cls)
    except Exception as exc:  # a foreign failure of any kind means "not a journal line"
        msg = f"not a spill journal line: {_describe(exc)}"
        raise ValueError(msg) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        inner = [_describe(e) for e in exc.exceptions]
        return f"{exc.message} ({'; '.join(inner)})"
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- the file


@attrs.frozen
class TornLine:
    """A line `SpillJournal.recover` cut off the end of the file.

    Attributes:
        offset: the byte offset where it began.
        length: its length in bytes (its line end included, if it had one).
        reason: why it was not a whole record.
        preview: its first bytes, for the report.
    """

    offset: int
    length: int
    reason: str
    preview: bytes


@attrs.frozen
class SpillRecovery:
    """What `SpillJournal.recover` found in a journal left by an earlier run.

    Attributes:
        records: whole records found (to be replayed).
        torn: the lines cut off the end, each reported (empty when the file was sound).
    """

    records: int
    torn: tuple[TornLine, ...]


@attrs.frozen
class SpillBatch:
    """Records read from the journal for one replay unit, and where the next read starts."""

    records: tuple[object, ...]
    end: int


@attrs.frozen
class SpillStatistics:
    """Counts of a spill journal.

    Attributes:
        path: the journal file.
        records: records in the file not replayed yet.
        size: bytes in the file (0 when there is none).
        appended: records appended since the journal object was made.
        appends: appends (one fsync each).
        replayed: records replayed into the store.
        recovered: records found by `SpillJournal.recover` in a file left by a crash.
        torn_lines: torn last lines found and cut off.
    """

    path: str
    records: int
    size: int
    appended: int
    appends: int
    replayed: int
    recovered: int
    torn_lines: int


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_lines(path: Path, good: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, good)  # an earlier, failed append may have left a partial tail
        os.lseek(fd, good, os.SEEK_SET)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if good == 0:
        _fsync_directory(path.parent)


def _read_lines(path: Path, start: int, end: int, limit: int) -> SpillBatch:
    records: list[object] = []
    position = start
    with path.open("rb") as handle:
        handle.seek(start)
        while position < end and len(records) < limit:
            line = handle.readline(end - position)
            try:
                records.append(decode_record(line))
            except ValueError as exc:
                raise SpillJournalCorrupt(str(path), position, str(exc)) from exc
            position += len(line)
    return SpillBatch(tuple(records), position)


def _scan(path: Path) -> tuple[int, int, int, int]:
    """Size, whole lines, and the offsets of the last two line ends (-1 if none)."""
    lines = 0
    last = before = -1
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            found = block.count(b"\n")
            if found:
                lines += found
                end = block.rfind(b"\n")
                previous = block.rfind(b"\n", 0, end) if found > 1 else -1
                before = offset + previous if previous >= 0 else last
                last = offset + end
            offset += len(block)
    return offset, lines, last, before


def _recover_file(path: Path) -> tuple[int, int, tuple[TornLine, ...]]:
    """Cut a torn tail off the journal; return its good size, records and the cut lines."""
    if not path.exists():
        return 0, 0, ()
    size, lines, last, before = _scan(path)
    good = last + 1
    torn: list[TornLine] = []
    with path.open("r+b") as handle:
        if good < size:
            handle.seek(good)
            tail = handle.read(_PREVIEW)
            torn.append(TornLine(good, size - good, "no line end (a torn write)", tail))
        if good > 0:
            start = before + 1
            handle.seek(start)
            line = handle.read(good - start)
            try:
                decode_record(line)
            except ValueError as exc:
                torn.insert(0, TornLine(start, good - start, str(exc), line[:_PREVIEW]))
                good = start
                lines -= 1
        if good < size:
            handle.truncate(good)
            handle.flush()
            os.fsync(handle.fileno())
    if good == 0:
        path.unlink()
        _fsync_directory(path.parent)
    return good, lines, tuple(torn)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    _fsync_directory(path.parent)


@attrs.define(eq=False)
class SpillJournal:
    """An append-only journal file of records, replayed from the front.

    Made once per run (it lives in the persistence keeper, across actor restarts). The
    file exists only while it holds records not yet replayed: the first append creates
    it, `remove` deletes it once everything was replayed.

    Args:
        path: the journal file (its directory must exist).

    Every method that touches the file runs it in a worker thread and is not abandoned on
    cancellation: the operation completes and the bookkeeping is updated before a
    cancellation is delivered. Use one journal from one task at a time.
    """

    path: Path = attrs.field(converter=Path)
    _size: int = attrs.field(default=0, init=False)
    _offset: int = attrs.field(default=0, init=False)
    _records: int = attrs.field(default=0, init=False)
    _appended: int = attrs.field(default=0, init=False)
    _appends: int = attrs.field(default=0, init=False)
    _replayed: int = attrs.field(default=0, init=False)
    _recovered: int = attrs.field(default=0, init=False)
    _torn: int = attrs.field(default=0, init=False)

    @property
    def records(self) -> int:
        """Records in the file not replayed yet."""
        return self._records

    async def recover(self) -> SpillRecovery:
        """Take over a journal an earlier run left: cut off a torn last line, count the
        records to replay. Call once, before any other method.

        Returns:
            What was found; every cut line is listed for the caller to report.

        Raises:
            OSError: the file cannot be read or truncated.
        """
        size, lines, torn = await trio.to_thread.run_sync(_recover_file, self.path)
        self._size, self._offset, self._records = size, 0, lines
        self._recovered += lines
        self._torn += len(torn)
        return SpillRecovery(lines, torn)

    async def append(self, records: Sequence[object]) -> None:
        """Append records, one line each, and fsync; nothing is counted until it is on disk.

        Raises:
            TypeError: a record's type is not one of `SPILL_TYPES` (nothing is written).
            OSError: the write or the fsync failed; the journal is unchanged (a partial
                write is overwritten by the next append).
        """
        if not records:
            await trio.lowlevel.checkpoint()
            return
        data = "".join(f"{encode_record(record)}\n" for record in records).encode("ascii")
        await trio.to_thread.run_sync(_append_lines, self.path, self._size, data)
        self._size += len(data)
        self._records += len(records)
        self._appended += len(records)
        self._appends += 1

    async def read(self, limit: int) -> SpillBatch:
        """Read up to `limit` records from the replay position (the position stays until
        `mark_replayed`).

        Raises:
            SpillJournalCorrupt: a line cannot be decoded.
            OSError: the file cannot be read.
        """
        if self._offset >= self._size:
            await trio.lowlevel.checkpoint()
            return SpillBatch((), self._offset)
        return await trio.to_thread.run_sync(
            _read_lines, self.path, self._offset, self._size, max(1, limit)
        )

    def mark_replayed(self, batch: SpillBatch) -> None:
        """Advance the replay position past `batch` (after its records were committed)."""
        if batch.end <= self._offset:
            return
        self._offset = batch.end
        self._records = max(0, self._records - len(batch.records))
        self._replayed += len(batch.records)

    async def remove(self) -> None:
        """Delete the file (everything in it was replayed); the journal is empty again.

        Raises:
            OSError: the file cannot be removed.
        """
        await trio.to_thread.run_sync(_remove, self.path)
        self._size = self._offset = self._records = 0

    def statistics(self) -> SpillStatistics:
        """A frozen snapshot of the journal's counts."""
        return SpillStatistics(
            path=str(self.path),
            records=self._records,
            size=self._size,
            appended=self._appended,
            appends=self._appends,
            replayed=self._replayed,
            recovered=self._recovered,
            torn_lines=self._torn,
        )
