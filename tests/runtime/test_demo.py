"""The runtime demo: a crash mid-pipeline loses nothing; the command prints statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import structlog
from click.testing import CliRunner
from tradewind.runtime._demo import run_demo

from tradewind.cli import main

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[list[Any]]:
    with structlog.testing.capture_logs() as logs:
        yield logs


class TestDemo:
    async def test_the_crash_is_restarted_and_nothing_is_lost(self):
        result = await run_demo(20, seed=3)
        doubler = result.statistics.actors["doubler"]
        assert result.total == 20 * 21
        assert (doubler.crashes, doubler.restarts, doubler.redelivered) == (1, 1, 1)
        assert result.statistics.actors["sink"].processed == 20

    def test_the_command_prints_the_statistics_and_the_total(self):
        outcome = CliRunner().invoke(main, ["demo", "--messages", "6"])
        assert outcome.exit_code == 0, outcome.output
        assert "doubler" in outcome.output
        assert "sink total: 42 (expected 42)" in outcome.output
