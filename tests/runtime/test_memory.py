"""Memory: a million messages through a 4-actor pipeline leave traced memory flat."""

from __future__ import annotations

import gc
import tracemalloc
from functools import partial
from typing import Any

from tradewind.runtime import Actor, ChildSpec, MailboxSpec, SupervisorSpec, open_actor_system

MESSAGES = 1_000_000
# Allowed growth after a million messages. Anything retained per message (a leaked
# envelope, an unbounded log or dead-letter list) would cost tens of megabytes.
BOUND_BYTES = 64 * 1024


class Forward(Actor):
    def __init__(self, target: str | None) -> None:
        self.target = target
        self.total = 0

    async def on_start(self) -> None:
        self.next = self.context.system.ref(self.target) if self.target else None

    async def handle(self, message: Any) -> None:
        if self.next is not None:
            await self.next.send(message)
        else:
            self.total += message


class TestMemory:
    async def test_a_million_messages_leave_traced_memory_flat(self):
        names = ["s1", "s2", "s3", "s4"]
        spec = SupervisorSpec(
            "root",
            [
                ChildSpec(name, partial(Forward, target), mailbox=MailboxSpec(512))
                for name, target in zip(names, [*names[1:], None], strict=True)
            ],
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            head = system.ref("s1")
            for n in range(10_000):  # warm up: deques, free lists, code paths
                await head.send(n)
            await system.quiesce()
            gc.collect()
            tracemalloc.start()
            try:
                before, _ = tracemalloc.get_traced_memory()
                for _ in range(MESSAGES):
                    await head.send(1)
                await system.quiesce()
                gc.collect()
                after, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            processed = system.ref("s4").statistics().processed
        assert processed == MESSAGES + 10_000
        assert after - before < BOUND_BYTES, f"grew by {after - before} bytes"
