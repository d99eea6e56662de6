"""The summary's renderings: every figure, in display order, for people."""

from __future__ import annotations

from decimal import Decimal

from tradewind.actors._tree import PositionLine, RunSummary

from tradewind._summary import summary_rows, summary_text


def summary(**changes: object) -> RunSummary:
    values = {
        "run_id": "r1",
        "mode": "replay",
        "outcome": "completed",
        "source": "csv bars.csv (1m)",
        "bars_in": 12,
        "bars_accepted": 10,
        "bars_rejected": 1,
        "duplicates": 1,
        "conflated": 0,
        "orders": 3,
        "fills": 2,
        "denials": {"TRADING_HALTED": 4, "MAX_POSITION": 1},
        "restarts": {"trading/risk": 1},
        "dead_letters": 0,
        "positions": (
            PositionLine("AAPL", "USD", Decimal(5), Decimal("100.5"), Decimal(0), None, Decimal(0)),
        ),
        "realized_pnl": {},
        "unrealized_pnl": {"USD": Decimal("-1.50")},
        "fees": {},
        "trading_state": "HALTED",
        "events": 30,
        "event_log_digest": "ab" * 32,
        "wall_time": 1.234,
        "rejections": ("bars.csv:4: row: expected 7 columns",),
    }
    return RunSummary(**{**values, **changes})  # type: ignore[arg-type]


class TestSummaryRows:
    def test_counts_money_positions_and_rejections_are_rendered(self):
        rows = dict(summary_rows(summary()))
        assert rows["denials"] == "MAX_POSITION 1, TRADING_HALTED 4"
        assert rows["restarts"] == "trading/risk 1"
        assert rows["realized PnL"] == "0"
        assert rows["unrealized PnL"] == "-1.50 USD"
        assert rows["position AAPL"] == "5 @ 100.5 (realized 0, unrealized unmarked USD)"
        assert rows["rejected"] == "bars.csv:4: row: expected 7 columns"
        assert rows["wall time"] == "1.23 s"

    def test_the_text_form_has_one_line_per_row(self):
        text = summary_text(summary(restarts={}))
        assert text.splitlines()[0] == "run: r1"
        assert "restarts: none" in text
        assert len(text.splitlines()) == len(summary_rows(summary()))
