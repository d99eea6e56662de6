"""The assembled trading system: `open_trading_system` builds and runs the supervision tree.

From validated `Settings` it opens the store (migrating it), replays into it a spill
journal a crashed run left, records the run, makes the state keepers, builds the tree of
``docs/trading-system.md`` (``persistence``, ``trading/{orders,risk,strategy}``,
``feed``, the configured processes), starts it, and hands back a `TradingSystem`: wait
for a replay to finish, stop the feed, swap risk limits, read the keepers and the
`RunSummary`. Leaving the block stops the feed, lets in-flight work finish, flushes
persistence, stops the tree, and records how the run ended together with its summary.
"""

# Design notes
# ------------
# * The keepers are made here, once, and closed over by the child factories, so every
#   instance a restart builds works on the same state (the design's state keepers). The
#   tree builder is the only place that knows all of them, which is also what makes the
#   summary and the tests' view of the final state possible.
# * Stopping the feed is done at the source, not by stopping the feed actor: the source
#   is wrapped so that a stop request ends its iteration (cancelling a wait for the next
#   item). The pump then reports the end of data exactly as at the end of a file, the
#   last bars go to persistence, risk and the strategy see `EndOfData`, and the system
#   quiesces. Only then is the tree stopped: nothing accepted is left in a mailbox to be
#   dead-lettered at shutdown, and the orderly stop (reverse start order, persistence
#   last) flushes the rest.
# * The run record is written straight through the store, outside the event log: a run
#   id and wall-clock times differ run to run, and the event log of a replay must not.
#   The summary is stored with the finish (`write_run_summary`) for `tradewind report`.
# * A spill journal left by a crashed run is replayed into the store first, right after
#   the store is opened (and migrated), before the cold start below reads it: the
#   journal's records were accepted by that run, and state rebuilt without them would
#   reuse its order ids and miss its fills (see the persistence module's notes). A
#   store that cannot take the replay fails the start, the journal kept.
# * One run per store: the run lock (`Store.run_lock`) is taken before anything else
#   touches the store -- before the migration when the store is opened here, before the
#   spill journal's replay in any case -- and held until the run's end is recorded. It
#   dies with the process, so a run without an outcome in the store is one that was
#   killed, never one still running elsewhere: that is what makes the cold start below
#   safe (a second process used to take a live run for a killed one and "resume" it).
# * Cold start (`_resume_wanted`): paper trading always continues from the store, and so
#   does a replay whose newest stored run had the same configuration and never finished
#   (the process was killed). Then positions come from the stored fills, client order id
#   sequences from the stored maximum, open orders from the journal (and the paper venue
#   is rebuilt from it), the strategy's history and risk's marks from the stored bars, and
#   the feed resumes after the last stored bar of each series. A replay that ended is run
#   again from its first bar: it is deterministic and every write is idempotent on its
#   natural key, so the same configuration rewrites identical rows.
# * Dead letters reach persistence through the runtime's hook; one that cannot be queued
#   (mailbox full or closed) is kept and written directly once the tree has stopped.
#   Persistence's own final stop takes what is queued for it (committed or spilled, see
#   the persistence module's notes), so a `Persist` dead-lettered at it only happens
#   when it crashed for good: its records, and whatever persistence still holds in
#   memory once the tree has stopped, are counted as not kept (`RunSummary.not_kept`);
#   such a run is recorded as failed and `tradewind run` does not exit 0.
# * Crash injection for tests (`CrashPlan`) wraps the child factories: an actor raises
#   `InjectedCrash` once, at a chosen message (before its handler sees it) or at a chosen
#   send in the middle of a handler (instead of enqueuing). It lives here so that
#   `tradewind.testing` can offer it.

from __future__ import annotations

import contextlib
import contextvars
import itertools
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs
import structlog
import trio
from tradewind.actors._broker import Broker
from tradewind.actors._errors import MissingPrice
from tradewind.actors._feed import FeedActor, FeedKeeper, bar_conflation_key
from tradewind.actors._marketdata import SeriesKey
from tradewind.actors._messages import Flush, Persist, PersistDurably, SwapRiskLimits
from tradewind.actors._order_actor import OrderActor, OrderBook
from tradewind.actors._orders import Fill, Order, OrderEventKind, OrderStatus
from tradewind.actors._paper import PaperBroker, PaperConfig
from tradewind.actors._paper_venue import DurablePaperBroker
from tradewind.actors._persistence import (
    PersistenceActor,
    PersistenceKeeper,
    dead_letter_record,
    replay_spill_journal,
)
from tradewind.actors._risk import DenyReason
from tradewind.actors._risk_actor import RiskActor, RiskBook
from tradewind.actors._settings import (
    DEFAULT_JOURNAL_DIR,
    Settings,
    config_hash,
    load_strategy_factory,
)
from tradewind.actors._sources import (
    BarSource,
    CsvBarSource,
    SyntheticBarSource,
)
from tradewind.actors._strategy import (
    Strategy,
    StrategyActor,
    StrategyHost,
)
from tradewind.runtime._actor import ActorRef
from tradewind.runtime._errors import MailboxClosed, MailboxFull
from tradewind.runtime._intensity import Backoff
from tradewind.runtime._records import SystemStatistics
from tradewind.runtime._specs import (
    AnySpec,
    ChildSpec,
    MailboxSpec,
    Overflow,
    ProcessSpec,
    Restart,
    RestartStrategy,
    SupervisorSpec,
)
from tradewind.runtime._system import (
    ActorSystem,
    open_actor_system,
)
from tradewind.storage._store import (
    Store,
    open_store,
)
from tradewind.storage._url import POSTGRESQL

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from pathlib import Path

    from tradewind.actors._marketdata import Bar
    from tradewind.actors._portfolio import Portfolio
    from tradewind.actors._risk import RiskLimits
    from tradewind.actors._sources import SourceItem
    from tradewind.runtime._actor import Actor
    from tradewind.runtime._records import DeadLetter

__all__ = [
    "ACTOR_PATHS",
    "CrashPlan",
    "InjectedCrash",
    "PositionLine",
    "RunSummary",
    "StoppableSource",
    "TradingSystem",
    "open_trading_system",
]

#: The fixed paths of the trading actors.
ACTOR_PATHS = ("persistence", "trading/orders", "trading/risk", "trading/strategy", "feed")
_MAX_REJECTIONS_IN_SUMMARY = 50
_FINISH_TIMEOUT = 60.0

Outcome = Literal["running", "completed", "stopped", "failed"]


# ----------------------------------------------------------------------------- summary


@attrs.frozen
class PositionLine:
    """One instrument's final position in a summary."""

    instrument: str
    currency: str
    quantity: Decimal
    average_price: Decimal | None
    realized_pnl: Decimal
    unrealized_pnl: Decimal | None
    fees: Decimal


@attrs.frozen
class RunSummary:
    """What a run did, for the end-of-run table and `tradewind report`.

    Attributes:
        run_id, mode, outcome, source: the run, how it ended, where its bars came from.
        bars_in: items taken from the source (bars and rejected rows).
        bars_accepted: bars passed on to trading and persistence.
        bars_rejected: rows and bars refused (invalid, conflicting, out of order,
            outside the session).
        duplicates: repeated bars dropped quietly.
        conflated: bars superseded in the strategy's mailbox (CONFLATE only).
        orders: orders placed; fills: fills applied.
        denials: intents risk refused, by reason code.
        restarts: restarts per actor path (only those that restarted).
        dead_letters: messages given up on.
        positions: the final positions, marked to the last bars.
        realized_pnl, unrealized_pnl, fees: totals per currency.
        trading_state: risk's final trading state.
        events, event_log_digest: records accepted by persistence and their SHA-256.
        wall_time: seconds from start to the end of the run.
        rejections: the first rejected rows, ``location: reason``.
        not_kept: records accepted by persistence, or sent to it and never handled,
            that are neither in the store nor in the spill journal when the run ends
            (a stop that could not commit them and had no journal, or whose spill
            failed; messages dead-lettered after persistence crashed for good): they
            are lost with the process. A run with any is recorded as failed.
    """

    run_id: str
    mode: str
    outcome: str
    source: str
    bars_in: int
    bars_accepted: int
    bars_rejected: int
    duplicates: int
    conflated: int
    orders: int
    fills: int
    denials: dict[str, int]
    restarts: dict[str, int]
    dead_letters: int
    positions: tuple[PositionLine, ...]
    realized_pnl: dict[str, Decimal]
    unrealized_pnl: dict[str, Decimal]
    fees: dict[str, Decimal]
    trading_state: str
    events: int
    event_log_digest: str
    wall_time: float
    rejections: tuple[str, ...] = ()
    not_kept: int = 0

    def to_json(self) -> str:
        """The summary as JSON (decimals as exact strings)."""
        import json  # noqa: PLC0415 -- only needed when a summary is stored

        return json.dumps(_summary_converter.unstructure(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSummary:
        """A summary stored with `to_json`."""
        import json  # noqa: PLC0415 -- only needed when a summary is read

        return _summary_converter.structure(json.loads(text), cls)


_summary_converter = cattrs.Converter()
_summary_converter.register_unstructure_hook(Decimal, str)
_summary_converter.register_structure_hook(Decimal, lambda value, _type: Decimal(value))


# ----------------------------------------------------------------------------- crash injection


class InjectedCrash(RuntimeError):
    """The crash a `CrashPlan` injects (a test's doing, not a defect)."""


#: The path of the actor whose handler the current task is running (set by `CrashPlan`).
_handling: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tradewind_crash_plan_handling", default=None
)


@attrs.define
class CrashPlan:
    """Crash chosen actors at chosen points, once each (crash-containment tests).

    Two kinds of point, counted per actor over every instance of it:

    * ``"message"``: the n-th message the actor handles raises `InjectedCrash` before the
      handler sees it.
    * ``"send"``: the n-th ``send``/``ask`` the actor's handler makes raises
      `InjectedCrash` instead of enqueuing -- a crash in the middle of a handler, after
      the effects before it went out and before the ones after it. Needs `installed`.

    Args:
        at: actor path -> the number (from 1) of the message or send that crashes.
        point: ``"message"`` or ``"send"``.

    Attributes:
        counts: messages or sends seen per path so far (every wrapped path is counted,
            so a crash-free run with an empty plan measures them).
        fired: the paths whose crash has happened.
    """

    at: Mapping[str, int] = attrs.field(factory=dict)
    point: Literal["message", "send"] = "message"
    counts: dict[str, int] = attrs.field(factory=dict)
    fired: set[str] = attrs.field(factory=set)

    def _due(self, path: str) -> bool:
        self.counts[path] = self.counts.get(path, 0) + 1
        if path in self.fired or self.counts[path] < self.at.get(path, 0) or path not in self.at:
            return False
        self.fired.add(path)
        return True

    def wrap(self, path: str, factory: Callable[[], Actor]) -> Callable[[], Actor]:
        """A factory whose instances count (and crash) as planned for `path`."""

        def build() -> Actor:
            actor = factory()
            handle = actor.handle

            async def handle_planned(message: Any) -> Any:  # noqa: ANN401 -- the runtime's Message
                if self.point == "message" and self._due(path):
                    raise InjectedCrash(f"{path}: injected crash at a {type(message).__name__}")
                token = _handling.set(path)
                try:
                    return await handle(message)
                finally:
                    _handling.reset(token)

            actor.handle = handle_planned  # type: ignore[method-assign]
            return actor

        return build

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Count (and crash) the sends of wrapped handlers while the block runs.

        Patches `ActorRef.send` and `ActorRef.ask` for the duration of the block; only
        sends made while a wrapped handler runs are affected.
        """
        send, ask = ActorRef.send, ActorRef.ask
        plan = self

        def check() -> None:
            path = _handling.get()
            if path is not None and plan.point == "send" and plan._due(path):
                raise InjectedCrash(f"{path}: injected crash at a send")

        async def planned_send(ref: ActorRef, message: Any) -> None:  # noqa: ANN401
            check()
            await send(ref, message)

        async def planned_ask(ref: ActorRef, message: Any, *, timeout: float = 10.0) -> Any:  # noqa: ANN401, ASYNC109
            check()
            return await ask(ref, message, timeout=timeout)

        ActorRef.send = planned_send  # type: ignore[method-assign, assignment]
        ActorRef.ask = planned_ask  # type: ignore[method-assign, assignment]
        try:
            yield
        finally:
            ActorRef.send = send  # type: ignore[method-assign]
            ActorRef.ask = ask  # type: ignore[method-assign]


# ----------------------------------------------------------------------------- sources


@attrs.define
class StoppableSource:
    """A `BarSource` whose iteration ends early when `stop` is called.

    With ``cancel_waits`` (paper mode) the wait for the next item is cancelled by `stop`,
    so a paper feed waiting for its next bar ends at once; without it (replays: a file or
    a generator, never waiting long) `stop` takes effect before the next item is read,
    and no cancel scope is entered per item (one costs about 3 µs, a tenth of a
    replayed bar's budget). Either way the item in hand is never cut in half.
    """

    inner: BarSource
    cancel_waits: bool = True
    _stopped: bool = False
    _scope: trio.CancelScope | None = None

    @property
    def name(self) -> str:
        """The inner source's name."""
        return self.inner.name

    def describe(self) -> str:
        """The inner source's description."""
        return self.inner.describe()

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called."""
        return self._stopped

    def stop(self) -> None:
        """End the iteration after the item in hand (cancelling a wait for the next)."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def items(self, *, skip: int = 0) -> AsyncGenerator[SourceItem, None]:
        """The inner source's items until it ends or `stop` is called."""
        async with aclosing(self.inner.items(skip=skip)) as items:
            iterator = aiter(items)
            if not self.cancel_waits:
                while not self._stopped:
                    try:
                        item = await anext(iterator)
                    except StopAsyncIteration:
                        return
                    yield item
                return
            while not self._stopped:
                with trio.CancelScope() as scope:
                    self._scope = scope
                    try:
                        item = await anext(iterator)
                    except StopAsyncIteration:
                        return
                    finally:
                        self._scope = None
                if scope.cancelled_caught:
                    return
                yield item


def _count_data_lines(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        return max(0, sum(1 for line in handle if line.strip()) - 1)


# ----------------------------------------------------------------------------- the handle


@attrs.define(eq=False)
class TradingSystem:
    """A running trading system (valid inside `open_trading_system`).

    Attributes:
        settings: the configuration it runs.
        run_id: the stored run's id.
        store: the open store.
        system: the actor system.
        feed, orders, risk, strategy, persistence: the state keepers.
        broker: the broker the order actor uses.
        expected_items: how many items the source will produce, if known (progress).
        result: the final summary, once the block has exited.
    """

    settings: Settings
    run_id: str
    store: Store
    system: ActorSystem
    feed: FeedKeeper
    orders: OrderBook
    risk: RiskBook
    strategy: StrategyHost
    persistence: PersistenceKeeper
    broker: Broker
    source: StoppableSource
    expected_items: int | None
    started: float
    _result: RunSummary | None = None
    winding_down: bool = False
    _final_stats: SystemStatistics | None = None

    @property
    def result(self) -> RunSummary:
        """The final summary, once the `open_trading_system` block has exited.

        Raises:
            RuntimeError: the run has not ended yet (use `summary()` for a snapshot).
        """
        if self._result is None:
            msg = "the run has not ended yet; summary() gives a snapshot"
            raise RuntimeError(msg)
        return self._result

    @property
    def portfolio(self) -> Portfolio:
        """Risk's portfolio: positions from the fills, marked to the latest bars."""
        return self.risk.portfolio

    @property
    def finished(self) -> bool:
        """Whether the source is exhausted and (replay) the system was quiet after it."""
        return self.feed.finished.is_set()

    async def wait_finished(self) -> None:
        """Wait until the source is exhausted (or stopped) and the system is quiet.

        In paper mode with an endless source this returns only after `stop_feed`.

        Cancellation: a checkpoint; safe to cancel.
        """
        await self.feed.wait_finished()
        await self.system.quiesce()

    def stop_feed(self) -> None:
        """Ask the feed to stop after the item in hand (the run then finishes normally)."""
        self.source.stop()

    async def swap_risk_limits(self, limits: RiskLimits) -> RiskLimits:
        """Replace the risk limits while running; returns the limits now in force."""
        reply = await self.system.ref("trading/risk").ask(SwapRiskLimits(limits))
        result: RiskLimits = reply
        return result

    def summary(self, outcome: Outcome = "running") -> RunSummary:
        """A snapshot of what the run did so far (see `RunSummary`)."""
        stats = self._final_stats or self.system.statistics()
        feed = self.feed.statistics()
        risk = self.risk.statistics()
        book = self.orders.statistics()
        persisted = self.persistence.statistics()
        portfolio = self.portfolio
        lines = []
        for symbol, position in sorted(portfolio.positions.items()):
            try:
                unrealized: Decimal | None = portfolio.unrealized_pnl(symbol)
            except MissingPrice:
                unrealized = None
            lines.append(
                PositionLine(
                    instrument=symbol,
                    currency=position.currency,
                    quantity=position.quantity,
                    average_price=position.avg_entry_price,
                    realized_pnl=position.realized_pnl,
                    unrealized_pnl=unrealized,
                    fees=position.fees,
                )
            )
        try:
            unrealized_total = portfolio.unrealized_pnl_by_currency()
        except MissingPrice:
            unrealized_total = {}
        strategy_stats = stats.actors.get("trading/strategy")
        rejections = tuple(
            f"{r.source_location}: {r.reason}"
            for r in itertools.islice(self.feed.rejections, _MAX_REJECTIONS_IN_SUMMARY)
        )
        return RunSummary(
            run_id=self.run_id,
            mode=self.settings.mode,
            outcome=outcome,
            source=self.source.describe(),
            bars_in=feed.bars_in,
            bars_accepted=feed.accepted,
            bars_rejected=feed.rejected,
            duplicates=feed.duplicates,
            conflated=strategy_stats.conflated if strategy_stats is not None else 0,
            orders=book.placed,
            fills=book.fills,
            denials=_denials(risk.denied, self.strategy.statistics().overloaded),
            restarts={path: s.restarts for path, s in sorted(stats.actors.items()) if s.restarts},
            # Live, not from the wind-down snapshot: what the stopping system dead-letters
            # after it (messages still queued or in hand) is stored and counts too.
            dead_letters=self.system.statistics().dead_letters,
            positions=tuple(lines),
            realized_pnl=dict(sorted(portfolio.realized_pnl_by_currency().items())),
            unrealized_pnl=dict(sorted(unrealized_total.items())),
            fees=dict(sorted(portfolio.fees.items())),
            trading_state=risk.state.value,
            events=persisted.accepted,
            event_log_digest=persisted.event_log_digest,
            wall_time=time.perf_counter() - self.started,
            rejections=rejections,
        )


# ----------------------------------------------------------------------------- building


@attrs.frozen
class _Parts:
    """Everything the tree is built from."""

    settings: Settings
    store: Store
    source: StoppableSource
    broker: Broker
    strategy_factory: Callable[[], Strategy]
    feed: FeedKeeper
    orders: OrderBook
    risk: RiskBook
    strategy: StrategyHost
    persistence: PersistenceKeeper


def paper_config(settings: Settings) -> PaperConfig:
    """How the paper venue fills, from the ``[broker]`` section: the configured
    instruments, the bars' timeframe, and the trading calendar's zone for the trading day
    of DAY orders (the day risk counts its loss in)."""
    broker = settings.broker
    return PaperConfig(
        list(settings.instrument_map().values()),
        slippage_ticks=broker.slippage_ticks,
        fee_per_unit=broker.fee_per_unit,
        fee_bps=broker.fee_bps,
        max_volume_fraction=broker.max_volume_fraction,
        latency_ns=broker.latency_ns,
        timeframe=settings.data.timeframe,
        timezone=settings.calendar.timezone if settings.calendar is not None else None,
    )


def make_source(
    settings: Settings, *, interval: float | None = None, unpaced_until: int | None = None
) -> BarSource:
    """The bar source the settings describe (CSV or synthetic).

    Args:
        settings: the run's settings.
        interval: overrides `data.interval`, the synthetic source's pacing in seconds
            (the test harness passes 0 and paces time steps itself).
        unpaced_until: a cold start's newest stored bar time: the synthetic source does
            not pace the time steps up to it again.
    """
    data = settings.data
    instruments = settings.instrument_map()
    if data.source == "csv":
        assert data.path is not None  # noqa: S101 -- DataSection guarantees it
        return CsvBarSource(data.path, instruments, data.timeframe)
    return SyntheticBarSource(
        list(instruments.values()),
        seed=data.seed,
        start_ts=data.start_ts,
        timeframe=data.timeframe,
        count=data.count,
        start_price=data.start_price,
        interval=data.interval if interval is None else interval,
        unpaced_until=unpaced_until,
    )


#: In a replay, persistence is woken once this many records are queued (or by an ask,
#: or at the end): a batch per wake-up instead of one scheduler pass per bar.
_REPLAY_PERSISTENCE_WAKE = 256


def _denials(by_risk: Mapping[DenyReason, int], overloaded: int) -> dict[str, int]:
    """Denials by reason code: risk's, plus the intents the strategy's full outbox refused
    (OVERLOADED, as risk's own overload)."""
    counts = Counter({reason.value: n for reason, n in by_risk.items()})
    counts[DenyReason.OVERLOADED.value] += overloaded
    return {reason: n for reason, n in sorted(counts.items()) if n}


def _tree(
    parts: _Parts,
    wrap: Callable[[str, Callable[[], Actor]], Callable[[], Actor]],
) -> SupervisorSpec:
    settings = parts.settings
    sup = settings.supervision
    data = settings.data
    backoff = Backoff(initial=sup.backoff_initial, maximum=sup.backoff_max)
    capacity = sup.mailbox_capacity

    def child(
        name: str, path: str, factory: Callable[[], Actor], mailbox: MailboxSpec | None = None
    ) -> ChildSpec:
        return ChildSpec(
            name=name,
            factory=wrap(path, factory),
            mailbox=mailbox or MailboxSpec(capacity, Overflow.BLOCK),
            handler_timeout=sup.handler_timeout,
            shutdown_timeout=sup.shutdown_timeout,
            max_redeliveries=sup.max_redeliveries,
        )

    calendar = settings.calendar.calendar() if settings.calendar is not None else None
    spill, spill_path = _spill_journal(settings)
    persistence = child(
        "persistence",
        "persistence",
        lambda: PersistenceActor(
            parts.persistence,
            parts.store,
            batch_size=settings.persistence.batch_size,
            flush_interval=settings.persistence.flush_interval,
            max_pending=settings.persistence.max_pending,
            spill=spill,
            spill_path=spill_path,
            durable_timeout=settings.persistence.durable_timeout,
            cascade_cut=settings.replay,
        ),
    )
    # Persistence flushes may wait on the database: its handler has no timeout. In a
    # replay its mailbox wakes lazily: it drains records in batches while the feed's
    # barrier (`settle()`) waits only for the trading cascade (see `_feed.py`).
    persistence = attrs.evolve(
        persistence,
        handler_timeout=None,
        mailbox=MailboxSpec(
            capacity,
            Overflow.BLOCK,
            wake_after=min(_REPLAY_PERSISTENCE_WAKE, capacity) if settings.replay else 1,
        ),
    )
    reconnect_backoff = settings.broker.reconnect_backoff()
    subscriptions = tuple(settings.instrument_map())
    orders = child(
        "orders",
        "trading/orders",
        lambda: OrderActor(
            parts.orders,
            parts.broker,
            reconnect_backoff=reconnect_backoff,
            subscriptions=subscriptions,
        ),
    )
    risk = child("risk", "trading/risk", lambda: RiskActor(parts.risk))
    strategy_mailbox = (
        MailboxSpec(capacity, Overflow.CONFLATE, key=bar_conflation_key)
        if data.conflate
        else MailboxSpec(capacity, Overflow.BLOCK)
    )
    strategy = child(
        "strategy",
        "trading/strategy",
        lambda: StrategyActor(parts.strategy, parts.strategy_factory, persistence="persistence"),
        strategy_mailbox,
    )
    feed = child(
        "feed",
        "feed",
        lambda: FeedActor(
            parts.feed,
            parts.source,
            calendar=calendar,
            replay=settings.replay,
            stale_after=None if settings.replay else data.stale_after,
        ),
    )
    trading_children: tuple[AnySpec, ...] = (orders, risk, strategy)
    trading = SupervisorSpec(
        "trading",
        trading_children,
        strategy=RestartStrategy.REST_FOR_ONE,
        max_restarts=sup.max_restarts,
        within=sup.within,
        backoff=backoff,
    )
    processes: list[AnySpec] = [
        ProcessSpec(
            name=p.name,
            argv=p.argv,
            restart=Restart(p.restart),
            shutdown_timeout=p.shutdown_timeout,
        )
        for p in settings.processes
    ]
    root_children: tuple[AnySpec, ...] = (persistence, trading, feed, *processes)
    return SupervisorSpec(
        "tradewind",
        root_children,
        strategy=RestartStrategy.ONE_FOR_ONE,
        max_restarts=sup.max_restarts,
        within=sup.within,
        backoff=backoff,
    )


def _spill_journal(settings: Settings) -> tuple[bool, Path]:
    """Whether persistence spills, and the journal file (`load_settings` fills both in;
    settings made another way get the same defaults, relative to the working folder)."""
    persistence = settings.persistence
    spill = (not settings.replay) if persistence.spill is None else persistence.spill
    path = persistence.spill_path or DEFAULT_JOURNAL_DIR / f"{settings.strategy.id}.jsonl"
    return spill, path


@attrs.frozen
class _Journal:
    """What a cold start read from the store for the venue (`PaperBroker.restore`)."""

    orders: tuple[Order, ...]
    fills: tuple[Fill, ...]
    last_bars: dict[SeriesKey, int]
    cancels_asked: dict[str, int] = attrs.field(factory=dict)


async def _resume_wanted(settings: Settings, store: Store) -> bool:
    """Whether this run continues from the store (a cold start) or starts afresh.

    Paper trading always continues. A replay continues only when the newest run in the
    store ran the same configuration and never finished (it was killed); a replay
    that ended (completed, stopped or failed) is run again from its first bar, which
    rewrites identical rows. Checked before this run is recorded.
    """
    counts = await store.counts()
    if not counts.bars and not counts.orders:
        return False
    if not settings.replay:
        return True
    runs = await store.runs()
    if not runs:
        return False
    newest = max(runs, key=lambda run: run.started_ts)
    return newest.outcome is None and newest.config_hash == config_hash(settings)


async def _keepers(
    settings: Settings, store: Store, *, resume: bool = False
) -> tuple[FeedKeeper, OrderBook, RiskBook, StrategyHost, _Journal | None]:
    instruments = settings.instrument_map()
    calendar = settings.calendar.calendar() if settings.calendar is not None else None
    feed = FeedKeeper()
    orders = OrderBook()
    strategy_id = settings.strategy.id
    risk_portfolio = strategy_portfolio = None
    journal: _Journal | None = None
    warm: list[Bar] = []
    open_orders: tuple[Order, ...] = ()
    stored_orders: tuple[Order, ...] = ()
    stored_fills: tuple[Fill, ...] = ()
    if resume:
        last_bars = await store.last_bars()
        last_ts = max((bar.ts for bar in last_bars.values()), default=None)
        feed.resume_from(
            last_bars,
            session_open=calendar is None or last_ts is None or calendar.is_open(last_ts),
        )
        seq = await store.max_client_order_seq(strategy_id)
        stored_orders = tuple(await store.orders())
        open_orders = tuple(await store.open_orders())
        orders = OrderBook.restore(open_orders, {strategy_id: seq} if seq else {})
        stored_fills = tuple(await store.fills())
        if stored_fills:
            risk_portfolio = await store.portfolio()
            strategy_portfolio = risk_portfolio.copy()
        journal = _Journal(
            stored_orders,
            stored_fills,
            {series: bar.ts for series, bar in last_bars.items()},
            await _cancels_asked(store, open_orders),
        )
        history = settings.strategy.history
        for instrument, timeframe in sorted(last_bars):
            stored = await store.bars(instrument, timeframe)
            warm.extend(stored[-history:])
        warm.sort(key=lambda bar: (bar.ts, bar.instrument))
    # The reconnect jitter is drawn from the configured seed: a run is reproducible.
    orders.rng = random.Random(settings.seed)  # noqa: S311 -- jitter, not a secret
    risk_kwargs: dict[str, Any] = {} if risk_portfolio is None else {"portfolio": risk_portfolio}
    risk = RiskBook(
        settings.risk.limits(),
        instruments,
        settings=settings.risk.settings(),
        calendar=calendar,
        **risk_kwargs,
    )
    host_kwargs: dict[str, Any] = (
        {} if strategy_portfolio is None else {"portfolio": strategy_portfolio}
    )
    strategy = StrategyHost(
        strategy_id, instruments, history=settings.strategy.history, **host_kwargs
    )
    strategy.seed_history(warm)
    # An order still INITIALIZED was journaled but never announced to the strategy: it
    # hears of it from the reconciliation's SUBMITTED and ACCEPTED, as it would have
    # without the crash (a reaction to one order's acknowledgement sees the same open
    # orders). Risk counted it from its intent on, and counts it now.
    strategy.seed_orders(o for o in open_orders if o.status is not OrderStatus.INITIALIZED)
    risk.seed_orders(open_orders)
    for bar in warm:  # risk values exposure at the last prices, as it did before the crash
        if bar.instrument in instruments:
            risk.last_prices[bar.instrument] = bar.close
            risk.portfolio.mark(bar.instrument, bar.close, bar.ts)
    if warm:
        # The day goes on: its loss budget and order rate are what the crashed run left,
        # and a kill switch tripped on an earlier day holds unless `resume_next_day`.
        newest = warm[-1].ts
        since = risk.resume_since(newest, stored_fills)
        before = await store.last_bars(before=since)
        closes = {b.instrument: b.close for b in sorted(before.values(), key=lambda b: b.ts)}
        day_bars = await store.bars(start=since)
        risk.resume(newest, stored_fills, day_bars, closes, stored_orders, since=since)
        strategy.trading_state = risk.state
        if risk.killed and open_orders:
            risk.cancel_left_working(newest, open_orders)
    return feed, orders, risk, strategy, journal


async def _cancels_asked(store: Store, open_orders: Iterable[Order]) -> dict[str, int]:
    """When each PENDING_CANCEL order's cancel was asked: its journaled request's time
    (the order's last change may be a later fill, which would make the restored venue
    take the cancel later than the venue that was killed)."""
    asked: dict[str, int] = {}
    for order in open_orders:
        if order.status is OrderStatus.PENDING_CANCEL:
            events = await store.order_events(order.client_order_id)
            requests = [e.ts for e in events if e.kind is OrderEventKind.CANCEL_REQUESTED]
            if requests:
                asked[order.client_order_id] = requests[-1]
    return asked


async def _paper_broker(
    config: PaperConfig, journal: _Journal | None, settings: Settings, store: Store
) -> Broker:
    """The configured paper venue. ``[broker] state = "journal"``: at a cold start rebuilt
    from the stored journal; ``"tables"``: loaded from its own tables (cleared when the
    run starts afresh, i.e. `journal` is None)."""
    if settings.broker.state == "tables":
        traded = journal.last_bars if journal is not None else None
        return await DurablePaperBroker.open(store, config, fresh=journal is None, traded=traded)
    broker = PaperBroker(config)
    if journal is not None:
        broker.restore(
            journal.orders, journal.fills, journal.last_bars, cancels_asked=journal.cancels_asked
        )
    return broker


def new_run_id() -> str:
    """A fresh run id: the UTC start time and a random suffix (``20260105T143000-3fa9c1``)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@asynccontextmanager
async def open_trading_system(
    settings: Settings,
    *,
    store: Store | None = None,
    source: BarSource | None = None,
    broker: Broker | None = None,
    strategy_factory: Callable[[], Strategy] | None = None,
    run_id: str | None = None,
    crash_plan: CrashPlan | None = None,
    wrap_actor: Callable[[str, Callable[[], Actor]], Callable[[], Actor]] | None = None,
) -> AsyncIterator[TradingSystem]:
    """Build, start and finally stop the trading system a configuration describes.

    Args:
        settings: the validated configuration (`load_settings`).
        store: an open store to use; None opens (and migrates, and closes) the
            configured one.
        source: the bars to use instead of the configured data source.
        broker: the broker to use instead of a `PaperBroker` from ``settings.broker``.
        strategy_factory: builds the strategy instead of the configured class.
        run_id: the id to record the run under; None makes a fresh one.
        crash_plan: crashes to inject (tests).
        wrap_actor: wraps each actor factory, given its path (tests, instrumentation).

    Yields:
        The running `TradingSystem`, once every actor has started.

    Raises:
        SupervisorFailed: the root supervisor gave up (the run is recorded as failed).
        StoreInUse: another run holds the store's run lock (`Store.run_lock`); nothing
            was read from or written to the store, the spill journal included.
        StoreUnavailable, InvalidStoreUrl: the store cannot be opened, or cannot take
            the replay of a spill journal a crashed run left (the journal is kept).
        SpillJournalCorrupt: that journal has a line that cannot be read back.
        InvalidStrategy: the strategy cannot be loaded.

    On leaving the block (normally, on an exception, or cancelled) the feed is stopped,
    in-flight work may finish (bounded by the shutdown timeout), persistence is flushed,
    the tree is stopped and the run is recorded with its outcome and summary; the
    summary is then in `TradingSystem.result`. Cancellation: the shutdown runs shielded,
    each step bounded.
    """
    started = time.perf_counter()
    run = run_id if run_id is not None else new_run_id()
    async with AsyncExitStack() as stack:
        if store is None:
            # The run lock first: a store another run holds is not even migrated.
            store = await stack.enter_async_context(
                open_store(
                    settings.store.url.reveal(),
                    pool_size=settings.store.pool_size,
                    run_lock=True,
                )
            )
        # One run at a time per store, for the whole run, before anything is read or
        # written (a given store is locked here; an opened one already holds it).
        await stack.enter_async_context(store.run_lock())
        factory = strategy_factory or load_strategy_factory(settings)
        expected = None
        if source is None and settings.data.source == "csv":
            expected = await trio.to_thread.run_sync(_count_data_lines, str(settings.data.path))
        elif source is None:
            expected = settings.data.count * len(settings.instruments)
        instruments = list(settings.instrument_map().values())
        persistence = PersistenceKeeper()
        spill, spill_path = _spill_journal(settings)
        # What a crashed run spilled goes into the store before anything reads it.
        await replay_spill_journal(
            persistence,
            store,
            spill_path,
            batch_size=settings.persistence.batch_size,
            log=structlog.get_logger("tradewind.runtime").bind(actor="persistence"),
        )
        resume = await _resume_wanted(settings, store)
        async with store.transaction() as tx:
            tx.upsert_instruments(instruments)
            tx.start_run(run, config_hash(settings), time.time_ns())
        feed, orders, risk, host, journal = await _keepers(settings, store, resume=resume)
        stoppable = StoppableSource(
            # A cold start's stored bars were waited for by the crashed run: not again.
            source if source is not None else make_source(settings, unpaced_until=feed.last_ts),
            cancel_waits=settings.mode != "replay",
        )
        if resume:
            persistence.resume_denials(await store.denials())
        if spill:  # the journal's folder must exist before the first spill
            await trio.to_thread.run_sync(
                lambda: spill_path.parent.mkdir(parents=True, exist_ok=True)
            )
        paper = paper_config(settings)
        parts = _Parts(
            settings=settings,
            store=store,
            source=stoppable,
            broker=broker
            if broker is not None
            else await _paper_broker(paper, journal, settings, store),
            strategy_factory=factory,
            feed=feed,
            orders=orders,
            risk=risk,
            strategy=host,
            persistence=persistence,
        )

        def wrap(path: str, make: Callable[[], Actor]) -> Callable[[], Actor]:
            if crash_plan is not None:
                make = crash_plan.wrap(path, make)
            if wrap_actor is not None:
                make = wrap_actor(path, make)
            return make

        late_letters: list[DeadLetter] = []
        holder: list[TradingSystem] = []

        def on_dead_letter(letter: DeadLetter) -> None:
            # Persistence's own dead letters, and any once the tree is winding down, are
            # written directly at the end: sending them to a stopped persistence actor
            # would only dead-letter them again.
            if not holder or holder[0].winding_down or letter.path == "persistence":
                late_letters.append(letter)
                return
            try:
                holder[0].system.ref("persistence").send_nowait(Persist((letter,)))
            except (MailboxFull, MailboxClosed):
                late_letters.append(letter)

        outcome: Outcome = "failed"
        handle: TradingSystem | None = None
        try:
            async with open_actor_system(
                _tree(parts, wrap),
                seed=settings.seed,
                on_dead_letter=on_dead_letter,
                asyncio_loop=store.backend == POSTGRESQL,
            ) as system:
                handle = TradingSystem(
                    settings=settings,
                    run_id=run,
                    store=store,
                    system=system,
                    feed=feed,
                    orders=orders,
                    risk=risk,
                    strategy=host,
                    persistence=parts.persistence,
                    broker=parts.broker,
                    source=stoppable,
                    expected_items=expected,
                    started=started,
                )
                holder.append(handle)
                failed = False
                try:
                    yield handle
                except BaseException:
                    failed = True
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        outcome = await _wind_down(handle, settings, failed=failed)
        finally:
            with trio.CancelScope(shield=True):
                await _record_end(store, run, handle, outcome, late_letters)


async def _wind_down(handle: TradingSystem, settings: Settings, *, failed: bool) -> Outcome:
    """Stop the feed, wait (bounded) for in-flight work, flush. Returns the outcome.

    After a failure in the block nothing is waited for.
    """
    completed = handle.finished and not handle.source.stopped
    handle.stop_feed()
    if not failed:
        # After a failure the tree is already stopping, and persistence flushes in its
        # own orderly stop; only a healthy run waits for its in-flight work.
        with trio.move_on_after(settings.supervision.shutdown_timeout):
            await handle.wait_finished()
            await handle.system.ref("persistence").ask(Flush())
    handle._final_stats = handle.system.statistics()
    handle.winding_down = True
    if failed:
        return "failed"
    return "completed" if completed else "stopped"


async def _record_end(
    store: Store,
    run_id: str,
    handle: TradingSystem | None,
    outcome: Outcome,
    late_letters: list[DeadLetter],
) -> None:
    """Write late dead letters and the run's end and summary (bounded, best effort).

    A run that leaves records neither committed nor spilled is recorded as failed, with
    their number in the summary (`RunSummary.not_kept`)."""
    summary = None
    if handle is not None:
        not_kept = _not_kept(handle.persistence, late_letters)
        if not_kept:
            outcome = "failed"
        summary = attrs.evolve(handle.summary(outcome), not_kept=not_kept)
        handle._result = summary
    with trio.move_on_after(_FINISH_TIMEOUT):
        async with store.transaction() as tx:
            if late_letters and handle is not None:
                seqs = handle.persistence.dead_letter_seqs
                records = []
                for letter in late_letters:
                    key = (letter.path, round(letter.time * 1_000_000_000))
                    seq = seqs.get(key, 0)
                    seqs[key] = seq + 1
                    records.append(dead_letter_record(letter, seq))
                tx.write_dead_letters(records)
            tx.finish_run(run_id, time.time_ns(), outcome)
            if summary is not None:
                tx.write_run_summary(run_id, summary.to_json())


def _not_kept(persistence: PersistenceKeeper, late_letters: Iterable[DeadLetter]) -> int:
    """Records that the stopped tree leaves neither in the store nor in the spill
    journal: what persistence still holds in memory, and the records of `Persist` /
    `PersistDurably` messages dead-lettered at it (still queued when it crashed for
    good; the one it was handling was accepted already). Logged when there are any."""
    held = len(persistence.pending)
    dropped = 0
    messages = 0
    for letter in late_letters:
        message = letter.message
        if letter.path != "persistence" or message is persistence.last_accepted:
            continue
        if type(message) is Persist or type(message) is PersistDurably:
            dropped += len(message.records)
            messages += 1
    if held or dropped:
        structlog.get_logger("tradewind.runtime").bind(actor="persistence").error(
            "records_not_kept",
            held=held,
            dead_lettered=dropped,
            messages=messages,
            spilled=persistence.journal.records if persistence.journal is not None else 0,
        )
    return held + dropped
