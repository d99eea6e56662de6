"""The order actor in a tiny actor system: journal before submit, redelivery, cancels,
broker rejects and disconnects; and its state keeper, the order book."""

from __future__ import annotations

from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from structlog.testing import capture_logs
from tradewind.actors import (
    Bar,
    BookChange,
    BrokerDisconnected,
    Fill,
    Instrument,
    Order,
    OrderAccepted,
    OrderActor,
    OrderBook,
    OrderFilled,
    OrderIntent,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PaperBroker,
    PaperConfig,
    PaperFaults,
    Side,
    TimeInForce,
)
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
)
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
    from collections.abc import AsyncIterator, Sequence

    from tradewind.actors._broker import BrokerEvent

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
T0 = 1_700_000_000 * 10**9
MIN = 60 * 10**9


def flat(ts: int, price: str = "100.00") -> Bar:
    return Bar("AAPL", "1m", ts, price, price, price, price, "1000")


def intent(side: Side = Side.BUY, limit: str | None = None, strategy_id: str = "s1") -> OrderIntent:
    return OrderIntent(
        strategy_id=strategy_id,
        instrument="AAPL",
        side=side,
        quantity=10,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        limit_price=limit,
        time_in_force=TimeInForce.GTC,
    )


# ----------------------------------------------------------------------------- doubles


class Recorder(Actor):
    """Records every message it gets into a list that outlives the instance."""

    def __init__(self, name: str, calls: list[tuple[str, Any]]) -> None:
        self.name = name
        self.calls = calls

    async def handle(self, message: Any) -> Any:
        self.calls.append((self.name, message))
        return None


class PersistenceRecorder(Recorder):
    """Replies to `PersistDurably` (as if committed), records everything."""

    async def handle(self, message: Any) -> Any:
        if isinstance(message, PersistDurably):
            self.calls.append(("journal", message))
            return True
        self.calls.append(("persist", message))
        return None


class RecordingBroker:
    """A `PaperBroker` that writes each call into the shared call log; it can fail the
    next submit before it reaches the venue, or refuse to connect."""

    def __init__(self, calls: list[tuple[str, Any]], faults: PaperFaults | None = None) -> None:
        self.paper = PaperBroker(PaperConfig(AAPL), faults)
        self.calls = calls
        self.fail_next_submit = False
        self.refuse_connect = False

    @property
    def connected(self) -> bool:
        return self.paper.connected

    async def connect(self) -> None:
        self.calls.append(("connect", None))
        if self.refuse_connect:
            msg = "venue unreachable"
            raise BrokerDisconnected(msg)
        await self.paper.connect()

    async def disconnect(self) -> None:
        self.calls.append(("disconnect", None))
        await self.paper.disconnect()

    async def submit(self, order: Order) -> Sequence[BrokerEvent]:
        self.calls.append(("submit", order))
        if self.fail_next_submit:
            self.fail_next_submit = False
            msg = "crash before the venue"
            raise RuntimeError(msg)
        return await self.paper.submit(order)

    async def cancel(self, client_order_id: str, ts: int) -> Sequence[BrokerEvent]:
        self.calls.append(("cancel", client_order_id))
        return await self.paper.cancel(client_order_id, ts)

    async def on_bar(self, bar: Bar) -> Sequence[BrokerEvent]:
        self.calls.append(("on_bar", bar))
        return await self.paper.on_bar(bar)

    async def subscribe(self, instruments: Sequence[str]) -> None:
        self.calls.append(("subscribe", tuple(instruments)))
        await self.paper.subscribe(instruments)

    async def open_orders(self) -> Sequence[Order]:
        return await self.paper.open_orders()

    async def lookup_orders(self, client_order_ids: Sequence[str]) -> Sequence[Order]:
        return await self.paper.lookup_orders(client_order_ids)

    async def fills_since(self, ts: int) -> Sequence[Fill]:
        return await self.paper.fills_since(ts)

    def count(self, kind: str) -> int:
        return sum(1 for name, _ in self.calls if name == kind)


@attrs.define
class CrashingBook(OrderBook):
    """An order book whose next `commit` raises: a crash after every effect of a message
    was performed and before its change is committed (the worst point)."""

    crashes_left: int = 0

    def commit(self, change: BookChange) -> None:
        if self.crashes_left:
            self.crashes_left -= 1
            msg = "crash before commit"
            raise RuntimeError(msg)
        super().commit(change)


@attrs.define
class Harness:
    system: ActorSystem
    book: OrderBook
    broker: RecordingBroker
    calls: list[tuple[str, Any]]

    @property
    def orders(self) -> Any:
        return self.system.ref("trading/orders")

    def to(self, name: str) -> list[Any]:
        return [message for who, message in self.calls if who == name]

    def updates(self) -> list[OrderUpdated]:
        return [m for m in self.to("risk") if isinstance(m, OrderUpdated)]

    def kinds(self) -> list[str]:
        return [u.event.kind.value for u in self.updates()]


@asynccontextmanager
async def harness(
    book: OrderBook | None = None,
    faults: PaperFaults | None = None,
    *,
    refuse: bool = False,
    persistence: type[PersistenceRecorder] = PersistenceRecorder,
) -> AsyncIterator[Harness]:
    calls: list[tuple[str, Any]] = []
    keeper = book if book is not None else OrderBook()
    broker = RecordingBroker(calls, faults)
    broker.refuse_connect = refuse
    # Typed as Any: mypy reads the spec's `children` converter (tuple) as generic.
    trading_children: list[Any] = [
        ChildSpec("orders", lambda: OrderActor(keeper, broker)),
        ChildSpec("risk", lambda: Recorder("risk", calls)),
        ChildSpec("strategy", lambda: Recorder("strategy", calls)),
    ]
    trading = SupervisorSpec(
        "trading",
        trading_children,
        strategy=RestartStrategy.REST_FOR_ONE,
        backoff=Backoff(initial=0.0, jitter=0.0),
    )
    root_children: list[Any] = [
        ChildSpec("persistence", lambda: persistence("persistence", calls)),
        trading,
    ]
    root = SupervisorSpec("tradewind", root_children)
    async with open_actor_system(root, asyncio_loop=False) as system:
        yield Harness(system, keeper, broker, calls)


def names(calls: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in calls]


# ----------------------------------------------------------------------------- placing


class TestPlaceOrder:
    async def test_the_journal_record_is_durable_before_the_broker_sees_the_order(
        self, autojump_clock
    ):
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(), T0))
            order_of_calls = [n for n in names(h.calls) if n in {"journal", "submit"}]
            assert order_of_calls == ["journal", "submit"]
            (journal,) = h.to("journal")
            (record,) = journal.records
            assert isinstance(record, Order)
            assert (record.client_order_id, record.status) == (
                "s1-00000001",
                OrderStatus.INITIALIZED,
            )

    async def test_a_placed_order_is_submitted_then_accepted_and_risk_hears_both(
        self, autojump_clock
    ):
        async with harness() as h:
            reply = await h.orders.ask(PlaceOrder(intent(), T0))
            await h.system.quiesce()
            assert reply.status is OrderStatus.ACCEPTED
            assert reply.broker_order_id == "PAPER-00000001"
            assert h.kinds() == ["SUBMITTED", "ACCEPTED"]
            assert [u.event.seq for u in h.updates()] == [1, 2]
            assert h.book.working["s1-00000001"] == reply

    async def test_every_update_is_persisted_in_one_batch_per_message(self, autojump_clock):
        async with harness() as h:
            reply = await h.orders.ask(PlaceOrder(intent(), T0))
            await h.system.quiesce()
            (persist,) = h.to("persist")
            assert isinstance(persist, Persist)
            records: list[Any] = list(persist.records)
            submitted, accepted = records
            assert isinstance(submitted.event, OrderSubmitted)
            assert isinstance(accepted.event, OrderAccepted)
            assert (submitted.event.seq, accepted.event.seq) == (1, 2)
            assert accepted.order == reply
            assert list(persist.records) == h.updates()

    async def test_client_order_ids_follow_each_strategys_own_sequence(self, autojump_clock):
        async with harness() as h:
            first = await h.orders.ask(PlaceOrder(intent(), T0))
            second = await h.orders.ask(PlaceOrder(intent(), T0))
            other = await h.orders.ask(PlaceOrder(intent(strategy_id="s2"), T0))
            assert [first.client_order_id, second.client_order_id, other.client_order_id] == [
                "s1-00000001",
                "s1-00000002",
                "s2-00000001",
            ]

    async def test_a_broker_reject_becomes_rejected(self, autojump_clock):
        faults = PaperFaults(reject_submits={1}, reject_reason="no short sales")
        async with harness(faults=faults) as h:
            reply = await h.orders.ask(PlaceOrder(intent(side=Side.SELL), T0))
            await h.system.quiesce()
            assert reply.status is OrderStatus.REJECTED
            assert reply.reason == "no short sales"
            assert h.kinds() == ["SUBMITTED", "REJECTED"]
            assert h.book.working == {}
            assert h.book.statistics().rejected == 1


class TestOrderActions:
    """Places and cancels decided together: one journal write for all, then each in order."""

    async def test_one_durable_write_holds_every_order_and_precedes_every_submit(
        self, autojump_clock
    ):
        async with harness() as h:
            group = OrderActions((PlaceOrder(intent(), T0), PlaceOrder(intent(Side.SELL), T0)))
            replies = await h.orders.ask(group)
            await h.system.quiesce()
            assert [n for n in names(h.calls) if n in {"journal", "submit"}] == [
                "journal",
                "submit",
                "submit",
            ]
            (journal,) = h.to("journal")
            assert [(r.client_order_id, r.status) for r in journal.records] == [
                ("s1-00000001", OrderStatus.INITIALIZED),
                ("s1-00000002", OrderStatus.INITIALIZED),
            ]
            assert [r.client_order_id for r in replies] == ["s1-00000001", "s1-00000002"]
            assert {r.status for r in replies} == {OrderStatus.ACCEPTED}
            assert [s.intent.side for s in h.to("submit")] == [Side.BUY, Side.SELL]
            assert h.kinds() == ["SUBMITTED", "ACCEPTED", "SUBMITTED", "ACCEPTED"]
            assert sorted(h.book.working) == ["s1-00000001", "s1-00000002"]

    async def test_a_crash_between_two_submits_journals_once_and_submits_each_once(
        self, autojump_clock
    ):
        async with harness() as h:
            submits = 0
            submit = h.broker.submit

            async def fail_the_second(order: Order) -> Sequence[BrokerEvent]:
                nonlocal submits
                submits += 1
                if submits == 2:
                    h.broker.fail_next_submit = True  # the second one crashes, once
                return await submit(order)

            h.broker.submit = fail_the_second  # type: ignore[method-assign]
            group = OrderActions((PlaceOrder(intent(), T0), PlaceOrder(intent(Side.SELL), T0)))
            await h.orders.send(group)
            await h.system.quiesce()
            assert len(h.to("journal")) == 1  # the redelivery did not journal again
            # the first order reached the venue once; the second once, after the crash
            submitted = [o.client_order_id for o in h.to("submit")]
            assert submitted == ["s1-00000001", "s1-00000002", "s1-00000002"]
            assert h.broker.paper.exchange.statistics().submits == 2
            assert sorted(h.book.working) == ["s1-00000001", "s1-00000002"]
            assert h.kinds() == ["SUBMITTED", "ACCEPTED", "SUBMITTED", "ACCEPTED"]

    async def test_an_unjournaled_group_is_denied_whole(self, autojump_clock):
        async with harness(persistence=Refusing) as h:
            group = OrderActions((PlaceOrder(intent(), T0), PlaceOrder(intent(Side.SELL), T0)))
            replies = await h.orders.ask(group)
        assert [r.status for r in replies] == [OrderStatus.DENIED, OrderStatus.DENIED]
        assert h.broker.count("submit") == 0

    async def test_a_cancel_between_two_places_is_journaled_with_them(self, autojump_clock):
        # A place, a cancel, a place from one decision: the intents and the cancel request
        # are durable in one write before the broker hears any of them; then the cancel
        # goes out first (it only takes risk away, and a restart's reconciliation
        # reproduces that order), the places after it in the order decided.
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(limit="90.00"), T0))
            await h.orders.send(flat(T0 + MIN))  # the bar the decision was made on
            group = OrderActions(
                (
                    PlaceOrder(intent(), T0 + MIN),
                    CancelOrder("s1-00000001", T0 + MIN, "replaced"),
                    PlaceOrder(intent(Side.SELL), T0 + MIN),
                )
            )
            replies = await h.orders.ask(group)
            await h.system.quiesce()
            _first, journal = h.to("journal")
            assert [(r.client_order_id, r.status) for r in records_of(journal)] == [
                ("s1-00000002", OrderStatus.INITIALIZED),
                ("s1-00000003", OrderStatus.INITIALIZED),
                ("s1-00000001", OrderStatus.PENDING_CANCEL),
            ]
            after = h.calls[h.calls.index(("journal", journal)) :]
            assert [
                (n, o if n == "cancel" else o.client_order_id)
                for n, o in after
                if n in {"submit", "cancel"}
            ] == [
                ("cancel", "s1-00000001"),
                ("submit", "s1-00000002"),
                ("submit", "s1-00000003"),
            ]
            assert [(r.client_order_id, r.status) for r in replies] == [
                ("s1-00000002", OrderStatus.ACCEPTED),
                ("s1-00000001", OrderStatus.CANCELED),
                ("s1-00000003", OrderStatus.ACCEPTED),
            ]
            # risk hears everything in the order it happened; persistence is not given
            # the journaled cancel request a second time
            assert h.kinds()[2:] == [
                "CANCEL_REQUESTED",
                "CANCELED",
                "SUBMITTED",
                "ACCEPTED",
                "SUBMITTED",
                "ACCEPTED",
            ]
            persisted = [u.event.kind.value for p in h.to("persist") for u in p.records]
            assert persisted[2:] == ["CANCELED", "SUBMITTED", "ACCEPTED", "SUBMITTED", "ACCEPTED"]

    async def test_the_kill_switchs_cancel_all_and_flattening_share_one_write(self, autojump_clock):
        async with harness() as h:
            for limit in ("90.00", "91.00"):
                await h.orders.ask(PlaceOrder(intent(limit=limit), T0))
            await h.orders.send(flat(T0 + MIN))  # the bar that tripped the switch
            group = OrderActions(
                (CancelAllOrders(T0 + MIN, "kill switch"), PlaceOrder(intent(Side.SELL), T0 + MIN))
            )
            replies = await h.orders.ask(group)
            await h.system.quiesce()
            journal = h.to("journal")[-1]
            assert [(r.client_order_id, r.status) for r in records_of(journal)] == [
                ("s1-00000003", OrderStatus.INITIALIZED),
                ("s1-00000001", OrderStatus.PENDING_CANCEL),
                ("s1-00000002", OrderStatus.PENDING_CANCEL),
            ]
            after = h.calls[h.calls.index(("journal", journal)) :]
            assert [n for n, _ in after if n in {"submit", "cancel"}] == [
                "cancel",
                "cancel",
                "submit",
            ]
            assert [r.status for r in replies] == [
                OrderStatus.CANCELED,
                OrderStatus.CANCELED,
                OrderStatus.ACCEPTED,
            ]


class Refusing(PersistenceRecorder):
    """Answers every durable write with `NotDurable` (a store outage)."""

    async def handle(self, message: Any) -> Any:
        if isinstance(message, PersistDurably):
            self.calls.append(("refused", message))
            return NotDurable(reason="store down", pending=0)
        return await super().handle(message)


class RefusingOnce(Refusing):
    """Refuses the first durable write (a store outage), then commits every one."""

    async def handle(self, message: Any) -> Any:
        if any(name == "refused" for name, _ in self.calls):
            return await PersistenceRecorder.handle(self, message)
        return await super().handle(message)


def records_of(journal: PersistDurably) -> list[Order]:
    """The orders a durable write holds (a cancel request as its PENDING_CANCEL order)."""
    held = [r.order if isinstance(r, OrderUpdated) else r for r in journal.records]
    orders = [o for o in held if isinstance(o, Order)]
    assert len(orders) == len(held)
    return orders


# ----------------------------------------------------------------------------- bars


class TestBars:
    async def test_risk_gets_a_bars_fills_before_the_bar_itself(self, autojump_clock):
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(), T0))
            bar = flat(T0 + MIN, "101.00")
            await h.orders.send(bar)
            await h.system.quiesce()
            risk = h.to("risk")
            assert risk[-1] == bar
            fill_update = risk[-2]
            assert isinstance(fill_update, OrderUpdated)
            assert fill_update.fill is not None
            assert fill_update.fill.price == Decimal("101.00")
            assert fill_update.order.status is OrderStatus.FILLED
            assert h.book.working == {}
            assert h.book.statistics().fills == 1

    async def test_a_fill_is_persisted_with_its_event_and_the_order(self, autojump_clock):
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(), T0))
            await h.orders.send(flat(T0 + MIN))
            await h.system.quiesce()
            (update,) = h.to("persist")[-1].records
            assert isinstance(update.event, OrderFilled)
            assert update.fill == update.event.fill
            assert update.order.status is OrderStatus.FILLED
            assert update.order.execution_ids == {"s1-00000001-F1"}

    async def test_a_bar_without_news_is_only_forwarded(self, autojump_clock):
        async with harness() as h:
            bar = flat(T0)
            await h.orders.send(bar)
            await h.system.quiesce()
            assert h.to("risk") == [bar]
            assert h.to("persist") == []

    async def test_a_fill_that_overtakes_a_delayed_ack_is_applied_in_order(self, autojump_clock):
        async with harness(faults=PaperFaults(ack_delay_bars=2)) as h:
            reply = await h.orders.ask(PlaceOrder(intent(), T0))
            assert reply.status is OrderStatus.SUBMITTED
            await h.orders.send(flat(T0 + MIN))
            await h.orders.send(flat(T0 + 2 * MIN))
            await h.system.quiesce()
            assert h.kinds() == ["SUBMITTED", "FILLED", "ACCEPTED"]
            final = h.book.order("s1-00000001")
            assert final is not None
            assert final.status is OrderStatus.FILLED
            assert final.broker_order_id == "PAPER-00000001"
            assert h.book.statistics().skipped_events == 0

    async def test_broker_news_of_an_unknown_order_is_logged_and_skipped(self, autojump_clock):
        async with harness() as h:
            stray = OrderAccepted(client_order_id="s9-00000001", ts=T0, broker_order_id="X")

            async def on_bar(bar: Bar) -> Sequence[BrokerEvent]:
                return (stray,)

            h.broker.on_bar = on_bar  # type: ignore[method-assign]
            bar = flat(T0)
            with capture_logs() as logs:
                await h.orders.send(bar)
                await h.system.quiesce()
            assert h.to("risk") == [bar]
            assert h.book.statistics().skipped_events == 1
            (skipped,) = [log for log in logs if log["event"] == "broker_event_skipped"]
            assert skipped["reason"] == "ACCEPTED for unknown order s9-00000001"


# ----------------------------------------------------------------------------- redelivery


class TestRedelivery:
    async def test_a_crash_after_the_broker_answered_does_not_submit_again(self, autojump_clock):
        book = CrashingBook(crashes_left=1)
        async with harness(book) as h:
            reply = await h.orders.ask(PlaceOrder(intent(), T0))
            await h.system.quiesce()
            assert reply.client_order_id == "s1-00000001"
            assert reply.status is OrderStatus.ACCEPTED
            assert h.broker.count("submit") == 1
            assert len(h.to("journal")) == 1
            assert h.broker.paper.statistics().submits == 1
            assert book.statistics().redelivered == 1
            assert h.system.statistics().actors["trading/orders"].restarts == 1
            following = await h.orders.ask(PlaceOrder(intent(), T0))
            assert following.client_order_id == "s1-00000002"

    async def test_a_crash_before_the_broker_was_reached_submits_once(self, autojump_clock):
        async with harness() as h:
            h.broker.fail_next_submit = True
            reply = await h.orders.ask(PlaceOrder(intent(), T0))
            await h.system.quiesce()
            assert reply.status is OrderStatus.ACCEPTED
            assert reply.client_order_id == "s1-00000001"
            assert len(h.to("journal")) == 1
            assert h.broker.paper.statistics().submits == 1
            assert h.book.statistics().placed == 1

    async def test_an_order_denied_for_a_store_outage_stays_denied_on_redelivery(
        self, autojump_clock
    ):
        """The store is back when the message is redelivered: the DENIED already sent to
        risk and persistence stands, the write is not retried, the broker never hears it."""
        book = CrashingBook(crashes_left=1)
        async with harness(book, persistence=RefusingOnce) as h:
            reply = await h.orders.ask(PlaceOrder(intent(), T0))
            await h.system.quiesce()
            assert (reply.client_order_id, reply.status) == ("s1-00000001", OrderStatus.DENIED)
            assert reply.reason == "store unavailable: store down"
            assert book.statistics().redelivered == 1
            assert (len(h.to("refused")), h.to("journal")) == (1, [])
            assert h.broker.count("submit") == 0
            assert h.broker.paper.statistics().submits == 0
            assert h.kinds() == ["DENIED", "DENIED"]  # sent again, the same update
            persisted = {
                (u.event.kind.value, u.event.seq) for p in h.to("persist") for u in p.records
            }
            assert persisted == {("DENIED", 1)}
            assert h.book.working == {}
            assert book.order("s1-00000001") == reply

    async def test_a_redelivered_bar_does_not_match_twice(self, autojump_clock):
        book = CrashingBook()
        async with harness(book) as h:
            await h.orders.ask(PlaceOrder(intent(), T0))
            book.crashes_left = 1
            await h.orders.send(flat(T0 + MIN))
            await h.system.quiesce()
            assert h.broker.count("on_bar") == 1
            assert book.statistics().fills == 1
            assert h.broker.paper.statistics().fills == 1
            assert book.order("s1-00000001").filled_quantity == Decimal(10)  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- cancels


class TestCancel:
    async def test_a_working_order_is_canceled(self, autojump_clock):
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(limit="90.00"), T0))
            reply = await h.orders.ask(CancelOrder("s1-00000001", T0, "stop"))
            await h.system.quiesce()
            assert reply.status is OrderStatus.CANCELED
            assert h.kinds()[-2:] == ["CANCEL_REQUESTED", "CANCELED"]
            assert h.book.working == {}

    async def test_the_cancel_request_is_durable_before_the_broker_hears_it(self, autojump_clock):
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(limit="90.00"), T0))
            await h.orders.ask(CancelOrder("s1-00000001", T0, "stop"))
            await h.system.quiesce()
            assert [n for n in names(h.calls) if n in {"journal", "cancel"}][1:] == [
                "journal",
                "cancel",
            ]
            (request,) = h.to("journal")[1].records
            assert isinstance(request, OrderUpdated)
            assert request.order.status is OrderStatus.PENDING_CANCEL
            assert request.event.kind.value == "CANCEL_REQUESTED"
            # persisted once: durably, not again with the CANCELED that follows
            last = h.to("persist")[-1]
            assert [u.event.kind.value for u in last.records] == ["CANCELED"]

    async def test_a_cancel_goes_out_when_its_request_cannot_be_journaled(self, autojump_clock):
        # A store outage: the place is denied, the cancel (it only takes risk away) still
        # reaches the broker, and its updates are persisted like any other (buffered).
        class RefusingAfterTheFirst(Refusing):
            async def handle(self, message: Any) -> Any:
                if isinstance(message, PersistDurably) and not self.calls.count(("journal", 1)):
                    self.calls.append(("journal", 1))
                    return await PersistenceRecorder.handle(self, message)
                return await super().handle(message)

        async with harness(persistence=RefusingAfterTheFirst) as h:
            await h.orders.ask(PlaceOrder(intent(limit="90.00"), T0))
            replies = await h.orders.ask(
                OrderActions((CancelOrder("s1-00000001", T0), PlaceOrder(intent(), T0)))
            )
            await h.system.quiesce()
            assert [r.status for r in replies] == [OrderStatus.CANCELED, OrderStatus.DENIED]
            assert h.broker.count("cancel") == 1
            assert h.broker.count("submit") == 1  # the first place only
            assert len(h.to("refused")) == 1
            persisted = [u.event.kind.value for p in h.to("persist") for u in p.records]
            assert persisted[2:] == ["CANCEL_REQUESTED", "CANCELED", "DENIED"]

    async def test_a_crash_after_the_journal_write_cancels_once(self, autojump_clock):
        book = CrashingBook()
        async with harness(book) as h:
            await h.orders.ask(PlaceOrder(intent(limit="90.00"), T0))
            book.crashes_left = 1
            reply = await h.orders.ask(CancelOrder("s1-00000001", T0))
            await h.system.quiesce()
            assert reply.status is OrderStatus.CANCELED
            assert len(h.to("journal")) == 2  # the place's and the cancel's, once each
            assert h.broker.count("cancel") == 1
            assert book.statistics().redelivered == 1
            assert h.kinds()[2:] == ["CANCEL_REQUESTED", "CANCELED"] * 2  # sent again, same
            assert book.statistics().canceled == 1

    async def test_a_cancel_the_venue_confirms_with_a_later_bar(self, autojump_clock):
        # Asked at t + 1m before the venue traded its bar of t + 1m: that bar could still
        # fill the order (paper broker notes), so the confirmation comes with it.
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(limit="90.00"), T0))
            reply = await h.orders.ask(CancelOrder("s1-00000001", T0 + MIN, "stop"))
            await h.system.quiesce()
            assert reply.status is OrderStatus.PENDING_CANCEL
            assert list(h.book.working) == ["s1-00000001"]
            await h.orders.send(flat(T0 + MIN))
            await h.system.quiesce()
            assert h.kinds()[-2:] == ["CANCEL_REQUESTED", "CANCELED"]
            assert h.book.working == {}
            persisted = [u.event.kind.value for p in h.to("persist") for u in p.records]
            assert persisted[-1] == "CANCELED"

    async def test_a_cancel_of_an_unknown_order_is_ignored_with_a_warning(self, autojump_clock):
        async with harness() as h:
            with capture_logs() as logs:
                reply = await h.orders.ask(CancelOrder("s1-00000042", T0))
                await h.system.quiesce()
            assert reply is None
            assert h.broker.count("cancel") == 0
            assert h.to("risk") == []
            (warned,) = [log for log in logs if log["event"] == "cancel_of_unknown_order"]
            assert warned["log_level"] == "warning"
            assert warned["client_order_id"] == "s1-00000042"

    async def test_a_cancel_of_a_finished_order_is_ignored_quietly(self, autojump_clock):
        async with harness() as h:
            await h.orders.send(PlaceOrder(intent(), T0))
            await h.system.quiesce()
            await h.orders.ask(CancelOrder("s1-00000001", T0, "stop"))
            await h.system.quiesce()
            with capture_logs() as logs:
                reply = await h.orders.ask(CancelOrder("s1-00000001", T0, "again"))
                await h.system.quiesce()
            assert reply.status is OrderStatus.CANCELED
            assert h.broker.count("cancel") == 1
            (ignored,) = [log for log in logs if log["event"] == "cancel_ignored"]
            assert ignored["log_level"] == "info"
            assert ignored["status"] == "CANCELED"

    async def test_cancel_all_cancels_every_working_order(self, autojump_clock):
        async with harness() as h:
            for limit in ("90.00", "91.00", "92.00"):
                await h.orders.ask(PlaceOrder(intent(limit=limit), T0))
            asked = await h.orders.ask(CancelAllOrders(T0, "daily loss limit"))
            await h.system.quiesce()
            assert asked == ("s1-00000001", "s1-00000002", "s1-00000003")
            # every request in one durable write, before the first cancel
            journal = h.to("journal")[-1]
            assert [(r.client_order_id, r.status) for r in records_of(journal)] == [
                (i, OrderStatus.PENDING_CANCEL) for i in asked
            ]
            assert names(h.calls).index("cancel") > h.calls.index(("journal", journal))
            assert h.book.working == {}
            assert h.book.statistics().canceled == 3
            assert await h.broker.open_orders() == ()
            assert all(
                h.book.order(i).status is OrderStatus.CANCELED  # type: ignore[union-attr]
                for i in asked
            )


# ----------------------------------------------------------------------------- connection


class TestConnection:
    async def test_a_dropped_connection_is_reported_and_new_orders_are_refused(
        self, autojump_clock
    ):
        async with harness(faults=PaperFaults(disconnect_at=(T0 + MIN,))) as h:
            bar = flat(T0 + MIN)
            await h.orders.send(bar)
            await h.system.quiesce()
            changed, forwarded = h.to("risk")
            assert isinstance(changed, BrokerConnectionChanged)
            assert not changed.connected
            assert forwarded == bar
            reply = await h.orders.ask(PlaceOrder(intent(), T0 + MIN))
            await h.system.quiesce()
            assert reply.status is OrderStatus.DENIED
            assert reply.reason == "broker disconnected"
            assert h.to("journal") == []
            assert h.broker.count("submit") == 0
            assert h.kinds() == ["DENIED"]

    async def test_a_bar_while_disconnected_still_reaches_risk_and_the_venue(self, autojump_clock):
        async with harness(faults=PaperFaults(disconnect_at=(T0,))) as h:
            await h.orders.send(flat(T0))
            later = flat(T0 + MIN)
            await h.orders.send(later)
            await h.system.quiesce()
            assert h.to("risk")[-1] == later
            assert h.broker.count("on_bar") == 2  # the venue's market goes on
            assert h.broker.paper.statistics().bars == 2

    async def test_a_reconnect_request_brings_the_broker_back(self, autojump_clock):
        async with harness(faults=PaperFaults(disconnect_at=(T0,))) as h:
            await h.orders.send(flat(T0))
            assert await h.orders.ask(BrokerConnectionChanged(connected=True, ts=T0 + 1)) is True
            await h.system.quiesce()
            assert [
                m.connected for m in h.to("risk") if isinstance(m, BrokerConnectionChanged)
            ] == [
                False,
                True,
            ]
            reply = await h.orders.ask(PlaceOrder(intent(), T0 + 2))
            assert reply.status is OrderStatus.ACCEPTED

    async def test_fills_missed_while_down_are_reconciled_after_a_reconnect(self, autojump_clock):
        async with harness(faults=PaperFaults(disconnect_at=(T0 + MIN,))) as h:
            await h.orders.ask(PlaceOrder(intent(), T0))
            await h.orders.send(flat(T0 + MIN))  # the connection drops here
            await h.system.quiesce()
            venue = h.broker.paper.exchange
            venue.connect()  # the venue trades on while the actor is cut off
            venue.on_bar(flat(T0 + 2 * MIN, "100.50"))
            venue.disconnect()
            assert await h.orders.ask(BrokerConnectionChanged(connected=True, ts=T0 + 3 * MIN))
            await h.system.quiesce()
            order = h.book.order("s1-00000001")
            assert order is not None
            assert order.status is OrderStatus.FILLED
            assert order.avg_fill_price == Decimal("100.00")  # the venue traded the bar
            assert h.kinds() == ["SUBMITTED", "ACCEPTED", "FILLED"]
            assert h.book.down_since is None

    async def test_a_reconnect_without_missed_fills_changes_no_order(self, autojump_clock):
        async with harness(faults=PaperFaults(disconnect_at=(T0,))) as h:
            await h.orders.send(flat(T0))
            await h.orders.ask(BrokerConnectionChanged(connected=True, ts=T0 + 1))
            await h.system.quiesce()
            assert h.to("persist") == []
            assert h.book.down_since is None

    async def test_a_reconciliation_that_loses_the_connection_again_stays_down(
        self, autojump_clock
    ):
        async with harness(faults=PaperFaults(disconnect_at=(T0,))) as h:
            await h.orders.send(flat(T0))

            async def fills_since(ts: int) -> Sequence[Fill]:
                msg = "dropped again"
                raise BrokerDisconnected(msg)

            h.broker.fills_since = fills_since  # type: ignore[method-assign]
            assert await h.orders.ask(BrokerConnectionChanged(connected=True, ts=T0 + 1)) is False
            await h.system.quiesce()
            states = [m.connected for m in h.to("risk") if isinstance(m, BrokerConnectionChanged)]
            assert states == [False]  # "up" is only said after a reconciliation
            assert h.book.down_since == T0

    async def test_an_operator_disconnect_closes_the_session(self, autojump_clock):
        async with harness() as h:
            reply = await h.orders.ask(
                BrokerConnectionChanged(connected=False, ts=T0, reason="maintenance")
            )
            await h.system.quiesce()
            assert reply is False
            assert not h.broker.connected
            (changed,) = h.to("risk")
            assert changed.reason == "maintenance"

    async def test_a_cancel_while_disconnected_is_rejected_locally(self, autojump_clock):
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(limit="90.00"), T0))
            await h.orders.ask(BrokerConnectionChanged(connected=False, ts=T0))
            reply = await h.orders.ask(CancelOrder("s1-00000001", T0 + 1))
            await h.system.quiesce()
            assert reply.status is OrderStatus.ACCEPTED
            assert reply.reason == "broker disconnected"
            assert h.kinds()[-2:] == ["CANCEL_REQUESTED", "CANCEL_REJECTED"]
            assert h.broker.count("cancel") == 0

    async def test_a_broker_that_cannot_connect_at_start_is_marked_down_not_crashed(
        self, autojump_clock
    ):
        async with harness(refuse=True) as h:
            await h.system.quiesce()
            assert not h.book.connected
            (changed,) = h.to("risk")
            assert "venue unreachable" in changed.reason
            assert h.system.statistics().actors["trading/orders"].crashes == 0

    async def test_a_disconnect_during_submit_rejects_the_order(self, autojump_clock):
        async with harness() as h:
            await h.broker.paper.disconnect()  # behind the actor's back
            reply = await h.orders.ask(PlaceOrder(intent(), T0))
            assert reply.status is OrderStatus.REJECTED
            assert reply.reason.startswith("broker disconnected: ")
            assert not h.book.connected

    async def test_a_disconnect_during_cancel_rejects_the_cancel(self, autojump_clock):
        async with harness() as h:
            await h.orders.ask(PlaceOrder(intent(limit="90.00"), T0))
            await h.broker.paper.disconnect()  # behind the actor's back
            reply = await h.orders.ask(CancelOrder("s1-00000001", T0 + 1))
            assert reply.status is OrderStatus.ACCEPTED
            assert reply.reason == "broker disconnected"
            assert h.broker.count("cancel") == 1
            assert not h.book.connected

    async def test_the_session_is_closed_when_the_actor_stops(self, autojump_clock):
        calls: list[tuple[str, Any]] = []
        async with harness() as h:
            calls = h.calls
        assert names(calls)[0] == "connect"
        assert "disconnect" in names(calls)


class TestUnexpectedMessages:
    async def test_an_unknown_message_is_logged_and_ignored(self, autojump_clock):
        async with harness() as h:
            with capture_logs() as logs:
                assert await h.orders.ask("hello") is None
            assert any(log["event"] == "unexpected_message" for log in logs)


# ----------------------------------------------------------------------------- order book


def accepted_order(seq: int = 1, strategy_id: str = "s1") -> Order:
    order = Order.create(f"{strategy_id}-{seq:08d}", intent(strategy_id=strategy_id), T0)
    order = order.apply(OrderSubmitted(client_order_id=order.client_order_id, ts=T0))
    return order.apply(
        OrderAccepted(client_order_id=order.client_order_id, ts=T0, broker_order_id="B1")
    )


def fill_of(order: Order, execution_id: str = "x-1", quantity: int = 4) -> OrderFilled:
    return OrderFilled(
        client_order_id=order.client_order_id,
        ts=T0 + 1,
        fill=Fill(
            execution_id=execution_id,
            client_order_id=order.client_order_id,
            instrument="AAPL",
            side=Side.BUY,
            quantity=quantity,
            price="100",
            fee="0",
            fee_currency="USD",
            ts=T0 + 1,
        ),
    )


class TestOrderBook:
    def test_a_restored_book_continues_after_the_stored_sequences(self):
        book = OrderBook.restore([accepted_order(7)], {"s1": 5, "s2": 3})
        assert book.next_client_order_id("s1") == "s1-00000008"
        assert book.next_client_order_id("s2") == "s2-00000004"
        assert list(book.working) == ["s1-00000007"]
        assert book.open_orders() == (accepted_order(7),)

    def test_a_fill_already_applied_is_not_applied_again(self):
        order = accepted_order()
        book = OrderBook.restore([order])
        change = book.change()
        assert change.apply(fill_of(order)) is not None
        assert change.apply(fill_of(order)) is None
        book.commit(change)
        again = book.change()
        assert again.apply(fill_of(order)) is None
        assert book.working[order.client_order_id].filled_quantity == Decimal(4)

    def test_events_the_book_cannot_apply_are_skipped_and_counted(self):
        order = accepted_order()
        book = OrderBook.restore([order])
        change = book.change()
        unknown = attrs.evolve(fill_of(order), client_order_id="s1-00000099")
        assert change.apply(unknown) is None
        assert change.apply(fill_of(order, quantity=11)) is None  # more than ordered
        book.commit(change)
        assert book.statistics().skipped_events == 2
        assert change.skipped[0] == "FILLED for unknown order s1-00000099"

    def test_finished_orders_are_kept_up_to_the_capacity(self):
        book = OrderBook(finished_capacity=2)
        for seq in (1, 2, 3):
            order = accepted_order(seq)
            book.working[order.client_order_id] = order
            change = book.change()
            change.apply(fill_of(order, execution_id=f"x-{seq}", quantity=10))
            book.commit(change)
        assert list(book.finished) == ["s1-00000002", "s1-00000003"]
        assert book.order("s1-00000001") is None

    def test_recording_an_order_without_an_event_is_refused(self):
        change = OrderBook().change()
        with pytest.raises(ValueError, match="must carry its event"):
            change.record(Order.create("s1-00000001", intent(), T0))
