"""The deterministic harness: the real trading tree under trio's virtual clock.

`open_harness` assembles the same tree `tradewind run` does -- feed, strategy, risk,
orders, persistence, the real pure core and a real store (SQLite in memory by default) --
and hands back a `Harness` that lets a test decide how far the bars go (`run`, `step`,
`run_until`), wait for quiescence, and then read what happened: orders, fills, positions,
denials, log lines and the event log with its digest.
"""

# Design notes
# ------------
# * Virtual time and threads. Under `MockClock` with autojump, trio jumps the clock to the
#   next deadline as soon as every task is blocked -- and a task waiting for a worker
#   thread (SQLite runs in one; a CSV file is read in one) looks blocked. A jump during a
#   thread hop can fire a timeout that no real time justified, and the run stops being
#   deterministic. The harness therefore switches autojump off while such work is in
#   flight: a gate counts the store calls and source reads in progress and sets the
#   clock's public `autojump_threshold` to infinity while the count is above zero (and
#   back when it returns to zero). Virtual time then stands still exactly while real
#   work happens, whatever the machine's speed, and the loop sleeps in its I/O wait
#   instead of spinning. Rejected: relying on in-memory SQLite being "fast enough" (a
#   loaded CI machine proves it wrong once in a while), and a memory-only fake store (it
#   would not be the real store).
# * The harness owns the source. It wraps the configured bars in a feeder that hands out
#   items only as far as the test allows and paces time steps on the virtual clock: by
#   default one virtual second per second of bar time, so timers (flush intervals,
#   reconnect backoff) fire between bars as they would live, at no wall-clock cost.
#   `pace=0` replays as fast as the tree takes bars.
# * `step` and `run_until` wait until the feeder is parked on its next permission (which
#   means the feed came back for the next item, so the last one is sent) and then for
#   quiescence; the end of data is waited for through the tree's own `wait_finished`.
# * Fills and denials are read from the records the persistence actor accepted (a tap on
#   its handler, noted after the handler returned, so a redelivered message counts once),
#   keyed by their natural keys. The event log's lines come from the persistence keeper's
#   own event log, so `digest` is the digest the run summary reports.

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping
from contextlib import AsyncExitStack, aclosing, asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio
import trio.testing

from tradewind.actors._marketdata import Bar
from tradewind.actors._messages import IntentDenied, OrderUpdated, Persist, PersistDurably
from tradewind.actors._orders import Fill, OrderFilled
from tradewind.actors._paper import PaperBroker, PaperFaults
from tradewind.actors._settings import (
    BrokerSection,
    DataSection,
    InstrumentSection,
    RiskSection,
    Settings,
    StoreSection,
    StrategySection,
)
from tradewind.actors._sources import BarSource, SourceBar
from tradewind.actors._strategy import strategy_factory
from tradewind.actors._tree import (
    CrashPlan,
    TradingSystem,
    make_source,
    open_trading_system,
    paper_config,
)
from tradewind.runtime._config import Secret
from tradewind.runtime._errors import TradewindError
from tradewind.storage._backend import Backend
from tradewind.storage._errors import StoreUnavailable
from tradewind.storage._store import RunLock, Store, acquire_run_lock, open_store
from tradewind.testing._faults import BrokerDisconnect, Crash, Fault, StoreOutage

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence

    from tradewind.actors._orders import Order
    from tradewind.actors._portfolio import Position
    from tradewind.actors._sources import SourceItem
    from tradewind.actors._strategy import Strategy
    from tradewind.actors._tree import RunSummary
    from tradewind.runtime._actor import Actor
    from tradewind.storage._records import PoolStatistics
    from tradewind.storage._uow import Write

__all__ = ["Harness", "HarnessError", "Synthetic", "open_harness"]

_NS_PER_SECOND = 1_000_000_000
_DEFAULT_TICK = Decimal("0.01")
_STRATEGY_ID = "harness"


class HarnessError(TradewindError, RuntimeError):
    """The harness was used wrongly (the test's fault): wrong clock, no bars, bad order."""


@attrs.frozen
class Synthetic:
    """Bars from the seeded random walk (`SyntheticBarSource`).

    Attributes:
        count: time steps (one bar per instrument each).
        seed: the same seed gives the same bars.
        start_price: every instrument's first open.
        timeframe: the bar length.
    """

    count: int = 300
    seed: int = 0
    start_price: Decimal = Decimal(100)
    timeframe: str = "1m"


def _generous_risk() -> RiskSection:
    return RiskSection(
        max_position=Decimal(1_000),
        max_order_notional=Decimal(1_000_000),
        max_gross_exposure=Decimal(10_000_000),
        max_orders_per_second=1_000,
        daily_loss_limit=Decimal(1_000_000),
    )


# ----------------------------------------------------------------------------- the gate


@attrs.define
class _ThreadGate:
    """Turns the clock's autojump off while real (thread or socket) work is in flight."""

    clock: trio.testing.MockClock
    threshold: float
    busy_count: int = 0

    @contextmanager
    def busy(self) -> Iterator[None]:
        self.busy_count += 1
        if self.busy_count == 1:
            self.clock.autojump_threshold = math.inf
        try:
            yield
        finally:
            self.busy_count -= 1
            if self.busy_count == 0:
                self.clock.autojump_threshold = self.threshold


@attrs.define
class _GatedBackend:
    """A store backend whose calls hold the gate, and fail inside outage windows."""

    inner: Backend
    gate: _ThreadGate
    outages: tuple[StoreOutage, ...]
    now: Callable[[], float]
    armed: bool = False
    refused: int = 0

    def _check(self) -> None:
        if not self.armed:
            return
        now = self.now()
        for outage in self.outages:
            if outage.covers(now):
                self.refused += 1
                msg = f"store unavailable (injected outage {outage.start}s-{outage.end}s)"
                raise StoreUnavailable(msg)

    async def run_unit(self, writes: tuple[Write, ...]) -> None:
        self._check()
        with self.gate.busy():
            await self.inner.run_unit(writes)

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        self._check()
        with self.gate.busy():
            return await self.inner.fetch(sql, args)

    def statistics(self) -> PoolStatistics:
        return self.inner.statistics()


# ----------------------------------------------------------------------------- sources


@attrs.define
class _ListSource:
    """Bars given in memory, in order."""

    bars: tuple[Bar, ...]

    @property
    def name(self) -> str:
        return "bars"

    def describe(self) -> str:
        return f"{len(self.bars)} bars in memory"

    async def items(self, *, skip: int = 0) -> AsyncGenerator[SourceItem, None]:
        for index, bar in enumerate(self.bars[skip:], start=skip + 1):
            await trio.lowlevel.checkpoint()
            yield SourceBar(bar, f"bars:{index}")


@attrs.define(eq=False)
class _Feeder:
    """The harness's source: hands out items as the test permits, paced on trio time."""

    inner: BarSource
    gate: _ThreadGate
    pace: float | None
    delivered: int = 0
    exhausted: bool = False
    _allowed: float = 0
    _until: int | None = None
    _permit: trio.Event = attrs.field(factory=trio.Event)
    _parked: trio.Event = attrs.field(factory=trio.Event)

    @property
    def name(self) -> str:
        return self.inner.name

    def describe(self) -> str:
        return self.inner.describe()

    def allow(self, *, count: float = 0, until: int | None = None) -> None:
        self._allowed = self.delivered + count
        self._until = until
        self._parked = trio.Event()
        if self.exhausted:
            self._parked.set()  # nothing more will come: never wait for the feeder again
        self._permit.set()

    async def wait_parked(self) -> None:
        await self._parked.wait()

    def _may_deliver(self, item: SourceItem) -> bool:
        if self._until is not None:
            return not isinstance(item, SourceBar) or item.bar.ts <= self._until
        return self.delivered < self._allowed

    async def items(self, *, skip: int = 0) -> AsyncGenerator[SourceItem, None]:
        last_ts: int | None = None
        async with aclosing(self.inner.items(skip=skip)) as inner:
            iterator = aiter(inner)
            while True:
                with self.gate.busy():
                    try:
                        item = await anext(iterator)
                    except StopAsyncIteration:
                        self.exhausted = True
                        self._parked.set()
                        return
                while not self._may_deliver(item):
                    self._permit = trio.Event()
                    self._parked.set()
                    await self._permit.wait()
                if isinstance(item, SourceBar):
                    ts = item.bar.ts
                    if last_ts is not None and ts > last_ts:
                        await trio.sleep(self._step_seconds(ts - last_ts))
                    last_ts = ts
                self.delivered += 1
                yield item

    def _step_seconds(self, gap_ns: int) -> float:
        if self.pace is None:
            return gap_ns / _NS_PER_SECOND
        return self.pace


# ----------------------------------------------------------------------------- the harness


@attrs.define
class _Recorder:
    """What persistence accepted: fills by execution id, denials, event-log lines."""

    lines: list[str] = attrs.field(factory=list)
    fills: dict[str, Fill] = attrs.field(factory=dict)
    denials: list[IntentDenied] = attrs.field(factory=list)

    def tap(self, path: str, make: Callable[[], Actor]) -> Callable[[], Actor]:
        """Wrap the persistence actor's factory so that accepted records are noted."""
        if path != "persistence":
            return make

        def build() -> Actor:
            actor = make()
            handle = actor.handle

            async def handle_tapped(message: Any) -> Any:  # noqa: ANN401 -- the runtime's Message
                reply = await handle(message)
                if isinstance(message, Persist | PersistDurably):
                    self.note(message.records)
                return reply

            actor.handle = handle_tapped  # type: ignore[method-assign]
            return actor

        return build

    def note(self, records: tuple[object, ...]) -> None:
        """Keep the fills (once per execution id) and denials among `records`."""
        for record in records:
            if isinstance(record, OrderUpdated) and isinstance(record.event, OrderFilled):
                fill = record.event.fill
                self.fills.setdefault(fill.execution_id, fill)
            elif isinstance(record, Fill):
                self.fills.setdefault(record.execution_id, record)
            elif isinstance(record, IntentDenied):
                self.denials.append(record)


@attrs.define(eq=False)
class Harness:
    """A running scenario (valid inside `open_harness`; the summary stays readable after).

    Every read is a snapshot of the moment; read after `run`, `step`, `run_until` or
    `quiesce` returned, when nothing is in flight.

    Attributes:
        system: the `TradingSystem` underneath (keepers, actor system, broker).
        store: the store the run writes to (open until the block exits).
        logs: every structlog event of the run, as dicts (``event``, ``log_level``, ...).
        crash_plan: the crashes planned and fired (``crash_plan.fired``).
    """

    system: TradingSystem
    store: Store
    logs: list[MutableMapping[str, Any]]
    crash_plan: CrashPlan
    _feeder: _Feeder
    _started_at: float
    _recorder: _Recorder
    _outages: tuple[StoreOutage, ...]

    # ------------------------------------------------------------ driving

    @property
    def now(self) -> float:
        """Virtual seconds since the harness started (the time of `store_unavailable`)."""
        return trio.current_time() - self._started_at

    @property
    def items_fed(self) -> int:
        """How many source items (bars and rejected rows) went to the feed so far."""
        return self._feeder.delivered

    async def run(self) -> None:
        """Feed every remaining bar and wait until the tree has handled all of it.

        Cancellation: a checkpoint; cancelling leaves the run where it got to.
        """
        self._feeder.allow(count=math.inf)
        await self.system.wait_finished()

    async def step(self, n: int = 1) -> None:
        """Feed the next `n` source items, then wait for quiescence.

        Args:
            n: items (bars or rejected rows) to let through, >= 1.

        Raises:
            HarnessError: n < 1.

        Cancellation: a checkpoint; cancelling leaves the run where it got to.
        """
        if n < 1:
            msg = f"step: n must be >= 1, got {n}"
            raise HarnessError(msg)
        self._feeder.allow(count=n)
        await self._settle()

    async def run_until(self, ts: int) -> None:
        """Feed every bar with ``bar.ts <= ts`` (bar time, ns), then wait for quiescence.

        Cancellation: a checkpoint; cancelling leaves the run where it got to.
        """
        self._feeder.allow(until=ts)
        await self._settle()

    async def quiesce(self) -> None:
        """Wait until every mailbox is empty and no handler runs.

        Cancellation: a checkpoint; safe to cancel.
        """
        await self.system.system.quiesce()

    async def _settle(self) -> None:
        await self._feeder.wait_parked()
        if self._feeder.exhausted:
            await self.system.wait_finished()
        else:
            await self.quiesce()

    # ------------------------------------------------------------ reading

    @property
    def orders(self) -> dict[str, Order]:
        """Every order placed, by client order id (latest state), sorted by id."""
        book = self.system.orders
        every = {**book.finished, **book.working}
        return dict(sorted(every.items()))

    @property
    def fills(self) -> tuple[Fill, ...]:
        """Every fill, in the order persistence accepted them (once per execution id)."""
        return tuple(self._recorder.fills.values())

    @property
    def denials(self) -> tuple[IntentDenied, ...]:
        """Every intent risk refused (intent, reason, detail, ts), in the order recorded."""
        return tuple(self._recorder.denials)

    @property
    def positions(self) -> dict[str, Position]:
        """The positions by instrument, from risk's portfolio (fills applied so far)."""
        return dict(sorted(self.system.portfolio.positions.items()))

    @property
    def event_log(self) -> tuple[str, ...]:
        """The canonical line of every record persistence accepted, in order."""
        return tuple(self._recorder.lines)

    @property
    def digest(self) -> str:
        """The SHA-256 of `event_log` (equal to the run summary's ``event_log_digest``)."""
        return self.system.persistence.event_log.digest()

    @property
    def summary(self) -> RunSummary:
        """The run's summary: final once the block has exited, a snapshot before."""
        try:
            return self.system.result
        except RuntimeError:
            return self.system.summary()

    async def _wait_out_outages(self) -> None:
        # A run must not end inside an outage window: its final flush and run record
        # would fail. Waiting the window out costs no wall time under autojump.
        end = max((o.end for o in self._outages), default=0.0)
        if self.now < end:
            await trio.sleep(end - self.now)


# ----------------------------------------------------------------------------- building


def _instrument_sections(
    instruments: Sequence[str | InstrumentSection] | None, bars: Sequence[Bar] | None
) -> tuple[InstrumentSection, ...]:
    if instruments is None:
        symbols = sorted({bar.instrument for bar in bars}) if bars else ["AAPL"]
        instruments = symbols
    return tuple(
        InstrumentSection(symbol=i, tick_size=_DEFAULT_TICK) if isinstance(i, str) else i
        for i in instruments
    )


def _strategy(
    strategy: type[Strategy] | str, params: dict[str, Any]
) -> tuple[StrategySection, Callable[[], Strategy] | None]:
    if isinstance(strategy, str):
        return StrategySection(path=strategy, id=_STRATEGY_ID, params=params), None
    path = f"{strategy.__module__}:{strategy.__qualname__}"
    # Bad parameters are refused now, as for a configured strategy, not at the first start.
    factory = strategy_factory(path, strategy, params)
    return StrategySection(path=path, id=_STRATEGY_ID, params=params), factory


def _build_settings(
    *,
    strategy: type[Strategy] | str,
    params: dict[str, Any],
    bars: Sequence[Bar] | None,
    csv: str | Path | None,
    synthetic: Synthetic | None,
    instruments: Sequence[str | InstrumentSection] | None,
    risk: RiskSection | None,
    broker: BrokerSection | None,
    store_url: str,
    seed: int,
) -> tuple[Settings, Callable[[], Strategy] | None]:
    given = [x for x in (bars, csv, synthetic) if x is not None]
    if len(given) > 1:
        msg = "open_harness: give at most one of bars, csv and synthetic"
        raise HarnessError(msg)
    if csv is not None:
        data = DataSection(source="csv", path=Path(csv).resolve())
    else:
        synth = synthetic or Synthetic()
        data = DataSection(
            source="synthetic",
            seed=synth.seed,
            count=synth.count,
            start_price=synth.start_price,
            timeframe=synth.timeframe,
        )
        if bars is not None:
            data = attrs.evolve(data, timeframe=bars[0].timeframe if bars else "1m")
    section, factory = _strategy(strategy, params)
    settings = Settings(
        instruments=_instrument_sections(instruments, bars),
        data=data,
        strategy=section,
        risk=risk or _generous_risk(),
        broker=broker or BrokerSection(),
        store=StoreSection(url=Secret(store_url)),
        seed=seed,
    )
    return settings, factory


def _source(settings: Settings, bars: Sequence[Bar] | None) -> BarSource:
    if bars is not None:
        return _ListSource(tuple(bars))
    # interval 0: the harness paces time steps itself (a sleeping source would hold the
    # autojump gate shut).
    return make_source(settings, interval=0)


def _broker(settings: Settings, faults: Sequence[Fault | PaperFaults]) -> PaperBroker:
    paper = next((f for f in faults if isinstance(f, PaperFaults)), PaperFaults())
    drops = [f for f in faults if isinstance(f, BrokerDisconnect)]
    if drops:
        paper = attrs.evolve(
            paper,
            disconnect_at=tuple(sorted({*paper.disconnect_at, *(d.at for d in drops)})),
            failed_reconnects=max(paper.failed_reconnects, *(d.failed_reconnects for d in drops)),
        )
    return PaperBroker(paper_config(settings), paper)


def _crash_plan(faults: Sequence[Fault | PaperFaults]) -> CrashPlan:
    crashes = [f for f in faults if isinstance(f, Crash)]
    points = {c.point for c in crashes}
    if len(points) > 1:
        msg = "open_harness: every crash of one scenario must use the same point kind"
        raise HarnessError(msg)
    return CrashPlan(
        at={c.path: c.number for c in crashes}, point=points.pop() if points else "message"
    )


def _mock_clock() -> trio.testing.MockClock:
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock):
        msg = (
            "open_harness needs trio.testing.MockClock: request the autojump_clock fixture "
            "(pytest-trio) or pass clock=MockClock(autojump_threshold=0) to trio.run"
        )
        raise HarnessError(msg)
    return clock


@asynccontextmanager
async def open_harness(
    strategy: type[Strategy] | str | None = None,
    *,
    params: dict[str, Any] | None = None,
    bars: Sequence[Bar] | None = None,
    csv: str | Path | None = None,
    synthetic: Synthetic | None = None,
    instruments: Sequence[str | InstrumentSection] | None = None,
    risk: RiskSection | None = None,
    broker: BrokerSection | None = None,
    faults: Sequence[Fault | PaperFaults] = (),
    store_url: str = "sqlite://:memory:",
    store: Store | None = None,
    settings: Settings | None = None,
    pace: float | None = None,
    seed: int = 0,
    run_id: str = "harness",
) -> AsyncIterator[Harness]:
    """Start the real trading tree on a scenario, paused before its first bar.

    Args:
        strategy: the strategy class, or ``"package.module:Class"`` /
            ``"file.py:Class"``; None only with `settings`.
        params: keyword arguments for the strategy.
        bars, csv, synthetic: the bars (at most one; default: `Synthetic()`).
        instruments: symbols (tick 0.01) or `InstrumentSection` entries; default: the
            symbols of `bars`, else ``AAPL``.
        risk: the risk section; default: limits generous enough never to bind.
        broker: the paper broker's section (slippage, fees, latency).
        faults: `crash`, `disconnect_broker`, `store_unavailable` values, and at most one
            `PaperFaults` (rejects, ack delays).
        store_url: where the run is stored (``sqlite://:memory:`` by default; any URL
            `open_store` takes).
        store: an open store to use instead (left open, so a test can read it after
            the run has ended).
        settings: a whole configuration instead of the arguments above (its data section
            gives the bars unless `bars` is given; its store URL is used).
        pace: virtual seconds between time steps; None: the bars' own spacing; 0: as
            fast as the tree takes them.
        seed: seeds the supervisors' backoff jitter.
        run_id: the id the run is recorded under (fixed, so the store is comparable).

    Yields:
        The `Harness`, every actor started, no bar fed yet.

    Raises:
        HarnessError: no MockClock is running, or the arguments contradict each other.
        InvalidStrategy: the strategy cannot be loaded or refuses `params`.
        StoreUnavailable, InvalidStoreUrl: the store cannot be opened.

    On leaving the block any outage window still open is waited out (virtual time), the
    feed is stopped, in-flight work finishes, persistence flushes and the tree stops, as
    at the end of ``tradewind run``. Log capture (structlog) covers the whole block.
    """
    clock = _mock_clock()
    if settings is None:
        if strategy is None:
            msg = "open_harness: give a strategy (or whole settings)"
            raise HarnessError(msg)
        settings, factory = _build_settings(
            strategy=strategy,
            params=params or {},
            bars=bars,
            csv=csv,
            synthetic=synthetic,
            instruments=instruments,
            risk=risk,
            broker=broker,
            store_url=store_url,
            seed=seed,
        )
    else:
        factory = None
        if strategy is not None:
            section, factory = _strategy(strategy, params or {})
            settings = attrs.evolve(settings, strategy=section)
    # A MockClock without autojump would never move: the harness turns it on (and the
    # clock gets its own threshold back at the end).
    threshold = clock.autojump_threshold if clock.autojump_threshold < math.inf else 0.0
    gate = _ThreadGate(clock, threshold)
    outages = tuple(f for f in faults if isinstance(f, StoreOutage))
    plan = _crash_plan(faults)
    started_at = trio.current_time()
    original_threshold = clock.autojump_threshold
    clock.autojump_threshold = threshold
    try:
        with structlog.testing.capture_logs() as logs:
            async with AsyncExitStack() as stack:
                opened = store
                if opened is None:
                    with gate.busy():
                        opened = await stack.enter_async_context(
                            open_store(
                                settings.store.url.reveal(), pool_size=settings.store.pool_size
                            )
                        )
                # The harness wraps the store's own backend (private to the store by design).
                backend = _GatedBackend(
                    opened._backend,
                    gate,
                    outages,
                    lambda: trio.current_time() - started_at,
                )
                gated = Store(opened.url, backend, retry=opened.retry)
                # The run lock is real I/O too (a PostgreSQL connection, a lock file):
                # taken here under the gate, so virtual time stands still while it is,
                # and handed to the gated store, whose run then only marks it.
                held = opened._held
                if held is None:
                    with gate.busy():
                        held = await acquire_run_lock(
                            opened.url, connect_timeout=opened.connect_timeout
                        )

                    async def release(lock: RunLock = held) -> None:
                        with gate.busy():
                            await lock.release()

                    stack.push_async_callback(release)
                gated._held = held
                feeder = _Feeder(_source(settings, bars), gate, pace)
                recorder = _Recorder()
                stack.enter_context(plan.installed())
                system = await stack.enter_async_context(
                    open_trading_system(
                        settings,
                        store=gated,
                        source=feeder,
                        broker=_broker(settings, faults),
                        strategy_factory=factory,
                        run_id=run_id,
                        crash_plan=plan,
                        wrap_actor=recorder.tap,
                    )
                )
                harness = Harness(
                    system=system,
                    store=gated,
                    logs=logs,
                    crash_plan=plan,
                    feeder=feeder,
                    started_at=started_at,
                    recorder=recorder,
                    outages=outages,
                )
                system.persistence.event_log.sink = recorder.lines.append
                backend.armed = True  # outages start once the tree is up (its start-up reads)
                try:
                    yield harness
                finally:
                    with trio.CancelScope(shield=True):
                        await harness._wait_out_outages()
    finally:
        clock.autojump_threshold = original_threshold
