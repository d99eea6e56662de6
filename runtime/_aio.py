"""The asyncio bridge: the one place tradewind touches asyncio.

Some libraries tradewind needs exist only for asyncio (asyncpg above all). They run on a
trio-asyncio loop: an asyncio event loop implemented on top of the trio run, so asyncio
coroutines and trio tasks share one thread, one scheduler and trio's cancellation.
"""

# Design notes
# ------------
# * One loop per trio run, shared. The actor system opens the loop once and every actor
#   below it reuses it; a store opened inside the system must not open a second loop
#   (two loops would split asyncpg's connections between them), but a store opened in a
#   bare test, with no system around it, must still work. So `open_aio_loop` looks at
#   trio-asyncio's own context variable (`trio_asyncio.current_loop`, which `open_loop`
#   sets for everything started inside it) and reuses a live loop it finds there;
#   only otherwise does it open one, and only the opener closes it.
# * Why not a module global holding "the" loop: a global outlives the trio run that made
#   it and is shared by unrelated runs (every test is its own run); the context variable
#   follows trio's task tree exactly.
# * Cost, measured here (trio 0.35, trio-asyncio 0.16, CPython 3.11, 2 cores): a call
#   through `aio_as_trio` (or `run_aio`) of an asyncio coroutine that returns at once
#   costs 35-50 us (mean of 20,000 calls, over several runs), against 0.1 us for
#   awaiting the same coroutine natively and 3.5 us for a bare trio checkpoint. So bridge
#   once per unit of work -- run one asyncio coroutine that does the whole transaction --
#   not once per statement (the design document: a four-statement transaction bridged statement
#   by statement ran about 1.4x slower than the same work bridged once).
# * trio-asyncio runs the block inside two nurseries of its own, so an error raised in
#   the block comes out wrapped twice in ExceptionGroups -- but only in the block that
#   opened the loop, not in one that reuses it. `open_aio_loop` is a resource, not a
#   nursery, so it hands back the block's exception as itself either way.
# * `run_aio` exists for type checking: trio-asyncio is untyped, so `aio_as_trio(fn)(...)`
#   is `Any`; `run_aio(fn, *args)` keeps the coroutine function's parameter and result
#   types. It also fails with a plain message when no loop is open, where trio-asyncio
#   would fail with an AttributeError on None.
# * An orphaned asyncio error is logged, never fatal. trio-asyncio's default exception
#   handler re-raises whatever reaches `loop.call_exception_handler`, and that ends the
#   loop and every task on it. asyncpg reaches it with "Future exception was never
#   retrieved" when a server connection dies in the middle of a statement (e.g.
#   `pg_terminate_backend`, or asyncpg's cancel request over a stalled link): the
#   statement itself already failed through its own awaited result, so taking the whole
#   loop down for the echo would turn one lost connection into a dead store. The loop we
#   open therefore gets `_log_orphaned_error`, which logs like plain asyncio does.
# * Only this module may import asyncio (ruff's banned-api rule enforces it elsewhere).

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import structlog
import trio_asyncio
from trio_asyncio import aio_as_trio

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

__all__ = ["aio_as_trio", "current_aio_loop", "open_aio_loop", "run_aio"]

P = ParamSpec("P")
T = TypeVar("T")

_log = structlog.get_logger("tradewind.aio")


def _log_orphaned_error(_loop: asyncio.AbstractEventLoop, context: Mapping[str, object]) -> None:
    """Log an error nobody awaited, as plain asyncio does, instead of ending the loop."""
    error = context.get("exception")
    _log.error(
        "asyncio_unhandled_error",
        message=str(context.get("message", "")),
        error=repr(error) if error is not None else None,
    )


def current_aio_loop() -> asyncio.AbstractEventLoop | None:
    """Return the live trio-asyncio loop of the calling task, or None.

    A loop is visible to every task started (directly or not) inside the
    ``open_aio_loop()`` block that opened it. A loop that has already been closed (seen
    by a task that outlived its block) counts as none.
    """
    loop: asyncio.AbstractEventLoop | None = trio_asyncio.current_loop.get()
    if loop is None or loop.is_closed():
        return None
    return loop


@asynccontextmanager
async def open_aio_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """Provide the trio-asyncio loop for the block: reuse the open one, else open one.

    Inside the block asyncio coroutine functions can be run from trio with
    ``run_aio(fn, *args)`` or ``aio_as_trio(fn)(*args)``. Nesting is allowed and cheap:
    an inner ``open_aio_loop()`` yields the loop of the outer one and leaves it open on
    exit; only the block that opened the loop closes it.

    Yields:
        The asyncio event loop running on the current trio run.

    Raises:
        Whatever the block raised, as itself: the exception groups of the loop's
        internal nurseries are taken off, so an opening block and a reusing block raise
        alike. Only if closing the loop failed too is an ``ExceptionGroup`` raised.

    Cancellation: when the block that opened the loop exits (normally, by an error or
    by cancellation), asyncio tasks still running on the loop are cancelled and waited
    for, as ``asyncio.run`` does, before the loop closes.
    """
    loop = current_aio_loop()
    if loop is not None:
        yield loop
        return
    raised: BaseException | None = None
    try:
        async with trio_asyncio.open_loop() as opened:
            opened.set_exception_handler(_log_orphaned_error)
            try:
                yield opened
            except BaseException as exc:
                raised = exc
                raise
    except BaseExceptionGroup as group:
        # The loop's own nurseries wrap whatever the block raised; hand it back as itself
        # unless the loop's teardown added failures of its own.
        _, others = group.split(lambda exc: exc is raised)
        if raised is None or others is not None:
            raise
    else:
        return
    raise raised


async def run_aio(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the asyncio coroutine function ``fn(*args, **kwargs)`` on the current loop.

    The call is made inside asyncio context (so ``asyncio.get_running_loop()`` and the
    library's own task bookkeeping work), and its result or exception comes back to the
    trio caller unchanged.

    Args:
        fn: An asyncio coroutine function (or any callable returning an awaitable that
            must run under asyncio).
        *args: Positional arguments for ``fn``.
        **kwargs: Keyword arguments for ``fn``.

    Returns:
        What the coroutine returned.

    Raises:
        RuntimeError: No ``open_aio_loop()`` block encloses the calling task.
        Exception: Whatever the coroutine raised, unchanged.

    Cancellation: cancelling the calling trio scope throws one
    ``asyncio.CancelledError`` into the coroutine; once the coroutine has finished
    unwinding, the trio caller sees ``trio.Cancelled``. Each call costs tens of
    microseconds of bridging: call it once per unit of work, not per statement.
    """
    loop = current_aio_loop()
    if loop is None:
        msg = (
            f"no asyncio loop is open for {getattr(fn, '__qualname__', fn)!r}: "
            "run it inside 'async with open_aio_loop():'"
        )
        raise RuntimeError(msg)
    result: T = await aio_as_trio(fn, loop=loop)(*args, **kwargs)
    return result
