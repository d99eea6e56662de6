"""Records the store reads and writes besides the domain values, and its statistics.

Pure: plain frozen attrs values, no I/O.

Design notes
------------
The trading values (`Instrument`, `Bar`, `Order`, `Fill`) belong to the domain and are
stored as they are. A few things the store keeps have no domain class of their own -- a
risk denial as it was recorded, a dead letter, a run, a row of the order journal -- so
they are defined here, in the shape of their table row, and the actors convert to them.
Each has a natural key (noted per class) on which writing it is idempotent.
"""

from __future__ import annotations

import random

import attrs


@attrs.frozen
class PoolStatistics:
    """A snapshot of a store's connections.

    Attributes:
        size: connections currently open (PostgreSQL) or 1 (SQLite).
        max_size: the configured bound.
        in_use: connections held by a running unit of work or read.
        idle: open connections nobody holds.
        waiting: callers waiting for a connection to become free.
    """

    size: int
    max_size: int
    in_use: int
    idle: int
    waiting: int


@attrs.frozen
class StoreCounts:
    """Row counts per table; for tests, operations and the end-of-run summary."""

    instruments: int
    bars: int
    orders: int
    order_events: int
    fills: int
    denials: int
    dead_letters: int
    runs: int


@attrs.frozen
class Denial:
    """An order intent that risk refused. Key: ``client_order_id``.

    Attributes:
        client_order_id: the id the intent was given before the check.
        strategy_id: the strategy that asked.
        instrument: the instrument's symbol.
        ts: when it was refused (ns).
        reason: the rule and the figures that refused it.
    """

    client_order_id: str
    strategy_id: str
    instrument: str
    ts: int
    reason: str


@attrs.frozen
class DeadLetter:
    """A message an actor could not handle after its redeliveries. Key: (actor, ts, seq).

    Attributes:
        actor: the path of the actor that gave up on it.
        ts: when it was dead-lettered (ns).
        seq: tells apart dead letters of one actor at the same ``ts`` (from 0).
        message_type: the message's class name.
        message: the message's repr (secrets redacted by the caller).
        error: the last error's type and text.
        attempts: how many times it was delivered.
    """

    actor: str
    ts: int
    message_type: str
    message: str
    error: str
    attempts: int
    seq: int = 0


@attrs.frozen
class RunRecord:
    """One ``tradewind run``. Key: ``run_id``.

    Attributes:
        run_id: the run's id.
        config_hash: a hash of the configuration it ran with.
        started_ts: when it started (ns).
        finished_ts: when it ended (ns), or None while running (or after a crash).
        outcome: how it ended (e.g. ``"completed"``, ``"failed"``), or None while running.
    """

    run_id: str
    config_hash: str
    started_ts: int
    finished_ts: int | None = None
    outcome: str | None = None


def _positive_int(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        msg = f"{attribute.name}: must be >= 1, got {value}"
        raise ValueError(msg)


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        msg = f"{attribute.name}: must be >= 0, got {value}"
        raise ValueError(msg)


@attrs.frozen
class RetryPolicy:
    """How a unit of work is retried after a serialization failure or a deadlock.

    Attempt ``n`` (from 1) that fails waits ``min(max_backoff, initial_backoff *
    multiplier ** (n - 1))``, scaled by a random factor in ``[1 - jitter, 1]`` so that
    two transactions that deadlocked each other do not retry in lockstep, then runs the
    unit again; after ``attempts`` attempts the unit fails with `TransactionFailed`.

    Attributes:
        attempts: total attempts, including the first (>= 1).
        initial_backoff: seconds before the second attempt.
        max_backoff: cap on any single wait, in seconds.
        multiplier: growth factor per attempt.
        jitter: fraction of each wait that is randomised (0 to 1).
        seed: seed of the jitter's random generator (None: from the OS).
    """

    attempts: int = attrs.field(default=5, validator=_positive_int)
    initial_backoff: float = attrs.field(default=0.02, validator=_non_negative)
    max_backoff: float = attrs.field(default=1.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.5, validator=_non_negative)
    seed: int | None = None

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Return the wait in seconds after failed attempt number ``attempt`` (from 1)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base * (1.0 - min(self.jitter, 1.0) * rng.random())

    def new_rng(self) -> random.Random:
        """A random generator for the jitter, seeded from ``seed``."""
        return random.Random(self.seed)  # noqa: S311 -- jitter, not security
