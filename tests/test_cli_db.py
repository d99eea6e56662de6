"""`tradewind db migrate`: applies the store's migrations once, reports errors plainly."""

from __future__ import annotations

from click.testing import CliRunner, Result

from tradewind.cli import main


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


class TestDbMigrate:
    def test_a_new_sqlite_store_is_migrated_then_up_to_date(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'store.db'}"
        first = run("db", "migrate", "--url", url)
        second = run("db", "migrate", "--url", url)
        assert (first.exit_code, second.exit_code) == (0, 0)
        assert "applied 0001_initial" in first.output
        assert "schema is up to date" in second.output

    def test_a_postgresql_store_is_migrated(self, pg_url):
        result = run("db", "migrate", "--url", pg_url)
        assert result.exit_code == 0, result.output
        assert "applied 0001_initial" in result.output

    def test_a_malformed_url_is_a_usage_error_without_the_password(self):
        result = run("db", "migrate", "--url", "mysql://trader:s3cret@host/db")
        assert result.exit_code == 2
        assert "unknown scheme" in result.output
        assert "s3cret" not in result.output

    def test_an_unreachable_database_exits_1(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'missing-folder' / 'store.db'}"
        result = run("db", "migrate", "--url", url)
        assert result.exit_code == 1
        assert "unable to open" in result.output
