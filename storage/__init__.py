"""tradewind.storage: persistence on PostgreSQL (asyncpg over trio-asyncio) and SQLite."""
