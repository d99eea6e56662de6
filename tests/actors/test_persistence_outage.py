"""The persistence actor over a real PostgreSQL that goes away mid-run.

The outage is made by a fault-injecting TCP proxy between the store and the shared server
(cut, then restore; the server itself is never stopped), or by `pg_terminate_backend` on
every connection of the test's database. Real clock throughout: the tests wait on
announcements, events and asks, never on a sleep.
"""

from __future__ import annotations

import urllib.parse
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import attrs
import pytest
import structlog
import trio
import trio.testing
from tradewind.actors import (
    Bar,
    Fill,
    Instrument,
    Order,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderSubmitted,
    OrderType,
    Side,
    TimeInForce,
    decode_record,
)
from tradewind.actors._messages import Flush, OrderUpdated, Persist, StoreAvailabilityChanged
from tradewind.actors._persistence import (
    PersistenceActor,
    PersistenceKeeper,
    PersistenceStatistics,
    replay_spill_journal,
)
from tradewind.runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    Backoff,
    ChildSpec,
    MailboxSpec,
    SupervisorFailed,
    SupervisorSpec,
    open_actor_system,
)
from tradewind.runtime._aio import open_aio_loop, run_aio
from tradewind.storage import Store, StoreError, open_store

from tests.actors.test_spill import persistence_alone
from tests.faultproxy import FaultProxy, open_fault_proxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
T0 = 1_767_571_200 * 10**9
MINUTE = 60 * 10**9
#: Fast retries, so an outage is noticed and its end found within a fraction of a second.
FAST = {"retry_initial": 0.02, "retry_max": 0.2, "flush_interval": 0.05}
#: `persistence_alone` (tests/actors/test_spill.py) with quick retries and restarts.
QUICK_ALONE: dict[str, Any] = {
    "retry_initial": FAST["retry_initial"],
    "retry_max": FAST["retry_max"],
    "supervisor": {"max_restarts": 2, "within": 60, "backoff": Backoff(initial=0.0, jitter=0.0)},
}


def bar(n: int) -> Bar:
    price = Decimal(100) + Decimal(n) / 100
    return Bar("AAPL", "1m", T0 + n * MINUTE, price, price, price, price, n)


def order_flow(k: int) -> list[OrderUpdated]:
    """Submitted, accepted and filled: three updates of order k (one fill)."""
    client_order_id = f"sma-{k + 1:08d}"
    intent = OrderIntent(
        "sma", "AAPL", Side.BUY, Decimal(k + 1), OrderType.MARKET, None, TimeInForce.DAY
    )
    order = Order.create(client_order_id, intent, T0 + k)
    fill = Fill(
        f"x-{k}",
        client_order_id,
        "AAPL",
        Side.BUY,
        Decimal(k + 1),
        Decimal("100.25"),
        Decimal("0.10"),
        "USD",
        T0 + k + 2,
    )
    updates = []
    for event in (
        OrderSubmitted(client_order_id=client_order_id, ts=T0 + k),
        OrderAccepted(client_order_id=client_order_id, ts=T0 + k + 1, broker_order_id=f"b-{k}"),
        OrderFilled(client_order_id=client_order_id, ts=T0 + k + 2, fill=fill),
    ):
        order = order.apply(event)
        assert order.last_event is not None
        updates.append(OrderUpdated(order, order.last_event, event.ts))
    return updates


def mixed_messages(count: int) -> list[tuple[object, ...]]:
    """`count` messages: one bar each, and every fourth also an order update."""
    flows = [order_flow(k) for k in range(count // 4 + 1)]
    messages: list[tuple[object, ...]] = []
    for n in range(count):
        records: list[object] = [bar(n)]
        if n % 4 == 0:
            flow = flows[n // 4]
            records.extend(flow)
        messages.append(tuple(records))
    return messages


def via(url: str, host_port: str) -> str:
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host_port}" if userinfo else host_port
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@attrs.define
class Announcements:
    """What the actor at the risk path was told, and a way to wait for it."""

    seen: list[StoreAvailabilityChanged] = attrs.field(factory=list)
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def add(self, change: StoreAvailabilityChanged) -> None:
        self.seen.append(change)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, available: bool) -> None:
        while not (self.seen and self.seen[-1].available is available):
            await self._changed.wait()

    @property
    def states(self) -> list[bool]:
        return [change.available for change in self.seen]


class RiskStandIn(Actor):
    def __init__(self, announcements: Announcements) -> None:
        self.announcements = announcements

    async def handle(self, message: object) -> None:
        assert isinstance(message, StoreAvailabilityChanged)
        self.announcements.add(message)


@attrs.frozen
class Rig:
    system: ActorSystem
    keeper: PersistenceKeeper
    announcements: Announcements
    direct: Store  # the same database, not through the proxy: for reading back
    proxy: FaultProxy | None

    @property
    def ref(self) -> ActorRef:
        return self.system.ref("persistence")


@asynccontextmanager
async def rig(
    pg_url: str, *, proxied: bool = True, capacity: int = 16, **options: Any
) -> AsyncIterator[Rig]:
    target = urllib.parse.urlsplit(pg_url)
    keeper = PersistenceKeeper()
    announcements = Announcements()
    async with (
        open_aio_loop(),
        open_fault_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
        open_store(pg_url) as direct,
        open_store(
            via(pg_url, proxy.url_host) if proxied else pg_url, pool_size=2, connect_timeout=2
        ) as store,
    ):
        async with direct.transaction() as tx:
            tx.upsert_instruments([AAPL])
        spec = SupervisorSpec(
            "test",
            (
                ChildSpec("risk", lambda: RiskStandIn(announcements), mailbox=MailboxSpec(16)),
                ChildSpec(
                    "persistence",
                    lambda: PersistenceActor(keeper, store, risk="risk", **{**FAST, **options}),
                    mailbox=MailboxSpec(capacity),
                ),
            ),
        )
        async with open_actor_system(spec, asyncio_loop=False) as system:
            yield Rig(system, keeper, announcements, direct, proxy if proxied else None)


async def assert_stored_once(store: Store, messages: Sequence[tuple[object, ...]]) -> None:
    """Every record of `messages` is in the store, and nothing else."""
    records = [record for message in messages for record in message]
    bars = [r for r in records if isinstance(r, Bar)]
    updates = [r for r in records if isinstance(r, OrderUpdated)]
    assert await store.bars() == bars
    counts = await store.counts()
    assert counts.bars == len(bars)
    assert counts.order_events == len(updates)
    assert counts.fills == sum(1 for u in updates if u.fill is not None)
    orders = {u.order.client_order_id: u.order for u in updates}
    assert await store.orders() == [orders[key] for key in sorted(orders)]
    for client_order_id in orders:
        events = [u.event for u in updates if u.order.client_order_id == client_order_id]
        assert await store.order_events(client_order_id) == events


class TestCutAndRestore:
    async def test_a_cut_is_announced_records_are_kept_and_written_after_restore(
        self, pg_url: str
    ) -> None:
        messages = mixed_messages(9)
        with trio.fail_after(60):
            async with rig(pg_url, batch_size=2) as r:
                assert r.proxy is not None
                await r.ref.send(Persist(messages[0]))
                assert await r.ref.ask(Flush()) == len(messages[0])
                r.proxy.cut()
                for message in messages[1:]:
                    await r.ref.send(Persist(message))
                await r.announcements.wait_for(False)
                await r.system.quiesce()
                down = r.keeper.statistics()
                r.proxy.restore()
                await r.announcements.wait_for(True)
                total = sum(len(m) for m in messages)
                assert await r.ref.ask(Flush()) == total
                await assert_stored_once(r.direct, messages)
        assert not down.store_available
        assert down.pending == total - len(messages[0])  # all kept, none committed
        assert down.store_failures >= 1
        assert r.announcements.states == [False, True]
        assert "connection" in r.announcements.seen[0].reason.lower()

    async def test_without_spill_a_full_buffer_blocks_the_producer_until_restore(
        self, pg_url: str
    ) -> None:
        count, capacity, max_pending = 30, 2, 4
        messages = [(bar(n),) for n in range(count)]
        after_restore: list[bool] = []
        restored = False
        done = trio.Event()
        with trio.fail_after(60):
            async with rig(pg_url, capacity=capacity, batch_size=2, max_pending=max_pending) as r:
                assert r.proxy is not None

                async def produce() -> None:
                    for message in messages:
                        await r.ref.send(Persist(message))
                        after_restore.append(restored)
                    done.set()

                r.proxy.cut()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(produce)
                    await r.announcements.wait_for(False)
                    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                    blocked = r.ref.statistics().senders_waiting
                    sent_before = len(after_restore)
                    held = r.keeper.statistics()
                    assert not done.is_set()
                    restored = True
                    r.proxy.restore()
                    await done.wait()
                assert await r.ref.ask(Flush()) == count
                await assert_stored_once(r.direct, messages)
        assert blocked == 1  # the producer was waiting in `send` ...
        # ... and went on only after the restore: at most the buffer, the message in
        # hand and the mailbox were taken before it.
        assert sent_before <= max_pending + 1 + capacity
        assert after_restore == [False] * sent_before + [True] * (count - sent_before)
        assert held.pending <= max_pending + 1
        assert r.keeper.statistics().accepted == count


class TestSpill:
    async def test_with_spill_the_producer_goes_on_and_the_journal_is_replayed(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        journal = tmp_path / "spill.jsonl"
        messages = mixed_messages(40)
        total = sum(len(m) for m in messages)
        with trio.fail_after(60):
            async with rig(
                pg_url,
                capacity=2,
                batch_size=4,
                max_pending=6,
                spill=True,
                spill_path=journal,
            ) as r:
                assert r.proxy is not None
                await r.ref.send(Persist(messages[0]))
                assert await r.ref.ask(Flush()) == len(messages[0])
                r.proxy.cut()
                for message in messages[1:]:  # completes while the store is away
                    await r.ref.send(Persist(message))
                await r.system.quiesce()
                during = r.keeper.statistics()
                spilled_lines = read_journal(journal)
                r.proxy.restore()
                await r.announcements.wait_for(True)
                assert await r.ref.ask(Flush()) == total
                await assert_stored_once(r.direct, messages)
                after = r.keeper.statistics()
        assert not during.store_available
        assert during.spilled == len(spilled_lines) > 0
        assert during.spilled + during.pending == total - len(messages[0])
        later = [record for message in messages[1:] for record in message]
        assert spilled_lines == later[: len(spilled_lines)]  # the oldest, in order
        assert not journal.exists()
        assert after.spill is not None
        assert after.spill.replayed == during.spilled
        assert (after.spilled, after.pending) == (0, 0)
        assert r.announcements.states == [False, True]


def read_journal(path: Path) -> list[object]:
    return [decode_record(line) for line in path.read_bytes().splitlines()]


TERMINATE_OTHERS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


async def terminate_while_persisting(
    pg_url: str, messages: list[tuple[object, ...]], at: set[int], *, idle_first: bool
) -> tuple[list[int], PersistenceStatistics]:
    """Send `messages`; after each index in `at` terminate every other connection to the
    database (with `idle_first`, after a `Flush`, so the pool's connections are open and
    idle). Check every record is stored once; return the connections ended per round and
    the actor's statistics."""
    terminated: list[int] = []
    with trio.fail_after(60):
        async with rig(pg_url, proxied=False, batch_size=10) as r:
            conn = await run_aio(asyncpg.connect, pg_url)
            try:
                for n, message in enumerate(messages):
                    await r.ref.send(Persist(message))
                    if n in at:
                        if idle_first:
                            await r.ref.ask(Flush())
                        rows = await run_aio(conn.fetch, TERMINATE_OTHERS)
                        terminated.append(sum(1 for row in rows if row[0]))
            finally:
                await run_aio(conn.close)
            total = sum(len(m) for m in messages)
            assert await r.ref.ask(Flush()) == total
            async with open_store(pg_url) as fresh:  # `direct` lost its connections too
                await assert_stored_once(fresh, messages)
    statistics = r.keeper.statistics()
    assert statistics.accepted == total
    return terminated, statistics


class TestTerminatedBackends:
    async def test_terminating_every_connection_while_units_are_written_loses_nothing(
        self, pg_url: str
    ) -> None:
        # The producer never pauses: every 15 messages every other connection to the
        # database is ended, wherever the actor's unit of work is -- between statements,
        # inside a COPY, in the commit. (An asyncpg error nobody retrieved used to end the
        # trio-asyncio loop; the bridge now logs it.)
        terminated, statistics = await terminate_while_persisting(
            pg_url, mixed_messages(150), set(range(14, 150, 15)), idle_first=False
        )
        assert sum(terminated) >= 1  # the actor's connections were open and were ended
        assert statistics.store_failures >= 1  # a unit of work was hit, and retried

    async def test_terminating_every_idle_connection_mid_run_loses_nothing(
        self, pg_url: str
    ) -> None:
        terminated, _ = await terminate_while_persisting(
            pg_url, mixed_messages(120), {40, 80}, idle_first=True
        )
        assert all(n >= 1 for n in terminated)


REFUSE_FILLS = (
    (
        "CREATE FUNCTION refuse_fills() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'fills are refused' USING ERRCODE = '42501'; END $$"
    ),
    (
        "CREATE TRIGGER refuse_fills BEFORE INSERT ON fills "
        "FOR EACH ROW EXECUTE FUNCTION refuse_fills()"
    ),
)


class TestStopAgainstAStuckStore:
    async def test_records_queued_behind_a_locked_table_at_the_stop_are_spilled(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        """`bars` held in ACCESS EXCLUSIVE by another session: the commit waits, more
        messages queue behind it, the stop is cut short. Everything accepted or queued
        is in the journal (nothing dead-lettered), and the next start stores it once."""
        journal = tmp_path / "spill.jsonl"
        messages = mixed_messages(12)
        keeper = PersistenceKeeper()
        with trio.fail_after(60):
            async with open_aio_loop(), open_store(pg_url) as store:
                async with store.transaction() as tx:
                    tx.upsert_instruments([AAPL])
                locker = await run_aio(asyncpg.connect, pg_url)
                try:
                    await run_aio(locker.execute, "BEGIN")
                    await run_aio(locker.execute, "LOCK TABLE bars IN ACCESS EXCLUSIVE MODE")
                    spec = persistence_alone(keeper, store, journal, batch_size=4, **QUICK_ALONE)
                    async with open_actor_system(spec, asyncio_loop=False) as system:
                        for message in messages:
                            await system.ref("persistence").send(Persist(message))
                    after = system.statistics()
                finally:
                    await run_aio(locker.close)  # the lock goes with the session
                total = sum(len(m) for m in messages)
                assert after.dead_letters == 0
                stats = keeper.statistics()
                assert (stats.accepted, stats.pending, stats.spilled) == (total, 0, total)
                assert read_journal(journal) == [r for m in messages for r in m]
                replayed = await replay_spill_journal(
                    PersistenceKeeper(), store, journal, log=structlog.get_logger()
                )
                assert replayed == total
                await assert_stored_once(store, messages)
        assert not journal.exists()

    async def test_a_permanent_refusal_ends_supervision_with_what_was_taken_in_spilled(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        """A trigger raises SQLSTATE 42501 on every fill: persistence crashes until its
        supervisor gives up. What it had taken in is in the journal; the next start
        fails with the journal kept while the store still refuses, and stores it all
        once the trigger is gone."""
        journal = tmp_path / "spill.jsonl"
        messages = mixed_messages(8)
        keeper = PersistenceKeeper()
        log = structlog.get_logger()
        with trio.fail_after(60):
            async with open_aio_loop(), open_store(pg_url) as store:
                async with store.transaction() as tx:
                    tx.upsert_instruments([AAPL])
                admin = await run_aio(asyncpg.connect, pg_url)
                try:
                    with pytest.raises(SupervisorFailed):  # noqa: PT012
                        spec = persistence_alone(
                            keeper, store, journal, batch_size=1_000, **QUICK_ALONE
                        )
                        async with open_actor_system(spec, asyncio_loop=False) as system:
                            ref = system.ref("persistence")
                            for message in messages:
                                await ref.send(Persist(message))
                            await system.quiesce()  # all taken in, none committed yet
                            for statement in REFUSE_FILLS:
                                await run_aio(admin.execute, statement)
                            await ref.send(Flush())  # refused: a crash, and again, ...
                            await system.quiesce()  # ends when supervision gives up
                    records = [r for m in messages for r in m]
                    stats = keeper.statistics()
                    assert (stats.accepted, stats.pending) == (len(records), 0)
                    assert read_journal(journal) == records
                    with pytest.raises(StoreError, match="42501"):
                        await replay_spill_journal(PersistenceKeeper(), store, journal, log=log)
                    assert read_journal(journal) == records  # kept
                    await run_aio(admin.execute, "DROP TRIGGER refuse_fills ON fills")
                finally:
                    await run_aio(admin.close)
                assert await replay_spill_journal(
                    PersistenceKeeper(), store, journal, log=log
                ) == len(records)
                await assert_stored_once(store, messages)
        assert not journal.exists()
