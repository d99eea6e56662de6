"""Actors: the user-facing ``Actor``/``ActorContext``/``ActorRef`` and the live actor cell.

Design notes
------------
* A *cell* is the runtime's record of one supervised child; it outlives every instance
  of the child. For an actor the cell owns the mailbox, the counters and the message
  held for redelivery; each (re)start builds a fresh ``Actor`` from the spec's factory.
* The actor loop drains its mailbox in batches: it takes every message queued when the
  batch began, handling each with no scheduler round-trip unless the handler itself
  blocks, then yields once (``trio.lowlevel.checkpoint``) if more arrived, or parks when
  the mailbox is empty. This keeps a pipeline of actors at several hundred thousand
  messages per second while every actor still yields regularly (see ``_mailbox.py`` for
  why ``send`` is a cancellation point without being a schedule point).
* Redelivery: before calling the handler the loop notes the message "in hand". If the
  handler raises, the message is kept for the next instance (counting the attempt) or,
  once ``max_redeliveries`` is spent, dead-lettered. If the handler is *cancelled* (a
  stop, a sibling's restart), it is kept without counting an attempt: it did nothing
  wrong. The kept message is handled first by the next instance, so FIFO order holds
  across restarts.
* Handler timeouts use a ``move_on_after`` scope per call only when a timeout is set;
  the common no-timeout path creates no cancel scope per message.
* Quiescence bookkeeping is per batch: the handled messages are taken off the in-flight
  count when the batch ends (or is cut short by a crash). That can only make the count
  reach zero later, never earlier, since a handler's own sends are counted as they happen.
  An exit the supervisor has yet to handle (crash or normal stop) is counted before
  ``on_stop`` awaits, so ``quiesce()`` also waits for restarts.
* ``on_stop`` always runs once ``on_start`` was entered, shielded and bounded by the
  child's ``shutdown_timeout``, so cleanup happens on crash, restart, cancellation and
  KeyboardInterrupt alike, and never hangs.
* ``ActorContext.take_queued`` lets an ``on_stop`` settle what is still queued for it
  (the message held for redelivery first, then the mailbox, FIFO) instead of leaving it
  to be dead-lettered when the system stops: an actor that can keep work past its own
  end (persistence spills it to a journal) must not lose it to the runtime's cleanup.
  Taken messages count as processed; a taken ``ask`` is failed with
  ``MessageDropped`` (the actor gives no reply from ``on_stop``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import structlog
import trio
from tradewind.runtime._errors import AskTimeout, HandlerTimeout, MessageDropped
from tradewind.runtime._mailbox import Ask, InFlight, Mailbox, Message, unwrap
from tradewind.runtime._records import ActorStatistics
from tradewind.runtime._specs import ChildSpec, Overflow, Restart

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tradewind.runtime._system import ActorSystem


# send() is the hottest await in the runtime. trio.lowlevel.checkpoint_if_cancelled() does
# exactly "if this task's cancel status is cancelled: checkpoint", but as a coroutine call
# (plus a KeyboardInterrupt-pending test for the main task), which costs about as much as
# the rest of send() together. send() reads the same flag inline and only awaits a real
# checkpoint when it is set; on a trio whose internals differ it falls back to the public
# call. A pending KeyboardInterrupt is then delivered at the next real checkpoint (every
# actor yields once per batch), not by send() itself.
_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_checkpoint = trio.lowlevel.checkpoint
_current_task = trio.lowlevel.current_task


class Actor:
    """Base class of every actor: subclass it and override ``handle``.

    An actor is a failure boundary with its own mailbox; the runtime calls its methods one
    at a time, never concurrently. A fresh instance is made for every (re)start.

    Attributes:
        context: set by the runtime before ``on_start``; the actor's ref, logger, clock
            and system.
    """

    context: ActorContext

    async def on_start(self) -> None:
        """Acquire resources; runs before the first message. Raising here is a crash."""

    async def handle(self, message: Message) -> Message:
        """Handle one message; the return value is the reply to an ``ask``.

        Raising is a crash: this instance is discarded, the message is redelivered to the
        next instance or dead-lettered, and the supervisor applies its strategy.
        """
        raise NotImplementedError

    async def on_stop(self) -> None:
        """Release resources. Always runs after ``on_start`` was entered (crash, restart,
        stop or cancellation), shielded from cancellation and bounded by the child's
        ``shutdown_timeout``; awaiting inside it is safe."""


class ActorContext:
    """What a running actor knows about its place in the system.

    Attributes:
        ref: the actor's own ref (to tell others where to reply).
        path: the actor's path, e.g. ``"trading/risk"``.
        log: a structlog logger bound with ``actor=<path>``.
        system: the ``ActorSystem`` (for ``system.ref(path)``).
    """

    __slots__ = ("_cell", "log", "path", "ref", "system")

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell
        self.ref = cell.ref
        self.path = cell.path
        self.log = cell.log
        self.system = cell.system

    def now(self) -> float:
        """The trio clock's current time (virtual under ``MockClock``)."""
        return trio.current_time()

    @property
    def crashed(self) -> bool:
        """True (in `Actor.on_stop`) when this instance is ending because it crashed:
        its handler or `on_start` raised. An instance stopped, or cancelled for a
        sibling's restart, did not crash."""
        return self._cell.crashing

    @property
    def handler_timeout(self) -> float | None:
        """Seconds one ``handle`` call may take (None: no limit), as configured."""
        return self._cell.spec.handler_timeout

    @property
    def shutdown_timeout(self) -> float:
        """Seconds `Actor.on_stop` may take before it is cancelled (the child's
        ``shutdown_timeout``): an `on_stop` with a fallback can keep time for it."""
        return self._cell.spec.shutdown_timeout

    @property
    def clock(self) -> trio.abc.Clock:
        """The clock of the running trio loop."""
        return trio.lowlevel.current_clock()

    def take_queued(self) -> list[Message]:
        """Take the messages still waiting for this actor out of its mailbox, to settle
        them itself: the one held for redelivery first, then the queue, oldest first.

        Meant for an `Actor.on_stop` whose stop is final and that can keep what it was
        sent rather than let the runtime dead-letter it once the system has stopped
        (``"system stopped"``): persistence takes its queued records into its buffer,
        to be committed or spilled. The messages count as processed; an ``ask`` among
        them is answered with `MessageDropped` (its asker gets no reply). Messages sent
        afterwards are queued (and dead-lettered at shutdown) as usual.
        """
        return self._cell.take_queued()

    def hold_in_flight(self, n: int = 1) -> None:
        """Count `n` units of work this actor keeps outside any mailbox as in flight.

        An actor that hands work to a task of its own (e.g. an outbox delivered by a
        sender task, so its handler never waits on a peer) holds it here, so that
        ``system.quiesce()`` keeps waiting until the work is done; every unit held must
        be given back with `release_in_flight`, also when the actor stops.
        """
        self._cell.in_flight.count += n

    def release_in_flight(self, n: int = 1) -> None:
        """Give back `n` units counted by `hold_in_flight`; idle waiters wake at zero."""
        self._cell.in_flight.finished(n)

    def stop(self) -> None:
        """Stop this actor normally after the message in hand.

        A ``PERMANENT`` actor is then restarted; ``TRANSIENT`` and ``TEMPORARY`` ones are
        not, and their mailbox dead-letters what it holds.
        """
        self._cell.stop_requested = True


class ActorRef:
    """The address of an actor; stable across its restarts.

    Attributes:
        path: the actor's path in the tree.
    """

    __slots__ = ("_cell", "_mailbox", "path")

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell
        self._mailbox = cell.mailbox
        self.path = cell.path

    def __repr__(self) -> str:
        return f"<ActorRef {self.path!r}>"

    async def send(self, message: Message) -> None:
        """Put ``message`` in the actor's mailbox.

        With room, this enqueues at once. When the mailbox is full: ``BLOCK`` (and
        ``CONFLATE`` with a new key) waits for room; ``REJECT`` raises. With ``CONFLATE``
        a queued message with the same key is replaced (counted as conflated). If the
        actor has stopped for good, the message is dead-lettered.

        Raises:
            MailboxFull: full and the policy is ``REJECT`` (counted as rejected).
            MailboxClosed: the system has shut down.

        Cancellation: a cancellation point (if the caller is cancelled, it raises
        ``Cancelled`` and enqueues nothing); it is a schedule point only when it has to
        wait for room. Fairness comes from the consumers, which yield once per batch, and
        from bounded mailboxes, which make a fast producer park.
        """
        try:
            cancelled = _current_task()._cancel_status.effectively_cancelled
        except AttributeError:  # pragma: no cover - a trio without this internal flag
            await _checkpoint_if_cancelled()
        else:
            if cancelled:
                await _checkpoint()  # raises Cancelled; nothing was enqueued
        mailbox = self._mailbox
        queue = mailbox.queue
        if mailbox.fast and len(queue) < mailbox.capacity:
            queue.append(message)
            mailbox.accepted += 1
            mailbox.in_flight.count += 1
            if mailbox.consumer is not None:
                if mailbox.wake_after == 1:
                    mailbox.wake_consumer()
                else:
                    mailbox.park_or_wake()
            return
        await mailbox.put(message)

    def has_room(self) -> bool:
        """True when the mailbox has room now, so a ``send`` would not wait for space."""
        mailbox = self._mailbox
        return len(mailbox.queue) < mailbox.capacity

    def send_nowait(self, message: Message) -> None:
        """Put ``message`` in the mailbox without waiting.

        Raises:
            MailboxFull: the mailbox is full, whatever its policy (counted as rejected);
                ``CONFLATE`` still replaces a queued message with the same key.
            MailboxClosed: the system has shut down.
        """
        self._mailbox.put_nowait(message)

    # ASYNC109: the ask contract names its own deadline; a caller's scope still applies.
    async def ask(self, message: Message, *, timeout: float = 10.0) -> Message:  # noqa: ASYNC109
        """Send ``message`` and wait for the handler's return value.

        Args:
            message: the question.
            timeout: seconds to wait, including any wait for mailbox room.

        Returns:
            What the actor's ``handle`` returned for this message.

        Raises:
            AskTimeout: no reply within ``timeout`` (the message may still be handled
                later; its reply is then discarded).
            MessageDropped: the message was conflated away, dead-lettered, or its actor
                stopped for good.
            MailboxFull: the mailbox policy is ``REJECT`` and it is full.
            MailboxClosed: the system has shut down.
        """
        envelope = Ask(message)
        with trio.move_on_after(timeout):
            await self._mailbox.put(envelope)
            await envelope.done.wait()
            if envelope.error is not None:
                raise envelope.error
            return envelope.value
        msg = f"{self.path}: no reply within {timeout}s"
        raise AskTimeout(msg)

    def statistics(self) -> ActorStatistics:
        """A frozen snapshot of this actor's counters."""
        return self._cell.statistics()


_NOTHING: Any = object()


class Node:
    """A supervised child's cell: what every kind of child has in common.

    A supervisor drives a node with ``run_once`` (one incarnation, run in its own task
    under its own cancel scope), ``request_stop`` (graceful) and ``retire`` (it will not
    be restarted). ``started`` is set once the incarnation is up (or has ended),
    ``done`` once it has ended.
    """

    graceful_timeout: float = math.inf

    def __init__(self, name: str, path: str, restart: Restart, system: ActorSystem) -> None:
        self.name = name
        self.path = path
        self.restart = restart
        self.system = system
        self.log = structlog.get_logger("tradewind.runtime").bind(actor=path)
        self.incarnation = 0
        self.crashes = 0
        self.running = False
        self.stopping = False
        self.retired = False
        self.killed = False
        # True once this node has itself counted its pending exit event as in flight.
        self.pending_counted = False
        self.scope: trio.CancelScope | None = None
        self.started = trio.Event()
        self.done = trio.Event()

    async def run_once(self) -> None:
        """Run one incarnation; return on a normal end, raise ``Exception`` on a crash."""
        raise NotImplementedError

    def request_stop(self) -> None:
        """Ask the running incarnation to end soon, cleanly."""
        raise NotImplementedError

    def clear_stop(self) -> None:
        """Forget a stop request: the supervisor is about to start a new incarnation.

        Called before the incarnation's task is started, never by the incarnation
        itself: a stop requested between the two (a shutdown during a restart) must
        reach it.
        """

    def kill(self) -> None:
        """Cancel the running incarnation at once (its cleanup still runs, bounded)."""
        if self.running:
            self.stopping = True
            self.killed = True
            if self.scope is not None:
                self.scope.cancel()

    def retire(self) -> None:
        """The node ended and will not be restarted (until its supervisor restarts)."""
        self.retired = True

    def revive(self) -> None:
        """The node is about to start again after having been retired."""
        self.retired = False

    def walk(self) -> list[Node]:
        """This node and every node below it, in start order."""
        return [self]


class ActorCell(Node):
    """The live cell of one actor: mailbox, counters, redelivery slot, current instance."""

    def __init__(
        self, spec: ChildSpec, path: str, system: ActorSystem, in_flight: InFlight
    ) -> None:
        super().__init__(spec.name, path, spec.restart, system)
        self.spec = spec
        self.graceful_timeout = spec.shutdown_timeout
        self.mailbox = Mailbox(spec.mailbox, in_flight, self._dead_from_mailbox)
        self.in_flight = in_flight
        self.ref = ActorRef(self)
        self.stop_requested = False
        self.processed = 0
        self.batches = 0
        self.redelivered = 0
        self.dead_letters = 0
        self.in_hand: Any = _NOTHING
        self.retry: Any = _NOTHING
        self.has_retry = False
        self.retry_attempts = 0
        self.crashing = False  # the running instance raised (see `ActorContext.crashed`)

    # ------------------------------------------------------------------ lifecycle
    def clear_stop(self) -> None:
        self.stop_requested = False

    async def run_once(self) -> None:
        self.crashing = False
        instance: object = self.spec.factory()
        if not isinstance(instance, Actor):
            msg = f"{self.path}: factory returned {instance!r}, not an Actor"
            raise TypeError(msg)
        instance.context = ActorContext(self)
        try:
            await instance.on_start()
            self.started.set()
            await self._loop(instance.handle)
            self._count_pending_exit()
        except Exception as exc:
            self.crashing = True
            # The pending exit first: dead-lettering a poison message finishes it, and
            # the count must not touch zero between the crash and the restart.
            self._count_pending_exit()
            if self.in_hand is not _NOTHING:
                self._keep_in_hand(exc)
            raise
        finally:
            if self.in_hand is not _NOTHING:
                # Cancelled mid-handler: the message did nothing wrong; redeliver it.
                self._keep_in_hand(None)
            await self._stop_instance(instance)

    def _count_pending_exit(self) -> None:
        # The exit the supervisor has yet to handle is work in flight. Count it now,
        # before on_stop awaits, with no checkpoint since the last message was finished,
        # so quiesce() never sees zero between the crash and the restart.
        if not self.stopping and not self.pending_counted:
            self.in_flight.count += 1
            self.pending_counted = True

    async def _stop_instance(self, instance: Actor) -> None:
        with trio.move_on_after(self.spec.shutdown_timeout, shield=True) as scope:
            try:
                await instance.on_stop()
            except Exception as exc:  # noqa: BLE001 - a failing on_stop must not mask the crash
                self.log.warning("on_stop_failed", error=repr(exc))
        if scope.cancelled_caught:
            self.log.warning("on_stop_timed_out", timeout=self.spec.shutdown_timeout)

    def request_stop(self) -> None:
        self.stop_requested = True
        self.mailbox.wake_consumer()

    def retire(self) -> None:
        super().retire()
        self._drop_retry("actor stopped")
        self.mailbox.retire()

    def _drop_retry(self, reason: str) -> None:
        """Dead-letter the message held for redelivery, if any; its attempts go with it."""
        if self.has_retry:
            message = self.retry
            self.has_retry = False
            self.retry = _NOTHING
            attempts, self.retry_attempts = self.retry_attempts, 0
            self.in_flight.finished()
            self._dead(message, reason, attempts, None)

    def revive(self) -> None:
        super().revive()
        self.mailbox.reopen()

    def take_queued(self) -> list[Message]:
        """See `ActorContext.take_queued`."""
        taken: list[Message] = []
        if self.has_retry:
            taken.append(self.retry)
            self.has_retry = False
            self.retry = _NOTHING
            self.retry_attempts = 0
        taken.extend(self.mailbox.take_all())
        if not taken:
            return []
        messages = []
        for message in taken:
            if type(message) is Ask:
                message.fail(MessageDropped(f"{self.path}: taken unanswered at the actor's stop"))
            messages.append(unwrap(message))
        self.processed += len(taken)
        self.in_flight.finished(len(taken))
        return messages

    def retire_for_shutdown(self) -> None:
        """The system has stopped: dead-letter everything still held; close the mailbox."""
        self._drop_retry("system stopped")
        self.mailbox.close()

    # ------------------------------------------------------------------ the loop
    async def _loop(self, handle: Callable[[Any], Awaitable[Any]]) -> None:
        mailbox = self.mailbox
        queue = mailbox.queue
        in_flight = self.in_flight
        timeout = self.spec.handler_timeout
        conflating = self.spec.mailbox.overflow is Overflow.CONFLATE
        # A lazy mailbox only held its messages back to batch them: on a graceful stop
        # they are handled first (bounded by the shutdown timeout), not dead-lettered --
        # the one held for redelivery first of all, as it came first (FIFO).
        drains = mailbox.wake_after > 1
        if self.has_retry and (drains or not self.stop_requested):
            message = self.retry
            self.retry = _NOTHING
            self.has_retry = False
            self.redelivered += 1
            self.in_hand = message
            await self._deliver(handle, message, timeout)
            self.in_hand = _NOTHING
            self.retry_attempts = 0
            self.processed += 1
            in_flight.finished()
        plain = timeout is None
        while not self._stop_pending() or (drains and queue):
            batch = len(queue)
            if not batch:
                await mailbox.wait_nonempty()
                continue
            done = 0
            self.batches += 1
            try:
                while batch:
                    batch -= 1
                    message = queue.popleft()
                    if mailbox.blocked:
                        mailbox.release_senders()
                    if conflating:
                        message = mailbox.taken_conflated(message)
                    self.in_hand = message
                    if plain and type(message) is not Ask:
                        await handle(message)
                    else:
                        await self._deliver(handle, message, timeout)
                    self.in_hand = _NOTHING
                    done += 1
                    if self.stop_requested and not drains:
                        return
            finally:
                # Counted once per batch: the count only has to reach zero late, never
                # early, and the handlers' own sends were counted as they happened.
                self.processed += done
                in_flight.count -= done
                if in_flight.count == in_flight.parked:
                    in_flight.finished(0)
            if queue:
                await trio.lowlevel.checkpoint()

    def _stop_pending(self) -> bool:
        # A method rather than a bare attribute read so that type narrowing from the loop
        # condition does not claim the flag cannot change while a handler awaits.
        return self.stop_requested

    async def _deliver(
        self, handle: Callable[[Any], Awaitable[Any]], message: Message, limit: float | None
    ) -> None:
        envelope = message if type(message) is Ask else None
        payload = unwrap(message)
        if limit is None:
            result = await handle(payload)
        else:
            with trio.move_on_after(limit):
                result = await handle(payload)
                if envelope is not None:
                    envelope.reply(result)
                return
            msg = f"{self.path}: handler exceeded {limit}s"
            raise HandlerTimeout(msg)
        if envelope is not None:
            envelope.reply(result)

    # ------------------------------------------------------------------ bookkeeping
    def _keep_in_hand(self, error: Exception | None) -> None:
        message = self.in_hand
        self.in_hand = _NOTHING
        if error is not None:
            self.retry_attempts += 1
            if self.retry_attempts > self.spec.max_redeliveries:
                attempts = self.retry_attempts
                self.retry_attempts = 0
                self.in_flight.finished()
                self._dead(message, "poison", attempts, error)
                return
        self.retry = message
        self.has_retry = True

    def _dead_from_mailbox(self, message: Message, reason: str) -> None:
        self._dead(message, reason, 0, None)

    def _dead(self, message: Message, reason: str, attempts: int, error: Exception | None) -> None:
        self.dead_letters += 1
        if type(message) is Ask:
            dropped = MessageDropped(f"{self.path}: message dead-lettered ({reason})")
            dropped.__cause__ = error
            message.fail(dropped)
        self.system.record_dead_letter(self.path, unwrap(message), reason, attempts, error)

    def statistics(self) -> ActorStatistics:
        """A frozen snapshot of this actor's counters."""
        mailbox = self.mailbox
        return ActorStatistics(
            path=self.path,
            mailbox_depth=mailbox.depth() + (1 if self.has_retry else 0),
            mailbox_capacity=mailbox.capacity,
            accepted=mailbox.accepted,
            processed=self.processed,
            restarts=max(0, self.incarnation - 1),
            crashes=self.crashes,
            redelivered=self.redelivered,
            conflated=mailbox.conflated,
            rejected=mailbox.rejected,
            dead_letters=self.dead_letters,
            senders_waiting=mailbox.blocked,
            running=self.running,
            batches=self.batches,
        )
