"""Mailboxes: FIFO order, the three overflow policies with a slow consumer, asks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import structlog
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from tradewind.runtime import (
    Actor,
    AskTimeout,
    Backoff,
    ChildSpec,
    MailboxClosed,
    MailboxFull,
    MailboxSpec,
    MessageDropped,
    Overflow,
    SupervisorSpec,
    open_actor_system,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio.testing import MockClock


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[list[Any]]:
    """Capture the runtime's logs instead of rendering them (crash tracebacks are slow)."""
    with structlog.testing.capture_logs() as logs:
        yield logs


class Gated(Actor):
    """A deliberately slow consumer: each message waits for the gate to open."""

    def __init__(self, gate: trio.Event, seen: list[Any]) -> None:
        self.gate = gate
        self.seen = seen

    async def handle(self, message: Any) -> Any:
        await self.gate.wait()
        self.seen.append(message)
        return message


def gated(mailbox: MailboxSpec) -> tuple[SupervisorSpec, trio.Event, list[Any]]:
    gate = trio.Event()
    seen: list[Any] = []
    spec = SupervisorSpec("root", [ChildSpec("slow", lambda: Gated(gate, seen), mailbox=mailbox)])
    return spec, gate, seen


class TestFifo:
    async def test_100_000_messages_arrive_in_order(self):
        seen: list[int] = []

        class Collect(Actor):
            async def handle(self, message: int) -> None:
                seen.append(message)

        spec = SupervisorSpec("root", [ChildSpec("c", Collect, mailbox=MailboxSpec(256))])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("c")
            for n in range(100_000):
                await ref.send(n)
            await system.quiesce()
        assert seen == list(range(100_000))

    async def test_order_holds_across_restarts(self, autojump_clock: MockClock):
        seen: list[int] = []
        crash_at = set(range(5_000, 100_000, 10_000))

        class CrashSometimes(Actor):
            async def handle(self, message: int) -> None:
                if message in crash_at:
                    crash_at.discard(message)
                    raise RuntimeError(f"crash at {message}")
                seen.append(message)

        spec = SupervisorSpec(
            "root",
            [ChildSpec("c", CrashSometimes, mailbox=MailboxSpec(256))],
            max_restarts=20,
            within=1.0,
            backoff=Backoff(initial=0.001, jitter=0),
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("c")
            for n in range(100_000):
                await ref.send(n)
            await system.quiesce()
            restarts = ref.statistics().restarts
        assert restarts == 10
        assert seen == list(range(100_000))


class TestBlock:
    async def test_a_full_mailbox_makes_the_sender_wait_and_loses_nothing(
        self, autojump_clock: MockClock
    ):
        spec, gate, seen = gated(MailboxSpec(2, Overflow.BLOCK))
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("slow")
            await ref.send(1)
            await trio.testing.wait_all_tasks_blocked()  # 1 is now in hand
            await ref.send(2)
            await ref.send(3)
            sent_fourth = trio.Event()

            async def send_fourth() -> None:
                await ref.send(4)
                sent_fourth.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_fourth)
                await trio.testing.wait_all_tasks_blocked()
                assert not sent_fourth.is_set()
                assert ref.statistics().senders_waiting == 1
                with pytest.raises(MailboxFull):
                    ref.send_nowait(5)
                gate.set()
            await system.quiesce()
            stats = ref.statistics()
        assert seen == [1, 2, 3, 4]
        assert (stats.processed, stats.rejected, stats.dead_letters) == (4, 1, 0)

    async def test_a_sender_cancelled_while_waiting_enqueues_nothing(
        self, autojump_clock: MockClock
    ):
        spec, gate, seen = gated(MailboxSpec(1, Overflow.BLOCK))
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("slow")
            await ref.send(1)
            await trio.testing.wait_all_tasks_blocked()
            await ref.send(2)
            with trio.move_on_after(1):
                await ref.send(3)
            gate.set()
            await system.quiesce()
        assert seen == [1, 2]


class TestReject:
    async def test_a_full_mailbox_refuses_at_once_and_counts_it(self, autojump_clock: MockClock):
        spec, gate, seen = gated(MailboxSpec(2, Overflow.REJECT))
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("slow")
            await ref.send(1)
            await trio.testing.wait_all_tasks_blocked()
            await ref.send(2)
            await ref.send(3)
            start = trio.current_time()
            with pytest.raises(MailboxFull):
                await ref.send(4)
            assert trio.current_time() == start
            gate.set()
            await system.quiesce()
            stats = ref.statistics()
        assert seen == [1, 2, 3]
        assert (stats.rejected, stats.dropped) == (1, 1)


class TestConflate:
    async def test_the_newest_per_key_is_kept_and_replacements_are_counted(
        self, autojump_clock: MockClock
    ):
        spec, gate, seen = gated(MailboxSpec(2, Overflow.CONFLATE, key=lambda m: m[0]))
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("slow")
            await ref.send(("EURUSD", 1))
            await trio.testing.wait_all_tasks_blocked()
            await ref.send(("EURUSD", 2))
            await ref.send(("GBPUSD", 1))
            await ref.send(("EURUSD", 3))
            ref.send_nowait(("GBPUSD", 2))
            with pytest.raises(MailboxFull):
                ref.send_nowait(("USDJPY", 1))  # a new key and no room
            gate.set()
            await system.quiesce()
            stats = ref.statistics()
        assert seen == [("EURUSD", 1), ("EURUSD", 3), ("GBPUSD", 2)]
        assert (stats.conflated, stats.rejected, stats.processed) == (2, 1, 3)

    async def test_a_conflated_ask_fails_with_message_dropped(self, autojump_clock: MockClock):
        spec, gate, _ = gated(MailboxSpec(4, Overflow.CONFLATE, key=lambda m: m[0]))
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("slow")
            await ref.send(("k", 0))
            await trio.testing.wait_all_tasks_blocked()
            outcome: list[Any] = []

            async def ask_first() -> None:
                try:
                    await ref.ask(("k", 1))
                except MessageDropped as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask_first)
                await trio.testing.wait_all_tasks_blocked()
                await ref.send(("k", 2))
                gate.set()
            await system.quiesce()
        assert len(outcome) == 1


class TestAsk:
    async def test_ask_returns_the_handlers_value(self, autojump_clock: MockClock):
        spec, gate, _ = gated(MailboxSpec(4))
        gate.set()
        async with open_actor_system(spec, asyncio_loop=False) as system:
            assert await system.ref("slow").ask("question") == "question"

    async def test_ask_times_out_without_a_reply(self, autojump_clock: MockClock):
        spec, gate, seen = gated(MailboxSpec(4))
        async with open_actor_system(spec, asyncio_loop=False) as system:
            start = trio.current_time()
            with pytest.raises(AskTimeout):
                await system.ref("slow").ask("question", timeout=3)
            assert trio.current_time() - start == pytest.approx(3)
            gate.set()
            await system.quiesce()
        assert seen == ["question"]  # handled later; its reply was discarded


class TestClosed:
    async def test_sends_after_the_system_stopped_raise_mailbox_closed(
        self, autojump_clock: MockClock
    ):
        spec, _, _ = gated(MailboxSpec(4))
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("slow")
            await ref.send("in hand")
            await trio.testing.wait_all_tasks_blocked()
            await ref.send("still queued")
        with pytest.raises(MailboxClosed):
            await ref.send("too late")
        with pytest.raises(MailboxClosed):
            ref.send_nowait("too late")
        reasons = [(d.message, d.reason) for d in system.dead_letters]
        assert reasons == [("in hand", "system stopped"), ("still queued", "system stopped")]
        assert system.statistics().in_flight == 0


class Recorder(Actor):
    """Records every message it handles; raises on ``"boom"`` (once per instance)."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    async def handle(self, message: Any) -> Any:
        if message == "boom" and "boom" not in self.seen:
            self.seen.append("boom")
            raise RuntimeError("boom")
        self.seen.append(message)
        return len(self.seen)


def lazy(wake_after: int, capacity: int = 64) -> tuple[SupervisorSpec, list[Any]]:
    seen: list[Any] = []
    box = MailboxSpec(capacity, Overflow.BLOCK, wake_after=wake_after)
    spec = SupervisorSpec(
        "root",
        [ChildSpec("store", lambda: Recorder(seen), mailbox=box)],
        backoff=Backoff(initial=0.01, maximum=0.01),
    )
    return spec, seen


class TestLazyWake:
    async def test_settle_leaves_parked_messages_and_quiesce_drains_them(self):
        spec, seen = lazy(wake_after=8)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()  # the consumer is parked on its empty mailbox
            ref = system.ref("store")
            for n in range(5):
                await ref.send(n)
            await system.settle()
            assert seen == []  # below wake_after: parked, not handled
            assert system.statistics().in_flight == 5
            await system.quiesce()
            assert seen == [0, 1, 2, 3, 4]
            assert system.statistics().in_flight == 0

    async def test_the_consumer_wakes_once_wake_after_messages_are_queued(self):
        spec, seen = lazy(wake_after=4)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()
            ref = system.ref("store")
            for n in range(3):
                await ref.send(n)
            await system.settle()
            assert seen == []
            await ref.send(3)
            await system.settle()
            assert seen == [0, 1, 2, 3]  # the fourth woke it; it drained them all
            stats = system.statistics().actors["store"]
            assert (stats.processed, stats.batches) == (4, 1)  # in one batch

    async def test_an_ask_wakes_it_and_is_answered_after_the_parked_messages(self):
        spec, seen = lazy(wake_after=16)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()
            ref = system.ref("store")
            for n in range(3):
                await ref.send(n)
            assert await ref.ask("question") == 4  # FIFO: the three parked ones first
            assert seen == [0, 1, 2, "question"]

    async def test_a_crash_with_parked_messages_behind_it_loses_nothing(self):
        spec, seen = lazy(wake_after=4)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()
            ref = system.ref("store")
            for message in ["boom", 1, 2, 3, 4, 5]:
                await ref.send(message)
            await system.quiesce()
            assert seen == ["boom", "boom", 1, 2, 3, 4, 5]  # redelivered, then the rest
            assert system.statistics().actors["store"].restarts == 1
            assert system.statistics().in_flight == 0

    async def test_with_wake_after_1_settle_is_quiesce(self):
        spec, seen = lazy(wake_after=1)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()
            await system.ref("store").send("x")
            await system.settle()
            assert seen == ["x"]

    async def test_parked_messages_are_handled_before_the_actor_stops(
        self, autojump_clock: MockClock
    ):
        # Leaving without quiesce(): the messages were held back only to batch them, so
        # the graceful stop handles them first instead of dead-lettering them.
        spec, seen = lazy(wake_after=8)
        with trio.move_on_after(10) as scope:
            async with open_actor_system(spec, asyncio_loop=False) as system:
                await system.settle()
                for n in range(3):
                    await system.ref("store").send(n)
                await system.settle()
                assert seen == []  # still parked
        assert not scope.cancelled_caught
        assert seen == [0, 1, 2]
        stats = system.statistics()
        assert (stats.dead_letters, stats.in_flight) == (0, 0)


class Forwarder(Actor):
    """Sends ``("relayed", chain, n)`` to the store for each n down to 0."""

    async def handle(self, message: Any) -> None:
        chain, n = message
        await self.context.system.ref("store").send(("relayed", chain, n))
        if n > 0:
            await self.context.ref.send((chain, n - 1))


operations = st.lists(
    st.one_of(
        st.tuples(st.just("direct"), st.just(0)),
        st.tuples(st.just("relay"), st.integers(0, 5)),
        st.tuples(st.just("ask"), st.just(0)),
        st.tuples(st.just("settle"), st.just(0)),
        st.tuples(st.just("quiesce"), st.just(0)),
    ),
    max_size=25,
)


class TestLazyWakeProperties:
    @settings(max_examples=60, deadline=None)
    @given(ops=operations, wake_after=st.integers(1, 6))
    def test_every_message_is_handled_once_in_order_and_the_barriers_hold(
        self, ops: list[tuple[str, int]], wake_after: int
    ) -> None:
        trio.run(self.scenario, ops, wake_after)

    @staticmethod
    async def scenario(ops: list[tuple[str, int]], wake_after: int) -> None:
        seen: list[Any] = []
        box = MailboxSpec(16, Overflow.BLOCK, wake_after=wake_after)
        spec = SupervisorSpec(
            "root",
            [
                ChildSpec("store", lambda: Recorder(seen), mailbox=box),
                ChildSpec("relay", Forwarder),
            ],
        )
        sent: list[Any] = []  # what the test itself sent to the store, in order
        chains: dict[int, int] = {}  # chain -> its first n (it sends n, n-1, ..., 0)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            store, relay = system.ref("store"), system.ref("relay")
            for step, (kind, n) in enumerate(ops):
                if kind == "direct":
                    sent.append(("direct", step))
                    await store.send(("direct", step))
                elif kind == "relay":
                    chains[step] = n
                    await relay.send((step, n))
                elif kind == "ask":
                    sent.append(("ask", step))
                    await store.ask(("ask", step))
                    handled = [m for m in seen if m[0] in ("direct", "ask")]
                    assert handled == sent  # FIFO: everything sent before it, handled
                elif kind == "settle":
                    await system.settle()
                    stats = system.statistics()
                    # only what waits parked in the store's mailbox is still in flight
                    assert stats.actors["relay"].mailbox_depth == 0
                    assert stats.in_flight == stats.actors["store"].mailbox_depth
                    assert stats.in_flight < wake_after  # it would have been woken
                else:
                    await system.quiesce()
                    assert system.statistics().in_flight == 0
                    assert [m for m in seen if m[0] in ("direct", "ask")] == sent
            await system.quiesce()
            stats = system.statistics()
        assert stats.in_flight == 0
        assert stats.dead_letters == 0
        assert [m for m in seen if m[0] in ("direct", "ask")] == sent
        for chain, first in chains.items():
            relayed = [m[2] for m in seen if m[0] == "relayed" and m[1] == chain]
            assert relayed == list(range(first, -1, -1))
        # each message handled once (the recorder numbers its answers by count)
        assert len(seen) == len(sent) + sum(first + 1 for first in chains.values())
