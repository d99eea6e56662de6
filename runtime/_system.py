"""The actor system: builds the tree, runs it, and gives it a face (refs, quiesce, stats).

Design notes
------------
* ``open_actor_system`` validates the whole spec tree first (``InvalidSpec`` lists every
  problem; nothing is started), builds every cell up front (so ``ref(path)`` works and
  refs are stable for the system's life), opens the trio-asyncio loop once as a system
  resource (it outlives every actor), then starts the root supervisor and waits until
  every child's ``on_start`` has completed, in order.
* Leaving the block stops the tree in reverse start order. That happens in a shielded,
  step-by-step-bounded ``finally``, so it is orderly on a normal exit, on an exception in
  the block, on cancellation of the surrounding scope and on ``KeyboardInterrupt`` alike.
* If the root supervisor gives up, the block is cancelled and ``open_actor_system``
  raises that ``SupervisorFailed`` itself (the last crash is its ``__cause__``). A lone
  exception out of the internal nursery is unwrapped from its ``ExceptionGroup`` so that
  callers can write ``except KeyboardInterrupt`` / ``pytest.raises(SupervisorFailed)``.
* Mailboxes are closed after the tree has stopped: what is still queued is dead-lettered
  ("system stopped"), and later sends raise ``MailboxClosed``.
* Dead letters are kept in a bounded deque (newest last) and offered to an optional
  synchronous hook, so a persistence layer can store them; a failing hook is logged and
  never disturbs the runtime.
"""

from __future__ import annotations

from collections import deque
from contextlib import AsyncExitStack, asynccontextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING

import structlog
import trio
from tradewind.runtime._actor import ActorCell, ActorRef
from tradewind.runtime._errors import ActorNotFound, InvalidSpec
from tradewind.runtime._mailbox import InFlight, Message
from tradewind.runtime._records import DeadLetter, SystemStatistics
from tradewind.runtime._specs import SupervisorSpec, validate_spec
from tradewind.runtime._supervisor import ProcessCell, SupervisorCell

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


class ActorSystem:
    """A running supervision tree.

    Obtain one from ``open_actor_system``; it is valid inside that block.
    """

    def __init__(
        self,
        root: SupervisorSpec,
        *,
        seed: int,
        on_dead_letter: Callable[[DeadLetter], None] | None,
        dead_letter_capacity: int,
    ) -> None:
        self._in_flight = InFlight()
        self._log = structlog.get_logger("tradewind.runtime").bind(actor=root.name)
        self._dead_letters: deque[DeadLetter] = deque(maxlen=dead_letter_capacity)
        self._dead_letter_count = 0
        self._on_dead_letter = on_dead_letter
        self._failure: BaseException | None = None
        self._root = SupervisorCell(root, "", self, self._in_flight, seed)
        nodes = self._root.walk()
        self._actors = {n.path: n for n in nodes if isinstance(n, ActorCell)}
        self._processes = {n.path: n for n in nodes if isinstance(n, ProcessCell)}
        self._refs = {path: cell.ref for path, cell in self._actors.items()}

    @property
    def name(self) -> str:
        """The root supervisor's name."""
        return self._root.name

    def ref(self, path: str) -> ActorRef:
        """The ref of the actor at ``path`` (e.g. ``"trading/risk"``).

        Raises:
            ActorNotFound: no actor has that path (supervisors and processes have no
                mailbox, so they have no ref).
        """
        try:
            return self._refs[path]
        except KeyError:
            known = ", ".join(self._refs) or "none"
            msg = f"no actor at {path!r} (actors: {known})"
            raise ActorNotFound(msg) from None

    async def quiesce(self) -> None:
        """Wait until every mailbox is empty and no handler is running.

        Counts every accepted message until it is handled, conflated away or
        dead-lettered; a message a handler sends is counted before that handler's own
        message is finished, so a cascade never looks finished half-way. A message held
        for redelivery during a restart backoff still counts, and so does every restart a
        supervisor has yet to carry out.

        Messages parked in lazy mailboxes (``MailboxSpec.wake_after``) are woken as soon
        as nothing else is in flight, and waited for too; so is the work that settle
        hooks (`when_settled`) send, which run first.

        Cancellation: a checkpoint; safe to cancel.
        """
        await self._in_flight.wait_idle()

    def when_settled(self, hook: Callable[[], None]) -> None:
        """Run `hook` once, synchronously, the moment the system next settles (see
        `settle`), or at once if it is settled now; `cancel_when_settled` disarms it.

        A barrier without a task switch: the hook runs inside the runtime's own
        bookkeeping of the handler that finished last, so it must not block or raise; it
        may send with ``send_nowait`` (and arm itself again). Several hooks run oldest
        first, as long as the system stays settled: a hook that sends work leaves the
        rest for the next time.
        """
        self._in_flight.when_settled(hook)

    def cancel_when_settled(self, hook: Callable[[], None]) -> None:
        """Disarm `hook` if it is still armed (safe to call when it is not)."""
        self._in_flight.cancel_hook(hook)

    async def settle(self) -> None:
        """Wait until nothing is in flight but messages parked in lazy mailboxes
        (``MailboxSpec.wake_after``), leaving those parked: `quiesce` without draining
        the actors that batch their work. With no lazy mailbox it is `quiesce`.

        Cancellation: a checkpoint; safe to cancel.
        """
        await self._in_flight.wait_settled()

    @property
    def dead_letters(self) -> tuple[DeadLetter, ...]:
        """The most recent dead letters, oldest first (bounded; see ``statistics``)."""
        return tuple(self._dead_letters)

    def statistics(self) -> SystemStatistics:
        """A frozen snapshot of every actor's and process's counters."""
        return SystemStatistics(
            actors=MappingProxyType({p: c.statistics() for p, c in self._actors.items()}),
            processes=MappingProxyType({p: c.statistics() for p, c in self._processes.items()}),
            in_flight=self._in_flight.count,
            dead_letters=self._dead_letter_count,
        )

    def record_dead_letter(
        self, path: str, message: Message, reason: str, attempts: int, error: BaseException | None
    ) -> None:
        """Record, log and publish a message the runtime gave up on (internal)."""
        letter = DeadLetter(
            path=path,
            message=message,
            reason=reason,
            attempts=attempts,
            error=error,
            time=trio.current_time(),
        )
        self._dead_letters.append(letter)
        self._dead_letter_count += 1
        self._log.warning(
            "dead_letter",
            to=path,
            reason=reason,
            attempts=attempts,
            message_type=type(message).__name__,
            error=repr(error) if error is not None else None,
        )
        if self._on_dead_letter is not None:
            try:
                self._on_dead_letter(letter)
            except Exception as exc:  # noqa: BLE001 - a failing hook must not break delivery
                self._log.error("dead_letter_hook_failed", error=repr(exc))

    # ------------------------------------------------------------------ running
    async def _run_root(self, system_scope: trio.CancelScope) -> None:
        root = self._root
        root.incarnation += 1
        root.running = True
        try:
            with trio.CancelScope(shield=True) as scope:
                root.scope = scope
                try:
                    await root.run_once()
                except Exception as exc:  # noqa: BLE001 - the root's failure ends the system
                    self._failure = exc
        finally:
            root.running = False
            if root.pending_counted:
                root.pending_counted = False
                self._in_flight.finished()
            root.started.set()
            root.done.set()
        if self._failure is not None:
            system_scope.cancel()

    async def _stop(self) -> None:
        root = self._root
        root.stopping = True
        root.request_stop()
        await root.done.wait()

    def _close(self) -> None:
        for cell in self._actors.values():
            cell.retire_for_shutdown()


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


@asynccontextmanager
async def open_actor_system(
    root: SupervisorSpec,
    *,
    seed: int = 0,
    on_dead_letter: Callable[[DeadLetter], None] | None = None,
    dead_letter_capacity: int = 10_000,
    asyncio_loop: bool = True,
) -> AsyncIterator[ActorSystem]:
    """Start a supervision tree; stop it, in reverse start order, on leaving the block.

    Args:
        root: the root supervisor spec; the whole tree is validated before anything runs.
        seed: seeds every supervisor's backoff jitter (with its path), for reproducible
            runs.
        on_dead_letter: called synchronously with each ``DeadLetter``.
        dead_letter_capacity: how many recent dead letters ``dead_letters`` keeps.
        asyncio_loop: open the trio-asyncio loop as a system resource, so actors can call
            asyncio-only libraries through ``aio_as_trio``.

    Yields:
        The running ``ActorSystem``, once every child's ``on_start`` has completed.

    Raises:
        InvalidSpec: the tree is malformed (every problem listed); nothing was started.
        SupervisorFailed: the root supervisor exceeded its restart intensity; the block
            was cancelled and the tree stopped.

    Cancellation: cancelling the block (or a KeyboardInterrupt) still stops the tree in
    reverse start order, each step bounded by the children's shutdown timeouts.
    """
    given: object = root
    if not isinstance(given, SupervisorSpec):
        msg = f"the root must be a SupervisorSpec, got {type(given).__name__}"
        raise InvalidSpec(msg)
    validate_spec(root)
    if isinstance(dead_letter_capacity, bool) or dead_letter_capacity <= 0:
        msg = f"dead_letter_capacity must be an int > 0, got {dead_letter_capacity!r}"
        raise InvalidSpec(msg)
    system = ActorSystem(
        root, seed=seed, on_dead_letter=on_dead_letter, dead_letter_capacity=dead_letter_capacity
    )
    unwrapped: BaseException | None = None
    async with AsyncExitStack() as resources:
        if asyncio_loop:
            from tradewind.runtime._aio import open_aio_loop  # noqa: PLC0415 - optional service

            await resources.enter_async_context(open_aio_loop())
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(system._run_root, nursery.cancel_scope)
                try:
                    # Inside the try: a cancel or KeyboardInterrupt while the tree is
                    # still starting must stop it too (the root runs shielded and would
                    # otherwise supervise forever, keeping this nursery open).
                    await system._root.started.wait()
                    if system._failure is None:
                        yield system
                finally:
                    with trio.CancelScope(shield=True):
                        try:
                            await system._stop()
                        finally:
                            system._root.kill()  # no-op unless the orderly stop failed
        except BaseExceptionGroup as group:
            unwrapped = _single_leaf(group)
            if unwrapped is None:
                raise
        finally:
            system._close()
    if unwrapped is not None:
        raise unwrapped
    if system._failure is not None:
        raise system._failure
