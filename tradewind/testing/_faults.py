"""Faults a harness scenario injects: crash an actor, drop the broker, lose the store.

Each hook is a plain frozen value built by a small function (`crash`,
`disconnect_broker`, `store_unavailable`) and handed to `open_harness(faults=[...])`. A
scenario is then data: the same list gives the same run, which is what makes a
fault-injection test deterministic and its digest comparable run to run.
"""

# Design notes
# ------------
# * Values, not methods on a running harness: a crash plan wraps the actor factories and
#   the paper broker takes its faults when it is made, both before the tree starts. A
#   method called mid-run would have to patch live objects; a value given up front cannot
#   arrive too late.
# * The store outage is measured in virtual seconds since the harness started (the
#   harness's `now`), not in bar time: the store knows nothing of bars, and a window on
#   the clock is what an outage is. Under the harness's default pacing one virtual second
#   passes per second of bar time, so ``(t1, t2)`` maps onto the replay's timeline.
# * `store_unavailable` raises `StoreUnavailable` from the backend under the real `Store`,
#   so the store's own code (and the persistence actor's retries, buffering and the risk
#   halt) runs exactly as in an outage of the database.

from __future__ import annotations

from typing import Literal

import attrs

from tradewind.actors._tree import ACTOR_PATHS

__all__ = [
    "BrokerDisconnect",
    "Crash",
    "Fault",
    "StoreOutage",
    "crash",
    "disconnect_broker",
    "store_unavailable",
]


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        msg = f"{attribute.name}: must be >= 1, got {value}"
        raise ValueError(msg)


def _actor_path(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    # A misspelt path would match no actor: the crash would never fire and a test of
    # containment would pass without anything having crashed.
    if value not in ACTOR_PATHS:
        expected = ", ".join(repr(p) for p in ACTOR_PATHS)
        msg = f"crash: no actor at path {value!r}; expected one of {expected}"
        raise ValueError(msg)


@attrs.frozen
class Crash:
    """Crash the actor at `path` once, at its `number`-th message or send (see `crash`)."""

    path: str = attrs.field(validator=_actor_path)
    number: int = attrs.field(validator=_positive)
    point: Literal["message", "send"] = "message"


@attrs.frozen
class BrokerDisconnect:
    """Drop the paper broker's connection at bar time `at` (see `disconnect_broker`)."""

    at: int
    failed_reconnects: int = 0


@attrs.frozen
class StoreOutage:
    """The store is unreachable from virtual second `start` to `end` (see `store_unavailable`)."""

    start: float
    end: float

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            msg = f"store_unavailable: need 0 <= t1 < t2, got ({self.start}, {self.end})"
            raise ValueError(msg)

    def covers(self, now: float) -> bool:
        """Whether the store is down at virtual second `now` (start inclusive, end exclusive)."""
        return self.start <= now < self.end


#: Any fault `open_harness` accepts.
Fault = Crash | BrokerDisconnect | StoreOutage


def crash(path: str, *, at_message: int | None = None, at_send: int | None = None) -> Crash:
    """Crash one actor once, to see that the tree contains it.

    Args:
        path: the actor's path (``"feed"``, ``"persistence"``, ``"trading/orders"``,
            ``"trading/risk"``, ``"trading/strategy"``).
        at_message: the n-th message (from 1) the actor handles raises `InjectedCrash`
            before the handler sees it.
        at_send: instead, the n-th ``send``/``ask`` the actor's handlers make raises --
            a crash in the middle of a handler. All crashes of one scenario must use the
            same kind of point.

    Returns:
        The fault, for ``open_harness(faults=[...])``.

    Raises:
        ValueError: `path` names no actor of the tree, or not exactly one of
            `at_message` and `at_send` was given, or it is < 1.
    """
    if (at_message is None) == (at_send is None):
        msg = "crash: give exactly one of at_message and at_send"
        raise ValueError(msg)
    if at_message is not None:
        return Crash(path, at_message, "message")
    assert at_send is not None  # noqa: S101 -- checked just above; narrows for mypy
    return Crash(path, at_send, "send")


def disconnect_broker(*, at: int, failed_reconnects: int = 0) -> BrokerDisconnect:
    """Drop the paper broker's connection when the first bar with ``ts >= at`` arrives.

    The venue still trades that bar; its news is lost until the order actor reconnects
    and reconciles.

    Args:
        at: bar time, integer nanoseconds since the epoch.
        failed_reconnects: connection attempts refused after the drop before one succeeds
            (the largest value of a scenario applies to every drop).

    Returns:
        The fault, for ``open_harness(faults=[...])``.
    """
    return BrokerDisconnect(at, failed_reconnects)


def store_unavailable(*, between: tuple[float, float]) -> StoreOutage:
    """Make every store call fail with `StoreUnavailable` during a window of virtual time.

    Args:
        between: ``(t1, t2)``, virtual seconds since the harness started; calls made at
            ``t1 <= now < t2`` fail. The tree's start-up (migrations, the run record,
            the cold-start reads) always reaches the store.

    Returns:
        The fault, for ``open_harness(faults=[...])``.

    Raises:
        ValueError: the window is empty or starts before 0.
    """
    return StoreOutage(*between)
