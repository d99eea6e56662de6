"""Logging configuration and secret redaction."""

from __future__ import annotations

import enum
import io
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from tradewind.runtime._config import Secret
from tradewind.runtime._logging import configure_logging, redact_secrets

if TYPE_CHECKING:
    from collections.abc import Iterator

# Examples run on machines shared with other suites: a per-example deadline only adds
# flakiness, and these properties are about values, not speed.
no_deadline = settings(deadline=None)

PASSWORD = "hunter2-Zq9"  # noqa: S105 - a made-up password the tests look for


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures logging afresh; put the process back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


class Side(enum.Enum):
    BUY = "buy"


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def redact(**event: Any) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", event))


class TestJsonLines:
    def test_one_object_per_line_with_level_event_and_keys(self):
        stream = io.StringIO()
        configure_logging(format="json", stream=stream)
        log = structlog.get_logger()
        log.info("order_submitted", client_order_id="c-1")
        log.warning("order_rejected", client_order_id="c-2", reason="max position")
        first, second = json_lines(stream)
        assert {k: first[k] for k in ("event", "level", "client_order_id")} == {
            "event": "order_submitted",
            "level": "info",
            "client_order_id": "c-1",
        }
        assert (second["level"], second["reason"]) == ("warning", "max position")

    def test_timestamp_is_iso_utc(self):
        stream = io.StringIO()
        configure_logging(format="json", stream=stream)
        structlog.get_logger().info("tick")
        [line] = json_lines(stream)
        stamp = datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() == UTC.utcoffset(None)

    def test_decimals_paths_and_enums_are_written_exactly(self):
        stream = io.StringIO()
        configure_logging(format="json", stream=stream)
        structlog.get_logger().info(
            "filled",
            price=Decimal("1.08345"),
            fee=Decimal("1E-8"),
            journal=Path("/j"),
            side=Side.BUY,
        )
        [line] = json_lines(stream)
        assert [line[k] for k in ("price", "fee", "journal", "side")] == [
            "1.08345",
            "1E-8",
            "/j",
            "buy",
        ]

    def test_unknown_objects_are_written_by_repr(self):
        stream = io.StringIO()
        configure_logging(format="json", stream=stream)
        structlog.get_logger().info("state", held=frozenset({"EURUSD"}))
        [line] = json_lines(stream)
        assert line["held"] == "frozenset({'EURUSD'})"

    def test_context_variables_are_bound_into_every_line(self):
        stream = io.StringIO()
        configure_logging(format="json", stream=stream)
        structlog.contextvars.bind_contextvars(correlation_id="run-7")
        structlog.get_logger().info("started")
        assert json_lines(stream)[0]["correlation_id"] == "run-7"

    def test_events_below_the_level_are_not_written(self):
        stream = io.StringIO()
        configure_logging(format="json", level="WARNING", stream=stream)
        log = structlog.get_logger()
        log.info("quiet")
        log.error("loud")
        assert [line["event"] for line in json_lines(stream)] == ["loud"]

    def test_exception_is_structured_and_redacted(self):
        stream = io.StringIO()
        configure_logging(format="json", stream=stream)
        try:
            raise ConnectionError(f"cannot reach postgresql://trader:{PASSWORD}@db/tw")
        except ConnectionError:
            structlog.get_logger().exception("store_unavailable")
        text = stream.getvalue()
        assert PASSWORD not in text
        [line] = json_lines(stream)
        assert line["exception"][0]["exc_type"] == "ConnectionError"
        assert "postgresql://trader:***@db/tw" in line["exception"][0]["exc_value"]


class TestFormatChoice:
    def test_auto_writes_json_when_the_stream_is_not_a_terminal(self):
        stream = io.StringIO()
        configure_logging(stream=stream)
        structlog.get_logger().info("tick", instrument="EURUSD")
        assert json_lines(stream)[0]["instrument"] == "EURUSD"

    def test_auto_writes_console_lines_to_a_terminal(self):
        stream = TtyStream()
        configure_logging(stream=stream)
        structlog.get_logger().info("tick", instrument="EURUSD")
        text = stream.getvalue()
        assert "tick" in text
        assert "EURUSD" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)

    def test_console_format_is_readable_and_redacted(self):
        stream = io.StringIO()
        configure_logging(format="console", stream=stream)
        structlog.get_logger().info("connecting", password=PASSWORD, venue="paper")
        text = stream.getvalue()
        assert "connecting" in text
        assert "venue=paper" in text
        assert PASSWORD not in text

    def test_unknown_level_is_refused(self):
        with pytest.raises(ValueError, match="log level must be one of"):
            configure_logging(level="verbose", stream=io.StringIO())

    def test_unknown_format_is_refused(self):
        with pytest.raises(ValueError, match="log format must be"):
            configure_logging(format="xml", stream=io.StringIO())  # type: ignore[arg-type]


class TestStdlibLogging:
    def test_records_of_other_libraries_are_rendered_and_redacted(self):
        stream = io.StringIO()
        configure_logging(format="json", stream=stream)
        logging.getLogger("asyncpg.pool").warning(
            "connection to postgresql://u:%s@db lost", PASSWORD
        )
        [line] = json_lines(stream)
        assert (line["logger"], line["level"]) == ("asyncpg.pool", "warning")
        assert line["event"] == "connection to postgresql://u:***@db lost"

    def test_configuring_again_replaces_the_handler(self):
        stream = io.StringIO()
        configure_logging(format="json", stream=io.StringIO())
        configure_logging(format="json", stream=stream)
        logging.getLogger("trio_asyncio").error("once")
        assert [line["event"] for line in json_lines(stream)] == ["once"]


class TestRedactSecrets:
    def test_secret_values_are_masked(self):
        assert redact(dsn=Secret(PASSWORD))["dsn"] == "***"

    @pytest.mark.parametrize(
        "key",
        [
            "password",
            "db_password",
            "token",
            "auth_token",
            "secret",
            "client_secret",
            "api_key",
            "apikey",
            "x-api-key",
            "private_key",
            "Authorization",
            "credentials",
        ],
    )
    def test_keys_that_name_a_secret_are_masked(self, key: str):
        assert redact(**{key: PASSWORD})[key] == "***"

    @pytest.mark.parametrize("key", ["tokens_per_second", "secretary", "passwordless", "venue"])
    def test_keys_that_merely_contain_a_word_are_kept(self, key: str):
        assert redact(**{key: 5})[key] == 5

    def test_absent_secret_stays_none(self):
        assert redact(password=None)["password"] is None

    def test_url_password_is_masked_and_the_rest_kept(self):
        event = redact(dsn=f"postgresql://trader:{PASSWORD}@db:5432/tradewind?sslmode=require")
        assert event["dsn"] == "postgresql://trader:***@db:5432/tradewind?sslmode=require"

    def test_url_password_with_a_raw_slash_is_masked_whole(self):
        event = redact(dsn="postgresql://trader:pa/ss:w@db/tradewind")
        assert event["dsn"] == "postgresql://trader:***@db/tradewind"

    def test_url_without_password_is_kept(self):
        url = "postgresql://postgres@127.0.0.1:5432/test"
        assert redact(url=url)["url"] == url

    def test_keyword_dsn_password_is_masked(self):
        event = redact(dsn=f"host=db user=trader password={PASSWORD} dbname=tw")
        assert event["dsn"] == "host=db user=trader password=*** dbname=tw"
        quoted = redact(dsn=f"host=db password='{PASSWORD} x' dbname=tw")
        assert quoted["dsn"] == "host=db password=*** dbname=tw"

    def test_nested_dicts_lists_and_tuples_are_redacted(self):
        event = redact(
            config={"store": {"password": PASSWORD, "pool": 4}, "keys": [Secret("k"), "plain"]},
            pair=("ok", Secret("s")),
        )
        assert event["config"] == {
            "store": {"password": "***", "pool": 4},
            "keys": ["***", "plain"],
        }
        assert event["pair"] == ("ok", "***")

    def test_the_callers_objects_are_not_modified(self):
        config = {"store": {"password": PASSWORD}}
        redact(config=config)
        assert config == {"store": {"password": PASSWORD}}

    @no_deadline
    @given(
        st.recursive(
            st.one_of(st.integers(), st.text(max_size=5), st.builds(Secret, st.just(PASSWORD))),
            lambda children: st.one_of(
                st.lists(children, max_size=3),
                st.dictionaries(st.sampled_from(["a", "b", "fills"]), children, max_size=3),
            ),
            max_leaves=12,
        )
    )
    def test_no_secret_survives_at_any_depth(self, value: object):
        event = redact(payload=value)
        assert PASSWORD not in repr(event).replace("Secret", "")
        assert not contains_secret(event)

    @no_deadline
    @given(
        user=st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        password=st.from_regex(r"[A-Za-z0-9!$%^&*()_+=~/:-]{1,16}", fullmatch=True),
    )
    def test_any_url_password_is_masked(self, user: str, password: str):
        event = redact(message=f"connect postgresql://{user}:{password}@db/tw now")
        assert event["message"] == f"connect postgresql://{user}:***@db/tw now"


def contains_secret(value: object) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_secret(v) for v in value)
    return False


class TestPackageExport:
    def test_logging_names_are_exported_by_the_runtime_package(self):
        import tradewind.runtime

        assert tradewind.runtime.configure_logging is configure_logging
        assert tradewind.runtime.redact_secrets is redact_secrets
