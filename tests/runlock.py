"""A process that holds a store's run lock until it is killed, for the run-lock tests.

The holder opens the store with ``run_lock=True`` (as `open_trading_system` does), prints
``locked`` once it holds the lock, and waits for ever. Tests read that line (never a
sleep), then either test against the live holder or SIGKILL it and wait for the process.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Iterator

HOLDER = """
import sys, trio
from tradewind.storage import open_store

async def main(url):
    async with open_store(url, run_lock=True):
        print("locked", flush=True)
        await trio.sleep_forever()

trio.run(main, sys.argv[1])
"""


def holder_argv(url: str) -> list[str]:
    return [sys.executable, "-c", HOLDER, url]


async def start_holder(url: str) -> trio.Process:
    """Start a holder of ``url``'s run lock; return once it holds it."""
    proc = await trio.lowlevel.open_process(holder_argv(url), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    seen = b""
    while not seen.endswith(b"locked\n"):
        chunk = await proc.stdout.receive_some()
        if not chunk:
            code = await proc.wait()
            raise AssertionError(f"the lock holder ended (exit {code}) before it held the lock")
        seen += chunk
    return proc


async def kill(proc: trio.Process) -> int:
    """SIGKILL the process and wait until it is gone; its exit code."""
    proc.kill()
    return await proc.wait()


@contextmanager
def holding(url: str) -> Iterator[subprocess.Popen[str]]:
    """A holder of ``url``'s run lock for the block (for tests outside a trio run);
    killed and waited for at the end."""
    proc = subprocess.Popen(holder_argv(url), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # log lines (the migration) come first
            if line == "locked\n":
                break
        else:
            raise AssertionError(f"the lock holder ended (exit {proc.wait()}) without the lock")
        yield proc
    finally:
        proc.kill()
        proc.wait()
