"""quiesce(): returns only once every cascade of messages has fully finished."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import pytest
import structlog
import trio
import trio.testing
from tradewind.runtime import Actor, ChildSpec, MailboxSpec, SupervisorSpec, open_actor_system

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio.testing import MockClock


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[list[Any]]:
    """Capture the runtime's logs instead of rendering them (crash tracebacks are slow)."""
    with structlog.testing.capture_logs() as logs:
        yield logs


class TestQuiesce:
    async def test_waits_for_a_cascade_a_b_c_b(self, autojump_clock: MockClock):
        log: list[tuple[str, Any]] = []

        class A(Actor):
            async def handle(self, message: Any) -> None:
                await trio.sleep(1)
                log.append(("a", message))
                await self.context.system.ref("b").send(("from a", message))

        class B(Actor):
            async def handle(self, message: Any) -> None:
                await trio.sleep(2)
                log.append(("b", message))
                if message[0] == "from a":
                    await self.context.system.ref("c").send(message[1])

        class C(Actor):
            async def handle(self, message: Any) -> None:
                await trio.sleep(3)
                log.append(("c", message))
                await self.context.system.ref("b").send(("from c", message))

        spec = SupervisorSpec("root", [ChildSpec("a", A), ChildSpec("b", B), ChildSpec("c", C)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("a").send("go")
            await system.quiesce()
            assert log == [
                ("a", "go"),
                ("b", ("from a", "go")),
                ("c", "go"),
                ("b", ("from c", "go")),
            ]
            assert system.statistics().in_flight == 0

    async def test_returns_at_once_when_idle(self, autojump_clock: MockClock):
        spec = SupervisorSpec("root", [])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            start = trio.current_time()
            await system.quiesce()
            assert trio.current_time() == start

    async def test_several_waiters_are_all_woken(self, autojump_clock: MockClock):
        class Slow(Actor):
            async def handle(self, message: Any) -> None:
                await trio.sleep(5)

        woken: list[int] = []
        spec = SupervisorSpec("root", [ChildSpec("s", Slow)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("s").send(1)

            async def waiter(n: int) -> None:
                await system.quiesce()
                woken.append(n)

            async with trio.open_nursery() as nursery:
                for n in range(3):
                    nursery.start_soon(waiter, n)
        assert sorted(woken) == [0, 1, 2]

    async def test_a_cancelled_waiter_leaves_and_the_others_are_still_woken(
        self, autojump_clock: MockClock
    ):
        class Slow(Actor):
            async def handle(self, message: Any) -> None:
                await trio.sleep(5)

        spec = SupervisorSpec("root", [ChildSpec("s", Slow)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("s").send(1)
            with trio.move_on_after(1) as scope:
                await system.quiesce()
            assert scope.cancelled_caught
            assert trio.current_time() == pytest.approx(1)
            await system.quiesce()  # not confused by the waiter that left
            assert trio.current_time() == pytest.approx(5)


class Holder(Actor):
    """Holds one unit of work per message and lets the test release it later."""

    held: ClassVar[list[Actor]] = []

    async def handle(self, message: Any) -> None:
        self.context.hold_in_flight()
        Holder.held.append(self)


class TestHeldWork:
    async def test_quiesce_waits_for_work_held_outside_the_mailbox(self, autojump_clock):
        Holder.held = []
        spec = SupervisorSpec("root", [ChildSpec("holder", Holder)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("holder").send("work")
            quiet = trio.Event()

            async def wait_quiet() -> None:
                await system.quiesce()
                quiet.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_quiet)
                await trio.testing.wait_all_tasks_blocked()
                assert Holder.held  # the message was handled ...
                assert not quiet.is_set()  # ... but the held unit keeps the system busy
                Holder.held[0].context.release_in_flight()
            assert quiet.is_set()


class TestHasRoom:
    async def test_has_room_turns_false_when_the_mailbox_is_full(self):
        gate = trio.Event()

        class Slow(Actor):
            async def handle(self, message: Any) -> None:
                await gate.wait()

        spec = SupervisorSpec("root", [ChildSpec("slow", Slow, mailbox=MailboxSpec(capacity=2))])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("slow")
            await ref.send(1)
            await trio.testing.wait_all_tasks_blocked()  # 1 is in hand, the mailbox empty
            assert ref.has_room()
            await ref.send(2)
            await ref.send(3)
            assert not ref.has_room()
            gate.set()
            await system.quiesce()
            assert ref.has_room()


class Relay(Actor):
    """Passes each message (an int) on to ``next`` until it reaches zero."""

    def __init__(self, seen: list[Any], next_path: str) -> None:
        self.seen = seen
        self.next_path = next_path

    async def handle(self, message: Any) -> None:
        self.seen.append((self.context.path, message))
        if message > 0:
            await self.context.system.ref(self.next_path).send(message - 1)


def relay_pair() -> tuple[SupervisorSpec, list[Any]]:
    seen: list[Any] = []
    spec = SupervisorSpec(
        "root",
        [ChildSpec("a", lambda: Relay(seen, "b")), ChildSpec("b", lambda: Relay(seen, "a"))],
    )
    return spec, seen


class TestWhenSettled:
    async def test_runs_at_once_when_the_system_is_settled(self):
        spec, _ = relay_pair()
        calls: list[int] = []
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()
            system.when_settled(lambda: calls.append(1))
            assert calls == [1]

    async def test_runs_once_when_the_cascade_has_finished_and_may_send_more(self):
        spec, seen = relay_pair()
        at_hook: list[int] = []
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()

            def hook() -> None:
                at_hook.append(len(seen))
                if len(at_hook) < 3:
                    system.ref("a").send_nowait(2)
                    system.when_settled(hook)  # armed again: after the next cascade

            await system.ref("a").send(3)
            system.when_settled(hook)
            assert at_hook == []  # the cascade 3, 2, 1, 0 is still to run
            await system.quiesce()
        # each call saw a whole cascade: 4 hops, then 3, then 3
        assert at_hook == [4, 7, 10]
        assert len(seen) == 10

    async def test_quiesce_waits_for_what_the_hook_sent(self):
        spec, seen = relay_pair()
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()
            system.when_settled(lambda: None)  # fires now; nothing armed afterwards
            await system.ref("a").send(1)
            system.when_settled(lambda: system.ref("b").send_nowait(0))
            await system.quiesce()
            assert seen == [("a", 1), ("b", 0), ("b", 0)]

    async def test_a_cancelled_hook_does_not_run(self):
        spec, _ = relay_pair()
        calls: list[str] = []

        def first() -> None:
            calls.append("first")

        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()
            await system.ref("a").send(5)
            system.when_settled(first)
            system.cancel_when_settled(first)
            system.cancel_when_settled(first)  # not armed: nothing to do
            await system.quiesce()
        assert calls == []

    async def test_hooks_run_oldest_first_and_one_that_sends_defers_the_rest(self):
        spec, seen = relay_pair()
        calls: list[tuple[str, int]] = []
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.settle()

            def sender() -> None:
                calls.append(("sender", len(seen)))
                system.ref("a").send_nowait(1)

            def watcher() -> None:
                calls.append(("watcher", len(seen)))

            await system.ref("a").send(2)
            system.when_settled(sender)
            system.when_settled(watcher)
            await system.quiesce()
        # the sender ran after the first cascade (3 hops); the watcher only once the
        # cascade the sender started had finished too (2 more)
        assert calls == [("sender", 3), ("watcher", 5)]
