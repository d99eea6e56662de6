"""The tree builder's own pieces: the stoppable source, cold start in paper mode, the
summary's JSON form, crash-plan counting, dead letters and the summary renderings."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import trio
from structlog.testing import capture_logs
from tradewind.actors import Bar
from tradewind.actors._paper import PaperBroker, PaperConfig, PaperFaults
from tradewind.actors._settings import DEFAULT_SYNTHETIC_START
from tradewind.actors._sources import SourceBar, SyntheticBarSource
from tradewind.actors._tree import (
    CrashPlan,
    RunSummary,
    StoppableSource,
    open_trading_system,
    paper_config,
)
from tradewind.actors._values import Instrument
from tradewind.runtime._intensity import Backoff, backoff_delay
from tradewind.storage import StoreInUse, StoreUnavailable, open_store, parse_store_url
from tradewind.storage._store import acquire_run_lock

from tests.system.conftest import RISK, MemoryStore, settings_for, synthetic
from tradewind._summary import summary_rows, summary_table, summary_text

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tradewind.actors._settings import Settings
    from tradewind.storage import Transaction

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))


class TestStoppableSource:
    async def test_stop_cancels_the_wait_for_the_next_item(self, autojump_clock):
        slow = SyntheticBarSource([AAPL], seed=1, start_ts=0, count=100, interval=60.0)
        source = StoppableSource(slow)
        assert (source.name, source.describe()) == (slow.name, slow.describe())
        taken = []
        async with trio.open_nursery() as nursery:

            async def take():
                taken.extend([item async for item in source.items()])

            nursery.start_soon(take)
            await trio.sleep(90)  # virtual: the first two bars, then waiting for the third
            source.stop()
        assert source.stopped
        assert len(taken) == 2
        assert all(isinstance(item, SourceBar) for item in taken)
        assert trio.current_time() < 120

    async def test_a_source_stopped_before_it_starts_yields_nothing(self):
        source = StoppableSource(SyntheticBarSource([AAPL], seed=1, start_ts=0, count=5))
        source.stop()
        assert [item async for item in source.items()] == []

    async def test_without_cancelling_waits_stop_ends_before_the_next_item(self):
        # The replay form: no cancel scope per item; stop is seen before the next read.
        inner = SyntheticBarSource([AAPL], seed=1, start_ts=0, count=50)
        source = StoppableSource(inner, cancel_waits=False)
        taken = []
        async for item in source.items():
            taken.append(item)
            if len(taken) == 3:
                source.stop()
        assert source.stopped
        expected = [item async for item in inner.items()][:3]
        assert taken == expected

    async def test_without_cancelling_waits_the_whole_source_is_read(self):
        inner = SyntheticBarSource([AAPL], seed=1, start_ts=0, count=20)
        source = StoppableSource(inner, cancel_waits=False)
        assert [item async for item in source.items(skip=5)] == [
            item async for item in inner.items(skip=5)
        ]


class TestPaperColdStart:
    async def test_a_second_paper_run_resumes_after_the_stored_bars_and_keeps_positions(
        self, tmp_path
    ):
        url = f"sqlite:///{tmp_path / 'paper.db'}"
        first_settings = settings_for(
            tmp_path, mode="paper", store=url, data=synthetic(count=80, interval=0.005)
        )
        async with open_store(url) as store:
            async with open_trading_system(first_settings, store=store) as first:
                await first.wait_finished()
            positions = dict(first.portfolio.positions)
            assert first.result.fills > 0
            more = settings_for(
                tmp_path, mode="paper", store=url, data=synthetic(count=120, interval=0.005)
            )
            async with open_trading_system(more, store=store) as second:
                await second.wait_finished()
        feed = second.feed.statistics()
        assert feed.resumed == first.feed.statistics().accepted  # the first 80 steps
        # the stored steps are not paced again (the crashed run waited for them)
        assert first.feed.last_ts is not None
        assert second.source.inner.unpaced_until == first.feed.last_ts  # type: ignore[attr-defined]
        assert feed.accepted == 2 * 40  # the 40 new steps, two instruments
        # the second run started from the stored positions and kept numbering orders
        assert second.strategy.portfolio.positions.keys() >= positions.keys()
        first_ids = set(first.orders.finished)
        assert not first_ids & set(second.orders.finished)


class TestOneRunPerStore:
    """A second system on a store a run holds is refused at start, before it reads or
    writes anything (it used to take the live run for a killed one and resume it)."""

    async def test_a_second_system_is_refused_while_the_first_runs(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'paper.db'}"
        settings = settings_for(
            tmp_path, mode="paper", store=url, data=synthetic(count=100_000, interval=0.01)
        )
        async with open_trading_system(settings) as first:
            async with open_store(url) as store:
                before = await store.counts()
                for given in (None, store):  # opening the store itself, or handed one
                    with pytest.raises(StoreInUse, match="another run holds") as caught:
                        async with open_trading_system(settings, store=given):
                            pytest.fail("a second system started")
                    assert url in str(caught.value)
                    assert f"{tmp_path / 'paper.db'}-runlock" in str(caught.value)
                assert (await store.counts()).runs == before.runs == 1
            first.stop_feed()
            await first.wait_finished()
        assert first.result.outcome == "stopped"
        async with open_store(url) as store:
            assert [run.run_id for run in await store.runs()] == [first.run_id]

    async def test_a_refused_system_leaves_a_store_it_never_opened_untouched(self, tmp_path):
        path = tmp_path / "fresh.db"
        url = f"sqlite:///{path}"
        settings = settings_for(tmp_path, store=url, data=synthetic(count=10))
        lock = await acquire_run_lock(parse_store_url(url))  # another process's run
        try:
            with pytest.raises(StoreInUse):
                async with open_trading_system(settings):
                    pytest.fail("a second system started")
        finally:
            await lock.release()
        assert not await trio.Path(path).exists()  # not created, let alone migrated
        async with open_trading_system(settings) as system:  # free again: it runs
            await system.wait_finished()
        assert system.result.outcome == "completed"


class TestPaperConfig:
    def test_day_orders_live_for_the_calendars_trading_day(self, tmp_path):
        # Sydney's session opens at 23:00 UTC of the day before (daylight saving): a DAY
        # order placed at 10:00 must not expire at 11:00 (midnight UTC)
        calendar = (
            '[calendar]\ntimezone = "Australia/Sydney"\nsessions = { mon-fri = "10:00-16:00" }\n'
        )
        config = paper_config(settings_for(tmp_path, extra=calendar))
        ten = 1_767_654_000 * 10**9  # 2026-01-06 10:00 in Sydney
        assert config.timezone == "Australia/Sydney"
        assert config.day_of(ten) == config.day_of(ten + 3600 * 10**9)
        assert paper_config(settings_for(tmp_path)).timezone is None  # UTC days


class TestSummary:
    async def test_a_summary_round_trips_through_json_and_renders(self):
        settings = settings_for_tmp()
        async with open_trading_system(settings, store=MemoryStore()) as system:  # type: ignore[arg-type]
            await system.wait_finished()
            running = system.summary()
        final = system.result
        assert running.outcome == "running"
        assert final.outcome == "completed"
        assert RunSummary.from_json(final.to_json()) == final
        labels = [label for label, _ in summary_rows(final)]
        assert labels[:3] == ["run", "mode", "outcome"]
        assert "position AAPL" in labels
        assert "none" in dict(summary_rows(final))["denials"]
        text = summary_text(final)
        assert f"event log digest: {final.event_log_digest}" in text
        assert summary_table(final).row_count == len(labels)


def settings_for_tmp() -> Settings:
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    return settings_for(folder)


class TestCrashPlanCounting:
    async def test_an_empty_plan_counts_every_actors_messages_and_crashes_none(self):
        plan = CrashPlan()
        async with open_trading_system(
            settings_for_tmp(),
            store=MemoryStore(),  # type: ignore[arg-type]
            crash_plan=plan,
        ) as system:
            await system.wait_finished()
        assert plan.fired == set()
        stats = system.result
        assert stats.restarts == {}
        assert plan.counts["feed"] >= stats.bars_in
        assert plan.counts["trading/strategy"] >= stats.bars_accepted


class TestDeadLetters:
    async def test_a_message_nobody_handles_is_stored_as_a_dead_letter(self, tmp_path):
        class Poison:
            """A message the order actor crashes on, every time."""

        def poisoned(path, factory):
            if path != "trading/orders":
                return factory

            def build():
                actor = factory()
                handle = actor.handle

                async def crash_on_poison(message):
                    if isinstance(message, Poison):
                        raise RuntimeError("poison")
                    return await handle(message)

                actor.handle = crash_on_poison
                return actor

            return build

        store = MemoryStore()
        async with open_trading_system(
            settings_for(tmp_path),
            store=store,  # type: ignore[arg-type]
            wrap_actor=poisoned,
        ) as system:
            await system.system.ref("trading/orders").send(Poison())
            await system.wait_finished()
        assert system.result.dead_letters == 1
        letters = store.rows("dead_letters")
        assert len(letters) == 1
        assert letters[0][0] == "trading/orders"
        assert "Poison" in str(letters[0][3])
        assert isinstance(Bar, type)

    async def test_messages_dead_lettered_at_the_stop_are_counted_in_the_summary(
        self, tmp_path, autojump_clock
    ):
        # The strategy is stuck in a handler when the run is stopped: the wait for
        # in-flight work gives up after shutdown_timeout and what is still queued (or in
        # hand) is dead-lettered as the system stops. The summary counts them too.
        entered = trio.Event()

        def stuck(path, factory):
            if path != "trading/strategy":
                return factory

            def build():
                actor = factory()
                handle = actor.handle

                async def hang_on_a_bar(message):
                    if isinstance(message, Bar):
                        entered.set()
                        await trio.Event().wait()
                    return await handle(message)

                actor.handle = hang_on_a_bar
                return actor

            return build

        store = MemoryStore()
        settings = settings_for(
            tmp_path,
            mode="paper",
            data=synthetic(count=50, interval=0),
            extra="[supervision]\nshutdown_timeout = 0.5\nmailbox_capacity = 4\n",
        )
        async with open_trading_system(
            settings,
            store=store,  # type: ignore[arg-type]
            wrap_actor=stuck,
        ) as system:
            await entered.wait()
        letters = store.rows("dead_letters")
        assert letters
        assert system.result.dead_letters == len(letters)


class OutageStore(MemoryStore):
    """A memory store that refuses every unit of work while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        if self.down:
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("the test took the store away")
        async with super().transaction() as tx:
            yield tx


class TestPersistenceWiring:
    async def test_a_paper_run_whose_store_is_away_spills_to_the_configured_journal(self, tmp_path):
        extra = (
            "[persistence]\nbatch_size = 1\nmax_pending = 1\nflush_interval = 0.01\n"
            "spill_path = 'journals/outage.jsonl'\n"
        )
        settings = settings_for(
            tmp_path,
            mode="paper",
            extra=extra,
            data=synthetic(count=30, interval=0.002),
        )
        journal = tmp_path.resolve() / "journals" / "outage.jsonl"
        store = OutageStore()
        with trio.fail_after(30):
            async with open_trading_system(settings, store=store) as system:  # type: ignore[arg-type]
                store.down = True
                await system.wait_finished()
                spilled = system.persistence.statistics()
                on_disk = journal.is_file()
                store.down = False
        assert spilled.spill is not None
        assert spilled.spill.path == str(journal)
        assert spilled.spill.appended > 0
        assert on_disk
        # the store came back: the journal was replayed into it and removed
        assert not journal.exists()
        assert len(store.rows("bars")) == system.result.bars_accepted

    async def test_a_replay_waits_for_the_store_instead_of_spilling(self, tmp_path):
        settings = settings_for(tmp_path, data=synthetic(count=10))
        async with open_trading_system(settings, store=MemoryStore()) as system:  # type: ignore[arg-type]
            await system.wait_finished()
        assert settings.persistence.spill is False
        assert system.persistence.statistics().spill is not None  # the journal is read at start
        assert not (tmp_path / "tradewind-journal").exists()  # but never written


class TestBrokerWiring:
    async def test_the_order_actor_reconnects_with_the_configured_seeded_backoff(self, tmp_path):
        extra = (
            "seed = 3\n[broker]\nreconnect_initial = 0.01\nreconnect_max = 0.04\n"
            "reconnect_jitter = 0.5\n"
        )
        settings = settings_for(
            tmp_path,
            mode="paper",
            extra=extra,
            risk=RISK + "broker_down_state = 'REDUCING'\n",
            data=synthetic(count=40, interval=0.005),
        )
        # dropped at the fifth step; the first two reconnect attempts are refused
        faults = PaperFaults(
            disconnect_at=(DEFAULT_SYNTHETIC_START + 4 * 60 * 10**9,), failed_reconnects=2
        )
        broker = PaperBroker(PaperConfig(list(settings.instrument_map().values())), faults)
        with trio.fail_after(30), capture_logs() as logs:
            async with open_trading_system(settings, store=MemoryStore(), broker=broker) as system:  # type: ignore[arg-type]
                await system.wait_finished()
                subscribed = broker.subscriptions  # on the reconnected session
        delays = [e["delay"] for e in logs if e["event"] == "broker_reconnect_scheduled"]
        policy = Backoff(initial=0.01, multiplier=2.0, maximum=0.04, jitter=0.5)
        rng = random.Random(3)
        assert delays == [backoff_delay(policy, n, rng) for n in (1, 2, 3)]
        states = [e["state"] for e in logs if e["event"] == "trading_state_changed"]
        assert "REDUCING" in states
        assert "HALTED" not in states
        assert system.orders.statistics().reconnects == 1
        assert subscribed == {"AAPL", "MSFT"}
