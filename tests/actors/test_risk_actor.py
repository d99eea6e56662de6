"""The risk actor in a tiny system: recorders at the order, strategy and persistence paths."""

from __future__ import annotations

from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from tradewind.actors import (
    Bar,
    Fill,
    FxRate,
    FxRates,
    Instrument,
    InvalidLimits,
    Order,
    OrderCanceled,
    OrderCancelRequested,
    OrderFilled,
    OrderIntent,
    OrderSubmitted,
    OrderType,
    Portfolio,
    RiskLimits,
    Side,
    TimeInForce,
    TradingCalendar,
    TradingState,
)
from tradewind.actors._calendar import TransitionKind
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
    SubmitIntent,
    SwapRiskLimits,
    TradingStateChanged,
)
from tradewind.actors._orders import OrderRejected
from tradewind.actors._risk import DenyReason
from tradewind.actors._risk_actor import (
    Peer,
    RiskActor,
    RiskBook,
    RiskSettings,
    reload_risk_limits,
)
from tradewind.runtime import (
    Actor,
    ActorSystem,
    ChildSpec,
    ConfigError,
    RestartStrategy,
    SupervisorSpec,
    open_actor_system,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from tradewind.runtime._specs import AnySpec

DAY = 86_400_000_000_000
MINUTE = 60_000_000_000
T0 = 1_700_000_000_000_000_000 - (1_700_000_000_000_000_000 % DAY) + 10 * 3600 * 10**9
AAPL = Instrument("AAPL", "USD", Decimal("0.01"))


def limits(**changes: Any) -> RiskLimits:
    fields: dict[str, Any] = {
        "max_position": 100,
        "max_order_notional": 100_000,
        "max_gross_exposure": 1_000_000,
        "max_orders_per_second": 100,
        "daily_loss_limit": 1_000,
    }
    fields.update(changes)
    return RiskLimits(**fields)


def bar(ts: int, close: str) -> Bar:
    price = Decimal(close)
    return Bar("AAPL", "1m", ts, price, price, price, price, Decimal(10))


def intent(
    quantity: int = 10, side: Side = Side.BUY, limit: str | None = None, strategy: str = "sma"
) -> OrderIntent:
    return OrderIntent(
        strategy_id=strategy,
        instrument="AAPL",
        side=side,
        quantity=quantity,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        limit_price=limit,
        time_in_force=TimeInForce.DAY,
    )


def submitted(wanted: OrderIntent, seq: int, ts: int) -> Order:
    client_order_id = f"{wanted.strategy_id}-{seq:08d}"
    return Order.create(client_order_id, wanted, ts).apply(
        OrderSubmitted(client_order_id=client_order_id, ts=ts)
    )


def update(order: Order, ts: int) -> OrderUpdated:
    assert order.last_event is not None
    return OrderUpdated(order=order, event=order.last_event, ts=ts)


def filled(order: Order, price: str, ts: int, n: int = 1) -> Order:
    fill = Fill(
        execution_id=f"{order.client_order_id}-F{n}",
        client_order_id=order.client_order_id,
        instrument=order.intent.instrument,
        side=order.intent.side,
        quantity=order.remaining_quantity,
        price=Decimal(price),
        fee=Decimal(0),
        fee_currency="USD",
        ts=ts,
    )
    return order.apply(OrderFilled(client_order_id=order.client_order_id, ts=ts, fill=fill))


class Recorder(Actor):
    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    async def handle(self, message: object) -> None:
        self.seen.append(message)


@attrs.define
class Tiny:
    system: ActorSystem
    book: RiskBook
    orders: list[object]
    strategy: list[object]
    persistence: list[object]

    async def send(self, *messages: object) -> None:
        risk = self.system.ref("trading/risk")
        for message in messages:
            await risk.send(message)
        await self.system.quiesce()

    def of(self, seen: list[object], kind: type) -> list[Any]:
        return [m for m in seen if isinstance(m, kind)]


@asynccontextmanager
async def tiny(
    book: RiskBook | None = None, actor: Callable[[RiskBook], Actor] = RiskActor
) -> AsyncIterator[Tiny]:
    book = book if book is not None else RiskBook(limits(), [AAPL])
    orders: list[object] = []
    strategy: list[object] = []
    persistence: list[object] = []
    trading: list[AnySpec] = [
        ChildSpec("orders", lambda: Recorder(orders)),
        ChildSpec("risk", lambda: actor(book)),
        ChildSpec("strategy", lambda: Recorder(strategy)),
    ]
    root: list[AnySpec] = [
        ChildSpec("persistence", lambda: Recorder(persistence)),
        SupervisorSpec("trading", trading, strategy=RestartStrategy.REST_FOR_ONE),
    ]
    spec = SupervisorSpec("root", root)
    async with open_actor_system(spec, asyncio_loop=False) as system:
        yield Tiny(system, book, orders, strategy, persistence)


class TestDenials:
    async def test_denied_intent_never_reaches_orders_and_is_persisted(
        self, autojump_clock: object
    ) -> None:
        async with tiny() as t:
            await t.send(bar(T0, "100"), SubmitIntent(intent(quantity=500), T0))
            assert t.of(t.orders, PlaceOrder) == []
            (denied,) = t.of(t.strategy, IntentDenied)
            assert denied.reason is DenyReason.MAX_POSITION
            assert denied.intent == intent(quantity=500)
            (persisted,) = t.of(t.persistence, Persist)
            assert persisted.records == (denied,)
            assert t.book.statistics().denied == {DenyReason.MAX_POSITION: 1}

    async def test_accepted_intent_is_placed(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await t.send(bar(T0, "100"), SubmitIntent(intent(quantity=50), T0))
            assert t.of(t.orders, PlaceOrder) == [PlaceOrder(intent(quantity=50), T0)]
            assert t.of(t.strategy, IntentDenied) == []

    async def test_accepted_intent_counts_as_open_for_the_next_one(
        self, autojump_clock: object
    ) -> None:
        async with tiny() as t:
            await t.send(
                bar(T0, "100"),
                SubmitIntent(intent(quantity=60), T0),
                SubmitIntent(intent(quantity=60), T0),
            )
            assert len(t.of(t.orders, PlaceOrder)) == 1
            (denied,) = t.of(t.strategy, IntentDenied)
            assert denied.reason is DenyReason.MAX_POSITION

    async def test_intents_accepted_together_reach_orders_as_one_group(
        self, autojump_clock: object
    ) -> None:
        # Decided in one batch (one strategy callback, or one cascade): the order actor
        # gets them as one `OrderActions` and journals them in one write -- a cancel
        # between two places included.
        async with tiny() as t:
            first, second = intent(quantity=20), intent(quantity=10, side=Side.SELL)
            cancel = CancelOrder("s1-00000007", T0)
            await t.send(bar(T0, "100"), SubmitIntent(first, T0), cancel, SubmitIntent(second, T0))
            assert t.of(t.orders, PlaceOrder) == []
            assert t.of(t.orders, CancelOrder) == []
            (group,) = t.of(t.orders, OrderActions)
            assert group.actions == (PlaceOrder(first, T0), cancel, PlaceOrder(second, T0))
            # decided apart, they go apart
            await t.send(SubmitIntent(intent(quantity=5), T0 + MINUTE))
            assert t.of(t.orders, PlaceOrder) == [PlaceOrder(intent(quantity=5), T0 + MINUTE)]

    async def test_numbered_order_replaces_its_placeholder(self, autojump_clock: object) -> None:
        async with tiny() as t:
            wanted = intent(quantity=60)
            await t.send(bar(T0, "100"), SubmitIntent(wanted, T0))
            order = submitted(wanted, 1, T0)
            await t.send(update(order, T0))
            assert t.book.statistics().open_orders == 1
            canceled = order.apply(OrderRejected(client_order_id=order.client_order_id, ts=T0))
            await t.send(update(canceled, T0))
            assert t.book.statistics().open_orders == 0
            await t.send(SubmitIntent(intent(quantity=90), T0 + MINUTE))
            assert len(t.of(t.orders, PlaceOrder)) == 2

    async def test_broker_down_denies(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await t.send(
                bar(T0, "100"),
                BrokerConnectionChanged(connected=False, ts=T0),
                SubmitIntent(intent(), T0),
            )
            (denied,) = t.of(t.strategy, IntentDenied)
            assert denied.reason is DenyReason.BROKER_DISCONNECTED


class TestBrokerConnection:
    async def test_a_lost_connection_halts_trading_and_says_why(
        self, autojump_clock: object
    ) -> None:
        async with tiny() as t:
            await t.send(BrokerConnectionChanged(connected=False, ts=T0, reason="socket closed"))
            (changed,) = t.of(t.strategy, TradingStateChanged)
            assert changed.state is TradingState.HALTED
            assert changed.reason == "the broker connection is down: socket closed"
            assert t.of(t.persistence, Persist)[0].records == (changed,)

    async def test_the_broker_down_state_is_configurable(self, autojump_clock: object) -> None:
        settings = RiskSettings(broker_down_state=TradingState.REDUCING)
        async with tiny(RiskBook(limits(), [AAPL], settings)) as t:
            await t.send(BrokerConnectionChanged(connected=False, ts=T0))
            (changed,) = t.of(t.strategy, TradingStateChanged)
            assert changed.state is TradingState.REDUCING
            assert changed.reason == "the broker connection is down"

    def test_the_broker_down_state_is_never_active(self) -> None:
        with pytest.raises(InvalidLimits, match="broker_down_state"):
            RiskSettings(broker_down_state=TradingState.ACTIVE)

    async def test_every_intent_while_down_is_denied_as_disconnected_even_when_halted(
        self, autojump_clock: object
    ) -> None:
        async with tiny() as t:
            await t.send(
                bar(T0, "100"),
                BrokerConnectionChanged(connected=False, ts=T0),
                SubmitIntent(intent(side=Side.SELL), T0),
            )
            (denied,) = t.of(t.strategy, IntentDenied)
            assert denied.reason is DenyReason.BROKER_DISCONNECTED
            assert denied.detail == "the broker connection is down"
            assert t.of(t.orders, PlaceOrder) == []

    async def test_trading_resumes_when_the_broker_is_back(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await t.send(
                bar(T0, "100"),
                BrokerConnectionChanged(connected=False, ts=T0),
                BrokerConnectionChanged(connected=True, ts=T0 + MINUTE, reason="reconciled"),
                SubmitIntent(intent(), T0 + MINUTE),
            )
            states = [m.state for m in t.of(t.strategy, TradingStateChanged)]
            assert states == [TradingState.HALTED, TradingState.ACTIVE]
            assert t.of(t.orders, PlaceOrder) == [PlaceOrder(intent(), T0 + MINUTE)]

    async def test_a_kill_switch_tripped_by_reconciled_fills_stays_halted(
        self, autojump_clock: object
    ) -> None:
        async with tiny() as t:
            wanted = intent(quantity=100)
            await t.send(bar(T0, "100"), SubmitIntent(wanted, T0))
            order = submitted(wanted, 1, T0)
            await t.send(update(order, T0), BrokerConnectionChanged(connected=False, ts=T0))
            await t.send(bar(T0 + 2 * MINUTE, "100"))  # bars go on while the broker is down
            # the reconciliation's fill (bought at 120 a bar before the market's 100: a
            # loss beyond the limit) arrives before "connected"
            await t.send(
                update(filled(order, "120", T0 + MINUTE), T0 + MINUTE),
                BrokerConnectionChanged(connected=True, ts=T0 + MINUTE),
            )
            assert t.book.state is TradingState.HALTED
            assert t.book.reason.startswith("kill switch")
            # the state stayed HALTED, but its reason is now the kill switch: the strategy
            # and the store hear of it (an operator alerts on it)
            changes = t.of(t.strategy, TradingStateChanged)
            assert [c.state for c in changes] == [TradingState.HALTED, TradingState.HALTED]
            assert changes[-1].reason.startswith("kill switch")
            stored = [
                r
                for p in t.of(t.persistence, Persist)
                for r in p.records
                if isinstance(r, TradingStateChanged)
            ]
            assert stored == changes

    async def test_a_stale_feed_that_halts_outranks_a_reducing_broker_state(
        self, autojump_clock: object
    ) -> None:
        settings = RiskSettings(
            broker_down_state=TradingState.REDUCING, stale_feed_state=TradingState.HALTED
        )
        async with tiny(RiskBook(limits(), [AAPL], settings)) as t:
            await t.send(
                bar(T0, "100"),
                BrokerConnectionChanged(connected=False, ts=T0),
                FeedStale(ts=T0, silent_ns=MINUTE),
                SubmitIntent(intent(), T0),
            )
            assert t.book.state is TradingState.HALTED
            assert t.book.reason == "the market data feed is stale"
            (denied,) = t.of(t.strategy, IntentDenied)
            assert denied.reason is DenyReason.TRADING_HALTED


def partly_filled(order: Order, quantity: int, price: str, ts: int) -> Order:
    fill = Fill(
        execution_id=f"{order.client_order_id}-F1",
        client_order_id=order.client_order_id,
        instrument=order.intent.instrument,
        side=order.intent.side,
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal(0),
        fee_currency="USD",
        ts=ts,
    )
    return order.apply(OrderFilled(client_order_id=order.client_order_id, ts=ts, fill=fill))


def placed(t: Tiny) -> list[OrderIntent]:
    """The kill switch's flattening intents risk placed, in order, alone or in a group."""
    intents = []
    for message in t.orders:
        actions = message.actions if isinstance(message, OrderActions) else (message,)
        intents += [a.intent for a in actions if isinstance(a, PlaceOrder)]
    return [i for i in intents if i.tag == "kill-switch"]


class TestKillSwitch:
    async def _lose(self, t: Tiny, close: str) -> None:
        wanted = intent(quantity=100)
        await t.send(bar(T0, "100"), SubmitIntent(wanted, T0))
        order = filled(submitted(wanted, 1, T0), "100", T0 + MINUTE)
        resting = submitted(intent(quantity=1, side=Side.SELL, limit="120"), 2, T0)
        await t.send(update(resting, T0), update(order, T0 + MINUTE))
        await t.send(bar(T0 + MINUTE, close))

    async def test_losing_mark_halts_and_cancels_all(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await self._lose(t, "89")
            assert t.book.state is TradingState.HALTED
            (cancel_all,) = t.of(t.orders, CancelAllOrders)
            assert "kill switch" in cancel_all.reason
            (change,) = t.of(t.strategy, TradingStateChanged)
            assert change.state is TradingState.HALTED
            assert Persist((change,)) in t.persistence
            assert t.book.statistics().day_pnl == Decimal(-1100)
            assert t.strategy[-1] == bar(T0 + MINUTE, "89")

    async def test_mark_within_the_limit_does_not_halt(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await self._lose(t, "91")
            assert t.book.state is TradingState.ACTIVE
            assert t.of(t.orders, CancelAllOrders) == []

    async def test_further_intents_are_denied_trading_halted(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await self._lose(t, "89")
            await t.send(SubmitIntent(intent(quantity=1, side=Side.SELL), T0 + 2 * MINUTE))
            (denied,) = t.of(t.strategy, IntentDenied)
            assert denied.reason is DenyReason.TRADING_HALTED
            assert len(t.of(t.orders, PlaceOrder)) == 1

    async def test_cancels_still_pass_when_halted(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await self._lose(t, "89")
            await t.send(CancelOrder("sma-00000002", T0 + 2 * MINUTE))
            assert t.of(t.orders, CancelOrder) == [CancelOrder("sma-00000002", T0 + 2 * MINUTE)]

    async def test_flatten_on_kill_places_closing_orders(self, autojump_clock: object) -> None:
        # The cancels and the closing orders are one decision: they reach the order actor
        # as one group, the cancel-all first, and are journaled in one write.
        book = RiskBook(limits(), [AAPL], RiskSettings(flatten_on_kill=True))
        async with tiny(book) as t:
            await self._lose(t, "89")
            (group,) = t.of(t.orders, OrderActions)
            cancel_all, flatten = group.actions
            assert isinstance(cancel_all, CancelAllOrders)
            assert flatten.intent.side is Side.SELL
            assert flatten.intent.quantity == 100
            assert flatten.intent.order_type is OrderType.MARKET
            assert flatten.intent.strategy_id == "sma"
            assert t.of(t.orders, CancelAllOrders) == []

    async def test_flatten_on_kill_keeps_closing_what_is_left(self, autojump_clock: object) -> None:
        # The flattening order filled 60 of 100 (a bar's volume capped it) and its IOC
        # rest was canceled: the next bar closes the 40 left, once nothing works on it.
        book = RiskBook(limits(), [AAPL], RiskSettings(flatten_on_kill=True))
        async with tiny(book) as t:
            await self._lose(t, "89")
            (group,) = t.of(t.orders, OrderActions)
            flatten = group.actions[1].intent
            resting = submitted(intent(quantity=1, side=Side.SELL, limit="120"), 2, T0)
            asked = resting.apply(OrderCancelRequested(client_order_id="sma-00000002", ts=T0))
            closer = submitted(flatten, 3, T0 + MINUTE)
            await t.send(update(closer, T0 + MINUTE), bar(T0 + 2 * MINUTE, "88"))
            assert placed(t) == [flatten]  # two orders still work on AAPL: wait
            canceled = asked.apply(OrderCanceled(client_order_id="sma-00000002", ts=T0))
            part = partly_filled(closer, 60, "88", T0 + 3 * MINUTE)
            rest = part.apply(OrderCanceled(client_order_id="sma-00000003", ts=T0 + 3 * MINUTE))
            await t.send(
                update(asked, T0),
                update(canceled, T0),
                update(part, T0 + 3 * MINUTE),
                update(rest, T0 + 3 * MINUTE),
            )
            assert placed(t) == [flatten]  # a fill or a cancel alone decides nothing
            await t.send(bar(T0 + 3 * MINUTE, "88"))
            assert placed(t)[1:] == [attrs.evolve(flatten, quantity=Decimal(40))]
            await t.send(bar(T0 + 4 * MINUTE, "88"))  # its order works: nothing more
            assert len(placed(t)) == 2

    async def test_without_flatten_a_halted_position_is_left_alone(
        self, autojump_clock: object
    ) -> None:
        async with tiny() as t:
            await self._lose(t, "89")
            resting = submitted(intent(quantity=1, side=Side.SELL, limit="120"), 2, T0)
            asked = resting.apply(OrderCancelRequested(client_order_id="sma-00000002", ts=T0))
            canceled = asked.apply(OrderCanceled(client_order_id="sma-00000002", ts=T0))
            await t.send(update(asked, T0), update(canceled, T0), bar(T0 + 2 * MINUTE, "88"))
            assert placed(t) == []
            assert t.book.portfolio.position("AAPL").quantity == 100

    async def test_trips_once(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await self._lose(t, "89")
            await t.send(bar(T0 + 2 * MINUTE, "80"))
            assert len(t.of(t.orders, CancelAllOrders)) == 1
            assert t.book.statistics().kill_switch_trips == 1

    async def test_yesterdays_loss_does_not_count_today(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await self._lose(t, "92")  # -800 on day one
            await t.send(bar(T0 + DAY, "84"))  # -800 more on day two: -1600 in all
            assert t.book.state is TradingState.ACTIVE
            assert t.book.statistics().day_pnl == Decimal(-800)

    async def test_calendar_day_is_the_local_date(self, autojump_clock: object) -> None:
        calendar = TradingCalendar.always_open()
        book = RiskBook(limits(), [AAPL], calendar=calendar)
        async with tiny(book) as t:
            await self._lose(t, "92")
            assert book.day is not None
            assert book.day.toordinal() == T0 // DAY + 719_163

    async def test_a_late_message_of_yesterday_does_not_reset_todays_loss(
        self, autojump_clock: object
    ) -> None:
        # Long 100 from 100. Day two marks 91 (-900), then an intent decided on day one's
        # last bar arrives (paper trading: no barrier), then day two marks 82: -1,800 on
        # the day, past the 1,000 limit. Rolling back and forth reset the baseline twice.
        async with tiny() as t:
            await self._lose(t, "100")
            await t.send(bar(T0 + DAY, "91"))
            await t.send(SubmitIntent(intent(quantity=1, side=Side.SELL), T0 + 2 * MINUTE))
            assert t.book.statistics().day_pnl == Decimal(-900)
            await t.send(bar(T0 + DAY + MINUTE, "82"))
            assert t.book.state is TradingState.HALTED
            assert t.book.statistics().day_pnl == Decimal(-1800)

    async def test_a_late_message_of_yesterday_does_not_lift_a_tripped_switch(
        self, autojump_clock: object
    ) -> None:
        book = RiskBook(limits(), [AAPL], RiskSettings(resume_next_day=True))
        async with tiny(book) as t:
            await self._lose(t, "100")
            await t.send(bar(T0 + DAY, "89"))  # trips on day two
            await t.send(bar(T0 + 2 * MINUTE, "89"))  # a late message of day one
            await t.send(bar(T0 + DAY + MINUTE, "89"))
            assert book.state is TradingState.HALTED
            assert book.statistics().kill_switch_trips == 1

    async def test_resume_next_day_lifts_the_halt(self, autojump_clock: object) -> None:
        book = RiskBook(limits(), [AAPL], RiskSettings(resume_next_day=True))
        async with tiny(book) as t:
            await self._lose(t, "89")
            await t.send(bar(T0 + DAY, "89"))
            assert book.state is TradingState.ACTIVE
            states = [m.state for m in t.of(t.strategy, TradingStateChanged)]
            assert states == [TradingState.HALTED, TradingState.ACTIVE]


class TestFillMarks:
    """A fill is a trade: it values its instrument until a later price comes."""

    def test_a_fill_through_a_gap_is_not_valued_at_the_previous_close(self) -> None:
        # The previous bar closed at 100; the next one opens at 110 and a
        # market buy of 100 fills there. Bought at the market's price, the position is
        # worth what it cost (PnL 0), not 100 x (100 - 110) = -1000, which would trip a
        # loss limit of 500 that the market never came near (the bar closes at 111).
        book = RiskBook(limits(daily_loss_limit=500), [AAPL])
        book.on_bar(bar(T0, "100"))
        order = filled(submitted(intent(quantity=100), 1, T0), "110", T0 + MINUTE)
        book.on_order_updated(update(order, T0 + MINUTE))
        assert book.day_pnl() == Decimal(0)
        assert book.state is TradingState.ACTIVE
        book.on_bar(bar(T0 + MINUTE, "111"))
        assert book.day_pnl() == Decimal(100)
        assert book.state is TradingState.ACTIVE

    def test_a_fill_older_than_the_mark_does_not_move_it(self) -> None:
        # a fill learnt late (a reconciliation) is older than the bar that marked
        book = RiskBook(limits(), [AAPL])
        book.on_bar(bar(T0 + 2 * MINUTE, "105"))
        order = filled(submitted(intent(quantity=10), 1, T0), "110", T0 + MINUTE)
        book.on_order_updated(update(order, T0 + MINUTE))
        assert book.portfolio.marks["AAPL"] == Decimal(105)
        assert book.day_pnl() == Decimal(-50)


def aapl_fill(n: int, side: Side, price: str, ts: int) -> Fill:
    return Fill(f"x-{n:08d}-F1", f"x-{n:08d}", "AAPL", side, 100, price, 0, "USD", ts)


class TestResumeDay:
    """A cold start continues the trading day the crashed run was in."""

    def resumed(self, fills: list[Fill], close: str, *, marked: str) -> RiskBook:
        # the portfolio and the last price as a cold start restores them (every stored
        # fill; the newest stored close), then the day's baseline from before the day
        portfolio = Portfolio([AAPL])
        for fill in fills:
            portfolio.apply_fill(fill)
        portfolio.mark("AAPL", marked)
        book = RiskBook(limits(), [AAPL], portfolio=portfolio)
        book.last_prices["AAPL"] = Decimal(marked)
        today = [bar(T0 + DAY + 5 * MINUTE, marked)]
        book.resume(T0 + DAY + 5 * MINUTE, fills, today, {"AAPL": Decimal(close)})
        return book

    def test_the_baseline_is_the_pnl_before_the_day_began(self) -> None:
        # bought 100 at 100 yesterday, 95 at yesterday's close; today bought 100 more at
        # 95 and the market is at 94: today's PnL is -100 -100 = -200, not the -700
        # since the first fill nor the 0 a fresh baseline would say
        fills = [
            aapl_fill(1, Side.BUY, "100", T0),
            aapl_fill(2, Side.BUY, "95", T0 + DAY + MINUTE),
        ]
        book = self.resumed(fills, "95", marked="94")
        assert book.day_start == {"USD": Decimal(-500)}
        assert book.day_pnl() == Decimal(-200)
        assert book.state is TradingState.ACTIVE
        # the next event of the same day keeps that baseline
        book.on_bar(bar(T0 + DAY + 6 * MINUTE, "93"))
        assert book.day_pnl() == Decimal(-400)

    def test_a_day_that_passed_the_limit_and_came_back_resumes_halted(self) -> None:
        # Bought at 100 this morning; the market fell to 88 (-1200, past the 1000 limit:
        # the kill switch latched) and is back at 99 when the process restarts.
        fill = aapl_fill(1, Side.BUY, "100", T0 + DAY + MINUTE)
        portfolio = Portfolio([AAPL])
        portfolio.apply_fill(fill)
        portfolio.mark("AAPL", "99")
        book = RiskBook(limits(), [AAPL], portfolio=portfolio)
        path = [bar(T0 + DAY + n * MINUTE, close) for n, close in ((2, "95"), (3, "88"), (4, "99"))]
        book.resume(T0 + DAY + 4 * MINUTE, [fill], path, {"AAPL": Decimal(100)})
        assert book.day_pnl() == Decimal(-100)  # within the limit now
        assert book.state is TradingState.HALTED
        assert "reached -1200" in book.kill_reason
        # the same path without the dip does not halt
        calm = RiskBook(limits(), [AAPL], portfolio=portfolio)
        calm.resume(T0 + DAY + 4 * MINUTE, [fill], [path[0], path[2]], {"AAPL": Decimal(100)})
        assert calm.state is TradingState.ACTIVE

    def test_orders_within_the_rate_window_count_again(self) -> None:
        now = T0 + DAY
        orders = [
            submitted(intent(quantity=1, strategy="old" if ts < now else "new"), n, ts)
            for n, ts in enumerate((now - 2 * 10**9, now - 10**9, now - 1, now), start=1)
        ]
        book = RiskBook(limits(), [AAPL])
        book.resume(now, [], [], {}, reversed(orders))
        assert book.rate.recent(now) == (now - 1, now)  # the window is (now - 1 s, now]
        assert book.last_strategy_id == "new"  # a kill switch flattens for the newest

    def test_a_day_already_past_the_loss_limit_resumes_halted(self) -> None:
        fills = [aapl_fill(1, Side.BUY, "100", T0 + DAY + MINUTE)]
        book = self.resumed(fills, "100", marked="88")  # -1200 today, the limit is 1000
        assert book.state is TradingState.HALTED
        assert book.killed
        assert "restored at a cold start" in book.kill_reason
        effects = book.on_intent(SubmitIntent(intent(quantity=1), T0 + DAY + 6 * MINUTE))
        (denied,) = {e.message for e in effects if isinstance(e.message, IntentDenied)}
        assert denied.reason is DenyReason.TRADING_HALTED
        # the next day starts afresh, as it would have without the crash
        book.on_bar(bar(T0 + 2 * DAY, "88"))
        assert book.day_pnl() == Decimal(0)


EURX = Instrument("EURX", "EUR", Decimal("0.01"))


def eur_fill(price: str = "100") -> Fill:
    return Fill("x-00000001-F1", "x-00000001", "EURX", Side.BUY, 10, price, 0, "EUR", T0)


class TestDayPnl:
    def test_other_currency_is_converted_with_the_fx_rates(self) -> None:
        fx = FxRates([FxRate("EUR", "USD", "1.5")])
        book = RiskBook(limits(), [AAPL, EURX], fx=fx)
        book.on_bar(bar(T0, "100"))
        book.portfolio.apply_fill(eur_fill())
        book.portfolio.mark("EURX", "90")
        assert book.day_pnl() == Decimal(-150)

    def test_no_rate_means_no_figure(self) -> None:
        for fx in (None, FxRates([FxRate("GBP", "USD", "1.2")])):
            book = RiskBook(limits(), [AAPL, EURX], fx=fx)
            book.portfolio.apply_fill(eur_fill())
            book.portfolio.mark("EURX", "90")
            assert book.day_pnl() is None
            assert book.on_bar(Bar("EURX", "1m", T0, 80, 80, 80, 80, 1))[-1].to is Peer.STRATEGY
            assert book.state is TradingState.ACTIVE

    def test_an_unmarked_position_means_no_figure(self) -> None:
        portfolio = Portfolio([AAPL, EURX])
        portfolio.apply_fill(eur_fill())
        book = RiskBook(limits(), [AAPL, EURX], portfolio=portfolio)
        assert book.day_pnl() is None
        assert book.statistics().day_pnl is None

    def test_statistics_total_the_denials(self) -> None:
        book = RiskBook(limits(), [AAPL])
        book.on_intent(SubmitIntent(intent(), T0))  # no price yet
        book.on_intent(SubmitIntent(intent(quantity=500, limit="1"), T0))
        stats = book.statistics()
        assert stats.denied == {DenyReason.NO_PRICE: 1, DenyReason.MAX_POSITION: 1}
        assert stats.denied_total == 2

    def test_settings_refuse_a_state_that_is_not_one(self) -> None:
        with pytest.raises(InvalidLimits, match="stale_feed_state"):
            RiskSettings(stale_feed_state="REDUCING")  # type: ignore[arg-type]


class TestLimitsSwap:
    async def test_swap_replies_with_the_limits_in_force(self, autojump_clock: object) -> None:
        async with tiny() as t:
            new = limits(max_position=5)
            reply = await t.system.ref("trading/risk").ask(SwapRiskLimits(new))
            assert reply == new
            await t.send(bar(T0, "100"), SubmitIntent(intent(quantity=10), T0))
            (denied,) = t.of(t.strategy, IntentDenied)
            assert denied.reason is DenyReason.MAX_POSITION
            assert t.book.statistics().limit_swaps == 1

    async def test_swap_of_something_else_keeps_the_old_limits(
        self, autojump_clock: object
    ) -> None:
        async with tiny() as t:
            reply = await t.system.ref("trading/risk").ask(SwapRiskLimits({"max_position": 1}))  # type: ignore[arg-type]
            assert reply == limits()

    async def test_a_swap_to_another_currency_keeps_the_old_limits(
        self, autojump_clock: object
    ) -> None:
        async with tiny() as t:
            await TestKillSwitch()._lose(t, "95")
            reply = await t.system.ref("trading/risk").ask(SwapRiskLimits(limits(currency="EUR")))
            assert reply == limits()
            assert t.book.statistics().limit_swaps == 0
            # the kill switch still has a figure to trip on
            await t.send(bar(T0 + 2 * MINUTE, "89"))
            assert t.book.state is TradingState.HALTED

    async def test_tighter_loss_limit_trips_at_once(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await TestKillSwitch()._lose(t, "95")
            assert t.book.state is TradingState.ACTIVE
            await t.system.ref("trading/risk").ask(SwapRiskLimits(limits(daily_loss_limit=400)))
            await t.system.quiesce()
            assert t.book.statistics().state is TradingState.HALTED
            assert len(t.of(t.orders, CancelAllOrders)) == 1


class TestFills:
    async def test_redelivered_fill_is_counted_once(self, autojump_clock: object) -> None:
        async with tiny() as t:
            wanted = intent(quantity=50)
            await t.send(bar(T0, "100"), SubmitIntent(wanted, T0))
            order = filled(submitted(wanted, 1, T0), "100", T0)
            await t.send(update(order, T0), update(order, T0))
            assert t.book.portfolio.position("AAPL").quantity == 50
            assert t.book.statistics().fills == 1
            assert len(t.of(t.strategy, OrderUpdated)) == 2

    async def test_fill_before_any_bar_is_marked_at_its_price(self, autojump_clock: object) -> None:
        async with tiny() as t:
            order = filled(submitted(intent(quantity=5), 1, T0), "100", T0)
            await t.send(update(order, T0))
            assert t.book.statistics().day_pnl == Decimal(0)


class TestFeed:
    async def test_stale_feed_moves_to_reducing(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await t.send(bar(T0, "100"), FeedStale(ts=T0 + MINUTE, silent_ns=MINUTE))
            assert t.book.state is TradingState.REDUCING
            await t.send(SubmitIntent(intent(quantity=1), T0 + MINUTE))
            (denied,) = t.of(t.strategy, IntentDenied)
            assert denied.reason is DenyReason.REDUCING_ONLY

    async def test_resumed_feed_moves_back_to_active(self, autojump_clock: object) -> None:
        async with tiny() as t:
            await t.send(
                bar(T0, "100"),
                FeedStale(ts=T0 + MINUTE, silent_ns=MINUTE),
                FeedResumed(ts=T0 + 2 * MINUTE),
            )
            assert t.book.state is TradingState.ACTIVE
            states = [m.state for m in t.of(t.strategy, TradingStateChanged)]
            assert states == [TradingState.REDUCING, TradingState.ACTIVE]

    async def test_stale_feed_can_halt(self, autojump_clock: object) -> None:
        book = RiskBook(limits(), [AAPL], RiskSettings(stale_feed_state=TradingState.HALTED))
        async with tiny(book) as t:
            await t.send(FeedStale(ts=T0, silent_ns=MINUTE))
            assert book.state is TradingState.HALTED

    async def test_stale_feed_can_be_ignored(self, autojump_clock: object) -> None:
        book = RiskBook(limits(), [AAPL], RiskSettings(stale_feed_state=TradingState.ACTIVE))
        async with tiny(book) as t:
            await t.send(FeedStale(ts=T0, silent_ns=MINUTE))
            assert book.state is TradingState.ACTIVE
            assert t.of(t.strategy, TradingStateChanged) == []

    async def test_session_and_end_of_data_are_forwarded(self, autojump_clock: object) -> None:
        async with tiny() as t:
            session = SessionChanged(TransitionKind.OPEN, T0)
            await t.send(session, EndOfData(T0), object())
            assert t.strategy == [session, EndOfData(T0)]


class FlakyRisk(RiskActor):
    """Crashes once, right after the decision was committed, before any send."""

    crashed = False

    async def _deliver(self) -> None:
        if self.book.outbox and not FlakyRisk.crashed:
            FlakyRisk.crashed = True
            raise RuntimeError("boom")
        await super()._deliver()


class TestRedelivery:
    async def test_intent_redelivered_after_a_crash_is_placed_once(
        self, autojump_clock: object
    ) -> None:
        FlakyRisk.crashed = False
        async with tiny(actor=FlakyRisk) as t:
            await t.send(bar(T0, "100"))
            await t.send(SubmitIntent(intent(quantity=10), T0))
            assert FlakyRisk.crashed
            assert t.of(t.orders, PlaceOrder) == [PlaceOrder(intent(quantity=10), T0)]
            assert t.system.statistics().actors["trading/risk"].restarts == 1
            assert t.book.statistics().accepted == 1

    def test_seeded_orders_count_as_open(self) -> None:
        book = RiskBook(limits(), [AAPL])
        working = submitted(intent(quantity=60), 1, T0)
        done = filled(submitted(intent(quantity=5), 2, T0), "100", T0)
        book.seed_orders([working, done])
        book.on_bar(bar(T0, "100"))
        (effect, persisted) = book.on_intent(SubmitIntent(intent(quantity=60), T0))
        assert isinstance(effect.message, IntentDenied)
        assert effect.message.reason is DenyReason.MAX_POSITION
        assert isinstance(persisted.message, Persist)

    def test_effects_name_their_peer(self) -> None:
        book = RiskBook(limits(), [AAPL])
        effects = book.on_bar(bar(T0, "100"))
        assert [e.to for e in effects] == [Peer.STRATEGY]


class TestReloadRiskLimits:
    def write(self, tmp_path: Path, text: str) -> Path:
        path = tmp_path / "tradewind.toml"
        path.write_text(text)
        return path

    def test_reads_the_risk_section_exactly(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path,
            "[risk]\nmax_position = 5\nmax_order_notional = 1000.10\n"
            "max_gross_exposure = '5000'\nmax_orders_per_second = 3\ndaily_loss_limit = 250.5\n",
        )
        got = reload_risk_limits(path)
        assert got == limits(
            max_position=5,
            max_order_notional="1000.10",
            max_gross_exposure=5000,
            max_orders_per_second=3,
            daily_loss_limit="250.5",
        )
        assert got.max_order_notional.as_tuple().exponent == -2

    def test_invalid_limits_list_every_problem(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path,
            "[risk]\nmax_position = -5\nmax_order_notional = 0\nmax_gross_exposure = 1\n"
            "max_orders_per_second = 3\ndaily_loss_limit = 1\n",
        )
        with pytest.raises(ConfigError) as caught:
            reload_risk_limits(path)
        assert caught.value.problems == (
            "risk.max_position: must be >= 0, got -5",
            "risk.max_order_notional: must be > 0, got 0",
        )

    def test_behaviour_flags_in_the_section_are_not_limits(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path,
            "[risk]\nmax_position = 5\nmax_order_notional = 10\nmax_gross_exposure = 10\n"
            "max_orders_per_second = 3\ndaily_loss_limit = 1\nstale_feed_state = 'HALTED'\n"
            "resume_next_day = true\n",
        )
        assert reload_risk_limits(path).max_position == 5

    def test_unknown_setting_is_a_problem(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, "[risk]\nmax_positon = 5\n")
        with pytest.raises(ConfigError, match=r"risk\.max_positon: unknown setting"):
            reload_risk_limits(path)

    def test_missing_field_is_a_problem(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, "[risk]\nmax_position = 5\n")
        with pytest.raises(ConfigError, match="max_order_notional"):
            reload_risk_limits(path)

    def test_missing_section(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, "[feed]\nx = 1\n")
        with pytest.raises(ConfigError, match="risk: required, missing"):
            reload_risk_limits(path)

    def test_section_that_is_not_a_table(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, "risk = 5\n")
        with pytest.raises(ConfigError, match="must be a table"):
            reload_risk_limits(path)

    def test_nested_section(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path,
            "[trading.risk]\nmax_position = 5\nmax_order_notional = 10\n"
            "max_gross_exposure = 10\nmax_orders_per_second = 3\ndaily_loss_limit = 1\n",
        )
        assert reload_risk_limits(path, section="trading.risk").max_position == 5

    def test_broken_toml(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, "[risk\n")
        with pytest.raises(ConfigError, match="not valid TOML"):
            reload_risk_limits(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot be read"):
            reload_risk_limits(tmp_path / "absent.toml")


class TestOverload:
    async def test_the_kill_switch_is_never_shed_by_a_full_outbox(
        self, autojump_clock: object
    ) -> None:
        # No room at all toward the order actor: the strategy's cancels are shed, the
        # kill switch's cancel-all and closing orders still go, and so does a later
        # order that closes what the first left.
        book = RiskBook(limits(), [AAPL], RiskSettings(flatten_on_kill=True))
        book.orders_outbox_capacity = 0
        async with tiny(book) as t:
            await TestKillSwitch()._lose(t, "89")
            await t.send(CancelOrder("sma-00000002", T0 + MINUTE))
            assert book.state is TradingState.HALTED
            (group,) = t.of(t.orders, OrderActions)
            cancel_all, flatten = group.actions
            assert isinstance(cancel_all, CancelAllOrders)
            assert flatten.intent.quantity == 100
            assert book.statistics().shed_cancels == 1  # the strategy's own cancel
            closer = filled(submitted(flatten.intent, 3, T0 + MINUTE), "88", T0 + 2 * MINUTE)
            reopened = filled(submitted(intent(quantity=30), 4, T0), "88", T0 + 2 * MINUTE)
            resting = submitted(intent(quantity=1, side=Side.SELL, limit="120"), 2, T0)
            asked = resting.apply(OrderCancelRequested(client_order_id="sma-00000002", ts=T0))
            canceled = asked.apply(OrderCanceled(client_order_id="sma-00000002", ts=T0))
            await t.send(
                update(closer, T0 + 2 * MINUTE),
                update(reopened, T0 + 2 * MINUTE),  # a fill that beat the cancel-all
                update(asked, T0),
                update(canceled, T0),
                bar(T0 + 2 * MINUTE, "88"),
            )
            assert placed(t)[-1].quantity == 30

    def test_an_intent_refused_for_a_full_outbox_is_denied_overloaded_and_persisted(self):
        """Shedding never drops an intent silently: the strategy hears why, it is stored."""
        book = RiskBook(limits(), [AAPL])
        wanted = intent()
        effects = book.deny_backlog(SubmitIntent(wanted, T0))
        denials = [(e.to, e.message) for e in effects if isinstance(e.message, IntentDenied)]
        assert [to for to, _ in denials] == [Peer.STRATEGY]
        assert denials[0][1].reason is DenyReason.OVERLOADED
        assert denials[0][1].intent == wanted
        persisted = [e.message for e in effects if e.to is Peer.PERSISTENCE]
        assert all(isinstance(p, Persist) for p in persisted)
        records = [r for p in persisted if isinstance(p, Persist) for r in p.records]
        assert [r.reason for r in records if isinstance(r, IntentDenied)] == [DenyReason.OVERLOADED]
        stats = book.statistics()
        assert stats.intents == 1
        assert stats.denied[DenyReason.OVERLOADED] == 1
