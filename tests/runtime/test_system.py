"""The actor system's face: public names, refs, context, statistics, asyncio bridge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import structlog
import trio
import trio.testing
from tradewind.runtime import (
    Actor,
    ActorNotFound,
    ActorStatistics,
    ChildSpec,
    MailboxSpec,
    SupervisorSpec,
    open_actor_system,
)

from tradewind import runtime

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio.testing import MockClock


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[list[Any]]:
    with structlog.testing.capture_logs() as logs:
        yield logs


class Echo(Actor):
    async def handle(self, message: Any) -> Any:
        return message


class TestPublicSurface:
    def test_the_runtime_exports_its_contract(self):
        for name in [
            "Actor", "ActorContext", "ActorRef", "ActorSystem", "open_actor_system",
            "MailboxSpec", "Overflow", "ChildSpec", "Restart", "SupervisorSpec",
            "RestartStrategy", "Backoff", "ProcessSpec", "DeadLetter", "ActorStatistics",
            "ProcessStatistics", "SystemStatistics", "TradewindError", "MailboxFull",
            "MailboxClosed", "AskTimeout", "ActorNotFound", "SupervisorFailed", "InvalidSpec",
            "HandlerTimeout", "MessageDropped",
        ]:  # fmt: skip
            assert hasattr(runtime, name), name

    def test_errors_subclass_what_callers_catch(self):
        assert issubclass(runtime.MailboxFull, RuntimeError)
        assert issubclass(runtime.AskTimeout, TimeoutError)
        assert issubclass(runtime.HandlerTimeout, TimeoutError)
        assert issubclass(runtime.InvalidSpec, ValueError)
        assert issubclass(runtime.ActorNotFound, LookupError)
        for name in ["MailboxFull", "AskTimeout", "SupervisorFailed", "MessageDropped"]:
            assert issubclass(getattr(runtime, name), runtime.TradewindError)


class TestRefs:
    async def test_unknown_paths_raise_actor_not_found_listing_the_actors(
        self, autojump_clock: MockClock
    ):
        spec = SupervisorSpec("root", [SupervisorSpec("trading", [ChildSpec("risk", Echo)])])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            assert system.ref("trading/risk").path == "trading/risk"
            assert repr(system.ref("trading/risk")) == "<ActorRef 'trading/risk'>"
            with pytest.raises(ActorNotFound, match="trading/risk"):
                system.ref("risk")
            with pytest.raises(ActorNotFound):
                system.ref("trading")  # a supervisor has no mailbox
            assert system.name == "root"

    async def test_a_ref_is_stable_across_restarts(self, autojump_clock: MockClock):
        class CrashOnce(Actor):
            crashed = False

            async def handle(self, message: Any) -> Any:
                if not CrashOnce.crashed:
                    CrashOnce.crashed = True
                    raise RuntimeError("once")
                return message

        spec = SupervisorSpec("root", [ChildSpec("c", CrashOnce)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("c")
            await ref.send("x")
            assert await ref.ask("y") == "y"
            assert system.ref("c") is ref
            assert ref.statistics().restarts == 1


class TestContext:
    async def test_an_actor_knows_its_ref_path_clock_logger_and_system(
        self, autojump_clock: MockClock, quiet_logs: list[Any]
    ):
        seen: dict[str, Any] = {}

        class Curious(Actor):
            async def handle(self, message: Any) -> Any:
                ctx = self.context
                seen.update(
                    ref=ctx.ref, path=ctx.path, now=ctx.now(), clock=ctx.clock, system=ctx.system
                )
                ctx.log.info("hello")
                return None

        spec = SupervisorSpec("root", [ChildSpec("curious", Curious)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await trio.sleep(5)
            await system.ref("curious").ask("?")
            assert seen["ref"] is system.ref("curious")
            assert seen["system"] is system
        assert seen["path"] == "curious"
        assert seen["now"] == pytest.approx(5)
        assert seen["clock"] is autojump_clock
        assert {"event": "hello", "actor": "curious", "log_level": "info"}.items() <= next(
            e for e in quiet_logs if e["event"] == "hello"
        ).items()

    async def test_the_base_actor_requires_a_handle_override(self, autojump_clock: MockClock):
        spec = SupervisorSpec("root", [ChildSpec("bare", Actor, max_redeliveries=0)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("bare").send("x")
            await system.quiesce()
            letters = system.dead_letters
        assert isinstance(letters[0].error, NotImplementedError)


class TestSend:
    async def test_send_from_a_cancelled_scope_raises_and_enqueues_nothing(
        self, autojump_clock: MockClock
    ):
        spec = SupervisorSpec("root", [ChildSpec("e", Echo)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            ref = system.ref("e")
            with trio.CancelScope() as scope:
                scope.cancel()
                await ref.send("never")
            assert scope.cancelled_caught
            assert ref.statistics().accepted == 0

    async def test_send_with_room_does_not_yield_to_the_scheduler(self, autojump_clock: MockClock):
        """The fast path: a sender does not give up its turn while there is room."""
        handled: list[int] = []

        class Record(Actor):
            async def handle(self, message: int) -> None:
                handled.append(message)

        spec = SupervisorSpec("root", [ChildSpec("r", Record, mailbox=MailboxSpec(10))])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            for n in range(10):
                await system.ref("r").send(n)
            assert handled == []  # nothing ran in between
            await system.quiesce()
        assert handled == list(range(10))


class TestStatistics:
    async def test_statistics_are_frozen_snapshots(self, autojump_clock: MockClock):
        spec = SupervisorSpec("root", [ChildSpec("e", Echo)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            before = system.statistics()
            await system.ref("e").ask(1)
            after = system.statistics()
        assert isinstance(before.actors["e"], ActorStatistics)
        assert before.actors["e"].processed == 0
        assert after.actors["e"].processed == 1
        assert after.in_flight == 0
        assert dict(after.processes) == {}
        with pytest.raises(AttributeError):
            after.actors["e"].processed = 5  # type: ignore[misc]


class TestAsyncioLoop:
    async def test_actors_can_call_asyncio_code_through_the_system_loop(self):
        from tradewind.runtime._aio import aio_as_trio

        class UsesAsyncio(Actor):
            async def handle(self, message: Any) -> Any:
                async def double(x: int) -> int:
                    return x * 2

                return await aio_as_trio(double)(message)

        spec = SupervisorSpec("root", [ChildSpec("aio", UsesAsyncio)])
        async with open_actor_system(spec) as system:
            assert await system.ref("aio").ask(21) == 42
