"""The order actor: client order ids, the durable journal, the order state machine, the broker.

`OrderActor` is the thin async shell; `OrderBook` is its state keeper, made once by the
tree builder and handed to every instance, so a restart keeps the working orders, the id
sequence and the applied execution ids.
"""

# Design notes
# ------------
# * Placing an order, in this order and no other: assign the client order id; journal the
#   INITIALIZED order with `PersistDurably` (an ask, answered after commit); apply
#   OrderSubmitted; `broker.submit`; apply what the broker answered. An order therefore
#   reaches the broker only after its intent is durable. When it cannot be made durable
#   (persistence answers `NotDurable` during a store outage, or nothing within
#   `journal_timeout`), the order is recorded as DENIED with the reason
#   ``store unavailable`` and never reaches the broker (risk halts trading meanwhile),
#   not even when its message is redelivered once the store is back: the DENIED update
#   may already have reached risk and persistence, and DENIED and SUBMITTED share the
#   journal key (id, seq 1). Rejected: retrying the write on redelivery; it submitted an
#   order announced as DENIED (persistence then refused the SUBMITTED as a conflicting
#   write, and a cold start lost an order working at the venue).
# * Cancelling follows the same write-ahead rule: the PENDING_CANCEL update (snapshot and
#   CANCEL_REQUESTED event) is journaled before `broker.cancel`, and is not persisted a
#   second time afterwards. A cold start then finds the request, and the paper venue
#   rebuilt from the journal takes it (`PaperExchange.restore`). Unlike an intent, a
#   cancel whose request cannot be made durable still goes to the broker: it only takes
#   risk away. A disconnected broker gets no write: the cancel is rejected locally.
# * Places and cancels decided together arrive as one `OrderActions` (risk groups what
#   waits in its outbox one after another): every INITIALIZED order and PENDING_CANCEL
#   update among them is journaled in one write, then the cancels are carried out, then
#   the places, each kind in the order decided. A kill finds all of a decision journaled
#   or none of it; without the group, a kill between the writes of "buy, then cancel the
#   old order" kept the buy and lost the cancel (the restart does not decide that bar
#   again). Cancels first: they only take risk away, and it is a fixed order a restart's
#   reconciliation reproduces (`tradewind.actors._reconcile`), so a strategy reacting to
#   the new order's ack sees the cancel's confirmation before it, after a kill as in an
#   uninterrupted run. (In the order decided, a kill after the write told the strategy
#   of the ack first, and its reaction could differ.)
# * Decide, then act, then commit: a handler computes the change to the book (a
#   `BookChange` over the committed book, pure), performs the effects (persist, tell
#   risk, forward the bar), and only then commits the change to the book. Steps that must
#   not be repeated are remembered in `OrderBook.pending` as soon as they are done: the
#   client order id given to this message, whether its journal record is durable or its
#   places were denied instead, and each broker call's answer. A message redelivered
#   after a crash (the same object, by identity) resumes from there: it gets the same id,
#   is not journaled again, a denied place stays denied, and the broker is not called
#   again; the effects after the last broker call are sent again
#   (at least once), which is safe because every receiver is idempotent (persistence on
#   natural keys, the portfolio on execution ids, order snapshots by journal seq).
# * Known gap: a `PlaceOrder` dead-lettered (its redeliveries spent) after its journal
#   write leaves an INITIALIZED order in the store that never reached the broker; its
#   pending record is simply replaced by the next message. A cold start that restores it
#   (`OrderBook.restore`) reconciles it on the first connect: unknown to the broker, it
#   becomes REJECTED "unknown to the broker after reconnect/restart".
# * Idempotence beyond redelivery: a fill whose execution id the book already applied is
#   ignored, and the broker itself answers a repeated submit of a client order id with
#   its first answer (see `Broker.submit`).
# * A disconnected broker: a new order is refused at once, before it is journaled as
#   submitted: it is recorded as DENIED with the reason ``broker disconnected`` (the one
#   exit of INITIALIZED that says "never reached the broker"), and risk and persistence
#   hear of it like any other update. A cancel is answered with a local cancel reject.
#   Bars still reach risk and the strategy, and still go to the broker: a simulated
#   venue keeps trading them (its news is lost until the reconciliation), a live one
#   raises. A broker call that raises `BrokerDisconnected` marks the connection down and
#   tells risk (`BrokerConnectionChanged(False)`: risk denies every intent and moves
#   trading to its broker-down state).
# * Reconnection: a timer owned by the instance (a trio system task, since actors have no
#   nursery) sleeps for the backoff delay on trio time (virtual under MockClock) and
#   then sends the actor a `_Reconnect` message; the handler does the work, one message
#   at a time like everything else, so nothing races the book. The delay of attempt n
#   is the runtime's `backoff_delay` (exponential, capped, jitter drawn from the book's
#   seeded RNG, so a run is reproducible and the sequence continues across restarts).
#   A failed attempt schedules the next; `on_stop` cancels the timer and waits for it. A
#   restarted instance during an outage schedules the next attempt at once (the backoff
#   goes on). Rejected: a loop in a handler (it would hold the mailbox and every bar),
#   and sleeping in a handler (handler timeouts, and the same).
# * A reconnect is: connect, re-subscribe (subscriptions end with a connection), read
#   the venue's view (`open_orders`, `fills_since` the loss, `lookup_orders` of our
#   working orders it no longer lists) and reconcile with the pure
#   `tradewind.actors._reconcile`; the resulting updates go to persistence and risk
#   first, and only then `BrokerConnectionChanged(True)`: risk resumes trading on a
#   reconciled book (one FIFO mailbox). Any `BrokerDisconnected` on the way counts as a
#   failed attempt. A book restored at a cold start with open orders reconciles the same
#   way on the first connect (its `down_since` is the oldest open order's creation).
# * An operator's disconnect (`BrokerConnectionChanged(False)` sent to the actor) stays
#   down: no timer, until `BrokerConnectionChanged(True)`, which reconnects at once (and
#   falls back to the timer if that fails). The session belongs to the actor: `on_stop`
#   disconnects and `on_start` connects again, so a restart reconnects (except after an
#   operator's disconnect).
# * Events from the broker that the book cannot apply (an unknown order, an illegal
#   transition, a broken fill) are logged and counted, never raised: a crash would only
#   redeliver the same bar until it is dead-lettered, and the bar must still reach risk.
# * Records sent to persistence, per handled message in one `Persist`: the message's
#   `OrderUpdated`s, in order (snapshot + stamped event + fill). The persistence actor
#   maps each onto `write_order`, `append_order_events` and `write_fills`. The durable
#   journal record of an intent is the INITIALIZED `Order` itself (no event yet).

from __future__ import annotations

import random
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from tradewind.actors._broker import BrokerEvent
from tradewind.actors._errors import BrokerDisconnected, IllegalTransition, InvalidOrder
from tradewind.actors._marketdata import Bar
from tradewind.actors._messages import (
    BrokerConnectionChanged,
    CancelAllOrders,
    CancelOrder,
    NotDurable,
    OrderActions,
    OrderUpdated,
    Persist,
    PersistDurably,
    PlaceOrder,
    SessionChanged,
)
from tradewind.actors._orders import (
    ClientOrderIds,
    Order,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderEventKind,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
)
from tradewind.actors._reconcile import BrokerView, reconcile
from tradewind.runtime import Actor, AskTimeout, Backoff
from tradewind.runtime._intensity import backoff_delay

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from tradewind.actors._broker import Broker
    from tradewind.actors._orders import OrderEvent
    from tradewind.runtime import ActorContext, ActorRef

PERSISTENCE_PATH: Final = "persistence"
RISK_PATH: Final = "trading/risk"
DISCONNECTED_REASON: Final = "broker disconnected"
#: The default reconnect backoff: 1 s, doubling, at most 30 s, +-10 % jitter.
RECONNECT_BACKOFF: Final = Backoff(initial=1.0, multiplier=2.0, maximum=30.0, jitter=0.1)
STORE_UNAVAILABLE_REASON: Final = "store unavailable"
# The key under which a bar's broker answer is kept in `Pending.answers`.
_BAR_ANSWER: Final = ""


# ----------------------------------------------------------------------------- state keeper


@attrs.define
class Pending:
    """What is already done for the message being handled (survives a crash).

    Attributes:
        message: the message, matched by identity on redelivery.
        orders: the INITIALIZED orders the places of the message were given (their ids
            are taken).
        requests: the PENDING_CANCEL update of each of the message's actions that is a
            cancel of a cancelable order (None for a place or an ignored cancel), once
            computed.
        journaled: their INITIALIZED and PENDING_CANCEL records are durable.
        denied: why the places of the message are denied (the journal write was refused,
            or the broker was disconnected), once decided; None while they may go on. A
            redelivery denies them again for the same reason, never journals or submits
            them.
        answers: each broker call's answer, by client order id (a bar's under ``""``).
    """

    message: object
    orders: list[Order] = attrs.field(factory=list)
    requests: list[OrderUpdated | None] | None = None
    journaled: bool = False
    denied: str | None = None
    answers: dict[str, tuple[BrokerEvent, ...]] = attrs.field(factory=dict)


@attrs.frozen
class OrderBookStatistics:
    """Counters of the order book (see `OrderBook.statistics`)."""

    placed: int
    submitted: int
    accepted: int
    rejected: int
    refused: int
    fills: int
    canceled: int
    expired: int
    cancel_requests: int
    working: int
    skipped_events: int
    redelivered: int
    connected: bool
    disconnects: int
    reconnect_attempts: int
    reconnects: int
    reconciled_events: int


@attrs.define
class OrderBook:
    """The order actor's state: working orders, ids, applied executions, counters.

    Made once per tree and shared by every `OrderActor` instance the factory builds.

    Args:
        finished_capacity: how many finished orders are kept for late news (a fill that
            raced a cancel); the oldest are forgotten first.
        rng: the seeded source of the reconnect backoff's jitter.

    Connection state: `connected` (as the actor last knew it), `down_since` (the event
    time from which the venue's fills are reconciled; set while an outage or a cold
    start's reconciliation is outstanding), `reconnect_attempt` (attempts in this
    outage), `operator_down` (an operator disconnected: no automatic reconnect) and
    `subscriptions` (re-issued on every connect).
    """

    finished_capacity: int = 10_000
    ids: dict[str, ClientOrderIds] = attrs.field(factory=dict)
    working: dict[str, Order] = attrs.field(factory=dict)
    finished: OrderedDict[str, Order] = attrs.field(factory=OrderedDict)
    execution_ids: set[str] = attrs.field(factory=set)
    connected: bool = True
    # Event time at which the connection was lost (reconciliation starts there).
    down_since: int | None = None
    pending: Pending | None = None
    last_ts: int = 0
    counts: dict[str, int] = attrs.field(factory=dict)
    # S311: jitter for reconnect delays, not a secret.
    rng: random.Random = attrs.field(factory=lambda: random.Random(0))  # noqa: S311
    reconnect_attempt: int = 0
    operator_down: bool = False
    subscriptions: set[str] = attrs.field(factory=set)

    @classmethod
    def restore(
        cls, open_orders: Iterable[Order], last_seqs: Mapping[str, int] | None = None
    ) -> OrderBook:
        """A book for a cold start: the stored open orders and id sequences.

        Args:
            open_orders: the working orders from the store (`Store.open_orders`).
            last_seqs: the highest stored client order sequence per strategy id
                (`Store.max_client_order_seq`); ids of `open_orders` are observed too.

        With open orders the book is marked for reconciliation: the order actor's first
        connect compares them with the broker (from the oldest one's creation time).
        """
        book = cls()
        for strategy_id, seq in (last_seqs or {}).items():
            book.ids[strategy_id] = ClientOrderIds(strategy_id, seq)
        for order in open_orders:
            book.working[order.client_order_id] = order
            book.execution_ids |= order.execution_ids
            book._ids_for(order.intent.strategy_id).observe(order.client_order_id)
            book.last_ts = max(book.last_ts, order.updated_ts)
            since = book.down_since
            book.down_since = order.created_ts if since is None else min(since, order.created_ts)
        return book

    def _ids_for(self, strategy_id: str) -> ClientOrderIds:
        ids = self.ids.get(strategy_id)
        if ids is None:
            ids = self.ids[strategy_id] = ClientOrderIds(strategy_id)
        return ids

    def next_client_order_id(self, strategy_id: str) -> str:
        """Issue the next client order id of `strategy_id` (the sequence advances now)."""
        return self._ids_for(strategy_id).next()

    def order(self, client_order_id: str) -> Order | None:
        """The order with this id, working or recently finished; None if unknown."""
        found = self.working.get(client_order_id)
        return found if found is not None else self.finished.get(client_order_id)

    def open_orders(self) -> tuple[Order, ...]:
        """The working orders, oldest first."""
        return tuple(self.working.values())

    def change(self) -> BookChange:
        """Start computing a change over the committed book (nothing changes yet)."""
        return BookChange(self)

    def commit(self, change: BookChange) -> None:
        """Make `change` the book's state and count its updates."""
        for client_order_id, order in change.orders.items():
            if order.status.is_working:
                self.working[client_order_id] = order
                continue
            self.working.pop(client_order_id, None)
            self.finished[client_order_id] = order
            self.finished.move_to_end(client_order_id)
            while len(self.finished) > self.finished_capacity:
                self.finished.popitem(last=False)
        self.execution_ids |= change.executions
        for update in change.updates:
            self.tally(update.event.kind.value)
        self.tally("skipped", len(change.skipped))

    def tally(self, key: str, n: int = 1) -> None:
        """Add `n` to the counter `key` (see `statistics`)."""
        self.counts[key] = self.counts.get(key, 0) + n

    def statistics(self) -> OrderBookStatistics:
        """A frozen snapshot of the counters."""
        count = self.counts.get
        return OrderBookStatistics(
            placed=count("placed", 0),
            submitted=count(OrderEventKind.SUBMITTED.value, 0),
            accepted=count(OrderEventKind.ACCEPTED.value, 0),
            rejected=count(OrderEventKind.REJECTED.value, 0),
            refused=count(OrderEventKind.DENIED.value, 0),
            fills=count(OrderEventKind.FILLED.value, 0),
            canceled=count(OrderEventKind.CANCELED.value, 0),
            expired=count(OrderEventKind.EXPIRED.value, 0),
            cancel_requests=count(OrderEventKind.CANCEL_REQUESTED.value, 0),
            working=len(self.working),
            skipped_events=count("skipped", 0),
            redelivered=count("redelivered", 0),
            connected=self.connected,
            disconnects=count("disconnects", 0),
            reconnect_attempts=count("reconnect_attempts", 0),
            reconnects=count("reconnects", 0),
            reconciled_events=count("reconciled_events", 0),
        )


@attrs.define
class BookChange:
    """A change to an `OrderBook` being computed: new order snapshots and their updates.

    Pure bookkeeping over the committed book; `OrderBook.commit` applies it.
    """

    book: OrderBook
    orders: dict[str, Order] = attrs.field(factory=dict)
    updates: list[OrderUpdated] = attrs.field(factory=list)
    executions: set[str] = attrs.field(factory=set)
    skipped: list[str] = attrs.field(factory=list)

    def current(self, client_order_id: str) -> Order | None:
        """The order as of this change (or as committed)."""
        found = self.orders.get(client_order_id)
        return found if found is not None else self.book.order(client_order_id)

    def record(self, order: Order) -> Order:
        """Take `order` (just changed by one event) into the change, with its update."""
        return self.take(update_of(order))

    def take(self, update: OrderUpdated) -> Order:
        """Take an update computed ahead (a journaled cancel request) into the change."""
        order = update.order
        self.orders[order.client_order_id] = order
        self.updates.append(update)
        return order

    def apply(self, event: OrderEvent) -> Order | None:
        """Apply one event to its order; record and return the new order.

        Returns None (and notes why in `skipped`) for an unknown order, a fill already
        applied, or an event the order's state machine refuses.
        """
        order = self.current(event.client_order_id)
        if order is None:
            self.skipped.append(f"{event.kind.value} for unknown order {event.client_order_id}")
            return None
        if isinstance(event, OrderFilled):
            execution_id = event.fill.execution_id
            if execution_id in self.book.execution_ids or execution_id in self.executions:
                return None
        try:
            changed = order.apply(event)
        except (IllegalTransition, InvalidOrder) as exc:
            self.skipped.append(str(exc))
            return None
        if isinstance(event, OrderFilled):
            self.executions.add(event.fill.execution_id)
        return self.record(changed)

    def apply_all(self, events: Iterable[OrderEvent]) -> None:
        """`apply` each event in order."""
        for event in events:
            self.apply(event)

    def records(self) -> tuple[object, ...]:
        """What to persist: the updates, in order (each is an order snapshot, its stamped
        event and its fill, if any)."""
        return tuple(self.updates)


def update_of(order: Order) -> OrderUpdated:
    """The update that announces `order` (just changed by one event)."""
    event = order.last_event
    if event is None:
        msg = f"order {order.client_order_id}: a recorded order must carry its event"
        raise InvalidOrder(msg)
    return OrderUpdated(order=order, event=event, ts=event.ts)


# ----------------------------------------------------------------------------- actor


class OrderActor(Actor):
    """Owns the broker connection and drives every order through its state machine.

    Handles `Bar` (match at the broker, tell risk the updates, then forward the bar),
    `PlaceOrder`, `CancelOrder`, `CancelAllOrders`, `BrokerConnectionChanged` (an
    operator's disconnect or reconnect) and its own reconnect timer's messages.

    Args:
        book: the state keeper shared by every instance.
        broker: the venue; shared by every instance as well (the session is the actor's:
            it connects in `on_start` and disconnects in `on_stop`).
        persistence: the path of the persistence actor.
        risk: the path of the risk actor.
        journal_timeout: seconds to wait for the durable journal write of an intent.
        reconnect_backoff: the delays between reconnect attempts (attempt n waits
            ``backoff_delay(reconnect_backoff, n, book.rng)`` seconds of trio time).
        subscriptions: instruments whose market data the broker session subscribes to
            (added to `OrderBook.subscriptions`; re-issued after every reconnect).

    Cancellation and crashes: a handler cancelled or crashing mid-way has its message
    redelivered by the runtime to the next instance, which resumes from
    `OrderBook.pending`: the id, the journal write and every broker call already done are
    not repeated (see the module notes). The reconnect timer belongs to the instance and
    is cancelled by `on_stop`.
    """

    def __init__(
        self,
        book: OrderBook,
        broker: Broker,
        *,
        persistence: str = PERSISTENCE_PATH,
        risk: str = RISK_PATH,
        journal_timeout: float = 30.0,
        reconnect_backoff: Backoff = RECONNECT_BACKOFF,
        subscriptions: Iterable[str] = (),
    ) -> None:
        self.book = book
        self.broker = broker
        self._persistence_path = persistence
        self._risk_path = risk
        self._journal_timeout = journal_timeout
        self._backoff = reconnect_backoff
        self._subscriptions = frozenset(subscriptions)
        self._persistence: ActorRef
        self._risk: ActorRef
        self._timer: ReconnectTimer | None = None

    async def on_start(self) -> None:
        """Resolve the peers and open the broker session.

        A broker that cannot be reached marks the connection down and starts the
        reconnect timer (not a crash). A book with a reconciliation outstanding (a cold
        start with open orders) reconciles before the first message is handled. During
        an outage (a restart while down) the next reconnect attempt is scheduled.
        """
        system = self.context.system
        self._persistence = system.ref(self._persistence_path)
        self._risk = system.ref(self._risk_path)
        self._timer = ReconnectTimer(self.context)
        book = self.book
        book.subscriptions |= self._subscriptions
        if book.operator_down:
            return
        if not book.connected:
            self._schedule_reconnect()
        elif not self.broker.connected or book.down_since is not None:
            await self._open_session(book.last_ts)

    async def on_stop(self) -> None:
        """Stop the reconnect timer and close the broker session (working orders stay at
        the venue)."""
        if self._timer is not None:
            await self._timer.stop()
        await self.broker.disconnect()

    async def handle(self, message: Any) -> Any:  # noqa: ANN401 -- the runtime's Message
        """Dispatch one message; the reply is what an ``ask`` gets (see each handler)."""
        if isinstance(message, Bar):
            await self._on_bar(message)
            return None
        if isinstance(message, SessionChanged):
            # on the bars' path, so risk and the strategy get it with its bar
            await self._risk.send(message)
            return None
        if isinstance(message, PlaceOrder | CancelOrder):
            return (await self._on_actions(message, (message,)))[0]
        if isinstance(message, OrderActions):
            return await self._on_actions(message, self._expanded(message.actions))
        if isinstance(message, CancelAllOrders):
            cancels = self._expanded((message,))
            await self._on_actions(message, cancels)
            return tuple(c.client_order_id for c in cancels if isinstance(c, CancelOrder))
        if isinstance(message, BrokerConnectionChanged):
            return await self._on_connection(message)
        if isinstance(message, _Reconnect):
            await self._on_reconnect(message)
            return None
        self.context.log.warning("unexpected_message", message_type=type(message).__name__)
        return None

    # ------------------------------------------------------------------ helpers
    def _pending_for(self, message: object) -> Pending:
        book = self.book
        pending = book.pending
        if pending is not None and pending.message is message:
            book.tally("redelivered")
            return pending
        pending = book.pending = Pending(message)
        return pending

    def _finish(self, change: BookChange) -> None:
        for reason in change.skipped:
            self.context.log.warning("broker_event_skipped", reason=reason)
        self.book.commit(change)
        self.book.pending = None

    async def _publish(
        self, change: BookChange, journaled: Sequence[OrderUpdated | None] = ()
    ) -> None:
        """Send the change's updates to persistence (except those `journaled` already)
        and to risk, in order."""
        if not change.updates:
            return
        records = change.records()
        if journaled:
            durable = {id(update) for update in journaled if update is not None}
            records = tuple(update for update in records if id(update) not in durable)
        if records:
            await self._persistence.send(Persist(records))
        for update in change.updates:
            await self._risk.send(update)

    # ------------------------------------------------------------------ connection
    async def _lost(self, ts: int, reason: str) -> None:
        """The connection went down at event time `ts`: tell risk, then (unless an
        operator took it down) schedule the first reconnect attempt."""
        book = self.book
        if not book.connected:
            return
        self.context.log.warning("broker_connection_lost", reason=reason, ts=ts)
        await self._risk.send(BrokerConnectionChanged(connected=False, ts=ts, reason=reason))
        book.connected = False
        since = book.down_since
        book.down_since = ts if since is None else min(since, ts)
        book.reconnect_attempt = 0
        book.tally("disconnects")
        if not book.operator_down:
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        book = self.book
        book.reconnect_attempt += 1
        delay = backoff_delay(self._backoff, book.reconnect_attempt, book.rng)
        self.context.log.info(
            "broker_reconnect_scheduled", attempt=book.reconnect_attempt, delay=delay
        )
        assert self._timer is not None  # noqa: S101 -- made in on_start, before any message
        self._timer.start(delay, _Reconnect(book.reconnect_attempt))

    async def _open_session(self, ts: int) -> None:
        """Connect, re-subscribe, reconcile if an outage (or a cold start) left anything
        to reconcile, and only then report the connection up.

        A `BrokerDisconnected` on the way is a failed attempt: the next is scheduled.
        """
        book = self.book
        broker = self.broker
        book.tally("reconnect_attempts")
        try:
            await broker.connect()
            if book.subscriptions:
                await broker.subscribe(sorted(book.subscriptions))
            if book.down_since is not None:
                await self._reconcile(book.down_since, ts)
        except BrokerDisconnected as exc:
            reason = f"{DISCONNECTED_REASON}: {exc}"
            self.context.log.warning(
                "broker_connect_failed", attempt=book.reconnect_attempt, reason=reason
            )
            if book.connected:
                await self._lost(ts, reason)
            elif not book.operator_down:
                self._schedule_reconnect()
            return
        book.down_since = None
        if book.connected:
            return
        attempts = book.reconnect_attempt
        reason = f"reconnected and reconciled (attempt {attempts})"
        self.context.log.warning("broker_connection_restored", attempts=attempts)
        await self._risk.send(BrokerConnectionChanged(connected=True, ts=ts, reason=reason))
        book.connected = True
        book.reconnect_attempt = 0
        book.tally("reconnects")

    async def _reconcile(self, since: int, ts: int) -> None:
        """Bring the book in line with the broker (see `tradewind.actors._reconcile`).

        A journaled cancel the broker never saw (a cold start's PENDING_CANCEL order
        still working there) is sent again.

        Raises:
            BrokerDisconnected: the connection dropped while the venue was read or a
                cancel was sent again; nothing was changed, and the next attempt
                reconciles what the venue did.
        """
        book = self.book
        broker = self.broker
        open_orders = tuple(await broker.open_orders())
        fills = tuple(await broker.fills_since(since))
        listed = {order.client_order_id for order in open_orders}
        unlisted = [coid for coid in book.working if coid not in listed]
        finished = tuple(await broker.lookup_orders(unlisted)) if unlisted else ()
        ours = dict(book.working)
        for fill in fills:  # a finished order may still get a late fill
            late = book.finished.get(fill.client_order_id)
            if late is not None:
                ours.setdefault(fill.client_order_id, late)
        result = reconcile(ours.values(), BrokerView(open_orders, fills, finished), ts=ts)
        change = book.change()
        change.apply_all(result.events)
        for client_order_id in result.cancels:  # journaled, never seen there: send again
            self.context.log.warning("cancel_sent_again", client_order_id=client_order_id)
            change.apply_all(await broker.cancel(client_order_id, ts))
        await self._publish(change)
        self._finish(change)
        book.tally("reconciled_events", len(result.events))
        log = self.context.log
        for line in result.discrepancies:
            log.warning("reconciliation_discrepancy", detail=line)
        for order in result.orphans:
            log.warning("reconciliation_orphan", client_order_id=order.client_order_id)
        for fill in result.unknown_fills:
            log.warning("reconciliation_unknown_fill", execution_id=fill.execution_id)
        log.info(
            "reconciled",
            since=since,
            fills=len(result.fills),
            events=len(result.events),
            open_at_broker=len(open_orders),
        )

    # ------------------------------------------------------------------ handlers
    async def _on_bar(self, bar: Bar) -> None:
        # The hot path of a replay, kept lean: a bar the broker answers with nothing needs
        # no pending record (a redelivered bar is asked again, and the broker ignores a bar
        # it has seen) and no book change.
        book = self.book
        book.last_ts = max(book.last_ts, bar.ts)
        pending = book.pending
        events: Sequence[BrokerEvent] | None = None
        if pending is not None and pending.message is bar:
            book.tally("redelivered")
            events = pending.answers.get(_BAR_ANSWER)
        if events is None:
            # Every bar goes to the broker, connected or not: a simulated venue trades it
            # all the same (its news comes back with the reconciliation).
            try:
                events = await self.broker.on_bar(bar)
            except BrokerDisconnected as exc:
                await self._lost(bar.ts, f"{DISCONNECTED_REASON}: {exc}")
            else:
                if events:
                    book.pending = Pending(bar, answers={_BAR_ANSWER: tuple(events)})
        if not events:
            await self._risk.send(bar)
            return
        change = book.change()
        change.apply_all(events)
        await self._publish(change)
        await self._risk.send(bar)
        self._finish(change)

    async def _on_actions(
        self, message: object, actions: Sequence[PlaceOrder | CancelOrder]
    ) -> tuple[Order | None, ...]:
        """Act on places and cancels decided together: ids for the places, one durable
        journal write for every intent and cancel request among them, then each action
        in order; reply with each action's order snapshot after the broker's answers
        (None for a cancel of an order that is not here).

        One write for the group closes the gap a kill could otherwise fall into: with
        every intent and cancel of a decision journaled at once, a restart finds all of
        them or none (see "Cold start" in ``docs/trading-system.md``). A cancel is not
        held back when its request cannot be made durable (a store outage): it only
        takes risk away, so it goes to the broker all the same.
        """
        book = self.book
        book.last_ts = max([book.last_ts, *(action.ts for action in actions)])
        pending = self._pending_for(message)
        places = [action for action in actions if isinstance(action, PlaceOrder)]
        if not pending.orders:
            for place in places:
                client_order_id = book.next_client_order_id(place.intent.strategy_id)
                pending.orders.append(Order.create(client_order_id, place.intent, place.ts))
                book.tally("placed")
        change = book.change()
        if pending.requests is None:
            pending.requests = self._cancel_requests(change, actions)
        requests = pending.requests
        denied = await self._write_ahead(pending, requests)
        numbered = iter(pending.orders)
        orders: list[Order | None] = []
        replies: list[str] = []
        for action in actions:
            if isinstance(action, PlaceOrder):
                placed = next(numbered)
                orders.append(placed)
                replies.append(placed.client_order_id)
            else:
                orders.append(None)
                replies.append(action.client_order_id)
        # The cancels go out before the places (each kind in the order decided): a cancel
        # only takes risk away, and a restart's reconciliation reproduces this order.
        for index in sorted(range(len(actions)), key=lambda i: orders[i] is not None):
            action, request, order = actions[index], requests[index], orders[index]
            if isinstance(action, PlaceOrder):
                assert order is not None  # noqa: S101 -- numbered above
                if denied is None:
                    await self._submit(pending, change, order, action.ts)
                else:
                    change.record(
                        order.apply(
                            OrderDenied(
                                client_order_id=order.client_order_id, ts=action.ts, reason=denied
                            )
                        )
                    )
                continue
            client_order_id = action.client_order_id
            if request is None:
                continue
            change.take(request)
            events = pending.answers.get(client_order_id)
            if events is None:
                events = await self._broker_cancel(client_order_id, action.ts)
                pending.answers[client_order_id] = events
            change.apply_all(events)
        await self._publish(change, requests if pending.journaled else ())
        self._finish(change)
        return tuple(change.current(client_order_id) for client_order_id in replies)

    def _cancel_requests(
        self, change: BookChange, actions: Sequence[PlaceOrder | CancelOrder]
    ) -> list[OrderUpdated | None]:
        """The PENDING_CANCEL update of each cancel of a cancelable order, as of the book
        before the message (a place never changes another order); None for a place, and
        for a cancel of an order that is not working or is asked twice (logged: a warning
        when the book never had the order)."""
        requests: list[OrderUpdated | None] = []
        asked: set[str] = set()
        for action in actions:
            if isinstance(action, PlaceOrder):
                requests.append(None)
                continue
            client_order_id = action.client_order_id
            order = change.current(client_order_id)
            if order is None:
                # No such order, ever (or one long retired): a strategy's bug, not a race.
                self.context.log.warning("cancel_of_unknown_order", client_order_id=client_order_id)
                requests.append(None)
                continue
            if order.status not in _CANCELABLE or client_order_id in asked:
                # It finished first, or was asked twice: the ordinary race, not a fault.
                self.context.log.info(
                    "cancel_ignored", client_order_id=client_order_id, status=order.status.value
                )
                requests.append(None)
                continue
            asked.add(client_order_id)
            requested = order.apply(
                OrderCancelRequested(client_order_id=client_order_id, ts=action.ts)
            )
            requests.append(update_of(requested))
        return requests

    async def _write_ahead(
        self, pending: Pending, requests: Sequence[OrderUpdated | None]
    ) -> str | None:
        """Journal the message's INITIALIZED orders and cancel requests in one durable
        write (once); return why its places must be denied instead, or None.

        A disconnected broker denies the places without a write (their cancels get a
        local reject). A refused write (a store outage: persistence answers after at
        most its `durable_timeout`) denies the places; the cancels go on without it.
        Either decision is kept in `pending.denied` before anything is announced: a
        redelivered message is denied again, its write is not retried.

        Cancellation: the decision is recorded synchronously once the journal answer is
        in; a cancellation during the write leaves nothing decided, and the redelivery
        writes the same records again (persistence writes on natural keys).
        """
        if pending.denied is not None:
            return pending.denied
        if not self.book.connected and not pending.answers:
            pending.denied = DISCONNECTED_REASON
            return DISCONNECTED_REASON
        if pending.journaled:
            return None
        cancels = [request for request in requests if request is not None]
        if not pending.orders and not cancels:
            return None
        refused = await self._journal((*pending.orders, *cancels))
        if refused is None:
            pending.journaled = True
            return None
        pending.denied = refused
        for order in pending.orders:
            self.context.log.warning(
                "order_not_journaled", client_order_id=order.client_order_id, reason=refused
            )
        for request in cancels:
            self.context.log.warning(
                "cancel_not_journaled",
                client_order_id=request.order.client_order_id,
                reason=refused,
            )
        return refused

    async def _submit(self, pending: Pending, change: BookChange, order: Order, ts: int) -> None:
        """Submit one journaled order (once: a redelivery reuses the broker's answer)."""
        client_order_id = order.client_order_id
        submitted = change.record(
            order.apply(OrderSubmitted(client_order_id=client_order_id, ts=ts))
        )
        events = pending.answers.get(client_order_id)
        if events is None:
            try:
                events = tuple(await self.broker.submit(submitted))
            except BrokerDisconnected as exc:
                reason = f"{DISCONNECTED_REASON}: {exc}"
                events = (OrderRejected(client_order_id=client_order_id, ts=ts, reason=reason),)
                await self._lost(ts, reason)
            pending.answers[client_order_id] = events
        change.apply_all(events)

    async def _journal(self, records: tuple[object, ...]) -> str | None:
        """Make the records (INITIALIZED orders, PENDING_CANCEL updates) durable in one
        commit; None once they are, else why they are not.

        The store may be unavailable: persistence answers `NotDurable` (or cannot answer
        within `journal_timeout`); the orders must then not reach the broker.
        """
        try:
            answer = await self._persistence.ask(
                PersistDurably(records), timeout=self._journal_timeout
            )
        except AskTimeout:
            return f"{STORE_UNAVAILABLE_REASON}: no journal answer in {self._journal_timeout}s"
        if isinstance(answer, NotDurable):
            return f"{STORE_UNAVAILABLE_REASON}: {answer.reason}"
        return None

    def _expanded(
        self, actions: Sequence[PlaceOrder | CancelOrder | CancelAllOrders]
    ) -> list[PlaceOrder | CancelOrder]:
        """The actions with a `CancelAllOrders` (the kill switch; it comes first in a
        group) replaced by a cancel of every order working before the message that has
        no cancel pending yet."""
        expanded: list[PlaceOrder | CancelOrder] = []
        for action in actions:
            if not isinstance(action, CancelAllOrders):
                expanded.append(action)
                continue
            self.context.log.warning("cancel_all_orders", reason=action.reason)
            self.book.last_ts = max(self.book.last_ts, action.ts)
            expanded.extend(
                CancelOrder(client_order_id, action.ts, action.reason)
                for client_order_id, order in self.book.working.items()
                if order.status in _CANCELABLE
            )
        return expanded

    async def _broker_cancel(self, client_order_id: str, ts: int) -> tuple[BrokerEvent, ...]:
        if self.book.connected:
            try:
                return tuple(await self.broker.cancel(client_order_id, ts))
            except BrokerDisconnected as exc:
                await self._lost(ts, f"{DISCONNECTED_REASON}: {exc}")
        return (
            OrderCancelRejected(client_order_id=client_order_id, ts=ts, reason=DISCONNECTED_REASON),
        )

    async def _on_connection(self, message: BrokerConnectionChanged) -> bool:
        """An operator disconnects (``connected=False``: stays down, no automatic
        reconnect) or reconnects (``connected=True``: at once, then by the timer if that
        fails) the broker; reply with whether the connection is up."""
        book = self.book
        book.last_ts = max(book.last_ts, message.ts)
        timer = self._timer
        if not message.connected:
            book.operator_down = True
            if timer is not None:
                timer.cancel()
            await self.broker.disconnect()
            await self._lost(message.ts, message.reason or "disconnected by the operator")
            return book.connected
        book.operator_down = False
        if book.connected and self.broker.connected:
            return True
        if timer is not None:
            timer.cancel()
        await self._open_session(message.ts)
        return book.connected

    async def _on_reconnect(self, message: _Reconnect) -> None:
        """The reconnect timer fired: try again, unless it is stale (the connection came
        back, an operator took it down, or a newer attempt was scheduled)."""
        book = self.book
        if book.connected or book.operator_down or message.attempt != book.reconnect_attempt:
            self.context.log.debug("broker_reconnect_skipped", attempt=message.attempt)
            return
        await self._open_session(book.last_ts)


@attrs.frozen
class _Reconnect:
    """The reconnect timer's message to its actor: time for attempt `attempt`."""

    attempt: int


class ReconnectTimer:
    """The order actor's reconnect timer: one pending delivery of a message to the
    actor's own mailbox after a delay on trio time.

    Runs as a trio system task (actors have no nursery of their own) under its own
    cancel scope. Starting it again replaces the pending delivery.

    Args:
        context: the owning actor's context (its ref and logger).

    Cancellation: `cancel` drops the pending delivery at once; `stop` also waits until
    the task has ended (the owner's `on_stop`).
    """

    def __init__(self, context: ActorContext) -> None:
        self._ref = context.ref
        self._log = context.log
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None

    def start(self, delay: float, message: object) -> None:
        """Deliver `message` to the actor after `delay` seconds (replacing any pending
        delivery)."""
        self.cancel()
        scope = trio.CancelScope()
        done = trio.Event()
        self._scope, self._done = scope, done
        trio.lowlevel.spawn_system_task(
            self._run, delay, message, scope, done, name=f"{self._ref.path}.reconnect"
        )

    async def _run(
        self, delay: float, message: object, scope: trio.CancelScope, done: trio.Event
    ) -> None:
        try:
            with scope:
                await trio.sleep(delay)
                await self._ref.send(message)
        except Exception as exc:  # noqa: BLE001 -- a system task must not raise; a closed mailbox at shutdown is expected
            self._log.warning("reconnect_timer_failed", error=repr(exc))
        finally:
            done.set()

    def cancel(self) -> None:
        """Drop the pending delivery, if any."""
        if self._scope is not None:
            self._scope.cancel()

    async def stop(self) -> None:
        """Drop the pending delivery and wait until the task has ended."""
        self.cancel()
        if self._done is not None:
            await self._done.wait()


# Statuses from which a cancel may be requested (PENDING_CANCEL already has one).
_CANCELABLE: Final = frozenset(
    {OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED}
)
