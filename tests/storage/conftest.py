"""Fixtures of the storage suite: one `store` per backend, on a fresh database each."""

from __future__ import annotations

import pytest
from tradewind.storage import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A URL of a fresh, empty database: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def store(store_url):
    """An open store on a fresh database, closed after the test."""
    async with open_store(store_url, pool_size=4, acquire_timeout=30) as opened:
        yield opened
