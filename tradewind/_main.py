"""`tradewind run`: load a configuration, run the trading system, handle signals, exit.

Exit codes: 0 the run ended normally (the data was exhausted, or a first SIGINT/SIGTERM
stopped it and everything accepted was committed or spilled to the journal); 1 another
error (e.g. the store cannot be reached, or a stop left accepted records neither
committed nor spilled); 2 the configuration has problems (nothing was started); 3 a
supervisor gave up (`SupervisorFailed`); 4 another run holds the store (`StoreInUse`:
nothing was started, nothing read or written); 130 a second SIGINT/SIGTERM ended the
process at once.
"""

# Design notes
# ------------
# * Signals are received by trio (`open_signal_receiver`), opened before the system starts,
#   so no signal can slip in between "started" and "listening". A first SIGINT or
#   SIGTERM stops the feed at its source and ends the wait for the run to finish by
#   itself; the run then winds down like a replay that reached the end of its data:
#   in-flight work completes (waited for at most `supervision.shutdown_timeout`: a system
#   that never goes quiet must not keep a stopped service alive), persistence flushes
#   (or spills to its journal), the store closes, the summary prints, and the exit code
#   is 0 -- or 1 if the summary counts records that were neither committed nor spilled
#   (`not_kept`): a stop that lost data is not a success. A second one means
#   "now": `os._exit(130)` without cleanup, which is what an operator pressing Ctrl-C
#   twice asks for.
# * SIGHUP re-reads the configuration file through the same `load_settings` used at start
#   (in a worker thread: it reads files and may import the strategy module) and sends only
#   the risk section as `SwapRiskLimits`. A file with problems is logged and refused; the
#   limits in force stay.
# * Exit 4 for `StoreInUse`, not 1: it is no failure of this process or of the store but a
#   deployment mistake (two instances on one book), and it is certain that nothing was
#   done, so a supervisor or a script can tell it apart from an error worth retrying
#   (`RestartPreventExitStatus=2 4`); not 2, which says "fix the configuration" -- the
#   same file is right once the other run has ended.
# * Progress: a rich progress bar on stderr for replays at a terminal, and a `progress`
#   log line every second in any case, so a supervisor (or a test) reading the log can see
#   the run advance without a terminal.

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

import structlog
import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tradewind._summary import summary_table
from tradewind.actors._settings import Settings, load_settings, log_file_problem
from tradewind.actors._tree import RunSummary, TradingSystem, open_trading_system
from tradewind.runtime._errors import (
    AskTimeout,
    ConfigError,
    MailboxClosed,
    MessageDropped,
    SupervisorFailed,
    TradewindError,
)
from tradewind.runtime._logging import configure_logging
from tradewind.storage._errors import StoreError, StoreInUse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STORE_IN_USE",
    "EXIT_SUPERVISION",
    "run_config",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_SUPERVISION = 3
EXIT_STORE_IN_USE = 4
EXIT_INTERRUPTED = 130

#: Seconds between `progress` log lines.
PROGRESS_INTERVAL = 1.0
_BAR_REFRESH = 0.1

_log = structlog.get_logger("tradewind.run")

LogFormat = Literal["json", "console", "auto"]


def _sole(exc: BaseException) -> BaseException:
    """The one exception nested groups wrap, or the group itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_config(
    path: str | Path,
    *,
    progress: bool | None = None,
    log_format: LogFormat | None = None,
    log_file: str | Path | None = None,
    out: Console | None = None,
) -> int:
    """Run the trading system a configuration file describes; return the exit code.

    Args:
        path: the configuration file.
        progress: show a progress bar (None: for replays, when stderr is a terminal).
        log_format: overrides ``logging.format``.
        log_file: overrides ``logging.file``.
        out: where the summary is printed (default: stdout).

    Returns:
        The exit code (see the module docstring).
    """
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)  # noqa: T201 -- the command's own output
        return EXIT_CONFIG
    if log_file is not None:
        problem = log_file_problem(Path(log_file))
        if problem:
            print(f"tradewind: --log-file: {problem}", file=sys.stderr)  # noqa: T201
            return EXIT_CONFIG
    console = out if out is not None else Console()
    with ExitStack() as stack:
        target = log_file if log_file is not None else settings.logging.file
        stream: TextIO = sys.stderr
        if target is not None:
            stream = stack.enter_context(open(target, "a", encoding="utf-8", buffering=1))
        configure_logging(
            format=log_format or settings.logging.format,
            level=settings.logging.level,
            stream=stream,
        )
        stack.callback(_release_logging, stream)
        show = progress if progress is not None else (settings.replay and sys.stderr.isatty())
        try:
            summary = trio.run(_run, settings, str(path), show)
        except BaseException as raised:
            failure = _sole(raised)
            if isinstance(failure, SupervisorFailed):
                # The line an operator reads first names the crash behind it, not only
                # the supervisor: the tracebacks are in the log, among every restart's.
                actor, crash = failure.last_crash()
                last = f"{actor}: {type(crash).__name__}: {crash}" if crash is not None else None
                _log.error("supervision_gave_up", error=str(failure), last_crash=last)
                shown = f"{failure}; last crash: {last}" if last is not None else str(failure)
                print(f"tradewind: {shown}", file=sys.stderr)  # noqa: T201
                return EXIT_SUPERVISION
            if isinstance(failure, StoreInUse):
                _log.error("store_in_use", error=str(failure), store=failure.url)
                print(f"tradewind: {failure}", file=sys.stderr)  # noqa: T201
                return EXIT_STORE_IN_USE
            if isinstance(failure, StoreError | TradewindError):
                _log.error("run_failed", error=str(failure))
                print(f"tradewind: {failure}", file=sys.stderr)  # noqa: T201
                return EXIT_ERROR
            raise
        lost = (
            f"{summary.not_kept} accepted records are neither in the store nor in the "
            "spill journal (the run is recorded as failed)"
            if summary.not_kept
            else ""
        )
        if lost:
            # The run stopped, but not everything it accepted was kept: not a success.
            _log.error("run_failed", error=lost, not_kept=summary.not_kept)
    console.print(summary_table(summary))
    if lost:
        print(f"tradewind: {lost}", file=sys.stderr)  # noqa: T201
        return EXIT_ERROR
    return EXIT_OK


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    """A logger writing to whatever ``sys.stderr`` is when a line is logged."""
    return structlog.PrintLogger(sys.stderr)


def _release_logging(stream: TextIO) -> None:
    """Stop logging to `stream` (about to be closed), e.g. when embedded or tested: later
    lines go to the current stderr."""
    # Back to structlog's defaults (so an embedding program or a test suite sees the
    # configuration it had before, level filtering included), writing to the stderr of
    # the moment rather than a stream captured once.
    structlog.reset_defaults()
    structlog.configure(logger_factory=_stderr_logger)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "stream", None) is stream:
            root.removeHandler(handler)


async def _run(settings: Settings, path: str, show_progress: bool) -> RunSummary:
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    with trio.open_signal_receiver(*signals) as received:
        # The signal handler lives in the outer nursery, so it keeps answering while the
        # system winds down (draining, flushing): a second signal then still exits at once.
        async with trio.open_nursery() as outer:
            async with open_trading_system(settings) as system:
                _log.info(
                    "run_started",
                    run_id=system.run_id,
                    mode=settings.mode,
                    source=system.source.describe(),
                    store=settings.store.url,
                )
                async with trio.open_nursery() as nursery:
                    # A first SIGINT/SIGTERM cancels this wait: leaving the block winds
                    # the system down, waiting for in-flight work at most the shutdown
                    # timeout. Waiting here for the system to go quiet on its own could
                    # last for ever (an actor crash-looping below the restart intensity).
                    outer.start_soon(_handle_signals, received, system, path, nursery.cancel_scope)
                    nursery.start_soon(_report_progress, system, show_progress)
                    await system.wait_finished()
                    nursery.cancel_scope.cancel()
            outer.cancel_scope.cancel()
    summary = system.result
    _log.info(
        "run_finished",
        run_id=summary.run_id,
        outcome=summary.outcome,
        bars=summary.bars_accepted,
        orders=summary.orders,
        fills=summary.fills,
        digest=summary.event_log_digest,
    )
    return summary


async def _handle_signals(
    received: AsyncIterator[int],
    system: TradingSystem,
    path: str,
    waiting: trio.CancelScope | None = None,
) -> None:
    """Answer signals until cancelled; a first SIGINT/SIGTERM stops the feed and cancels
    `waiting` (the wait for the run to finish by itself)."""
    stopping = False
    async for signum in received:
        if signum == signal.SIGHUP:
            await reload_risk(system, path)
            continue
        if stopping:
            _log.warning("second_signal_exiting_now", signal=signal.Signals(signum).name)
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        stopping = True
        _log.warning(
            "stopping",
            signal=signal.Signals(signum).name,
            detail="stopping the feed, finishing in-flight work, flushing",
        )
        system.stop_feed()
        if waiting is not None:
            waiting.cancel()


async def reload_risk(system: TradingSystem, path: str) -> bool:
    """Re-read the configuration's risk section and swap it in; False if refused.

    A file with any problem is refused (logged with every problem); the limits in force
    stay.
    """
    try:
        fresh = await trio.to_thread.run_sync(load_settings, path)
    except ConfigError as exc:
        _log.warning("risk_reload_refused", problems=list(exc.problems))
        return False
    running = system.settings.risk.currency
    if fresh.risk.currency != running:
        problem = (
            f"risk.currency: cannot change while running (from {running} to "
            f"{fresh.risk.currency}): the day's PnL and its loss limit are in {running}"
        )
        _log.warning("risk_reload_refused", problems=[problem])
        return False
    try:
        limits = await system.swap_risk_limits(fresh.risk.limits())
    except (MessageDropped, MailboxClosed, AskTimeout) as exc:
        # The run is winding down (risk has stopped): nothing is left to swap into.
        _log.warning("risk_reload_skipped", reason=repr(exc))
        return False
    _log.info("risk_limits_reloaded", limits=repr(limits))
    return True


async def _report_progress(system: TradingSystem, show_bar: bool) -> None:
    total = system.expected_items
    with ExitStack() as stack:
        bar: Progress | None = None
        task = None
        if show_bar:
            bar = stack.enter_context(
                Progress(
                    TextColumn("replay"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=Console(stderr=True),
                    transient=True,
                )
            )
            task = bar.add_task("replay", total=total)
        next_log = trio.current_time()
        while True:
            stats = system.feed.statistics()
            if trio.current_time() >= next_log:
                next_log += PROGRESS_INTERVAL
                _log.info(
                    "progress", bars_in=stats.bars_in, accepted=stats.accepted, expected=total
                )
            if bar is not None and task is not None:
                bar.update(task, completed=stats.bars_in)
            await trio.sleep(_BAR_REFRESH)
