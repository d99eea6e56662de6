"""The harness runs on any store URL: PostgreSQL under the virtual clock gives SQLite's run."""

from __future__ import annotations

from tradewind.actors._messages import Flush

from tests.testing.conftest import SMA, SMA_PARAMS
from tradewind.testing import Synthetic, open_harness

SCENARIO = Synthetic(count=60, seed=4)


async def replay(url: str, backend: str) -> tuple[str, int, list[str]]:
    async with open_harness(SMA, params=SMA_PARAMS, synthetic=SCENARIO, store_url=url) as h:
        assert h.store.backend == backend
        await h.run()
        await h.system.system.ref("persistence").ask(Flush())
        stored = sorted(f.execution_id for f in await h.store.fills())
    return h.digest, h.summary.events, stored


class TestStores:
    async def test_postgresql_and_sqlite_give_one_digest_and_the_same_rows(
        self, pg_url, autojump_clock
    ):
        on_sqlite = await replay("sqlite://:memory:", "sqlite")
        on_postgresql = await replay(pg_url, "postgresql")
        assert on_postgresql == on_sqlite
        assert len(on_sqlite[2]) > 3
