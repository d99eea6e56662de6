"""The risk actor: the pre-trade gate, the trading state and the kill switch.

Design notes
------------
* The rules are pure and live in `tradewind.actors._risk` (`check_order`, `kill_switch`);
  this module keeps the state they are applied to (`RiskBook`) and is the thin async
  shell that feeds it messages and delivers what it decides (`RiskActor`).
* `RiskBook` is the *state keeper*: the tree builder makes it once and hands it to every
  `RiskActor` instance, so a restart keeps the limits, the trading state, the portfolio,
  the open orders, the marks, the order-rate window and the day's PnL baseline.
* Decide, then act, with an outbox. For each message the book computes the new state and
  the messages to send (`Effect`s) in one synchronous step, committing both together,
  and remembers the message it committed. The actor then delivers the outbox, popping
  each effect only after its `send` returned. A message redelivered after a crash or a
  cancellation is the very same object: if the book already committed it, only the rest
  of the outbox is delivered; the decision is not taken twice (an intent is not placed
  twice, a kill switch does not cancel twice). A crash before the commit changes nothing.
* Backpressure cycle: the order actor sends bars and updates to risk and risk sends
  `PlaceOrder`/`CancelOrder` to the order actor, both over BLOCK mailboxes; with a paper
  feed faster than the system both fill and each handler waits for the other. So the
  handler never waits on the order actor: `deliver` moves an effect for the order actor
  into the book's bounded ``orders_outbox`` (no checkpoint between that and popping it
  off the outbox, so a crash neither loses nor doubles it), and a sender task owned by
  the instance (a trio system task started in ``on_start``, cancelled and awaited in
  ``on_stop``) sends it on in order, popping each only after its send returned. The
  order actor therefore takes `PlaceOrder`s in the order risk decided them (the pending
  placeholders rely on that). `PlaceOrder`s and `CancelOrder`s that wait in the outbox
  one after another (after the kill switch's `CancelAllOrders`, if that comes first) go
  as one `OrderActions`: the decisions of one callback, or of one replay cascade, whose
  intents and cancel requests the order actor then journals in one durable write, so a
  kill between two journal writes cannot keep some of them and lose the others (see
  "Cold start" in ``docs/trading-system.md``). Waiting for room in the bounded outbox
  would close the cycle again: an intent that arrives while it is full is denied at once with
  `DenyReason.OVERLOADED` (counted, sent to the strategy and persistence like any
  denial); a cancel that does not fit is counted (``shed_cancels``) and logged. The kill
  switch's cancel-all and closing orders are never shed: they go in past the capacity
  (at most one cancel-all and one order per instrument a trip or a bar). What
  waits in ``orders_outbox`` is counted in the system's in-flight count until the order
  actor accepted it, so ``quiesce()`` (the replay barrier, the end of a run) waits for it;
  ``on_start`` takes that count for what a predecessor left, ``on_stop`` gives it back.
* An accepted intent counts as an open order at once (a *pending* placeholder order) so
  that the next intent of the same bar sees it: the order actor assigns the real client
  order id later. The first `OrderUpdated` of an unknown order whose intent equals a
  pending one replaces that placeholder (FIFO: the order actor takes `PlaceOrder`s in the
  order risk sent them).
* Fills are applied to the portfolio idempotently by execution id (`Portfolio.apply_fill`)
  and order snapshots only replace older ones (by journal sequence), so a redelivered
  update changes nothing.
* Day PnL is realized + unrealized - fees, per currency, minus the same figure at the
  start of the day, converted into the limits' currency. The day is the local date in the
  trading calendar's zone (UTC without a calendar), read from the event time of the
  message, never from the wall clock, so replays are deterministic.
* The trading state is derived, not set: HALTED while the kill switch is tripped (it stays
  tripped until a new day, if `RiskSettings.resume_next_day`), otherwise the more severe
  of the broker-down state (while the order actor reports the broker connection down)
  and the stale-feed state (while the feed is stale), otherwise ACTIVE. A change is
  announced once with `TradingStateChanged` to the strategy and to persistence.
* Broker disconnection: every intent is denied with `BROKER_DISCONNECTED` while the
  connection is down, never queued. The gate therefore checks intents against the state
  *without* the broker's part (a HALTED that only means "broker down" would otherwise
  be reported as TRADING_HALTED), and the broker flag gives the reason. The order actor
  reports the connection up again only after it has reconciled the orders and fills,
  and their updates reach risk first (one FIFO mailbox), so trading resumes on a
  reconciled book, and stays HALTED if those fills tripped the kill switch. A kill
  switch tripped while the connection was down had its cancels rejected locally: its
  `CancelAllOrders` goes again when the connection is back (`RiskBook.cancel_owed`).
* Store outage: while persistence reports the store unavailable
  (`StoreAvailabilityChanged`), no intent can be journaled, so trading is HALTED with
  the reason ``STORE_UNAVAILABLE`` and intents are denied with `STORE_UNAVAILABLE`
  (checked, like the broker's part, against the state without it). When the store is
  back the state is derived again: whatever else holds (a tripped kill switch, a stale
  feed, a broker down) still holds.
"""

from __future__ import annotations

import datetime as _dt
import enum
import itertools
import tomllib
import zoneinfo
from collections import Counter, deque
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import attrs
import trio
from tradewind.actors._calendar import TradingCalendar
from tradewind.actors._errors import CurrencyMismatch, DomainError, InvalidLimits, MissingPrice
from tradewind.actors._feed import OwnedTask
from tradewind.actors._marketdata import Bar
from tradewind.actors._messages import (
    BrokerConnectionChanged,
    CancelAllOrders,
    CancelOrder,
    EndOfData,
    FeedResumed,
    FeedStale,
    IntentDenied,
    OrderActions,
    OrderUpdated,
    Persist,
    PlaceOrder,
    SessionChanged,
    StoreAvailabilityChanged,
    SubmitIntent,
    SwapRiskLimits,
    TradingStateChanged,
)
from tradewind.actors._orders import (
    Fill,
    Order,
    TimeInForce,
    format_client_order_id,
    track_order,
)
from tradewind.actors._portfolio import Portfolio, book_fill
from tradewind.actors._risk import (
    FLATTEN_TAG,
    Deny,
    DenyReason,
    OrderRateWindow,
    RiskLimits,
    TradingState,
    check_order,
    flatten_intents,
    kill_switch,
)
from tradewind.actors._values import FxRates, Instrument, datetime_from_ns, ns_from_datetime
from tradewind.runtime._actor import Actor
from tradewind.runtime._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tradewind.actors._orders import OrderIntent
    from tradewind.runtime import ActorContext
    from tradewind.runtime._actor import ActorRef

_ZERO: Final = Decimal(0)
# Placeholder ids of accepted intents the order actor has not numbered yet. They never
# leave the book; the range is far above any real sequence.
_PENDING_SEQ_BASE: Final = 900_000_000


class Peer(enum.Enum):
    """Whom the risk actor sends to."""

    ORDERS = "orders"
    STRATEGY = "strategy"
    PERSISTENCE = "persistence"


@attrs.frozen
class Effect:
    """One message the book decided to send, and to whom; `always`: the kill switch's,
    never shed by a full outbox to the order actor."""

    to: Peer
    message: object
    always: bool = False


def _stale_state(
    _instance: object, attribute: attrs.Attribute[TradingState], value: object
) -> None:
    if not isinstance(value, TradingState):
        msg = f"{attribute.name}: must be a TradingState, got {value!r}"
        raise InvalidLimits(msg)


def _restricted_state(
    _instance: object, attribute: attrs.Attribute[TradingState], value: object
) -> None:
    if value not in {TradingState.REDUCING, TradingState.HALTED}:
        msg = f"{attribute.name}: must be TradingState.REDUCING or HALTED, got {value!r}"
        raise InvalidLimits(msg)


# What `_send_orders` hands over together (after a `CancelAllOrders`, or alone).
_GROUPED: Final = frozenset({PlaceOrder, CancelOrder})
# How severe a trading state is: the more severe of two reasons wins.
_SEVERITY: Final = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
BROKER_DOWN_REASON: Final = "the broker connection is down"
STORE_UNAVAILABLE_REASON: Final = "STORE_UNAVAILABLE"


@attrs.frozen
class RiskSettings:
    """How the risk actor behaves, beside the limits.

    Attributes:
        stale_feed_state: the trading state while the feed is stale: REDUCING (the
            default), HALTED, or ACTIVE to ignore stale feeds.
        flatten_on_kill: whether the kill switch also closes every position; None (the
            default) follows `RiskLimits.flatten_on_halt`.
        flatten_strategy_id: the strategy id the flatten orders are issued under; None
            uses the strategy id of the last intent risk saw (``"risk"`` if none).
        resume_next_day: whether a tripped kill switch is reset when a new trading day
            starts (default False: HALTED stays until the process is restarted).
        broker_down_state: the trading state while the broker connection is down:
            HALTED (the default) or REDUCING. Either way every intent is denied with
            `BROKER_DISCONNECTED` until the order actor has reconnected and reconciled;
            the state tells the strategy what to expect.
    """

    stale_feed_state: TradingState = attrs.field(
        default=TradingState.REDUCING, validator=_stale_state
    )
    flatten_on_kill: bool | None = None
    flatten_strategy_id: str | None = None
    resume_next_day: bool = False
    broker_down_state: TradingState = attrs.field(
        default=TradingState.HALTED, validator=_restricted_state
    )


@attrs.frozen
class RiskStatistics:
    """A snapshot of the risk book's counters and state.

    Attributes:
        state: the trading state in force.
        reason: why trading is in that state ("" when ACTIVE).
        intents: intents checked.
        accepted: intents accepted (sent to the order actor).
        denied: intents denied, by reason code.
        cancels: cancel requests passed on.
        fills: distinct fills applied to the portfolio.
        kill_switch_trips: how often the kill switch tripped.
        limit_swaps: how often the limits were replaced.
        open_orders: orders counted as open (including accepted, not yet numbered ones).
        day_pnl: the day's PnL in the limits' currency, or None if it cannot be valued.
        shed_cancels: cancels dropped because the outbox to the order actor was full.
    """

    state: TradingState
    reason: str
    intents: int
    accepted: int
    denied: Mapping[DenyReason, int]
    cancels: int
    fills: int
    kill_switch_trips: int
    limit_swaps: int
    open_orders: int
    day_pnl: Decimal | None
    shed_cancels: int = 0

    @property
    def denied_total(self) -> int:
        """All denials, whatever the reason."""
        return sum(self.denied.values())


def _instrument_table(
    value: Iterable[Instrument] | Mapping[str, Instrument],
) -> dict[str, Instrument]:
    return Portfolio(value).instruments


def _day_bounds(ts: int, zone: zoneinfo.ZoneInfo | None) -> tuple[_dt.date, int, int]:
    """The local date of `ts` and its [start, end) in ns (local midnights)."""
    moment = datetime_from_ns(ts)
    tz = zone if zone is not None else _dt.UTC
    day = moment.astimezone(tz).date()
    start = _dt.datetime.combine(day, _dt.time(0), tzinfo=tz)
    end = _dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time(0), tzinfo=tz)
    return day, ns_from_datetime(start), ns_from_datetime(end)


# Plain attribute writes on the hot path: no validator or converter runs on assignment.
@attrs.define(on_setattr=attrs.setters.NO_OP)
class RiskBook:
    """The risk actor's state keeper: everything risk knows, surviving restarts.

    Args:
        limits: the limits in force at start.
        instruments: the tradable instruments (a mapping by symbol or an iterable).
        settings: behaviour flags.
        calendar: the trading calendar whose local date is the trading day (UTC if None).
        fx: rates into the limits' currency for instruments quoted in another one.
        portfolio: the starting portfolio (e.g. rebuilt from stored fills); a new empty
            one over `instruments` if None.

    All methods are synchronous and never block; each `on_*` method commits the new state
    and returns the effects to deliver, in order.
    """

    limits: RiskLimits
    instruments: dict[str, Instrument] = attrs.field(converter=_instrument_table)
    settings: RiskSettings = attrs.field(factory=RiskSettings)
    calendar: TradingCalendar | None = None
    fx: FxRates | None = None
    portfolio: Portfolio = attrs.field(
        default=attrs.Factory(lambda self: Portfolio(self.instruments), takes_self=True)
    )
    orders: dict[str, Order] = attrs.field(init=False, factory=dict)
    pending: list[Order] = attrs.field(init=False, factory=list)
    last_prices: dict[str, Decimal] = attrs.field(init=False, factory=dict)
    rate: OrderRateWindow = attrs.field(init=False, factory=OrderRateWindow)
    outbox: deque[Effect] = attrs.field(init=False, factory=deque)
    orders_outbox_capacity: int = attrs.field(init=False, default=10_000)
    orders_outbox: deque[object] = attrs.field(init=False, factory=deque)
    committed: object = attrs.field(init=False, default=None)
    broker_connected: bool = attrs.field(init=False, default=True)
    broker_reason: str = attrs.field(init=False, default="")
    store_available: bool = attrs.field(init=False, default=True)
    store_reason: str = attrs.field(init=False, default="")
    killed: bool = attrs.field(init=False, default=False)
    kill_reason: str = attrs.field(init=False, default="")
    # The kill switch tripped while the broker was down: its cancel-all met a broker that
    # could not take it (cancels rejected locally), so it is sent again once it is back.
    cancel_owed: bool = attrs.field(init=False, default=False)
    feed_stale: bool = attrs.field(init=False, default=False)
    state: TradingState = attrs.field(init=False, default=TradingState.ACTIVE)
    reason: str = attrs.field(init=False, default="")
    day: _dt.date | None = attrs.field(init=False, default=None)
    last_ts: int = attrs.field(init=False, default=0)
    _day_span: tuple[int, int] = attrs.field(init=False, default=(0, 0))
    day_start: dict[str, Decimal] = attrs.field(init=False, factory=dict)
    last_strategy_id: str | None = attrs.field(init=False, default=None)
    _seen_seq: dict[str, int] = attrs.field(init=False, factory=dict)
    _pending_seq: int = attrs.field(init=False, default=_PENDING_SEQ_BASE)
    _zone: zoneinfo.ZoneInfo | None = attrs.field(init=False, default=None)
    _counts: Counter[str] = attrs.field(init=False, factory=Counter)
    _denied: Counter[DenyReason] = attrs.field(init=False, factory=Counter)

    def __attrs_post_init__(self) -> None:
        if self.calendar is not None:
            self._zone = zoneinfo.ZoneInfo(self.calendar.timezone)

    # ------------------------------------------------------------------ reads

    @property
    def open_orders(self) -> tuple[Order, ...]:
        """The orders risk counts as exposure: working orders plus accepted intents the
        order actor has not numbered yet."""
        return (*self.orders.values(), *self.pending)

    def day_pnl(self) -> Decimal | None:
        """The day's realized + unrealized PnL net of fees, in the limits' currency.

        Returns None when it cannot be valued (an open position without a mark, or a
        currency without an FX rate).
        """
        return self._day_pnl_of(self._pnl_by_currency())

    def _day_pnl_of(self, now: Mapping[str, Decimal] | None) -> Decimal | None:
        if now is None:
            return None
        total = _ZERO
        for currency in sorted(set(now) | set(self.day_start)):
            change = now.get(currency, _ZERO) - self.day_start.get(currency, _ZERO)
            if currency == self.limits.currency:
                total += change
                continue
            if self.fx is None:
                return None
            try:
                total += change * self.fx.rate(currency, self.limits.currency)
            except CurrencyMismatch:
                return None
        return total

    def statistics(self) -> RiskStatistics:
        """A frozen snapshot of the counters and the state."""
        return RiskStatistics(
            state=self.state,
            reason=self.reason,
            intents=self._counts["intents"],
            accepted=self._counts["accepted"],
            denied=MappingProxyType(dict(self._denied)),
            cancels=self._counts["cancels"],
            fills=self._counts["fills"],
            kill_switch_trips=self._counts["kill_switch_trips"],
            limit_swaps=self._counts["limit_swaps"],
            open_orders=len(self.orders) + len(self.pending),
            day_pnl=self.day_pnl(),
            shed_cancels=self._counts["shed_cancels"],
        )

    def day_start_of(self, ts: int) -> int:
        """When the trading day of `ts` began (the calendar's local midnight; UTC if
        none), in ns."""
        return _day_bounds(ts, self._zone)[1]

    def cancel_left_working(self, ts: int, orders: Iterable[Order]) -> None:
        """Cold start, HALTED by the kill switch: cancel the open `orders` it left
        (`Store.open_orders`: none of them final).

        The trip's cancel-all may never have reached the venue (the broker was down,
        then the process died), and HALTED must mean nothing of the strategies works
        there. Each open order is canceled first thing (the order actor reconciles
        before its first message, so it cancels what is still working then), except the
        kill switch's own flattening orders, which must go on closing the position. In
        case the broker is down now, a cancel-all is owed to the next reconnection, as
        after a trip during an outage.
        """
        for order in orders:
            intent = order.intent
            if intent.tag == FLATTEN_TAG and intent.time_in_force is TimeInForce.IOC:
                continue  # the kill switch's own: it goes on closing the position
            self.orders_outbox.append(CancelOrder(order.client_order_id, ts, self.kill_reason))
        self.cancel_owed = True

    def resume_since(self, ts: int, fills: Iterable[Fill]) -> int:
        """Where a cold start's walk (`resume`) begins: the start of the trading day of
        `ts` (the newest stored bar) or, when a tripped kill switch holds for good (no
        `resume_next_day`), of the day of the first stored fill -- a trip on any earlier
        day still holds, and before the first fill the day's PnL cannot move."""
        since = self.day_start_of(ts)
        if not self.settings.resume_next_day:
            first = min((fill.ts for fill in fills), default=None)
            if first is not None:
                since = min(since, self.day_start_of(first))
        return since

    def resume(  # noqa: PLR0917 -- the stored state a cold start hands over
        self,
        ts: int,
        fills: Iterable[Fill],
        day_bars: Iterable[Bar],
        closes: Mapping[str, Decimal],
        orders: Iterable[Order] = (),
        since: int | None = None,
    ) -> None:
        """Cold start: continue the trading day of `ts` (the newest stored bar) and the
        order-rate window as the crashed run left them, instead of opening a fresh day
        and an empty window at the first new event.

        The walk begins at `since`, the start of a trading day (default: the day of
        `ts`; `resume_since` says where it must begin). The baseline of its first day is
        the portfolio of the `fills` stored before `since`, marked at `closes` (each
        instrument's last stored close before it). The days are then walked again -- their
        fills and their `day_bars` (the stored bars from `since`), each bar after the
        fills made on it, each new day taking the walked portfolio as its baseline, as
        the crashed run did when the day began -- checking the day's PnL where the risk
        actor checks it (after a fill; after a mark of an open position): the kill switch
        latches, so a day whose losses passed the limit at any point resumes HALTED, even
        if the PnL has come back since, and so does every later day unless
        `resume_next_day` lifts it. Its cancels and flattening were journaled by the
        crashed run, or are decided again with the bars it lost. Without this a restart
        would hand the strategy a fresh daily loss budget. The stored `orders` created
        within the rate window ending at `ts` count toward `max_orders_per_second` again
        (each was an intent risk accepted), and the newest one names the strategy a kill
        switch flattens for.
        """
        window_start = ts - self.rate.window_ns
        stored = sorted(orders, key=lambda order: order.created_ts)
        for order in stored:
            if window_start < order.created_ts <= ts:
                self.rate.record(order.created_ts)
        if stored:  # whose id a kill switch's flattening orders are placed under
            self.last_strategy_id = stored[-1].intent.strategy_id
        day, start, end = _day_bounds(ts, self._zone)
        walk_start = start if since is None else min(since, start)
        walk = Portfolio(self.portfolio.instruments)
        events: list[tuple[int, str, int, Fill | Bar]] = []
        for fill in fills:
            if fill.instrument not in walk.instruments:
                continue
            if fill.ts < walk_start:
                book_fill(walk, fill)  # marks at the fill's price if unmarked, as live
            else:
                events.append((fill.ts, fill.instrument, 0, fill))
        for symbol, close in closes.items():
            if symbol in walk.instruments:
                walk.mark(symbol, close, walk_start - 1)  # a close from before the walk
        events.extend((bar.ts, bar.instrument, 1, bar) for bar in day_bars if bar.ts >= walk_start)
        span_end = _day_bounds(walk_start, self._zone)[2]
        self.day_start = walk.pnl_by_currency()
        worst: Decimal | None = None  # the worst day PnL of the day being walked
        tripped: Decimal | None = None  # the PnL that tripped the kill switch
        for event_ts, symbol, _kind, event in sorted(events, key=lambda item: item[:3]):
            if event_ts >= span_end:  # a new day: its baseline is the portfolio so far
                span_end = _day_bounds(event_ts, self._zone)[2]
                try:
                    self.day_start = walk.pnl_by_currency()
                except MissingPrice:
                    self.day_start = {}
                worst = None
                if self.settings.resume_next_day:
                    tripped = None
            if symbol not in walk.instruments:
                continue
            if isinstance(event, Fill):
                book_fill(walk, event)
            else:
                walk.mark(symbol, event.close, event.ts)
                if walk.position(symbol).is_flat:
                    continue
            if tripped is not None:
                continue
            try:
                pnl = self._day_pnl_of(walk.pnl_by_currency())
            except MissingPrice:
                continue
            if pnl is not None and (worst is None or pnl < worst):
                worst = pnl
            if worst is not None and worst <= -self.limits.daily_loss_limit:
                tripped = worst
        self.day, self._day_span = day, (start, end)
        self.last_ts = max(self.last_ts, ts)
        if tripped is None:
            return
        self.killed = True
        self.kill_reason = (
            f"kill switch: the day's PnL reached {tripped}, past the loss limit "
            f"{self.limits.daily_loss_limit} (restored at a cold start)"
        )
        self.state, self.reason = self._derive_state(with_broker=True)

    def seed_orders(self, orders: Iterable[Order]) -> None:
        """Count working orders known before the start (e.g. the store's open orders at
        a cold start) as open; terminal ones are ignored."""
        for order in orders:
            track_order(self.orders, self._seen_seq, order)

    # ------------------------------------------------------------------ messages

    def on_intent(self, message: SubmitIntent) -> list[Effect]:
        """Check an intent: `PlaceOrder` to the order actor, or an `IntentDenied`."""
        intent, ts = message.intent, message.ts
        self.last_strategy_id = intent.strategy_id
        effects = self._roll_day(ts)
        self._counts["intents"] += 1
        decision = check_order(
            self.limits,
            self._gate_state(),
            self.portfolio,
            self.open_orders,
            intent,
            ts,
            self.rate.recent(ts),
            self.last_prices,
            self.instruments,
            fx=self.fx,
            day_pnl=self.day_pnl(),
            broker_connected=self.broker_connected,
            store_available=self.store_available,
        )
        if not isinstance(decision, Deny):
            effects.append(self._place(intent, ts))
            self._counts["accepted"] += 1
            return effects
        self._denied[decision.reason] += 1
        denied = IntentDenied(intent=intent, reason=decision.reason, detail=decision.detail, ts=ts)
        effects.append(Effect(Peer.STRATEGY, denied))
        effects.append(Effect(Peer.PERSISTENCE, Persist((denied,))))
        return effects

    def deny_backlog(self, message: SubmitIntent) -> list[Effect]:
        """Deny an intent because the outbox to the order actor is full."""
        intent, ts = message.intent, message.ts
        self.last_strategy_id = intent.strategy_id
        effects = self._roll_day(ts)
        self._counts["intents"] += 1
        reason = DenyReason.OVERLOADED
        self._denied[reason] += 1
        detail = (
            f"the outbox to the order actor is full ({self.orders_outbox_capacity} waiting): "
            "intents come faster than the order actor takes them"
        )
        denied = IntentDenied(intent=intent, reason=reason, detail=detail, ts=ts)
        effects.append(Effect(Peer.STRATEGY, denied))
        effects.append(Effect(Peer.PERSISTENCE, Persist((denied,))))
        return effects

    def count(self, name: str) -> None:
        """Add one to the counter `name` (``shed_cancels``)."""
        self._counts[name] += 1

    def on_cancel(self, message: CancelOrder) -> list[Effect]:
        """A cancel always passes (`check_cancel`): on to the order actor."""
        self._counts["cancels"] += 1
        return [Effect(Peer.ORDERS, message)]

    def on_order_updated(self, message: OrderUpdated) -> list[Effect]:
        """Track the order, book its fill once, check the kill switch, tell the strategy."""
        effects = self._roll_day(message.ts)
        order = message.order
        if track_order(self.orders, self._seen_seq, order):
            self._claim_pending(order.intent)
        fill = message.fill
        if (
            fill is not None
            and fill.instrument in self.instruments
            and book_fill(self.portfolio, fill)
        ):
            self._counts["fills"] += 1
        effects.extend(self._check_kill_switch(message.ts))
        effects.append(Effect(Peer.STRATEGY, message))
        return effects

    def on_bar(self, bar: Bar) -> list[Effect]:
        """Mark the portfolio with the bar, check the kill switch, pass the bar on."""
        effects = self._roll_day(bar.ts)
        symbol = bar.instrument
        if symbol in self.instruments:
            self.last_prices[symbol] = bar.close
            self.portfolio.mark(symbol, bar.close, bar.ts)
            # A mark moves the day's PnL only through an open position in its instrument.
            if not self.portfolio.position(symbol).is_flat:
                effects.extend(self._check_kill_switch(bar.ts))
                effects.extend(self._keep_flat(symbol, bar.ts))
        effects.append(Effect(Peer.STRATEGY, bar))
        return effects

    def _keep_flat(self, symbol: str, ts: int) -> list[Effect]:
        """A tripped kill switch that flattens keeps flattening: a position in `symbol`
        left or opened after the trip -- the rest of a flattening order a bar's volume
        capped, a fill that beat a cancel -- is closed once no order works on it (one
        that does may still change it: its end is awaited)."""
        if not self.killed or not self._flattens():
            return []
        if any(order.intent.instrument == symbol for order in self.open_orders):
            return []
        intents = flatten_intents(self.portfolio, [symbol], strategy_id=self._flatten_id())
        return [self._place(intent, ts, always=True) for intent in intents]

    def _flattens(self) -> bool:
        """Whether the kill switch closes the positions."""
        if self.settings.flatten_on_kill is not None:
            return self.settings.flatten_on_kill
        return self.limits.flatten_on_halt

    def _flatten_id(self) -> str:
        """The strategy id the kill switch's flattening orders are placed under."""
        return self.settings.flatten_strategy_id or self.last_strategy_id or "risk"

    def on_feed_stale(self, message: FeedStale) -> list[Effect]:
        """The feed went quiet: move to the configured stale-feed state."""
        self.feed_stale = True
        return self._restate(message.ts)

    def on_feed_resumed(self, message: FeedResumed) -> list[Effect]:
        """The feed is back: leave the stale-feed state (a tripped kill switch stays)."""
        self.feed_stale = False
        return self._restate(message.ts)

    def on_broker_connection(self, message: BrokerConnectionChanged) -> list[Effect]:
        """The broker went down (intents are denied, the state moves to the configured
        broker-down state) or is back and reconciled (the state is derived again)."""
        self.broker_connected = message.connected
        self.broker_reason = message.reason
        effects: list[Effect] = []
        if message.connected and self.killed and self.cancel_owed:
            # The venue still works what the trip could not cancel: cancel it now, before
            # anything else reaches the order actor (the book is reconciled by now).
            self.cancel_owed = False
            cancel_all = CancelAllOrders(ts=message.ts, reason=self.kill_reason)
            effects.append(Effect(Peer.ORDERS, cancel_all, always=True))
        effects.extend(self._restate(message.ts))
        return effects

    def on_store_availability(self, message: StoreAvailabilityChanged) -> list[Effect]:
        """The store went away (HALTED, reason ``STORE_UNAVAILABLE``: no intent can be
        journaled) or is back (the state is derived again: a kill switch still halts)."""
        self.store_available = message.available
        self.store_reason = message.reason
        return self._restate(message.ts)

    def on_swap(self, message: SwapRiskLimits, ts: int) -> list[Effect]:
        """Replace the limits; a tighter loss limit may trip the kill switch at once.

        Raises:
            InvalidLimits: the message does not carry `RiskLimits`, or they are in another
                currency than the limits in force (the day's PnL, its baseline and the
                loss limit are in the running currency); the old limits stay.
        """
        limits: object = message.limits
        if not isinstance(limits, RiskLimits):
            msg = f"risk limits: a swap needs RiskLimits, got {type(limits).__name__}"
            raise InvalidLimits(msg)
        if limits.currency != self.limits.currency:
            msg = (
                f"risk limits: currency cannot change while running (from "
                f"{self.limits.currency} to {limits.currency}): the day's PnL and its loss "
                f"limit are in {self.limits.currency}"
            )
            raise InvalidLimits(msg)
        self.limits = limits
        self._counts["limit_swaps"] += 1
        return self._check_kill_switch(ts)

    # ------------------------------------------------------------------ internals

    def _place(self, intent: OrderIntent, ts: int, *, always: bool = False) -> Effect:
        self._pending_seq += 1
        placeholder = Order.create(
            format_client_order_id(intent.strategy_id, self._pending_seq), intent, ts
        )
        self.pending.append(placeholder)
        self.rate.record(ts)
        return Effect(Peer.ORDERS, PlaceOrder(intent=intent, ts=ts), always=always)

    def _claim_pending(self, intent: OrderIntent) -> None:
        for index, placeholder in enumerate(self.pending):
            if placeholder.intent == intent:
                del self.pending[index]
                return

    def _pnl_by_currency(self) -> dict[str, Decimal] | None:
        try:
            return self.portfolio.pnl_by_currency()
        except MissingPrice:
            return None

    def _roll_day(self, ts: int) -> list[Effect]:
        """Move to the day of `ts` if it is a later one. The day only moves forward: a
        message stamped with an earlier day that arrives late (paper trading: an intent
        decided on yesterday's last bar, another instrument's late bar, a broker's fill
        time) counts in the current day. Rolling back would take today's losses as the
        new baseline, and roll forward again on the next message: a loss limit reset
        twice, a tripped kill switch lifted with ``resume_next_day``."""
        self.last_ts = max(self.last_ts, ts)
        start, end = self._day_span
        if start <= ts < end or (self.day is not None and ts < start):
            return []
        day, start, end = _day_bounds(ts, self._zone)
        self._day_span = (start, end)
        if self.day == day:
            return []
        first = self.day is None
        self.day = day
        baseline = self._pnl_by_currency()
        self.day_start = baseline if baseline is not None else {}
        if first or not (self.killed and self.settings.resume_next_day):
            return []
        self.killed = False
        self.kill_reason = ""
        self.cancel_owed = False
        return self._restate(ts)

    def _derive_state(self, *, with_broker: bool) -> tuple[TradingState, str]:
        if self.killed:
            return TradingState.HALTED, self.kill_reason
        if with_broker and not self.store_available:
            reason = f"{STORE_UNAVAILABLE_REASON}: {self.store_reason}".removesuffix(": ")
            return TradingState.HALTED, reason
        state, reason = TradingState.ACTIVE, ""
        if with_broker and not self.broker_connected:
            state = self.settings.broker_down_state
            reason = f"{BROKER_DOWN_REASON}: {self.broker_reason}"
            reason = reason.removesuffix(": ")
        stale = self.settings.stale_feed_state
        if self.feed_stale and _SEVERITY[stale] > _SEVERITY[state]:
            state, reason = stale, "the market data feed is stale"
        return state, reason

    def _gate_state(self) -> TradingState:
        """The state intents are checked against: without the broker's part, whose
        denials carry their own reason (`BROKER_DISCONNECTED`, `STORE_UNAVAILABLE`)."""
        if self.broker_connected and self.store_available:
            return self.state
        return self._derive_state(with_broker=False)[0]

    def _restate(self, ts: int, *, announce_reason: bool = False) -> list[Effect]:
        """Derive the state again; announce a change of state (and, with
        `announce_reason`, of its reason alone: a kill switch tripping while trading is
        already HALTED for another reason must still be told and stored)."""
        state, reason = self._derive_state(with_broker=True)
        if state is self.state and reason == self.reason:
            return []
        if state is self.state and not announce_reason:
            self.reason = reason
            return []
        self.state, self.reason = state, reason
        change = TradingStateChanged(state=state, reason=reason or "trading resumed", ts=ts)
        return [Effect(Peer.STRATEGY, change), Effect(Peer.PERSISTENCE, Persist((change,)))]

    def _check_kill_switch(self, ts: int) -> list[Effect]:
        if self.killed:
            return []
        day_pnl = self.day_pnl()
        if day_pnl is None or day_pnl > -self.limits.daily_loss_limit:
            return []  # within the limit: the common case, decided without `kill_switch`
        decision = kill_switch(
            self.limits.replace(flatten_on_halt=self._flattens()),
            TradingState.ACTIVE,
            day_pnl,
            self.portfolio,
            self.orders.values(),
            strategy_id=self._flatten_id(),
        )
        if not decision.halt:
            return []
        self.killed = True
        self.kill_reason = f"kill switch: {decision.detail}"
        self.cancel_owed = not self.broker_connected
        self._counts["kill_switch_trips"] += 1
        cancel_all = CancelAllOrders(ts=ts, reason=self.kill_reason)
        effects = [Effect(Peer.ORDERS, cancel_all, always=True)]
        effects.extend(self._place(intent, ts, always=True) for intent in decision.flatten)
        effects.extend(self._restate(ts, announce_reason=True))
        return effects


class RiskActor(Actor):
    """The pre-trade gate between the strategy and the order actor.

    Handles `SubmitIntent`, `CancelOrder`, `OrderUpdated`, `Bar`, `FeedStale`,
    `FeedResumed`, `SessionChanged`, `EndOfData`, `BrokerConnectionChanged` and
    `SwapRiskLimits` (asked; answered with the `RiskLimits` in force). Other messages are
    logged and dropped.

    Args:
        book: the state keeper, shared by every instance.
        orders: path of the order actor.
        strategy: path of the strategy actor.
        persistence: path of the persistence actor.
    """

    def __init__(
        self,
        book: RiskBook,
        *,
        orders: str = "trading/orders",
        strategy: str = "trading/strategy",
        persistence: str = "persistence",
    ) -> None:
        self.book = book
        self._paths = {Peer.ORDERS: orders, Peer.STRATEGY: strategy, Peer.PERSISTENCE: persistence}
        self._refs: dict[Peer, ActorRef] = {}
        self._in_flight: ActorContext | None = None
        self._held = 0  # orders_outbox entries this instance counts as in flight
        self._wake = trio.Event()
        self._sender: OwnedTask | None = None

    async def on_start(self) -> None:
        """Resolve the peers' refs.

        Raises:
            ActorNotFound: a peer path names no actor.
        """
        system = self.context.system
        self._refs = {peer: system.ref(path) for peer, path in self._paths.items()}
        self._in_flight = self.context  # holds the runtime's quiescence count
        held = len(self.book.orders_outbox)
        self._in_flight.hold_in_flight(held)
        self._held = held
        self._sender = OwnedTask(
            f"{self.context.path}.sender", self._send_loop, self._sender_failed
        )
        self._sender.start()

    async def on_stop(self) -> None:
        """Stop the sender to the order actor (what it has not sent stays in the book)."""
        if self._sender is not None:
            await self._sender.stop()
        if self._in_flight is not None and self._held:
            held, self._held = self._held, 0
            self._in_flight.release_in_flight(held)

    async def _send_loop(self) -> None:
        book = self.book
        while True:
            await self._send_orders()
            self._wake = trio.Event()
            if not book.orders_outbox:
                await self._wake.wait()

    def _sender_failed(self, exc: Exception) -> None:
        # A closed mailbox at shutdown is expected; what was not sent stays in the book.
        self.context.log.warning(
            "risk_sender_failed", error=repr(exc), undelivered=len(self.book.orders_outbox)
        )

    async def _send_orders(self) -> None:
        """Send ``orders_outbox`` to the order actor in order, popping each message once
        its send returned. `PlaceOrder`s and `CancelOrder`s queued one after another (and
        a `CancelAllOrders` right before them: the kill switch's cancels and flattening
        orders) go as one `OrderActions`: the order actor journals them in one write (see
        the notes)."""
        ref = self._refs[Peer.ORDERS]
        in_flight = self._in_flight
        assert in_flight is not None  # noqa: S101 -- set in on_start
        queue = self.book.orders_outbox
        while queue:
            # a group: places and cancels, after a cancel-all (the kill switch's) or not
            taken = 1 if type(queue[0]) is CancelAllOrders else 0
            while taken < len(queue) and type(queue[taken]) in _GROUPED:
                taken += 1
            message: object = queue[0]
            if taken > 1:
                message = OrderActions(
                    tuple(
                        action
                        for action in itertools.islice(queue, taken)
                        if isinstance(action, PlaceOrder | CancelOrder | CancelAllOrders)
                    )
                )
            taken = max(taken, 1)
            await ref.send(message)
            for _ in range(taken):
                queue.popleft()
            self._held -= taken
            in_flight.release_in_flight(taken)

    async def handle(self, message: object) -> object:
        """Decide on `message` (once, even if redelivered), then deliver the effects.

        Returns:
            For `SwapRiskLimits`, the limits in force; otherwise None.

        Cancellation: decisions are committed before the first send; a cancelled delivery
        is finished when the message is redelivered, and never decided twice.
        """
        book = self.book
        await self._deliver()
        if message is book.committed:
            return book.limits if isinstance(message, SwapRiskLimits) else None
        effects = self._decide(message)
        book.committed = message
        book.outbox.extend(effects)
        await self._deliver()
        return book.limits if isinstance(message, SwapRiskLimits) else None

    def _decide(self, message: object) -> Iterable[Effect]:
        book = self.book
        match message:
            case SubmitIntent():
                if len(book.orders_outbox) >= book.orders_outbox_capacity:
                    effects = book.deny_backlog(message)
                else:
                    effects = book.on_intent(message)
                for effect in effects:
                    if isinstance(effect.message, IntentDenied) and effect.to is Peer.STRATEGY:
                        denied = effect.message
                        self.context.log.info(
                            "intent_denied", reason=denied.reason.value, detail=denied.detail
                        )
                return effects
            case Bar():
                return book.on_bar(message)
            case OrderUpdated():
                return book.on_order_updated(message)
            case CancelOrder():
                return book.on_cancel(message)
            case SessionChanged() | EndOfData():
                return [Effect(Peer.STRATEGY, message)]
            case FeedStale():
                return book.on_feed_stale(message)
            case FeedResumed():
                return book.on_feed_resumed(message)
            case StoreAvailabilityChanged():
                return book.on_store_availability(message)
            case BrokerConnectionChanged():
                return book.on_broker_connection(message)
            case SwapRiskLimits():
                try:
                    effects = book.on_swap(message, ts=book.last_ts)
                except InvalidLimits as exc:
                    self.context.log.warning("risk_limits_swap_refused", error=str(exc))
                    return []
                self.context.log.info("risk_limits_swapped", limits=repr(book.limits))
                return effects
            case _:
                self.context.log.warning("unexpected_message", message_type=type(message).__name__)
                return []

    def _queued(self) -> None:
        in_flight = self._in_flight
        assert in_flight is not None  # noqa: S101 -- set in on_start
        in_flight.hold_in_flight(1)
        self._held += 1
        self._wake.set()

    async def _deliver(self) -> None:
        book = self.book
        outbox = book.outbox
        while outbox:
            effect = outbox[0]
            if effect.to is Peer.ORDERS:
                # No checkpoint from here to the popleft: moved exactly once.
                if effect.always or len(book.orders_outbox) < book.orders_outbox_capacity:
                    book.orders_outbox.append(effect.message)
                    self._queued()
                else:
                    book.count("shed_cancels")
                    self.context.log.warning(
                        "risk_orders_outbox_full",
                        message_type=type(effect.message).__name__,
                        capacity=book.orders_outbox_capacity,
                    )
                outbox.popleft()
                continue
            await self._refs[effect.to].send(effect.message)
            outbox.popleft()
            if isinstance(effect.message, TradingStateChanged) and effect.to is Peer.STRATEGY:
                self.context.log.warning(
                    "trading_state_changed",
                    state=effect.message.state.value,
                    reason=effect.message.reason,
                )


def reload_risk_limits(path: str | Path, *, section: str = "risk") -> RiskLimits:
    """Re-read the risk section of a configuration file and validate it.

    The keys of the section are the fields of `RiskLimits` (and, ignored here, the
    behaviour flags of `RiskSettings`, which do not change at run time); amounts may be
    TOML numbers (read as exact decimals, never through float) or strings.

    Args:
        path: the TOML configuration file.
        section: the table holding the limits (dotted for a nested one).

    Returns:
        The new, validated limits (send them with `SwapRiskLimits`).

    Raises:
        ConfigError: the file cannot be read or parsed, the section is missing, or the
            limits are invalid; every problem is listed, each naming its setting. The
            limits in force are untouched.
    """
    source = str(path)
    try:
        with Path(path).open("rb") as handle:
            document = tomllib.load(handle, parse_float=Decimal)
    except OSError as exc:
        raise ConfigError([f"{source}: cannot be read: {exc.strerror or exc}"], source) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"], source) from exc
    table: object = document
    for key in section.split("."):
        if not isinstance(table, dict) or key not in table:
            raise ConfigError([f"{section}: required, missing"], source)
        table = table[key]
    if not isinstance(table, dict):
        raise ConfigError([f"{section}: must be a table, got {type(table).__name__}"], source)
    fields = {a.name for a in attrs.fields(RiskLimits)}
    # The section also holds the risk actor's behaviour flags; they are not limits.
    flags = {a.name for a in attrs.fields(RiskSettings)}
    problems = [f"{section}.{key}: unknown setting" for key in sorted(set(table) - fields - flags)]
    if problems:
        raise ConfigError(problems, source)
    try:
        return RiskLimits(**{k: v for k, v in table.items() if k in fields})
    except TypeError as exc:
        raise ConfigError([f"{section}: {exc}"], source) from exc
    except (InvalidLimits, DomainError) as exc:
        detail = str(exc).removeprefix("risk limits: ")
        _count, _sep, listing = detail.partition(" problem(s): ")
        raise ConfigError(
            [f"{section}.{p}" for p in (listing or detail).split("; ")], source
        ) from exc
