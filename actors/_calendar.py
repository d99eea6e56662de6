"""Trading calendars: weekly sessions in an exchange time zone, holidays, early closes.

Pure: no trio, no I/O (time-zone rules come from the stdlib `zoneinfo` database).
Times are int nanoseconds since the Unix epoch (UTC).
"""

# Design notes
# ------------
# * Sessions are wall-clock times in the exchange's zone (`zoneinfo`), so daylight saving
#   moves them in UTC as it does on the exchange. A close at or before its open means the
#   session ends the next day ("18:00-17:00" futures sessions; "00:00-00:00" is 24 hours).
#   A wall time that does not exist (inside a spring-forward gap) is read with the offset
#   in force before the change, as `zoneinfo` does with ``fold=0``; an ambiguous one
#   (inside a fall-back repeat) is its first occurrence.
# * Sessions that touch or overlap are merged: a 24/7 market has no transitions at all,
#   rather than a close and an open at the same instant every midnight. A calendar whose
#   week has no gap is open for ever after its last holiday or early close; `next_open`
#   and `next_close` then return None.
# * Queries are answered by computing the few sessions around a time on demand, not by
#   precomputing a schedule: a calendar is a handful of rules, valid for any year.
# * Transition queries are half-open on the left: `next_open(ts)` is the first open
#   strictly after `ts`, and `transitions(start, end)` yields events with
#   start < ts <= end. Consecutive windows (a, b], (b, c] therefore see each event once,
#   and a session gate that wakes at a transition never finds the same one again.
# * `exchange-calendars` was considered and not taken: it brings pandas and numpy into
#   the pure core for data we can state in a few lines of configuration, and its
#   schedules are precomputed over a fixed range of years. Real exchange holidays belong
#   in configuration (`TradingCalendar.from_spec`).

from __future__ import annotations

import datetime as _dt
import enum
import itertools
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeAlias

import attrs
from tradewind.actors._errors import InvalidCalendar
from tradewind.actors._values import datetime_from_ns, ns_from_datetime

_ONE_DAY = _dt.timedelta(days=1)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SESSION_TEXT = re.compile(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*")
_TIME_TEXT = re.compile(r"(\d{1,2}):(\d{2})")

#: An interval of trading, [open, close) in ns; close None means open for ever.
_Interval: TypeAlias = tuple[int, int | None]


@attrs.frozen
class Session:
    """One trading session of a weekday, in the exchange's local wall-clock time.

    Attributes:
        open: the local time trading starts.
        close: the local time trading stops; at or before `open` means the next day.
    """

    open: _dt.time
    close: _dt.time

    def __attrs_post_init__(self) -> None:
        for name in ("open", "close"):
            value = getattr(self, name)
            if not isinstance(value, _dt.time) or value.tzinfo is not None:
                raise InvalidCalendar([f"session {name}: {value!r} is not a naive local time"])

    @property
    def overnight(self) -> bool:
        """Whether the session closes on the day after it opens."""
        return self.close <= self.open

    @classmethod
    def parse(cls, text: str) -> Session:
        """Parse ``"HH:MM-HH:MM"`` (e.g. ``"09:30-16:00"``, ``"18:00-17:00"``).

        Raises:
            InvalidCalendar: the text is not two valid times joined by a dash.
        """
        match = _SESSION_TEXT.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidCalendar([f"session {text!r} is not HH:MM-HH:MM"])
        return cls(_parse_time(match[1]), _parse_time(match[2]))

    def span(self, day: _dt.date) -> tuple[_dt.datetime, _dt.datetime]:
        """Naive local (open, close) of this session when it opens on `day`."""
        start = _dt.datetime.combine(day, self.open)
        end = _dt.datetime.combine(day + _ONE_DAY if self.overnight else day, self.close)
        return start, end


def _parse_time(text: str) -> _dt.time:
    match = _TIME_TEXT.fullmatch(text.strip())
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise InvalidCalendar([f"{text!r} is not a time HH:MM"])
    return _dt.time(int(match[1]), int(match[2]))


class TransitionKind(enum.Enum):
    """Whether a market opened or closed."""

    OPEN = "OPEN"
    CLOSE = "CLOSE"


@attrs.frozen(order=True)
class SessionTransition:
    """The market opening or closing at `ts` (int ns since the epoch, UTC)."""

    ts: int
    kind: TransitionKind = attrs.field(order=False)


def _is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def _zone(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _is_zone(value):
        raise InvalidCalendar([f"{attribute.name}: {value!r} is not a known time zone"])


def _weekly(value: Sequence[Sequence[Session]]) -> tuple[tuple[Session, ...], ...]:
    days = [tuple(day) for day in value]
    # Anything that is not a Session is left in place for the validation to name.
    return tuple(
        tuple(sorted(day, key=lambda s: s.open))
        if all(isinstance(s, Session) for s in day)
        else day
        for day in days
    )


def _holidays(value: Iterable[_dt.date]) -> frozenset[_dt.date]:
    return frozenset(value)


def _early_closes(
    value: Mapping[_dt.date, _dt.time] | Iterable[tuple[_dt.date, _dt.time]],
) -> tuple[tuple[_dt.date, _dt.time], ...]:
    pairs = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted(dict(pairs).items()))


@attrs.frozen
class TradingCalendar:
    """When a market trades: weekly sessions in a time zone, minus holidays and early closes.

    Attributes:
        timezone: the IANA zone the session times are in (``"America/New_York"``).
        weekly: seven tuples of sessions, Monday first; a session belongs to the day it
            opens on. Sessions of one day must not overlap.
        holidays: dates (local) on which no session opens.
        early_closes: (date, local time) pairs: on that date trading stops at that time;
            a session open across it is cut there and sessions opening later that day do
            not open.
        name: a label for logs and errors.

    Raises:
        InvalidCalendar: unknown zone, not seven days, overlapping sessions, or a week
            without any session; the problems are listed in ``problems``.
    """

    timezone: str = attrs.field(validator=_zone)
    weekly: tuple[tuple[Session, ...], ...] = attrs.field(converter=_weekly)
    holidays: frozenset[_dt.date] = attrs.field(default=frozenset(), converter=_holidays)
    early_closes: tuple[tuple[_dt.date, _dt.time], ...] = attrs.field(
        default=(), converter=_early_closes
    )
    name: str = ""
    _zoneinfo: zoneinfo.ZoneInfo = attrs.field(init=False, repr=False, eq=False, hash=False)
    _early: dict[_dt.date, _dt.time] = attrs.field(init=False, repr=False, eq=False, hash=False)
    _last_special: _dt.date | None = attrs.field(init=False, repr=False, eq=False, hash=False)
    _continuous: bool = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise InvalidCalendar(problems)
        # attrs' documented way to fill derived fields of a frozen class.
        set_derived = object.__setattr__
        set_derived(self, "_zoneinfo", zoneinfo.ZoneInfo(self.timezone))
        set_derived(self, "_early", dict(self.early_closes))
        special = set(self.holidays) | set(self._early)
        set_derived(self, "_last_special", max(special) if special else None)
        set_derived(self, "_continuous", self._week_is_unbroken())

    def _problems(self) -> list[str]:
        if len(self.weekly) != 7:
            return [f"weekly: needs 7 days (Monday first), got {len(self.weekly)}"]
        problems: list[str] = []
        for index, day in enumerate(self.weekly):
            if not all(isinstance(session, Session) for session in day):
                problems.append(f"sessions.{_WEEKDAYS[index]}: {day!r} holds a non-Session")
                continue
            for earlier, later in itertools.pairwise(day):
                if earlier.overnight or later.open < earlier.close:
                    problems.append(
                        f"sessions.{_WEEKDAYS[index]}: {_show(earlier)} overlaps {_show(later)}"
                    )
        if not any(self.weekly):
            problems.append("sessions: the week has no session; the market would never open")
        for date, close in self.early_closes:
            if not isinstance(close, _dt.time) or close.tzinfo is not None:
                problems.append(f"early_closes.{date}: {close!r} is not a naive local time")
        return problems

    def _week_is_unbroken(self) -> bool:
        """Whether one plain week, in local time, is a single interval with no gap."""
        monday = _dt.date(2001, 1, 1)
        spans = [
            span
            for offset in range(-1, 8)
            for span in self._plain_spans(monday + _dt.timedelta(days=offset))
        ]
        end = spans[0][1]
        for start, close in spans[1:]:
            if start > end:
                return False
            end = max(end, close)
        return True

    # ------------------------------------------------------------ construction

    @classmethod
    def always_open(cls, name: str = "24/7") -> TradingCalendar:
        """A market that never closes (crypto): every day 00:00-00:00 UTC, no holidays."""
        day = (Session(_dt.time(0), _dt.time(0)),)
        return cls("UTC", [day] * 7, name=name)

    @classmethod
    def from_spec(cls, spec: Mapping[str, object]) -> TradingCalendar:
        """Build a calendar from plain data, such as a table of a TOML configuration.

        Keys: ``timezone`` (required, an IANA name); ``sessions`` (required), a table from
        weekday (``mon``..``sun``, or a range such as ``mon-fri``) to one ``"HH:MM-HH:MM"``
        string or a list of them; ``holidays``, a list of dates (``date`` or
        ``"YYYY-MM-DD"``); ``early_closes``, a table from date to local close time
        (``time`` or ``"HH:MM"``); ``name``. For example::

            {"timezone": "America/New_York", "sessions": {"mon-fri": "09:30-16:00"},
             "holidays": ["2026-12-25"], "early_closes": {"2026-11-27": "13:00"}}

        Raises:
            InvalidCalendar: every problem found, each naming its key, in ``problems``.
        """
        problems: list[str] = []
        unknown = sorted(set(spec) - {"timezone", "sessions", "holidays", "early_closes", "name"})
        problems.extend(f"{key}: unknown key" for key in unknown)
        timezone = spec.get("timezone")
        if not isinstance(timezone, str):
            problems.append(f"timezone: must be a time zone name, got {timezone!r}")
        elif not _is_zone(timezone):
            problems.append(f"timezone: {timezone!r} is not a known time zone")
        name = spec.get("name", "")
        if not isinstance(name, str):
            problems.append(f"name: must be a string, got {name!r}")
        weekly = _spec_sessions(spec.get("sessions"), problems)
        holidays = _spec_holidays(spec.get("holidays", ()), problems)
        early = _spec_early_closes(spec.get("early_closes", {}), problems)
        if problems or not isinstance(timezone, str) or not isinstance(name, str):
            raise InvalidCalendar(problems)
        return cls(timezone, weekly, holidays, early, name=name)

    # ------------------------------------------------------------ queries

    def is_open(self, ts: int) -> bool:
        """Whether the market is trading at `ts` (a session's open counts, its close not)."""
        day = self._local_date(ts)
        return any(
            start <= ts < end for d in (day - _ONE_DAY, day) for start, end in self._sessions_ns(d)
        )

    def next_open(self, ts: int) -> int | None:
        """The first time strictly after `ts` at which the market opens.

        Returns:
            ns since the epoch, or None if the market never opens again after `ts`
            (it is open for ever: a week without gaps past the last special date).
        """
        for start, _end in self._merged(ts):
            if start > ts:
                return start
        return None

    def next_close(self, ts: int) -> int | None:
        """The first time strictly after `ts` at which the market closes, or None if never."""
        for _start, end in self._merged(ts):
            if end is None:
                return None
            if end > ts:
                return end
        return None  # pragma: no cover -- _merged never ends without an open-ended interval

    def transitions(self, start: int, end: int) -> Iterator[SessionTransition]:
        """The opens and closes with start < ts <= end, in time order.

        A 24/7 stretch yields nothing; touching sessions are one session.
        """
        for opened, closed in self._merged(start):
            if opened > end:
                return
            if opened > start:
                yield SessionTransition(opened, TransitionKind.OPEN)
            if closed is None or closed > end:
                return
            if closed > start:
                yield SessionTransition(closed, TransitionKind.CLOSE)

    def sessions_on(self, day: _dt.date) -> tuple[tuple[int, int], ...]:
        """The (open, close) ns of the sessions opening on local date `day`, after holidays
        and early closes, before merging."""
        return tuple(self._sessions_ns(day))

    # ------------------------------------------------------------ internals

    def _local_date(self, ts: int) -> _dt.date:
        return datetime_from_ns(ts).astimezone(self._zoneinfo).date()

    def _plain_spans(self, day: _dt.date) -> list[tuple[_dt.datetime, _dt.datetime]]:
        return [session.span(day) for session in self.weekly[day.weekday()]]

    def _sessions_ns(self, day: _dt.date) -> list[tuple[int, int]]:
        if day in self.holidays:
            return []
        result: list[tuple[int, int]] = []
        cut_today = self._early.get(day)
        cut_tomorrow = self._early.get(day + _ONE_DAY)
        cuts = [
            _dt.datetime.combine(d, t)
            for d, t in ((day, cut_today), (day + _ONE_DAY, cut_tomorrow))
            if t is not None
        ]
        for start, plain_end in self._plain_spans(day):
            if cut_today is not None and start >= _dt.datetime.combine(day, cut_today):
                continue
            end = min([plain_end, *(cut for cut in cuts if start < cut)])
            start_ns = ns_from_datetime(start.replace(tzinfo=self._zoneinfo))
            end_ns = ns_from_datetime(end.replace(tzinfo=self._zoneinfo))
            if end_ns > start_ns:
                result.append((start_ns, end_ns))
        # Wall order is not always instant order: a wall time inside a spring-forward gap
        # lands after the first real time past the gap.
        result.sort()
        return result

    def _merged(self, ts: int) -> Iterator[_Interval]:
        """Merged trading intervals, in order, from the one open at or before `ts`'s day.

        The first interval may have begun earlier than it says (its real start is not
        looked for); every later one starts at a real open. Ends with an open-ended
        interval only if the market never closes again.
        """
        day = self._local_date(ts) - _ONE_DAY
        quiet_from = max(self._last_special or day, day) + _ONE_DAY
        current: tuple[int, int] | None = None
        while True:
            for start, end in self._sessions_ns(day):
                if current is None:
                    current = (start, end)
                elif start <= current[1]:
                    current = (current[0], max(current[1], end))
                else:
                    yield current
                    current = (start, end)
            if self._continuous and day > quiet_from and current is not None:
                yield (current[0], None)
                return
            day += _ONE_DAY


def _show(session: Session) -> str:
    return f"{session.open:%H:%M}-{session.close:%H:%M}"


def _spec_days(key: object) -> list[int] | None:
    if not isinstance(key, str):
        return None
    text = key.strip().lower()
    if text in _WEEKDAYS:
        return [_WEEKDAYS.index(text)]
    first, dash, last = text.partition("-")
    if dash and first.strip() in _WEEKDAYS and last.strip() in _WEEKDAYS:
        a, b = _WEEKDAYS.index(first.strip()), _WEEKDAYS.index(last.strip())
        # A range may wrap over the weekend: "sun-thu" is Sunday through Thursday.
        return [(a + i) % 7 for i in range((b - a) % 7 + 1)]
    return None


def _spec_sessions(value: object, problems: list[str]) -> list[list[Session]]:
    weekly: list[list[Session]] = [[] for _ in _WEEKDAYS]
    if not isinstance(value, Mapping):
        problems.append(f"sessions: must be a table of weekday to sessions, got {value!r}")
        return weekly
    for key, texts in value.items():
        days = _spec_days(key)
        if days is None:
            problems.append(f"sessions.{key}: not a weekday (mon..sun) or a range (mon-fri)")
            continue
        items = [texts] if isinstance(texts, str) else texts
        if not isinstance(items, list | tuple):
            problems.append(f"sessions.{key}: must be 'HH:MM-HH:MM' or a list, got {texts!r}")
            continue
        for index, text in enumerate(items):
            try:
                session = Session.parse(text)
            except InvalidCalendar:
                problems.append(f"sessions.{key}[{index}]: {text!r} is not HH:MM-HH:MM")
                continue
            for d in days:
                weekly[d].append(session)
    return weekly


def _spec_date(value: object) -> _dt.date | None:
    if isinstance(value, _dt.datetime):
        return None
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _spec_holidays(value: object, problems: list[str]) -> list[_dt.date]:
    if not isinstance(value, list | tuple | set | frozenset):
        problems.append(f"holidays: must be a list of dates, got {value!r}")
        return []
    result: list[_dt.date] = []
    for index, item in enumerate(value):
        day = _spec_date(item)
        if day is None:
            problems.append(f"holidays[{index}]: {item!r} is not a date YYYY-MM-DD")
        else:
            result.append(day)
    return result


def _spec_early_closes(value: object, problems: list[str]) -> dict[_dt.date, _dt.time]:
    if not isinstance(value, Mapping):
        problems.append(f"early_closes: must be a table of date to HH:MM, got {value!r}")
        return {}
    result: dict[_dt.date, _dt.time] = {}
    for key, item in value.items():
        day = _spec_date(key)
        if day is None:
            problems.append(f"early_closes.{key}: not a date YYYY-MM-DD")
            continue
        if isinstance(item, _dt.time) and item.tzinfo is None:
            result[day] = item
            continue
        try:
            if not isinstance(item, str):
                raise InvalidCalendar([f"{item!r} is not a string"])
            result[day] = _parse_time(item)
        except InvalidCalendar:
            problems.append(f"early_closes.{key}: {item!r} is not a time HH:MM")
    return result
