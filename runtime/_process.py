"""Run one external OS process to completion, relaying its output to the log.

This is the runner under a supervised ``ProcessSpec`` (a broker gateway, a recorder):
it starts the process once, logs each line it writes, and reports how it ended. Restart
policy and backoff belong to the supervisor, not here.
"""

# Design notes
# ------------
# * Cancellation is the stop signal. A supervisor stops a process child by cancelling its
#   scope; the runner then asks politely (SIGTERM), waits up to `shutdown_timeout`, and
#   insists (SIGKILL). All of that runs shielded, so the process is reaped before the
#   cancellation propagates: neither a running child nor a zombie is ever left behind.
# * The process gets its own session (`start_new_session=True`) and signals go to its
#   whole process group. A gateway started through a shell script or a launcher forks
#   helpers of its own; signalling only the direct child would orphan them, still running.
#   Its own session also keeps a terminal's Ctrl-C away from it: the runtime decides when
#   it stops. Once the process has exited, for whatever reason, whatever is left in its
#   group gets SIGKILL: helpers outliving the process they served are nobody's to
#   supervise. That is only safe while the group id (the process's pid) cannot have been
#   reused, i.e. before the process is reaped; so exit is watched through a pidfd of our
#   own, which shows the exit without reaping, and the process is reaped only after its
#   group was signalled. (Without pidfds -- not Linux -- stragglers are left alone.)
# * The wait after SIGKILL is not bounded by a timer, on purpose. SIGKILL cannot be caught
#   or ignored, so that wait lasts only as long as the kernel takes to tear the process
#   down; reaping it is what guarantees no zombie. A timer there would be wrong twice:
#   under a virtual clock (tests, `tradewind.testing`) it fires before the kernel is done
#   and leaves the process behind, and in production it could only turn a process stuck
#   in uninterruptible I/O from a visible hang into a silent leak.
# * Output is relayed by a task whose cancel scope is shielded and cancelled only by the
#   runner: during the SIGTERM grace period the process is still logging how it shuts
#   down, and those lines are the ones an operator most wants. Once the process has
#   exited, its remaining output is read until EOF for at most `_DRAIN_AFTER_EXIT` (a
#   descendant that left the process group, and so escaped the SIGKILL, could hold the
#   pipes open indefinitely).
# * Lines are split on b"\n" and decoded as UTF-8 with replacement: a process that writes
#   invalid bytes gets U+FFFD in the log, not a crashed runner. A line longer than
#   `_MAX_LINE` is logged in pieces, so a process that never writes a newline cannot grow
#   the buffer without bound.
# * Rejected: `trio.run_process`. Its cancellation path (SIGTERM, a fixed 5 s, SIGKILL) is
#   not configurable per process without a custom `deliver_cancel`, it does not relay
#   output line by line as it is written, and it signals only the direct child.

from __future__ import annotations

import math
import os
import signal
import subprocess
from typing import TYPE_CHECKING

import trio
from tradewind.runtime._errors import ProcessExited, ProcessStartFailed

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from structlog.typing import FilteringBoundLogger

__all__ = ["run_process"]

# Longest line relayed as one log event; longer output is split into pieces this long.
_MAX_LINE = 64 * 1024
# Read size for the output pipes.
_CHUNK = 16 * 1024
# How long output still buffered in the pipes is read after the process has exited.
_DRAIN_AFTER_EXIT = 2.0


async def run_process(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    shutdown_timeout: float,
    log: FilteringBoundLogger,
) -> None:
    """Run the OS process ``argv`` once, logging its output, until it exits.

    Every line the process writes is logged at info level as ``process_output`` with
    ``process=name``, ``stream="stdout"`` or ``"stderr"`` and ``line``. Start and exit
    are logged as ``process_started`` (with ``pid``) and ``process_exited`` (with
    ``returncode``).

    Args:
        name: The name of the process in logs and errors (e.g. the child's name).
        argv: The program and its arguments; the program is looked up on ``PATH``.
        env: The complete environment of the process; None inherits this process's.
        cwd: The working directory of the process; None inherits this process's.
        shutdown_timeout: Seconds the process is given to exit after SIGTERM before it
            is sent SIGKILL.
        log: The logger the output and lifecycle events go to.

    Returns:
        None, when the process exits with status 0.

    Raises:
        ProcessExited: The process exited with a non-zero status or was killed by a
            signal it did not get from this runner.
        ProcessStartFailed: The process could not be started (for example the
            executable does not exist); the ``OSError`` is chained.
        ValueError: ``argv`` is empty or ``shutdown_timeout`` is negative or not finite.

    When the process has exited, anything still running in its process group (helpers
    it started and left behind) is sent SIGKILL.

    Cancellation: when the calling scope is cancelled, the process group gets SIGTERM;
    if the process has not exited after ``shutdown_timeout`` seconds, the group gets
    SIGKILL. The process is reaped before ``trio.Cancelled`` propagates, all of this
    shielded, so a cancelled runner never leaves the process running nor a zombie. The
    grace period is bounded by ``shutdown_timeout``; the wait after SIGKILL is only the
    kernel's teardown of the process.
    """
    if not argv:
        msg = f"process {name!r}: argv is empty"
        raise ValueError(msg)
    if not (math.isfinite(shutdown_timeout) and shutdown_timeout >= 0):
        msg = f"process {name!r}: shutdown_timeout must be >= 0 and finite, got {shutdown_timeout}"
        raise ValueError(msg)
    log = log.bind(process=name)
    try:
        proc = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        log.error("process_start_failed", argv=list(argv), reason=reason)
        raise ProcessStartFailed(name, argv, reason) from exc
    # No checkpoint between here and the `try`: a cancellation must find the cleanup armed.
    pidfd = _open_pidfd(proc.pid)
    relay_scope = trio.CancelScope(shield=True)
    relay_done = trio.Event()
    exited = False
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_relay_output, proc, log, relay_scope, relay_done)
            log.info("process_started", pid=proc.pid, argv=list(argv))
            try:
                await _wait_for_exit(proc, pidfd)
                exited = True
            finally:
                with trio.CancelScope(shield=True):
                    if not exited:
                        await _stop(proc, pidfd, shutdown_timeout, log)
                    await _reap(proc, pidfd)
                    with trio.move_on_after(_DRAIN_AFTER_EXIT):
                        await relay_done.wait()
                relay_scope.cancel()
                log.info("process_exited", pid=proc.pid, returncode=proc.returncode)
    finally:
        if pidfd is not None:
            trio.lowlevel.notify_closing(pidfd)
            os.close(pidfd)
        with trio.CancelScope(shield=True):
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    await stream.aclose()
    if proc.returncode:
        raise ProcessExited(name, proc.returncode)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd of our own for ``pid``, to see it exit without reaping it; None if unsupported."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:  # pragma: no cover - not Linux
        return None
    try:
        fd: int = pidfd_open(pid)
    except OSError:  # pragma: no cover - a kernel older than Linux 5.3
        return None
    return fd


async def _wait_for_exit(proc: trio.Process, pidfd: int | None) -> None:
    """Wait until the process exits; with a pidfd it is left unreaped (a zombie).

    While the process is an unreaped zombie its pid, which is also its process group
    id, cannot be reused, so the group can still be signalled safely.
    """
    if pidfd is None:  # pragma: no cover - not Linux
        await proc.wait()
    else:
        await trio.lowlevel.wait_readable(pidfd)


async def _stop(
    proc: trio.Process, pidfd: int | None, grace: float, log: FilteringBoundLogger
) -> None:
    """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL it.

    Called shielded. Returns once the process has exited (it is reaped by ``_reap``).
    """
    log.info("process_stopping", pid=proc.pid, signal="SIGTERM", grace=grace)
    _signal_group(proc, signal.SIGTERM)
    with trio.move_on_after(grace):
        await _wait_for_exit(proc, pidfd)
        return
    log.warning("process_killed", pid=proc.pid, signal="SIGKILL", waited=grace)
    _signal_group(proc, signal.SIGKILL)
    await _wait_for_exit(proc, pidfd)


async def _reap(proc: trio.Process, pidfd: int | None) -> None:
    """Kill what is left of the exited process's group, then reap the process.

    Helpers it started and left behind (in its group, holding its pipes) are nobody's
    to supervise once it is gone. Only done while the process is still unreaped (we
    hold a pidfd), when its group id cannot belong to anything else.
    """
    if pidfd is not None:
        _signal_group(proc, signal.SIGKILL)
    await proc.wait()


def _signal_group(proc: trio.Process, sig: signal.Signals) -> None:
    """Send ``sig`` to the process's group (its own session), or to it alone if gone."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        # The group is empty (the process exited, not yet reaped, and left no helpers).
        return


async def _relay_output(
    proc: trio.Process,
    log: FilteringBoundLogger,
    scope: trio.CancelScope,
    done: trio.Event,
) -> None:
    """Log both output streams line by line until EOF or until ``scope`` is cancelled."""
    with scope:
        async with trio.open_nursery() as nursery:
            if proc.stdout is not None:
                nursery.start_soon(_relay_stream, proc.stdout, "stdout", log)
            if proc.stderr is not None:
                nursery.start_soon(_relay_stream, proc.stderr, "stderr", log)
    done.set()


async def _relay_stream(
    stream: trio.abc.ReceiveStream, label: str, log: FilteringBoundLogger
) -> None:
    """Log each line of ``stream`` as ``process_output``; flush a partial line at EOF."""
    pending = bytearray()
    try:
        while chunk := await stream.receive_some(_CHUNK):
            pending += chunk
            *lines, rest = pending.split(b"\n")
            for line in lines:
                _log_line(log, label, line)
            while len(rest) > _MAX_LINE:
                _log_line(log, label, rest[:_MAX_LINE])
                rest = rest[_MAX_LINE:]
            pending = rest
    finally:
        if pending:
            _log_line(log, label, pending)


def _log_line(log: FilteringBoundLogger, label: str, raw: bytes | bytearray) -> None:
    text = raw.decode("utf-8", errors="replace").removesuffix("\r")
    log.info("process_output", stream=label, line=text)
