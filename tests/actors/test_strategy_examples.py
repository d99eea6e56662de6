"""The example strategies in docs/examples, run in the strategy host against a small broker."""

from __future__ import annotations

import itertools
import random
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from tradewind.actors import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderFilled,
    OrderIntent,
    OrderSubmitted,
    OrderType,
    Side,
    Strategy,
    StrategyActor,
    StrategyHost,
    load_strategy,
)
from tradewind.actors._messages import CancelOrder, OrderUpdated, SubmitIntent
from tradewind.runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    Backoff,
    ChildSpec,
    SupervisorSpec,
    open_actor_system,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tradewind.actors import OrderEvent, StrategyContext
    from tradewind.runtime._specs import AnySpec

REPO = Path(__file__).resolve().parents[2]
MINUTE = 60_000_000_000
T0 = 1_700_000_040_000_000_000
AAPL = Instrument("AAPL", "USD", Decimal("0.01"))


def walk(n: int, seed: int = 7) -> list[Bar]:
    """A seeded random walk of 1m bars in whole cents, with trending stretches."""
    rng = random.Random(seed)
    cents = 10_000
    bars = []
    drift = 0
    for i in range(n):
        if i % 40 == 0:
            drift = rng.choice((-6, 0, 6))
        opened = cents
        cents = max(1_000, cents + drift + rng.randint(-40, 40))
        high = max(opened, cents) + rng.randint(0, 30)
        low = min(opened, cents) - rng.randint(0, 30)
        bars.append(
            Bar(
                "AAPL",
                "1m",
                T0 + i * MINUTE,
                Decimal(opened) / 100,
                Decimal(high) / 100,
                Decimal(low) / 100,
                Decimal(cents) / 100,
                Decimal(1000),
            )
        )
    return bars


class Broker(Actor):
    """Stands in for risk + orders + broker: accepts every intent, fills on the next bar.

    Market orders fill at the next bar's open; limit orders when the bar trades through
    the limit (at the limit, or at the open if it gapped through).
    """

    def __init__(self, log: list[object]) -> None:
        self.log = log
        self.working: dict[str, Order] = {}
        self.seq = 0
        self.strategy: ActorRef | None = None

    async def on_start(self) -> None:
        self.strategy = self.context.system.ref("trading/strategy")

    async def _update(self, order: Order, event: OrderEvent, ts: int) -> Order:
        assert self.strategy is not None
        order = order.apply(event)
        assert order.last_event is not None
        await self.strategy.send(OrderUpdated(order, order.last_event, ts))
        return order

    async def handle(self, message: object) -> None:
        self.log.append(message)
        match message:
            case SubmitIntent(intent=intent, ts=ts):
                self.seq += 1
                cid = f"{intent.strategy_id}-{self.seq:08d}"
                order = Order.create(cid, intent, ts).apply(
                    OrderSubmitted(client_order_id=cid, ts=ts)
                )
                order = await self._update(
                    order, OrderAccepted(client_order_id=cid, ts=ts, broker_order_id=cid), ts
                )
                self.working[cid] = order
            case CancelOrder(client_order_id=cid, ts=ts) if cid in self.working:
                order = self.working.pop(cid)
                order = await self._update(
                    order, OrderCancelRequested(client_order_id=cid, ts=ts), ts
                )
                await self._update(order, OrderCanceled(client_order_id=cid, ts=ts), ts)
            case Bar():
                await self._match(message)
                assert self.strategy is not None
                await self.strategy.send(message)

    async def _match(self, bar: Bar) -> None:
        for cid, order in sorted(self.working.items()):
            intent = order.intent
            price = _fill_price(intent, bar)
            if price is None:
                continue
            fill = Fill(
                f"{cid}-F1",
                cid,
                intent.instrument,
                intent.side,
                intent.quantity,
                price,
                Decimal(0),
                "USD",
                bar.ts,
            )
            event = OrderFilled(client_order_id=cid, ts=bar.ts, fill=fill)
            await self._update(order, event, bar.ts)
            del self.working[cid]


def _fill_price(intent: OrderIntent, bar: Bar) -> Decimal | None:
    if intent.order_type is OrderType.MARKET:
        return bar.open
    limit = intent.limit_price
    assert limit is not None
    if intent.side is Side.BUY and bar.low <= limit:
        return min(limit, bar.open)
    if intent.side is Side.SELL and bar.high >= limit:
        return max(limit, bar.open)
    return None


@attrs.define
class Run:
    system: ActorSystem
    host: StrategyHost
    broker_log: list[object]
    positions: list[Decimal] = attrs.field(factory=list)

    @property
    def intents(self) -> list[OrderIntent]:
        return [m.intent for m in self.broker_log if isinstance(m, SubmitIntent)]

    @property
    def cancels(self) -> list[CancelOrder]:
        return [m for m in self.broker_log if isinstance(m, CancelOrder)]


@asynccontextmanager
async def running(strategy: type[Strategy], params: dict[str, Any]) -> AsyncIterator[Run]:
    host = StrategyHost("example", [AAPL])
    broker_log: list[object] = []
    children: list[AnySpec] = [
        ChildSpec("risk", lambda: Broker(broker_log)),
        ChildSpec("strategy", lambda: StrategyActor(host, lambda: strategy(**params))),
    ]
    trading = SupervisorSpec("trading", children, backoff=Backoff(initial=0.01, jitter=0))
    root = SupervisorSpec("root", [trading])
    async with open_actor_system(root, asyncio_loop=False) as system:
        yield Run(system, host, broker_log)


async def replay(strategy: type[Strategy], params: dict[str, Any], bars: list[Bar]) -> Run:
    async with running(strategy, params) as run:
        broker = run.system.ref("trading/risk")
        for bar in bars:
            await broker.send(bar)
            await run.system.quiesce()
            run.positions.append(run.host.portfolio.position("AAPL").quantity)
        return run


def crashing(cls: type[Strategy], at: set[int]) -> type[Strategy]:
    """A subclass whose on_bar raises once at each bar time in `at` (not in warm-up)."""

    class Crashing(cls):  # type: ignore[valid-type,misc]
        pending: ClassVar[set[int]] = set(at)

        def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
            if bar.ts in Crashing.pending and not ctx.warming_up:
                Crashing.pending.discard(bar.ts)
                msg = "injected"
                raise RuntimeError(msg)
            super().on_bar(bar, ctx)

    return Crashing


SMA = load_strategy("docs/examples/sma_crossover.py:SmaCrossover", base=REPO).cls
MEAN_REVERSION = load_strategy("docs/examples/mean_reversion.py:MeanReversion", base=REPO).cls


class TestSmaCrossover:
    PARAMS: ClassVar[dict[str, Any]] = {"fast": 5, "slow": 20, "quantity": 10}

    async def test_trades_now_and_then_flat_long_flat(self, autojump_clock: object) -> None:
        run = await replay(SMA, self.PARAMS, walk(400))
        sides = [i.side for i in run.intents]
        assert len(sides) >= 4
        assert all(a is not b for a, b in itertools.pairwise(sides))
        assert sides[0] is Side.BUY
        assert set(run.positions) == {Decimal(0), Decimal(10)}
        assert len(sides) < 400 // 10

    async def test_long_short_holds_plus_or_minus_quantity(self, autojump_clock: object) -> None:
        run = await replay(SMA, {**self.PARAMS, "allow_short": True}, walk(400))
        assert set(run.positions) >= {Decimal(10), Decimal(-10)}
        assert {i.quantity for i in run.intents} <= {Decimal(10), Decimal(20)}

    async def test_is_deterministic_and_decimal_only(self, autojump_clock: object) -> None:
        first = await replay(SMA, self.PARAMS, walk(300))
        second = await replay(SMA, self.PARAMS, walk(300))
        assert first.intents == second.intents
        assert all(type(i.quantity) is Decimal for i in first.intents)

    async def test_a_crash_changes_no_decision(self, autojump_clock: object) -> None:
        bars = walk(300)
        clean = await replay(SMA, self.PARAMS, bars)
        crashed = await replay(crashing(SMA, {bars[50].ts, bars[177].ts}), self.PARAMS, bars)
        assert crashed.host.statistics().starts == 3
        assert crashed.intents == clean.intents

    def test_refuses_bad_windows(self) -> None:
        for params in ({"fast": 0}, {"fast": 30, "slow": 20}, {"quantity": 0}):
            try:
                SMA(**params)
            except ValueError:
                continue
            raise AssertionError(params)


class TestMeanReversion:
    PARAMS: ClassVar[dict[str, Any]] = {"window": 20, "band": "1.5", "quantity": 5, "max_age": 4}

    async def test_enters_with_limits_below_the_mean_and_exits_at_it(
        self, autojump_clock: object
    ) -> None:
        run = await replay(MEAN_REVERSION, self.PARAMS, walk(400, seed=3))
        entries = [i for i in run.intents if i.tag == "entry"]
        exits = [i for i in run.intents if i.tag == "exit"]
        assert entries
        assert exits
        assert all(i.order_type is OrderType.LIMIT for i in run.intents)
        assert all(i.side is Side.BUY for i in entries)
        assert all(i.side is Side.SELL for i in exits)
        assert all(
            i.limit_price is not None and AAPL.is_on_tick(i.limit_price) for i in run.intents
        )
        assert run.host.statistics().fills >= 2
        assert max(run.positions) == Decimal(5)
        assert min(run.positions) == Decimal(0)

    async def test_cancels_stale_orders(self, autojump_clock: object) -> None:
        run = await replay(MEAN_REVERSION, self.PARAMS, walk(400, seed=3))
        assert run.cancels
        assert all(c.reason == "stale" for c in run.cancels)
        submits = [m for m in run.broker_log if isinstance(m, SubmitIntent)]
        placed_at = {f"example-{n:08d}": m.ts for n, m in enumerate(submits, 1)}
        ages = [(c.ts - placed_at[c.client_order_id]) // MINUTE for c in run.cancels]
        assert min(ages) == self.PARAMS["max_age"]

    async def test_is_deterministic_and_survives_a_crash(self, autojump_clock: object) -> None:
        bars = walk(300, seed=3)
        clean = await replay(MEAN_REVERSION, self.PARAMS, bars)
        again = await replay(MEAN_REVERSION, self.PARAMS, bars)
        crashed = await replay(
            crashing(MEAN_REVERSION, {bars[40].ts, bars[201].ts}), self.PARAMS, bars
        )
        assert again.intents == clean.intents
        assert [m for m in crashed.broker_log if not isinstance(m, Bar)] == [
            m for m in clean.broker_log if not isinstance(m, Bar)
        ]

    def test_refuses_bad_parameters(self) -> None:
        for params in ({"window": 1}, {"max_age": 0}, {"band": 0}, {"quantity": "-1"}):
            try:
                MEAN_REVERSION(**params)
            except ValueError:
                continue
            raise AssertionError(params)
