"""Bad input: a CSV with malformed rows completes, reports each bad row, keeps the good ones.

Runs on the `tradewind.testing` harness (the real tree and CSV source under the virtual
clock).
"""

from __future__ import annotations

from tradewind.storage import open_store

from tests.system.conftest import EXAMPLES, csv
from tradewind.testing import open_harness

# line -> the start of the reason reported for it (docs/examples/data/bad_bars.csv)
BAD_ROWS = {
    4: "row='1767571260000000000,AAPL,100.25,100.75': expected 7 comma-separated columns",
    5: "open='NaN': must be a finite decimal number",
    6: "low='-1.00': price must be > 0",
    8: "high='100.00': must be >= max(open, close)",
    9: "instrument='XYZ': unknown instrument",
    11: "OUT_OF_ORDER",
    12: "CONFLICT",
}
GOOD_LINES = [2, 3, 7, 13, 14]  # line 10 repeats line 7 exactly: a duplicate, dropped quietly


class TestBadInput:
    async def test_each_bad_row_is_reported_and_every_good_row_processed(
        self, make_settings, autojump_clock
    ):
        settings = make_settings(data=csv(EXAMPLES / "data" / "bad_bars.csv"))
        async with open_store("sqlite://:memory:") as store:
            async with open_harness(settings=settings, store=store) as h:
                await h.run()
            stored = await store.bars()
        system = h.system
        summary = h.summary
        assert summary.outcome == "completed"
        reported: dict[int, str] = {}
        for text in summary.rejections:
            location, _, reason = text.partition(": ")
            name, _, line = location.partition(":")
            assert name == "bad_bars.csv"
            reported[int(line)] = reason
        assert sorted(reported) == sorted(BAD_ROWS)
        for number, reason in BAD_ROWS.items():
            assert reported[number].startswith(reason), (number, reported[number])
        lines = (EXAMPLES / "data" / "bad_bars.csv").read_text().splitlines()
        good = [lines[n - 1].split(",") for n in GOOD_LINES]
        assert [(str(b.ts), b.instrument, str(b.close)) for b in stored] == sorted(
            (row[0], row[1], row[5]) for row in good
        )
        assert (summary.bars_accepted, summary.bars_rejected, summary.duplicates) == (5, 7, 1)
        assert system.strategy.statistics().bars == 5
