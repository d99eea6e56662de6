"""The run configuration: defaults, exact decimals, paths relative to the file, every problem
at once with its path and environment variable, and the checks beyond the schema."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.actors._order_actor import RECONNECT_BACKOFF
from tradewind.actors._risk import TradingState
from tradewind.actors._settings import (
    DEFAULT_STORE_URL,
    config_hash,
    load_settings,
    settings_document,
)
from tradewind.runtime import ConfigError, Secret

from tests.system.conftest import EXAMPLES, INSTRUMENTS, RISK, SMA, synthetic, write_config


def problems_of(path: Path, env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env or {})
    return caught.value.problems


class TestLoading:
    def test_a_minimal_file_gets_the_documented_defaults(self, tmp_path):
        path = tmp_path / "t.toml"
        path.write_text(f"{INSTRUMENTS}\n{synthetic()}\n[strategy]\npath = '{SMA}'\n{RISK}")
        settings = load_settings(path, env={})
        assert settings.mode == "replay"
        assert settings.replay
        assert settings.store.url.reveal() == f"sqlite:///{tmp_path.resolve() / 'tradewind.db'}"
        assert DEFAULT_STORE_URL.endswith("tradewind.db")
        assert settings.strategy.id == "main"
        assert settings.calendar is None
        assert settings.broker.kind == "paper"
        assert settings.persistence.batch_size == 2000
        assert settings.logging.format == "auto"

    def test_paths_are_relative_to_the_file(self, tmp_path):
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "bars.csv").write_text("ts,instrument,open,high,low,close,volume\n")
        (tmp_path / "sub" / "s.py").write_text(
            "from tradewind.actors import Strategy\nclass S(Strategy):\n    pass\n"
        )
        path = write_config(
            tmp_path,
            data="[data]\npath = 'sub/bars.csv'\n",
            strategy="sub/s.py:S",
            params="{}",
            store="sqlite:///sub/x.db",
            extra="[logging]\nfile = 'sub/run.log'\n",
        )
        settings = load_settings(path, env={})
        base = tmp_path.resolve()
        assert settings.data.path == base / "sub" / "bars.csv"
        assert settings.strategy.path == f"{base / 'sub' / 's.py'}:S"
        assert settings.store.url.reveal() == f"sqlite:///{base / 'sub' / 'x.db'}"
        assert settings.logging.file == base / "sub" / "run.log"

    def test_module_strategies_and_memory_stores_are_left_alone(self, tmp_path):
        path = write_config(
            tmp_path, strategy="tradewind.actors:Strategy", params="{}", store="sqlite://:memory:"
        )
        settings = load_settings(path, env={})
        assert settings.strategy.path == "tradewind.actors:Strategy"
        assert settings.store.url.reveal() == "sqlite://:memory:"

    def test_the_environment_overrides_the_file(self, tmp_path):
        path = write_config(tmp_path)
        settings = load_settings(path, env={"TRADEWIND_RISK__MAX_POSITION": "7.5"})
        assert settings.risk.max_position == Decimal("7.5")
        assert settings.risk.limits().max_position == Decimal("7.5")

    @given(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4))
    def test_decimals_arrive_exactly_as_written(self, tick):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            text = INSTRUMENTS.replace("tick_size = 0.01\n", f"tick_size = {tick}\n", 1)
            path = Path(folder) / "t.toml"
            path.write_text(f"{text}\n{synthetic()}\n[strategy]\npath = '{SMA}'\n{RISK}")
            settings = load_settings(path, env={})
        assert settings.instruments[0].tick_size == tick
        assert str(settings.instruments[0].tick_size) == str(tick)

    def test_the_bundled_examples_load(self):
        for name in ("sma_crossover.toml", "mean_reversion.toml"):
            settings = load_settings(EXAMPLES / name, env={})
            assert settings.data.path is not None
            assert settings.data.path.is_file()

    def test_domain_objects_are_built_from_the_sections(self, tmp_path):
        path = write_config(
            tmp_path,
            extra=(
                "[broker]\nlatency = 0.25\nmax_volume_fraction = 0.5\n"
                "[calendar]\ntimezone = 'America/New_York'\n"
                "sessions = { mon-fri = '09:30-16:00' }\nholidays = ['2026-12-25']\n"
            ),
        )
        settings = load_settings(path, env={})
        assert settings.broker.latency_ns == 250_000_000
        assert settings.calendar is not None
        assert settings.calendar.calendar().timezone == "America/New_York"
        assert list(settings.instrument_map()) == ["AAPL", "MSFT"]
        assert settings.risk.settings().resume_next_day is False


class TestProblems:
    def test_every_problem_is_reported_at_once_with_its_path_and_variable(self, tmp_path):
        path = write_config(
            tmp_path,
            mode="backtest",
            risk="[risk]\nmax_position = -5\nmax_positon = 1\n",
            data="[data]\nsource = 'csv'\n",
        )
        problems = problems_of(path)
        assert "mode (TRADEWIND_MODE): expected one of 'replay', 'paper', got 'backtest'" in (
            problems
        )
        assert "risk.max_position (TRADEWIND_RISK__MAX_POSITION): must be >= 0, got -5" in problems
        assert any(p.startswith("risk.max_positon (TRADEWIND_RISK__MAX_POSITON)") for p in problems)
        assert any("risk.daily_loss_limit" in p and "required" in p for p in problems)
        assert "data (TRADEWIND_DATA): path: required when source = 'csv'" in problems

    @pytest.mark.parametrize("source", ["synthetic", "csv"])
    def test_a_timeframe_the_feed_cannot_read_is_a_config_problem(self, tmp_path, source):
        # Accepted before, it crashed the feed at the first bar until supervision gave up.
        data = synthetic() if source == "synthetic" else "[data]\npath = 'bars.csv'\n"
        path = write_config(tmp_path, data=data)
        problems = problems_of(path, env={"TRADEWIND_DATA__TIMEFRAME": "7q"})
        assert (
            "data.timeframe (TRADEWIND_DATA__TIMEFRAME): must be a count and a unit s, m, h "
            "or d, such as '1m', got '7q'"
        ) in problems
        assert load_settings(path, env={"TRADEWIND_DATA__TIMEFRAME": "5m"}, check=False)

    @pytest.mark.parametrize("strategy_id", ["a b", "x/y", "-sma", "_sma"])
    def test_a_strategy_id_no_client_order_id_can_carry_is_a_config_problem(
        self, tmp_path, strategy_id
    ):
        # Accepted before, it made `tradewind run` fail at start with exit code 1.
        path = write_config(tmp_path)
        problems = problems_of(path, env={"TRADEWIND_STRATEGY__ID": strategy_id})
        assert (
            "strategy.id (TRADEWIND_STRATEGY__ID): must start with a letter or digit and use "
            f"only letters, digits, '_', '.', '-', got {strategy_id!r}"
        ) in problems
        ok = load_settings(path, env={"TRADEWIND_STRATEGY__ID": "sma.v2_b-1"}, check=False)
        assert ok.strategy.id == "sma.v2_b-1"

    def test_a_bad_store_url_is_reported_without_its_password(self, tmp_path):
        problems = problems_of(write_config(tmp_path, store="mysql://u:s3cret@h/db"))
        assert len(problems) == 1
        assert problems[0].startswith("store.url (TRADEWIND_STORE__URL): store URL")
        assert "s3cret" not in problems[0]

    def test_inconsistent_sections_are_refused(self, tmp_path):
        extra = (
            "[supervision]\nbackoff_initial = 5\nbackoff_max = 1\n"
            "[calendar]\ntimezone = 'Mars/Olympus'\nsessions = { mon = '09:00-10:00' }\n"
            "[[processes]]\nname = 'feed'\nargv = ['true']\n"
            "[[processes]]\nname = 'a/b'\nargv = ['true']\n"
        )
        problems = problems_of(write_config(tmp_path, extra=extra))
        text = "\n".join(problems)
        assert (
            "supervision (TRADEWIND_SUPERVISION): backoff_max: must be >= backoff_initial" in text
        )
        assert "calendar (TRADEWIND_CALENDAR): timezone" in text
        assert "processes" in text
        assert "name: must not contain '/'" in text

    @pytest.mark.parametrize(
        ("instruments", "expected"),
        [
            (
                "[[instruments]]\nsymbol = 'AAPL'\ntick_size = 0.01\n" * 2,
                "instruments (TRADEWIND_INSTRUMENTS): symbols must be unique, repeated: AAPL",
            ),
            (
                (
                    "[[instruments]]\nsymbol = 'X'\ntick_size = 0.01\nmin_quantity = 5\n"
                    "max_quantity = 1\n"
                ),
                "instruments[0]: max_quantity: must be >= min_quantity (5), got 1",
            ),
        ],
    )
    def test_repeated_or_invalid_instruments_are_refused(self, tmp_path, instruments, expected):
        path = tmp_path / "t.toml"
        path.write_text(f"{instruments}{synthetic()}\n[strategy]\npath = '{SMA}'\n{RISK}")
        assert expected in "\n".join(problems_of(path))

    def test_an_instrument_not_quoted_in_the_limits_currency_is_refused(self, tmp_path):
        # Without FX rates its orders would all be denied, and a position in it would
        # leave the daily loss limit without a figure.
        extra = "[[instruments]]\nsymbol = 'SAP'\ntick_size = 0.01\ncurrency = 'EUR'\n"
        (problem,) = problems_of(write_config(tmp_path, extra=extra))
        assert "instruments SAP (EUR) are not quoted in risk.currency USD" in problem

    def test_limits_that_risk_would_refuse_are_config_problems(self, tmp_path):
        risk = RISK.replace("max_orders_per_second = 1000", "max_orders_per_second = 1000\n") + (
            "price_band = 0\n"
        )
        text = "\n".join(problems_of(write_config(tmp_path, risk=risk)))
        assert "risk.price_band (TRADEWIND_RISK__PRICE_BAND): must be > 0, got 0" in text

    def test_a_missing_data_file_and_a_broken_strategy_are_reported_together(self, tmp_path):
        path = write_config(
            tmp_path,
            data="[data]\npath = 'nowhere.csv'\n",
            strategy="nowhere.py:Nothing",
            params="{}",
        )
        problems = problems_of(path)
        assert problems[0].startswith("data.path (TRADEWIND_DATA__PATH): no such file")
        assert problems[1].startswith("strategy.path (TRADEWIND_STRATEGY__PATH): strategy")
        assert "not found" in problems[1]

    def test_a_bar_file_without_the_header_is_a_config_problem(self, tmp_path):
        (tmp_path / "bars.csv").write_text("1,AAPL,1,1,1,1,1\n")
        problems = problems_of(write_config(tmp_path, data="[data]\npath = 'bars.csv'\n"))
        expected = (
            f"data.path (TRADEWIND_DATA__PATH): {tmp_path.resolve() / 'bars.csv'}: the first "
            "line must be the header ts,instrument,open,high,low,close,volume"
        )
        assert problems == (expected,)

    @pytest.mark.parametrize(
        ("file", "reason"),
        [
            ("nowhere/run.log", "the folder {tmp}/nowhere does not exist"),
            (".", "{tmp} is a folder, not a file"),
        ],
    )
    def test_a_log_file_that_cannot_be_opened_is_a_config_problem(self, tmp_path, file, reason):
        path = write_config(tmp_path, extra=f"[logging]\nfile = '{file}'\n")
        expected = reason.format(tmp=tmp_path.resolve())
        assert problems_of(path) == (f"logging.file (TRADEWIND_LOGGING__FILE): {expected}",)

    @pytest.mark.parametrize(
        ("mode", "spill_path", "reason"),
        [
            # A start reads a journal a crashed run left there, whatever `spill` says.
            ("replay", ".", "{tmp} is a folder, not a file"),
            ("paper", ".", "{tmp} is a folder, not a file"),
            (
                "paper",
                "a-file/deeper/j.jsonl",
                (
                    "{tmp}/a-file is not a folder: the journal's folder {tmp}/a-file/deeper "
                    "cannot be made"
                ),
            ),
        ],
    )
    def test_a_spill_journal_that_cannot_be_used_is_a_config_problem(
        self, tmp_path, mode, spill_path, reason
    ):
        # They were found only once the run had started: a traceback, exit 1.
        (tmp_path / "a-file").write_text("")
        extra = f"[persistence]\nspill_path = '{spill_path}'\n"
        path = write_config(tmp_path, mode=mode, extra=extra)
        expected = reason.format(tmp=tmp_path.resolve())
        assert problems_of(path) == (
            f"persistence.spill_path (TRADEWIND_PERSISTENCE__SPILL_PATH): {expected}",
        )

    def test_a_journal_folder_yet_to_be_made_is_fine(self, tmp_path):
        extra = "[persistence]\nspill_path = 'not/yet/j.jsonl'\n"
        settings = load_settings(write_config(tmp_path, mode="paper", extra=extra), env={})
        assert settings.persistence.spill_path == tmp_path.resolve() / "not" / "yet" / "j.jsonl"

    def test_check_false_skips_the_file_system_and_the_strategy(self, tmp_path):
        path = write_config(tmp_path, strategy="nowhere.py:Nothing", params="{}")
        assert load_settings(path, env={}, check=False).strategy.path.endswith(":Nothing")


class TestPersistence:
    def test_a_replay_slows_down_and_a_paper_run_spills_by_default(self, tmp_path):
        replay = load_settings(write_config(tmp_path), env={})
        paper = load_settings(write_config(tmp_path, mode="paper"), env={})
        assert replay.persistence.spill is False
        assert paper.persistence.spill is True
        assert paper.persistence.max_pending == 100_000
        assert paper.persistence.durable_timeout == 2.0

    def test_the_journal_defaults_to_a_file_named_after_the_strategy_next_to_the_config(
        self, tmp_path
    ):
        settings = load_settings(write_config(tmp_path, mode="paper"), env={})
        expected = tmp_path.resolve() / "tradewind-journal" / "sys.jsonl"
        assert settings.persistence.spill_path == expected

    def test_the_file_sets_every_key_and_a_relative_journal_is_relative_to_it(self, tmp_path):
        extra = (
            "[persistence]\nspill = true\nspill_path = 'j/spill.jsonl'\n"
            "batch_size = 50\nmax_pending = 50\ndurable_timeout = 0.5\n"
        )
        settings = load_settings(write_config(tmp_path, extra=extra), env={})
        persistence = settings.persistence
        assert persistence.spill is True
        assert persistence.spill_path == tmp_path.resolve() / "j" / "spill.jsonl"
        assert (persistence.max_pending, persistence.durable_timeout) == (50, 0.5)

    def test_the_environment_overrides_the_spill_settings(self, tmp_path):
        env = {
            "TRADEWIND_PERSISTENCE__SPILL": "false",
            "TRADEWIND_PERSISTENCE__SPILL_PATH": "/var/tw/journal.jsonl",
            "TRADEWIND_PERSISTENCE__BATCH_SIZE": "5",
            "TRADEWIND_PERSISTENCE__MAX_PENDING": "7",
            "TRADEWIND_PERSISTENCE__DURABLE_TIMEOUT": "0",
        }
        settings = load_settings(write_config(tmp_path, mode="paper"), env=env)
        persistence = settings.persistence
        assert persistence.spill is False
        assert persistence.spill_path == Path("/var/tw/journal.jsonl")
        assert (persistence.max_pending, persistence.durable_timeout) == (7, 0.0)

    def test_max_pending_below_a_batch_is_refused(self, tmp_path):
        # It was silently raised to the batch size, and check-config showed the value
        # that was not used.
        extra = "[persistence]\nbatch_size = 2000\nmax_pending = 10\n"
        (problem,) = problems_of(write_config(tmp_path, extra=extra))
        assert problem.startswith(
            "persistence (TRADEWIND_PERSISTENCE): max_pending must be at least batch_size (2000)"
        )
        assert problem.endswith("got 10")

    def test_bad_values_name_the_setting_and_its_variable(self, tmp_path):
        extra = "[persistence]\nmax_pending = 0\ndurable_timeout = -1\n"
        problems = problems_of(write_config(tmp_path, extra=extra))
        assert (
            "persistence.max_pending (TRADEWIND_PERSISTENCE__MAX_PENDING): must be > 0, got 0"
        ) in problems
        assert (
            "persistence.durable_timeout (TRADEWIND_PERSISTENCE__DURABLE_TIMEOUT): "
            "must be >= 0, got -1.0"
        ) in problems


class TestBrokerReconnection:
    def test_the_defaults_are_the_order_actors_own(self, tmp_path):
        settings = load_settings(write_config(tmp_path), env={})
        assert settings.broker.reconnect_backoff() == RECONNECT_BACKOFF
        assert settings.risk.settings().broker_down_state is TradingState.HALTED

    def test_the_file_and_the_environment_set_the_backoff_and_the_down_state(self, tmp_path):
        extra = "[broker]\nreconnect_initial = 0.5\nreconnect_max = 8\n"
        env = {
            "TRADEWIND_BROKER__RECONNECT_JITTER": "0",
            "TRADEWIND_RISK__BROKER_DOWN_STATE": "REDUCING",
        }
        settings = load_settings(write_config(tmp_path, extra=extra), env=env)
        backoff = settings.broker.reconnect_backoff()
        assert (backoff.initial, backoff.maximum, backoff.jitter) == (0.5, 8.0, 0.0)
        assert backoff.multiplier == 2.0
        assert settings.risk.settings().broker_down_state is TradingState.REDUCING

    def test_bad_values_name_the_setting_and_its_variable(self, tmp_path):
        extra = "[broker]\nreconnect_initial = 5\nreconnect_max = 1\n"
        risk = RISK + "broker_down_state = 'ACTIVE'\n"
        problems = problems_of(write_config(tmp_path, extra=extra, risk=risk))
        text = "\n".join(problems)
        assert "broker (TRADEWIND_BROKER): reconnect_max: must be >= reconnect_initial" in text
        assert (
            "risk.broker_down_state (TRADEWIND_RISK__BROKER_DOWN_STATE): expected one of "
            "'HALTED', 'REDUCING', got 'ACTIVE'"
        ) in problems

    def test_a_jitter_outside_zero_to_one_is_refused(self, tmp_path):
        problems = problems_of(write_config(tmp_path, extra="[broker]\nreconnect_jitter = 2\n"))
        assert len(problems) == 1
        assert problems[0].startswith(
            "broker.reconnect_jitter (TRADEWIND_BROKER__RECONNECT_JITTER): must be in [0, 1]"
        )


class TestDisplay:
    def test_the_document_masks_only_the_password_and_drops_unset_values(self, tmp_path):
        path = write_config(tmp_path, store="postgresql://trader:hunter2@db/tw")
        settings = load_settings(path, env={})
        document = settings_document(settings)
        assert document["store"]["url"] == "postgresql://trader:***@db/tw"
        assert "calendar" not in document
        assert document["risk"]["daily_loss_limit"] == "1000000"
        assert "hunter2" not in repr(document)
        assert isinstance(settings.store.url, Secret)

    def test_the_hash_follows_the_settings(self, tmp_path):
        one = load_settings(write_config(tmp_path), env={})
        two = load_settings(write_config(tmp_path, data=synthetic(seed=99)), env={})
        assert config_hash(one) == config_hash(load_settings(write_config(tmp_path), env={}))
        assert config_hash(one) != config_hash(two)
        assert len(config_hash(one)) == 16
