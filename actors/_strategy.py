"""The strategy host: the author's API (`Strategy`, `StrategyContext`) and `StrategyActor`.

Design notes
------------
* A strategy decides; the host does the I/O. Every callback is synchronous: it reads the
  context (history, positions, open orders) and buffers intents with `ctx.submit` /
  `ctx.cancel`. Only after the callback returned does the actor send what it buffered to
  risk, so a strategy that raises half-way sends nothing (decide, then act).
* A strategy crash is a handler crash: the instance is thrown away, the runtime redelivers
  the message, and the factory builds a fresh instance. The *host* state lives in the
  state keeper (`StrategyHost`: bar history per instrument, the portfolio and open orders
  fed by `OrderUpdated`, counters, the outbox) and survives. The new instance's own state
  (indicators) is rebuilt by calling `on_start(ctx)` and then replaying the kept bars, in
  arrival order, into `on_bar` in *warm-up* mode, in which `submit` and `cancel` are
  ignored. A strategy that derives its decisions from market data and `ctx.position`
  therefore decides after a crash exactly as it would have without one.
* Each message goes through two steps. ``begin`` applies it to the host state (history,
  portfolio, orders; every one idempotent) and remembers the message; the user callbacks
  then run; ``finish`` puts the intents they buffered, in order, into the outbox (the
  per-message intent sequence) and marks the message done. A redelivered message is the
  same object: if it is done, nothing runs again; if its callbacks crashed, they run again
  on the new instance, without applying the message a second time (a fill is still new to
  the strategy). The bar in hand is left out of the warm-up, since it is delivered right
  after.
* Backpressure cycle (why the handler never sends to risk). Risk forwards bars and
  updates to the strategy and the strategy sends intents to risk, both over BLOCK
  mailboxes. In paper mode (no per-bar barrier) a fast feed fills both: risk waits for
  room in the strategy's mailbox while a strategy handler waits for room in risk's, and
  neither ever takes its next message. The cycle is broken on the strategy -> risk edge:
  the handler never *waits* on risk. It appends to the keeper's outbox and sends inline
  only while risk's mailbox has room (so such a send never blocks; in a replay this is
  every send, as before); what is left is delivered by a *sender* task owned by the
  instance (a trio system task, started in ``on_start``, cancelled and awaited in
  ``on_stop``). Both send in order, one at a time under one lock (the handler only takes
  it when free), popping an intent only after its send returned (a cancelled send
  enqueues nothing). So the strategy always
  goes on draining its mailbox, risk's sends to it always complete, and risk drains its
  own mailbox, which is what the sender waits for. The outbox lives in the keeper, so a
  crash or restart neither loses nor repeats an intent: the next instance's sender goes
  on with what is left.
* The outbox is bounded (`StrategyHost.outbox_capacity`). Waiting for room in it would
  close the cycle again, so an intent that does not fit is refused at once: it is counted
  (``shed``), logged (``strategy_outbox_full``), handed to the strategy's
  `on_denied` as an `IntentDenied` with `DenyReason.OVERLOADED` (the strategy asks
  for orders faster than risk takes them) and sent to persistence like risk's own
  denials (so it is stored and in the run's summary); a cancel that does not fit is counted and
  logged (the order stays working; the strategy sees it in ``ctx.open_orders``). The
  bound is far above what one bar's cascade normally produces.
* Quiescence stays honest: every intent in the outbox is counted in the system's
  in-flight count from the moment it is queued until risk accepted it (the send counts it
  again for risk's mailbox), so ``system.quiesce()`` - the replay's per-bar barrier and
  the end of a run - waits until the outbox is delivered. The count belongs to the
  instance: ``on_start`` takes it for what a crashed predecessor left, ``on_stop`` gives
  back what is undelivered (the runtime counts a pending restart meanwhile), so an actor
  that stops for good never wedges ``quiesce``.
* Bars are deduplicated per series by time, so a bar delivered twice (a restart upstream)
  reaches `on_bar` once.
* `load_strategy` accepts ``"package.module:Class"`` or ``"path/to/file.py:Class"`` and
  checks, at load time, that the class is a `Strategy` and that it accepts the parameters
  (by building one instance), so that configuration mistakes are found before the run
  starts, each with a message naming what was wrong.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import itertools
import re
import sys
from collections import Counter, deque
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from tradewind.actors._errors import InvalidOrder, InvalidStrategy
from tradewind.actors._feed import OwnedTask
from tradewind.actors._marketdata import Bar
from tradewind.actors._messages import (
    CancelOrder,
    EndOfData,
    IntentDenied,
    OrderUpdated,
    Persist,
    SessionChanged,
    SubmitIntent,
    TradingStateChanged,
)
from tradewind.actors._orders import Fill, Order, OrderIntent, OrderType, TimeInForce, track_order
from tradewind.actors._portfolio import Portfolio, Position, book_fill
from tradewind.actors._risk import DenyReason, TradingState
from tradewind.actors._values import Instrument, Side
from tradewind.runtime._actor import Actor
from tradewind.runtime._errors import HandlerTimeout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from structlog.typing import FilteringBoundLogger
    from tradewind.actors._values import DecimalLike
    from tradewind.runtime import ActorContext
    from tradewind.runtime._actor import ActorRef

#: Bars kept per instrument for `ctx.history` and the warm-up, unless configured.
DEFAULT_HISTORY: Final = 500

#: Intents and cancels that may wait in the strategy's outbox for delivery to risk.
DEFAULT_OUTBOX_CAPACITY: Final = 10_000


class Strategy:
    """Base class of a trading strategy: override the callbacks you need.

    Every callback is synchronous and gets the `StrategyContext`; a strategy decides and
    the host acts. The host builds a new instance (from its factory) at start and after
    every crash, then calls `on_start` and replays the kept bars into `on_bar` with
    ``ctx.warming_up`` true (intents are ignored then).

    Attributes:
        lookback: how many bars per instrument the strategy needs to decide; the host
            keeps at least ``lookback + 1`` bars so a warm-up rebuilds its state.
    """

    lookback: int = 0

    def on_start(self, ctx: StrategyContext) -> None:
        """Set up state. Intents submitted here are ignored."""

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        """A new bar (its fills, if any, were delivered before it)."""

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        """One of the strategy's orders was (partly) filled; delivered once per fill."""

    def on_order(self, update: OrderUpdated, ctx: StrategyContext) -> None:
        """One of the strategy's orders changed (acknowledged, filled, canceled, ...)."""

    def on_session(self, event: SessionChanged, ctx: StrategyContext) -> None:
        """The trading session opened or closed."""

    def on_denied(self, denial: IntentDenied, ctx: StrategyContext) -> None:
        """Risk refused an intent (`denial.reason` says why)."""

    def on_stop(self, ctx: StrategyContext) -> None:
        """The strategy is stopping normally (not after a crash). Intents are ignored."""


#: The callbacks the host calls; each must be a plain synchronous method.
CALLBACKS: Final = (
    "on_start",
    "on_bar",
    "on_fill",
    "on_order",
    "on_session",
    "on_denied",
    "on_stop",
)


def async_callbacks(cls: type) -> list[str]:
    """The callbacks of `cls` defined with ``async def`` (or as async generators): the
    host calls callbacks synchronously, so such a callback would never run."""
    return [
        name
        for name in CALLBACKS
        if inspect.iscoroutinefunction(getattr(cls, name, None))
        or inspect.isasyncgenfunction(getattr(cls, name, None))
    ]


def _async_callbacks_message(cls: type, names: list[str]) -> str:
    return (
        f"{cls.__name__}.{names[0]} is an async def"
        + (f" (so are {', '.join(names[1:])})" if names[1:] else "")
        + ": strategy callbacks are plain synchronous methods, a coroutine would never "
        "be awaited and the callback would silently do nothing"
    )


@attrs.frozen
class StrategyStatistics:
    """A snapshot of the strategy host's counters.

    Attributes:
        bars: bars delivered to `on_bar` (warm-up not counted).
        duplicate_bars: bars dropped because their series had a bar at or after their time.
        intents: intents sent to risk.
        cancels: cancels sent to risk.
        fills: distinct fills booked.
        denials: intents risk refused.
        starts: strategy instances started (1 + restarts).
        warmup_bars: bars replayed into `on_bar` in warm-up, over all restarts.
        ignored: intents and cancels ignored (warm-up, `on_start`, `on_stop`).
        shed: intents and cancels refused because the outbox to risk was full.
        overloaded: the intents among them (each one an `IntentDenied` with
            `DenyReason.OVERLOADED`).
    """

    bars: int
    duplicate_bars: int
    intents: int
    cancels: int
    fills: int
    denials: int
    starts: int
    warmup_bars: int
    ignored: int
    shed: int
    overloaded: int


def _instrument_table(
    value: Iterable[Instrument] | Mapping[str, Instrument],
) -> dict[str, Instrument]:
    return Portfolio(value).instruments


def _positive_int(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{attribute.name}: must be an int >= 1, got {value!r}"
        raise ValueError(msg)


# Plain attribute writes on the hot path: no validator or converter runs on assignment.
@attrs.define(on_setattr=attrs.setters.NO_OP)
class StrategyHost:
    """The strategy actor's state keeper: what survives a strategy crash.

    Args:
        strategy_id: the id the strategy's intents are issued under.
        instruments: the tradable instruments (a mapping by symbol or an iterable).
        history: bars kept per instrument for `ctx.history` and the warm-up.
        portfolio: the starting portfolio (e.g. rebuilt from stored fills); a new empty
            one if None.
        outbox_capacity: how many intents and cancels may wait for delivery to risk;
            more are refused (counted as ``shed``), never waited for.

    All methods are synchronous.
    """

    strategy_id: str
    instruments: dict[str, Instrument] = attrs.field(converter=_instrument_table)
    history: int = attrs.field(default=DEFAULT_HISTORY, validator=_positive_int)
    portfolio: Portfolio = attrs.field(
        default=attrs.Factory(lambda self: Portfolio(self.instruments), takes_self=True)
    )
    orders: dict[str, Order] = attrs.field(init=False, factory=dict)
    trading_state: TradingState = attrs.field(init=False, default=TradingState.ACTIVE)
    end_of_data: bool = attrs.field(init=False, default=False)
    outbox_capacity: int = attrs.field(default=DEFAULT_OUTBOX_CAPACITY, validator=_positive_int)
    outbox: deque[SubmitIntent | CancelOrder] = attrs.field(init=False, factory=deque)
    current: object = attrs.field(init=False, default=None)
    current_done: bool = attrs.field(init=False, default=True)
    current_new_fill: bool = attrs.field(init=False, default=False)
    # False while the current message is an order update already seen (sent again).
    current_news: bool = attrs.field(init=False, default=True)
    current_bar_seq: int | None = attrs.field(init=False, default=None)
    _bars: dict[str, deque[tuple[int, Bar]]] = attrs.field(init=False, factory=dict)
    _last_ts: dict[tuple[str, str], int] = attrs.field(init=False, factory=dict)
    _seen_seq: dict[str, int] = attrs.field(init=False, factory=dict)
    _seq: int = attrs.field(init=False, default=0)
    _counts: Counter[str] = attrs.field(init=False, factory=Counter)

    def __attrs_post_init__(self) -> None:
        _strategy_id_check(self.strategy_id)

    # ------------------------------------------------------------------ history

    def add_bar(self, bar: Bar) -> int | None:
        """Keep `bar` in the history; return its arrival sequence, or None if it is a
        duplicate (its series already has a bar at or after its time)."""
        last = self._last_ts.get(bar.series)
        if last is not None and bar.ts <= last:
            self._counts["duplicate_bars"] += 1
            return None
        self._last_ts[bar.series] = bar.ts
        self._seq += 1
        kept = self._bars.get(bar.instrument)
        if kept is None:
            kept = self._bars[bar.instrument] = deque(maxlen=self.history)
        kept.append((self._seq, bar))
        if bar.instrument in self.instruments:
            self.portfolio.mark(bar.instrument, bar.close, bar.ts)
        return self._seq

    def seed_history(self, bars: Iterable[Bar]) -> None:
        """Prime the history (e.g. with the last stored bars at a cold start), oldest
        first; duplicates are skipped."""
        for bar in bars:
            self.add_bar(bar)

    def bars(self, symbol: str, n: int, upto: int | None = None) -> list[Bar]:
        """The last `n` bars of `symbol` that arrived no later than sequence `upto`
        (all of them if None), oldest first."""
        kept = self._bars.get(symbol)
        if not kept or n <= 0:
            return []
        newest_first = reversed(kept)
        if upto is not None and kept[-1][0] > upto:
            newest_first = itertools.dropwhile(lambda entry: entry[0] > upto, newest_first)
        taken = [bar for _seq, bar in itertools.islice(newest_first, n)]
        taken.reverse()
        return taken

    def warmup_bars(self) -> list[tuple[int, Bar]]:
        """Every kept bar in arrival order, except a bar whose callbacks have not
        completed yet (it is about to be redelivered)."""
        pending = None if self.current_done else self.current_bar_seq
        merged = sorted(itertools.chain.from_iterable(self._bars.values()), key=lambda e: e[0])
        return [entry for entry in merged if entry[0] != pending]

    def seed_orders(self, orders: Iterable[Order]) -> None:
        """Know working orders from before the start (e.g. the store's open orders at a
        cold start) for ``ctx.open_orders``; terminal ones are ignored."""
        for order in orders:
            track_order(self.orders, self._seen_seq, order)

    # ------------------------------------------------------------------ messages

    def begin(self, message: object) -> bool:
        """Apply `message` to the host state; return whether callbacks should run.

        Idempotent for a message redelivered before its callbacks completed: the state
        is applied once and the callbacks run again.
        """
        if message is self.current:
            if isinstance(message, Bar):
                return self.current_bar_seq is not None
            return self.current_news
        self.current = message
        self.current_done = False
        self.current_new_fill = False
        self.current_news = True
        self.current_bar_seq = None
        match message:
            case Bar():
                self.current_bar_seq = self.add_bar(message)
                return self.current_bar_seq is not None
            case OrderUpdated():
                self.current_news = self._track(message)
                return self.current_news
            case IntentDenied():
                self._counts["denials"] += 1
            case TradingStateChanged():
                self.trading_state = message.state
            case EndOfData():
                self.end_of_data = True
        return True

    def finish(
        self, actions: Iterable[SubmitIntent | CancelOrder]
    ) -> list[SubmitIntent | CancelOrder]:
        """Queue what the callbacks buffered, in order, as far as the outbox has room, and
        mark the message done; return what did not fit (counted as ``shed``)."""
        outbox = self.outbox
        shed: list[SubmitIntent | CancelOrder] = []
        for action in actions:
            if len(outbox) < self.outbox_capacity:
                outbox.append(action)
            else:
                shed.append(action)
        self._counts["shed"] += len(shed)
        self._counts["overloaded"] += sum(isinstance(a, SubmitIntent) for a in shed)
        self.current_done = True
        if isinstance(self.current, Bar) and self.current_bar_seq is not None:
            self._counts["bars"] += 1
        return shed

    def sent(self, action: SubmitIntent | CancelOrder) -> None:
        """Count an action delivered to risk."""
        self._counts["intents" if isinstance(action, SubmitIntent) else "cancels"] += 1

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to the counter `name` (``starts``, ``warmup_bars``, ``ignored``)."""
        self._counts[name] += n

    def _track(self, update: OrderUpdated) -> bool:
        """Apply an order update; return whether it is news (callbacks should run).

        An update whose journal sequence the host has already seen for its order is the
        same event sent again (an upstream handler redelivered after a crash re-sends
        its updates): the state ignores it, and so do the callbacks, or a strategy
        reacting to an acknowledgement or a confirmed cancel would react twice.
        """
        order = update.order
        known = self._seen_seq.get(order.client_order_id)
        track_order(self.orders, self._seen_seq, order)
        fill = update.fill
        if fill is not None and fill.instrument in self.instruments:
            self.current_new_fill = book_fill(self.portfolio, fill)
            if self.current_new_fill:
                self._counts["fills"] += 1
        return known is None or order.event_seq > known or self.current_new_fill

    def statistics(self) -> StrategyStatistics:
        """A frozen snapshot of the counters."""
        c = self._counts
        return StrategyStatistics(
            bars=c["bars"],
            duplicate_bars=c["duplicate_bars"],
            intents=c["intents"],
            cancels=c["cancels"],
            fills=c["fills"],
            denials=c["denials"],
            starts=c["starts"],
            warmup_bars=c["warmup_bars"],
            ignored=c["ignored"],
            shed=c["shed"],
            overloaded=c["overloaded"],
        )


_STRATEGY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _strategy_id_check(value: object) -> None:
    if not isinstance(value, str) or not _STRATEGY_ID.fullmatch(value):
        msg = (
            f"strategy_id: must start with a letter or digit and use only letters, digits, "
            f"'_', '.', '-', got {value!r}"
        )
        raise InvalidOrder(msg)


class PortfolioView:
    """A read-only view of the host's portfolio (positions, marks, PnL, cash)."""

    __slots__ = ("_portfolio",)

    def __init__(self, portfolio: Portfolio) -> None:
        self._portfolio = portfolio

    def position(self, symbol: str) -> Position:
        """The position in `symbol` (flat if it never traded).

        Raises:
            UnknownInstrument: `symbol` is not a configured instrument.
        """
        return self._portfolio.position(symbol)

    @property
    def positions(self) -> Mapping[str, Position]:
        """Every position that ever traded, by symbol."""
        return self._portfolio.positions

    @property
    def marks(self) -> Mapping[str, Any]:
        """The latest mark (bar close) per instrument."""
        return self._portfolio.marks

    @property
    def cash(self) -> Mapping[str, Any]:
        """Cash per currency (starting cash plus the fills' cash flows and fees)."""
        return MappingProxyType(self._portfolio.cash)

    def pnl_by_currency(self) -> dict[str, Any]:
        """Realized + unrealized PnL minus fees, per currency."""
        return self._portfolio.pnl_by_currency()

    def realized_pnl_by_currency(self) -> dict[str, Any]:
        """Realized PnL per currency (before fees)."""
        return self._portfolio.realized_pnl_by_currency()

    def unrealized_pnl_by_currency(self) -> dict[str, Any]:
        """Unrealized PnL per currency at the latest marks."""
        return self._portfolio.unrealized_pnl_by_currency()


class StrategyContext:
    """What a strategy sees and how it acts; handed to every callback.

    Reading is free; acting (`submit`, `buy`, `sell`, `cancel`) only buffers, and the host
    sends the buffer to risk after the callback returned. While ``warming_up`` (after a
    restart) and in `on_start` / `on_stop`, acting is ignored.

    Attributes:
        strategy_id: the id the strategy's intents carry.
        params: the strategy's parameters from the configuration (read-only).
        log: a structlog logger bound with the actor path and the strategy id.
    """

    def __init__(
        self,
        host: StrategyHost,
        *,
        params: Mapping[str, object],
        log: FilteringBoundLogger,
    ) -> None:
        self._host = host
        self.strategy_id = host.strategy_id
        self.params: Mapping[str, object] = MappingProxyType(dict(params))
        self.log = log.bind(strategy=host.strategy_id)
        self._portfolio = PortfolioView(host.portfolio)
        self._buffer: list[SubmitIntent | CancelOrder] = []
        self._now = 0
        self._upto: int | None = None
        self._acting = False
        self._warming_up = False

    # ------------------------------------------------------------------ reading

    @property
    def now(self) -> int:
        """The event time (ns) of the message being handled (a bar's time in a replay)."""
        return self._now

    @property
    def warming_up(self) -> bool:
        """True while the host replays history after a restart (intents are ignored)."""
        return self._warming_up

    @property
    def portfolio(self) -> PortfolioView:
        """The portfolio, read-only: positions, marks, PnL, cash."""
        return self._portfolio

    @property
    def trading_state(self) -> TradingState:
        """The trading state risk last announced (ACTIVE, REDUCING or HALTED)."""
        return self._host.trading_state

    def position(self, symbol: str) -> Position:
        """The current position in `symbol` (flat if it never traded).

        Raises:
            UnknownInstrument: `symbol` is not a configured instrument.
        """
        return self._host.portfolio.position(symbol)

    def instrument(self, symbol: str) -> Instrument:
        """The configured instrument `symbol` (tick and lot size, currency).

        Raises:
            KeyError: `symbol` is not a configured instrument.
        """
        return self._host.instruments[symbol]

    def history(self, symbol: str, n: int) -> list[Bar]:
        """The last `n` bars of `symbol`, oldest first, up to and including the bar being
        handled (fewer at the start, or if the host keeps fewer)."""
        return self._host.bars(symbol, n, self._upto)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """The strategy's working orders (of `symbol`, or all), by client order id.

        Orders appear once the order actor has numbered them (after the message that
        submitted them).
        """
        orders = self._host.orders
        if not orders:
            return []
        return [
            order
            for _id, order in sorted(orders.items())
            if symbol is None or order.intent.instrument == symbol
        ]

    # ------------------------------------------------------------------ acting

    def submit(self, intent: OrderIntent | None = None, /, **fields: object) -> None:
        """Ask for an order: an `OrderIntent`, or its fields as keywords.

        With keywords, ``strategy_id`` is filled in, ``order_type`` defaults to LIMIT
        when a ``limit_price`` is given and MARKET otherwise, and ``time_in_force`` to DAY.

        Raises:
            InvalidOrder: the intent is malformed or carries another strategy's id.
            FloatRefused: a quantity or price was a float.
        """
        if intent is None:
            fields.setdefault("strategy_id", self.strategy_id)
            fields.setdefault("limit_price", None)
            fields.setdefault(
                "order_type",
                OrderType.MARKET if fields["limit_price"] is None else OrderType.LIMIT,
            )
            fields.setdefault("time_in_force", TimeInForce.DAY)
            intent = OrderIntent(**fields)  # type: ignore[arg-type]
        elif fields:
            msg = f"submit: pass an OrderIntent or keywords, not both (got {sorted(fields)})"
            raise InvalidOrder(msg)
        given: object = intent
        if not isinstance(given, OrderIntent):
            msg = f"submit: expected an OrderIntent, got {type(given).__name__}"
            raise InvalidOrder(msg)
        if intent.strategy_id != self.strategy_id:
            msg = (
                f"strategy_id: intent is for {intent.strategy_id!r}, this strategy is "
                f"{self.strategy_id!r}"
            )
            raise InvalidOrder(msg)
        self._act(SubmitIntent(intent=intent, ts=self._now))

    def buy(
        self,
        symbol: str,
        quantity: DecimalLike,
        limit: DecimalLike | None = None,
        *,
        time_in_force: TimeInForce = TimeInForce.DAY,
        tag: str = "",
    ) -> None:
        """Buy `quantity` of `symbol`: at the market, or no higher than `limit`."""
        self._order(Side.BUY, symbol, quantity, limit, time_in_force, tag)

    def sell(
        self,
        symbol: str,
        quantity: DecimalLike,
        limit: DecimalLike | None = None,
        *,
        time_in_force: TimeInForce = TimeInForce.DAY,
        tag: str = "",
    ) -> None:
        """Sell `quantity` of `symbol`: at the market, or no lower than `limit`."""
        self._order(Side.SELL, symbol, quantity, limit, time_in_force, tag)

    def cancel(self, client_order_id: str, reason: str = "") -> None:
        """Ask to cancel a working order (cancels always pass risk)."""
        self._act(CancelOrder(client_order_id=client_order_id, ts=self._now, reason=reason))

    def _order(  # noqa: PLR0917 -- buy/sell's arguments passed on as they are
        self,
        side: Side,
        symbol: str,
        quantity: DecimalLike,
        limit: DecimalLike | None,
        time_in_force: TimeInForce,
        tag: str,
    ) -> None:
        self.submit(
            OrderIntent(
                strategy_id=self.strategy_id,
                instrument=symbol,
                side=side,
                quantity=quantity,
                order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
                limit_price=limit,
                time_in_force=time_in_force,
                tag=tag,
            )
        )

    def _act(self, action: SubmitIntent | CancelOrder) -> None:
        if self._acting:
            self._buffer.append(action)
        else:
            self._host.count("ignored")

    # ------------------------------------------------------------------ host side

    def _enter(self, now: int, *, upto: int | None, acting: bool, warming_up: bool) -> None:
        self._now = now
        self._upto = upto
        self._acting = acting
        self._warming_up = warming_up
        self._buffer = []

    def _take(self) -> list[SubmitIntent | CancelOrder]:
        taken, self._buffer = self._buffer, []
        self._acting = False
        return taken


class StrategyActor(Actor):
    """Hosts one `Strategy`: feeds it bars, fills and events, sends its intents to risk.

    Args:
        host: the state keeper, shared by every instance.
        factory: builds a fresh strategy (e.g. from `load_strategy`); called at every
            (re)start.
        params: the strategy's parameters for ``ctx.params``; by default the factory's
            ``params`` attribute, if it has one.
        risk: path of the risk actor.
        persistence: path of the persistence actor, which stores the intents refused
            because the outbox was full (as risk stores its denials); None to store
            nothing.
    """

    def __init__(
        self,
        host: StrategyHost,
        factory: Callable[[], Strategy],
        *,
        params: Mapping[str, object] | None = None,
        risk: str = "trading/risk",
        persistence: str | None = None,
    ) -> None:
        self.host = host
        self._factory = factory
        if params is None:
            params = getattr(factory, "params", None) or {}
        self._params = params
        self._risk_path = risk
        self._risk: ActorRef | None = None
        self._persistence_path = persistence
        self._persistence: ActorRef | None = None
        self._strategy: Strategy | None = None
        self._ctx: StrategyContext | None = None
        self._crashed = False
        self._in_flight: ActorContext | None = None
        self._held = 0  # outbox entries this instance counts as in flight
        self._wake = trio.Event()
        self._sending = trio.Lock()  # held by whoever is sending from the outbox
        self._sender: OwnedTask | None = None

    async def on_start(self) -> None:
        """Build the strategy, call its `on_start`, and warm it up on the kept history.

        Raises:
            ActorNotFound: the risk path names no actor.
            Exception: whatever the strategy's factory, `on_start` or warm-up raised (a
                crash, as in a handler).
        """
        self._risk = self.context.system.ref(self._risk_path)
        if self._persistence_path is not None:
            self._persistence = self.context.system.ref(self._persistence_path)
        host = self.host
        self._start_sender()
        strategy: object = self._factory()
        if not isinstance(strategy, Strategy):
            msg = f"{self.context.path}: the factory returned {strategy!r}, not a Strategy"
            raise TypeError(msg)
        if asynchronous := async_callbacks(type(strategy)):
            msg = f"{self.context.path}: {_async_callbacks_message(type(strategy), asynchronous)}"
            raise TypeError(msg)
        if strategy.lookback >= host.history:
            self.context.log.warning(
                "strategy_history_too_short", lookback=strategy.lookback, history=host.history
            )
        ctx = StrategyContext(host, params=self._params, log=self.context.log)
        self._strategy, self._ctx = strategy, ctx
        host.count("starts")
        replay = host.warmup_bars()
        # History as of the last bar whose callbacks completed: not the bar about to be
        # redelivered (it has not been handled yet), as in the warm-up below.
        ctx._enter(
            replay[-1][1].ts if replay else 0,
            upto=replay[-1][0] if replay else -1,
            acting=False,
            warming_up=bool(replay),
        )
        try:
            strategy.on_start(ctx)
            for seq, bar in replay:
                ctx._enter(bar.ts, upto=seq, acting=False, warming_up=True)
                strategy.on_bar(bar, ctx)
        except Exception:
            self._crashed = True
            raise
        finally:
            ctx._take()
        host.count("warmup_bars", len(replay))
        if replay:
            self.context.log.info("strategy_warmed_up", bars=len(replay))

    async def handle(self, message: object) -> None:
        """Apply `message`, run the strategy's callback, then queue what it buffered for
        the sender task (never waiting for risk: see the design notes).

        Cancellation: no checkpoint; a redelivered message that was done does nothing.
        """
        host = self.host
        if message is host.current and host.current_done:
            await self._deliver()
            return
        actions = self._callbacks(message) if host.begin(message) else []
        shed = host.finish(actions)
        self._queued(len(actions) - len(shed))
        if shed:
            await self._shed(shed)
        await self._deliver()

    async def _deliver(self) -> None:
        """Send from the outbox inline while risk's mailbox has room and the sender is
        idle (the usual case, and always in a replay); the rest is the sender's."""
        if not self.host.outbox:
            return  # the usual case: the callbacks decided nothing
        risk = self._risk
        assert risk is not None  # noqa: S101 -- set in on_start
        try:
            self._sending.acquire_nowait()
        except trio.WouldBlock:
            return  # the sender is delivering: it keeps the order
        try:
            while self.host.outbox and risk.has_room():
                await self._send_first()
        finally:
            self._sending.release()
        if self.host.outbox:
            self._wake.set()

    def _queued(self, n: int) -> None:
        """Count `n` new outbox entries as in flight."""
        if n:
            in_flight = self._in_flight
            assert in_flight is not None  # noqa: S101 -- set in on_start
            in_flight.hold_in_flight(n)
            self._held += n

    async def _shed(self, shed: list[SubmitIntent | CancelOrder]) -> None:
        """Refuse what did not fit in the outbox: log it, tell the strategy, and store
        the denials (persistence never sends to the strategy: waiting on it closes no
        cycle)."""
        host = self.host
        self.context.log.warning(
            "strategy_outbox_full", shed=len(shed), capacity=host.outbox_capacity
        )
        strategy, ctx = self._strategy, self._ctx
        assert strategy is not None  # noqa: S101 -- set in on_start
        assert ctx is not None  # noqa: S101 -- set in on_start
        detail = (
            f"the strategy's outbox to risk is full ({host.outbox_capacity} waiting): "
            "intents come faster than risk takes them"
        )
        denials = [
            IntentDenied(action.intent, DenyReason.OVERLOADED, detail, action.ts)
            for action in shed
            if isinstance(action, SubmitIntent)
        ]
        if denials and self._persistence is not None:
            await self._persistence.send(Persist(tuple(denials)))
        for denial in denials:
            ctx._enter(denial.ts, upto=host.current_bar_seq, acting=False, warming_up=False)
            try:
                strategy.on_denied(denial, ctx)
            except Exception:
                self._crashed = True
                raise
            finally:
                ctx._take()

    def _callbacks(self, message: object) -> list[SubmitIntent | CancelOrder]:
        strategy, ctx = self._strategy, self._ctx
        assert strategy is not None  # noqa: S101 -- set in on_start
        assert ctx is not None  # noqa: S101 -- set in on_start
        host = self.host
        ts: int = getattr(message, "ts", 0)
        limit = self.context.handler_timeout
        started = trio.current_time() if limit is not None else 0.0
        ctx._enter(ts, upto=host.current_bar_seq, acting=True, warming_up=False)
        try:
            match message:
                case Bar():
                    strategy.on_bar(message, ctx)
                case OrderUpdated():
                    strategy.on_order(message, ctx)
                    fill = message.fill
                    if fill is not None and host.current_new_fill:
                        strategy.on_fill(fill, ctx)
                case IntentDenied():
                    strategy.on_denied(message, ctx)
                case SessionChanged():
                    strategy.on_session(message, ctx)
                case TradingStateChanged() | EndOfData():
                    pass
                case _:
                    self.context.log.warning(
                        "unexpected_message", message_type=type(message).__name__
                    )
            if limit is not None:
                self._check_overrun(message, trio.current_time() - started, limit)
        except Exception:
            self._crashed = True
            ctx._take()
            raise
        return ctx._take()

    def _check_overrun(self, message: object, elapsed: float, limit: float) -> None:
        """Raise `HandlerTimeout` if the callbacks for `message` took longer than the
        handler timeout: they are synchronous, so trio could not cancel them, but a slow
        callback is a crash all the same (what it buffered is not sent)."""
        if elapsed > limit:
            msg = (
                f"{self.context.path}: the strategy's callback for {type(message).__name__} "
                f"ran {elapsed:.3f}s, longer than the handler timeout of {limit}s"
            )
            raise HandlerTimeout(msg)

    def _start_sender(self) -> None:
        """Take the in-flight count for what is in the outbox and start the sender."""
        self._in_flight = self.context  # holds the runtime's quiescence count
        held = len(self.host.outbox)
        self._in_flight.hold_in_flight(held)
        self._held = held
        self._sender = OwnedTask(
            f"{self.context.path}.sender", self._send_loop, self._sender_failed
        )
        self._sender.start()

    async def _send_loop(self) -> None:
        while True:
            async with self._sending:
                while self.host.outbox:
                    await self._send_first()
            self._wake = trio.Event()
            if not self.host.outbox:
                await self._wake.wait()

    def _sender_failed(self, exc: Exception) -> None:
        # A closed mailbox at shutdown is expected; what was not sent stays in the keeper.
        self.context.log.warning(
            "strategy_sender_failed", error=repr(exc), undelivered=len(self.host.outbox)
        )

    async def _send_first(self) -> None:
        """Send the oldest outbox entry to risk; pop it once its send returned."""
        risk = self._risk
        in_flight = self._in_flight
        assert risk is not None  # noqa: S101 -- set in on_start
        assert in_flight is not None  # noqa: S101 -- set in on_start
        host = self.host
        action = host.outbox[0]
        await risk.send(action)
        host.outbox.popleft()
        host.sent(action)
        self._held -= 1
        in_flight.release_in_flight()

    async def _stop_sender(self) -> None:
        """Cancel the sender, wait for it, and give back the count of what is left."""
        if self._sender is not None:
            await self._sender.stop()
        if self._in_flight is not None and self._held:
            held, self._held = self._held, 0
            self._in_flight.release_in_flight(held)

    async def on_stop(self) -> None:
        """Stop the sender (the outbox stays in the keeper), then call the strategy's
        `on_stop` unless it crashed (intents are ignored)."""
        await self._stop_sender()
        strategy, ctx = self._strategy, self._ctx
        if strategy is None or ctx is None or self._crashed or self.context.crashed:
            return
        ctx._enter(ctx.now, upto=None, acting=False, warming_up=False)
        strategy.on_stop(ctx)


# ----------------------------------------------------------------------------- loading


def _frozen_params(params: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(params))


@attrs.frozen
class StrategyFactory:
    """Builds instances of a strategy class with fixed parameters (callable, no args).

    Attributes:
        spec: where the class came from (``"module:Class"`` or ``"file.py:Class"``).
        cls: the strategy class.
        params: the keyword arguments each instance is built with (read-only).
    """

    spec: str
    cls: type[Strategy]
    params: Mapping[str, object] = attrs.field(converter=_frozen_params)

    def __call__(self) -> Strategy:
        """A new instance."""
        return self.cls(**self.params)


def _load_module(spec: str, module_part: str, base: Path | None) -> object:
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        path = Path(module_part)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            msg = f"strategy {spec!r}: file {str(path)!r} not found"
            raise InvalidStrategy(msg)
        name = "tradewind_strategy_" + re.sub(r"\W", "_", str(path.resolve()))
        file_spec = importlib.util.spec_from_file_location(name, path)
        if file_spec is None or file_spec.loader is None:
            msg = f"strategy {spec!r}: {str(path)!r} cannot be loaded as a Python module"
            raise InvalidStrategy(msg)
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = module
        try:
            file_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            msg = f"strategy {spec!r}: importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
            raise InvalidStrategy(msg) from exc
        return module
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as exc:
        missing = exc.name
        # The module itself or a package on its path is missing -- not one it imports.
        if missing is not None and (module_part + ".").startswith(missing + "."):
            msg = f"strategy {spec!r}: module {module_part!r} not found"
        else:
            msg = f"strategy {spec!r}: importing {module_part!r} failed: {exc}"
        raise InvalidStrategy(msg) from exc
    except Exception as exc:
        msg = f"strategy {spec!r}: importing {module_part!r} failed: {type(exc).__name__}: {exc}"
        raise InvalidStrategy(msg) from exc


def check_strategy_class(spec: str, found: object, name: str | None = None) -> None:
    """Check that `found` (named `name`, found through `spec`) is a `Strategy` subclass
    whose callbacks are plain synchronous methods.

    Raises:
        InvalidStrategy: it is not a `Strategy` subclass, or a callback is an
            ``async def`` (the host would never await it); the message names which.
    """
    if name is None:
        name = getattr(found, "__name__", repr(found))
    if not isinstance(found, type) or not issubclass(found, Strategy):
        msg = f"strategy {spec!r}: {name!r} is not a Strategy subclass (got {found!r})"
        raise InvalidStrategy(msg)
    if asynchronous := async_callbacks(found):
        msg = f"strategy {spec!r}: {_async_callbacks_message(found, asynchronous)}"
        raise InvalidStrategy(msg)


def load_strategy(
    spec: str, params: Mapping[str, object] | None = None, *, base: str | Path | None = None
) -> StrategyFactory:
    """Find a strategy class and check that it can be built with `params`.

    Args:
        spec: ``"package.module:ClassName"`` (imported) or ``"path/file.py:ClassName"``
            (loaded from the file; a relative path is relative to `base`, or to the
            working directory).
        params: the keyword arguments for the class (the configuration's strategy
            parameters).
        base: the directory relative file paths are resolved against (e.g. the
            configuration file's directory).

    Returns:
        A factory building a new instance per call; one instance was built to check the
        parameters.

    Raises:
        InvalidStrategy: the spec is malformed, the module or file does not exist or
            fails to import, the name is missing or not a `Strategy` subclass, a callback
            is an ``async def``, or the parameters are refused (unknown, missing, or
            rejected by the class); the message names which.
    """
    params = dict(params or {})
    module_part, colon, class_name = spec.rpartition(":")
    if not colon or not module_part or not class_name.isidentifier():
        msg = f"strategy {spec!r}: expected 'package.module:ClassName' or 'path/file.py:ClassName'"
        raise InvalidStrategy(msg)
    module = _load_module(spec, module_part, Path(base) if base is not None else None)
    found = getattr(module, class_name, None)
    if found is None:
        msg = f"strategy {spec!r}: {module_part!r} has no {class_name!r}"
        raise InvalidStrategy(msg)
    return strategy_factory(spec, found, params, class_name)


def strategy_factory(
    spec: str, found: object, params: Mapping[str, object], name: str | None = None
) -> StrategyFactory:
    """The factory of strategy class `found` (found through `spec`) with `params`, once
    one instance was built with them.

    Raises:
        InvalidStrategy: `found` is not a usable `Strategy` class (`check_strategy_class`),
            or its constructor does not take `params` or rejects them (any exception it
            raises); the message names which.
    """
    check_strategy_class(spec, found, name)
    assert isinstance(found, type)  # noqa: S101 -- checked just above; narrows for mypy
    params = dict(params)
    try:
        inspect.signature(found).bind(**params)
    except TypeError as exc:
        msg = f"strategy {spec!r}: bad params {sorted(params)}: {exc}"
        raise InvalidStrategy(msg) from exc
    factory = StrategyFactory(spec, found, params)
    try:
        factory()
    except Exception as exc:
        msg = f"strategy {spec!r}: bad params: {type(exc).__name__}: {exc}"
        raise InvalidStrategy(msg) from exc
    return factory
