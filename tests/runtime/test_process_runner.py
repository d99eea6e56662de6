"""The external-process runner: output relayed to the log, exit statuses, stop on cancel."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import structlog
import trio
from tradewind.runtime._errors import ProcessExited, ProcessStartFailed
from tradewind.runtime._process import run_process

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping, Sequence
    from pathlib import Path

    from trio.testing import MockClock

# A child that ignores SIGTERM, says so, then waits to be killed.
IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(3600)\n"
)
# A child that says it is ready, then waits for SIGTERM (default action: exit).
WAITS_FOR_SIGTERM = "import time\nprint('ready', flush=True)\ntime.sleep(3600)\n"


class LogRecorder:
    """A structlog processor chain end that records events and lets tests wait on them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = trio.Event()
        self.log = structlog.wrap_logger(
            None,
            processors=[self._record],
            wrapper_class=structlog.make_filtering_bound_logger(0),
        )

    def _record(self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> NoReturn:
        self.events.append({**event_dict, "level": method, "at": trio.current_time()})
        self._changed.set()
        raise structlog.DropEvent

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def output(self) -> list[tuple[str, str]]:
        return [(e["stream"], e["line"]) for e in self.named("process_output")]

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            self._changed = trio.Event()
            await self._changed.wait()


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def assert_reaped(pid: int) -> None:
    """The direct child is gone entirely: not running and not a zombie of ours."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def wait_until_gone(pid: int) -> None:
    """Return once process ``pid`` has terminated, whoever its parent is.

    A pidfd becomes readable when its process terminates, so this waits on the kernel's
    word rather than polling.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


async def run_cancelled(
    recorder: LogRecorder, argv: Sequence[str], shutdown_timeout: float
) -> trio.CancelScope:
    """Start the runner, wait until the child prints 'ready', cancel it, wait for it."""
    scope = trio.CancelScope()

    async def runner() -> None:
        with scope:
            await run_process("gateway", argv, shutdown_timeout=shutdown_timeout, log=recorder.log)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner)
        await recorder.wait_for(lambda e: e.get("line") == "ready")
        scope.cancel()
    return scope


class TestOutput:
    async def test_each_line_is_logged_with_process_name_and_stream(self):
        recorder = LogRecorder()
        await run_process(
            "gateway",
            ["sh", "-c", "echo connected; echo 'slow heartbeat' >&2; echo subscribed"],
            shutdown_timeout=5,
            log=recorder.log,
        )
        lines = recorder.named("process_output")
        assert {e["process"] for e in lines} == {"gateway"}
        assert {e["level"] for e in lines} == {"info"}
        assert [x for x in recorder.output() if x[0] == "stdout"] == [
            ("stdout", "connected"),
            ("stdout", "subscribed"),
        ]
        assert [x for x in recorder.output() if x[0] == "stderr"] == [("stderr", "slow heartbeat")]

    async def test_final_line_without_newline_is_logged(self):
        recorder = LogRecorder()
        await run_process("gateway", ["printf", "a\\nb"], shutdown_timeout=5, log=recorder.log)
        assert recorder.output() == [("stdout", "a"), ("stdout", "b")]

    async def test_invalid_utf8_is_replaced_not_fatal(self):
        recorder = LogRecorder()
        await run_process(
            "gateway",
            python("import sys; sys.stdout.buffer.write(b'px \\xff\\r\\n')"),
            shutdown_timeout=5,
            log=recorder.log,
        )
        assert recorder.output() == [("stdout", "px \ufffd")]

    async def test_overlong_line_is_logged_in_bounded_pieces(self):
        recorder = LogRecorder()
        await run_process(
            "recorder",
            python("import sys; sys.stdout.write('x' * 70000)"),
            shutdown_timeout=5,
            log=recorder.log,
        )
        assert [len(line) for _, line in recorder.output()] == [65536, 70000 - 65536]

    async def test_env_and_cwd_are_given_to_the_process(self, tmp_path: Path):
        recorder = LogRecorder()
        await run_process(
            "gateway",
            ["sh", "-c", "echo $TRADEWIND_VENUE; pwd"],
            env={"TRADEWIND_VENUE": "paper", "PATH": os.environ["PATH"]},
            cwd=str(tmp_path),
            shutdown_timeout=5,
            log=recorder.log,
        )
        assert recorder.output() == [("stdout", "paper"), ("stdout", str(tmp_path))]


class TestExit:
    async def test_exit_zero_returns_and_logs_the_status(self):
        recorder = LogRecorder()
        await run_process("gateway", ["true"], shutdown_timeout=5, log=recorder.log)
        [started] = recorder.named("process_started")
        [exited] = recorder.named("process_exited")
        assert exited["returncode"] == 0
        assert exited["pid"] == started["pid"]
        assert_reaped(started["pid"])

    async def test_nonzero_exit_raises_with_name_and_code(self):
        recorder = LogRecorder()
        with pytest.raises(ProcessExited, match="'gateway' exited with status 3") as info:
            await run_process(
                "gateway", ["sh", "-c", "exit 3"], shutdown_timeout=5, log=recorder.log
            )
        assert (info.value.name, info.value.returncode) == ("gateway", 3)

    async def test_death_by_signal_raises_with_negative_code(self):
        recorder = LogRecorder()
        with pytest.raises(ProcessExited, match="killed by signal 9") as info:
            await run_process(
                "gateway", ["sh", "-c", "kill -KILL $$"], shutdown_timeout=5, log=recorder.log
            )
        assert info.value.returncode == -9


class TestLeftovers:
    async def test_helpers_left_behind_at_exit_are_killed(self):
        """A helper outliving its process (and holding its pipes) is killed at exit."""
        recorder = LogRecorder()
        await run_process(
            "gateway", ["sh", "-c", "sleep 3600 & echo $!"], shutdown_timeout=5, log=recorder.log
        )
        helper_pid = int(recorder.output()[0][1])
        with trio.fail_after(10):
            await wait_until_gone(helper_pid)


class TestStartFailure:
    async def test_missing_executable_raises_naming_argv(self):
        recorder = LogRecorder()
        with pytest.raises(ProcessStartFailed, match="no-such-gateway") as info:
            await run_process(
                "gateway", ["no-such-gateway", "--live"], shutdown_timeout=5, log=recorder.log
            )
        assert info.value.argv == ("no-such-gateway", "--live")
        assert isinstance(info.value.__cause__, FileNotFoundError)
        assert recorder.named("process_start_failed")[0]["argv"] == ["no-such-gateway", "--live"]

    async def test_empty_argv_is_refused(self):
        with pytest.raises(ValueError, match="argv is empty"):
            await run_process("gateway", [], shutdown_timeout=5, log=LogRecorder().log)

    @pytest.mark.parametrize("grace", [-1.0, float("inf"), float("nan")])
    async def test_unusable_shutdown_timeout_is_refused(self, grace: float):
        with pytest.raises(ValueError, match="shutdown_timeout"):
            await run_process("gateway", ["true"], shutdown_timeout=grace, log=LogRecorder().log)


class TestCancellation:
    async def test_cancel_sends_sigterm_and_propagates_once_reaped(self):
        recorder = LogRecorder()
        scope = await run_cancelled(recorder, python(WAITS_FOR_SIGTERM), shutdown_timeout=30)
        assert scope.cancelled_caught
        [exited] = recorder.named("process_exited")
        assert exited["returncode"] == -15
        assert recorder.named("process_killed") == []
        assert_reaped(exited["pid"])

    async def test_sigterm_ignoring_child_is_killed_after_the_timeout(
        self, autojump_clock: MockClock
    ):
        recorder = LogRecorder()
        scope = await run_cancelled(recorder, python(IGNORES_SIGTERM), shutdown_timeout=7)
        assert scope.cancelled_caught
        [stopping] = recorder.named("process_stopping")
        [killed] = recorder.named("process_killed")
        [exited] = recorder.named("process_exited")
        assert exited["returncode"] == -9
        assert stopping["signal"] == "SIGTERM"
        assert killed["at"] - stopping["at"] >= 7
        assert_reaped(exited["pid"])

    async def test_helpers_of_the_process_are_stopped_too(self):
        """Signals go to the process group, so a shell's background child dies with it."""
        recorder = LogRecorder()
        argv = ["sh", "-c", "sleep 3600 & echo $!; echo ready; wait"]
        await run_cancelled(recorder, argv, shutdown_timeout=30)
        helper_pid = int(recorder.output()[0][1])
        [exited] = recorder.named("process_exited")
        assert_reaped(exited["pid"])
        with trio.fail_after(10):
            await wait_until_gone(helper_pid)

    async def test_sigterm_ignoring_helpers_are_killed_with_the_process(self):
        recorder = LogRecorder()
        argv = ["sh", "-c", "trap '' TERM; sleep 3600 & echo $!; echo ready; wait"]
        await run_cancelled(recorder, argv, shutdown_timeout=0.2)
        helper_pid = int(recorder.output()[0][1])
        [exited] = recorder.named("process_exited")
        assert exited["returncode"] == -9
        assert_reaped(exited["pid"])
        with trio.fail_after(10):
            await wait_until_gone(helper_pid)

    async def test_sigterm_ignoring_helper_of_a_compliant_process_is_killed(self):
        recorder = LogRecorder()
        helper = (
            "import os, signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print(os.getpid(), flush=True)\n"
            "print('ready', flush=True)\n"
            "time.sleep(3600)\n"
        )
        leader = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {helper!r}])\n"
        await run_cancelled(recorder, python(leader), shutdown_timeout=30)
        helper_pid = int(recorder.output()[0][1])
        [exited] = recorder.named("process_exited")
        assert exited["returncode"] == -15
        assert recorder.named("process_killed") == []
        with trio.fail_after(10):
            await wait_until_gone(helper_pid)

    async def test_output_written_during_shutdown_is_still_logged(self):
        recorder = LogRecorder()
        code = (
            "import signal, sys, time\n"
            "def bye(*_):\n"
            "    print('flushing journal', flush=True)\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "print('ready', flush=True)\n"
            "time.sleep(3600)\n"
        )
        await run_cancelled(recorder, python(code), shutdown_timeout=30)
        assert recorder.output() == [("stdout", "ready"), ("stdout", "flushing journal")]
        assert recorder.named("process_exited")[0]["returncode"] == 0


class TestPackageExport:
    def test_runner_names_are_exported_by_the_runtime_package(self):
        import tradewind.runtime

        assert tradewind.runtime.run_process is run_process
        assert tradewind.runtime.ProcessExited is ProcessExited
        assert tradewind.runtime.ProcessStartFailed is ProcessStartFailed
