"""The feed actor in a tiny system: recorders at the order, risk and persistence paths."""

from __future__ import annotations

from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
from tradewind.actors import Bar, Instrument, TradingCalendar, TransitionKind
from tradewind.actors._feed import (
    FeedActor,
    FeedKeeper,
    FeedStatistics,
    TaskFailed,
    bar_conflation_key,
)
from tradewind.actors._messages import (
    EndOfData,
    FeedResumed,
    FeedStale,
    Persist,
    SessionChanged,
)
from tradewind.actors._sources import (
    BarSource,
    CsvBarSource,
    SourceBar,
    SourceItem,
    SyntheticBarSource,
)
from tradewind.actors._synthetic import synthetic_bars
from tradewind.actors._tree import StoppableSource
from tradewind.runtime import (
    Actor,
    ActorSystem,
    ChildSpec,
    SupervisorFailed,
    SupervisorSpec,
    open_actor_system,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
MSFT = Instrument("MSFT", "USD", Decimal("0.01"))
INSTRUMENTS = {"AAPL": AAPL, "MSFT": MSFT}
T0 = 1_767_571_200 * 10**9  # Monday 2026-01-05T00:00:00Z
MINUTE = 60 * 10**9
DATA = Path(__file__).resolve().parents[2] / "docs" / "examples" / "data"


@attrs.define
class Journal:
    """What the recorders received, by path, in arrival order."""

    entries: list[tuple[str, object]] = attrs.field(factory=list)
    orders_depth: list[int] = attrs.field(factory=list)
    # for each bar the order actor handles: messages persistence had taken in by then
    persistence_accepted: list[int] = attrs.field(factory=list)
    got: trio.Event = attrs.field(factory=trio.Event)

    def of(self, path: str) -> list[object]:
        return [m for p, m in self.entries if p == path]

    def bars(self, path: str = "trading/orders") -> list[Bar]:
        return [m for m in self.of(path) if isinstance(m, Bar)]

    def persisted(self) -> list[object]:
        return [r for m in self.of("persistence") if isinstance(m, Persist) for r in m.records]


class Recorder(Actor):
    def __init__(self, journal: Journal, path: str) -> None:
        self.journal = journal
        self.path = path

    async def handle(self, message: object) -> None:
        if self.path == "trading/orders" and isinstance(message, Bar):
            self.journal.orders_depth.append(self.context.ref.statistics().mailbox_depth)
            persistence = self.context.system.ref("persistence").statistics()
            self.journal.persistence_accepted.append(persistence.accepted)
        self.journal.entries.append((self.path, message))
        self.journal.got.set()
        self.journal.got = trio.Event()


def tree(journal: Journal, feed: Callable[[], Actor], max_restarts: int = 5) -> SupervisorSpec:
    # The specs' `children` converter (tuple) hides the element type from mypy.
    trading = (
        ChildSpec("orders", lambda: Recorder(journal, "trading/orders")),
        ChildSpec("risk", lambda: Recorder(journal, "trading/risk")),
    )
    children = (
        ChildSpec("persistence", lambda: Recorder(journal, "persistence")),
        SupervisorSpec("trading", trading),
        ChildSpec("feed", feed),
    )
    return SupervisorSpec("test", children, max_restarts=max_restarts)


@asynccontextmanager
async def running(
    journal: Journal, feed: Callable[[], Actor], max_restarts: int = 5
) -> AsyncIterator[ActorSystem]:
    async with open_actor_system(tree(journal, feed, max_restarts), asyncio_loop=False) as system:
        yield system


def synthetic(count: int = 50) -> SyntheticBarSource:
    return SyntheticBarSource([AAPL, MSFT], seed=11, start_ts=T0, count=count)


async def replay(
    source: BarSource, keeper: FeedKeeper | None = None, **options: object
) -> tuple[Journal, FeedKeeper]:
    journal = Journal()
    keeper = keeper if keeper is not None else FeedKeeper()
    async with running(journal, lambda: FeedActor(keeper, source, **options)) as system:  # type: ignore[arg-type]
        await keeper.wait_finished()
        await system.quiesce()
    return journal, keeper


@attrs.define
class GatedSource:
    """Yields `first`, waits for `release`, then yields `then` (for the watchdog)."""

    first: list[Bar]
    then: list[Bar]
    release: trio.Event = attrs.field(factory=trio.Event)
    name: str = "gated"

    def describe(self) -> str:
        return "gated"

    async def items(self, *, skip: int = 0) -> AsyncGenerator[SourceItem, None]:
        items = [*self.first, None, *self.then]
        index = 0
        for bar in items:
            if bar is None:
                await self.release.wait()
                continue
            index += 1
            if index > skip:
                yield SourceBar(bar, f"gated:{index}")


def bar(ts: int, price: str = "100.00", instrument: str = "AAPL") -> Bar:
    return Bar(instrument, "1m", ts, price, price, price, price, 1)


async def replay_crashing_once(
    steps: int, at: Callable[[SourceBar], bool]
) -> tuple[Journal, FeedKeeper, int]:
    """Replay `steps` synthetic steps with a feed that raises once, right after it has
    handled (and fanned out) the first item `at` picks; return what the recorders got,
    the keeper and the feed's restarts."""
    crashed: list[int] = []

    class CrashOnce(FeedActor):
        async def handle(self, message: object) -> None:
            await super().handle(message)
            if isinstance(message, SourceBar) and at(message) and not crashed:
                crashed.append(1)
                raise RuntimeError("injected")

    journal = Journal()
    keeper = FeedKeeper()
    source = synthetic(steps)
    async with running(journal, lambda: CrashOnce(keeper, source)) as system:
        await keeper.wait_finished()
        await system.quiesce()
        restarts = system.statistics().actors["feed"].restarts
    return journal, keeper, restarts


class TestSequencing:
    async def test_bad_file_counts_every_kind_and_passes_good_bars(self) -> None:
        journal, keeper = await replay(CsvBarSource(DATA / "bad_bars.csv", INSTRUMENTS))
        assert keeper.statistics() == FeedStatistics(
            bars_in=13,
            accepted=5,
            duplicates=1,
            conflicts=1,
            out_of_order=1,
            invalid=5,
            outside_session=0,
            resumed=0,
            stale_events=0,
            session_events=1,
        )
        assert [(b.instrument, (b.ts - T0) // MINUTE) for b in journal.bars()] == [
            ("AAPL", 0),
            ("MSFT", 0),
            ("AAPL", 1),
            ("AAPL", 2),
            ("MSFT", 2),
        ]
        assert keeper.statistics().rejected == 7

    async def test_each_rejection_names_its_line_and_reason(self) -> None:
        _, keeper = await replay(CsvBarSource(DATA / "bad_bars.csv", INSTRUMENTS))
        reasons = {r.source_location: r.reason for r in keeper.rejections}
        assert sorted(reasons) == [f"bad_bars.csv:{n}" for n in (11, 12, 4, 5, 6, 8, 9)]
        assert reasons["bad_bars.csv:5"].startswith("open='NaN'")
        assert reasons["bad_bars.csv:6"].startswith("low='-1.00': price must be > 0")
        assert reasons["bad_bars.csv:11"].startswith("OUT_OF_ORDER")
        assert reasons["bad_bars.csv:12"].startswith("CONFLICT")
        assert "bad_bars.csv:10" not in reasons  # a duplicate is dropped quietly

    async def test_rejected_bars_never_reach_persistence(self) -> None:
        journal, _ = await replay(CsvBarSource(DATA / "bad_bars.csv", INSTRUMENTS))
        assert journal.persisted() == journal.bars()

    async def test_rows_the_parser_cannot_read_are_rejected_without_a_restart(
        self, tmp_path: Path
    ) -> None:
        # A Unicode digit in `ts` and a byte that is not UTF-8 once crashed the source,
        # and the restarted feed resumed into the same row until supervision gave up.
        path = tmp_path / "odd.csv"
        path.write_bytes(
            b"ts,instrument,open,high,low,close,volume\n"
            + f"{T0},AAPL,1,1,1,1,0\n²,AAPL,1,1,1,1,0\n".encode()
            + f"{T0 + MINUTE},AAPL\xe9,1,1,1,1,0\n".encode("latin-1")
            + f"{T0 + 2 * MINUTE},AAPL,1,1,1,1,0\n".encode()
        )
        journal = Journal()
        keeper = FeedKeeper()
        source = CsvBarSource(path, INSTRUMENTS)
        async with running(journal, lambda: FeedActor(keeper, source)) as system:
            await keeper.wait_finished()
            await system.quiesce()
            restarts = system.statistics().actors["feed"].restarts
        assert restarts == 0
        assert [b.ts for b in journal.bars()] == [T0, T0 + 2 * MINUTE]
        reasons = {r.source_location: r.reason for r in keeper.rejections}
        assert sorted(reasons) == ["odd.csv:3", "odd.csv:4"]
        assert reasons["odd.csv:3"].startswith("ts='²': must be int nanoseconds")
        assert "not valid UTF-8 text" in reasons["odd.csv:4"]
        assert (keeper.statistics().invalid, keeper.statistics().accepted) == (2, 2)

    async def test_an_older_bar_of_another_series_does_not_move_event_time_back(self) -> None:
        # Each series is sequenced on its own, so the older MSFT bar is passed on; but
        # the feed's event time stays at the newest bar, and the end of data says so.
        source = GatedSource([bar(T0 + MINUTE), bar(T0, instrument="MSFT")], [])
        source.release.set()
        journal, keeper = await replay(source)
        assert [(b.instrument, b.ts) for b in journal.bars()] == [
            ("AAPL", T0 + MINUTE),
            ("MSFT", T0),
        ]
        assert keeper.last_ts == T0 + MINUTE
        assert journal.of("trading/risk")[-1] == EndOfData(T0 + MINUTE)


class TestFanOut:
    async def test_every_accepted_bar_goes_to_orders_and_persistence_in_order(self) -> None:
        journal, keeper = await replay(synthetic(40))
        expected = list(synthetic_bars([AAPL, MSFT], seed=11, start_ts=T0, count=40))
        assert journal.bars() == expected
        assert journal.persisted() == expected
        assert keeper.statistics().accepted == len(expected)

    @pytest.mark.parametrize("replay", [True, False], ids=["replay", "paper"])
    async def test_each_bar_reaches_persistence_before_the_order_actor_sees_it(
        self, replay: bool
    ) -> None:
        # So the durable journal write of an intent decided on a bar always commits that
        # bar too, and a cold start never decides on it again.
        journal = Journal()
        keeper = FeedKeeper()
        async with running(
            journal, lambda: FeedActor(keeper, synthetic(40), replay=replay)
        ) as system:
            await keeper.wait_finished()
            await system.quiesce()
        sizes = [len(m.records) for m in journal.of("persistence") if isinstance(m, Persist)]
        assert sizes == [1] * 80
        # the n-th bar the order actor handles was already the n-th Persist taken in
        assert [a >= n for n, a in enumerate(journal.persistence_accepted, 1)] == [True] * 80

    async def test_replay_releases_one_bar_per_quiet_system(self) -> None:
        journal, _ = await replay(synthetic(30))
        assert journal.orders_depth
        assert set(journal.orders_depth) == {0}

    async def test_end_of_data_goes_to_risk_after_the_last_bar(self) -> None:
        journal, keeper = await replay(synthetic(10))
        # the session's open goes the bars' way, ahead of the first bar
        assert journal.of("trading/orders")[:2] == [
            SessionChanged(TransitionKind.OPEN, T0),
            journal.bars()[0],
        ]
        assert journal.of("trading/risk")[-1] == EndOfData(journal.bars()[-1].ts)
        assert keeper.finished.is_set()
        assert keeper.exhausted

    def test_conflation_key_supersedes_bars_of_one_series_only(self) -> None:
        a1, a2 = bar(T0), bar(T0 + MINUTE)
        assert bar_conflation_key(a1) == bar_conflation_key(a2)
        assert bar_conflation_key(a1) != bar_conflation_key(bar(T0, instrument="MSFT"))
        stale = FeedStale(1, 2)
        assert bar_conflation_key(stale) != bar_conflation_key(FeedStale(1, 2))

    def test_bad_options_are_refused(self) -> None:
        with pytest.raises(ValueError, match="stale_after"):
            FeedActor(FeedKeeper(), synthetic(), stale_after=0)


class TestCalendar:
    CALENDAR = TradingCalendar.from_spec(
        {"timezone": "UTC", "sessions": {"mon-fri": "00:00-00:03"}}
    )

    async def test_bars_outside_a_session_are_rejected_and_sessions_announced(self) -> None:
        day = 86_400 * 10**9
        bars = [bar(T0 + n * MINUTE) for n in range(5)] + [
            bar(T0 + day + n * MINUTE) for n in range(2)
        ]
        source = GatedSource(bars, [])
        source.release.set()
        journal, keeper = await replay(source, calendar=self.CALENDAR)
        assert [b.ts for b in journal.bars()] == [
            T0,
            T0 + MINUTE,
            T0 + 2 * MINUTE,
            T0 + day,
            T0 + day + MINUTE,
        ]
        assert keeper.statistics().outside_session == 2
        sessions = [m for m in journal.of("trading/orders") if isinstance(m, SessionChanged)]
        assert sessions == [
            SessionChanged(TransitionKind.OPEN, T0),
            SessionChanged(TransitionKind.CLOSE, T0 + 3 * MINUTE),
            SessionChanged(TransitionKind.OPEN, T0 + day),
        ]
        assert {r.reason for r in keeper.rejections} == {"outside the trading session"}

    async def test_session_events_go_ahead_of_the_bar_that_shows_them(self) -> None:
        day = 86_400 * 10**9
        source = GatedSource([bar(T0), bar(T0 + day)], [])
        source.release.set()
        journal, _ = await replay(source, calendar=self.CALENDAR)
        # on the bars' path (the order actor hands them to risk in that order)
        assert journal.of("trading/orders") == [
            SessionChanged(TransitionKind.OPEN, T0),
            bar(T0),
            SessionChanged(TransitionKind.CLOSE, T0 + 3 * MINUTE),
            SessionChanged(TransitionKind.OPEN, T0 + day),
            bar(T0 + day),
        ]

    async def test_a_bar_of_a_session_already_closed_is_rejected_as_out_of_order(self) -> None:
        # Day 1's close and day 2's open were announced when day 2's bar came; an MSFT
        # bar of day 1 arriving after it is not passed on as if it were current.
        day = 86_400 * 10**9
        source = GatedSource([bar(T0), bar(T0 + day), bar(T0 + MINUTE, instrument="MSFT")], [])
        source.release.set()
        journal, keeper = await replay(source, calendar=self.CALENDAR)
        assert [(b.instrument, b.ts) for b in journal.bars()] == [
            ("AAPL", T0),
            ("AAPL", T0 + day),
        ]
        assert [(r.source_location, r.ts, r.reason) for r in keeper.rejections] == [
            (
                "gated:3",
                T0 + MINUTE,
                (
                    "OUT_OF_ORDER: at 2026-01-05T00:01:00Z, before the close of its session "
                    "at 2026-01-05T00:03:00Z, already announced"
                ),
            )
        ]
        statistics = keeper.statistics()
        assert (statistics.out_of_order, statistics.rejected, statistics.accepted) == (1, 1, 2)
        assert journal.of("trading/risk")[-1] == EndOfData(T0 + day)
        # the rejected bar left MSFT's series untouched: its first bar of day 2 is new
        assert keeper.sequencer.last("MSFT", "1m") is None

    async def test_a_resumed_feed_continues_the_session_it_was_in(self) -> None:
        # Stored up to T0 + 1 min, inside the first session: the next bar of that session
        # announces nothing, and the next day's bar the close and the new open.
        day = 86_400 * 10**9
        keeper = FeedKeeper()
        stored = {("AAPL", "1m"): bar(T0 + MINUTE)}
        keeper.resume_from(stored, session_open=self.CALENDAR.is_open(T0 + MINUTE))
        source = GatedSource([bar(T0), bar(T0 + MINUTE), bar(T0 + 2 * MINUTE), bar(T0 + day)], [])
        source.release.set()
        journal, _ = await replay(source, keeper, calendar=self.CALENDAR)
        assert [b.ts for b in journal.bars()] == [T0 + 2 * MINUTE, T0 + day]
        sessions = [m for m in journal.of("trading/orders") if isinstance(m, SessionChanged)]
        assert sessions == [
            SessionChanged(TransitionKind.CLOSE, T0 + 3 * MINUTE),
            SessionChanged(TransitionKind.OPEN, T0 + day),
        ]


class TestWatchdog:
    async def test_silence_in_a_session_is_reported_then_resumed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        journal = Journal()
        keeper = FeedKeeper()
        source = GatedSource([bar(T0), bar(T0 + MINUTE)], [bar(T0 + 2 * MINUTE)])
        feed = lambda: FeedActor(keeper, source, replay=False, stale_after=30.0)  # noqa: E731
        async with running(journal, feed) as system:
            while not any(isinstance(m, FeedStale) for m in journal.of("trading/risk")):
                await journal.got.wait()
            stale = [m for m in journal.of("trading/risk") if isinstance(m, FeedStale)]
            assert len(stale) == 1
            assert stale[0].silent_ns == 30 * 10**9
            assert stale[0].ts == T0 + MINUTE + 30 * 10**9
            source.release.set()
            await keeper.wait_finished()
            await system.quiesce()
        risk = journal.of("trading/risk")
        resumed = risk.index(FeedResumed(T0 + 2 * MINUTE))
        assert risk.index(stale[0]) < resumed
        assert keeper.statistics().stale_events == 1

    async def test_no_report_once_the_session_has_closed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        journal = Journal()
        keeper = FeedKeeper()
        calendar = TradingCalendar.from_spec(
            {"timezone": "UTC", "sessions": {"mon": "00:00-00:02"}}
        )
        source = GatedSource([bar(T0), bar(T0 + MINUTE)], [])
        feed = lambda: FeedActor(  # noqa: E731
            keeper, source, replay=False, stale_after=90.0, calendar=calendar
        )
        async with running(journal, feed) as system:
            await trio.sleep(600)
            await system.quiesce()
            risk = journal.of("trading/risk")
            orders = journal.of("trading/orders")
            assert SessionChanged(TransitionKind.CLOSE, T0 + 2 * MINUTE) in orders
            assert not any(isinstance(m, FeedStale) for m in risk)
            await trio.sleep(7 * 86_400)  # the next Monday's session opens, and stays silent
            await system.quiesce()
            source.release.set()
            await keeper.wait_finished()
        risk = journal.of("trading/risk")
        week = 7 * 86_400 * 10**9
        assert SessionChanged(TransitionKind.OPEN, T0 + week) in journal.of("trading/orders")
        stale = [m for m in risk if isinstance(m, FeedStale)]
        assert [m.silent_ns for m in stale] == [90 * 10**9]

    async def test_a_resumed_feed_sees_the_session_close_during_the_silence(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        # Stored up to T0 + 2 min; the session closes at T0 + 3 min and no bar comes. The
        # event time runs on from the stored bar as of the resume, as after a bar: the
        # close is announced, and the feed is stale only once the next day's session has
        # been open for `stale_after`.
        calendar = TradingCalendar.from_spec(
            {"timezone": "UTC", "sessions": {"mon-fri": "00:00-00:03"}}
        )
        day = 86_400 * 10**9
        journal = Journal()
        keeper = FeedKeeper()
        keeper.resume_from(
            {("AAPL", "1m"): bar(T0 + 2 * MINUTE)}, session_open=calendar.is_open(T0 + 2 * MINUTE)
        )
        source = GatedSource([], [])
        feed = lambda: FeedActor(  # noqa: E731
            keeper, source, replay=False, stale_after=90.0, calendar=calendar
        )

        def seen() -> list[object]:
            return [m for p, m in journal.entries if p != "persistence"]

        async with running(journal, feed) as system:
            with trio.fail_after(2 * 86_400):  # virtual: fails, not hangs, if never seen
                while len(seen()) < 3:
                    await journal.got.wait()
            source.release.set()
            await keeper.wait_finished()
            await system.quiesce()
        assert seen() == [
            SessionChanged(TransitionKind.CLOSE, T0 + 3 * MINUTE),
            SessionChanged(TransitionKind.OPEN, T0 + day),
            FeedStale(T0 + day + 90 * 10**9, 90 * 10**9),
            EndOfData(T0 + 2 * MINUTE),
        ]

    def test_resume_anchors_the_event_time_at_the_clock_given(self) -> None:
        keeper = FeedKeeper()
        keeper.resume_from({("AAPL", "1m"): bar(T0)}, clock=100.0)
        assert keeper._estimate_ts(130.0) == T0 + 30 * 10**9


class TestRestarts:
    async def test_a_crash_after_fan_out_does_not_re_emit(self) -> None:
        journal, keeper, restarts = await replay_crashing_once(
            20, lambda item: item.bar.ts == T0 + 5 * MINUTE
        )
        expected = list(synthetic_bars([AAPL, MSFT], seed=11, start_ts=T0, count=20))
        assert restarts == 1
        assert journal.bars() == expected
        assert journal.persisted() == expected
        assert keeper.statistics().duplicates == 1  # the redelivered bar, dropped

    async def test_a_crash_with_bars_read_ahead_resumes_at_the_first_not_handed_over(
        self,
    ) -> None:
        # 200 items, so the pump holds up to 64 read ahead when the feed crashes at the
        # 101st: those were never handed over and are read again by the next instance.
        journal, keeper, restarts = await replay_crashing_once(
            100, lambda item: item.location == "synthetic:101"
        )
        expected = list(synthetic_bars([AAPL, MSFT], seed=11, start_ts=T0, count=100))
        assert (restarts, len(expected)) == (1, 200)
        assert journal.bars() == expected
        assert journal.persisted() == expected
        assert keeper.position == 200

    async def test_a_stopped_replay_hands_over_nothing_it_read_ahead(self) -> None:
        # Stopped from inside the cascade of the 25th bar: the 26th, already read
        # ahead, never reaches the feed.
        journal = Journal()
        keeper = FeedKeeper()
        source = StoppableSource(synthetic(100), cancel_waits=False)

        class StopAt25(Recorder):
            async def handle(self, message: object) -> None:
                await super().handle(message)
                if len(self.journal.bars()) == 25:
                    source.stop()

        children = (
            ChildSpec("persistence", lambda: Recorder(journal, "persistence")),
            SupervisorSpec(
                "trading",
                (
                    ChildSpec("orders", lambda: StopAt25(journal, "trading/orders")),
                    ChildSpec("risk", lambda: Recorder(journal, "trading/risk")),
                ),
            ),
            ChildSpec("feed", lambda: FeedActor(keeper, source)),
        )
        async with open_actor_system(
            SupervisorSpec("test", children), asyncio_loop=False
        ) as system:
            await keeper.wait_finished()
            await system.quiesce()
        assert len(journal.bars()) == 25
        assert keeper.position == 25
        assert journal.of("trading/risk")[-1] == EndOfData(journal.bars()[-1].ts)

    async def test_a_crash_between_persistence_and_the_order_actor_sends_the_bar_once(
        self,
    ) -> None:
        # The bar went to persistence, then the send to the order actor crashed: the
        # redelivered bar goes on to the order actor, but not to persistence again.
        failing = T0 + 5 * MINUTE

        class FailingOrders:
            def __init__(self, ref: Any) -> None:
                self.ref = ref
                self.failed = False

            async def send(self, message: object) -> None:
                if isinstance(message, Bar) and message.ts == failing and not self.failed:
                    self.failed = True
                    raise RuntimeError("injected")
                await self.ref.send(message)

        wrappers: list[FailingOrders] = []

        class CrashingSend(FeedActor):
            async def on_start(self) -> None:
                await super().on_start()
                if not wrappers:
                    wrappers.append(FailingOrders(self._orders))
                self._orders = wrappers[0]  # type: ignore[assignment]

        journal = Journal()
        keeper = FeedKeeper()
        async with running(journal, lambda: CrashingSend(keeper, synthetic(20))) as system:
            await keeper.wait_finished()
            await system.quiesce()
            restarts = system.statistics().actors["feed"].restarts
        expected = list(synthetic_bars([AAPL, MSFT], seed=11, start_ts=T0, count=20))
        assert restarts == 1
        assert wrappers[0].failed
        assert journal.bars() == expected
        assert journal.persisted() == expected  # the failing bar once
        assert keeper.statistics().duplicates == 0

    async def test_a_restarted_feed_resumes_its_source_where_it_stopped(self) -> None:
        keeper = FeedKeeper()
        journal = Journal()
        source = GatedSource([bar(T0), bar(T0 + MINUTE)], [bar(T0 + 2 * MINUTE)])
        async with running(journal, lambda: FeedActor(keeper, source, replay=False)) as system:
            while len(journal.bars()) < 2:
                await journal.got.wait()
            system.ref("feed").send_nowait(TaskFailed(RuntimeError("injected")))
            await system.quiesce()
            source.release.set()
            await keeper.wait_finished()
            await system.quiesce()
        assert [b.ts for b in journal.bars()] == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
        assert keeper.position == 3

    async def test_cold_start_skips_bars_already_stored(self) -> None:
        keeper = FeedKeeper()
        stored = list(synthetic_bars([AAPL, MSFT], seed=11, start_ts=T0, count=10))
        keeper.resume_from({b.series: b for b in stored})
        journal, _ = await replay(synthetic(15), keeper)
        assert journal.bars()[0].ts == T0 + 10 * MINUTE
        assert keeper.statistics().resumed == len(stored)
        assert keeper.statistics().duplicates == 0

    async def test_an_unreadable_source_crashes_the_feed_until_supervision_gives_up(
        self, tmp_path: Path
    ) -> None:
        journal = Journal()
        keeper = FeedKeeper()
        source = CsvBarSource(tmp_path / "missing.csv", INSTRUMENTS)
        with pytest.raises(SupervisorFailed):
            async with running(journal, lambda: FeedActor(keeper, source), max_restarts=1):
                await trio.sleep_forever()
