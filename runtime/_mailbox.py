"""The bounded mailbox: a deque with its own wait/wake, owned by the supervisor.

Design notes
------------
* Why not ``trio.open_memory_channel``: every channel send and receive is a full
  checkpoint (a trip through the scheduler), which caps a 4-stage pipeline at tens of
  thousands of messages per second. Here the queue is a ``collections.deque``; the
  consumer parks with ``wait_task_rescheduled`` only when the queue is empty and drains
  everything queued in one batch, yielding once per batch (see ``_actor.py``).
* ``send`` is a cancellation point but, on the fast path, not a schedule point: it calls
  ``trio.lowlevel.checkpoint_if_cancelled()`` and enqueues. It parks (a real schedule
  point) only when the mailbox is full under ``BLOCK``. Fairness still holds because
  (a) every consumer yields after each batch, and (b) mailboxes are bounded, so a fast
  producer fills the next mailbox and parks, letting its consumer run. A producer that
  only ever sends to a mailbox with room and never awaits anything else could starve its
  peers; bounded mailboxes make that impossible in a pipeline, and a producer loop that
  is not itself an actor should ``await trio.lowlevel.checkpoint()`` now and then.
* ``CONFLATE`` needs O(1) replacement of a queued message: the queue then holds small
  mutable ``_Slot`` objects and a dict maps each key to its slot, so a newer message
  overwrites the slot in place (keeping the older message's queue position, so a busy
  key cannot be starved by a quiet one).
* Blocked senders park in a ``trio.lowlevel.ParkingLot``; the consumer unparks one per
  message taken (checked with a plain counter so the common case costs one int test).
* The in-flight counter for ``quiesce`` is shared by every mailbox of a system: +1 when a
  message is accepted, -1 once it is finished (handled, conflated away or dead-lettered).
  A handler's sends happen before its own -1, so a cascade A -> B -> C never reads zero
  half-way.
* Lazy wake-up (``MailboxSpec.wake_after`` > 1): a plain ``send`` into a mailbox whose
  consumer is parked leaves it parked until ``wake_after`` messages are queued; the
  messages are *parked* (counted in ``InFlight.parked`` as well as in ``count``). An
  ask, a full mailbox, ``send_nowait`` and ``quiesce()`` wake it at once. So a consumer
  that only stores what others did (persistence in a replay) drains hundreds of
  messages per wake-up instead of one per scheduler pass, and ``settle()`` -- "nothing
  but parked messages is in flight" -- is a barrier that does not wake it.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, TypeAlias

import trio
from tradewind.runtime._errors import MailboxClosed, MailboxFull, MessageDropped
from tradewind.runtime._specs import MailboxSpec, Overflow

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

Message: TypeAlias = Any
"""Whatever an actor accepts; actors narrow it in their own ``handle``."""

OPEN = 0
RETIRED = 1
CLOSED = 2


class InFlight:
    """The system-wide count of accepted, unfinished messages, with idle waiters.

    ``parked`` counts the messages of that total that wait in lazy mailboxes whose
    consumer has not been woken (see the module notes); the system is *settled* when
    nothing else is in flight (``count == parked``) and *idle* at zero.
    """

    __slots__ = ("count", "hooks", "lazy", "parked", "waiting")

    def __init__(self) -> None:
        self.count = 0
        self.parked = 0
        # The tasks parked in `_park` (a replay's feed waits here once per bar: a plain
        # list and `reschedule` cost a fraction of a `ParkingLot`).
        self.waiting: list[trio.lowlevel.Task] = []
        self.lazy: list[Mailbox] = []
        # One-shot settle hooks, oldest first (see `when_settled`).
        self.hooks: deque[Callable[[], None]] = deque()

    def finished(self, n: int = 1) -> None:
        """Count ``n`` messages as finished; once the system settles, run the settle
        hooks while it stays settled (a hook may send more) and then wake the waiters."""
        self.count -= n
        if self.count == self.parked:
            hooks = self.hooks
            while hooks:
                hooks.popleft()()
                if self.count != self.parked:
                    return  # the hook sent work: the rest wait for the next settle
            if self.waiting:
                waiting, self.waiting = self.waiting, []
                for task in waiting:
                    trio.lowlevel.reschedule(task)

    def when_settled(self, hook: Callable[[], None]) -> None:
        """Run `hook` (synchronously, once) the next time the system settles -- at once
        if it is settled now and no earlier hook waits."""
        if self.count == self.parked and not self.hooks:
            hook()
        else:
            self.hooks.append(hook)

    def cancel_hook(self, hook: Callable[[], None]) -> None:
        """Disarm every pending call of `hook` (nothing if none)."""
        while hook in self.hooks:
            self.hooks.remove(hook)

    def wake_parked(self) -> None:
        """Wake every lazy mailbox's consumer that has parked messages."""
        for mailbox in self.lazy:
            if mailbox.parked:
                mailbox.wake_consumer()

    async def wait_settled(self) -> None:
        """Return once nothing but parked messages is in flight (a checkpoint even when
        that is already so); parked messages stay parked."""
        if self.count == self.parked:
            await trio.lowlevel.checkpoint()
            return
        while self.count != self.parked:
            await self._park()

    async def wait_idle(self) -> None:
        """Return once the count is zero, waking parked messages whenever nothing else
        is left (a checkpoint even when the count already is zero)."""
        if self.count == 0:
            await trio.lowlevel.checkpoint()
            return
        while self.count:
            if self.count == self.parked:
                self.wake_parked()
            await self._park()

    async def _park(self) -> None:
        task = trio.lowlevel.current_task()
        self.waiting.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            self.waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class Ask:
    """The envelope of an ``ask``: the question and a one-shot reply slot."""

    __slots__ = ("done", "error", "message", "value")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.done = trio.Event()
        self.value: Message = None
        self.error: BaseException | None = None

    def reply(self, value: Message) -> None:
        """Answer the asker (the first answer wins)."""
        if not self.done.is_set():
            self.value = value
            self.done.set()

    def fail(self, error: BaseException) -> None:
        """Tell the asker its question will never be answered (the first answer wins)."""
        if not self.done.is_set():
            self.error = error
            self.done.set()


class _Slot:
    """A queue entry of a ``CONFLATE`` mailbox; the message is replaced in place."""

    __slots__ = ("key", "message")

    def __init__(self, key: Hashable, message: Message) -> None:
        self.key = key
        self.message = message


def unwrap(message: Message) -> Message:
    """The user-level message inside an ``Ask`` envelope (or the message itself)."""
    return message.message if type(message) is Ask else message


class Mailbox:
    """A bounded FIFO of messages for one actor, surviving the actor's restarts.

    Its attributes are read directly by ``ActorRef.send`` and the actor loop on the hot
    path; everything else goes through the methods.
    """

    __slots__ = (
        "_index",
        "_key",
        "_senders",
        "accepted",
        "blocked",
        "capacity",
        "conflated",
        "consumer",
        "fast",
        "in_flight",
        "on_dead",
        "overflow",
        "parked",
        "queue",
        "rejected",
        "state",
        "wake_after",
    )

    def __init__(
        self,
        spec: MailboxSpec,
        in_flight: InFlight,
        on_dead: Callable[[Any, str], None],
    ) -> None:
        self.capacity = spec.capacity
        self.overflow = spec.overflow
        self._key = spec.key
        self._index: dict[Hashable, _Slot] = {}
        self.queue: deque[Any] = deque()
        self.in_flight = in_flight
        self.on_dead = on_dead
        self.state = OPEN
        # The fast path of send applies only to open, non-conflating mailboxes.
        self.fast = spec.overflow is not Overflow.CONFLATE
        self.consumer: trio.lowlevel.Task | None = None
        self._senders = trio.lowlevel.ParkingLot()
        self.blocked = 0
        # Lazy wake-up: 1 wakes the consumer on every message (see the module notes).
        self.wake_after = spec.wake_after
        self.parked = 0
        if spec.wake_after > 1:
            in_flight.lazy.append(self)
        self.accepted = 0
        self.conflated = 0
        self.rejected = 0

    # ------------------------------------------------------------------ producers
    def offer(self, message: Message) -> bool:
        """Enqueue ``message`` if the policy allows without waiting.

        Returns:
            True if the message was accepted (or conflated, or dead-lettered because
            the actor retired); False if the mailbox is full and the message was not
            taken.

        Raises:
            MailboxClosed: the system has shut down.
        """
        if self.state != OPEN:
            if self.state == CLOSED:
                raise MailboxClosed("the actor system has shut down")
            self.on_dead(message, "actor stopped")
            return True
        if self._key is not None and self.overflow is Overflow.CONFLATE:
            key = self._key(unwrap(message))
            slot = self._index.get(key)
            if slot is not None:
                replaced = slot.message
                slot.message = message
                self.conflated += 1
                self.accepted += 1
                if type(replaced) is Ask:
                    replaced.fail(MessageDropped("replaced by a newer message with the same key"))
                # +1 for the new message, -1 for the replaced one: the count is unchanged.
                return True
            if len(self.queue) >= self.capacity:
                return False
            slot = _Slot(key, message)
            self._index[key] = slot
            self.queue.append(slot)
        else:
            if len(self.queue) >= self.capacity:
                return False
            self.queue.append(message)
        self.accepted += 1
        self.in_flight.count += 1
        self.wake_consumer()
        return True

    async def put(self, message: Message) -> None:
        """Enqueue ``message``, waiting for room under ``BLOCK`` (or ``CONFLATE``).

        Raises:
            MailboxFull: the mailbox is full and its policy is ``REJECT``.
            MailboxClosed: the system has shut down.

        Cancellation: if cancelled while waiting for room, the message was not enqueued.
        """
        while not self.offer(message):
            if self.overflow is Overflow.REJECT:
                self.rejected += 1
                raise MailboxFull(f"mailbox full ({self.capacity} messages)")
            self.blocked += 1
            try:
                await self._senders.park()
            finally:
                self.blocked -= 1

    def put_nowait(self, message: Message) -> None:
        """Enqueue ``message`` without waiting.

        Raises:
            MailboxFull: the mailbox is full (whatever its policy); counted as rejected.
            MailboxClosed: the system has shut down.
        """
        if not self.offer(message):
            self.rejected += 1
            raise MailboxFull(f"mailbox full ({self.capacity} messages)")

    def wake_consumer(self) -> None:
        """Reschedule the consumer if it is parked on an empty mailbox."""
        task = self.consumer
        if task is not None:
            self.consumer = None
            self._unpark()
            trio.lowlevel.reschedule(task)

    def park_or_wake(self) -> None:
        """After a plain send into a lazy mailbox: wake the parked consumer once
        ``wake_after`` messages are queued, else count the message as parked."""
        if len(self.queue) >= self.wake_after:
            self.wake_consumer()
        else:
            self.parked += 1
            self.in_flight.parked += 1

    def _unpark(self) -> None:
        if self.parked:
            self.in_flight.parked -= self.parked
            self.parked = 0

    # ------------------------------------------------------------------ consumer
    def taken_conflated(self, item: Message) -> Message:
        """Finish taking ``item`` popped from the queue of a ``CONFLATE`` mailbox."""
        del self._index[item.key]
        return item.message

    def release_senders(self) -> None:
        """Let a parked sender retry (called after a batch of direct pops)."""
        if self.blocked:
            self._senders.unpark_all()

    async def wait_nonempty(self) -> None:
        """Park until a message arrives or ``wake_consumer`` is called.

        Cancellation: a cancellation point; on cancellation nothing is consumed.
        """
        self.consumer = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self.consumer = None
            self._unpark()  # what it parked is plain queued work again
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    # ------------------------------------------------------------------ lifetime
    def retire(self) -> None:
        """Stop accepting for good while the system runs: dead-letter what is queued and
        everything sent from now on, and let blocked senders through."""
        self.state = RETIRED
        self.fast = False
        self._drain("actor stopped")

    def reopen(self) -> None:
        """Accept messages again (the supervisor above restarted a retired actor)."""
        if self.state == RETIRED:
            self.state = OPEN
            self.fast = self.overflow is not Overflow.CONFLATE

    def close(self) -> None:
        """The system has stopped: dead-letter what is queued; later sends raise."""
        if self.state != CLOSED:
            self._drain("system stopped")
        self.state = CLOSED
        self.fast = False

    def take_all(self) -> list[Message]:
        """Take every queued message out (oldest first) for the consumer to settle
        itself, rather than dead-letter it; blocked senders may retry. The messages are
        not finished in the in-flight count: the caller does that."""
        self._unpark()
        taken = [item.message if type(item) is _Slot else item for item in self.queue]
        self.queue.clear()
        self._index.clear()
        self._senders.unpark_all()
        return taken

    def _drain(self, reason: str) -> None:
        self._unpark()
        while self.queue:
            item = self.queue.popleft()
            message = item.message if type(item) is _Slot else item
            self.in_flight.finished()
            self.on_dead(message, reason)
        self._index.clear()
        self._senders.unpark_all()

    def depth(self) -> int:
        """How many messages are queued."""
        return len(self.queue)
