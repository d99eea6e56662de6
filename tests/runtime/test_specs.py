"""Spec validation: every problem of a tree is reported at once, with its path."""

from __future__ import annotations

import pytest
from tradewind.runtime import (
    Actor,
    ChildSpec,
    InvalidSpec,
    MailboxSpec,
    Overflow,
    ProcessSpec,
    SupervisorSpec,
    open_actor_system,
)

started: list[str] = []


class Recorder(Actor):
    async def on_start(self) -> None:
        started.append(self.context.path)

    async def handle(self, message: object) -> None:
        return None


def child(name: str, **kwargs: object) -> ChildSpec:
    return ChildSpec(name, Recorder, **kwargs)  # type: ignore[arg-type]


class TestValidation:
    async def test_duplicate_sibling_names_are_refused_before_anything_starts(self):
        started.clear()
        spec = SupervisorSpec("root", [child("a"), child("a")])
        with pytest.raises(InvalidSpec, match="a: duplicate name 'a'"):
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover - never reached
        assert started == []

    async def test_non_positive_capacity_names_the_path(self):
        spec = SupervisorSpec(
            "root",
            [SupervisorSpec("trading", [child("risk", mailbox=MailboxSpec(capacity=0))])],
        )
        with pytest.raises(InvalidSpec, match=r"trading/risk: mailbox capacity must be an int > 0"):
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover

    @pytest.mark.parametrize("wake_after", [0, 9, True, 2.5])
    async def test_wake_after_outside_one_to_the_capacity_is_refused(self, wake_after):
        spec = SupervisorSpec(
            "root", [child("store", mailbox=MailboxSpec(8, wake_after=wake_after))]
        )
        with pytest.raises(
            InvalidSpec, match=r"store: mailbox wake_after must be an int from 1 to the capacity"
        ):
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover

    async def test_lazy_wake_up_is_refused_with_conflate(self):
        box = MailboxSpec(8, Overflow.CONFLATE, key=lambda m: m, wake_after=4)
        spec = SupervisorSpec("root", [child("md", mailbox=box)])
        with pytest.raises(InvalidSpec, match="md: mailbox wake_after must be 1 with CONFLATE"):
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover

    async def test_conflate_without_key_is_refused(self):
        spec = SupervisorSpec("root", [child("feed", mailbox=MailboxSpec(8, Overflow.CONFLATE))])
        with pytest.raises(InvalidSpec, match="feed: mailbox overflow CONFLATE needs a key"):
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover

    async def test_every_problem_is_listed_together(self):
        spec = SupervisorSpec(
            "root",
            [
                child("a", handler_timeout=0),
                child("b/c"),
                child("d", max_redeliveries=-1),
                ProcessSpec("p", []),
            ],
            max_restarts=-1,
            within=0,
        )
        with pytest.raises(InvalidSpec) as caught:
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover
        text = str(caught.value)
        for fragment in (
            ": max_restarts must be an int >= 0",
            ": within must be a number > 0",
            "a: handler_timeout must be None or a number > 0",
            "b/c: name must be a non-empty str without '/'",
            "d: max_redeliveries must be an int >= 0",
            "p: argv must be a non-empty sequence of str",
        ):
            assert fragment in text

    @pytest.mark.parametrize(
        ("kwargs", "fragment"),
        [
            ({"factory": 3}, "factory must be callable"),
            ({"restart": "always"}, "restart must be a Restart"),
            ({"mailbox": 5}, "mailbox must be a MailboxSpec"),
            ({"mailbox": MailboxSpec(4, "drop")}, "mailbox overflow must be"),  # type: ignore[arg-type]
            ({"mailbox": MailboxSpec(4, Overflow.CONFLATE, 7)}, "mailbox key must be"),  # type: ignore[arg-type]
            ({"shutdown_timeout": 0}, "shutdown_timeout must be a number > 0"),
        ],
    )
    async def test_malformed_child_fields_are_named(self, kwargs, fragment):
        fields = {"factory": Recorder, **kwargs}
        spec = SupervisorSpec("root", [ChildSpec("x", **fields)])
        with pytest.raises(InvalidSpec, match=f"x: {fragment}"):
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover

    @pytest.mark.parametrize(
        ("spec", "fragment"),
        [
            (SupervisorSpec("r", [], strategy="all"), "strategy must be a RestartStrategy"),  # type: ignore[arg-type]
            (SupervisorSpec("r", [], backoff=1), "backoff must be a Backoff"),  # type: ignore[arg-type]
            (SupervisorSpec("r", [], restart=None), "restart must be a Restart"),  # type: ignore[arg-type]
            (SupervisorSpec("r", [object()]), "is not a ChildSpec"),  # type: ignore[list-item]
            (SupervisorSpec("r", [ProcessSpec("p", ["x"], restart=1)]), "p: restart must be"),  # type: ignore[arg-type]
            (SupervisorSpec("r", [ProcessSpec("p", ["x"], shutdown_timeout=-1)]), "p: shutdown"),
            (SupervisorSpec("r", [ProcessSpec("p", "gateway")]), "p: argv must .* 'gateway'"),
            (SupervisorSpec("r", [ProcessSpec("p", ["x"], env={"A": 1})]), "p: env must be"),  # type: ignore[dict-item]
            (SupervisorSpec("r", [ProcessSpec("p", ["x"], env=["A=1"])]), "p: env must be"),  # type: ignore[arg-type]
            (SupervisorSpec("r", [ProcessSpec("p", ["x"], cwd=5)]), "p: cwd must be"),  # type: ignore[arg-type]
        ],
    )
    async def test_malformed_supervisor_and_process_fields_are_named(self, spec, fragment):
        with pytest.raises(InvalidSpec, match=fragment):
            async with open_actor_system(spec, asyncio_loop=False):
                pass  # pragma: no cover

    async def test_the_root_must_be_a_supervisor(self):
        with pytest.raises(InvalidSpec, match="root must be a SupervisorSpec"):
            async with open_actor_system(child("a"), asyncio_loop=False):  # type: ignore[arg-type]
                pass  # pragma: no cover

    async def test_dead_letter_capacity_must_be_positive(self):
        with pytest.raises(InvalidSpec, match="dead_letter_capacity"):
            async with open_actor_system(
                SupervisorSpec("r", []), dead_letter_capacity=0, asyncio_loop=False
            ):
                pass  # pragma: no cover

    def test_a_valid_tree_has_no_problems(self):
        from tradewind.runtime._specs import spec_problems

        spec = SupervisorSpec("root", [child("a"), SupervisorSpec("s", [child("a")])])
        assert spec_problems(spec) == []

    def test_a_non_spec_is_reported(self):
        from tradewind.runtime._specs import spec_problems

        assert spec_problems(42) == ["root: not a spec: 42"]  # type: ignore[arg-type]
