"""Frozen records the runtime hands out: statistics snapshots and dead letters.

Design notes
------------
* Counters live as plain ints on the mutable cells (cheap to bump on the hot path); a
  ``statistics()`` call copies them into one of these frozen records, so a caller can keep,
  compare and print a snapshot without it changing underneath (as trio's channel
  statistics do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class ActorStatistics:
    """A snapshot of one actor's mailbox and lifetime counters.

    Attributes:
        path: the actor's path, e.g. ``"trading/risk"``.
        mailbox_depth: messages waiting, including one held for redelivery.
        mailbox_capacity: the mailbox bound.
        accepted: messages the mailbox took in (asks included).
        processed: messages whose handler returned normally.
        restarts: how many times a new instance was started after the first.
        crashes: handler, ``on_start`` or timeout failures.
        redelivered: deliveries of a message that was in hand at a crash.
        conflated: queued messages replaced by a newer one with the same key.
        rejected: sends refused because the mailbox was full.
        dead_letters: messages given up on (poison, or actor stopped for good).
        senders_waiting: senders currently parked on a full ``BLOCK`` mailbox.
        running: whether an instance is currently running.
        batches: how many times the actor took a batch of queued messages (a wake-up
            that found work); ``processed / batches`` is the mean batch size.
    """

    path: str
    mailbox_depth: int
    mailbox_capacity: int
    accepted: int
    processed: int
    restarts: int
    crashes: int
    redelivered: int
    conflated: int
    rejected: int
    dead_letters: int
    senders_waiting: int
    running: bool
    batches: int = 0

    @property
    def dropped(self) -> int:
        """Every message that was offered but will never be handled."""
        return self.conflated + self.rejected + self.dead_letters


@attrs.frozen
class ProcessStatistics:
    """A snapshot of one supervised external process.

    Attributes:
        path: the process's path in the tree.
        restarts: how many times it was started again after the first start.
        crashes: how many runs ended with a non-zero exit (or failed to start).
        running: whether it is currently running.
    """

    path: str
    restarts: int
    crashes: int
    running: bool


@attrs.frozen
class SystemStatistics:
    """A snapshot of a whole actor system.

    Attributes:
        actors: per-actor statistics by path, in start order.
        processes: per-process statistics by path, in start order.
        in_flight: messages accepted and not yet finished (what ``quiesce`` waits on).
        dead_letters: dead letters recorded since the system started.
    """

    actors: Mapping[str, ActorStatistics]
    processes: Mapping[str, ProcessStatistics]
    in_flight: int
    dead_letters: int


@attrs.frozen
class DeadLetter:
    """A message the runtime gave up on.

    Attributes:
        path: the actor it was addressed to.
        message: the message itself (for an ask, the question, not the envelope).
        reason: ``"poison"`` (crashed its handler too often), ``"actor stopped"`` (its
            actor will not be restarted) or ``"system stopped"`` (still queued at exit).
        attempts: how many times a handler was given it.
        error: the last exception its handler raised, if any.
        time: the trio clock reading when it was given up.
    """

    path: str
    message: Any
    reason: str
    attempts: int
    error: BaseException | None
    time: float
