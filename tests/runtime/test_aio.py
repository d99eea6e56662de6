"""The asyncio bridge: loop reuse, results, errors and cancellation across the bridge."""

from __future__ import annotations

# The bridge's own tests must run real asyncio coroutines on the bridged loop.
import asyncio  # noqa: TID251
import gc
import subprocess
import sys

import pytest
import trio
from structlog.testing import capture_logs
from tradewind.runtime._aio import aio_as_trio, current_aio_loop, open_aio_loop, run_aio


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class QuoteRejected(Exception):
    pass


async def reject(reason: str) -> None:
    await asyncio.sleep(0)
    raise QuoteRejected(reason)


class TestOpenAioLoop:
    async def test_nested_block_reuses_the_open_loop(self):
        async with open_aio_loop() as outer, open_aio_loop() as inner:
            assert inner is outer

    async def test_inner_block_exit_leaves_the_outer_loop_running(self):
        async with open_aio_loop() as outer:
            async with open_aio_loop():
                pass
            assert not outer.is_closed()
            assert await run_aio(add, 2, 3) == 5

    async def test_opening_block_closes_its_loop_on_exit(self):
        async with open_aio_loop() as loop:
            pass
        assert loop.is_closed()
        assert current_aio_loop() is None

    async def test_block_after_a_closed_one_opens_a_fresh_loop(self):
        async with open_aio_loop() as first:
            pass
        async with open_aio_loop() as second:
            assert second is not first
            assert not second.is_closed()

    async def test_task_started_inside_the_block_sees_the_loop(self):
        seen: list[asyncio.AbstractEventLoop | None] = []

        async def child() -> None:
            seen.append(current_aio_loop())

        async with open_aio_loop() as loop, trio.open_nursery() as nursery:
            nursery.start_soon(child)
        assert seen == [loop]

    async def test_error_in_the_opening_block_propagates_as_itself(self):
        with pytest.raises(QuoteRejected, match="stale") as info:
            async with open_aio_loop():
                raise QuoteRejected("stale")
        assert info.value.__context__ is None

    async def test_error_in_a_reusing_block_propagates_as_itself(self):
        with pytest.raises(QuoteRejected, match="stale"):
            async with open_aio_loop(), open_aio_loop():
                raise QuoteRejected("stale")

    async def test_asyncio_error_escaping_the_block_propagates_as_itself(self):
        with pytest.raises(QuoteRejected, match="crossed book"):
            async with open_aio_loop():
                await run_aio(reject, "crossed book")

    async def test_cancelling_the_opening_block_is_caught_by_its_scope(self):
        with trio.CancelScope() as scope:
            async with open_aio_loop() as loop:
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert loop.is_closed()

    async def test_no_loop_outside_any_block(self):
        assert current_aio_loop() is None


class TestOrphanedErrors:
    async def test_an_error_nobody_awaited_is_logged_and_the_loop_lives_on(self):
        async def orphan_a_failed_future() -> None:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionResetError("server closed the connection"))
            del future
            gc.collect()  # asyncio reports the unretrieved exception from __del__

        async def answer() -> int:
            return 42

        with capture_logs() as logs:
            async with open_aio_loop():
                await run_aio(orphan_a_failed_future)
                assert await run_aio(answer) == 42
        orphaned = [e for e in logs if e["event"] == "asyncio_unhandled_error"]
        assert len(orphaned) == 1
        assert "server closed the connection" in orphaned[0]["error"]


class TestRunAio:
    async def test_coroutine_result_comes_back(self):
        async with open_aio_loop():
            assert await run_aio(add, 40, b=2) == 42

    async def test_coroutine_runs_on_the_bridged_loop(self):
        async with open_aio_loop() as loop:
            assert await run_aio(running_loop) is loop

    async def test_coroutine_exception_propagates_unchanged(self):
        async with open_aio_loop():
            with pytest.raises(QuoteRejected, match="stale quote"):
                await run_aio(reject, "stale quote")

    async def test_without_an_open_loop_raises_runtime_error(self):
        with pytest.raises(RuntimeError, match="open_aio_loop"):
            await run_aio(add, 1, 2)

    async def test_trio_cancellation_cancels_the_asyncio_side(self):
        entered = trio.Event()
        outcome: list[str] = []

        async def wait_for_fill() -> None:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            outcome.append("finished")

        async with open_aio_loop(), trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def caller() -> None:
                with scope:
                    await run_aio(wait_for_fill)
                outcome.append("trio saw cancellation" if scope.cancelled_caught else "")

            nursery.start_soon(caller)
            await entered.wait()
            scope.cancel()
        assert outcome == ["cancelled", "trio saw cancellation"]


class TestAioAsTrio:
    async def test_reexported_adapter_runs_a_coroutine_function(self):
        async with open_aio_loop():
            assert await aio_as_trio(add)(1, 2) == 3


class TestPackageExport:
    @pytest.mark.parametrize("name", ["open_aio_loop", "aio_as_trio", "run_aio"])
    def test_bridge_is_exported_by_the_runtime_package(self, name: str):
        import tradewind.runtime
        from tradewind.runtime import _aio

        assert getattr(tradewind.runtime, name) is getattr(_aio, name)

    def test_importing_the_runtime_package_leaves_asyncio_alone(self):
        """trio-asyncio replaces asyncio's loop policy on import: only the bridge loads it."""
        code = "import sys, tradewind.runtime; print('trio_asyncio' in sys.modules)"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "False"

    def test_unknown_name_is_an_attribute_error(self):
        import tradewind.runtime

        with pytest.raises(AttributeError, match="no attribute 'open_loop'"):
            _ = tradewind.runtime.open_loop
