"""Supervision: crashes, redelivery, poison messages, timeouts, strategies, intensity."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pytest
import structlog
import trio
import trio.testing
from tradewind.runtime import (
    Actor,
    Backoff,
    ChildSpec,
    HandlerTimeout,
    MailboxSpec,
    MessageDropped,
    Restart,
    RestartStrategy,
    SupervisorFailed,
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


EXACT = Backoff(initial=1.0, multiplier=2.0, maximum=100.0, jitter=0.0)
QUICK = Backoff(initial=0.01, multiplier=1.0, maximum=0.01, jitter=0.0)


class Boom(Exception):
    """The crash the test actors raise on purpose."""


class Journal:
    """What a family of actor instances did, shared across their restarts."""

    def __init__(self) -> None:
        self.instances = itertools.count(1)
        self.handled: list[tuple[str, int, Any]] = []
        self.lifecycle: list[tuple[str, str]] = []
        self.start_times: dict[str, list[float]] = {}
        self.crash_once: set[Any] = set()
        self.always_crash: set[Any] = set()
        self.crashed = trio.Event()

    def factory(self, name: str) -> Any:
        return lambda: Worker(self, name, next(self.instances))


class Worker(Actor):
    def __init__(self, journal: Journal, name: str, instance: int) -> None:
        self.journal = journal
        self.name = name
        self.instance = instance

    async def on_start(self) -> None:
        self.journal.lifecycle.append(("start", self.name))
        self.journal.start_times.setdefault(self.name, []).append(trio.current_time())

    async def handle(self, message: Any) -> Any:
        if message in self.journal.always_crash:
            self.journal.crashed.set()
            raise Boom(message)
        if message in self.journal.crash_once:
            self.journal.crash_once.discard(message)
            self.journal.crashed.set()
            raise Boom(message)
        if message == "hang":
            await trio.sleep_forever()
        self.journal.handled.append((self.name, self.instance, message))
        return (self.name, message)

    async def on_stop(self) -> None:
        self.journal.lifecycle.append(("stop", self.name))


def handled_by(journal: Journal, name: str) -> list[Any]:
    return [m for n, _, m in journal.handled if n == name]


class TestOneForOne:
    async def test_a_crash_restarts_only_that_actor(self, autojump_clock: MockClock):
        journal = Journal()
        spec = SupervisorSpec(
            "root",
            [
                ChildSpec("crashy", journal.factory("crashy")),
                ChildSpec("steady", journal.factory("steady")),
            ],
            backoff=EXACT,
        )
        journal.crash_once.add("boom")
        async with open_actor_system(spec, asyncio_loop=False) as system:
            crashy, steady = system.ref("crashy"), system.ref("steady")
            await crashy.send("boom")
            await journal.crashed.wait()
            # The crashy actor is down (in its 1 s backoff); its sibling keeps working.
            assert await steady.ask("while-down") == ("steady", "while-down")
            assert not crashy.statistics().running
            for message in ["a", "b", "c", "d", "e"]:
                await crashy.send(message)
            await system.quiesce()
            stats = system.statistics().actors
        assert stats["crashy"].restarts == 1
        assert stats["crashy"].crashes == 1
        assert stats["steady"].restarts == 0
        # The message in hand was redelivered first, then everything queued, in order,
        # all to the new instance.
        crashy_log = [(i, m) for n, i, m in journal.handled if n == "crashy"]
        assert crashy_log == [(3, m) for m in ["boom", "a", "b", "c", "d", "e"]]

    async def test_a_temporary_actor_is_not_restarted_and_dead_letters_its_mail(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.always_crash.add("boom")
        spec = SupervisorSpec(
            "root",
            [
                ChildSpec(
                    "temp", journal.factory("temp"), restart=Restart.TEMPORARY, max_redeliveries=5
                )
            ],
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            temp = system.ref("temp")
            await temp.send("boom")
            await system.quiesce()
            await temp.send("after")
            with pytest.raises(MessageDropped):
                await temp.ask("question")
            await system.quiesce()
            letters = [(d.message, d.reason) for d in system.dead_letters]
            assert not temp.statistics().running
        assert letters == [
            ("boom", "actor stopped"),
            ("after", "actor stopped"),
            ("question", "actor stopped"),
        ]

    async def test_a_transient_actor_that_stops_normally_is_not_restarted(
        self, autojump_clock: MockClock
    ):
        class Once(Actor):
            async def handle(self, message: object) -> None:
                self.context.stop()

        spec = SupervisorSpec("root", [ChildSpec("once", Once, restart=Restart.TRANSIENT)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("once").send("stop please")
            await system.quiesce()
            stats = system.ref("once").statistics()
        assert (stats.processed, stats.restarts, stats.running) == (1, 0, False)

    async def test_a_permanent_actor_that_stops_normally_is_restarted(
        self, autojump_clock: MockClock
    ):
        instances: list[int] = []

        class Restartable(Actor):
            async def on_start(self) -> None:
                instances.append(len(instances))

            async def handle(self, message: object) -> object:
                if message == "stop":
                    self.context.stop()
                return len(instances)

        spec = SupervisorSpec("root", [ChildSpec("p", Restartable)], backoff=QUICK)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("p").send("stop")
            await system.ref("p").send("stop")
            assert await system.ref("p").ask("which?") == 3
        assert instances == [0, 1, 2]


class TestPoisonMessages:
    async def test_a_poison_message_is_redelivered_then_dead_lettered(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.always_crash.add("poison")
        hooked: list[Any] = []
        spec = SupervisorSpec(
            "root",
            [ChildSpec("worker", journal.factory("worker"), max_redeliveries=2)],
            backoff=QUICK,
        )
        async with open_actor_system(
            spec, asyncio_loop=False, on_dead_letter=hooked.append
        ) as system:
            worker = system.ref("worker")
            await worker.send("poison")
            await worker.send("next")
            await system.quiesce()
            stats = worker.statistics()
            letters = system.dead_letters
            totals = system.statistics()
        assert [(d.message, d.reason, d.attempts) for d in letters] == [("poison", "poison", 3)]
        assert isinstance(letters[0].error, Boom)
        assert hooked == list(letters)
        assert (stats.crashes, stats.redelivered, stats.dead_letters) == (3, 2, 1)
        assert handled_by(journal, "worker") == ["next"]
        assert totals.dead_letters == 1
        assert totals.in_flight == 0

    async def test_an_ask_whose_message_is_poison_fails_with_message_dropped(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.always_crash.add("poison")
        spec = SupervisorSpec(
            "root",
            [ChildSpec("worker", journal.factory("worker"), max_redeliveries=0)],
            backoff=QUICK,
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            with pytest.raises(MessageDropped) as caught:
                await system.ref("worker").ask("poison")
        assert isinstance(caught.value.__cause__, Boom)

    async def test_a_failing_dead_letter_hook_is_logged_and_ignored(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.always_crash.add("poison")

        def broken_hook(_: object) -> None:
            raise RuntimeError("storage down")

        spec = SupervisorSpec(
            "root", [ChildSpec("w", journal.factory("w"), max_redeliveries=0)], backoff=QUICK
        )
        with structlog.testing.capture_logs() as logs:
            async with open_actor_system(
                spec, asyncio_loop=False, on_dead_letter=broken_hook
            ) as system:
                await system.ref("w").send("poison")
                await system.ref("w").send("fine")
                await system.quiesce()
        assert handled_by(journal, "w") == ["fine"]
        assert any(e["event"] == "dead_letter_hook_failed" for e in logs)

    async def test_a_retired_actors_attempts_do_not_count_against_its_next_message(
        self, autojump_clock: MockClock
    ):
        # m1 crashes "a" until its TEMPORARY supervisor gives up (m1 dead-lettered with
        # the actor). A crash of "b" then restarts "mid", which revives "sub" and "a". A
        # new message that crashes once must get its redelivery: the count of m1's
        # attempts went with m1.
        journal = Journal()
        journal.always_crash.add("m1")
        journal.crash_once.update({"boom", "m2"})
        sub = SupervisorSpec(
            "sub",
            [ChildSpec("a", journal.factory("a"), max_redeliveries=2)],
            restart=Restart.TEMPORARY,
            max_restarts=1,
            backoff=QUICK,
        )
        mid = SupervisorSpec(
            "mid", [sub, ChildSpec("b", journal.factory("b"))], max_restarts=0, backoff=QUICK
        )
        spec = SupervisorSpec("top", [mid], backoff=QUICK)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            a, b = system.ref("mid/sub/a"), system.ref("mid/b")
            await a.send("m1")
            await system.quiesce()
            await b.send("boom")
            await system.quiesce()
            assert a.statistics().running
            await a.send("m2")
            await system.quiesce()
            letters = [(d.message, d.reason) for d in system.dead_letters]
        assert letters == [("m1", "actor stopped")]
        assert handled_by(journal, "a") == ["m2"]

    async def test_a_settle_hook_does_not_fire_between_a_poison_message_and_the_restart(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.always_crash.add("poison")
        spec = SupervisorSpec(
            "root", [ChildSpec("w", journal.factory("w"), max_redeliveries=0)], backoff=QUICK
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            worker = system.ref("w")
            await worker.send("poison")
            seen: list[tuple[int, bool, int]] = []
            stats = worker.statistics

            def hook() -> None:
                seen.append((system.statistics().in_flight, stats().running, stats().restarts))

            system.when_settled(hook)
            await system.quiesce()
        assert seen == [(0, True, 1)]


class TestStoppingWhileRestarting:
    async def test_a_shutdown_during_a_restart_is_graceful(self, autojump_clock: MockClock):
        # The stop can land after the supervisor started the new incarnation's task and
        # before that task first ran; it used to be forgotten there, and the system then
        # waited the whole shutdown timeout before cancelling. Which of the two runs
        # first is the scheduler's choice: try it many times.
        waited = []
        for _ in range(40):
            journal = Journal()
            journal.crash_once.add("crash")
            spec = SupervisorSpec(
                "root",
                [ChildSpec("a", journal.factory("a"), shutdown_timeout=5, max_redeliveries=0)],
                backoff=Backoff(initial=1.0, multiplier=1.0, maximum=1.0, jitter=0.0),
            )
            async with open_actor_system(spec, asyncio_loop=False) as system:
                await system.ref("a").send("crash")
                await trio.sleep(1.0)  # the stop, in the tick the backoff ends
                leaving = trio.current_time()
            waited.append(trio.current_time() - leaving)
        assert max(waited) == 0

    async def test_a_lazy_mailbox_drains_in_order_on_a_stop_during_a_restart(
        self, autojump_clock: MockClock
    ):
        # m1 crashes and is held for redelivery; m2 and m3 wait in a lazy mailbox. A
        # graceful stop handles them all, m1 first (it came first), none dead-lettered.
        handled: list[str] = []
        crash_once = {"m1"}
        starts: list[float] = []

        class Slow(Actor):
            async def on_start(self) -> None:
                starts.append(trio.current_time())
                if len(starts) > 1:
                    await trio.sleep(1)  # a slow restart

            async def handle(self, message: str) -> None:
                if message in crash_once:
                    crash_once.discard(message)
                    raise Boom(message)
                handled.append(message)

        spec = SupervisorSpec(
            "root",
            [ChildSpec("a", Slow, mailbox=MailboxSpec(capacity=10, wake_after=2))],
            backoff=QUICK,
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            a = system.ref("a")
            await a.send("m1")
            await a.send("m2")
            await trio.sleep(0.5)  # the restart is under way
            await a.send("m3")
        assert handled == ["m1", "m2", "m3"]
        assert system.dead_letters == ()


class TestHandlerTimeout:
    async def test_a_handler_past_its_deadline_is_cancelled_and_counts_as_a_crash(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        spec = SupervisorSpec(
            "root",
            [ChildSpec("slow", journal.factory("slow"), handler_timeout=2.0, max_redeliveries=0)],
            backoff=QUICK,
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            slow = system.ref("slow")
            start = trio.current_time()
            await slow.send("hang")
            assert await slow.ask("after") == ("slow", "after")
            elapsed = trio.current_time() - start
            stats = slow.statistics()
            letters = system.dead_letters
        assert 2.0 <= elapsed < 3.0
        assert stats.crashes == 1
        assert [d.message for d in letters] == ["hang"]
        assert isinstance(letters[0].error, HandlerTimeout)

    async def test_a_handler_within_its_deadline_replies(self, autojump_clock: MockClock):
        journal = Journal()
        spec = SupervisorSpec("root", [ChildSpec("w", journal.factory("w"), handler_timeout=2.0)])
        async with open_actor_system(spec, asyncio_loop=False) as system:
            assert await system.ref("w").ask("q") == ("w", "q")
            await system.ref("w").send("plain")
            await system.quiesce()
        assert handled_by(journal, "w") == ["q", "plain"]


def three(journal: Journal, strategy: RestartStrategy) -> SupervisorSpec:
    return SupervisorSpec(
        "root",
        [ChildSpec(n, journal.factory(n)) for n in ("a", "b", "c")],
        strategy=strategy,
        backoff=QUICK,
    )


class TestStrategies:
    async def test_one_for_all_restarts_every_child_in_start_order(self, autojump_clock: MockClock):
        journal = Journal()
        journal.crash_once.add("boom")
        async with open_actor_system(
            three(journal, RestartStrategy.ONE_FOR_ALL), asyncio_loop=False
        ) as system:
            await system.ref("b").send("boom")
            await system.quiesce()
            restarts = {p: s.restarts for p, s in system.statistics().actors.items()}
        assert journal.lifecycle[3:9] == [
            ("stop", "b"),
            ("stop", "c"),
            ("stop", "a"),
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
        ]
        assert restarts == {"a": 1, "b": 1, "c": 1}

    async def test_rest_for_one_restarts_the_child_and_those_started_after_it(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.crash_once.add("boom")
        async with open_actor_system(
            three(journal, RestartStrategy.REST_FOR_ONE), asyncio_loop=False
        ) as system:
            await system.ref("b").send("boom")
            await system.quiesce()
            restarts = {p: s.restarts for p, s in system.statistics().actors.items()}
        assert journal.lifecycle[3:7] == [
            ("stop", "b"),
            ("stop", "c"),
            ("start", "b"),
            ("start", "c"),
        ]
        assert restarts == {"a": 0, "b": 1, "c": 1}

    async def test_one_for_all_does_not_restart_a_temporary_sibling(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.crash_once.add("boom")
        spec = SupervisorSpec(
            "root",
            [
                ChildSpec("a", journal.factory("a")),
                ChildSpec("t", journal.factory("t"), restart=Restart.TEMPORARY),
            ],
            strategy=RestartStrategy.ONE_FOR_ALL,
            backoff=QUICK,
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("a").send("boom")
            await system.quiesce()
            running = {p: s.running for p, s in system.statistics().actors.items()}
        assert running == {"a": True, "t": False}


class TestIntensity:
    async def test_backoff_delays_follow_the_policy_under_the_mock_clock(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        for n in range(3):
            journal.crash_once.add(f"boom{n}")
        spec = SupervisorSpec(
            "root",
            [ChildSpec("w", journal.factory("w"), max_redeliveries=0)],
            backoff=EXACT,
            max_restarts=10,
            within=1000,
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            for n in range(3):
                await system.ref("w").send(f"boom{n}")
            await system.quiesce()
        starts = journal.start_times["w"]
        gaps = [round(b - a, 9) for a, b in itertools.pairwise(starts)]
        assert gaps == [1.0, 2.0, 4.0]

    async def test_exceeding_the_intensity_fails_the_root_and_ends_the_system(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.always_crash.add("boom")
        spec = SupervisorSpec(
            "root",
            [ChildSpec("w", journal.factory("w"), max_redeliveries=10)],
            max_restarts=2,
            within=60,
            backoff=QUICK,
        )

        async def crash_loop() -> None:
            async with open_actor_system(spec, asyncio_loop=False) as system:
                await system.ref("w").send("boom")
                await trio.sleep_forever()  # ended by the root's failure

        with pytest.raises(SupervisorFailed) as caught:
            await crash_loop()
        assert caught.value.path == "root"
        assert isinstance(caught.value.__cause__, Boom)
        assert len([e for e in journal.lifecycle if e == ("start", "w")]) == 3

    async def test_a_failed_child_supervisor_is_handled_by_its_parents_strategy(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.crash_once.update({"boom1", "boom2"})
        inner = SupervisorSpec(
            "inner",
            [ChildSpec("w", journal.factory("w"), max_redeliveries=5)],
            max_restarts=1,
            within=60,
            backoff=QUICK,
        )
        spec = SupervisorSpec(
            "root",
            [ChildSpec("a", journal.factory("a")), inner, ChildSpec("c", journal.factory("c"))],
            strategy=RestartStrategy.REST_FOR_ONE,
            backoff=QUICK,
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            w = system.ref("inner/w")
            await w.send("boom1")
            await w.send("boom2")
            await w.send("ok")
            await system.quiesce()
            restarts = {p: s.restarts for p, s in system.statistics().actors.items()}
        # Two crashes within the window exceed inner's intensity of 1: inner fails, and
        # root (rest_for_one) restarts inner and c, but not a.
        assert restarts == {"a": 0, "inner/w": 2, "c": 1}
        assert handled_by(journal, "w") == ["boom1", "boom2", "ok"]

    async def test_a_restarted_supervisor_revives_its_retired_children(
        self, autojump_clock: MockClock
    ):
        journal = Journal()
        journal.crash_once.update({"temp-boom", "worker-boom"})
        inner = SupervisorSpec(
            "inner",
            [
                ChildSpec("temp", journal.factory("temp"), restart=Restart.TEMPORARY),
                ChildSpec("worker", journal.factory("worker")),
            ],
            max_restarts=0,
            backoff=QUICK,
        )
        spec = SupervisorSpec("root", [inner], backoff=QUICK)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            temp = system.ref("inner/temp")
            await temp.send("temp-boom")  # temporary: retired, its message dead-lettered
            await system.quiesce()
            assert not temp.statistics().running
            await system.ref("inner/worker").send("worker-boom")  # inner gives up
            await system.quiesce()
            # root restarted inner, which starts every child afresh, temp included
            assert await temp.ask("back?") == ("temp", "back?")
        assert [d.message for d in system.dead_letters] == ["temp-boom"]

    async def test_a_crash_in_on_start_counts_as_a_crash(self, autojump_clock: MockClock):
        attempts: list[int] = []

        class FlakyStart(Actor):
            async def on_start(self) -> None:
                attempts.append(1)
                if len(attempts) < 3:
                    raise Boom("not yet")

            async def handle(self, message: object) -> object:
                return message

        spec = SupervisorSpec("root", [ChildSpec("f", FlakyStart)], backoff=QUICK)
        async with open_actor_system(spec, asyncio_loop=False) as system:
            assert await system.ref("f").ask("up?") == "up?"
            assert system.ref("f").statistics().crashes == 2
        assert len(attempts) == 3

    async def test_a_factory_that_returns_a_non_actor_is_a_crash(self, autojump_clock: MockClock):
        def not_an_actor() -> Any:
            return object()

        spec = SupervisorSpec("root", [ChildSpec("bad", not_an_actor)], max_restarts=0)
        with pytest.raises(SupervisorFailed) as caught:
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover - the start already fails
        assert isinstance(caught.value.__cause__, TypeError)

    async def test_giving_up_names_the_actor_whose_crash_ended_a_nested_chain(
        self, autojump_clock: MockClock
    ):
        def not_an_actor() -> Any:
            return object()

        inner = SupervisorSpec("inner", [ChildSpec("bad", not_an_actor)], max_restarts=0)
        spec = SupervisorSpec("root", [inner], max_restarts=0)
        with pytest.raises(SupervisorFailed) as caught:
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover - the start already fails
        assert caught.value.child == "inner"  # the root gave up on its child supervisor
        actor, crash = caught.value.last_crash()
        assert actor == "inner/bad"
        assert isinstance(crash, TypeError)


class TestEveryCrashIsCounted:
    async def test_siblings_crashing_together_under_one_for_all_are_both_counted(
        self, autojump_clock: MockClock, quiet_logs: list[Any]
    ):
        # Both crash before the supervisor reacts; handling the first restarts both, so
        # the second one's exit event is stale -- but it was a crash all the same.
        journal = Journal()
        journal.crash_once.add("boom")
        journal.crash_once.add("bang")
        spec = SupervisorSpec(
            "root",
            [ChildSpec(n, journal.factory(n)) for n in ("a", "b")],
            strategy=RestartStrategy.ONE_FOR_ALL,
            backoff=QUICK,
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            system.ref("a").send_nowait("boom")
            system.ref("b").send_nowait("bang")
            await system.quiesce()
            crashes = {p: s.crashes for p, s in system.statistics().actors.items()}
        assert crashes == {"a": 1, "b": 1}
        logged = sorted(e["child"] for e in quiet_logs if e["event"] == "child_crashed")
        assert logged == ["a", "b"]

    async def test_a_crash_while_the_tree_stops_is_counted_and_logged(
        self, autojump_clock: MockClock, quiet_logs: list[Any]
    ):
        class LateCrash(Actor):
            async def handle(self, message: float) -> None:
                await trio.sleep(message)
                raise Boom(message)

        class SlowStop(Actor):
            async def handle(self, message: object) -> None:
                return None

            async def on_stop(self) -> None:
                await trio.sleep(3)

        spec = SupervisorSpec(
            "root",
            [ChildSpec("a", LateCrash), ChildSpec("b", LateCrash), ChildSpec("c", SlowStop)],
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await system.ref("a").send(2)  # raises while c's on_stop runs (t = 0..3)
            await system.ref("b").send(4)  # raises while b itself is being stopped (t = 3..)
            await trio.testing.wait_all_tasks_blocked()
        crashes = {p: s.crashes for p, s in system.statistics().actors.items()}
        assert crashes == {"a": 1, "b": 1, "c": 0}
        logged = [(e["child"], e["error"]) for e in quiet_logs if e["event"] == "child_crashed"]
        assert logged == [("a", "Boom(2)"), ("b", "Boom(4)")]
