"""Trading while the store is away: risk halts with STORE_UNAVAILABLE and resumes after
recovery; an order whose intent cannot be journaled never reaches the broker."""

from __future__ import annotations

from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
import trio.testing
from tradewind.actors import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderFilled,
    OrderIntent,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PaperBroker,
    PaperConfig,
    RiskLimits,
    Side,
    TimeInForce,
    TradingState,
)
from tradewind.actors._messages import (
    FeedStale,
    Flush,
    IntentDenied,
    OrderUpdated,
    Persist,
    PlaceOrder,
    StoreAvailabilityChanged,
    SubmitIntent,
    TradingStateChanged,
)
from tradewind.actors._order_actor import OrderActor, OrderBook
from tradewind.actors._persistence import PersistenceActor, PersistenceKeeper
from tradewind.actors._risk import DenyReason
from tradewind.actors._risk_actor import Peer, RiskActor, RiskBook
from tradewind.runtime import Actor, ActorSystem, ChildSpec, SupervisorSpec, open_actor_system
from tradewind.storage import Store, StoreUnavailable, open_store
from tradewind.storage._uow import Transaction

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
DAY = 86_400_000_000_000
MINUTE = 60_000_000_000
T0 = 1_700_000_000_000_000_000 - (1_700_000_000_000_000_000 % DAY) + 10 * 3600 * 10**9


def limits() -> RiskLimits:
    return RiskLimits(
        max_position=1_000,
        max_order_notional=1_000_000,
        max_gross_exposure=10_000_000,
        max_orders_per_second=100,
        daily_loss_limit=1_000,
    )


def bar(ts: int, close: str) -> Bar:
    price = Decimal(close)
    return Bar("AAPL", "1m", ts, price, price, price, price, Decimal(10))


def intent(quantity: int = 10) -> OrderIntent:
    return OrderIntent(
        "sma", "AAPL", Side.BUY, Decimal(quantity), OrderType.MARKET, None, TimeInForce.DAY
    )


def store_down(ts: int = T0) -> StoreAvailabilityChanged:
    return StoreAvailabilityChanged(available=False, ts=ts, reason="connection refused")


def store_up(ts: int = T0) -> StoreAvailabilityChanged:
    return StoreAvailabilityChanged(available=True, ts=ts, reason="the store is back")


def filled_buy(quantity: int, price: str, ts: int) -> OrderUpdated:
    wanted = intent(quantity)
    order = Order.create("sma-00000001", wanted, ts).apply(
        OrderSubmitted(client_order_id="sma-00000001", ts=ts)
    )
    fill = Fill(
        "sma-00000001-F1",
        "sma-00000001",
        "AAPL",
        Side.BUY,
        Decimal(quantity),
        Decimal(price),
        Decimal(0),
        "USD",
        ts,
    )
    order = order.apply(OrderFilled(client_order_id="sma-00000001", ts=ts, fill=fill))
    assert order.last_event is not None
    return OrderUpdated(order, order.last_event, ts)


def state_changes(effects: list[Any]) -> list[TradingStateChanged]:
    return [
        e.message
        for e in effects
        if e.to is Peer.STRATEGY and isinstance(e.message, TradingStateChanged)
    ]


def book() -> RiskBook:
    risk = RiskBook(limits(), [AAPL])
    risk.on_bar(bar(T0, "100"))
    return risk


class TestRiskBookDuringAnOutage:
    def test_an_unavailable_store_halts_trading_with_reason_store_unavailable(self) -> None:
        risk = book()
        effects = risk.on_store_availability(store_down())
        [change] = state_changes(effects)
        assert change.state is TradingState.HALTED
        assert change.reason == "STORE_UNAVAILABLE: connection refused"
        assert [e.to for e in effects] == [Peer.STRATEGY, Peer.PERSISTENCE]
        assert effects[1].message == Persist((change,))
        stats = risk.statistics()
        assert (stats.state, stats.reason) == (TradingState.HALTED, change.reason)

    def test_intents_are_denied_with_store_unavailable_and_never_placed(self) -> None:
        risk = book()
        risk.on_store_availability(store_down())
        effects = risk.on_intent(SubmitIntent(intent(), T0 + MINUTE))
        denied = [e.message for e in effects if isinstance(e.message, IntentDenied)]
        assert [d.reason for d in denied] == [DenyReason.STORE_UNAVAILABLE]
        assert not any(e.to is Peer.ORDERS for e in effects)
        assert risk.statistics().denied == {DenyReason.STORE_UNAVAILABLE: 1}

    def test_recovery_resumes_trading(self) -> None:
        risk = book()
        risk.on_store_availability(store_down())
        [change] = state_changes(risk.on_store_availability(store_up()))
        assert (change.state, change.reason) == (TradingState.ACTIVE, "trading resumed")
        effects = risk.on_intent(SubmitIntent(intent(), T0 + MINUTE))
        assert [type(e.message).__name__ for e in effects] == ["PlaceOrder"]

    def test_a_kill_switch_tripped_during_the_outage_still_halts_after_it(self) -> None:
        risk = book()
        risk.on_order_updated(filled_buy(100, "100", T0))
        risk.on_store_availability(store_down())
        risk.on_bar(bar(T0 + MINUTE, "80"))  # a 2000 loss: over the 1000 limit
        stats = risk.statistics()
        assert stats.kill_switch_trips == 1
        assert stats.reason.startswith("kill switch")  # the graver reason shows
        assert state_changes(risk.on_store_availability(store_up())) == []  # still HALTED
        stats = risk.statistics()
        assert (stats.state, stats.reason[:11]) == (TradingState.HALTED, "kill switch")
        denied = risk.on_intent(SubmitIntent(intent(), T0 + 2 * MINUTE))
        assert [e.message.reason for e in denied if isinstance(e.message, IntentDenied)] == [
            DenyReason.TRADING_HALTED
        ]

    def test_recovery_returns_to_the_stale_feed_state_that_still_holds(self) -> None:
        risk = book()
        risk.on_feed_stale(FeedStale(T0, MINUTE))
        risk.on_store_availability(store_down())
        assert risk.statistics().state is TradingState.HALTED
        [change] = state_changes(risk.on_store_availability(store_up()))
        assert change.state is TradingState.REDUCING


# ----------------------------------------------------------------------------- actors


@attrs.define
class FlakyStore:
    """A real store that fails every unit of work with StoreUnavailable while `down`."""

    store: Store
    down: bool = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        if self.down:
            yield Transaction()
            msg = "connection refused"
            raise StoreUnavailable(msg)
        async with self.store.transaction() as tx:
            yield tx


@attrs.define
class Inbox:
    """Messages an actor received, and a way to wait for one."""

    seen: list[Any] = attrs.field(factory=list)
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def add(self, message: object) -> None:
        self.seen.append(message)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, wanted: Callable[[Any], bool]) -> Any:
        index = 0
        while True:
            for message in self.seen[index:]:
                if wanted(message):
                    return message
            index = len(self.seen)
            await self._changed.wait()


class InboxActor(Actor):
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle(self, message: object) -> None:
        self.inbox.add(message)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("sqlite://:memory:") as opened:
        async with opened.transaction() as tx:
            tx.upsert_instruments([AAPL])
        yield opened


@attrs.frozen
class Tree:
    system: ActorSystem
    strategy: Inbox
    orders: Inbox
    keeper: PersistenceKeeper


@asynccontextmanager
async def trading_tree(flaky: FlakyStore) -> AsyncIterator[Tree]:
    """Persistence over `flaky`, the real risk actor, inboxes for orders and strategy."""
    keeper = PersistenceKeeper()
    risk = RiskBook(limits(), [AAPL])
    strategy, orders = Inbox(), Inbox()
    trading: list[Any] = [
        ChildSpec("orders", lambda: InboxActor(orders)),
        ChildSpec("risk", lambda: RiskActor(risk)),
        ChildSpec("strategy", lambda: InboxActor(strategy)),
    ]
    root: list[Any] = [
        ChildSpec(
            "persistence",
            lambda: PersistenceActor(keeper, flaky, batch_size=1, retry_initial=0.5, retry_max=0.5),
        ),
        SupervisorSpec("trading", trading),
    ]
    async with open_actor_system(SupervisorSpec("tradewind", root), asyncio_loop=False) as system:
        yield Tree(system, strategy, orders, keeper)


def is_state(state: TradingState) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, TradingStateChanged) and m.state is state


class TestRiskActorDuringAnOutage:
    async def test_an_outage_halts_trading_and_recovery_resumes_it(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        flaky = FlakyStore(store, down=True)
        async with trading_tree(flaky) as tree:
            risk = tree.system.ref("trading/risk")
            await risk.send(bar(T0, "100"))
            await tree.system.ref("persistence").send(Persist((bar(T0, "100"),)))
            halted = await tree.strategy.wait_for(is_state(TradingState.HALTED))
            await risk.send(SubmitIntent(intent(), T0 + 1))
            denied = await tree.strategy.wait_for(lambda m: isinstance(m, IntentDenied))
            flaky.down = False
            resumed = await tree.strategy.wait_for(is_state(TradingState.ACTIVE))
            await risk.send(SubmitIntent(intent(), T0 + 2))
            placed = await tree.orders.wait_for(lambda m: isinstance(m, PlaceOrder))
            await tree.system.ref("persistence").ask(Flush())
        assert halted.reason == "STORE_UNAVAILABLE: connection refused"
        assert denied.reason is DenyReason.STORE_UNAVAILABLE
        assert resumed.reason == "trading resumed"
        assert placed.ts == T0 + 2
        assert [m for m in tree.orders.seen if isinstance(m, PlaceOrder)] == [placed]
        stored = await store.denials()
        assert [d.reason.split(":")[0] for d in stored] == ["STORE_UNAVAILABLE"]
        assert tree.keeper.statistics().store_available


# ----------------------------------------------------------------------------- orders


class Stuck(Actor):
    """A persistence that never answers (its handler waits for ever)."""

    async def handle(self, message: object) -> None:
        await trio.sleep_forever()


@asynccontextmanager
async def order_tree(
    persistence: Callable[[], Actor], journal_timeout: float = 30.0
) -> AsyncIterator[tuple[ActorSystem, PaperBroker, Inbox]]:
    broker = PaperBroker(PaperConfig(AAPL))
    risk = Inbox()
    book = OrderBook()
    trading: list[Any] = [
        ChildSpec("orders", lambda: OrderActor(book, broker, journal_timeout=journal_timeout)),
        ChildSpec("risk", lambda: InboxActor(risk)),
    ]
    root: list[Any] = [
        ChildSpec("persistence", persistence),
        SupervisorSpec("trading", trading),
    ]
    async with open_actor_system(SupervisorSpec("tradewind", root), asyncio_loop=False) as system:
        yield system, broker, risk


class TestOrdersDuringAnOutage:
    async def test_an_intent_that_cannot_be_journaled_is_denied_and_never_sent(
        self, store: Store, autojump_clock: trio.testing.MockClock
    ) -> None:
        flaky = FlakyStore(store, down=True)
        keeper = PersistenceKeeper()

        def persistence() -> Actor:
            return PersistenceActor(keeper, flaky, durable_timeout=1.0, risk=None)

        async with order_tree(persistence) as (system, broker, risk):
            answer = await system.ref("trading/orders").ask(PlaceOrder(intent(), T0), timeout=60)
            flaky.down = False
            await system.ref("persistence").ask(Flush())
        assert answer.status is OrderStatus.DENIED
        assert answer.reason.startswith("store unavailable: connection refused")
        assert broker.statistics().submits == 0
        updates = [m for m in risk.seen if isinstance(m, OrderUpdated)]
        assert [u.order.status for u in updates] == [OrderStatus.DENIED]
        assert await store.orders() == [answer]  # journaled later, as denied
        assert keeper.statistics().not_durable == 1

    async def test_no_journal_answer_in_time_denies_the_order(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with order_tree(Stuck, journal_timeout=5.0) as (system, broker, _):
            start = trio.current_time()
            answer = await system.ref("trading/orders").ask(PlaceOrder(intent(), T0), timeout=60)
            waited = trio.current_time() - start
        assert answer.status is OrderStatus.DENIED
        assert answer.reason == "store unavailable: no journal answer in 5.0s"
        assert waited == 5.0
        assert broker.statistics().submits == 0
