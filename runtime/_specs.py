"""Specs: the declarative description of a supervision tree, and its validation.

Design notes
------------
* Specs are frozen attrs values: a tree is data that can be built, compared, printed and
  validated before anything runs. The runtime turns a validated tree into live cells.
* Validation walks the whole tree and reports *every* problem at once, each prefixed with
  the child's path (``trading/risk: mailbox capacity must be > 0, got 0``), in one
  ``InvalidSpec``. Field-level checks live here rather than in attrs validators so that
  the message can name the path, which a spec does not know about itself.
* Names are path segments, so they may not be empty or contain ``/``.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from tradewind.runtime._errors import InvalidSpec
from tradewind.runtime._intensity import Backoff

if TYPE_CHECKING:
    # attrs does not evaluate these annotations (they are postponed), and importing
    # Actor at run time would be circular: _actor builds on the specs.
    from tradewind.runtime._actor import Actor  # noqa: TC004


class Overflow(enum.Enum):
    """What a full mailbox does with one more message."""

    BLOCK = "block"
    """The sender waits until there is room (backpressure). The default."""
    REJECT = "reject"
    """The sender gets ``MailboxFull`` at once; the refusal is counted."""
    CONFLATE = "conflate"
    """A new message replaces a queued one with the same key (latest value wins)."""


class Restart(enum.Enum):
    """When a supervisor restarts a child that ended."""

    PERMANENT = "permanent"
    """Always: after a crash and after a normal stop."""
    TRANSIENT = "transient"
    """Only after a crash."""
    TEMPORARY = "temporary"
    """Never; its mailbox then dead-letters what it holds and whatever arrives."""


class RestartStrategy(enum.Enum):
    """Which children a supervisor restarts when one of them must be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that ended."""
    ONE_FOR_ALL = "one_for_all"
    """All children: the others are stopped in reverse start order, then all start again."""
    REST_FOR_ONE = "rest_for_one"
    """The child that ended and every child started after it."""


def _to_argv(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        # Not split into characters ("gateway" would run the program "g"): kept as it
        # is, so that validation reports it.
        return value  # type: ignore[return-value]
    return tuple(value)


def _to_children(
    value: Iterable[ChildSpec | ProcessSpec | SupervisorSpec],
) -> tuple[ChildSpec | ProcessSpec | SupervisorSpec, ...]:
    return tuple(value)


@attrs.frozen
class MailboxSpec:
    """The bounded mailbox of one actor.

    Args:
        capacity: how many messages it holds, > 0.
        overflow: the policy when it is full.
        key: for ``CONFLATE``, maps a message to its conflation key (e.g. the
            instrument); a queued message with the same key is replaced in place.
        wake_after: how many messages must be queued before a plain ``send`` wakes the
            idle consumer, 1 to ``capacity``. Above 1 the consumer drains in batches:
            until then the messages are *parked*, and an ask, a full mailbox or
            ``ActorSystem.quiesce()`` wakes it at once, while ``ActorSystem.settle()``
            does not (for an actor whose timing nobody waits on, e.g. persistence
            during a replay). 1, the default, wakes it on every message; a ``CONFLATE``
            mailbox always does. What a lazy mailbox holds is handled before its actor
            stops gracefully (not dead-lettered), within the shutdown timeout.
    """

    capacity: int = 1024
    overflow: Overflow = Overflow.BLOCK
    key: Callable[[Any], Hashable] | None = None
    wake_after: int = 1


@attrs.frozen
class ChildSpec:
    """One supervised actor.

    Args:
        name: its path segment, unique among its siblings.
        factory: builds a fresh ``Actor`` instance; called again on every restart.
        restart: the restart type.
        mailbox: its mailbox; the supervisor owns it and it survives restarts.
        handler_timeout: seconds one ``handle`` call may take before it is cancelled and
            treated as a crash; None for no limit.
        shutdown_timeout: seconds a graceful stop may take (finishing the message in hand)
            before the actor is cancelled; ``on_stop`` also gets at most this long.
        max_redeliveries: how many times the message in hand at a crash is redelivered to
            the next instance before it is dead-lettered.
    """

    name: str
    factory: Callable[[], Actor]
    restart: Restart = Restart.PERMANENT
    mailbox: MailboxSpec = attrs.field(factory=MailboxSpec)
    handler_timeout: float | None = None
    shutdown_timeout: float = 5.0
    max_redeliveries: int = 2


@attrs.frozen
class ProcessSpec:
    """One supervised external OS process.

    Its stdout and stderr lines are logged under its path. Exiting non-zero is a crash;
    exiting 0 is a normal stop. Stopping it sends SIGTERM, then SIGKILL after
    ``shutdown_timeout``.

    Args:
        name: its path segment, unique among its siblings.
        argv: the program and its arguments; not run through a shell.
        env: the complete environment, or None to inherit the runtime's.
        cwd: the working directory, or None for the runtime's.
        restart: the restart type.
        shutdown_timeout: seconds between SIGTERM and SIGKILL.
    """

    name: str
    argv: tuple[str, ...] = attrs.field(converter=_to_argv)
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0


@attrs.frozen
class SupervisorSpec:
    """A supervisor and its children, started in the order given.

    Args:
        name: its path segment (the root's name is used only in logs and errors).
        children: actors, processes and nested supervisors, in start order.
        strategy: which children to restart when one must be restarted.
        max_restarts: restarts allowed within ``within`` seconds; one more and the
            supervisor stops all its children and fails (its parent decides next).
        within: the intensity window in seconds.
        backoff: the delay policy before each restart.
        restart: how *its* parent treats it when it fails or ends.
    """

    name: str
    children: tuple[ChildSpec | ProcessSpec | SupervisorSpec, ...] = attrs.field(
        converter=_to_children
    )
    strategy: RestartStrategy = RestartStrategy.ONE_FOR_ONE
    max_restarts: int = 5
    within: float = 10.0
    backoff: Backoff = attrs.field(factory=Backoff)
    restart: Restart = Restart.PERMANENT


AnySpec = ChildSpec | ProcessSpec | SupervisorSpec


def _positive_finite(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _non_negative_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _fields(spec: object) -> dict[str, object]:
    # Read fields as plain objects: specs are often built from untyped data (config), so
    # the checks below must not trust the annotations.
    return attrs.asdict(spec, recurse=False)  # type: ignore[arg-type]


def _child_problems(spec: ChildSpec, where: str) -> list[str]:
    problems: list[str] = []
    f = _fields(spec)
    if not callable(f["factory"]):
        problems.append(f"{where}: factory must be callable, got {f['factory']!r}")
    if not isinstance(f["restart"], Restart):
        problems.append(f"{where}: restart must be a Restart, got {f['restart']!r}")
    box = f["mailbox"]
    if not isinstance(box, MailboxSpec):
        problems.append(f"{where}: mailbox must be a MailboxSpec, got {box!r}")
    else:
        b = _fields(box)
        capacity = b["capacity"]
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            problems.append(f"{where}: mailbox capacity must be an int > 0, got {capacity!r}")
        if not isinstance(b["overflow"], Overflow):
            problems.append(f"{where}: mailbox overflow must be an Overflow, got {b['overflow']!r}")
        if b["overflow"] is Overflow.CONFLATE and b["key"] is None:
            problems.append(f"{where}: mailbox overflow CONFLATE needs a key function")
        if b["key"] is not None and not callable(b["key"]):
            problems.append(f"{where}: mailbox key must be callable, got {b['key']!r}")
        wake_after = b["wake_after"]
        if (
            isinstance(wake_after, bool)
            or not isinstance(wake_after, int)
            or not 1 <= wake_after <= (capacity if isinstance(capacity, int) else wake_after)
        ):
            problems.append(
                f"{where}: mailbox wake_after must be an int from 1 to the capacity"
                f" ({capacity!r}), got {wake_after!r}"
            )
        elif wake_after != 1 and b["overflow"] is Overflow.CONFLATE:
            problems.append(
                f"{where}: mailbox wake_after must be 1 with CONFLATE, got {wake_after!r}"
                " (a conflating mailbox wakes its consumer on every message)"
            )
    if f["handler_timeout"] is not None and not _positive_finite(f["handler_timeout"]):
        problems.append(
            f"{where}: handler_timeout must be None or a number > 0, got {f['handler_timeout']!r}"
        )
    if not _positive_finite(f["shutdown_timeout"]):
        problems.append(
            f"{where}: shutdown_timeout must be a number > 0, got {f['shutdown_timeout']!r}"
        )
    if not _non_negative_int(f["max_redeliveries"]):
        problems.append(
            f"{where}: max_redeliveries must be an int >= 0, got {f['max_redeliveries']!r}"
        )
    return problems


def _process_problems(spec: ProcessSpec, where: str) -> list[str]:
    problems: list[str] = []
    f = _fields(spec)
    argv = f["argv"]
    if not isinstance(argv, tuple) or not argv or not all(isinstance(a, str) for a in argv):
        hint = " (one str is not split into arguments)" if isinstance(argv, str | bytes) else ""
        problems.append(f"{where}: argv must be a non-empty sequence of str, got {argv!r}{hint}")
    env = f["env"]
    if env is not None and (
        not isinstance(env, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        problems.append(f"{where}: env must be None or a mapping of str to str, got {env!r}")
    cwd = f["cwd"]
    if cwd is not None and not isinstance(cwd, str | os.PathLike):
        problems.append(f"{where}: cwd must be None or a path, got {cwd!r}")
    if not isinstance(f["restart"], Restart):
        problems.append(f"{where}: restart must be a Restart, got {f['restart']!r}")
    if not _positive_finite(f["shutdown_timeout"]):
        problems.append(
            f"{where}: shutdown_timeout must be a number > 0, got {f['shutdown_timeout']!r}"
        )
    return problems


def _supervisor_problems(spec: SupervisorSpec, where: str) -> list[str]:
    problems: list[str] = []
    f = _fields(spec)
    if not isinstance(f["strategy"], RestartStrategy):
        problems.append(f"{where}: strategy must be a RestartStrategy, got {f['strategy']!r}")
    if not _non_negative_int(f["max_restarts"]):
        problems.append(f"{where}: max_restarts must be an int >= 0, got {f['max_restarts']!r}")
    if not _positive_finite(f["within"]):
        problems.append(f"{where}: within must be a number > 0, got {f['within']!r}")
    if not isinstance(f["backoff"], Backoff):
        problems.append(f"{where}: backoff must be a Backoff, got {f['backoff']!r}")
    if not isinstance(f["restart"], Restart):
        problems.append(f"{where}: restart must be a Restart, got {f['restart']!r}")
    seen: set[str] = set()
    children: tuple[object, ...] = tuple(spec.children)
    for child in children:
        if not isinstance(child, ChildSpec | ProcessSpec | SupervisorSpec):
            problems.append(
                f"{where}: child {child!r} is not a ChildSpec/ProcessSpec/SupervisorSpec"
            )
            continue
        name: object = child.name
        child_where = f"{where}/{name}" if where else str(name)
        if not isinstance(name, str) or not name or "/" in name:
            problems.append(
                f"{child_where}: name must be a non-empty str without '/', got {name!r}"
            )
        elif name in seen:
            problems.append(f"{child_where}: duplicate name {name!r} under {where or 'the root'}")
        else:
            seen.add(name)
        problems.extend(spec_problems(child, child_where))
    return problems


def spec_problems(spec: AnySpec, where: str = "") -> list[str]:
    """Every problem in a spec tree, one line each, prefixed with its path.

    Args:
        spec: the root of the (sub)tree.
        where: the path of ``spec``; "" for the root.

    Returns:
        The problems found, in tree order; empty when the tree is valid.
    """
    node: object = spec
    if isinstance(node, SupervisorSpec):
        return _supervisor_problems(node, where)
    if isinstance(node, ChildSpec):
        return _child_problems(node, where or node.name)
    if isinstance(node, ProcessSpec):
        return _process_problems(node, where or node.name)
    return [f"{where or 'root'}: not a spec: {node!r}"]


def validate_spec(spec: AnySpec) -> None:
    """Raise ``InvalidSpec`` listing every problem of a tree; return if it is valid.

    Raises:
        InvalidSpec: with one line per problem.
    """
    problems = spec_problems(spec)
    if problems:
        raise InvalidSpec("invalid supervision tree:\n" + "\n".join(f"  - {p}" for p in problems))
