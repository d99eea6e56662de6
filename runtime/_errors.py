"""The exceptions of tradewind: one small hierarchy under `TradewindError`.

Each class says whose fault it is and also subclasses the stdlib type a caller would
naturally catch (a full mailbox is a `RuntimeError` of the sender's making; an ask that
ran out of time is a `TimeoutError`; bad configuration is a `ValueError`). Foreign
exceptions (trio, asyncpg, sqlite3) are translated at the edge with ``raise X from exc``.

This module imports nothing, so the pure trading core may build on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class TradewindError(Exception):
    """Base of every error tradewind raises on purpose."""


class MailboxFull(TradewindError, RuntimeError):
    """A message was offered to a full mailbox whose policy refuses to wait.

    Raised by ``ActorRef.send_nowait`` on any full mailbox, and by ``send`` on a mailbox
    with the ``REJECT`` overflow policy. The message was not enqueued (the caller still
    owns it) and the refusal was counted in the mailbox statistics.
    """


class MailboxClosed(TradewindError, RuntimeError):
    """A message was sent to an actor whose system has shut down."""


class AskTimeout(TradewindError, TimeoutError):
    """``ActorRef.ask`` got no reply within its timeout."""


class ActorNotFound(TradewindError, LookupError):
    """``ActorSystem.ref(path)`` named no actor in the tree."""


class SupervisorFailed(TradewindError):
    """A supervisor exceeded its restart intensity and gave up.

    The last crash that tipped it over is chained as ``__cause__``, and `child` is the
    path of the child that raised it (itself a supervisor when a subtree gave up first:
    `last_crash` follows the chain down to the actor).
    """

    def __init__(self, path: str, restarts: int, within: float, child: str | None = None) -> None:
        super().__init__(
            f"supervisor {path!r} gave up: more than {restarts} restarts within {within}s"
        )
        self.path = path
        self.restarts = restarts
        self.within = within
        self.child = child

    def last_crash(self) -> tuple[str | None, BaseException | None]:
        """The actor whose crash ended the chain of supervisors giving up, and that crash.

        Returns:
            ``(path, exception)``: the innermost child's path and the exception it
            raised; ``(child, None)`` when no crash is chained (e.g. a normal exit).
        """
        failed: SupervisorFailed = self
        while isinstance(failed.__cause__, SupervisorFailed):
            failed = failed.__cause__
        return failed.child, failed.__cause__


class InvalidSpec(TradewindError, ValueError):
    """A child, supervisor or process spec is malformed; nothing was started."""


class ConfigError(TradewindError, ValueError):
    """Configuration was rejected; ``problems`` lists every problem found, one per line.

    Each problem names the setting's path, its environment variable and what was
    expected, e.g. ``risk.max_position (TRADEWIND_RISK__MAX_POSITION): must be >= 0,
    got -5``.
    """

    def __init__(self, problems: Sequence[str], source: str = "configuration") -> None:
        self.problems = tuple(problems)
        self.source = source
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{listing}")


class ProcessExited(TradewindError, RuntimeError):
    """A supervised OS process exited with a non-zero status: the process's fault.

    ``returncode`` is the exit status; a negative value ``-N`` means it was killed by
    signal ``N`` (e.g. ``-9`` for SIGKILL, ``-11`` for SIGSEGV).
    """

    def __init__(self, name: str, returncode: int) -> None:
        if returncode < 0:
            how = f"was killed by signal {-returncode}"
        else:
            how = f"exited with status {returncode}"
        super().__init__(f"process {name!r} {how}")
        self.name = name
        self.returncode = returncode


class ProcessStartFailed(TradewindError, OSError):
    """An OS process could not be started (missing executable, no permission, bad cwd).

    The operating system's error is chained as ``__cause__``; ``argv`` is the command
    that was tried.
    """

    def __init__(self, name: str, argv: Sequence[str], reason: str) -> None:
        super().__init__(f"process {name!r} could not start {list(argv)!r}: {reason}")
        self.name = name
        self.argv = tuple(argv)
        self.reason = reason


class HandlerTimeout(TradewindError, TimeoutError):
    """An actor's handler ran past its ``handler_timeout``; it was cancelled.

    The runtime treats it as a crash of that actor: the message in hand is redelivered or
    dead-lettered and the supervisor applies its strategy.
    """


class MessageDropped(TradewindError, RuntimeError):
    """An asked message will never be answered.

    Raised by ``ActorRef.ask`` when its message was replaced by a newer one in a
    ``CONFLATE`` mailbox, was dead-lettered after its redeliveries ran out, or its actor
    stopped for good before handling it.
    """
