"""The harness drives the real tree: run, step, run_until, and what it lets a test read."""

from __future__ import annotations

import hashlib
import math
import time
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from tradewind.actors import Bar, InvalidStrategy, Strategy
from tradewind.actors._messages import Flush
from tradewind.actors._risk import DenyReason
from tradewind.actors._settings import RiskSection
from tradewind.actors._sources import write_bars_csv

from tests.testing.conftest import SMA, SMA_PARAMS
from tradewind.testing import HarnessError, Synthetic, open_harness
from tradewind.testing._harness import _ThreadGate

if TYPE_CHECKING:
    from tradewind.actors import StrategyContext

MINUTE = 60 * 10**9
T0 = 1_767_571_200_000_000_000


def bars(closes: list[str], symbol: str = "AAPL") -> list[Bar]:
    """One-minute bars whose open, high, low and close are all `close`."""
    return [
        Bar(
            symbol,
            "1m",
            T0 + i * MINUTE,
            Decimal(c),
            Decimal(c),
            Decimal(c),
            Decimal(c),
            Decimal(1000),
        )
        for i, c in enumerate(closes)
    ]


class BuyOnce(Strategy):
    """Buys `quantity` on the first bar it sees, nothing after."""

    def __init__(self, quantity: int = 10) -> None:
        self.quantity = quantity
        self.done = False

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not self.done:
            self.done = True
            ctx.buy(bar.instrument, self.quantity)


class TestRun:
    async def test_run_feeds_every_bar_and_completes(self, autojump_clock):
        async with open_harness(SMA, params=SMA_PARAMS, synthetic=Synthetic(count=120)) as h:
            await h.run()
            # the synthetic walk leaves gaps: fewer bars than steps
            assert 100 < h.items_fed <= 120
            assert h.system.feed.statistics().accepted == h.items_fed
        assert h.summary.outcome == "completed"
        assert h.summary.bars_accepted == h.items_fed

    async def test_orders_fills_and_positions_agree(self, autojump_clock):
        async with open_harness(SMA, params=SMA_PARAMS, synthetic=Synthetic(count=200)) as h:
            await h.run()
            fills = h.fills
            assert len(fills) > 5
            assert {f.client_order_id for f in fills} <= set(h.orders)
            net = sum(
                (f.quantity if f.side.value == "BUY" else -f.quantity for f in fills), Decimal(0)
            )
            assert h.positions["AAPL"].quantity == net
            assert len({f.execution_id for f in fills}) == len(fills)
        assert h.summary.fills == len(fills)
        assert h.summary.orders == len(h.orders)

    async def test_a_class_strategy_with_params_trades_on_given_bars(self, autojump_clock):
        async with open_harness(
            BuyOnce, params={"quantity": 7}, bars=bars(["10", "11", "12"])
        ) as h:
            await h.run()
            assert [f.quantity for f in h.fills] == [Decimal(7)]
            assert h.positions["AAPL"].quantity == 7
            (order,) = h.orders.values()
            assert order.status.value == "FILLED"

    async def test_a_csv_file_is_replayed(self, autojump_clock, tmp_path):
        path = tmp_path / "bars.csv"
        write_bars_csv(path, bars(["10", "11", "12", "13"]))
        async with open_harness(BuyOnce, csv=path, instruments=["AAPL"]) as h:
            await h.run()
            assert h.system.feed.statistics().accepted == 4
            assert len(h.fills) == 1

    async def test_denials_are_listed_with_their_reason(self, autojump_clock):
        risk = RiskSection(
            max_position=Decimal(3),
            max_order_notional=Decimal(1_000_000),
            max_gross_exposure=Decimal(10_000_000),
            max_orders_per_second=1_000,
            daily_loss_limit=Decimal(1_000_000),
        )
        async with open_harness(
            BuyOnce, params={"quantity": 5}, bars=bars(["10", "11"]), risk=risk
        ) as h:
            await h.run()
            (denial,) = h.denials
            assert denial.reason is DenyReason.MAX_POSITION
            assert denial.intent.quantity == 5
            assert h.fills == ()
        assert h.summary.denials == {"MAX_POSITION": 1}

    async def test_intents_the_full_outbox_refuses_are_denials_too(self, autojump_clock):
        class Flood(Strategy):
            def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
                if ctx.history(bar.instrument, 2)[:-1] == []:  # the first bar only
                    for _ in range(5):
                        ctx.buy(bar.instrument, 1, limit="1.00")

        async with open_harness(Flood, bars=bars(["10", "11"])) as h:
            h.system.strategy.outbox_capacity = 2  # five intents, room for two
            await h.run()
            assert [d.reason for d in h.denials] == [DenyReason.OVERLOADED] * 3
            assert len(h.orders) == 2
        assert h.summary.denials == {"OVERLOADED": 3}


class TestStepping:
    async def test_step_feeds_exactly_n_items_then_waits(self, autojump_clock):
        async with open_harness(SMA, params=SMA_PARAMS, synthetic=Synthetic(count=50)) as h:
            await h.step(10)
            assert h.items_fed == 10
            assert h.system.strategy.statistics().bars == 10
            await h.step(5)
            assert h.items_fed == 15
            assert h.system.system.statistics().in_flight == 0

    async def test_stepping_past_the_end_finishes_the_run(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11"])) as h:
            await h.step(5)
            assert h.items_fed == 2
            assert h.system.finished

    async def test_stepping_again_after_the_end_returns(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11"])) as h:
            await h.step(5)
            await h.step(1)
            await h.run_until(T0 + 10 * MINUTE)
            assert h.items_fed == 2

    async def test_leaving_the_block_mid_run_stops_the_run(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11", "12", "13"])) as h:
            await h.step(2)
        assert h.summary.outcome == "stopped"
        assert h.summary.bars_accepted == 2

    async def test_run_until_feeds_bars_up_to_a_time(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11", "12", "13", "14"])) as h:
            await h.run_until(T0 + 2 * MINUTE)
            assert h.items_fed == 3
            await h.run()
            assert h.items_fed == 5

    async def test_virtual_time_follows_bar_time_by_default(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11", "12", "13"])) as h:
            await h.run()
            assert h.now >= 180.0

    async def test_pace_zero_replays_without_waiting(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11", "12", "13"]), pace=0) as h:
            await h.run()
            assert h.now < 60.0

    async def test_step_refuses_a_count_below_one(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10"])) as h:
            with pytest.raises(HarnessError):
                await h.step(0)


class TestInspection:
    async def test_the_event_log_lines_give_the_summary_digest(self, autojump_clock):
        async with open_harness(SMA, params=SMA_PARAMS, synthetic=Synthetic(count=80)) as h:
            await h.run()
        text = "".join(line + "\n" for line in h.event_log)
        assert hashlib.sha256(text.encode()).hexdigest() == h.summary.event_log_digest == h.digest
        assert len(h.event_log) == h.summary.events
        assert any(line.startswith("Bar(") for line in h.event_log)

    async def test_the_store_holds_the_run(self, autojump_clock):
        async with open_harness(SMA, params=SMA_PARAMS, synthetic=Synthetic(count=150)) as h:
            await h.run()
            await h.system.system.ref("persistence").ask(Flush())
            stored = await h.store.fills()
            assert sorted(f.execution_id for f in stored) == sorted(f.execution_id for f in h.fills)
            assert dict(await h.store.positions()) == h.positions

    async def test_the_summary_is_a_snapshot_inside_the_block(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11", "12"])) as h:
            await h.step(1)
            assert h.summary.outcome == "running"
            assert h.summary.bars_accepted == 1
            assert h.summary.source == "3 bars in memory"
            assert h.system.source.name == "bars"
            assert h.store.statistics().size >= 1
        assert h.summary.outcome == "stopped"

    async def test_logs_capture_the_run(self, autojump_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11"])) as h:
            await h.run()
        assert h.logs
        assert all("event" in entry for entry in h.logs)


class TestMisuse:
    async def test_the_real_clock_is_refused(self):
        with pytest.raises(HarnessError, match="MockClock"):
            async with open_harness(BuyOnce, bars=bars(["10"])):
                pass  # pragma: no cover

    async def test_a_mock_clock_without_autojump_gets_it_for_the_run(self, mock_clock):
        async with open_harness(BuyOnce, bars=bars(["10", "11", "12"])) as h:
            await h.run()
            assert h.now >= 120.0  # paced steps passed in virtual time
        assert mock_clock.autojump_threshold == math.inf

    async def test_two_bar_sources_are_refused(self, autojump_clock, tmp_path):
        with pytest.raises(HarnessError, match="at most one"):
            async with open_harness(BuyOnce, bars=bars(["10"]), csv=tmp_path / "x.csv"):
                pass  # pragma: no cover

    async def test_no_strategy_is_refused(self, autojump_clock):
        with pytest.raises(HarnessError, match="strategy"):
            async with open_harness(bars=bars(["10"])):
                pass  # pragma: no cover

    async def test_bad_strategy_params_are_refused_before_start(self, autojump_clock):
        # the same error (and message) as for a configured strategy, as documented
        with pytest.raises(InvalidStrategy, match=r"bad params \['nope'\]"):
            async with open_harness(BuyOnce, params={"nope": 1}, bars=bars(["10"])):
                pass  # pragma: no cover

    async def test_an_async_callback_is_refused_before_start(self, autojump_clock):
        class Asyncy(Strategy):
            async def on_bar(self, bar, ctx):  # type: ignore[override] # the mistake under test
                ctx.buy(bar.instrument, 1)

        with pytest.raises(InvalidStrategy, match="on_bar is an async def"):
            async with open_harness(Asyncy, bars=bars(["10"])):
                pass  # pragma: no cover


class TestThreadGate:
    async def test_virtual_time_stands_still_while_a_thread_works(self, autojump_clock):
        gate = _ThreadGate(autojump_clock, 0.0)
        with trio.move_on_after(5):  # a deadline autojump could jump to
            before = trio.current_time()
            with gate.busy():
                await trio.to_thread.run_sync(time.sleep, 0.05)  # slow I/O in a worker
            assert trio.current_time() == before
        assert autojump_clock.autojump_threshold == 0.0

    async def test_without_the_gate_a_thread_hop_jumps_virtual_time(self, autojump_clock):
        with trio.move_on_after(5):
            before = trio.current_time()
            await trio.to_thread.run_sync(time.sleep, 0.05)
            assert trio.current_time() > before

    async def test_nested_holds_restore_autojump_only_at_the_last(self, autojump_clock):
        gate = _ThreadGate(autojump_clock, 0.0)
        with gate.busy():
            with gate.busy():
                assert autojump_clock.autojump_threshold == math.inf
            assert autojump_clock.autojump_threshold == math.inf
        assert autojump_clock.autojump_threshold == 0.0
