"""Restart intensity and restart backoff: the pure arithmetic behind a supervisor.

Design notes
------------
* A supervisor gives up when it has restarted children more than ``max_restarts`` times
  within the last ``within`` seconds (OTP's *intensity* and *period*). The history is a
  plain tuple of restart times; ``record_restart`` returns a new tuple pruned to the window,
  so the function is total, allocation-light, and testable without an event loop.
* The backoff before a restart grows with the number of restarts *inside the current
  window*: a child that crashed once an hour ago restarts at once-ish, a crash loop slows
  down exponentially. Using the window instead of a separate "consecutive failures"
  counter means there is one notion of recent trouble, not two that can disagree.
* Jitter comes from a ``random.Random`` the caller owns and seeds, so a whole run under a
  virtual clock is reproducible. (Rejected: ``random`` module functions, which share
  hidden global state with the rest of the process.)

This module imports nothing from trio or structlog. A malformed ``Backoff`` raises
``InvalidSpec`` at construction.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs
from tradewind.runtime._errors import InvalidSpec

if TYPE_CHECKING:
    import random


def _non_negative_finite(
    _instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not (math.isfinite(value) and value >= 0):
        msg = f"Backoff.{attribute.name} must be a finite number >= 0, got {value!r}"
        raise InvalidSpec(msg)


@attrs.frozen
class Backoff:
    """Exponential backoff with jitter before a supervisor restarts a child.

    The n-th restart within the intensity window waits
    ``min(maximum, initial * multiplier ** (n - 1))``, scaled by a random factor drawn
    uniformly from ``[1 - jitter, 1 + jitter]``.

    Args:
        initial: delay in seconds before the first restart in a window (0 restarts at once).
        multiplier: growth factor per further restart, >= 1.
        maximum: upper bound of the delay before jitter, >= ``initial``.
        jitter: relative spread in ``[0, 1]``; 0 gives exact delays.
    """

    initial: float = attrs.field(default=0.1, validator=_non_negative_finite)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative_finite)
    maximum: float = attrs.field(default=10.0, validator=_non_negative_finite)
    jitter: float = attrs.field(default=0.1, validator=_non_negative_finite)

    def __attrs_post_init__(self) -> None:
        if self.multiplier < 1:
            msg = f"Backoff.multiplier must be >= 1, got {self.multiplier!r}"
            raise InvalidSpec(msg)
        if self.maximum < self.initial:
            msg = f"Backoff.maximum must be >= initial, got {self.maximum!r} < {self.initial!r}"
            raise InvalidSpec(msg)
        if self.jitter > 1:
            msg = f"Backoff.jitter must be in [0, 1], got {self.jitter!r}"
            raise InvalidSpec(msg)


NO_BACKOFF = Backoff(initial=0.0, multiplier=1.0, maximum=0.0, jitter=0.0)
"""Restart at once, every time."""


def record_restart(history: tuple[float, ...], now: float, within: float) -> tuple[float, ...]:
    """Return the restart history after a restart at ``now``, pruned to the window.

    Args:
        history: earlier restart times, oldest first.
        now: the time of this restart (same clock as ``history``).
        within: the window length in seconds; times at or before ``now - within`` fall out.

    Returns:
        The restart times inside ``(now - within, now]``, oldest first, ending with ``now``.
    """
    horizon = now - within
    return (*(t for t in history if t > horizon), now)


def intensity_exceeded(history: tuple[float, ...], max_restarts: int) -> bool:
    """Whether a history returned by ``record_restart`` holds more than ``max_restarts``."""
    return len(history) > max_restarts


def backoff_delay(backoff: Backoff, attempt: int, rng: random.Random) -> float:
    """The delay in seconds before restart number ``attempt`` (1-based) of a window.

    Args:
        backoff: the policy.
        attempt: how many restarts the window holds, this one included; values below 1
            are treated as 1.
        rng: the seeded source of jitter; exactly one draw is taken when jitter > 0.

    Returns:
        A finite delay >= 0.
    """
    exponent = max(attempt, 1) - 1
    try:
        base = backoff.initial * backoff.multiplier**exponent
    except OverflowError:
        base = math.inf
    base = min(backoff.maximum, base)
    if backoff.jitter == 0 or base == 0:
        return base
    factor = 1 + backoff.jitter * (2 * rng.random() - 1)
    return max(0.0, base * factor)
