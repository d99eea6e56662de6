"""Store URLs: the accepted forms, clear refusals, and a password that never shows."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.storage import InvalidStoreUrl, mask_url, parse_store_url

URL_TEXT = "postgresql://trader:@127.0.0.1:5432/db h:port"
# userinfo may hold unreserved and sub-delimiter characters unencoded (RFC 3986)
passwords = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~!$&'()*+,;=", min_size=6
).filter(lambda p: p not in URL_TEXT)


class TestParsing:
    def test_postgresql_keeps_the_whole_url_for_the_driver(self):
        url = parse_store_url("postgresql://u:pw@db.example:6543/trading?search_path=x")
        assert (url.backend, url.dsn) == (
            "postgresql",
            "postgresql://u:pw@db.example:6543/trading?search_path=x",
        )
        assert url.masked == "postgresql://u:***@db.example:6543/trading?search_path=x"

    def test_postgres_is_an_alias(self):
        assert parse_store_url("postgres://h/db").backend == "postgresql"

    @pytest.mark.parametrize(
        ("url", "path"),
        [
            ("sqlite:///relative/store.db", "relative/store.db"),
            ("sqlite:////var/lib/tradewind/store.db", "/var/lib/tradewind/store.db"),
            ("sqlite:///with%20space.db", "with space.db"),
            ("sqlite://:memory:", ":memory:"),
            ("sqlite:///:memory:", ":memory:"),
        ],
    )
    def test_sqlite_forms(self, url, path):
        parsed = parse_store_url(url)
        assert (parsed.backend, parsed.path) == ("sqlite", path)
        assert parsed.is_memory == (path == ":memory:")
        assert parsed.synchronous == "FULL"

    @pytest.mark.parametrize(
        ("query", "level"),
        [
            ("synchronous=full", "FULL"),
            ("synchronous=normal", "NORMAL"),
            ("synchronous=Normal", "NORMAL"),
        ],
    )
    def test_sqlite_synchronous(self, query, level):
        parsed = parse_store_url(f"sqlite:///data/store.db?{query}")
        assert (parsed.path, parsed.synchronous) == ("data/store.db", level)

    @pytest.mark.parametrize(
        ("query", "reason"),
        [
            ("synchronous=off", "synchronous=off is not allowed; expected full"),
            ("synchronous=", "synchronous= is not allowed"),
            ("synchronous=full&synchronous=normal", "is not allowed"),
            ("journal_mode=delete", "unknown parameter\\(s\\) journal_mode"),
            ("synchronus=normal", "unknown parameter\\(s\\) synchronus"),
            ("synchronous", "malformed query"),
        ],
    )
    def test_sqlite_query_refusals_name_the_parameter(self, query, reason):
        with pytest.raises(InvalidStoreUrl, match=reason):
            parse_store_url(f"sqlite:///store.db?{query}")

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("store.db", "no scheme"),
            ("mysql://u:pw@h/db", "unknown scheme"),
            ("sqlite://", "no file path"),
            ("sqlite://host/file.db", "no file path"),
            ("postgresql://u:pw@h:notaport/db", "malformed"),
            ("postgresql://u:pw@:5432/db", "port but no host"),
            ("postgresql://u:pw@h/db#frag", "fragment"),
            ("postgresql://u:pw@h/db/extra", "contains '/'"),
        ],
    )
    def test_malformed_urls_are_refused_with_a_reason(self, url, reason):
        with pytest.raises(InvalidStoreUrl, match=reason) as caught:
            parse_store_url(url)
        assert "pw" not in str(caught.value)


class TestMasking:
    @given(password=passwords)
    def test_the_password_never_appears_in_the_masked_form_or_the_repr(self, password):
        url = parse_store_url(f"postgresql://trader:{password}@127.0.0.1:5432/db")
        assert password not in url.masked
        assert password not in repr(url)
        assert url.scrub(f"failed for {password}") == "failed for ***"

    @given(password=passwords)
    def test_refusals_never_show_the_password(self, password):
        with pytest.raises(InvalidStoreUrl) as caught:
            parse_store_url(f"postgresql://trader:{password}@h:port/db")
        assert password not in str(caught.value)

    @given(password=passwords.filter(lambda p: not set(p) & set("&=+")))
    def test_a_password_in_the_query_is_masked_and_scrubbed(self, password):
        url = parse_store_url(f"postgresql://trader@db:5432/tw?sslmode=off&PassWord={password}")
        assert url.masked == "postgresql://trader@db:5432/tw?sslmode=off&PassWord=***"
        assert password not in repr(url)
        assert url.scrub(f"failed for {password}") == "failed for ***"

    @pytest.mark.parametrize("password", ["hun/ter2", "hun?ter2", "hun#ter2", "a@b/c"])
    def test_a_password_with_unescaped_delimiters_is_masked_in_the_refusal(self, password):
        raw = f"postgresql://trader:{password}@db:5432/tw"
        assert password not in mask_url(raw)
        with pytest.raises(InvalidStoreUrl) as caught:
            parse_store_url(raw)
        assert password not in str(caught.value)

    def test_a_url_without_password_is_unchanged(self):
        assert mask_url("postgresql://trader@h/db") == "postgresql://trader@h/db"
        assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
        assert parse_store_url("postgresql://h/db").scrub("text") == "text"
