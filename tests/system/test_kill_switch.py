"""Kill switch: a strategy losing past the daily loss limit is halted, its open orders are
cancelled, and every later intent is denied with TRADING_HALTED. Runs on the
`tradewind.testing` harness (the real tree under the virtual clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from tradewind.actors import OrderStatus, TradingState
from tradewind.actors._risk import DenyReason
from tradewind.actors._tree import open_trading_system
from tradewind.storage import open_store

from tests.system.conftest import as_if_killed, csv
from tests.system.test_cold_start import KilledAfterJournalWrites, comparable
from tradewind.testing import disconnect_broker, open_harness

LOSER = f"{Path(__file__).parent / 'strategies.py'}:Loser"
START = 1_767_571_200_000_000_000
MINUTE = 60_000_000_000
BARS = 30
RISK = """
[risk]
max_position = 1000
max_order_notional = 1000000
max_gross_exposure = 10000000
max_orders_per_second = 100
daily_loss_limit = 500
"""


def falling_bars(path: Path) -> Path:
    """AAPL falls by 1.00 a minute from 100.00 (a 100-unit long loses 100 a bar)."""
    rows = ["ts,instrument,open,high,low,close,volume"]
    for i in range(BARS):
        price = 100 - i
        rows.append(
            f"{START + i * MINUTE},AAPL,{price}.00,{price}.00,{price - 1}.00,{price - 1}.00,10000"
        )
    path.write_text("\n".join(rows) + "\n")
    return path


class TestKillSwitch:
    async def test_a_losing_strategy_is_halted_cancelled_and_denied(
        self, make_settings, tmp_path, autojump_clock
    ):
        settings = make_settings(
            data=csv(falling_bars(tmp_path / "falling.csv")),
            strategy=LOSER,
            params="{}",
            risk=RISK,
        )
        async with open_store("sqlite://:memory:") as store:
            async with open_harness(settings=settings, store=store) as h:
                await h.run()
            stored_orders = await store.orders()
            denials = await store.denials()
        system = h.system
        summary = h.summary
        risk = system.risk.statistics()
        assert risk.state is TradingState.HALTED
        assert risk.kill_switch_trips == 1
        assert summary.trading_state == "HALTED"
        # the position was bought once and is still held (no flatten configured)
        assert system.portfolio.position("AAPL").quantity == 100
        # no bait order is left working: each was cancelled by the kill switch
        baits = [o for o in stored_orders if o.intent.tag == "bait"]
        assert baits
        assert all(o.status is OrderStatus.CANCELED for o in baits)
        assert system.orders.statistics().working == 0
        # after the halt, every bar's bait intent was denied TRADING_HALTED, and stored
        halted = summary.denials.get("TRADING_HALTED", 0)
        assert halted == BARS - len(baits)
        assert [d.reason.split(":")[0] for d in denials] == ["TRADING_HALTED"] * halted
        assert [d.reason for d in h.denials] == [DenyReason.TRADING_HALTED] * halted


class TestKillSwitchWhileTheBrokerIsDown:
    async def test_orders_the_trip_could_not_cancel_are_cancelled_on_reconnection(
        self, make_settings, tmp_path, autojump_clock
    ):
        # The trip's bar (the 6th: -500) is also the one the broker drops the connection
        # on: the cancel-all meets a broker that is down and is rejected locally. Once
        # the connection is back, nothing may still work at the venue.
        settings = make_settings(
            data=csv(falling_bars(tmp_path / "falling.csv")),
            strategy=LOSER,
            params="{}",
            risk=RISK,
        )
        faults = [disconnect_broker(at=START + 5 * MINUTE)]
        async with open_store("sqlite://:memory:") as store:
            async with open_harness(settings=settings, store=store, faults=faults) as h:
                await h.run()
            stored_orders = await store.orders()
        risk = h.system.risk.statistics()
        assert risk.state is TradingState.HALTED
        assert risk.kill_switch_trips == 1
        assert h.system.orders.statistics().reconnects == 1
        baits = [o for o in stored_orders if o.intent.tag == "bait"]
        assert baits
        assert all(o.status is OrderStatus.CANCELED for o in baits)
        assert h.system.orders.statistics().working == 0


class TestKillSwitchOwedAcrossAColdStart:
    async def test_orders_a_trip_during_an_outage_left_working_are_cancelled_at_the_restart(
        self, make_settings, tmp_path, autojump_clock
    ):
        # The trip (6th bar) meets a broker that is down and stays down until the process
        # is killed after the 8th bar: the cancel-all was never sent, and the venue (as
        # the store's journal rebuilds it) still works every bait. The restart comes
        # back HALTED; it must also cancel them once the broker is reached.
        data = falling_bars(tmp_path / "falling.csv")
        rows = data.read_text().splitlines()
        url = f"sqlite:///{tmp_path / 'store.db'}"
        settings = make_settings(data=csv(data), strategy=LOSER, params="{}", risk=RISK, store=url)
        cut = 8
        data.write_text("\n".join(rows[: cut + 1]) + "\n")
        outage = [disconnect_broker(at=START + 5 * MINUTE, failed_reconnects=10**6)]
        async with open_store(url) as store:
            async with open_harness(settings=settings, store=store, faults=outage) as h:
                await h.run()
            assert h.system.risk.statistics().state is TradingState.HALTED
            assert h.system.orders.statistics().reconnects == 0  # down to the end
            await as_if_killed(store)
            left = [o for o in await store.orders() if o.intent.tag == "bait"]
            assert [o.status for o in left] == [OrderStatus.ACCEPTED] * len(left)
            assert left  # the kill left working orders behind
            data.write_text("\n".join(rows) + "\n")
            async with open_trading_system(settings, store=store) as system:
                await system.wait_finished()
            assert system.feed.statistics().resumed == cut
            stored = {o.client_order_id: o for o in await store.orders()}
        assert system.risk.statistics().state is TradingState.HALTED
        assert system.orders.statistics().working == 0
        assert all(stored[o.client_order_id].status is OrderStatus.CANCELED for o in left)
        assert all(
            o.status is OrderStatus.CANCELED for o in stored.values() if o.intent.tag == "bait"
        )


class TestKillSwitchAcrossAColdStart:
    """A process killed during a losing day and started again continues that day: its
    loss budget is what the crashed run had left, not a fresh one."""

    async def stored_after(self, settings: Any, url: str, data: Path, cut: int | None) -> Any:
        """Replay the falling bars into the store at `url`; with `cut`, as a process
        killed once the first `cut` bars were stored and then started again."""
        path = trio.Path(data)
        rows = (await path.read_text()).splitlines()
        async with open_store(url) as store:
            if cut is not None:
                await path.write_text("\n".join(rows[: cut + 1]) + "\n")
                async with open_trading_system(settings, store=store) as first:
                    await first.wait_finished()
                await as_if_killed(store)
                await path.write_text("\n".join(rows) + "\n")
            async with open_trading_system(settings, store=store) as system:
                await system.wait_finished()
            if cut is not None:
                assert system.feed.statistics().resumed == cut
            orders = [(o.client_order_id, o.intent.tag, o.status) for o in await store.orders()]
            denials = [(d.client_order_id, d.reason, d.ts) for d in await store.denials()]
        return orders, denials, system.risk.statistics().state

    @pytest.mark.parametrize("cut", [3, 12])
    async def test_a_restart_keeps_the_days_loss_budget(
        self, make_settings: Any, tmp_path: Path, cut: int
    ) -> None:
        # The kill switch trips on the 6th bar. Killed before it (3) the restarted run
        # must trip on the same bar; killed after it (12) it must be halted from its
        # first bar on. Both then store what an uninterrupted run stores.
        def settings(name: str) -> tuple[Any, str, Path]:
            folder = tmp_path / name
            folder.mkdir()
            data = falling_bars(folder / "falling.csv")
            url = f"sqlite:///{folder / 'store.db'}"
            made = make_settings(data=csv(data), strategy=LOSER, params="{}", risk=RISK, store=url)
            return made, url, data

        clean = await self.stored_after(*settings("clean"), None)
        restarted = await self.stored_after(*settings("restarted"), cut)
        _orders, denials, state = clean
        assert state is TradingState.HALTED
        halted_from = min(ts for _intent, _reason, ts in denials)
        assert START + 3 * MINUTE < halted_from < START + 12 * MINUTE  # between the cuts
        assert restarted == clean


def falling_then_next_day(path: Path) -> Path:
    """The falling bars (the kill switch trips on the 6th), then a second day of AAPL
    bars at the last price."""
    falling_bars(path)
    next_day = START + 24 * 60 * MINUTE
    rows = [f"{next_day + i * MINUTE},AAPL,70.00,70.00,70.00,70.00,10000" for i in range(10)]
    with path.open("a") as handle:
        handle.write("\n".join(rows) + "\n")
    return path


class TestKillSwitchAcrossDays:
    """Without `resume_next_day` a tripped kill switch holds for good, so a process
    killed on a later day must come back halted too; with it, it must come back trading."""

    @pytest.mark.parametrize("resume_next_day", [False, True])
    async def test_a_restart_on_a_later_day_keeps_what_the_trip_decided(
        self, make_settings: Any, tmp_path: Path, resume_next_day: bool
    ) -> None:
        risk = RISK + ("resume_next_day = true\n" if resume_next_day else "")

        def settings(name: str) -> tuple[Any, str, Path]:
            folder = tmp_path / name
            folder.mkdir()
            data = falling_then_next_day(folder / "bars.csv")
            url = f"sqlite:///{folder / 'store.db'}"
            made = make_settings(data=csv(data), strategy=LOSER, params="{}", risk=risk, store=url)
            return made, url, data

        across = TestKillSwitchAcrossAColdStart()
        clean = await across.stored_after(*settings("clean"), None)
        restarted = await across.stored_after(*settings("restarted"), BARS + 3)  # day 2
        _orders, _denials, state = clean
        assert state is (TradingState.ACTIVE if resume_next_day else TradingState.HALTED)
        assert restarted == clean


class TestFlattening:
    async def test_the_kill_switch_closes_what_one_flattening_order_leaves(
        self, make_settings: Any, tmp_path: Path, autojump_clock: Any
    ) -> None:
        # A bar fills at most 0.3% of its 10,000 volume: 30 of the 100 held. The IOC
        # flattening order's rest is canceled, and the kill switch closes what is left
        # on the next bars, one order at a time, until the position is flat.
        settings = make_settings(
            data=csv(falling_bars(tmp_path / "falling.csv")),
            strategy=LOSER,
            params="{}",
            risk=RISK + "flatten_on_halt = true\n",
            extra="[broker]\nmax_volume_fraction = 0.003\n",
        )
        async with open_store("sqlite://:memory:") as store:
            async with open_harness(settings=settings, store=store) as h:
                await h.run()
            stored = await store.orders()
            positions = await store.positions()
        closing = [o for o in stored if o.intent.tag == "kill-switch"]
        assert [o.intent.quantity for o in closing] == [100, 70, 40, 10]
        assert [o.filled_quantity for o in closing] == [30, 30, 30, 10]
        assert [o.status for o in closing] == [OrderStatus.CANCELED] * 3 + [OrderStatus.FILLED]
        assert positions["AAPL"].quantity == 0
        assert h.system.portfolio.position("AAPL").quantity == 0
        assert h.system.risk.statistics().kill_switch_trips == 1


class TestAKillAtTheTrip:
    @pytest.mark.parametrize(
        "broker",
        ["", "[broker]\nmax_volume_fraction = 0.003\n"],
        ids=["one-order", "capped-by-volume"],
    )
    async def test_the_flattening_is_not_lost_to_a_kill_after_the_cancels(
        self, make_settings: Any, tmp_path: Path, broker: str
    ) -> None:
        # With flatten_on_halt the trip cancels the working orders and closes the
        # position in one decision. Killed right after the trip's journal write, the
        # restart (which resumes HALTED and does not trip again) must still find the
        # flattening order; capped by volume, it must go on closing what is left.
        flatten = RISK + "flatten_on_halt = true\n"

        async def run(name: str, kill_after: int | None) -> Any:
            folder = tmp_path / name
            await trio.Path(folder).mkdir()
            data = falling_bars(folder / "falling.csv")
            url = f"sqlite:///{folder / 'store.db'}"
            settings = make_settings(
                data=csv(data), strategy=LOSER, params="{}", risk=flatten, store=url, extra=broker
            )
            async with open_store(url) as store:
                if kill_after is not None:
                    wrap = KilledAfterJournalWrites(kill_after)
                    async with open_trading_system(settings, store=store, wrap_actor=wrap) as s:
                        await s.wait_finished()
                    await as_if_killed(store)
                async with open_trading_system(settings, store=store) as system:
                    await system.wait_finished()
                orders = [comparable(o) for o in await store.orders()]
                positions = await store.positions()
            return orders, positions, system.risk.statistics().state

        clean = await run("clean", None)
        orders, positions, state = clean
        assert state is TradingState.HALTED
        assert positions["AAPL"].quantity == 0  # flattened
        trip = next(
            n for n, o in enumerate(orders) if o[1].strategy_id and o[1].tag == "kill-switch"
        )
        assert trip > 0
        closing = [o for o in orders if o[1].tag == "kill-switch"]
        assert len(closing) == (4 if broker else 1)
        for kill_after in range(1, 9 if not broker else 13):
            assert await run(f"killed-{kill_after}", kill_after) == clean, kill_after
