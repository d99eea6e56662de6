"""Run summaries (migration 0002): stored with a run's finish, read back for reports."""

from __future__ import annotations

import pytest
from tradewind.storage import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


class TestRunSummary:
    async def test_a_summary_round_trips_and_a_later_one_replaces_it(self, url):
        async with open_store(url) as store:
            async with store.transaction() as tx:
                tx.start_run("r1", "hash", 1)
                tx.write_run_summary("r1", '{"bars": 1}')
            async with store.transaction() as tx:
                tx.finish_run("r1", 2, "completed")
                tx.write_run_summary("r1", '{"bars": 2}')
            assert await store.run_summary("r1") == '{"bars": 2}'

    async def test_a_run_without_a_summary_reads_as_none(self, url):
        async with open_store(url) as store:
            assert await store.run_summary("nope") is None
