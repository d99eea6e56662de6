"""Each fault hook does what it says, and the tree survives it."""

from __future__ import annotations

from typing import Any

import pytest
from tradewind.actors._messages import Flush
from tradewind.actors._risk import DenyReason
from tradewind.actors._settings import DEFAULT_SYNTHETIC_START

from tests.testing.conftest import SMA, SMA_PARAMS
from tradewind.testing import (
    Harness,
    HarnessError,
    PaperFaults,
    Synthetic,
    crash,
    disconnect_broker,
    open_harness,
    store_unavailable,
)

MINUTE = 60 * 10**9
SCENARIO: dict[str, Any] = {"params": SMA_PARAMS, "synthetic": Synthetic(count=150, seed=11)}


async def outcome(**faults: Any) -> Harness:
    async with open_harness(SMA, **SCENARIO, **faults) as h:
        await h.run()
    return h


class TestCrash:
    @pytest.mark.parametrize("path", ["trading/risk", "trading/orders", "persistence", "feed"])
    async def test_a_crash_restarts_the_actor_and_changes_no_fill(self, autojump_clock, path):
        clean = await outcome()
        crashed = await outcome(faults=[crash(path, at_message=30)])
        assert crashed.crash_plan.fired == {path}
        assert crashed.summary.restarts.get(path, 0) >= 1
        assert crashed.fills == clean.fills
        assert crashed.positions == clean.positions
        assert any(e["event"] == "child_crashed" for e in crashed.logs)

    async def test_a_crash_at_a_send_hits_mid_handler(self, autojump_clock):
        crashed = await outcome(faults=[crash("trading/strategy", at_send=3)])
        assert crashed.crash_plan.fired == {"trading/strategy"}
        assert crashed.summary.restarts["trading/strategy"] >= 1

    def test_exactly_one_point_is_required(self):
        with pytest.raises(ValueError, match="exactly one"):
            crash("feed")
        with pytest.raises(ValueError, match="exactly one"):
            crash("feed", at_message=1, at_send=1)
        with pytest.raises(ValueError, match=">= 1"):
            crash("feed", at_message=0)

    def test_a_path_that_names_no_actor_is_refused(self):
        with pytest.raises(ValueError, match="no actor at path 'trading/riskk'; expected one of"):
            crash("trading/riskk", at_message=1)

    async def test_mixed_point_kinds_are_refused(self, autojump_clock):
        faults = [crash("feed", at_message=1), crash("trading/risk", at_send=1)]
        with pytest.raises(HarnessError, match="same point"):
            async with open_harness(SMA, **SCENARIO, faults=faults):
                pass  # pragma: no cover


class TestBrokerDisconnect:
    async def test_the_broker_drops_and_the_order_actor_reconnects(self, autojump_clock):
        at = DEFAULT_SYNTHETIC_START + 40 * MINUTE
        h = await outcome(faults=[disconnect_broker(at=at, failed_reconnects=2)])
        stats = h.system.orders.statistics()
        assert stats.disconnects == 1
        assert stats.reconnects == 1
        assert stats.reconnect_attempts >= 3  # two refused, then one accepted
        assert stats.connected
        assert h.summary.trading_state == "ACTIVE"

    async def test_paper_faults_pass_through(self, autojump_clock):
        h = await outcome(faults=[PaperFaults(reject_submits=frozenset({1}))])
        first = min(h.orders.values(), key=lambda o: o.client_order_id)
        assert first.status.value == "REJECTED"


class TestStoreUnavailable:
    async def test_the_store_refuses_inside_the_window_and_nothing_is_lost(self, autojump_clock):
        async with open_harness(
            SMA, **SCENARIO, faults=[store_unavailable(between=(1200, 3000))]
        ) as h:
            await h.run_until(DEFAULT_SYNTHETIC_START + 30 * MINUTE)  # inside the window
            assert not h.system.persistence.store_available
            assert h.system.risk.state.value == "HALTED"
            await h.run()
            await h.system.system.ref("persistence").ask(Flush())
            after = h.system.persistence.statistics()
            assert after.store_failures > 0
            assert after.store_available
            counts = await h.store.counts()
            assert counts.bars == h.summary.bars_accepted
            assert counts.fills == len(h.fills)
        assert h.summary.trading_state == "ACTIVE"
        reasons = {d.reason for d in h.denials}
        assert reasons <= {DenyReason.STORE_UNAVAILABLE}

    async def test_a_window_still_open_at_the_end_is_waited_out(self, autojump_clock):
        async with open_harness(
            SMA, **SCENARIO, pace=0, faults=[store_unavailable(between=(0, 500))]
        ) as h:
            await h.run()
        assert h.now >= 500
        assert h.summary.outcome == "completed"

    def test_an_empty_window_is_refused(self):
        with pytest.raises(ValueError, match="t1 < t2"):
            store_unavailable(between=(5, 5))
