"""The FeedActor: source -> validate -> sequence -> session gate -> fan out; its keeper.

The feed pulls items from a `BarSource`, drops what is not a good new bar (rejections,
duplicates, conflicts, out-of-order bars, bars outside a trading session), tells risk
when sessions open and close and when data goes stale, and sends each accepted bar to
persistence and then to the order actor (where market data enters the trading
subtree). In replay mode it releases one item at a time and waits for the whole
system to be quiet before the next (the determinism barrier).
"""

# Design notes
# ------------
# * Two halves. A *pump* task, owned by the actor instance, reads the source and sends
#   each item to the feed's own mailbox; in a replay a settle hook hands over the next
#   bar the moment the previous one's cascade has finished (`_release_in_lockstep`). The
#   handler does everything else: sequencing, gating, fan-out. So all state changes happen
#   in the handler, one message at a time, and a crash while handling a bar is an ordinary
#   supervised crash: the item is redelivered to the next instance, and the keeper's
#   sequencer recognises a bar it already passed on. Rejected alternative: pumping inside
#   a handler. `quiesce()` counts the feed's own message in hand, so a handler can never
#   wait for the system to be quiet; and driving the source by self-messages alone
#   would let bar N+1 leave before the cascade of bar N finished.
# * The pump is a trio *system task* (`trio.lowlevel.spawn_system_task`) under its own
#   cancel scope, started in `on_start` and cancelled and awaited in `on_stop`: actors have
#   no nursery of their own, and this ties the task's lifetime to the instance exactly. A
#   system task must not raise; a failure is caught and handed to the actor as a message,
#   which re-raises it in the handler: an ordinary crash, seen by the supervisor.
# * Resume by position: the keeper counts the items the pump has put into the mailbox
#   (counted after `send` returned: a cancelled send enqueued nothing). A new instance's
#   pump re-opens the source with ``skip=position``. Items in the mailbox survive the
#   restart with it. So nothing is read twice and nothing is skipped.
# * The cheapest correct barrier: only an accepted bar can make anything downstream react,
#   so the pump waits only after items that could be accepted (a parsed bar), never
#   after a row the source already rejected. It waits with `system.settle()`, not
#   `quiesce()`: in a replay persistence's mailbox wakes lazily (`wake_after`), and the
#   records parked there change no decision, so persistence drains them in batches of
#   hundreds instead of being scheduled once per bar. The journal write of an intent is
#   an ask, which wakes it at once, and it takes the parked records first (FIFO), so a
#   bar is still stored no later than the intents decided on it. The end of the source
#   is followed by a full `quiesce()`.
# * Decide, then act: a bar is classified first (`BarSequencer.classify`, no change),
#   sent on, and only then recorded (`offer`), with no await between the send to the
#   order actor and the record. A send that is cancelled enqueued nothing, so a bar
#   redelivered after a crash is either recorded (and dropped as a duplicate) or was
#   never passed on; it is never sent twice. Session events are recorded one by one as
#   they are sent, for the same reason.
# * Each accepted bar goes to persistence on its own, *before* the order actor sees it
#   (`keeper.persisted` marks it sent, so a redelivery does not send it again).
#   Persistence then holds the bar ahead of every record its cascade produces: the
#   durable journal write of an intent decided on bar N also commits bar N, and a cold
#   start, resuming after the last stored bar, never decides on bar N again (which would
#   place the journaled order a second time under a new id). In a replay persistence's
#   own size- and time-triggered commits also end where a cascade begins (`cascade_cut`),
#   so the store holds whole cascades plus at most the journaled part of the last one.
#   Rejected: batching bars in the feed (one `Persist` per N bars). It saves a message
#   per bar, but lets a journaled intent reach the store before its bar -- in a replay,
#   and in paper trading from a source that a restart reads again (a file, the
#   synthetic generator). Persistence batches its units of work anyway.
# * The stale-data watchdog is a second owned task on trio time (virtual under MockClock):
#   when no bar arrived for `stale_after` seconds while the session (as the bars have
#   shown it) is open, it asks the handler to check, and the handler sends `FeedStale`
#   to risk; the next accepted bar sends `FeedResumed` first. Replays pass
#   ``stale_after=None``: a file is never late, and a worker-thread read under an
#   autojumping clock would otherwise look like silence.
# * The watchdog's event time is an estimate: the newest bar's time plus the trio time
#   since that bar arrived (`FeedKeeper._estimate_ts`). A cold start anchors it the same
#   way, at the newest stored bar and the trio time of the resume: without an anchor the
#   estimate would stand still at the stored bar, a session that closed during the
#   silence would never be seen closed, and the feed would be reported stale while the
#   market is shut.
# * Event time never goes back. `last_ts` is the newest bar's time (a bar of another
#   instrument may be older: its series is sequenced on its own). But a bar older than a
#   session close already announced belongs to a session the strategy and risk were told
#   is over: it is rejected as out of order. For a bar the calendar lets in this is the
#   same as "older than the open of the current session" (the bars in between are
#   outside the session), and it also covers a close the watchdog announced with no new
#   open yet. Without a calendar no session closes, so nothing changes there.

from __future__ import annotations

import collections
import math
from contextlib import aclosing
from typing import TYPE_CHECKING

import attrs
import trio
from tradewind.actors._calendar import TradingCalendar, TransitionKind
from tradewind.actors._marketdata import Bar, BarSequencer, BarStatus
from tradewind.actors._messages import (
    BarRejected,
    EndOfData,
    FeedResumed,
    FeedStale,
    Persist,
    SessionChanged,
)
from tradewind.actors._sources import BarSource, SourceBar, SourceRejection
from tradewind.actors._values import datetime_from_ns
from tradewind.runtime._actor import Actor
from tradewind.runtime._errors import MailboxClosed, MailboxFull

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

    from tradewind.actors._sources import SourceItem
    from tradewind.runtime._actor import ActorContext

_NS_PER_SECOND = 1_000_000_000
#: Items a replay's pump reads ahead of the feed (see `FeedActor._release_in_lockstep`).
_READ_AHEAD = 64


# ----------------------------------------------------------------------------- owned tasks


class OwnedTask:
    """A background task owned by one actor instance (started in `on_start`, stopped in
    `on_stop`), running as a trio system task under its own cancel scope.

    Args:
        name: the task's name, for trio's task tree and logs.
        body: the coroutine function to run.
        on_error: called (synchronously) with an `Exception` the body raised.

    Cancellation: `stop` cancels the body and waits for it to finish.
    """

    def __init__(
        self,
        name: str,
        body: Callable[[], Awaitable[None]],
        on_error: Callable[[Exception], None],
    ) -> None:
        self._name = name
        self._body = body
        self._on_error = on_error
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._started = False

    def start(self) -> None:
        """Spawn the task (once)."""
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._run, name=self._name)

    async def _run(self) -> None:
        try:
            with self._scope:
                await self._body()
        except Exception as exc:  # noqa: BLE001 -- a system task must not raise; the owner decides
            self._on_error(exc)
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Cancel the task and wait until it has finished (at once if never started)."""
        self._scope.cancel()
        if self._started:
            await self._done.wait()


@attrs.frozen
class TaskFailed:
    """An owned background task failed; the handler re-raises `error` (a crash)."""

    error: Exception


def report_to(context: ActorContext) -> Callable[[Exception], None]:
    """An `OwnedTask` error handler that hands the error to the owning actor's mailbox."""
    ref = context.ref
    log = context.log

    def report(error: Exception) -> None:
        log.error("background_task_failed", error=repr(error))
        try:
            ref.send_nowait(TaskFailed(error))
        except (MailboxFull, MailboxClosed):
            log.error("background_task_failure_not_delivered", error=repr(error))

    return report


# ----------------------------------------------------------------------------- messages


@attrs.frozen
class _SourceExhausted:
    """The pump reached the end of the source."""


@attrs.frozen
class _CheckStale:
    """The watchdog saw no bar for `stale_after`; the handler decides."""


def _format_ts(ts: int) -> str:
    """`ts` (ns since the epoch) as ISO-8601 UTC, exact (``2026-01-05T14:30:00.000000001Z``),
    for messages."""
    seconds, ns = divmod(ts, _NS_PER_SECOND)
    text = datetime_from_ns(seconds * _NS_PER_SECOND).strftime("%Y-%m-%dT%H:%M:%S")
    if ns:
        text += f".{ns:09d}".rstrip("0")
    return f"{text}Z"


def bar_conflation_key(message: object) -> Hashable:
    """The CONFLATE key for a strategy's mailbox: a bar supersedes a queued bar of the same
    instrument and timeframe; every other message is unique and never replaced."""
    if isinstance(message, Bar):
        return ("bar", message.instrument, message.timeframe)
    return ("message", id(message))


# ----------------------------------------------------------------------------- keeper


@attrs.frozen
class FeedStatistics:
    """Counts of a feed since its keeper was made.

    Attributes:
        bars_in: items taken from the source (bars and rejected rows).
        accepted: bars passed on.
        duplicates: repeats of the last accepted bar of a series, dropped quietly.
        conflicts: same key as the last accepted bar, different values: rejected.
        out_of_order: older than the last accepted bar of the series, or than a session
            close already announced: rejected.
        invalid: rows the source could not turn into a bar.
        outside_session: valid bars at a time the calendar is closed: rejected.
        resumed: bars at or before the point a cold start resumed from: skipped.
        stale_events: `FeedStale` events sent.
        session_events: `SessionChanged` events sent.
    """

    bars_in: int
    accepted: int
    duplicates: int
    conflicts: int
    out_of_order: int
    invalid: int
    outside_session: int
    resumed: int
    stale_events: int
    session_events: int

    @property
    def rejected(self) -> int:
        """Every item refused as wrong (not duplicates, not resumed)."""
        return self.conflicts + self.out_of_order + self.invalid + self.outside_session


@attrs.define
class FeedKeeper:
    """The feed's state that outlives its instances: made once, handed to every instance.

    Attributes:
        sequencer: the per-series sequencer (duplicates, conflicts, order).
        position: items the pump has put into the feed's mailbox (the resume point).
        rejections: the most recent rejections (bounded by `max_rejections`).
        finished: set once the source is exhausted and (replay) the system is quiet.
        error: the exception that stopped the pump for good, if any.
        last_ts: the newest accepted (or, after a cold start, stored) bar's time; never
            moves back.
        last_bar_clock: the trio time `last_ts` was reached: with it, the event-time
            estimate of the watchdog.
        closed_ts: the time of the last session close announced; a bar older than it
            belongs to a closed session and is rejected.
    """

    max_rejections: int = 10_000
    sequencer: BarSequencer = attrs.field(factory=BarSequencer)
    position: int = 0
    exhausted: bool = False
    finished: trio.Event = attrs.field(factory=trio.Event)
    error: Exception | None = None
    rejections: collections.deque[BarRejected] = attrs.field(init=False)
    persisted: Bar | None = None
    resume_after: dict[tuple[str, str], int] = attrs.field(factory=dict)
    session_open: bool | None = None
    session_ts: int | None = None
    last_ts: int | None = None
    closed_ts: int | None = None
    stale: bool = False
    last_bar_clock: float = -math.inf
    quiet_since: float = -math.inf
    bars_in: int = 0
    invalid: int = 0
    outside_session: int = 0
    closed_session: int = 0
    resumed: int = 0
    stale_events: int = 0
    session_events: int = 0
    _activity: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self.rejections = collections.deque(maxlen=self.max_rejections)

    def resume_from(
        self,
        last_bars: dict[tuple[str, str], Bar],
        *,
        session_open: bool = True,
        clock: float | None = None,
    ) -> None:
        """Cold start: continue after the last stored bar of each series.

        Bars at or before those times are skipped (counted as ``resumed``, not as
        duplicates or out of order). The session state continues too: as of the newest
        stored bar, `session_open` (as the calendar has it then; open without one). So
        a restart inside a session does not announce it open a second time -- a
        strategy that acts on the open would act twice. The watchdog's event time runs
        on from the newest stored bar as of `clock`, as after a bar that arrived then: a
        session that closes during the silence that follows is seen closed.

        Args:
            last_bars: the last stored bar of each series, by series.
            session_open: whether the session is open at the newest stored bar.
            clock: the trio time of the resume; by default `trio.current_time()`
                (so without it, call this inside ``trio.run``).

        Raises:
            RuntimeError: `clock` is not given and this is not inside ``trio.run``.
        """
        self.sequencer.resume(last_bars.values())
        for series, bar in last_bars.items():
            self.resume_after[series] = bar.ts
        if last_bars:
            newest = max(bar.ts for bar in last_bars.values())
            self.last_ts = self.session_ts = newest
            self.last_bar_clock = trio.current_time() if clock is None else clock
            self.session_open = session_open

    async def wait_finished(self) -> None:
        """Wait until the replay has finished (source exhausted, system quiet)."""
        await self.finished.wait()

    def statistics(self) -> FeedStatistics:
        """A frozen snapshot of the counts."""
        seq = self.sequencer.statistics()
        return FeedStatistics(
            bars_in=self.bars_in,
            accepted=seq.new,
            duplicates=seq.duplicate,
            conflicts=seq.conflict,
            out_of_order=seq.out_of_order + self.closed_session,
            invalid=self.invalid,
            outside_session=self.outside_session,
            resumed=self.resumed,
            stale_events=self.stale_events,
            session_events=self.session_events,
        )

    def _wake(self) -> None:
        """Wake the watchdog (something it waits for changed)."""
        self._activity.set()
        self._activity = trio.Event()

    def _estimate_ts(self, now: float) -> int:
        """The event time now, estimated from the last bar and the trio time since."""
        if self.last_ts is None or self.last_bar_clock == -math.inf:
            return self.last_ts or 0
        return self.last_ts + round((now - self.last_bar_clock) * _NS_PER_SECOND)

    async def _wait_activity(self) -> None:
        await self._activity.wait()


# ----------------------------------------------------------------------------- the actor


class FeedActor(Actor):
    """Pulls bars from a source, validates, sequences and gates them, and fans them out.

    Args:
        keeper: the state that survives restarts.
        source: where the bars come from.
        calendar: the trading calendar; None trades at all times.
        replay: release one item at a time and wait for the system to be quiet after
            each (the determinism barrier), and finish with `EndOfData`.
        stale_after: seconds of trio time without a bar during an open session before
            `FeedStale` goes to risk; None disables the watchdog (replays).
        orders_path, risk_path, persistence_path: the peers.

    Messages handled: `SourceBar`, `SourceRejection` (from its own pump), and internal
    control messages. Nothing is replied.
    """

    def __init__(
        self,
        keeper: FeedKeeper,
        source: BarSource,
        *,
        calendar: TradingCalendar | None = None,
        replay: bool = True,
        stale_after: float | None = None,
        orders_path: str = "trading/orders",
        risk_path: str = "trading/risk",
        persistence_path: str = "persistence",
    ) -> None:
        if stale_after is not None and not stale_after > 0:
            msg = f"stale_after: must be > 0 or None, got {stale_after}"
            raise ValueError(msg)
        self._keeper = keeper
        self._source = source
        self._calendar = calendar
        self._replay = replay
        self._stale_after = stale_after
        self._paths = (orders_path, risk_path, persistence_path)
        self._tasks: list[OwnedTask] = []

    async def on_start(self) -> None:
        """Resolve the peers and start the pump (and the watchdog, if enabled)."""
        system = self.context.system
        orders_path, risk_path, persistence_path = self._paths
        self._orders = system.ref(orders_path)
        self._risk = system.ref(risk_path)
        self._persistence = system.ref(persistence_path)
        report = report_to(self.context)
        if not self._keeper.finished.is_set():
            self._tasks.append(OwnedTask(f"{self.context.path}:pump", self._pump, report))
        if self._stale_after is not None:
            self._keeper.quiet_since = trio.current_time()
            self._tasks.append(OwnedTask(f"{self.context.path}:watchdog", self._watch, report))
        for task in self._tasks:
            task.start()

    async def on_stop(self) -> None:
        """Stop the owned tasks."""
        for task in self._tasks:
            await task.stop()

    # ------------------------------------------------------------------ the pump

    async def _pump(self) -> None:
        keeper = self._keeper
        ref = self.context.ref
        system = self.context.system
        replay = self._replay
        if replay:
            await system.settle()  # a redelivered item's cascade first
        if not keeper.exhausted:
            async with aclosing(self._source.items(skip=keeper.position)) as items:
                if replay:
                    await self._release_in_lockstep(aiter(items))
                else:
                    async for item in items:
                        await ref.send(item)
                        keeper.position += 1
            await ref.send(_SourceExhausted())
            keeper.exhausted = True
        if replay:
            await system.quiesce()
        keeper.finished.set()

    async def _release_in_lockstep(self, items: AsyncIterator[SourceItem]) -> None:
        """Replay: hand the items over one bar per settled system.

        Two halves share a queue of items read ahead. The pump's task reads the source
        while items are ready, up to `_READ_AHEAD`; a settle hook, run by the runtime the
        moment a bar's cascade has finished, hands the next bar to the feed's mailbox
        (with any rows the source rejected before it: nothing reacts to those). So a
        bar leaves without a task switch of its own, and the pump wakes once per
        `_READ_AHEAD // 2` bars. The source is never read further than it can produce:
        one that paces itself (``interval``) still sleeps before its next time step, so
        no bar is handed over earlier than the source gives it. Items read but not
        handed over are dropped with the task and read again from `keeper.position` by
        the next instance.
        """
        keeper = self._keeper
        ref = self.context.ref
        system = self.context.system
        source = self._source
        ahead: collections.deque[SourceItem] = collections.deque()
        wake = trio.Event()
        armed = stuck = exhausted = False

        def stopped() -> bool:
            # A stopped source (`StoppableSource.stop`: SIGINT, SIGTERM) ends after the
            # item in hand: what was read ahead is not handed over.
            return bool(getattr(source, "stopped", False))

        def ready() -> bool:
            # A unit to hand over: up to a bar, or the rest once the source has ended.
            return bool(ahead) and (exhausted or any(type(i) is SourceBar for i in ahead))

        def arm() -> None:
            # Hand the next unit over when the system next settles (at once if it is).
            nonlocal armed
            if not armed and not stuck and ready():
                armed = True
                system.when_settled(hand_over)

        def hand_over() -> None:
            nonlocal armed, stuck
            armed = False
            if stopped():
                ahead.clear()
            while ahead:
                try:
                    ref.send_nowait(ahead[0])
                except (MailboxFull, MailboxClosed):
                    stuck = True  # the pump sends it the slow way
                    break
                item = ahead.popleft()
                keeper.position += 1
                if type(item) is SourceBar:
                    break
            arm()  # the next bar, after this one's cascade
            if stuck or len(ahead) <= _READ_AHEAD // 2:
                wake.set()

        try:
            while True:
                while not exhausted and len(ahead) < _READ_AHEAD:
                    try:
                        ahead.append(await anext(items))
                    except StopAsyncIteration:
                        exhausted = True
                    arm()
                if stopped():
                    ahead.clear()
                    break
                if not ahead and exhausted:
                    break
                if stuck:
                    stuck = False
                    await ref.send(ahead.popleft())
                    keeper.position += 1
                    continue
                arm()
                await wake.wait()
                wake = trio.Event()
        finally:
            system.cancel_when_settled(hand_over)
        await system.settle()

    async def _watch(self) -> None:
        keeper = self._keeper
        stale_after = self._stale_after
        assert stale_after is not None  # noqa: S101 -- only started with a limit
        while not keeper.exhausted:
            woken = keeper._activity
            if keeper.stale or keeper.session_open is None:
                await woken.wait()
                continue
            now = trio.current_time()
            if keeper.session_open:
                due = keeper.quiet_since + stale_after
            else:
                due = self._clock_of_next_open(now)
            if now < due:
                with trio.move_on_at(due) as waited:
                    await woken.wait()
                if not waited.cancelled_caught:
                    continue  # something changed first: decide again
            await self.context.ref.send(_CheckStale())
            await woken.wait()

    def _clock_of_next_open(self, now: float) -> float:
        """The trio time at which the next session opens, by the event-time estimate."""
        keeper = self._keeper
        calendar = self._calendar
        if calendar is None:
            return math.inf  # pragma: no cover -- without a calendar a session never closes
        opens = calendar.next_open(keeper._estimate_ts(now))
        if opens is None:
            return math.inf
        return now + (opens - keeper._estimate_ts(now)) / _NS_PER_SECOND

    # ------------------------------------------------------------------ handling

    async def handle(self, message: object) -> None:
        """Handle one item from the pump, or a control message."""
        if type(message) is SourceBar:
            await self._on_bar(message)
        elif type(message) is SourceRejection:
            self._keeper.bars_in += 1
            self._keeper.invalid += 1
            self._reject(message.location, message.reason, None)
        elif type(message) is _SourceExhausted:
            await self._on_exhausted()
        elif type(message) is _CheckStale:
            await self._on_check_stale()
        elif type(message) is TaskFailed:
            raise message.error
        else:
            self.context.log.warning("unexpected_message", message_type=type(message).__name__)

    async def _on_bar(self, item: SourceBar) -> None:
        keeper = self._keeper
        bar = item.bar
        keeper.bars_in += 1
        resume_ts = keeper.resume_after.get(bar.series)
        if resume_ts is not None and bar.ts <= resume_ts:
            keeper.resumed += 1
            return
        calendar = self._calendar
        if calendar is not None and not calendar.is_open(bar.ts):
            keeper.outside_session += 1
            self._reject(item.location, "outside the trading session", bar.ts)
            return
        status = keeper.sequencer.classify(bar)
        if status is BarStatus.DUPLICATE:
            keeper.sequencer.offer(bar)
            return
        if status is not BarStatus.NEW:
            keeper.sequencer.offer(bar)
            rule = (
                "conflicts with the accepted bar"
                if status is BarStatus.CONFLICT
                else ("older than the last accepted bar of its series")
            )
            self._reject(item.location, f"{status.value}: {rule}", bar.ts)
            return
        closed = keeper.closed_ts
        if closed is not None and bar.ts < closed:
            # Not offered to the sequencer: the series' last bar stays the newest one.
            keeper.closed_session += 1
            self._reject(
                item.location,
                f"{BarStatus.OUT_OF_ORDER.value}: at {_format_ts(bar.ts)}, before the close of "
                f"its session at {_format_ts(closed)}, already announced",
                bar.ts,
            )
            return
        await self._session_events(bar.ts, from_bar=True)
        if keeper.stale:
            await self._risk.send(FeedResumed(bar.ts))
            keeper.stale = False
        if keeper.persisted is not bar:
            # Persistence has the bar before anything its cascade produces (see the notes).
            await self._persistence.send(Persist((bar,)))
            keeper.persisted = bar
        await self._orders.send(bar)
        keeper.sequencer.offer(bar)
        newest = keeper.last_ts is None or bar.ts > keeper.last_ts
        if newest:
            keeper.last_ts = bar.ts
        if self._stale_after is not None:
            # An older bar (another series) is news of the feed, not of the event time.
            keeper.quiet_since = trio.current_time()
            if newest:
                keeper.last_bar_clock = keeper.quiet_since
            keeper._wake()

    async def _session_events(self, ts: int, *, from_bar: bool) -> None:
        """Send the session opens and closes up to `ts`, in time order, the way the bars
        go: through the order actor, which hands them to risk ahead of the bar.

        The feed learns of sessions from its bars: the first bar opens the feed's view of
        a session (at its own time), later bars and the watchdog's clock reveal the
        calendar's transitions in between. On the bars' path an event reaches risk and
        the strategy in the same batch as the bar that revealed it, so what the strategy
        decides on both is journaled in one write (see "Cold start" in
        ``docs/trading-system.md``).
        """
        keeper = self._keeper
        calendar = self._calendar
        if calendar is None or keeper.session_ts is None:
            first = from_bar and not keeper.session_open
            events = [SessionChanged(TransitionKind.OPEN, ts)] if first else []
        else:
            events = [
                SessionChanged(t.kind, t.ts) for t in calendar.transitions(keeper.session_ts, ts)
            ]
        for event in events:
            await self._orders.send(event)
            keeper.session_ts = event.ts
            keeper.session_open = event.kind is TransitionKind.OPEN
            if not keeper.session_open:
                keeper.closed_ts = event.ts
            keeper.session_events += 1
            if keeper.session_open:
                keeper.quiet_since = trio.current_time()
            self.context.log.info("session_changed", kind=event.kind.value, ts=event.ts)

    async def _on_exhausted(self) -> None:
        keeper = self._keeper
        end_ts = keeper.last_ts if keeper.last_ts is not None else 0
        await self._risk.send(EndOfData(end_ts))
        self.context.log.info("source_exhausted", statistics=attrs.asdict(keeper.statistics()))

    async def _on_check_stale(self) -> None:
        keeper = self._keeper
        stale_after = self._stale_after
        assert stale_after is not None  # noqa: S101 -- only sent by the watchdog
        now = trio.current_time()
        estimate = keeper._estimate_ts(now)
        await self._session_events(estimate, from_bar=False)
        silent = now - keeper.quiet_since
        if keeper.session_open and not keeper.stale and silent >= stale_after:
            silent_ns = round(silent * _NS_PER_SECOND)
            await self._risk.send(FeedStale(estimate, silent_ns))
            keeper.stale = True
            keeper.stale_events += 1
            self.context.log.warning("feed_stale", silent_s=silent)
        keeper._wake()

    def _reject(self, location: str, reason: str, ts: int | None) -> None:
        rejection = BarRejected(ts if ts is not None else 0, reason, location)
        self._keeper.rejections.append(rejection)
        self.context.log.warning("bar_rejected", location=location, reason=reason)
