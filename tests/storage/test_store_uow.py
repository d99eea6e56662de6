"""The unit-of-work buffer, retry policy and migration listing: pure, no database."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.storage import PaperVenueFill, RetryPolicy, Transaction
from tradewind.storage._migrations import Migration, available_migrations, missing_migrations
from tradewind.storage._uow import Write, WriteKind

from tests.storage.samples import AAPL, bar, fill, lifecycle, new_order


def keys(write: Write) -> list[object]:
    """The first column of each row a write applies (a clear has none)."""
    return [row[0] for row in write.rows if row]


class TestTransactionBuffer:
    def test_appends_to_one_table_merge_where_the_table_was_first_written(self):
        tx = Transaction()
        tx.write_bars([bar(1)])
        tx.write_fills([fill("x1")])
        tx.write_bars([bar(2)])
        writes = tx.writes()
        assert [w.table.name for w in writes] == ["bars", "fills"]
        assert [r[2] for r in writes[0].rows] == [1, 2]

    def test_many_appends_of_a_table_stay_one_write_across_other_tables(self):
        tx = Transaction()
        for n in range(50):
            tx.write_bars([bar(n)])
            tx.write_fills([fill(f"x{n}")])
            tx.write_order(new_order(n + 1))
        writes = tx.writes()
        assert [(w.table.name, len(w.rows)) for w in writes[:2]] == [("bars", 50), ("fills", 50)]
        assert len(writes) == 3  # the order snapshots: one upsert after the appends

    def test_an_append_is_never_merged_across_a_clear_of_its_table(self):
        """Fills appended after a clear go after it (merged before it, the clear deleted
        them); what the clear deletes anyway is left out."""
        tx = Transaction()
        tx.write_bars([bar(1)])
        tx.write_paper_venue(fills=[PaperVenueFill(fill("x1"), 1)])
        tx.clear_paper_venue()
        tx.write_paper_venue(fills=[PaperVenueFill(fill("x2"), 2)], cursors={("AAPL", "1m"): 5})
        tx.write_bars([bar(2)])
        tx.write_paper_venue(fills=[PaperVenueFill(fill("x3"), 3)])
        applied = [(w.kind, w.table.name, keys(w)) for w in tx.writes()]
        assert applied == [
            (WriteKind.APPEND, "bars", ["AAPL", "AAPL"]),
            (WriteKind.CLEAR, "paper_venue_orders", []),
            (WriteKind.CLEAR, "paper_venue_fills", []),
            (WriteKind.CLEAR, "paper_venue_cursors", []),
            (WriteKind.APPEND, "paper_venue_fills", ["x2", "x3"]),
            (WriteKind.UPSERT, "paper_venue_cursors", ["AAPL"]),
        ]

    def test_a_run_started_after_a_finish_is_appended_after_it(self):
        tx = Transaction()
        tx.start_run("a", "h", 1)
        tx.finish_run("a", 2, "completed")
        tx.start_run("b", "h", 3)
        applied = [(w.kind, keys(w)) for w in tx.writes()]
        assert applied == [
            (WriteKind.APPEND, ["a"]),
            (WriteKind.FINISH_RUN, ["a"]),
            (WriteKind.APPEND, ["b"]),
        ]

    def test_upserts_keep_their_order_around_other_writes(self):
        first, second = lifecycle(new_order(1))
        tx = Transaction()
        tx.write_order(first)
        tx.write_order(second)
        tx.upsert_instruments([AAPL])
        tx.write_order(second)
        kinds = [(w.kind, len(w.rows)) for w in tx.writes()]
        assert kinds == [
            (WriteKind.UPSERT_NEWER, 2),
            (WriteKind.UPSERT, 1),
            (WriteKind.UPSERT_NEWER, 1),
        ]

    def test_empty_writes_buffer_nothing(self):
        tx = Transaction()
        tx.write_bars([])
        tx.write_fills(iter(()))
        assert tx.writes() == ()

    def test_a_closed_transaction_refuses_writes(self):
        tx = Transaction()
        tx.close()
        with pytest.raises(RuntimeError, match="exited"):
            tx.start_run("r", "h", 1)


class TestRetryPolicy:
    @given(attempt=st.integers(1, 30), seed=st.integers(0, 2**32))
    def test_backoff_grows_to_the_cap_and_jitter_only_shortens(self, attempt, seed):
        policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.5, multiplier=2, jitter=0.5)
        wait = policy.backoff(attempt, random.Random(seed))
        full = min(0.5, 0.01 * 2 ** (attempt - 1))
        assert full * 0.5 <= wait <= full

    def test_the_same_seed_gives_the_same_waits(self):
        policy = RetryPolicy(seed=7)
        one, two = policy.new_rng(), policy.new_rng()
        assert [policy.backoff(n, one) for n in (1, 2, 3)] == [
            policy.backoff(n, two) for n in (1, 2, 3)
        ]

    @pytest.mark.parametrize("field", ["attempts", "initial_backoff", "jitter"])
    def test_invalid_settings_are_refused(self, field):
        with pytest.raises(ValueError, match=field):
            RetryPolicy(**{field: -1})


class TestMigrations:
    def test_each_backend_ships_the_same_versions(self):
        versions = [[m.version for m in available_migrations(b)] for b in ("postgresql", "sqlite")]
        assert versions[0] == versions[1]
        assert versions[0][0] == "0001_initial"

    def test_missing_migrations_are_listed_in_order(self):
        available = (Migration("0001_a", ""), Migration("0002_b", ""), Migration("0003_c", ""))
        assert [m.version for m in missing_migrations(available, {"0002_b"})] == [
            "0001_a",
            "0003_c",
        ]

    def test_statements_are_split_without_comments(self):
        migration = Migration(
            "0001", "-- note\nCREATE TABLE a (x INT);\n\nCREATE TABLE b (y INT);\n"
        )
        assert migration.statements() == ("CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)")
