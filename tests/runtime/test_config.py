"""The config loader: TOML + environment into attrs classes, every problem at once."""

from __future__ import annotations

import enum
import json
import string
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tradewind.runtime._config import (
    Secret,
    dump_config,
    fraction,
    in_range,
    load_config,
    non_empty,
    non_negative,
    positive,
)
from tradewind.runtime._errors import ConfigError

# Examples run on machines shared with other suites: a per-example deadline only adds
# flakiness, and these properties are about values, not speed.
no_deadline = settings(deadline=None)

# ---------------------------------------------------------------- a configuration schema


class Venue(enum.Enum):
    PAPER = "paper"
    LIVE = "live"


class Priority(enum.Enum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class InstrumentConfig:
    symbol: str = attrs.field(validator=non_empty)
    tick_size: Decimal = attrs.field(validator=positive)
    lot_size: Decimal = attrs.field(default=Decimal(1), validator=positive)


@attrs.frozen
class RiskConfig:
    max_position: Decimal = attrs.field(validator=non_negative)
    max_order_rate: int = attrs.field(default=10, validator=positive)
    loss_fraction: Decimal = attrs.field(default=Decimal("0.05"), validator=fraction)
    leverage: Decimal = attrs.field(default=Decimal(1), validator=in_range(1, 10))


@attrs.frozen
class StoreConfig:
    url: Secret
    timeout: float = 5.0
    journal: Path | None = None


@attrs.frozen
class Window:
    """A class-level invariant that no single field can check."""

    start: int
    end: int

    def __attrs_post_init__(self) -> None:
        if self.end <= self.start:
            msg = f"end must be after start, got {self.start}..{self.end}"
            raise ValueError(msg)


@attrs.frozen
class AppConfig:
    venue: Venue
    risk: RiskConfig
    store: StoreConfig
    instruments: tuple[InstrumentConfig, ...] = ()
    params: dict[str, Decimal] = attrs.Factory(dict)
    tags: list[str] = attrs.Factory(list)
    mode: Literal["replay", "live"] = "replay"
    priority: Priority = Priority.LOW
    dry_run: bool = False
    window: Window | None = None
    threshold: int | Decimal | str = 0


MINIMAL = """
venue = "paper"
[risk]
max_position = 100
[store]
url = "postgresql://trader:hunter2@db/tradewind"
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(AppConfig, text=text, env=env or {})
    return list(info.value.problems)


def with_risk(**values: str) -> str:
    body = "\n".join(f"{k} = {v}" for k, v in values.items())
    return f'venue = "paper"\n[risk]\n{body}\n[store]\nurl = "x"\n'


# ---------------------------------------------------------------- Secret


class TestSecret:
    def test_str_repr_and_format_are_masked(self):
        secret = Secret("hunter2")
        assert [str(secret), repr(secret), f"{secret}", f"{secret:>20}"] == ["***"] * 4

    def test_reveal_returns_the_value(self):
        assert Secret("hunter2").reveal() == "hunter2"

    def test_equal_by_value(self):
        assert Secret("a") == Secret("a")
        assert Secret("a") != Secret("b")
        assert hash(Secret("a")) == hash(Secret("a"))

    def test_never_equals_the_plain_string(self):
        plain: object = "a"
        assert Secret("a") != plain

    def test_masked_inside_a_config_repr(self):
        config = load_config(AppConfig, text=MINIMAL, env={})
        assert "hunter2" not in repr(config)
        assert "url=***" in repr(config)

    def test_value_must_be_text(self):
        with pytest.raises(TypeError):
            Secret(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------- loading


class TestLoadValid:
    def test_toml_floats_arrive_as_the_exact_decimal_literal(self):
        text = MINIMAL + '[[instruments]]\nsymbol = "EURUSD"\ntick_size = 0.1\n'
        config = load_config(AppConfig, text=text, env={})
        assert config.instruments[0].tick_size == Decimal("0.1")
        assert str(config.instruments[0].tick_size) == "0.1"

    def test_quoted_decimal_is_accepted_exactly(self):
        text = MINIMAL + '[[instruments]]\nsymbol = "X"\ntick_size = "0.00001"\n'
        config = load_config(AppConfig, text=text, env={})
        assert config.instruments[0].tick_size == Decimal("0.00001")

    def test_float_field_takes_the_decimal_converted(self):
        config = load_config(AppConfig, text=MINIMAL + "timeout = 2.5\n", env={})
        assert config.store.timeout == 2.5
        assert type(config.store.timeout) is float

    def test_defaults_fill_absent_settings(self):
        config = load_config(AppConfig, text=MINIMAL, env={})
        assert config.risk.max_order_rate == 10
        assert config.risk.loss_fraction == Decimal("0.05")
        assert config.instruments == ()
        assert config.store.journal is None
        assert config.mode == "replay"

    def test_every_supported_kind_of_field(self):
        text = """
            venue = "live"
            tags = ["fx", "majors"]
            mode = "live"
            priority = 2
            dry_run = true
            threshold = 0.5
            [risk]
            max_position = 0
            [store]
            url = "x"
            journal = "/var/lib/tradewind/journal"
            [params]
            fast = 10
            slow = 30.5
            [window]
            start = 1
            end = 2
            [[instruments]]
            symbol = "EURUSD"
            tick_size = 0.00001
            [[instruments]]
            symbol = "GBPUSD"
            tick_size = 0.0001
            lot_size = 1000
        """
        config = load_config(AppConfig, text=text, env={})
        assert config == AppConfig(
            venue=Venue.LIVE,
            risk=RiskConfig(max_position=Decimal(0)),
            store=StoreConfig(url=Secret("x"), journal=Path("/var/lib/tradewind/journal")),
            instruments=(
                InstrumentConfig(symbol="EURUSD", tick_size=Decimal("0.00001")),
                InstrumentConfig(
                    symbol="GBPUSD", tick_size=Decimal("0.0001"), lot_size=Decimal(1000)
                ),
            ),
            params={"fast": Decimal(10), "slow": Decimal("30.5")},
            tags=["fx", "majors"],
            mode="live",
            priority=Priority.HIGH,
            dry_run=True,
            window=Window(1, 2),
            threshold=Decimal("0.5"),
        )

    @pytest.mark.parametrize(
        ("setting", "expected"), [("3", 3), ("0.5", Decimal("0.5")), ('"auto"', "auto")]
    )
    def test_union_takes_the_first_member_that_fits(self, setting: str, expected: object):
        config = load_config(AppConfig, text=f"threshold = {setting}\n" + MINIMAL, env={})
        assert config.threshold == expected
        assert type(config.threshold) is type(expected)

    def test_reads_a_file(self, tmp_path: Path):
        path = tmp_path / "tradewind.toml"
        path.write_text(MINIMAL)
        assert load_config(AppConfig, path, env={}).venue is Venue.PAPER

    def test_everything_can_come_from_the_environment(self):
        env = {
            "TRADEWIND_VENUE": "paper",
            "TRADEWIND_RISK__MAX_POSITION": "5",
            "TRADEWIND_STORE__URL": "postgresql://x",
        }
        config = load_config(AppConfig, env=env)
        assert config.risk.max_position == Decimal(5)
        assert config.store.url.reveal() == "postgresql://x"


class TestEnvironmentOverrides:
    def test_nested_variable_overrides_the_toml_value(self):
        config = load_config(AppConfig, text=MINIMAL, env={"TRADEWIND_RISK__MAX_POSITION": "5"})
        assert config.risk.max_position == Decimal(5)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("true", True),
            ("YES", True),
            ("on", True),
            ("1", True),
            ("false", False),
            ("no", False),
            ("Off", False),
            ("0", False),
        ],
    )
    def test_bool_text_is_parsed(self, text: str, expected: bool):
        config = load_config(AppConfig, text=MINIMAL, env={"TRADEWIND_DRY_RUN": text})
        assert config.dry_run is expected

    @pytest.mark.parametrize(
        ("name", "text", "attribute", "expected"),
        [
            ("TRADEWIND_RISK__MAX_ORDER_RATE", " 7 ", ("risk", "max_order_rate"), 7),
            ("TRADEWIND_STORE__TIMEOUT", "0.25", ("store", "timeout"), 0.25),
            ("TRADEWIND_STORE__JOURNAL", "journal.bin", ("store", "journal"), Path("journal.bin")),
            ("TRADEWIND_STORE__URL", "dsn", ("store", "url"), Secret("dsn")),
            ("TRADEWIND_VENUE", "live", ("venue",), Venue.LIVE),
            ("TRADEWIND_PRIORITY", "2", ("priority",), Priority.HIGH),
            ("TRADEWIND_MODE", "live", ("mode",), "live"),
            ("TRADEWIND_THRESHOLD", "12", ("threshold",), 12),
            ("TRADEWIND_PARAMS__FAST", "0.5", ("params",), {"fast": Decimal("0.5")}),
        ],
    )
    def test_text_is_converted_to_the_field_type(
        self, name: str, text: str, attribute: tuple[str, ...], expected: object
    ):
        value: Any = load_config(AppConfig, text=MINIMAL, env={name: text})
        for part in attribute:
            value = getattr(value, part)
        assert value == expected
        assert type(value) is type(expected)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("false", False),
            ("true", True),
            ("5", 5),
            ("0.25", Decimal("0.25")),
            ('"5"', "5"),
            ("[1, 2]", [1, 2]),
            ("fast", "fast"),  # not a TOML value: the text itself
        ],
    )
    def test_untyped_settings_read_the_text_as_the_toml_value_it_spells(
        self, text: str, expected: object
    ):
        # A strategy's params have no declared type: left a string, "false" was true.
        @attrs.frozen
        class WithParams:
            params: dict[str, Any] = attrs.Factory(dict)

        config = load_config(WithParams, text="", env={"TRADEWIND_PARAMS__FLAG": text})
        assert config.params == {"flag": expected}
        assert type(config.params["flag"]) is type(expected)

    def test_untyped_settings_in_a_nested_table_are_read_too(self):
        @attrs.frozen
        class WithParams:
            params: dict[str, Any] = attrs.Factory(dict)

        text = "[params.weights]\na = 1\n"
        env = {"TRADEWIND_PARAMS__WEIGHTS__B": "false"}
        config = load_config(WithParams, text=text, env=env)
        assert config.params == {"weights": {"a": 1, "b": False}}

    def test_a_float_setting_must_be_finite(self):
        # 1e400 is a finite Decimal but an infinite float.
        text = 'venue = "paper"\n[risk]\nmax_position = 1\n[store]\nurl = "x"\ntimeout = 1e400\n'
        (problem,) = problems_of(text)
        assert problem.startswith("store.timeout")
        assert "expected a finite number" in problem
        (env_problem,) = problems_of(MINIMAL, env={"TRADEWIND_STORE__TIMEOUT": "1e400"})
        assert "TRADEWIND_STORE__TIMEOUT" in env_problem

    def test_variable_creates_a_missing_table(self):
        text = 'venue = "paper"\n[store]\nurl = "x"\n'
        config = load_config(AppConfig, text=text, env={"TRADEWIND_RISK__MAX_POSITION": "1"})
        assert config.risk == RiskConfig(max_position=Decimal(1))

    def test_other_tools_single_segment_variables_are_ignored(self):
        env = {"TRADEWIND_TEST_DSN": "postgresql://postgres@127.0.0.1/test"}
        assert load_config(AppConfig, text=MINIMAL, env=env).venue is Venue.PAPER

    def test_variables_without_the_prefix_are_ignored(self):
        env = {"RISK__MAX_POSITION": "-1", "TRADEWIND_": "x"}
        assert load_config(AppConfig, text=MINIMAL, env=env).risk.max_position == 100

    def test_custom_prefix(self):
        config = load_config(
            AppConfig, text=MINIMAL, env={"TW_RISK__MAX_POSITION": "3"}, prefix="TW_"
        )
        assert config.risk.max_position == 3

    def test_process_environment_is_the_default(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("TRADEWIND_RISK__MAX_POSITION", "4")
        assert load_config(AppConfig, text=MINIMAL).risk.max_position == 4


# ---------------------------------------------------------------- problems


class TestProblems:
    def test_missing_required_value(self):
        text = 'venue = "paper"\n[risk]\nmax_position = 1\n[store]\n'
        assert problems_of(text) == ["store.url (TRADEWIND_STORE__URL): required, missing"]

    def test_wrong_type(self):
        assert problems_of(with_risk(max_position='"abc"')) == [
            "risk.max_position (TRADEWIND_RISK__MAX_POSITION): expected a decimal number, got 'abc'"
        ]

    def test_out_of_range_value(self):
        assert problems_of(with_risk(max_position="-5")) == [
            "risk.max_position (TRADEWIND_RISK__MAX_POSITION): must be >= 0, got -5"
        ]

    def test_bad_environment_value_names_its_variable(self):
        problems = problems_of(MINIMAL, {"TRADEWIND_RISK__MAX_ORDER_RATE": "many"})
        assert problems == [
            "risk.max_order_rate (TRADEWIND_RISK__MAX_ORDER_RATE): expected an integer, got 'many'"
        ]

    def test_several_problems_are_reported_together(self):
        text = """
            venue = "lve"
            [risk]
            max_position = -5
            loss_fraction = 1.5
            [store]
        """
        assert problems_of(text, {"TRADEWIND_RISK__MAX_ORDER_RATE": "0"}) == [
            "venue (TRADEWIND_VENUE): expected one of 'paper', 'live', got 'lve'",
            "risk.max_position (TRADEWIND_RISK__MAX_POSITION): must be >= 0, got -5",
            "risk.max_order_rate (TRADEWIND_RISK__MAX_ORDER_RATE): must be > 0, got 0",
            "risk.loss_fraction (TRADEWIND_RISK__LOSS_FRACTION): must be in (0, 1], got 1.5",
            "store.url (TRADEWIND_STORE__URL): required, missing",
        ]

    def test_error_message_lists_every_problem(self):
        with pytest.raises(ConfigError) as info:
            load_config(AppConfig, text="[risk]\n", env={})
        message = str(info.value)
        assert message.startswith("configuration: 3 problem(s)\n")
        assert "  - risk.max_position (TRADEWIND_RISK__MAX_POSITION): required, missing" in message

    def test_config_error_is_a_value_error(self):
        with pytest.raises(ValueError, match="problem"):
            load_config(AppConfig, text="", env={})

    def test_unknown_key_is_a_problem(self):
        [problem] = problems_of(with_risk(max_position="1", max_positon="2"))
        assert problem.startswith("risk.max_positon (TRADEWIND_RISK__MAX_POSITON): unknown setting")
        assert "max_position" in problem

    def test_unknown_nested_environment_variable_is_a_problem(self):
        [problem] = problems_of(MINIMAL, {"TRADEWIND_RISK__MAX_POSITON": "2"})
        assert problem.startswith("risk.max_positon (TRADEWIND_RISK__MAX_POSITON): unknown")

    def test_unknown_top_level_environment_table_is_a_problem(self):
        [problem] = problems_of(MINIMAL, {"TRADEWIND_RIKS__MAX_POSITION": "2"})
        assert problem.startswith("riks.max_position (TRADEWIND_RIKS__MAX_POSITION): unknown")

    def test_environment_cannot_set_inside_a_scalar(self):
        assert problems_of(MINIMAL, {"TRADEWIND_VENUE__NAME": "x"}) == [
            "venue.name (TRADEWIND_VENUE__NAME): cannot be set, venue is not a table"
        ]

    def test_malformed_variable_name_is_a_problem(self):
        assert problems_of(MINIMAL, {"TRADEWIND_RISK____X": "1"}) == [
            "TRADEWIND_RISK____X: malformed setting name (empty part between '__')"
        ]

    def test_list_element_path_has_index_and_no_variable(self):
        text = MINIMAL + (
            '[[instruments]]\nsymbol = "A"\ntick_size = 1\n'
            '[[instruments]]\nsymbol = "B"\ntick_size = 0\n'
        )
        assert problems_of(text) == ["instruments[1].tick_size: must be > 0, got 0"]

    def test_mapping_value_path_names_the_key(self):
        assert problems_of(MINIMAL + '[params]\nfast = "abc"\n') == [
            "params.fast (TRADEWIND_PARAMS__FAST): expected a decimal number, got 'abc'"
        ]

    def test_mapping_key_that_is_no_identifier_is_quoted(self):
        assert problems_of(MINIMAL + '[params]\n"fast ma" = true\n') == [
            "params['fast ma']: expected a decimal number, got true"
        ]

    def test_class_invariant_is_reported_at_the_class_path(self):
        assert problems_of(MINIMAL + "[window]\nstart = 5\nend = 1\n") == [
            "window (TRADEWIND_WINDOW): end must be after start, got 5..1"
        ]

    def test_top_level_invariant_has_a_top_level_path(self):
        with pytest.raises(ConfigError) as info:
            load_config(Window, text="start = 2\nend = 2\n", env={})
        assert info.value.problems == ("(top level): end must be after start, got 2..2",)

    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            (
                'max_order_rate = "5"',
                "max_order_rate (TRADEWIND_RISK__MAX_ORDER_RATE): expected an integer, got '5'",
            ),
            (
                "max_order_rate = true",
                "max_order_rate (TRADEWIND_RISK__MAX_ORDER_RATE): expected an integer, got true",
            ),
            (
                "max_order_rate = 5.5",
                "max_order_rate (TRADEWIND_RISK__MAX_ORDER_RATE): expected an integer, got 5.5",
            ),
            (
                "max_position = inf",
                (
                    "max_position (TRADEWIND_RISK__MAX_POSITION): expected a decimal number, "
                    "got Infinity"
                ),
            ),
            (
                "max_position = true",
                "max_position (TRADEWIND_RISK__MAX_POSITION): expected a decimal number, got true",
            ),
            (
                "max_position = [1]",
                (
                    "max_position (TRADEWIND_RISK__MAX_POSITION): expected a decimal number, "
                    "got an array"
                ),
            ),
        ],
    )
    def test_toml_values_are_typed(self, line: str, problem: str):
        text = 'venue = "paper"\n[risk]\nmax_position = 1\n' + line + '\n[store]\nurl = "x"\n'
        if line.startswith("max_position"):
            text = text.replace("max_position = 1\n", "", 1)
        assert problems_of(text) == ["risk." + problem]

    @pytest.mark.parametrize(
        ("setting", "problem"),
        [
            ("dry_run = 1", "dry_run (TRADEWIND_DRY_RUN): expected true or false, got 1"),
            ('tags = "fx"', "tags (TRADEWIND_TAGS): expected an array, got 'fx'"),
            ("params = [1]", "params (TRADEWIND_PARAMS): expected a table, got an array"),
            ("window = 3", "window (TRADEWIND_WINDOW): expected a table, got 3"),
            ("mode = 1", "mode (TRADEWIND_MODE): expected one of 'replay', 'live', got 1"),
            ('priority = "2"', "priority (TRADEWIND_PRIORITY): expected one of 1, 2, got '2'"),
            ("tags = [1]", "tags[0]: expected a string, got 1"),
            (
                "threshold = true",
                "threshold (TRADEWIND_THRESHOLD): expected one of int, Decimal, str, got true",
            ),
        ],
    )
    def test_wrong_kind_of_value(self, setting: str, problem: str):
        assert problems_of(setting + "\n" + MINIMAL) == [problem]

    @pytest.mark.parametrize(
        ("section", "problem"),
        [
            ("[store]\nurl = 5", "store.url (TRADEWIND_STORE__URL): expected a string, got 5"),
            (
                '[store]\nurl = "x"\ntimeout = "soon"',
                "store.timeout (TRADEWIND_STORE__TIMEOUT): expected a number, got 'soon'",
            ),
            (
                '[store]\nurl = "x"\njournal = ""',
                "store.journal (TRADEWIND_STORE__JOURNAL): expected a path, got ''",
            ),
        ],
    )
    def test_wrong_kind_of_store_value(self, section: str, problem: str):
        text = 'venue = "paper"\n[risk]\nmax_position = 1\n' + section + "\n"
        assert problems_of(text) == [problem]

    def test_long_text_is_shown_by_its_start(self):
        [problem] = problems_of(f'mode = "{"x" * 500}"\n' + MINIMAL)
        assert problem.endswith(f"got {'x' * 40!r}...")

    def test_invalid_toml_is_one_problem(self):
        [problem] = problems_of("venue = \n")
        assert problem.startswith("invalid TOML: ")

    def test_unreadable_file_is_a_config_error_naming_it(self, tmp_path: Path):
        missing = tmp_path / "absent.toml"
        with pytest.raises(ConfigError, match="cannot read") as info:
            load_config(AppConfig, missing, env={})
        assert info.value.source == str(missing)

    def test_problem_lines_never_show_a_secret(self):
        problems = problems_of(MINIMAL.replace("[risk]\nmax_position = 100", "[risk]"))
        assert not any("hunter2" in p for p in problems)

    @pytest.mark.parametrize(
        ("text", "env"),
        [
            # A DSN written where the [store] table belongs, in the file or the environment.
            ('store = "postgresql://trader:hunter2@db/tradewind"\n', {}),
            ("", {"TRADEWIND_STORE": "postgresql://trader:hunter2@db/tradewind"}),
            # Longer than a problem line shows: cut after the masking, not before.
            ('store = "postgresql://trader:hunter2' + "x" * 40 + '@db/tradewind"\n', {}),
            ('store = "host=db password=hunter2"\n', {}),
        ],
    )
    def test_a_password_in_a_value_of_the_wrong_kind_is_not_shown(self, text, env):
        problems = problems_of(text + MINIMAL.replace("[store]", "[other]"), env)
        assert any(p.startswith("store (TRADEWIND_STORE): expected a table") for p in problems)
        assert not any("hunter2" in p for p in problems)


# ---------------------------------------------------------------- validators


def attribute(name: str = "limit") -> attrs.Attribute[Any]:
    @attrs.define
    class Holder:
        limit: Any

    return attrs.fields(Holder).limit


numbers = st.one_of(
    st.integers(-(10**6), 10**6),
    st.decimals(-(10**6), 10**6, allow_nan=False, allow_infinity=False, places=4),
)


class TestValidators:
    @no_deadline
    @given(numbers)
    def test_positive(self, value: Decimal | int):
        if value > 0:
            positive(None, attribute(), value)
        else:
            with pytest.raises(ValueError, match=rf"^must be > 0, got {value}$"):
                positive(None, attribute(), value)

    @no_deadline
    @given(numbers)
    def test_non_negative(self, value: Decimal | int):
        if value >= 0:
            non_negative(None, attribute(), value)
        else:
            with pytest.raises(ValueError, match=rf"^must be >= 0, got {value}$"):
                non_negative(None, attribute(), value)

    @no_deadline
    @given(numbers)
    def test_fraction(self, value: Decimal | int):
        if 0 < value <= 1:
            fraction(None, attribute(), value)
        else:
            with pytest.raises(ValueError, match=r"^must be in \(0, 1\], got "):
                fraction(None, attribute(), value)

    @no_deadline
    @given(numbers)
    def test_in_range_includes_both_bounds(self, value: Decimal | int):
        check = in_range(-5, Decimal("2.5"))
        if -5 <= value <= Decimal("2.5"):
            check(None, attribute(), value)
        else:
            with pytest.raises(ValueError, match=r"^must be in \[-5, 2.5\], got "):
                check(None, attribute(), value)

    def test_in_range_refuses_inverted_bounds(self):
        with pytest.raises(ValueError, match="low must be <= high"):
            in_range(2, 1)

    def test_non_empty(self):
        non_empty(None, attribute(), "EURUSD")
        with pytest.raises(ValueError, match=r"^must not be empty, got ''$"):
            non_empty(None, attribute(), "")
        with pytest.raises(ValueError, match=r"^must not be empty, got \[\]$"):
            non_empty(None, attribute(), ())


# ---------------------------------------------------------------- dump_config


class TestDumpConfig:
    def test_effective_config_as_plain_data_with_secrets_masked(self):
        text = MINIMAL + '[[instruments]]\nsymbol = "EURUSD"\ntick_size = 0.00001\n'
        dumped = dump_config(load_config(AppConfig, text=text, env={}))
        assert dumped["store"] == {"url": "***", "timeout": 5.0, "journal": None}
        assert dumped["instruments"] == [
            {"symbol": "EURUSD", "tick_size": "0.00001", "lot_size": "1"}
        ]
        assert dumped["venue"] == "paper"
        assert dumped["priority"] == 1

    def test_dump_is_json_serialisable_and_never_contains_the_secret(self):
        config = load_config(AppConfig, text=MINIMAL + "[params]\nfast = 0.1\n", env={})
        text = json.dumps(dump_config(config))
        assert "hunter2" not in text
        assert '"fast": "0.1"' in text


# ---------------------------------------------------------------- properties


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def toml_table(name: str, values: dict[str, object], *, array: bool = False) -> str:
    header = f"[[{name}]]" if array else f"[{name}]"
    return header + "\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())


def money(min_value: str, max_value: str) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(min_value), Decimal(max_value), places=5)


symbols = st.text(string.ascii_uppercase + string.digits, min_size=1, max_size=8)
instruments = st.fixed_dictionaries(
    {"symbol": symbols, "tick_size": money("0.00001", "100"), "lot_size": money("0.001", "1e6")}
)
documents = st.fixed_dictionaries(
    {
        "venue": st.sampled_from(["paper", "live"]),
        "dry_run": st.booleans(),
        "risk": st.fixed_dictionaries(
            {
                "max_position": money("0", "1e9"),
                "max_order_rate": st.integers(1, 10**6),
                "loss_fraction": money("0.00001", "1"),
                "leverage": money("1", "10"),
            }
        ),
        "url": st.text(string.ascii_letters + ":/@.", min_size=1, max_size=30),
        "instruments": st.lists(instruments, max_size=4),
        "params": st.dictionaries(
            st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), money("-1e6", "1e6"), max_size=4
        ),
    }
)


def render(doc: dict[str, Any]) -> str:
    parts = [f"venue = {toml_value(doc['venue'])}\ndry_run = {toml_value(doc['dry_run'])}\n"]
    parts.append(toml_table("risk", doc["risk"]))
    parts.append(toml_table("store", {"url": doc["url"]}))
    parts.append(toml_table("params", doc["params"]))
    parts.extend(toml_table("instruments", i, array=True) for i in doc["instruments"])
    return "\n".join(parts)


# (path in the problem, where the value lives in the document, out-of-range values)
BOUNDED: list[tuple[str, tuple[str, ...], st.SearchStrategy[Decimal | int]]] = [
    ("risk.max_position", ("risk", "max_position"), money("-1e9", "-0.00001")),
    ("risk.max_order_rate", ("risk", "max_order_rate"), st.integers(-(10**6), 0)),
    (
        "risk.loss_fraction",
        ("risk", "loss_fraction"),
        st.one_of(money("-1", "0"), money("1.00001", "1e6")),
    ),
    (
        "risk.leverage",
        ("risk", "leverage"),
        st.one_of(money("-10", "0.99999"), money("10.00001", "1e3")),
    ),
]


class TestProperties:
    @no_deadline
    @given(documents)
    def test_any_valid_document_structures_to_its_values(self, doc: dict[str, Any]):
        config = load_config(AppConfig, text=render(doc), env={})
        assert config == AppConfig(
            venue=Venue(doc["venue"]),
            dry_run=doc["dry_run"],
            risk=RiskConfig(**doc["risk"]),
            store=StoreConfig(url=Secret(doc["url"])),
            instruments=tuple(InstrumentConfig(**i) for i in doc["instruments"]),
            params=doc["params"],
        )

    @no_deadline
    @given(documents, st.data())
    def test_any_out_of_range_value_is_exactly_one_problem_naming_its_path(
        self, doc: dict[str, Any], data: st.DataObject
    ):
        path, (table, key), bad_values = data.draw(st.sampled_from(BOUNDED))
        doc[table][key] = data.draw(bad_values)
        problems = problems_of(render(doc))
        assert len(problems) == 1
        assert problems[0].startswith(
            f"{path} (TRADEWIND_{path.upper().replace('.', '__')}): must "
        )

    @no_deadline
    @given(documents, st.data())
    def test_out_of_range_list_element_is_one_problem_with_its_index(
        self, doc: dict[str, Any], data: st.DataObject
    ):
        doc["instruments"] = data.draw(st.lists(instruments, min_size=1, max_size=4))
        index = data.draw(st.integers(0, len(doc["instruments"]) - 1))
        doc["instruments"][index]["tick_size"] = data.draw(money("-1", "0"))
        problems = problems_of(render(doc))
        assert len(problems) == 1
        assert problems[0].startswith(f"instruments[{index}].tick_size: must be > 0, got ")


class TestPackageExport:
    @pytest.mark.parametrize(
        "name",
        [
            "load_config",
            "dump_config",
            "Secret",
            "positive",
            "non_negative",
            "fraction",
            "in_range",
            "non_empty",
        ],
    )
    def test_config_names_are_exported_by_the_runtime_package(self, name: str):
        import tradewind.runtime
        from tradewind.runtime import _config

        assert getattr(tradewind.runtime, name) is getattr(_config, name)
