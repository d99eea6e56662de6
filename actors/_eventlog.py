"""The run's event log: every persisted record as a canonical line, folded into SHA-256.

Pure: no trio, no I/O. Two runs that accepted the same records in the same order have the
same digest; anything else (a lost, doubled, reordered or changed record) changes it.
"""

# Design notes
# ------------
# * The canonical line is a stable text form, not `repr`: attrs reprs are stable too, but
#   a Decimal's repr (``Decimal('1.10')``) and an enum's (``<Side.BUY: 'BUY'>``) are
#   noisier than they need to be, and a frozenset's iteration order depends on hashing.
#   Here a Decimal is its exact string (``1.10`` stays ``1.10``: the exponent is part of
#   the value that was accepted), an enum its class and value, strings are JSON-quoted,
#   sets are sorted by their canonical form, attrs instances list their fields in
#   declaration order, and anything else falls back to its class name and `repr`.
# * Only the digest and a count are kept, so memory stays flat over a long run; a caller
#   that wants the lines themselves passes a sink.

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Callable
from decimal import Decimal

import attrs
from tradewind.actors._marketdata import Bar

_FIELDS: dict[type, tuple[str, ...]] = {}


def _public_fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in attrs.fields(cls) if not f.name.startswith("_"))
        _FIELDS[cls] = names
    return names


@functools.lru_cache(maxsize=4_096)
def _quoted(text: str) -> str:
    # Symbols and timeframes repeat on every bar: quote each once.
    return json.dumps(text, ensure_ascii=False)


@functools.lru_cache(maxsize=4_096)
def _bar_head(instrument: str, timeframe: str) -> str:
    return f"Bar(instrument={_quoted(instrument)},timeframe={_quoted(timeframe)},"


def canonical(value: object) -> str:
    """The stable text form of a value (see the module notes)."""
    cls = type(value)
    if cls is Bar:
        # The hot path of a replay (one line per bar): the same text as the generic
        # attrs branch below, without its per-field dispatch.
        # (`!s`: a Decimal's str is twice as fast as its empty-spec format.)
        bar: Bar = value  # type: ignore[assignment]
        return (
            f"{_bar_head(bar.instrument, bar.timeframe)}ts={bar.ts},"
            f"open={bar.open!s},high={bar.high!s},low={bar.low!s},close={bar.close!s},"
            f"volume={bar.volume!s})"
        )
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return _quoted(value) if len(value) <= 64 else json.dumps(value, ensure_ascii=False)
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.value}"
    if attrs.has(cls):
        parts = [f"{name}={canonical(getattr(value, name))}" for name in _public_fields(cls)]
        return f"{cls.__name__}({','.join(parts)})"
    if isinstance(value, tuple | list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    if isinstance(value, frozenset | set):
        return "{" + ",".join(sorted(canonical(item) for item in value)) + "}"
    if isinstance(value, dict):
        items = sorted(f"{canonical(k)}:{canonical(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    return f"{type(value).__name__}<{value!r}>"


@attrs.define
class EventLog:
    """The running SHA-256 over canonical lines, one per accepted record, in order.

    Args:
        sink: called with each line (without newline) as it is added; None keeps none.
    """

    sink: Callable[[str], None] | None = None
    _hash: hashlib._Hash = attrs.field(factory=hashlib.sha256, init=False)
    _count: int = attrs.field(default=0, init=False)

    def add(self, record: object) -> str:
        """Append one record's canonical line; returns the line."""
        line = canonical(record)
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self._count += 1
        if self.sink is not None:
            self.sink(line)
        return line

    @property
    def count(self) -> int:
        """How many records were added."""
        return self._count

    def digest(self) -> str:
        """The hex SHA-256 of every line so far, each followed by a newline."""
        return self._hash.hexdigest()
