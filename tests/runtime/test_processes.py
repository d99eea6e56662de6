"""Supervised external processes: restart with backoff, SIGKILL after timeout, no leftovers.

These run real OS processes, so they use the real clock (a virtual clock would let
timeouts fire while a process is merely starting).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import pytest
import structlog
import trio
from tradewind.runtime import (
    Backoff,
    ProcessExited,
    ProcessSpec,
    Restart,
    SupervisorFailed,
    SupervisorSpec,
    open_actor_system,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, MutableMapping
    from pathlib import Path

PRINTS_PID_IGNORES_SIGTERM = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('pid', os.getpid(), flush=True)\n"
    "time.sleep(3600)\n"
)
PRINTS_PID_WAITS = "import os, time\nprint('pid', os.getpid(), flush=True)\ntime.sleep(3600)\n"


class Events:
    """Captured log events, with a way to wait for one (no polling, no sleeping)."""

    def __init__(self, entries: list[MutableMapping[str, Any]]) -> None:
        self.entries = entries
        self._changed = trio.Event()

    def notify(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        self._changed.set()
        return event

    def named(self, name: str) -> list[MutableMapping[str, Any]]:
        return [e for e in self.entries if e["event"] == name]

    async def wait_for(self, predicate: Callable[[MutableMapping[str, Any]], bool]) -> Any:
        while True:
            for entry in self.entries:
                if predicate(entry):
                    return entry
            self._changed = trio.Event()
            await self._changed.wait()


@pytest.fixture
def events() -> Iterator[Events]:
    recorder = Events([])
    with structlog.testing.capture_logs(processors=[recorder.notify]) as entries:
        recorder.entries = entries
        yield recorder


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


class TestRestart:
    async def test_a_process_exiting_non_zero_is_restarted_with_backoff(self, events: Events):
        spec = SupervisorSpec(
            "root",
            [ProcessSpec("gateway", python("import sys; sys.exit(3)"))],
            max_restarts=2,
            within=60,
            backoff=Backoff(initial=0.05, multiplier=2.0, maximum=1.0, jitter=0.0),
        )
        with pytest.raises(SupervisorFailed) as caught:
            async with open_actor_system(spec, asyncio_loop=False):
                await trio.sleep_forever()  # ended by the root giving up
        cause = caught.value.__cause__
        assert isinstance(cause, ProcessExited)
        assert cause.returncode == 3
        assert len(events.named("process_started")) == 3
        assert [e["delay"] for e in events.named("restart_backoff")] == [0.05, 0.1]

    async def test_a_transient_process_is_restarted_until_it_exits_cleanly(
        self, events: Events, tmp_path: Path
    ):
        counter = tmp_path / "runs"
        script = (
            "import pathlib, sys\n"
            f"p = pathlib.Path({str(counter)!r})\n"
            "n = int(p.read_text()) if p.exists() else 0\n"
            "p.write_text(str(n + 1))\n"
            "sys.exit(1 if n == 0 else 0)\n"
        )
        spec = SupervisorSpec(
            "root",
            [ProcessSpec("recorder", python(script), restart=Restart.TRANSIENT)],
            backoff=Backoff(initial=0.01, jitter=0.0),
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            await events.wait_for(lambda e: e["event"] == "child_exited")
            await system.quiesce()
            stats = system.statistics().processes["recorder"]
        assert counter.read_text() == "2"
        assert (stats.restarts, stats.crashes, stats.running) == (1, 1, False)


class TestStop:
    async def test_a_process_ignoring_sigterm_is_killed_after_its_timeout(self, events: Events):
        spec = SupervisorSpec(
            "root",
            [ProcessSpec("stubborn", python(PRINTS_PID_IGNORES_SIGTERM), shutdown_timeout=0.3)],
        )
        async with open_actor_system(spec, asyncio_loop=False):
            line = await events.wait_for(lambda e: str(e.get("line", "")).startswith("pid "))
        pid = int(line["line"].split()[1])
        assert len(events.named("process_killed")) == 1
        assert_gone(pid)

    async def test_no_process_is_left_running_after_the_system_exits(self, events: Events):
        spec = SupervisorSpec(
            "root",
            [
                ProcessSpec("polite", python(PRINTS_PID_WAITS), shutdown_timeout=5),
                SupervisorSpec(
                    "inner",
                    [
                        ProcessSpec(
                            "stubborn", python(PRINTS_PID_IGNORES_SIGTERM), shutdown_timeout=0.3
                        )
                    ],
                ),
            ],
        )
        async with open_actor_system(spec, asyncio_loop=False):
            await events.wait_for(lambda e: e.get("actor") == "polite" and "line" in e)
            await events.wait_for(lambda e: e.get("actor") == "inner/stubborn" and "line" in e)
        pids = [int(e["line"].split()[1]) for e in events.entries if "line" in e]
        assert len(pids) == 2
        for pid in pids:
            assert_gone(pid)
        # Reverse start order: the later-started stubborn one was stopped first.
        stopping = [e["actor"] for e in events.named("process_stopping")]
        assert stopping == ["inner/stubborn", "polite"]
