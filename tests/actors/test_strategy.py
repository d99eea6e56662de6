"""The strategy host: decide-then-act, crash and warm-up, the context, and load_strategy."""

from __future__ import annotations

import textwrap
from collections import deque
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pytest
from tradewind.actors import (
    Bar,
    Fill,
    Instrument,
    InvalidOrder,
    InvalidStrategy,
    Order,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    OrderSubmitted,
    OrderType,
    Side,
    Strategy,
    StrategyActor,
    StrategyContext,
    StrategyHost,
    TimeInForce,
    TradingState,
    TransitionKind,
    load_strategy,
)
from tradewind.actors._messages import (
    CancelOrder,
    EndOfData,
    IntentDenied,
    OrderUpdated,
    SessionChanged,
    SubmitIntent,
    TradingStateChanged,
)
from tradewind.actors._risk import DenyReason
from tradewind.runtime import (
    Actor,
    ActorSystem,
    Backoff,
    ChildSpec,
    RestartStrategy,
    SupervisorSpec,
    open_actor_system,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import trio.testing
    from tradewind.runtime._specs import AnySpec

REPO = Path(__file__).resolve().parents[2]
MINUTE = 60_000_000_000
T0 = 1_700_000_040_000_000_000
AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
MSFT = Instrument("MSFT", "USD", Decimal("0.01"))


def bar(i: int, close: str | Decimal, symbol: str = "AAPL") -> Bar:
    price = Decimal(close)
    return Bar(symbol, "1m", T0 + i * MINUTE, price, price, price, price, Decimal(1))


def zigzag(n: int) -> list[Bar]:
    """Closes that rise and fall in waves of 12 bars: crossings every few bars."""
    closes = []
    price = Decimal(100)
    for i in range(n):
        price += Decimal(1) if (i // 12) % 2 == 0 else Decimal(-1)
        closes.append(bar(i, price))
    return closes


class Recorder(Actor):
    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    async def handle(self, message: object) -> None:
        self.seen.append(message)


@attrs.define
class Tiny:
    system: ActorSystem
    host: StrategyHost
    risk: list[object]

    async def send(self, *messages: object) -> None:
        strategy = self.system.ref("trading/strategy")
        for message in messages:
            await strategy.send(message)
        await self.system.quiesce()

    @property
    def intents(self) -> list[OrderIntent]:
        return [m.intent for m in self.risk if isinstance(m, SubmitIntent)]

    @property
    def restarts(self) -> int:
        return self.system.statistics().actors["trading/strategy"].restarts


@asynccontextmanager
async def tiny(
    factory: Callable[[], Strategy],
    host: StrategyHost | None = None,
    actor: type[StrategyActor] = StrategyActor,
    params: dict[str, object] | None = None,
    handler_timeout: float | None = None,
) -> AsyncIterator[Tiny]:
    host = host if host is not None else StrategyHost("sma", [AAPL, MSFT])
    risk: list[object] = []
    trading: list[AnySpec] = [
        ChildSpec("risk", lambda: Recorder(risk)),
        ChildSpec(
            "strategy",
            lambda: actor(host, factory, params=params),
            handler_timeout=handler_timeout,
        ),
    ]
    root: list[AnySpec] = [
        # mypy reads the children's `converter=tuple` as Iterable[_T_co]: a false alarm.
        SupervisorSpec(
            "trading",
            trading,
            strategy=RestartStrategy.REST_FOR_ONE,
            max_restarts=50,
            backoff=Backoff(initial=0.01, jitter=0),
        ),
    ]
    async with open_actor_system(SupervisorSpec("root", root), asyncio_loop=False) as system:
        yield Tiny(system, host, risk)


# ----------------------------------------------------------------------------- strategies


class Crossing(Strategy):
    """An SMA crossover that keeps its own incremental state (the thing warm-up rebuilds).

    It trades on the *crossing* (a change of sign of fast - slow), not on the position, so
    a strategy that lost its state would decide differently on the next bar.
    """

    crash_at: ClassVar[set[int]] = set()  # bar times at which on_bar raises, once each

    def __init__(self, fast: int = 3, slow: int = 7) -> None:
        self.fast, self.slow = fast, slow
        self.lookback = slow + 1
        self.closes: deque[Decimal] = deque(maxlen=slow)
        self.sign = 0

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self.closes.append(bar.close)
        if bar.ts in Crossing.crash_at and not ctx.warming_up:
            Crossing.crash_at.discard(bar.ts)
            msg = "strategy bug"
            raise RuntimeError(msg)
        if len(self.closes) < self.slow:
            return
        closes = list(self.closes)
        diff = (
            sum(closes[-self.fast :], Decimal(0)) / self.fast - sum(closes, Decimal(0)) / self.slow
        )
        sign = (diff > 0) - (diff < 0)
        if sign and self.sign and sign != self.sign:
            ctx.buy(bar.instrument, 1) if sign > 0 else ctx.sell(bar.instrument, 1)
        if sign:
            self.sign = sign


class EveryBar(Strategy):
    """Buys one on every bar; raises once at the bar times in `crash_at`."""

    crash_at: ClassVar[set[int]] = set()
    calls: ClassVar[list[tuple[str, int]]] = []

    def on_start(self, ctx: StrategyContext) -> None:
        EveryBar.calls.append(("start", ctx.now))
        ctx.buy("AAPL", 1)  # ignored: on_start does not trade

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        EveryBar.calls.append(("warm" if ctx.warming_up else "bar", bar.ts))
        ctx.buy(bar.instrument, 1)
        if bar.ts in EveryBar.crash_at and not ctx.warming_up:
            EveryBar.crash_at.discard(bar.ts)
            msg = "strategy bug"
            raise RuntimeError(msg)

    def on_stop(self, ctx: StrategyContext) -> None:
        EveryBar.calls.append(("stop", ctx.now))


@pytest.fixture(autouse=True)
def _reset() -> None:
    Crossing.crash_at = set()
    EveryBar.crash_at = set()
    EveryBar.calls = []


# ----------------------------------------------------------------------------- tests


class TestDecideThenAct:
    async def test_intents_are_sent_after_on_bar_returns(self, autojump_clock: object) -> None:
        during: list[int] = []
        risk_seen: list[object] = []

        class TwoOrders(Strategy):
            def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
                ctx.buy("AAPL", 1)
                during.append(len(risk_seen))
                ctx.sell("AAPL", 2, limit="99.50")
                during.append(len(risk_seen))

        async with tiny(TwoOrders) as t:
            risk_seen = t.risk
            await t.send(bar(0, "100"))
            assert during == [0, 0]
            assert [(i.side, i.quantity, i.limit_price) for i in t.intents] == [
                (Side.BUY, Decimal(1), None),
                (Side.SELL, Decimal(2), Decimal("99.50")),
            ]
            assert [m.ts for m in t.risk if isinstance(m, SubmitIntent)] == [T0, T0]

    async def test_a_raising_on_bar_sends_nothing_it_buffered(self, autojump_clock: object) -> None:
        EveryBar.crash_at = {T0}
        async with tiny(EveryBar) as t:
            await t.send(bar(0, "100"))
            # the first attempt buffered a buy and raised: only the retry's buy is sent
            assert len(t.intents) == 1
            assert t.restarts == 1


class TestCrashAndWarmUp:
    async def _run(self, crash_at: set[int]) -> tuple[list[OrderIntent], int]:
        Crossing.crash_at = set(crash_at)
        async with tiny(Crossing) as t:
            for b in zigzag(60):
                await t.send(b)
            return t.intents, t.restarts

    async def test_warm_up_rebuilds_state_so_decisions_match_a_crash_free_run(
        self, autojump_clock: object
    ) -> None:
        clean, restarts = await self._run(set())
        assert restarts == 0
        assert len(clean) >= 3
        crashed, restarts = await self._run({T0 + 20 * MINUTE, T0 + 37 * MINUTE})
        assert restarts == 2
        assert crashed == clean

    async def test_on_start_after_a_crash_sees_history_without_the_bar_to_come_again(
        self, autojump_clock: object
    ) -> None:
        # The bar whose on_bar crashed is delivered afresh after on_start and the
        # warm-up: on_start must not count it already.
        seen: list[tuple[str, list[int]]] = []
        crashed: list[bool] = []

        class Peeks(Strategy):
            def on_start(self, ctx: StrategyContext) -> None:
                seen.append(("start", [b.ts for b in ctx.history("AAPL", 10)]))

            def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
                if bar.ts == T0 + 3 * MINUTE and not ctx.warming_up and not crashed:
                    crashed.append(True)
                    raise RuntimeError("bug")

        async with tiny(Peeks) as t:
            for i in range(5):
                await t.send(bar(i, str(100 + i)))
        assert seen == [("start", []), ("start", [T0 + i * MINUTE for i in range(3)])]

    async def test_without_warm_up_a_fresh_instance_would_decide_differently(
        self, autojump_clock: object
    ) -> None:
        """Guards the test above: the crash points fall where lost state changes a decision."""
        clean, _ = await self._run(set())
        host = StrategyHost("sma", [AAPL], history=1)  # too short to rebuild anything
        Crossing.crash_at = {T0 + 20 * MINUTE, T0 + 37 * MINUTE}
        async with tiny(Crossing, host=host) as t:
            for b in zigzag(60):
                await t.send(b)
            assert t.intents != clean

    async def test_warm_up_ignores_submit(self, autojump_clock: object) -> None:
        EveryBar.crash_at = {T0 + 4 * MINUTE}
        async with tiny(EveryBar) as t:
            for i in range(6):
                await t.send(bar(i, "100"))
            assert len(t.intents) == 6
            assert t.host.statistics().warmup_bars == 4
            assert t.host.statistics().starts == 2
        kinds = [kind for kind, _ts in EveryBar.calls]
        assert kinds == [
            "start",
            *["bar"] * 5,
            "start",
            *["warm"] * 4,
            "bar",
            "bar",
            "stop",
        ]

    async def test_warm_up_replays_instruments_in_arrival_order(
        self, autojump_clock: object
    ) -> None:
        seen: list[tuple[str, int, bool, int]] = []

        class Watch(Strategy):
            def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
                other = "MSFT" if bar.instrument == "AAPL" else "AAPL"
                seen.append((bar.instrument, bar.ts, ctx.warming_up, len(ctx.history(other, 10))))
                if bar.instrument == "MSFT" and bar.ts == T0 + MINUTE and not ctx.warming_up:
                    seen.append(("crash", 0, False, 0))
                    if len([s for s in seen if s[0] == "crash"]) == 1:
                        raise RuntimeError

        async with tiny(Watch) as t:
            await t.send(bar(0, "1"), bar(0, "2", "MSFT"), bar(1, "1"), bar(1, "2", "MSFT"))
        warm = [(s[0], s[1], s[3]) for s in seen if s[2]]
        assert warm == [("AAPL", T0, 0), ("MSFT", T0, 1), ("AAPL", T0 + MINUTE, 1)]

    async def test_a_crash_while_sending_does_not_send_twice(self, autojump_clock: object) -> None:
        class FlakyActor(StrategyActor):
            crashed = False

            async def _deliver(self) -> None:
                if self.host.outbox and not FlakyActor.crashed:
                    FlakyActor.crashed = True
                    raise RuntimeError("boom")
                await super()._deliver()

        async with tiny(EveryBar, actor=FlakyActor) as t:
            await t.send(bar(0, "100"), bar(1, "100"))
            assert FlakyActor.crashed
            assert t.restarts == 1
            assert len(t.intents) == 2
            assert [k for k, _ in EveryBar.calls].count("bar") == 2


class TestCallbacks:
    def _order(self, quantity: int = 5) -> tuple[Order, OrderUpdated, OrderUpdated]:
        wanted = OrderIntent(
            "sma", "AAPL", Side.BUY, quantity, OrderType.MARKET, None, TimeInForce.DAY
        )
        order = Order.create("sma-00000001", wanted, T0).apply(
            OrderSubmitted(client_order_id="sma-00000001", ts=T0)
        )
        assert order.last_event is not None
        ack = OrderUpdated(order, order.last_event, T0)
        fill = Fill(
            "sma-00000001-F1", "sma-00000001", "AAPL", Side.BUY, quantity, "100", "0.5", "USD", T0
        )
        done = order.apply(OrderFilled(client_order_id="sma-00000001", ts=T0, fill=fill))
        assert done.last_event is not None
        return order, ack, OrderUpdated(done, done.last_event, T0)

    async def test_fill_reaches_on_fill_once_and_moves_the_position(
        self, autojump_clock: object
    ) -> None:
        log: list[tuple[str, object]] = []

        class Fills(Strategy):
            def on_order(self, update: OrderUpdated, ctx: StrategyContext) -> None:
                log.append(("order", update.order.status.value))
                log.append(("open", len(ctx.open_orders("AAPL"))))

            def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
                log.append(("fill", ctx.position("AAPL").quantity))
                log.append(("cash", ctx.portfolio.cash["USD"]))

        _order, ack, filled = self._order()
        async with tiny(Fills) as t:
            await t.send(ack, filled, attrs.evolve(filled))
            assert t.host.statistics().fills == 1
        assert log == [
            ("order", "SUBMITTED"),
            ("open", 1),
            ("order", "FILLED"),
            ("open", 0),
            ("fill", 5),
            ("cash", Decimal("-500.5")),
        ]  # the fill's update sent again is the same event: no callback at all

    async def test_an_update_sent_again_reaches_on_order_once(self, autojump_clock: object) -> None:
        # After a crash in the middle of an upstream handler (the order actor's, at its
        # send of the bar after the bar's updates), the redelivered message sends the
        # same updates again. A strategy replacing a canceled order must not place the
        # replacement twice: a crash-free run places it once.
        seen: list[tuple[str, int]] = []

        class ReplaceOnCancel(Strategy):
            def on_order(self, update: OrderUpdated, ctx: StrategyContext) -> None:
                seen.append((update.event.kind.value, update.order.event_seq))
                if update.event.kind.value == "CANCELED":
                    ctx.buy("AAPL", 5, "95")

        order, ack, _filled = self._order()
        canceled = order.apply(OrderCanceled(client_order_id="sma-00000001", ts=T0 + MINUTE))
        assert canceled.last_event is not None
        update = OrderUpdated(canceled, canceled.last_event, T0 + MINUTE)
        async with tiny(ReplaceOnCancel) as t:
            await t.send(ack, update, attrs.evolve(update), attrs.evolve(ack))
            assert len(t.intents) == 1
        assert seen == [("SUBMITTED", 1), ("CANCELED", 2)]

    async def test_denial_session_and_state_reach_the_strategy(
        self, autojump_clock: object
    ) -> None:
        log: list[object] = []

        class Events(Strategy):
            def on_denied(self, denial: IntentDenied, ctx: StrategyContext) -> None:
                log.append(denial.reason)

            def on_session(self, event: SessionChanged, ctx: StrategyContext) -> None:
                log.append((event.kind, ctx.trading_state))

        wanted = OrderIntent("sma", "AAPL", Side.BUY, 1, OrderType.MARKET, None, TimeInForce.DAY)
        async with tiny(Events) as t:
            await t.send(
                IntentDenied(wanted, DenyReason.MAX_POSITION, "too big", T0),
                TradingStateChanged(TradingState.HALTED, "kill switch", T0),
                SessionChanged(TransitionKind.CLOSE, T0),
                EndOfData(T0),
                object(),
            )
            assert t.host.end_of_data
            assert t.host.statistics().denials == 1
        assert log == [DenyReason.MAX_POSITION, (TransitionKind.CLOSE, TradingState.HALTED)]

    async def test_context_reads(self, autojump_clock: object) -> None:
        got: dict[str, object] = {}

        class Reads(Strategy):
            def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
                got["now"] = ctx.now
                got["history"] = [b.close for b in ctx.history("AAPL", 2)]
                got["params"] = dict(ctx.params)
                got["tick"] = ctx.instrument("AAPL").tick_size
                got["marks"] = dict(ctx.portfolio.marks)
                got["pnl"] = ctx.portfolio.pnl_by_currency()
                got["flat"] = ctx.portfolio.position("AAPL").is_flat
                got["positions"] = dict(ctx.portfolio.positions)
                got["realized"] = ctx.portfolio.realized_pnl_by_currency()
                got["unrealized"] = ctx.portfolio.unrealized_pnl_by_currency()
                ctx.log.info("read")

        async with tiny(Reads, params={"fast": 3}) as t:
            await t.send(bar(0, "1"), bar(1, "2"), bar(2, "3"))
        assert got == {
            "now": T0 + 2 * MINUTE,
            "history": [Decimal(2), Decimal(3)],
            "params": {"fast": 3},
            "tick": Decimal("0.01"),
            "marks": {"AAPL": Decimal(3)},
            "pnl": {},
            "flat": True,
            "positions": {},
            "realized": {},
            "unrealized": {},
        }

    async def test_duplicate_bar_is_dropped(self, autojump_clock: object) -> None:
        async with tiny(EveryBar) as t:
            await t.send(bar(0, "1"), bar(1, "2"), bar(1, "2"), bar(0, "1"))
            assert len(t.intents) == 2
            assert t.host.statistics().duplicate_bars == 2
            assert t.host.statistics().bars == 2

    async def test_submit_and_cancel_forms(self, autojump_clock: object) -> None:
        class Forms(Strategy):
            def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
                ctx.submit(instrument="AAPL", side=Side.SELL, quantity=3, limit_price="101")
                ctx.submit(
                    OrderIntent("sma", "AAPL", Side.BUY, 1, OrderType.MARKET, None, TimeInForce.IOC)
                )
                ctx.cancel("sma-00000001", reason="stale")

        async with tiny(Forms) as t:
            await t.send(bar(0, "100"))
            first, second = t.intents
            assert (first.order_type, first.limit_price, first.time_in_force) == (
                OrderType.LIMIT,
                Decimal(101),
                TimeInForce.DAY,
            )
            assert second.time_in_force is TimeInForce.IOC
            assert t.risk[-1] == CancelOrder("sma-00000001", T0, "stale")
            assert t.host.statistics().cancels == 1

    @pytest.mark.parametrize(
        ("call", "match"),
        [
            (
                lambda ctx: ctx.submit(
                    OrderIntent(
                        "other", "AAPL", Side.BUY, 1, OrderType.MARKET, None, TimeInForce.DAY
                    )
                ),
                "other",
            ),
            (lambda ctx: ctx.submit("nonsense"), "expected an OrderIntent"),
            (
                lambda ctx: ctx.submit(
                    OrderIntent(
                        "sma", "AAPL", Side.BUY, 1, OrderType.MARKET, None, TimeInForce.DAY
                    ),
                    tag="x",
                ),
                "not both",
            ),
        ],
    )
    def test_bad_submit_raises(self, call: Callable[[StrategyContext], None], match: str) -> None:
        import structlog

        ctx = StrategyContext(StrategyHost("sma", [AAPL]), params={}, log=structlog.get_logger())
        with pytest.raises(InvalidOrder, match=match):
            call(ctx)

    def test_host_refuses_a_bad_strategy_id(self) -> None:
        with pytest.raises(InvalidOrder, match="strategy_id"):
            StrategyHost("no spaces", [AAPL])

    def test_seeded_orders_are_open_orders(self) -> None:
        host = StrategyHost("sma", [AAPL])
        order, _ack, filled = self._order()
        host.seed_orders([order, filled.order])
        assert list(host.orders) == []  # the filled snapshot is newer: nothing works
        host = StrategyHost("sma", [AAPL])
        host.seed_orders([order])
        assert list(host.orders) == ["sma-00000001"]

    def test_host_refuses_a_history_below_one(self) -> None:
        with pytest.raises(ValueError, match="history"):
            StrategyHost("sma", [AAPL], history=0)

    async def test_a_raising_on_start_is_a_crash(self, autojump_clock: object) -> None:
        starts: list[int] = []

        class FailsToStart(Strategy):
            def on_start(self, ctx: StrategyContext) -> None:
                starts.append(1)
                if len(starts) == 1:
                    raise RuntimeError

        async with tiny(FailsToStart) as t:
            await t.send(bar(0, "1"))
            assert t.system.statistics().actors["trading/strategy"].crashes == 1
        assert len(starts) == 2

    async def test_a_callback_that_overruns_the_handler_timeout_is_a_crash(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        # A synchronous callback has no checkpoint, so trio cannot cancel it; a slow one
        # (time.sleep, a long computation) must still count as a crash once it returns.
        slow = [bar(1, "2").ts]

        class Slow(Strategy):
            def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
                if bar.ts in slow:
                    slow.remove(bar.ts)
                    autojump_clock.jump(5)  # the callback "takes" five seconds
                ctx.buy(bar.instrument, 1)

        async with tiny(Slow, handler_timeout=1.0) as t:
            await t.send(bar(0, "1"), bar(1, "2"))
            assert t.system.statistics().actors["trading/strategy"].crashes == 1
            # the slow call's buy was not sent; the redelivery's was
            assert len(t.intents) == 2

    def test_history_upto_leaves_out_later_bars(self) -> None:
        host = StrategyHost("sma", [AAPL], history=3)
        host.seed_history([bar(0, "1"), bar(1, "2"), bar(2, "3"), bar(3, "4")])
        assert [b.close for b in host.bars("AAPL", 5)] == [2, 3, 4]
        assert [b.close for b in host.bars("AAPL", 5, upto=3)] == [2, 3]
        assert host.bars("MSFT", 5) == []


class TestStop:
    async def test_on_stop_is_called_only_on_instances_that_did_not_crash(
        self, autojump_clock: object
    ) -> None:
        built: list[Strategy] = []
        stopped: list[Strategy] = []

        class DiesOnce(Strategy):
            def __init__(self) -> None:
                built.append(self)

            def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
                if len(built) == 1:
                    raise RuntimeError

            def on_stop(self, ctx: StrategyContext) -> None:
                stopped.append(self)

        async with tiny(DiesOnce) as t:
            await t.send(bar(0, "1"))
        assert len(built) == 2
        assert stopped == [built[1]]

    async def test_on_stop_is_not_called_on_an_instance_whose_actor_crashed_elsewhere(
        self, autojump_clock: object
    ) -> None:
        # The crash is the actor's, not a callback's (here: its handler raises before
        # the strategy is called, as a failing send to risk would).
        built: list[Strategy] = []
        stopped: list[Strategy] = []

        class Watches(Strategy):
            def __init__(self) -> None:
                built.append(self)

            def on_stop(self, ctx: StrategyContext) -> None:
                stopped.append(self)

        failed: list[bool] = []

        class FailsOnce(StrategyActor):
            async def handle(self, message: object) -> None:
                if not failed:
                    failed.append(True)
                    raise RuntimeError("the actor, not the strategy")
                await super().handle(message)

        async with tiny(Watches, actor=FailsOnce) as t:
            await t.send(bar(0, "1"))
        assert len(built) == 2
        assert stopped == [built[1]]

    async def test_a_factory_that_builds_no_strategy_is_a_crash(
        self, autojump_clock: object
    ) -> None:
        built: list[object] = [object()]

        def factory() -> Strategy:
            return built.pop() if built else EveryBar()  # type: ignore[return-value]

        async with tiny(factory) as t:
            await t.send(bar(0, "1"))
            assert t.system.statistics().actors["trading/strategy"].crashes == 1
            assert len(t.intents) == 1


class TestLoadStrategy:
    def test_loads_a_file_path_relative_to_base(self) -> None:
        factory = load_strategy(
            "docs/examples/sma_crossover.py:SmaCrossover", {"fast": 2, "slow": 5}, base=REPO
        )
        strategy = factory()
        assert type(strategy).__name__ == "SmaCrossover"
        assert factory.params == {"fast": 2, "slow": 5}
        assert factory() is not strategy

    def test_loads_an_import_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "my_strats.py").write_text(
            "from tradewind.actors import Strategy\nclass Mine(Strategy):\n    pass\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        assert type(load_strategy("my_strats:Mine")()).__name__ == "Mine"

    @pytest.mark.parametrize(
        ("spec", "params", "match"),
        [
            ("no_colon", {}, "expected 'package.module:ClassName'"),
            ("no_such_module_xyz:Thing", {}, "module 'no_such_module_xyz' not found"),
            ("docs/examples/absent.py:Thing", {}, "file .*absent.py' not found"),
            ("docs/examples/sma_crossover.py:Nope", {}, "has no 'Nope'"),
            ("docs/examples/sma_crossover.py:Decimal", {}, "'Decimal' is not a Strategy subclass"),
            ("docs/examples/sma_crossover.py:SmaCrossover", {"fsat": 2}, r"bad params \['fsat'\]"),
            ("docs/examples/sma_crossover.py:SmaCrossover", {"fast": 9, "slow": 3}, "fast < slow"),
        ],
    )
    def test_errors_name_what_was_wrong(
        self, spec: str, params: dict[str, Any], match: str
    ) -> None:
        with pytest.raises(InvalidStrategy, match=match) as caught:
            load_strategy(spec, params, base=REPO)
        assert caught.value.problems == (str(caught.value),)

    def test_a_failing_import_inside_the_module_is_reported_as_such(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "broken_strat.py").write_text("import numpy_that_is_not_here\n")
        (tmp_path / "raising.py").write_text("raise ValueError('bad module')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        with pytest.raises(InvalidStrategy, match="importing 'broken_strat' failed"):
            load_strategy("broken_strat:X")
        with pytest.raises(InvalidStrategy, match="importing 'raising' failed: ValueError"):
            load_strategy("raising:X")
        with pytest.raises(InvalidStrategy, match=r"raising\.py' failed: ValueError"):
            load_strategy(f"{tmp_path / 'raising.py'}:X")

    def test_a_missing_dependency_is_not_taken_for_the_missing_module(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # 'trendfollow' starts with 'trend' but is not inside a package 'trend'.
        (tmp_path / "trendfollow.py").write_text("import trend\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        with pytest.raises(InvalidStrategy, match="importing 'trendfollow' failed"):
            load_strategy("trendfollow:S")

    def test_a_file_strategy_may_use_its_module(self, tmp_path: Path) -> None:
        source = textwrap.dedent(
            """
            import attrs
            from tradewind.actors import Strategy

            @attrs.define
            class Settings:
                n: int = 1

            class WithSettings(Strategy):
                def __init__(self, n: int = 1) -> None:
                    self.settings = Settings(n)
            """
        )
        (tmp_path / "with_settings.py").write_text(source)
        strategy = load_strategy("with_settings.py:WithSettings", {"n": 4}, base=tmp_path)()
        assert strategy.settings.n == 4  # type: ignore[attr-defined]

    def test_an_async_callback_is_refused_at_load(self, tmp_path: Path) -> None:
        # An `async def on_bar` would return a coroutine that is never awaited: the
        # strategy would silently do nothing.
        (tmp_path / "asyncy.py").write_text(
            "from tradewind.actors import Strategy\n"
            "class Asyncy(Strategy):\n"
            "    async def on_bar(self, bar, ctx):\n"
            "        ctx.buy(bar.instrument, 1)\n"
        )
        with pytest.raises(InvalidStrategy, match=r"on_bar is an async def"):
            load_strategy("asyncy.py:Asyncy", base=tmp_path)

    async def test_a_factory_building_an_async_callback_is_a_crash(
        self, autojump_clock: object
    ) -> None:
        class Asyncy(Strategy):
            async def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:  # type: ignore[override]
                pass

        built: list[Strategy] = [Asyncy()]

        def factory() -> Strategy:
            return built.pop() if built else EveryBar()

        async with tiny(factory) as t:
            await t.send(bar(0, "1"))
            assert t.system.statistics().actors["trading/strategy"].crashes == 1
            assert len(t.intents) == 1


class TestOutboxBound:
    def test_what_does_not_fit_the_outbox_is_returned_in_order_and_counted(self):
        host = StrategyHost("sma", [AAPL], outbox_capacity=2)
        actions = [SubmitIntent(_overload_intent(q), T0) for q in (1, 2, 3, 4)]
        shed = host.finish(actions)
        assert list(host.outbox) == actions[:2]
        assert shed == actions[2:]
        assert host.statistics().shed == 2


def _overload_intent(quantity: int) -> OrderIntent:
    return OrderIntent(
        strategy_id="sma",
        instrument="AAPL",
        side=Side.BUY,
        quantity=quantity,
        order_type=OrderType.MARKET,
        limit_price=None,
        time_in_force=TimeInForce.DAY,
    )
