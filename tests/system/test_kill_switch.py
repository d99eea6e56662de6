"""Kill switch: a strategy losing past the daily loss limit is halted, its open orders are
cancelled, and every later intent is denied with TRADING_HALTED. Runs on the
`tradewind.testing` harness (the real tree under the virtual clock)."""

from __future__ import annotations

from pathlib import Path

from tradewind.actors import OrderStatus, TradingState
from tradewind.actors._risk import DenyReason
from tradewind.storage import open_store

from tests.system.conftest import csv
from tradewind.testing import open_harness

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
