"""Trading calendars: sessions in an exchange zone, holidays, early closes, transitions."""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.actors import (
    InvalidCalendar,
    Session,
    SessionTransition,
    TradingCalendar,
    TransitionKind,
    datetime_from_ns,
    ns_from_datetime,
)

from tests.strategies import timestamps

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
TOKYO = ZoneInfo("Asia/Tokyo")
HOUR = 3600 * 10**9
DAY = 24 * HOUR
OPEN, CLOSE = TransitionKind.OPEN, TransitionKind.CLOSE

EQUITIES = TradingCalendar.from_spec(
    {
        "name": "NY equities",
        "timezone": "America/New_York",
        "sessions": {"mon-fri": "09:30-16:00"},
        "holidays": ["2026-12-25", _dt.date(2026, 1, 1)],
        "early_closes": {"2026-11-27": "13:00", _dt.date(2026, 12, 24): _dt.time(13)},
    }
)
# Sunday-to-Thursday overnight sessions, closing at 16:00 the next day (Chicago futures).
FUTURES = TradingCalendar.from_spec(
    {"timezone": "America/Chicago", "sessions": {"sun-thu": "17:00-16:00"}}
)
# A morning and an afternoon session with a lunch break.
TOKYO_STOCKS = TradingCalendar.from_spec(
    {"timezone": "Asia/Tokyo", "sessions": {"mon-fri": ["09:00-11:30", "12:30-15:30"]}}
)


def at(zone: _dt.tzinfo, wall_time: str) -> int:
    """ns since the epoch of a local wall time in `zone`, e.g. ``"2026-11-25 09:30"``."""
    return ns_from_datetime(_dt.datetime.fromisoformat(wall_time).replace(tzinfo=zone))


def wall(ts: int | None, zone: ZoneInfo) -> tuple[int, int, int, int, int]:
    """The local wall time of `ts` in `zone`: (year, month, day, hour, minute)."""
    assert ts is not None
    moment = datetime_from_ns(ts).astimezone(zone)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute)


def events(calendar: TradingCalendar, start: int, end: int) -> list[tuple[TransitionKind, int]]:
    return [(t.kind, t.ts) for t in calendar.transitions(start, end)]


class TestIsOpen:
    def test_open_during_a_regular_session(self):
        assert EQUITIES.is_open(at(NEW_YORK, "2026-11-25 12:00"))

    def test_the_open_instant_is_open_and_the_close_instant_is_not(self):
        assert EQUITIES.is_open(at(NEW_YORK, "2026-11-25 09:30"))
        assert not EQUITIES.is_open(at(NEW_YORK, "2026-11-25 16:00"))
        assert not EQUITIES.is_open(at(NEW_YORK, "2026-11-25 09:30") - 1)

    def test_closed_at_the_weekend(self):
        assert not EQUITIES.is_open(at(NEW_YORK, "2026-11-28 12:00"))

    def test_closed_on_a_holiday(self):
        assert not EQUITIES.is_open(at(NEW_YORK, "2026-12-25 12:00"))

    def test_closed_after_an_early_close(self):
        assert EQUITIES.is_open(at(NEW_YORK, "2026-11-27 12:59"))
        assert not EQUITIES.is_open(at(NEW_YORK, "2026-11-27 13:00"))

    def test_session_follows_daylight_saving_in_utc(self):
        winter = at(_dt.UTC, "2026-01-05 14:30")  # 09:30 EST
        summer = at(_dt.UTC, "2026-07-06 13:30")  # 09:30 EDT
        assert EQUITIES.is_open(winter)
        assert EQUITIES.is_open(summer)
        assert not EQUITIES.is_open(summer - 1)
        assert not EQUITIES.is_open(at(_dt.UTC, "2026-01-05 14:29"))

    def test_overnight_session_is_open_across_midnight(self):
        assert FUTURES.is_open(at(CHICAGO, "2026-11-24 23:00"))
        assert FUTURES.is_open(at(CHICAGO, "2026-11-25 03:00"))
        assert not FUTURES.is_open(at(CHICAGO, "2026-11-25 16:30"))

    def test_overnight_week_starts_sunday_evening_and_ends_friday_afternoon(self):
        assert not FUTURES.is_open(at(CHICAGO, "2026-11-22 16:59"))  # Sunday
        assert FUTURES.is_open(at(CHICAGO, "2026-11-22 17:00"))
        assert FUTURES.is_open(at(CHICAGO, "2026-11-27 15:59"))  # Friday
        assert not FUTURES.is_open(at(CHICAGO, "2026-11-27 17:30"))

    def test_lunch_break_is_closed(self):
        assert TOKYO_STOCKS.is_open(at(TOKYO, "2026-11-25 11:29"))
        assert not TOKYO_STOCKS.is_open(at(TOKYO, "2026-11-25 12:00"))
        assert TOKYO_STOCKS.is_open(at(TOKYO, "2026-11-25 12:30"))


class TestNextOpenAndClose:
    def test_next_open_is_strictly_after(self):
        opening = at(NEW_YORK, "2026-11-25 09:30")
        assert wall(EQUITIES.next_open(opening), NEW_YORK) == (2026, 11, 26, 9, 30)
        assert EQUITIES.next_open(opening - 1) == opening

    def test_next_open_skips_the_weekend_and_holidays(self):
        christmas_eve = at(NEW_YORK, "2026-12-24 18:00")
        assert wall(EQUITIES.next_open(christmas_eve), NEW_YORK) == (2026, 12, 28, 9, 30)

    def test_next_close_is_the_early_close(self):
        morning = at(NEW_YORK, "2026-11-27 10:00")
        assert wall(EQUITIES.next_close(morning), NEW_YORK) == (2026, 11, 27, 13, 0)

    def test_next_close_of_an_overnight_session(self):
        evening = at(CHICAGO, "2026-11-24 20:00")
        assert wall(FUTURES.next_close(evening), CHICAGO) == (2026, 11, 25, 16, 0)

    def test_next_open_across_the_spring_forward(self):
        saturday = at(NEW_YORK, "2026-03-07 12:00")
        monday_open = at(_dt.UTC, "2026-03-09 13:30")  # 09:30 EDT
        assert EQUITIES.next_open(saturday) == monday_open


class TestTransitions:
    def test_a_week_alternates_opens_and_closes_in_order(self):
        start = at(NEW_YORK, "2026-11-22 00:00")
        found = events(EQUITIES, start, start + 7 * DAY)
        assert [kind for kind, _ in found] == [OPEN, CLOSE] * 5
        assert [wall(ts, NEW_YORK)[2] for _, ts in found[::2]] == [23, 24, 25, 26, 27]
        assert wall(found[-1][1], NEW_YORK) == (2026, 11, 27, 13, 0)

    def test_window_is_open_on_the_left_and_closed_on_the_right(self):
        opening = at(NEW_YORK, "2026-11-25 09:30")
        closing = at(NEW_YORK, "2026-11-25 16:00")
        assert events(EQUITIES, opening, closing) == [(CLOSE, closing)]
        assert events(EQUITIES, opening - 1, closing - 1) == [(OPEN, opening)]

    def test_an_empty_window_yields_nothing(self):
        ts = at(NEW_YORK, "2026-11-25 12:00")
        assert events(EQUITIES, ts, ts) == []

    def test_lunch_break_is_a_close_and_an_open(self):
        start = at(TOKYO, "2026-11-25 00:00")
        found = events(TOKYO_STOCKS, start, start + DAY)
        assert [wall(ts, TOKYO)[3:] for _, ts in found] == [(9, 0), (11, 30), (12, 30), (15, 30)]

    def test_transitions_are_records_ordered_by_time(self):
        start = at(NEW_YORK, "2026-11-22 00:00")
        found = list(EQUITIES.transitions(start, start + 7 * DAY))
        assert found == sorted(found)
        assert isinstance(found[0], SessionTransition)

    @given(timestamps(), st.integers(0, 30 * DAY))
    def test_state_between_transitions_matches_is_open(self, start, length):
        for calendar in (EQUITIES, FUTURES, TOKYO_STOCKS):
            found = list(calendar.transitions(start, start + length))
            state = calendar.is_open(start)
            for event in found:
                assert event.kind is (CLOSE if state else OPEN)
                state = event.kind is OPEN
                assert calendar.is_open(event.ts) is state
                assert calendar.is_open(event.ts - 1) is not state
            assert calendar.is_open(start + length) is state

    @given(timestamps())
    def test_next_open_and_close_are_the_first_transitions_of_each_kind(self, ts):
        found = list(FUTURES.transitions(ts, ts + 8 * DAY))
        first = {kind: next(e.ts for e in found if e.kind is kind) for kind in TransitionKind}
        assert FUTURES.next_open(ts) == first[OPEN]
        assert FUTURES.next_close(ts) == first[CLOSE]


class TestAlwaysOpen:
    CRYPTO = TradingCalendar.always_open()

    @given(st.integers(-(10**18), 4 * 10**18))
    def test_is_open_at_any_time(self, ts):
        assert self.CRYPTO.is_open(ts)

    def test_never_opens_or_closes_again(self):
        assert (self.CRYPTO.next_open(0), self.CRYPTO.next_close(0)) == (None, None)

    def test_has_no_transitions_not_even_at_midnight(self):
        assert events(self.CRYPTO, 0, 400 * DAY) == []

    def test_a_holiday_in_a_24_7_market_closes_it_for_that_day_only(self):
        calendar = TradingCalendar.from_spec(
            {"timezone": "UTC", "sessions": {"mon-sun": "00:00-00:00"}, "holidays": ["2026-01-01"]}
        )
        start = at(_dt.UTC, "2025-12-30 00:00")
        new_year, next_day = at(_dt.UTC, "2026-01-01 00:00"), at(_dt.UTC, "2026-01-02 00:00")
        assert events(calendar, start, start + 400 * DAY) == [(CLOSE, new_year), (OPEN, next_day)]
        assert calendar.next_close(next_day) is None
        assert calendar.next_open(start) == next_day


class TestEarlyCloseOfOvernightSessions:
    CALENDAR = TradingCalendar(
        "America/Chicago",
        [[Session(_dt.time(17), _dt.time(16))]] * 5 + [[], []],
        early_closes={_dt.date(2026, 11, 26): _dt.time(12)},
    )

    def test_a_session_running_into_an_early_close_is_cut_there(self):
        wednesday_evening = at(CHICAGO, "2026-11-25 20:00")
        assert wall(self.CALENDAR.next_close(wednesday_evening), CHICAGO) == (2026, 11, 26, 12, 0)

    def test_a_session_opening_after_the_early_close_that_day_does_not_open(self):
        thursday = at(CHICAGO, "2026-11-26 13:00")
        assert wall(self.CALENDAR.next_open(thursday), CHICAGO) == (2026, 11, 27, 17, 0)

    def test_sessions_on_lists_the_days_sessions_after_adjustments(self):
        day = _dt.date(2026, 11, 25)
        assert self.CALENDAR.sessions_on(day) == (
            (at(CHICAGO, "2026-11-25 17:00"), at(CHICAGO, "2026-11-26 12:00")),
        )
        assert self.CALENDAR.sessions_on(_dt.date(2026, 11, 26)) == ()


class TestFromSpec:
    def test_builds_the_same_calendar_as_the_constructor(self):
        direct = TradingCalendar(
            "Asia/Tokyo",
            [[Session.parse("09:00-11:30"), Session.parse("12:30-15:30")]] * 5 + [[], []],
        )
        assert direct == TOKYO_STOCKS

    def test_a_single_weekday_and_a_list(self):
        calendar = TradingCalendar.from_spec(
            {"timezone": "UTC", "sessions": {"wed": ["10:00-11:00"]}}
        )
        assert [bool(day) for day in calendar.weekly] == [False, False, True] + [False] * 4

    def test_every_problem_is_reported_at_once_by_key(self):
        spec = {
            "timezone": "Mars/Olympus",
            "sessions": {"mon": "25:00-26:00", "funday": "09:00-10:00", "tue": 5},
            "holidays": ["2026-13-01", 7],
            "early_closes": {"someday": "13:00", "2026-11-27": "1pm", "2026-11-28": 13},
            "name": 3,
            "colour": "blue",
        }
        with pytest.raises(InvalidCalendar) as info:
            TradingCalendar.from_spec(spec)
        assert info.value.problems == (
            "colour: unknown key",
            "timezone: 'Mars/Olympus' is not a known time zone",
            "name: must be a string, got 3",
            "sessions.mon[0]: '25:00-26:00' is not HH:MM-HH:MM",
            "sessions.funday: not a weekday (mon..sun) or a range (mon-fri)",
            "sessions.tue: must be 'HH:MM-HH:MM' or a list, got 5",
            "holidays[0]: '2026-13-01' is not a date YYYY-MM-DD",
            "holidays[1]: 7 is not a date YYYY-MM-DD",
            "early_closes.someday: not a date YYYY-MM-DD",
            "early_closes.2026-11-27: '1pm' is not a time HH:MM",
            "early_closes.2026-11-28: 13 is not a time HH:MM",
        )

    @pytest.mark.parametrize(
        ("spec", "problem"),
        [
            ({"sessions": {"mon": "09:00-10:00"}}, "timezone: must be a time zone name"),
            ({"timezone": "UTC", "sessions": ["09:00-10:00"]}, "sessions: must be a table"),
            ({"timezone": "UTC", "sessions": {}}, "the week has no session"),
            ({"timezone": "UTC", "sessions": {1: "09:00-10:00"}}, "sessions.1: not a weekday"),
            (
                {"timezone": "UTC", "sessions": {"mon": "09:00-10:00"}, "holidays": "2026-01-01"},
                "holidays: must be a list",
            ),
            (
                {"timezone": "UTC", "sessions": {"mon": "09:00-10:00"}, "early_closes": []},
                "early_closes: must be a table",
            ),
            (
                {"timezone": "UTC", "sessions": {"mon": ["09:00-11:00", "10:00-12:00"]}},
                "sessions.mon: 09:00-11:00 overlaps 10:00-12:00",
            ),
            (
                {"timezone": "UTC", "sessions": {"mon": ["18:00-17:00", "19:00-20:00"]}},
                "sessions.mon: 18:00-17:00 overlaps 19:00-20:00",
            ),
            (
                {
                    "timezone": "UTC",
                    "sessions": {"mon": "09:00-10:00"},
                    "holidays": ["2026-01-01T00:00"],
                },
                r"holidays\[0\]",
            ),
        ],
    )
    def test_each_problem_names_its_key(self, spec, problem):
        with pytest.raises(InvalidCalendar, match=problem):
            TradingCalendar.from_spec(spec)

    def test_a_datetime_is_not_a_holiday_date(self):
        spec = {
            "timezone": "UTC",
            "sessions": {"mon": "09:00-10:00"},
            "holidays": [_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)],
        }
        with pytest.raises(InvalidCalendar, match=r"holidays\[0\]"):
            TradingCalendar.from_spec(spec)

    def test_invalid_calendar_is_a_value_error(self):
        with pytest.raises(ValueError, match="timezone"):
            TradingCalendar.from_spec({"timezone": 5, "sessions": {"mon": "09:00-10:00"}})


class TestConstructor:
    def test_weekly_must_have_seven_days(self):
        with pytest.raises(InvalidCalendar, match="needs 7 days"):
            TradingCalendar("UTC", [[Session(_dt.time(9), _dt.time(10))]] * 5)

    def test_unknown_zone_is_refused(self):
        with pytest.raises(InvalidCalendar, match="timezone: 'Nowhere/City'"):
            TradingCalendar("Nowhere/City", [[Session(_dt.time(9), _dt.time(10))]] * 7)

    def test_a_weekday_must_hold_sessions(self):
        with pytest.raises(InvalidCalendar, match=r"sessions\.mon: .* holds a non-Session"):
            TradingCalendar("UTC", [["09:00-10:00"]] * 7)  # type: ignore[list-item]

    def test_early_close_must_be_a_naive_time(self):
        aware = _dt.time(13, tzinfo=_dt.UTC)
        with pytest.raises(InvalidCalendar, match=r"early_closes\.2026-11-27"):
            TradingCalendar(
                "UTC",
                [[Session(_dt.time(9), _dt.time(10))]] * 7,
                (),
                {_dt.date(2026, 11, 27): aware},
            )

    def test_sessions_are_sorted_by_open(self):
        late, early = Session(_dt.time(13), _dt.time(14)), Session(_dt.time(9), _dt.time(10))
        calendar = TradingCalendar("UTC", [[late, early]] * 7)
        assert calendar.weekly[0] == (early, late)


class TestSession:
    def test_parse_reads_open_and_close(self):
        assert Session.parse(" 9:30 - 16:00 ") == Session(_dt.time(9, 30), _dt.time(16))

    @pytest.mark.parametrize("text", ["9-16", "09:30-24:00", "09:60-10:00", "", "09:30"])
    def test_parse_refuses_malformed_text(self, text):
        with pytest.raises(InvalidCalendar, match="HH:MM"):
            Session.parse(text)

    def test_a_close_at_or_before_the_open_is_overnight(self):
        assert Session.parse("17:00-16:00").overnight
        assert Session.parse("00:00-00:00").overnight
        assert not Session.parse("09:30-16:00").overnight

    def test_times_must_be_naive(self):
        with pytest.raises(InvalidCalendar, match="naive local time"):
            Session(_dt.time(9, tzinfo=_dt.UTC), _dt.time(10))


#: Days just before daylight-saving changes in several hemispheres, at 00:00 UTC.
DST_EVES = [
    at(_dt.UTC, "2026-03-06 00:00"),  # US spring forward on the 8th
    at(_dt.UTC, "2026-10-30 00:00"),  # US and Europe fall back
    at(_dt.UTC, "2026-03-27 00:00"),  # Europe springs forward on the 29th
    at(_dt.UTC, "2026-04-03 00:00"),  # Sydney falls back on the 5th
    at(_dt.UTC, "2026-10-02 00:00"),  # Sydney springs forward on the 4th
]
ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata"]


def quarter_hours() -> st.SearchStrategy[_dt.time]:
    """Times of day on a 15-minute grid, including the ones DST skips or repeats."""
    return st.integers(0, 95).map(lambda q: _dt.time(q // 4, q % 4 * 15))


@st.composite
def day_sessions(draw: st.DrawFn) -> list[Session]:
    """No session, one (possibly overnight) session, or two sessions with a break."""
    shape = draw(st.sampled_from(["none", "one", "two"]))
    if shape == "none":
        return []
    if shape == "one":
        return [Session(draw(quarter_hours()), draw(quarter_hours()))]
    a, b, c, d = sorted(draw(st.lists(quarter_hours(), min_size=4, max_size=4, unique=True)))
    return [Session(a, b), Session(c, d)]


@st.composite
def calendars(draw: st.DrawFn) -> TradingCalendar:
    """Random valid calendars: any zone, any weekly shape, a few specials around 2026."""
    weekly = draw(st.lists(day_sessions(), min_size=7, max_size=7).filter(any))
    dates = st.dates(_dt.date(2026, 1, 1), _dt.date(2026, 12, 31))
    return TradingCalendar(
        draw(st.sampled_from(ZONES)),
        weekly,
        draw(st.frozensets(dates, max_size=5)),
        draw(st.dictionaries(dates, quarter_hours(), max_size=3)),
    )


class TestAnyCalendar:
    @given(
        calendars(),
        st.sampled_from(DST_EVES) | timestamps(),
        st.integers(0, 4 * DAY),
        st.integers(1, 10 * DAY),
    )
    def test_transitions_alternate_and_agree_with_is_open(self, calendar, base, offset, length):
        start = base + offset
        found = list(calendar.transitions(start, start + length))
        assert [e.ts for e in found] == sorted({e.ts for e in found})
        state = calendar.is_open(start)
        for event in found:
            assert event.kind is (CLOSE if state else OPEN)
            state = event.kind is OPEN
            assert calendar.is_open(event.ts) is state
            assert calendar.is_open(event.ts - 1) is not state
        assert calendar.is_open(start + length) is state

    @given(calendars(), st.sampled_from(DST_EVES) | timestamps(), st.integers(0, 4 * DAY))
    def test_next_open_and_close_match_the_transitions(self, calendar, base, offset):
        ts = base + offset
        found = list(calendar.transitions(ts, ts + 400 * DAY))
        opens = [e.ts for e in found if e.kind is OPEN]
        closes = [e.ts for e in found if e.kind is CLOSE]
        assert calendar.next_open(ts) == (opens[0] if opens else None)
        assert calendar.next_close(ts) == (closes[0] if closes else None)
