"""Supervisors and supervised processes: OTP restart semantics on trio.

Design notes
------------
* Every child runs in its own wrapper task, inside its own *shielded* ``CancelScope``.
  A crash (any ``Exception``) is caught in the wrapper and reported to the supervisor as
  an event; it never reaches the shared nursery, so siblings live on. ``BaseException``
  (``Cancelled`` from elsewhere, ``KeyboardInterrupt``) is not caught and propagates.
* The shield is what makes shutdown orderly even when the tree is cancelled from outside
  or interrupted: outside cancellation reaches only the supervisor's own loop, whose
  ``finally`` then stops the children one by one in reverse start order. Each step is
  bounded (graceful request, ``graceful_timeout``, then cancelling that child's scope;
  ``on_stop`` is bounded too), so the shielded shutdown cannot hang.
* A supervisor reacts to one child event at a time: restart type decides whether to
  restart; the pure intensity window (``_intensity.py``) decides whether to give up;
  the strategy picks which children to restart; the seeded backoff decides how long to
  wait. Events carry the child's incarnation number, so a stale event about an
  incarnation that the strategy already replaced is ignored.
* Children start strictly one after another (each waits for the previous one's
  ``on_start``), which also gives a stable start order for deterministic runs.
* A supervisor that gives up stops its children and *returns* its failure instead of
  raising it inside its nursery (which would wrap it in an ``ExceptionGroup``); the
  wrapper re-raises it as that supervisor's crash, for its parent to handle.
* Restart counters are per cell and survive restarts (``restarts`` is the number of
  incarnations after the first, whoever started them); the intensity window is per
  incarnation of the supervisor (a restarted supervisor starts with a clean slate, as
  in OTP).
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import TYPE_CHECKING

import trio
from tradewind.runtime._actor import ActorCell, Node
from tradewind.runtime._errors import SupervisorFailed
from tradewind.runtime._intensity import backoff_delay, intensity_exceeded, record_restart
from tradewind.runtime._records import ProcessStatistics
from tradewind.runtime._specs import (
    ChildSpec,
    ProcessSpec,
    Restart,
    RestartStrategy,
    SupervisorSpec,
)

if TYPE_CHECKING:
    from tradewind.runtime._mailbox import InFlight
    from tradewind.runtime._system import ActorSystem


def build_node(
    spec: ChildSpec | ProcessSpec | SupervisorSpec,
    path: str,
    system: ActorSystem,
    in_flight: InFlight,
    seed: int,
) -> Node:
    """Turn a validated spec (sub)tree into live cells, without starting anything."""
    if isinstance(spec, SupervisorSpec):
        return SupervisorCell(spec, path, system, in_flight, seed)
    if isinstance(spec, ProcessSpec):
        return ProcessCell(spec, path, system)
    return ActorCell(spec, path, system, in_flight)


class SupervisorCell(Node):
    """A supervisor: starts, watches, restarts and stops its children."""

    graceful_timeout = math.inf

    def __init__(
        self,
        spec: SupervisorSpec,
        path: str,
        system: ActorSystem,
        in_flight: InFlight,
        seed: int,
    ) -> None:
        super().__init__(spec.name, path or spec.name, spec.restart, system)
        self.spec = spec
        # A per-supervisor RNG derived from the system seed and the path: reproducible and
        # independent of how many draws other supervisors made.
        self.in_flight = in_flight
        self.rng = random.Random(f"{seed}:{path}")  # noqa: S311 - jitter, not secrecy
        self.children: list[Node] = [
            build_node(
                child, f"{path}/{child.name}" if path else child.name, system, in_flight, seed
            )
            for child in spec.children
        ]
        self._events: deque[tuple[Node, int, Exception | None]] = deque()
        self._wakeup = trio.Event()
        self._history: tuple[float, ...] = ()
        self._stop_requested = False
        self._loop_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    def revive(self) -> None:
        super().revive()
        for child in self.children:
            child.revive()

    def walk(self) -> list[Node]:
        nodes: list[Node] = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes

    def request_stop(self) -> None:
        self._stop_requested = True
        if self._loop_scope is not None:
            self._loop_scope.cancel()

    def retire(self) -> None:
        super().retire()
        for child in self.children:
            child.retire()

    # ------------------------------------------------------------------ running
    def clear_stop(self) -> None:
        self._stop_requested = False

    async def run_once(self) -> None:
        self._history = ()
        failure: SupervisorFailed | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                with trio.CancelScope() as loop_scope:
                    self._loop_scope = loop_scope
                    if self._stop_requested:  # asked while this incarnation was starting
                        loop_scope.cancel()
                    for child in self.children:
                        await self._start_child(child)
                    self.started.set()
                    failure = await self._supervise()
            finally:
                self._loop_scope = None
                with trio.CancelScope(shield=True):
                    try:
                        await self._stop_children(self.children)
                    finally:
                        # If the orderly stop itself failed, no child may outlive us.
                        for child in self.children:
                            child.kill()
            # Events nobody will handle now (this supervisor is stopping or gave up).
            self.in_flight.finished(len(self._events))
            self._events.clear()
        self._nursery = None
        if failure is not None:
            raise failure

    async def _supervise(self) -> SupervisorFailed | None:
        while True:
            while not self._events:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            child, incarnation, error = self._events[0]
            failure: SupervisorFailed | None = None
            try:
                if incarnation != child.incarnation or child.running:
                    continue  # stale: that incarnation was already replaced
                failure = await self._handle_exit(child, error)
                if failure is not None:
                    return failure
            finally:
                self._events.popleft()
                if failure is not None and not self.stopping:
                    # Carried over as our own exit event, for our parent to handle.
                    self.pending_counted = True
                else:
                    # Done with (restarted or retired): no longer holds quiesce().
                    self.in_flight.finished()

    async def _handle_exit(self, child: Node, error: Exception | None) -> SupervisorFailed | None:
        if error is None:
            self.log.info("child_exited", child=child.path)
        if not _wants_restart(child.restart, crashed=error is not None):
            child.retire()
            return None
        self._history = record_restart(self._history, trio.current_time(), self.spec.within)
        if intensity_exceeded(self._history, self.spec.max_restarts):
            failed = SupervisorFailed(
                self.path, self.spec.max_restarts, self.spec.within, child=child.path
            )
            failed.__cause__ = error
            self.log.error("supervisor_gave_up", restarts=len(self._history))
            return failed
        to_restart = self._select(child)
        await self._stop_children(to_restart)
        delay = backoff_delay(self.spec.backoff, len(self._history), self.rng)
        if delay > 0:
            self.log.info("restart_backoff", child=child.path, delay=delay)
            await trio.sleep(delay)
        for node in to_restart:
            if node.retired:
                continue  # ended for good earlier; only a restart of this supervisor revives it
            if node is not child and node.restart is Restart.TEMPORARY:
                node.retire()  # OTP: a temporary sibling is stopped, never restarted
                continue
            await self._start_child(node)
        return None

    def _select(self, child: Node) -> list[Node]:
        strategy = self.spec.strategy
        if strategy is RestartStrategy.ONE_FOR_ONE:
            return [child]
        if strategy is RestartStrategy.ONE_FOR_ALL:
            return list(self.children)
        index = self.children.index(child)
        return self.children[index:]

    async def _start_child(self, child: Node) -> None:
        assert self._nursery is not None  # noqa: S101 - only called while running
        if child.retired:
            child.revive()
        child.incarnation += 1
        child.started = trio.Event()
        child.done = trio.Event()
        child.stopping = False
        child.killed = False
        child.running = True
        child.clear_stop()
        self._nursery.start_soon(self._child_task, child, child.incarnation, name=child.path)
        await child.started.wait()

    async def _child_task(self, child: Node, incarnation: int) -> None:
        error: Exception | None = None
        try:
            with trio.CancelScope(shield=True) as scope:
                child.scope = scope
                if child.killed:
                    scope.cancel()
                try:
                    await child.run_once()
                except Exception as exc:  # noqa: BLE001 - supervising crashes is the point
                    error = exc
        finally:
            # Also on BaseException (KeyboardInterrupt): whoever waits for this child to
            # end must not wait forever.
            child.running = False
            child.started.set()
            child.done.set()
        if error is not None:
            # Every crash is counted and logged where it happens, also one that no restart
            # decision will follow: a crash while the child is being stopped or while its
            # supervisor is stopping, or one whose event a strategy restart made stale.
            child.crashes += 1
            self.log.error(
                "child_crashed",
                child=child.path,
                error=repr(error),
                exc_info=(type(error), error, error.__traceback__),
            )
        if not child.stopping:
            # A pending restart is work in flight: quiesce() waits for it to be handled.
            if not child.pending_counted:
                self.in_flight.count += 1
            self._events.append((child, incarnation, error))
            self._wakeup.set()
        elif child.pending_counted:
            self.in_flight.finished()
        child.pending_counted = False

    async def _stop_children(self, children: list[Node]) -> None:
        """Stop the running ones among ``children``, in reverse order, each bounded."""
        for child in reversed(children):
            if child.running:
                await self._stop_child(child)

    async def _stop_child(self, child: Node) -> None:
        child.stopping = True
        child.request_stop()
        if child.graceful_timeout != math.inf:
            with trio.move_on_after(child.graceful_timeout):
                await child.done.wait()
            if not child.done.is_set() and child.scope is not None:
                child.scope.cancel()
        await child.done.wait()
        self.log.debug("child_stopped", child=child.path)


def _wants_restart(restart: Restart, *, crashed: bool) -> bool:
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return crashed
    return False


class ProcessCell(Node):
    """An external OS process supervised like an actor."""

    def __init__(self, spec: ProcessSpec, path: str, system: ActorSystem) -> None:
        super().__init__(spec.name, path, spec.restart, system)
        self.spec = spec
        # Cancelling run_process already does SIGTERM, bounded wait, SIGKILL, reap.
        self.graceful_timeout = 0.0

    async def run_once(self) -> None:
        from tradewind.runtime._process import run_process  # noqa: PLC0415 - optional service

        self.started.set()
        await run_process(
            self.path,
            self.spec.argv,
            env=self.spec.env,
            cwd=self.spec.cwd,
            shutdown_timeout=self.spec.shutdown_timeout,
            log=self.log,
        )

    def request_stop(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    def statistics(self) -> ProcessStatistics:
        """A frozen snapshot of this process's counters."""
        return ProcessStatistics(
            path=self.path,
            restarts=max(0, self.incarnation - 1),
            crashes=self.crashes,
            running=self.running,
        )
