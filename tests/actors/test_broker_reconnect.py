"""Broker disconnection in a tiny actor system: the real order and risk actors, the paper
venue with injected drops, recorders for the strategy and persistence, virtual time."""

from __future__ import annotations

import itertools
import random
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import trio
from structlog.testing import capture_logs
from tradewind.actors import (
    Bar,
    BrokerDisconnected,
    Instrument,
    Order,
    OrderActor,
    OrderBook,
    OrderIntent,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PaperBroker,
    PaperConfig,
    PaperFaults,
    RiskBook,
    RiskLimits,
    RiskSettings,
    Side,
    TimeInForce,
    TradingState,
)
from tradewind.actors._messages import (
    BrokerConnectionChanged,
    IntentDenied,
    OrderUpdated,
    Persist,
    PersistDurably,
    SubmitIntent,
    TradingStateChanged,
)
from tradewind.actors._reconcile import UNKNOWN_TO_BROKER
from tradewind.actors._risk import DenyReason
from tradewind.actors._risk_actor import RiskActor
from tradewind.runtime import (
    Actor,
    ActorSystem,
    Backoff,
    ChildSpec,
    RestartStrategy,
    SupervisorSpec,
    open_actor_system,
)
from tradewind.runtime._intensity import backoff_delay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from tradewind.actors._broker import BrokerEvent

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
T0 = 1_700_000_000 * 10**9
MIN = 60 * 10**9
EXACT = Backoff(initial=1.0, multiplier=2.0, maximum=30.0, jitter=0.0)


def flat(ts: int, price: str = "100.00") -> Bar:
    return Bar("AAPL", "1m", ts, price, price, price, price, "1000")


def intent(
    side: Side = Side.BUY,
    limit: str | None = None,
    quantity: int = 10,
    tif: TimeInForce = TimeInForce.GTC,
) -> OrderIntent:
    return OrderIntent(
        strategy_id="s1",
        instrument="AAPL",
        side=side,
        quantity=quantity,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        limit_price=limit,
        time_in_force=tif,
    )


def limits() -> RiskLimits:
    return RiskLimits(
        max_position=1_000,
        max_order_notional=1_000_000,
        max_gross_exposure=10_000_000,
        max_orders_per_second=1_000,
        daily_loss_limit=1_000_000,
    )


# ----------------------------------------------------------------------------- doubles


class Watch:
    """Messages seen by a recorder, with a way to wait for one (no sleeping)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self._changed = trio.Event()

    def add(self, message: Any) -> None:
        self.seen.append(message)
        self._changed.set()
        self._changed = trio.Event()

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.seen if isinstance(m, kind)]

    async def wait_for(self, predicate: Callable[[Any], bool]) -> Any:
        while True:
            for message in self.seen:
                if predicate(message):
                    return message
            await self._changed.wait()


class Recorder(Actor):
    """Records what it gets; answers `PersistDurably` as if committed."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    async def handle(self, message: Any) -> Any:
        self.watch.add(message)
        return True if isinstance(message, PersistDurably) else None


class TimedBroker(PaperBroker):
    """A paper broker that notes the virtual time of every connect attempt and drop."""

    def __init__(self, faults: PaperFaults | None = None) -> None:
        super().__init__(PaperConfig(AAPL), faults)
        self.attempts: list[float] = []
        self.drops: list[float] = []
        self.refuse_next = 0

    async def connect(self) -> None:
        if not self.connected:
            self.attempts.append(trio.current_time())
            if self.refuse_next:
                self.refuse_next -= 1
                msg = "venue unreachable"
                raise BrokerDisconnected(msg)
        await super().connect()

    async def on_bar(self, bar: Bar) -> tuple[BrokerEvent, ...]:
        was_up = self.connected
        try:
            return await super().on_bar(bar)
        finally:
            if was_up and not self.connected:
                self.drops.append(trio.current_time())


@attrs.define
class Crash:
    """A message the order actor crashes on once (redelivered, it is then ignored)."""

    fired: bool = False


class CrashableOrderActor(OrderActor):
    """The order actor, crashing once on a `Crash` message (a supervised restart)."""

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Crash):
            if not message.fired:
                message.fired = True
                msg = "injected crash"
                raise RuntimeError(msg)
            return None
        return await super().handle(message)


@attrs.define
class Tiny:
    system: ActorSystem
    orders: OrderBook
    risk: RiskBook
    broker: TimedBroker
    strategy: Watch
    persistence: Watch

    async def bar(self, *bars: Bar) -> None:
        ref = self.system.ref("trading/orders")
        for item in bars:
            await ref.send(item)
            await self.system.quiesce()

    async def intent(self, wanted: OrderIntent, ts: int) -> None:
        await self.system.ref("trading/risk").send(SubmitIntent(wanted, ts))
        await self.system.quiesce()

    async def wait_resumed(self) -> TradingStateChanged:
        changed: TradingStateChanged = await self.strategy.wait_for(
            lambda m: isinstance(m, TradingStateChanged) and m.state is TradingState.ACTIVE
        )
        await self.system.quiesce()
        return changed

    def persisted_fills(self) -> list[str]:
        return [
            record.fill.execution_id
            for batch in self.persistence.of(Persist)
            for record in batch.records
            if isinstance(record, OrderUpdated) and record.fill is not None
        ]


@asynccontextmanager
async def tiny(
    faults: PaperFaults | None = None,
    *,
    backoff: Backoff = EXACT,
    book: OrderBook | None = None,
    settings: RiskSettings | None = None,
    subscriptions: Iterable[str] = ("AAPL",),
) -> AsyncIterator[Tiny]:
    orders = book if book is not None else OrderBook()
    risk = RiskBook(limits(), [AAPL], settings or RiskSettings())
    broker = TimedBroker(faults)
    strategy, persistence = Watch(), Watch()
    trading: list[Any] = [
        ChildSpec(
            "orders",
            lambda: CrashableOrderActor(
                orders, broker, reconnect_backoff=backoff, subscriptions=subscriptions
            ),
        ),
        ChildSpec("risk", lambda: RiskActor(risk)),
        ChildSpec("strategy", lambda: Recorder(strategy)),
    ]
    root: list[Any] = [
        ChildSpec("persistence", lambda: Recorder(persistence)),
        SupervisorSpec(
            "trading",
            trading,
            strategy=RestartStrategy.REST_FOR_ONE,
            backoff=Backoff(initial=0.0, jitter=0.0),
        ),
    ]
    async with open_actor_system(SupervisorSpec("root", root), asyncio_loop=False) as system:
        yield Tiny(system, orders, risk, broker, strategy, persistence)


# ----------------------------------------------------------------------------- tests


class TestDisconnect:
    async def test_a_drop_tells_risk_and_halts_trading(self, autojump_clock):
        async with tiny(PaperFaults(disconnect_at=(T0 + MIN,))) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            assert not t.orders.connected
            assert not t.risk.broker_connected
            (changed,) = t.strategy.of(TradingStateChanged)
            assert changed.state is TradingState.HALTED
            assert "fault injection" in changed.reason

    async def test_the_broker_down_state_may_be_reducing(self, autojump_clock):
        settings = RiskSettings(broker_down_state=TradingState.REDUCING)
        async with tiny(PaperFaults(disconnect_at=(T0 + MIN,)), settings=settings) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            assert t.risk.state is TradingState.REDUCING

    async def test_intents_while_down_are_denied_with_a_reason_and_never_reach_the_venue(
        self, autojump_clock
    ):
        async with tiny(PaperFaults(disconnect_at=(T0 + MIN,))) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            await t.intent(intent(), T0 + MIN)
            (denied,) = t.strategy.of(IntentDenied)
            assert denied.reason is DenyReason.BROKER_DISCONNECTED
            assert denied.detail
            assert t.broker.statistics().submits == 0
            assert t.orders.statistics().placed == 0

    async def test_subscriptions_are_lost_with_the_connection_and_restored_after(
        self, autojump_clock
    ):
        async with tiny(PaperFaults(disconnect_at=(T0 + MIN,))) as t:
            assert t.broker.subscriptions == {"AAPL"}
            await t.bar(flat(T0), flat(T0 + MIN))
            assert t.broker.subscriptions == frozenset()
            await t.wait_resumed()
            assert t.broker.subscriptions == {"AAPL"}
            assert t.broker.statistics().subscribes == 2


class TestBackoff:
    async def test_reconnect_attempts_follow_the_backoff_schedule(self, autojump_clock):
        faults = PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=3)
        async with tiny(faults) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            await t.wait_resumed()
            (drop,) = t.broker.drops
            after = [round(at - drop, 9) for at in t.broker.attempts[1:]]
            assert after == [1.0, 3.0, 7.0, 15.0]  # waits of 1, 2, 4, 8 seconds
            stats = t.orders.statistics()
            assert (stats.disconnects, stats.reconnects) == (1, 1)

    async def test_jitter_comes_from_the_books_seeded_rng(self, autojump_clock):
        jittery = Backoff(initial=1.0, multiplier=2.0, maximum=30.0, jitter=0.5)
        faults = PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=2)
        async with tiny(faults, backoff=jittery, book=OrderBook(rng=random.Random(7))) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            await t.wait_resumed()
            (drop,) = t.broker.drops
            times = [drop, *t.broker.attempts[1:]]
            waits = [b - a for a, b in itertools.pairwise(times)]
        rng = random.Random(7)
        expected = [backoff_delay(jittery, n, rng) for n in (1, 2, 3)]
        assert [round(w, 6) for w in waits] == [round(e, 6) for e in expected]
        assert [round(w, 6) for w in waits] != [1.0, 2.0, 4.0]

    async def test_the_delay_is_capped(self, autojump_clock):
        capped = Backoff(initial=1.0, multiplier=10.0, maximum=5.0, jitter=0.0)
        faults = PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=3)
        async with tiny(faults, backoff=capped) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            await t.wait_resumed()
            (drop,) = t.broker.drops
            assert [round(a - drop, 9) for a in t.broker.attempts[1:]] == [1.0, 6.0, 11.0, 16.0]

    async def test_stopping_the_actor_cancels_the_pending_attempt(self, autojump_clock):
        faults = PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=100)
        async with tiny(faults) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            broker = t.broker
        attempts = len(broker.attempts)
        await trio.sleep(3600)  # virtual: proves that nothing is left running
        assert len(broker.attempts) == attempts
        assert not broker.connected

    async def test_a_restart_during_an_outage_goes_on_with_the_backoff(self, autojump_clock):
        faults = PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=1)
        async with tiny(faults) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            await t.system.ref("trading/orders").send(Crash())  # before attempt 1 fires
            await t.wait_resumed()
            (drop,) = t.broker.drops
            # attempt 1 was cancelled with the crashed instance; the new one waits 2 s for
            # attempt 2 (refused), then 4 s for attempt 3
            assert [round(a - drop, 9) for a in t.broker.attempts[1:]] == [2.0, 6.0]
            assert t.system.statistics().actors["trading/orders"].restarts == 1

    async def test_a_restart_after_an_operators_disconnect_stays_down(self, autojump_clock):
        async with tiny() as t:
            ref = t.system.ref("trading/orders")
            await ref.ask(BrokerConnectionChanged(connected=False, ts=T0))
            await ref.send(Crash())
            await t.system.quiesce()
            await trio.sleep(3600)  # virtual: no automatic reconnect in the meantime
            assert len(t.broker.attempts) == 1
            assert not t.orders.connected

    async def test_an_operators_disconnect_is_not_undone_by_the_timer(self, autojump_clock):
        async with tiny() as t:
            ref = t.system.ref("trading/orders")
            assert await ref.ask(BrokerConnectionChanged(connected=False, ts=T0)) is False
            await trio.sleep(3600)  # virtual: no automatic reconnect in the meantime
            assert len(t.broker.attempts) == 1
            assert await ref.ask(BrokerConnectionChanged(connected=True, ts=T0 + 1)) is True
            await t.system.quiesce()
            assert t.risk.state is TradingState.ACTIVE


class TestReconciliation:
    async def test_fills_while_down_are_applied_exactly_once(self, autojump_clock):
        async with tiny(PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=1)) as t:
            await t.bar(flat(T0))
            await t.intent(intent(limit="99.00"), T0)
            # the connection drops at the first bar; the venue trades that bar and the next
            await t.bar(flat(T0 + MIN, "98.50"), flat(T0 + 2 * MIN, "98.00"))
            await t.wait_resumed()
            order = t.orders.order("s1-00000001")
            assert order is not None
            assert order.status is OrderStatus.FILLED
            assert order.avg_fill_price == Decimal("98.50")  # opened through the limit
            assert t.persisted_fills() == ["s1-00000001-F1"]
            assert t.risk.portfolio.position("AAPL").quantity == 10
            # an operator's reconnect afterwards finds nothing new
            ref = t.system.ref("trading/orders")
            await ref.ask(BrokerConnectionChanged(connected=False, ts=T0 + 3 * MIN))
            await ref.ask(BrokerConnectionChanged(connected=True, ts=T0 + 3 * MIN))
            await t.system.quiesce()
            assert t.persisted_fills() == ["s1-00000001-F1"]
            assert t.risk.statistics().fills == 1

    async def test_trading_resumes_only_after_the_reconciled_fills(self, autojump_clock):
        async with tiny(PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=1)) as t:
            await t.bar(flat(T0))
            await t.intent(intent(limit="99.00"), T0)
            await t.bar(flat(T0 + MIN, "98.50"))
            resumed = await t.wait_resumed()
            seen = t.strategy.seen
            fill_at = next(
                i for i, m in enumerate(seen) if isinstance(m, OrderUpdated) and m.fill is not None
            )
            assert fill_at < seen.index(resumed)
            assert t.orders.down_since is None
            assert t.orders.connected

    async def test_an_intent_after_the_reconnect_is_placed(self, autojump_clock):
        async with tiny(PaperFaults(disconnect_at=(T0 + MIN,))) as t:
            await t.bar(flat(T0), flat(T0 + MIN))
            await t.wait_resumed()
            await t.intent(intent(), T0 + 2 * MIN)
            assert t.orders.statistics().accepted == 1
            assert t.strategy.of(IntentDenied) == []

    async def test_an_expiry_at_the_venue_while_down_is_applied(self, autojump_clock):
        async with tiny(PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=1)) as t:
            await t.bar(flat(T0))
            await t.intent(intent(limit="90.00", tif=TimeInForce.DAY), T0)
            next_day = T0 + 86_400 * 10**9
            await t.bar(flat(T0 + MIN), flat(next_day))  # down at the first, expired at the next
            await t.wait_resumed()
            order = t.orders.order("s1-00000001")
            assert order is not None
            assert order.status is OrderStatus.EXPIRED
            assert order.updated_ts == next_day
            assert t.risk.statistics().open_orders == 0

    async def test_open_orders_unknown_to_the_broker_become_rejected(self, autojump_clock):
        stored = Order.create("s1-00000007", intent(limit="90.00"), T0)
        stored = stored.apply(OrderSubmitted(client_order_id=stored.client_order_id, ts=T0))
        book = OrderBook.restore([stored], {"s1": 7})
        with capture_logs() as logs:
            async with tiny(book=book) as t:
                await t.system.quiesce()
                order = t.orders.order("s1-00000007")
                assert order is not None
                assert order.status is OrderStatus.REJECTED
                assert order.reason == UNKNOWN_TO_BROKER
                assert t.orders.down_since is None
                (update,) = t.strategy.of(OrderUpdated)
                assert update.order.status is OrderStatus.REJECTED
        assert any(log["event"] == "reconciled" for log in logs)

    async def test_what_cannot_be_settled_is_logged(self, autojump_clock):
        stored = Order.create("s1-00000001", intent(limit="90.00"), T0)
        stored = stored.apply(OrderSubmitted(client_order_id=stored.client_order_id, ts=T0))
        book = OrderBook.restore([stored], {"s1": 1})
        with capture_logs() as logs:
            async with tiny(book=book) as t:
                stranger = Order.create("s9-00000001", attrs.evolve(intent(), strategy_id="s9"), T0)
                stranger = stranger.apply(
                    OrderSubmitted(client_order_id=stranger.client_order_id, ts=T0)
                )
                resting = Order.create(
                    "s9-00000002", attrs.evolve(intent(limit="50.00"), strategy_id="s9"), T0
                )
                resting = resting.apply(
                    OrderSubmitted(client_order_id=resting.client_order_id, ts=T0)
                )
                t.broker.exchange.connect()
                t.broker.exchange.submit(stranger)
                t.broker.exchange.submit(resting)
                ref = t.system.ref("trading/orders")
                await ref.ask(BrokerConnectionChanged(connected=False, ts=T0))
                await t.bar(flat(T0 + MIN, "99.00"))  # fills the stranger at the venue
                await ref.ask(BrokerConnectionChanged(connected=True, ts=T0 + 2 * MIN))
        events = [log["event"] for log in logs]
        assert "reconciliation_unknown_fill" in events
        assert "reconciliation_orphan" in events
        assert "reconciliation_discrepancy" not in events
        assert events.count("reconciled") == 2

    async def test_a_failed_operator_reconnect_falls_back_to_the_timer(self, autojump_clock):
        async with tiny() as t:
            ref = t.system.ref("trading/orders")
            await ref.ask(BrokerConnectionChanged(connected=False, ts=T0))
            t.broker.refuse_next = 2
            assert await ref.ask(BrokerConnectionChanged(connected=True, ts=T0 + 1)) is False
            await t.wait_resumed()
            assert t.orders.connected
            assert len(t.broker.attempts) == 4  # the start, the operator's, two timed
            assert t.orders.statistics().reconnects == 1
