"""A cancel at the paper venue takes effect no earlier than the decision could be made:
a cancel decided on one instrument's bar does not stop the fill that another
instrument's bar of the same time gave, since that bar traded before the decision (the
paper broker's notes). Whole-system replays over a two-instrument CSV."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tradewind.actors import Order, OrderStatus
from tradewind.actors._tree import open_trading_system
from tradewind.storage import open_store

from tests.system.conftest import csv
from tests.system.strategies import CancelsAcross

START = 1_767_571_200_000_000_000
MINUTE = 60_000_000_000
STRATEGY = f"{Path(__file__).parent / 'strategies.py'}:CancelsAcross"


def two_instruments(path: Path, msft_low_at_second: str) -> Path:
    """Three time steps, AAPL's row first in each; MSFT's second bar has the given low."""
    rows = ["ts,instrument,open,high,low,close,volume"]
    for i in range(3):
        ts = START + i * MINUTE
        rows.append(f"{ts},AAPL,100.00,100.50,99.50,100.00,10000")
        low = msft_low_at_second if i == 1 else "99.00"
        rows.append(f"{ts},MSFT,100.00,100.50,{low},100.00,10000")
    path.write_text("\n".join(rows) + "\n")
    return path


async def run(make_settings, tmp_path: Path, low: str) -> tuple[CancelsAcross, Order]:
    settings = make_settings(
        data=csv(two_instruments(tmp_path / "bars.csv", low)), strategy=STRATEGY, params="{}"
    )
    strategy = CancelsAcross()
    async with open_store("sqlite://:memory:") as store:
        async with open_trading_system(
            settings, store=store, strategy_factory=lambda: strategy
        ) as system:
            await system.wait_finished()
        (order,) = await store.orders()
    return strategy, order


class TestACancelAcrossInstruments:
    async def test_the_other_instruments_bar_of_the_same_time_still_fills_the_order(
        self, make_settings, tmp_path, autojump_clock
    ):
        strategy, order = await run(make_settings, tmp_path, low="94.00")
        assert order.status is OrderStatus.FILLED
        (fill,) = strategy.fills
        assert (fill.instrument, fill.quantity, fill.price) == (
            "MSFT",
            Decimal(10),
            Decimal("95.00"),
        )
        assert fill.ts == START + MINUTE
        # asked, then filled by the bar that traded before the decision: too late
        assert [kind for kind, _ in strategy.updates][-3:] == [
            "CANCEL_REQUESTED",
            "FILLED",
            "CANCEL_REJECTED",
        ]

    async def test_a_bar_that_does_not_fill_it_lets_the_cancel_take_effect_at_its_time(
        self, make_settings, tmp_path, autojump_clock
    ):
        strategy, order = await run(make_settings, tmp_path, low="96.00")
        assert order.status is OrderStatus.CANCELED
        assert strategy.fills == []
        assert strategy.updates[-1] == ("CANCELED", START + MINUTE)
