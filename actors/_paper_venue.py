"""The durable paper venue: the paper matching engine keeping its own state in the store.

`DurablePaperBroker` is a `Broker` over the pure `PaperExchange` that writes every change
of the venue to tables of its own (``paper_venue_*``, migration 0003) before it answers,
and loads them when it starts: a paper venue that survives a restart, so that the
reconciliation at a cold start meets a venue that really may differ from our journal
(``[broker] state = "tables"``; ``docs/trading-system.md``, "Cold start").
"""

# Design notes
# ------------
# * Write-through. After every call that changed the venue (a new submit, a cancel that
#   canceled, a bar that filled, expired or IOC-canceled something) the change -- the
#   venue's copies of the orders it touched, its new fills numbered in execution order,
#   and the cursor of the bar's series -- is committed in ONE unit of work before the
#   call returns. So the venue's tables are never behind what it told the order actor;
#   they may be ahead of our own journal (a fill the venue stored whose news we never
#   committed), which is what the reconciliation at a restart is for.
# * Bars that change nothing are not written: the cursor then lags the last bar the
#   venue saw. Nothing is lost: re-trading those bars after a restart would give the same
#   nothing, since the venue's state is the one that produced nothing (and a cold start
#   resumes the feed after our last stored bar, so most of them never come again). A bar
#   that changed something is recorded with its cursor, so it is never traded twice. A
#   cold start raises the loaded cursors to our last stored bars (`open`'s `traded`):
#   the feed resumes after them, so the venue's market has traded them.
# * A cancel that waits for a bar (the paper broker's notes) changes nothing yet and is
#   not written; the bar that settles it is. Our journal holds the request: a restart's
#   reconciliation finds the order still working at the venue and sends it again, and
#   with the cursors raised it settles as it did in the run that was killed.
# * Decide, then write: the engine computes the change (it is pure and raises before
#   changing anything); the wrapper then finds what changed -- the working orders whose
#   copy is a new value (`Order` values are immutable, so identity tells), the fills past
#   the count before the call -- and writes that. No diff of the whole venue per bar: a
#   bar only touches working orders.
# * A store outage while the venue writes: the call raises `BrokerDisconnected` (the one
#   error of the broker interface), the engine drops the connection and is marked
#   stale: its memory is ahead of its tables. The order actor's ordinary path takes over
#   -- the answer is lost, the connection is down, reconnect attempts follow with backoff
#   -- and the next call (the reconnect's `connect`) first reloads the engine from the
#   tables, which fails with `BrokerDisconnected` while the store is still down. Once it
#   succeeds, the venue is exactly what its tables say (the unwritten change never
#   happened: nobody was told of it) and reconciliation settles our book against it.
#   A call cancelled while it writes (a handler timeout, a shutdown) marks the engine
#   stale the same way, without dropping the connection: the commit may or may not have
#   happened, the reload finds out, and a redelivered submit is then answered from the
#   tables (idempotent by client order id). While stale and unreachable the venue does not
#   trade: its bars raise `BrokerDisconnected` untraded (the venue itself is down, not
#   only our line to it).
# * Rejected: writing the venue's state in the same unit of work as our journal. It would
#   make the two agree by construction -- which is what the journal mode already gives
#   (`PaperExchange.restore`); the point of this mode is a venue with its own truth.
# * Load: at start the venue reads its tables (`Store.paper_venue`) into a fresh engine:
#   its order copies, their answers (ack with the broker order id, or reject with its
#   reason, at the stored answer time), the working ones in submission order with their
#   eligibility and trading day, every fill in execution order (so ``fills_since`` answers
#   as before, and execution ids ``{client_order_id}-F{n}`` continue from the copy's
#   applied fills), the cursors, and the counters that number things (submits, accepted
#   orders: the next broker order id). A replay that starts afresh (not a cold start)
#   clears the tables first: a new run, a new venue.
# * The engine exports and loads its own state (`PaperExchange.record`, `fills_from`,
#   `load`, in pure types: `VenueOrderRecord`); this wrapper only converts those to and
#   from the store's rows, so `_paper.py` stays pure and keeps its state private. The
#   round-trip tests fail if the two drift apart. Held acknowledgements
#   (`PaperFaults.ack_delay_bars`) are a test fault of the in-memory venue and are not
#   stored: the durable venue refuses them.
# * Connection state and subscriptions belong to a session, not to the venue: not stored.
#   Statistics count from the load (except submits, accepted, rejected, canceled and
#   expired, which are derived from the stored orders); injected drops that already
#   fired are carried across a reload.

from __future__ import annotations

from typing import TYPE_CHECKING

from tradewind.actors._errors import BrokerDisconnected, DomainError
from tradewind.actors._paper import (
    PaperConfig,
    PaperExchange,
    PaperFaults,
    PaperStatistics,
    VenueOrderRecord,
)
from tradewind.storage._errors import StoreError
from tradewind.storage._venue import PaperVenueFill, PaperVenueOrder, PaperVenueState

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from tradewind.actors._broker import BrokerEvent
    from tradewind.actors._marketdata import Bar, SeriesKey
    from tradewind.actors._orders import Fill, Order
    from tradewind.storage._store import Store

__all__ = ["DurablePaperBroker"]


def _stored_order(record: VenueOrderRecord) -> PaperVenueOrder:
    return PaperVenueOrder(
        order=record.order,
        submit_no=record.submit_no,
        answer_ts=record.answer_ts,
        eligible_from=record.eligible_from,
        trading_day=record.trading_day,
    )


def _record(stored: PaperVenueOrder) -> VenueOrderRecord:
    return VenueOrderRecord(
        order=stored.order,
        submit_no=stored.submit_no,
        answer_ts=stored.answer_ts,
        eligible_from=stored.eligible_from,
        trading_day=stored.trading_day,
    )


def _load(
    engine: PaperExchange,
    state: PaperVenueState,
    after: PaperExchange | None,
    traded: Mapping[SeriesKey, int] | None = None,
) -> None:
    """Fill a fresh `engine` with what the venue's tables hold; `traded` moves a series'
    cursor up to a bar the venue will not be given again."""
    cursors = dict(state.cursors)
    for series, ts in (traded or {}).items():
        cursors[series] = max(ts, cursors.get(series, ts))
    engine.load(
        [_record(stored) for stored in state.orders],
        [stored.fill for stored in sorted(state.fills, key=lambda f: f.fill_no)],
        cursors,
        carry_over=after,
    )


class DurablePaperBroker:
    """A `Broker`: the paper venue with its state in its own tables of the store.

    Get one with `DurablePaperBroker.open`. Every call that changes the venue writes the
    change through the store (one unit of work) before it returns; see the module notes.

    Args:
        store: the open store whose ``paper_venue_*`` tables hold the venue.
        config: how orders fill.
        faults: faults to inject (tests); ``ack_delay_bars`` is refused.

    Raises:
        DomainError: ``faults.ack_delay_bars`` is set.

    Concurrency: one owner (the order actor) calls it, one call at a time. Calls that
    write are checkpoints (the store's unit of work); the others are not.
    """

    def __init__(
        self, store: Store, config: PaperConfig, faults: PaperFaults | None = None
    ) -> None:
        faults = faults if faults is not None else PaperFaults()
        if faults.ack_delay_bars:
            msg = "paper venue: ack_delay_bars cannot be used with a venue kept in the store"
            raise DomainError(msg)
        self._store = store
        self._config = config
        self._faults = faults
        self.exchange = PaperExchange(config, faults)
        # Set when the engine may be ahead of its tables (a write failed or was
        # cancelled): it is reloaded from them before it is used again.
        self._stale = False
        self.writes = 0
        self.reloads = 0

    @classmethod
    async def open(
        cls,
        store: Store,
        config: PaperConfig,
        faults: PaperFaults | None = None,
        *,
        fresh: bool = False,
        traded: Mapping[SeriesKey, int] | None = None,
    ) -> DurablePaperBroker:
        """The venue as its tables hold it (empty the first time), disconnected.

        Args:
            store: the open store.
            config: how orders fill.
            faults: faults to inject (tests).
            fresh: start an empty venue, deleting what the tables hold (a replay run
                from its first bar).
            traded: a cold start's last stored bar time per series: the feed resumes
                after them, so the venue's market has traded them, whatever its lagging
                cursors say (bars that changed nothing are not written). A cancel the
                restart sends again is then settled as it would have been.

        Raises:
            StoreError: the tables cannot be read or cleared (`StoreUnavailable`, ...).
            DomainError: the tables hold a state the engine refuses (a corrupt store),
                or ``faults.ack_delay_bars`` is set.
        """
        broker = cls(store, config, faults)
        if fresh:
            async with store.transaction() as tx:
                tx.clear_paper_venue()
        else:
            _load(broker.exchange, await store.paper_venue(), None, traded)
        return broker

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        """Whether the simulated connection is up."""
        return self.exchange.connected

    @property
    def stale(self) -> bool:
        """Whether the engine waits to be reloaded from its tables (after a failed write)."""
        return self._stale

    async def _engine(self) -> PaperExchange:
        """The engine, reloaded from the tables first if it went stale.

        Raises:
            BrokerDisconnected: stale, and the tables cannot be read.
        """
        if self._stale:
            try:
                state = await self._store.paper_venue()
            except StoreError as exc:
                msg = f"paper venue: its state cannot be read from the store: {exc}"
                raise BrokerDisconnected(msg) from exc
            engine = PaperExchange(self._config, self._faults)
            _load(engine, state, self.exchange)
            self.exchange = engine
            self._stale = False
            self.reloads += 1
        return self.exchange

    async def _write(
        self,
        client_order_ids: Iterable[str],
        *,
        fills_before: int,
        cursor: Bar | None = None,
    ) -> None:
        """Commit the change of one call: the named orders, the fills past
        `fills_before`, the cursor of `cursor`'s series.

        Raises:
            BrokerDisconnected: the store refused the unit (the engine is stale and
                disconnected; see the module notes).
        """
        engine = self.exchange
        orders = [_stored_order(engine.record(coid)) for coid in client_order_ids]
        fills = [
            PaperVenueFill(fill=fill, fill_no=number)
            for number, fill in enumerate(engine.fills_from(fills_before), start=fills_before + 1)
        ]
        cursors = {} if cursor is None else {(cursor.instrument, cursor.timeframe): cursor.ts}
        try:
            async with self._store.transaction() as tx:
                tx.write_paper_venue(orders, fills, cursors)
        except StoreError as exc:
            self._stale = True
            engine.disconnect()
            msg = f"paper venue: its change could not be stored, the venue is down: {exc}"
            raise BrokerDisconnected(msg) from exc
        except BaseException:
            self._stale = True  # cancelled mid-commit: the reload finds out what happened
            raise
        self.writes += 1

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        """Bring the connection up, reloading the venue from its tables if it went
        stale.

        Raises:
            BrokerDisconnected: the tables cannot be read, or an injected refusal.
        """
        engine = await self._engine()
        engine.connect()

    async def disconnect(self) -> None:
        """Drop the simulated connection (working orders stay at the venue). No I/O."""
        self.exchange.disconnect()

    async def subscribe(self, instruments: Sequence[str]) -> None:
        """See `Broker.subscribe`."""
        engine = await self._engine()
        engine.subscribe(instruments)

    @property
    def subscriptions(self) -> frozenset[str]:
        """The instruments subscribed on the current connection."""
        return self.exchange.subscriptions

    # ------------------------------------------------------------------ orders
    async def submit(self, order: Order) -> tuple[BrokerEvent, ...]:
        """See `Broker.submit`; a new order is stored before the answer is returned.

        Raises:
            BrokerDisconnected: not connected, or the store refused the change.
            InvalidOrder: a new order that is not SUBMITTED.
        """
        engine = await self._engine()
        coid = order.client_order_id
        known = engine.knows(coid)
        fills_before = engine.fill_count
        events = engine.submit(order)
        if not known:
            await self._write((coid,), fills_before=fills_before)
        return events

    async def cancel(self, client_order_id: str, ts: int) -> tuple[BrokerEvent, ...]:
        """See `Broker.cancel`; a cancel that canceled is stored before it is answered.

        Raises:
            BrokerDisconnected: not connected, or the store refused the change.
        """
        engine = await self._engine()
        known = engine.knows(client_order_id)
        before = engine.copy_of(client_order_id) if known else None
        fills_before = engine.fill_count
        events = engine.cancel(client_order_id, ts)
        if known and engine.copy_of(client_order_id) is not before:
            await self._write((client_order_id,), fills_before=fills_before)
        return events

    async def on_bar(self, bar: Bar) -> tuple[BrokerEvent, ...]:
        """See `Broker.on_bar`; what the bar changed is stored before the answer (or the
        `BrokerDisconnected` of a venue that traded it while our connection was down).

        Raises:
            BrokerDisconnected: not connected (the bar was traded and stored all the
                same), an injected drop, or the venue is down (its store).
        """
        engine = await self._engine()
        working = engine.working_orders()
        fills_before = engine.fill_count
        lost: BrokerDisconnected | None = None
        try:
            events = engine.on_bar(bar)
        except BrokerDisconnected as exc:
            lost, events = exc, ()
        changed = [coid for coid, order in working.items() if engine.copy_of(coid) is not order]
        if changed:
            await self._write(changed, fills_before=fills_before, cursor=bar)
        if lost is not None:
            raise lost
        return events

    # ------------------------------------------------------------------ reconciliation
    async def open_orders(self) -> tuple[Order, ...]:
        """See `Broker.open_orders`."""
        engine = await self._engine()
        return engine.open_orders()

    async def lookup_orders(self, client_order_ids: Sequence[str]) -> tuple[Order, ...]:
        """See `Broker.lookup_orders`."""
        engine = await self._engine()
        return engine.lookup_orders(client_order_ids)

    async def fills_since(self, ts: int) -> tuple[Fill, ...]:
        """See `Broker.fills_since`."""
        engine = await self._engine()
        return engine.fills_since(ts)

    def statistics(self) -> PaperStatistics:
        """The engine's counters (see the module notes for what survives a reload)."""
        return self.exchange.statistics()
