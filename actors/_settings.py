"""The run configuration (``tradewind.toml``): frozen attrs classes and `load_settings`.

One file describes one trading system: the mode, the store, the instruments, where the
bars come from, the calendar, the strategy, the risk limits, the paper broker, the
supervision tree's settings, supervised external processes, persistence batching and
logging. `load_settings` reads it with the runtime's `load_config` (TOML plus
``TRADEWIND_*`` environment overrides, every problem at once, each with its path and its
environment variable, decimals exact) and then checks what spans sections or touches the
file system (the strategy loads with its parameters, the CSV file exists, risk limits are
consistent), again reporting everything in one `ConfigError`.
"""

# Design notes
# ------------
# * Paths in the file are relative to the file, not to the working directory: a config
#   names its own data next to it, and `tradewind run some/dir/x.toml` must not depend on
#   where it is started. `load_settings` resolves them once (CSV path, a strategy given as
#   ``file.py:Class``, an SQLite store file, the log file), so the effective configuration
#   that `check-config` prints shows exactly what will be opened.
# * One data table with a `source` selector rather than a union of tables: a union would
#   turn a typo in one field into "expected one of CsvData, SyntheticData", which names
#   nothing useful. Fields that belong to the other source are ignored, and the invariant
#   "csv needs a path" is reported at `data`.
# * The risk section is the `RiskLimits` fields plus the risk actor's behaviour flags. The
#   limits are built (and cross-checked) by `RiskLimits` itself at load, so a limit set
#   that the risk actor would refuse never gets past `check-config`. SIGHUP re-reads the
#   whole file through `load_settings` and keeps only the risk section: one validation
#   path, so a reload can never accept what a start would refuse.
# * `persistence.spill` defaults by mode: a replay can slow down while the store is
#   away (its producers wait), a paper feed cannot (the market does not wait), so paper
#   spills a full buffer to a local journal and replays it once the store is back. The
#   journal's default path is derived from the strategy id so two strategies configured
#   side by side never share one; `load_settings` fills both in, so `check-config` shows
#   what will be used.
# * The store URL is a `Secret` (it may carry a password); its default is an SQLite file
#   next to the configuration.

from __future__ import annotations

import hashlib
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
from tradewind.actors._calendar import TradingCalendar
from tradewind.actors._errors import (
    DomainError,
    InvalidCalendar,
    InvalidLimits,
    InvalidMarketData,
    InvalidStrategy,
)
from tradewind.actors._orders import _STRATEGY_ID
from tradewind.actors._risk import RiskLimits, TradingState
from tradewind.actors._risk_actor import RiskSettings
from tradewind.actors._sources import CSV_HEADER
from tradewind.actors._synthetic import timeframe_ns
from tradewind.actors._values import Instrument
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
from tradewind.runtime._intensity import Backoff
from tradewind.storage._errors import InvalidStoreUrl
from tradewind.storage._url import SQLITE, mask_url, parse_store_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tradewind.actors._strategy import StrategyFactory

__all__ = [
    "BrokerSection",
    "CalendarSection",
    "DataSection",
    "InstrumentSection",
    "LoggingSection",
    "PersistenceSection",
    "ProcessSection",
    "RiskSection",
    "Settings",
    "StoreSection",
    "StrategySection",
    "SupervisionSection",
    "config_hash",
    "load_settings",
]

#: The default store: an SQLite file next to the configuration file.
DEFAULT_STORE_URL = "sqlite:///tradewind.db"
#: The default folder of the spill journal (``<strategy id>.jsonl``), next to the configuration.
DEFAULT_JOURNAL_DIR = Path("tradewind-journal")
#: The default first bar time of the synthetic source: 2026-01-05 00:00 UTC.
DEFAULT_SYNTHETIC_START = 1_767_571_200_000_000_000
_NS_PER_SECOND = Decimal(1_000_000_000)


def _optional_positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        positive(instance, attribute, value)  # type: ignore[arg-type]


def _optional_fraction(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        fraction(instance, attribute, value)  # type: ignore[arg-type]


def _timeframe(_instance: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    # The synthetic source and the paper broker both need its length; without this check
    # a bad one passed `check-config` and crashed the feed until supervision gave up.
    try:
        timeframe_ns(value)
    except InvalidMarketData:
        msg = f"must be a count and a unit s, m, h or d, such as '1m', got {value!r}"
        raise ValueError(msg) from None


def _strategy_id(_instance: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    # The rule of the client order ids the strategy's orders carry: refused here, not
    # when `tradewind run` builds the strategy host.
    if not _STRATEGY_ID.fullmatch(value):
        msg = (
            "must start with a letter or digit and use only letters, digits, '_', '.', '-', "
            f"got {value!r}"
        )
        raise ValueError(msg)


def _store_url(_instance: object, _attribute: attrs.Attribute[Any], value: Secret) -> None:
    try:
        parse_store_url(value.reveal())
    except InvalidStoreUrl as exc:  # its message masks the password
        raise ValueError(str(exc)) from None


def _unique_symbols(
    _instance: object, _attribute: attrs.Attribute[Any], value: tuple[InstrumentSection, ...]
) -> None:
    symbols = [i.symbol for i in value]
    twice = sorted({s for s in symbols if symbols.count(s) > 1})
    if twice:
        msg = f"symbols must be unique, repeated: {', '.join(twice)}"
        raise ValueError(msg)


#: Names taken by the trading actors at the root of the tree.
_RESERVED = frozenset({"persistence", "trading", "feed"})


def _process_names(
    _instance: object, _attribute: attrs.Attribute[Any], value: tuple[ProcessSection, ...]
) -> None:
    names = [p.name for p in value]
    clash = sorted({n for n in names if names.count(n) > 1 or n in _RESERVED})
    if clash:
        msg = f"names must be unique and not one of {sorted(_RESERVED)}, got {clash}"
        raise ValueError(msg)


# ----------------------------------------------------------------------------- sections


@attrs.frozen
class StoreSection:
    """``[store]``: where everything accepted is kept.

    Attributes:
        url: ``sqlite:///file.db`` (relative to the configuration file),
            ``sqlite:////abs/file.db``, ``sqlite://:memory:`` or
            ``postgresql://user:password@host:5432/db``. A secret: never printed.
        pool_size: PostgreSQL connections at most.
    """

    url: Secret = attrs.field(default=Secret(DEFAULT_STORE_URL), validator=_store_url)
    pool_size: int = attrs.field(default=4, validator=positive)


@attrs.frozen
class InstrumentSection:
    """One ``[[instruments]]`` entry: a tradable instrument and its price/quantity grid."""

    symbol: str = attrs.field(validator=non_empty)
    tick_size: Decimal = attrs.field(validator=positive)
    currency: str = "USD"
    lot_size: Decimal = attrs.field(default=Decimal(1), validator=positive)
    min_quantity: Decimal = attrs.field(default=Decimal(0), validator=non_negative)
    max_quantity: Decimal | None = attrs.field(default=None, validator=_optional_positive)
    multiplier: Decimal = attrs.field(default=Decimal(1), validator=positive)

    def __attrs_post_init__(self) -> None:
        self.instrument()  # the domain's own rules (symbol, currency, min <= max)

    def instrument(self) -> Instrument:
        """The domain `Instrument`.

        Raises:
            ValueError: the domain refuses it (the message names the field).
        """
        try:
            return Instrument(
                symbol=self.symbol,
                currency=self.currency,
                tick_size=self.tick_size,
                lot_size=self.lot_size,
                min_quantity=self.min_quantity,
                max_quantity=self.max_quantity,
                multiplier=self.multiplier,
            )
        except DomainError as exc:
            raise ValueError(str(exc)) from None


@attrs.frozen
class DataSection:
    """``[data]``: where the bars come from.

    Attributes:
        source: ``"csv"`` (replay a bar file) or ``"synthetic"`` (a seeded random walk).
        path: csv: the bar file, relative to the configuration file.
        timeframe: the bars' timeframe (``"1m"``).
        seed, count, start_ts, start_price: synthetic: the generator's seed, how many
            time steps, the first step's time (ns since the epoch) and the first open.
        interval: synthetic: seconds between time steps (paper mode); 0 for as fast as
            the system takes them.
        conflate: market data toward the strategy replaces a queued bar of the same
            instrument (CONFLATE) instead of waiting (BLOCK); skipped bars are counted.
        stale_after: paper mode: seconds without a bar during a session before the feed
            is declared stale (None: no watchdog). Replays never go stale.
    """

    source: Literal["csv", "synthetic"] = "csv"
    path: Path | None = None
    timeframe: str = attrs.field(default="1m", validator=[non_empty, _timeframe])
    seed: int = 0
    count: int = attrs.field(default=1_000, validator=positive)
    start_ts: int = attrs.field(default=DEFAULT_SYNTHETIC_START, validator=non_negative)
    start_price: Decimal = attrs.field(default=Decimal(100), validator=positive)
    interval: float = attrs.field(default=0.0, validator=non_negative)
    conflate: bool = False
    stale_after: float | None = attrs.field(default=None, validator=_optional_positive)

    def __attrs_post_init__(self) -> None:
        if self.source == "csv" and self.path is None:
            msg = "path: required when source = 'csv'"
            raise ValueError(msg)


@attrs.frozen
class CalendarSection:
    """``[calendar]``: trading sessions (see `TradingCalendar.from_spec`).

    Attributes:
        timezone: an IANA zone name (``"America/New_York"``).
        sessions: weekday or range (``"mon-fri"``) to ``"HH:MM-HH:MM"`` or a list of them.
        holidays: dates (``"2026-12-25"``) without sessions.
        early_closes: date to local close time.
        name: a label.
    """

    timezone: str
    sessions: dict[str, str | list[str]]
    holidays: tuple[str, ...] = ()
    early_closes: dict[str, str] = attrs.field(factory=dict)
    name: str = ""

    def __attrs_post_init__(self) -> None:
        try:
            self.calendar()
        except InvalidCalendar as exc:
            raise ValueError("; ".join(exc.problems)) from None

    def calendar(self) -> TradingCalendar:
        """The `TradingCalendar`.

        Raises:
            InvalidCalendar: the spec is invalid (every problem listed).
        """
        spec: dict[str, object] = {
            "timezone": self.timezone,
            "sessions": dict(self.sessions),
            "holidays": list(self.holidays),
            "early_closes": dict(self.early_closes),
            "name": self.name,
        }
        return TradingCalendar.from_spec(spec)


@attrs.frozen
class StrategySection:
    """``[strategy]``: the user's strategy.

    Attributes:
        path: ``"package.module:Class"`` or ``"file.py:Class"`` (relative to the
            configuration file).
        id: the strategy id its orders are issued under (client order ids start with it).
        params: keyword arguments for the class.
        history: bars kept per instrument for ``ctx.history`` and the warm-up.
    """

    path: str = attrs.field(validator=non_empty)
    id: str = attrs.field(default="main", validator=[non_empty, _strategy_id])
    params: dict[str, Any] = attrs.field(factory=dict)
    history: int = attrs.field(default=500, validator=positive)


_STATES = Literal["ACTIVE", "REDUCING", "HALTED"]


@attrs.frozen
class RiskSection:
    """``[risk]``: the pre-trade limits (`RiskLimits`) and how the risk actor behaves.

    Attributes:
        max_position, max_order_notional, max_gross_exposure, max_portfolio_risk,
        max_orders_per_second, daily_loss_limit, currency, price_band, flatten_on_halt:
            see `RiskLimits`.
        stale_feed_state: the trading state while the feed is stale.
        flatten_on_kill: the kill switch also closes every position (default: follow
            ``flatten_on_halt``).
        resume_next_day: a tripped kill switch resets at the next trading day.
        broker_down_state: the trading state while the broker connection is down
            (``"HALTED"`` or ``"REDUCING"``); intents are denied either way until the
            order actor has reconnected and reconciled.
    """

    max_position: Decimal = attrs.field(validator=non_negative)
    max_order_notional: Decimal = attrs.field(validator=positive)
    max_gross_exposure: Decimal = attrs.field(validator=positive)
    max_orders_per_second: int = attrs.field(validator=positive)
    daily_loss_limit: Decimal = attrs.field(validator=positive)
    max_portfolio_risk: Decimal = attrs.field(default=Decimal(1), validator=fraction)
    currency: str = attrs.field(default="USD", validator=non_empty)
    price_band: Decimal | None = attrs.field(default=None, validator=_optional_positive)
    flatten_on_halt: bool = False
    stale_feed_state: _STATES = "REDUCING"
    flatten_on_kill: bool | None = None
    resume_next_day: bool = False
    broker_down_state: Literal["HALTED", "REDUCING"] = "HALTED"

    def __attrs_post_init__(self) -> None:
        try:
            self.limits()
        except InvalidLimits as exc:
            raise ValueError(str(exc)) from None

    def limits(self) -> RiskLimits:
        """The validated `RiskLimits`.

        Raises:
            InvalidLimits: the limits are inconsistent (every problem listed).
        """
        return RiskLimits(
            max_position=self.max_position,
            max_order_notional=self.max_order_notional,
            max_gross_exposure=self.max_gross_exposure,
            max_orders_per_second=self.max_orders_per_second,
            daily_loss_limit=self.daily_loss_limit,
            max_portfolio_risk=self.max_portfolio_risk,
            currency=self.currency,
            price_band=self.price_band,
            flatten_on_halt=self.flatten_on_halt,
        )

    def settings(self) -> RiskSettings:
        """The risk actor's behaviour flags."""
        return RiskSettings(
            stale_feed_state=TradingState(self.stale_feed_state),
            flatten_on_kill=self.flatten_on_kill,
            resume_next_day=self.resume_next_day,
            broker_down_state=TradingState(self.broker_down_state),
        )


@attrs.frozen
class BrokerSection:
    """``[broker]``: the paper broker.

    Attributes:
        kind: ``"paper"`` (the built-in simulated broker).
        slippage_ticks: adverse move per fill, in ticks.
        fee_per_unit: fee per unit of quantity.
        fee_bps: fee in basis points of the notional.
        max_volume_fraction: at most this share of a bar's volume fills per bar
            (partial fills); None for no cap.
        latency: seconds (event time) after submission before an order can fill.
        reconnect_initial, reconnect_max: seconds before the first reconnect attempt
            after the connection is lost, doubling per failed attempt up to the cap.
        reconnect_jitter: relative spread of each delay, in [0, 1], drawn from a random
            source seeded with the top-level ``seed`` (runs stay deterministic).
        state: where the paper venue's state lives across a restart: ``"journal"``
            (rebuilt from our own order journal at a cold start) or ``"tables"`` (the
            venue's own tables in the same store, written through as it trades).
    """

    kind: Literal["paper"] = "paper"
    slippage_ticks: Decimal = attrs.field(default=Decimal(0), validator=non_negative)
    fee_per_unit: Decimal = attrs.field(default=Decimal(0), validator=non_negative)
    fee_bps: Decimal = attrs.field(default=Decimal(0), validator=non_negative)
    max_volume_fraction: Decimal | None = attrs.field(default=None, validator=_optional_fraction)
    latency: Decimal = attrs.field(default=Decimal(0), validator=non_negative)
    reconnect_initial: float = attrs.field(default=1.0, validator=non_negative)
    reconnect_max: float = attrs.field(default=30.0, validator=non_negative)
    reconnect_jitter: float = attrs.field(default=0.1, validator=in_range(0, 1))
    state: Literal["journal", "tables"] = "journal"

    def __attrs_post_init__(self) -> None:
        if self.reconnect_max < self.reconnect_initial:
            msg = f"reconnect_max: must be >= reconnect_initial ({self.reconnect_initial})"
            raise ValueError(msg)

    def reconnect_backoff(self) -> Backoff:
        """The order actor's reconnect backoff (doubling, capped, jittered)."""
        return Backoff(
            initial=self.reconnect_initial,
            multiplier=2.0,
            maximum=self.reconnect_max,
            jitter=self.reconnect_jitter,
        )

    @property
    def latency_ns(self) -> int:
        """The latency in integer nanoseconds (exact: the seconds are a Decimal)."""
        return int(self.latency * _NS_PER_SECOND)


@attrs.frozen
class SupervisionSection:
    """``[supervision]``: restart intensity, backoff and timeouts of the tree.

    Attributes:
        max_restarts: restarts a supervisor allows within ``within`` seconds.
        within: the intensity window, seconds.
        backoff_initial, backoff_max: the delay before a restart, seconds, doubling.
        handler_timeout: seconds one handler may take (None: no limit).
        shutdown_timeout: seconds a graceful stop may take per actor.
        max_redeliveries: redeliveries of the message in hand at a crash.
        mailbox_capacity: the bound of every actor's mailbox.
    """

    max_restarts: int = attrs.field(default=5, validator=non_negative)
    within: float = attrs.field(default=10.0, validator=positive)
    backoff_initial: float = attrs.field(default=0.05, validator=non_negative)
    backoff_max: float = attrs.field(default=2.0, validator=non_negative)
    handler_timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    shutdown_timeout: float = attrs.field(default=10.0, validator=positive)
    max_redeliveries: int = attrs.field(default=2, validator=non_negative)
    mailbox_capacity: int = attrs.field(default=1_024, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.backoff_max < self.backoff_initial:
            msg = f"backoff_max: must be >= backoff_initial ({self.backoff_initial})"
            raise ValueError(msg)


@attrs.frozen
class ProcessSection:
    """One ``[[processes]]`` entry: an external OS process the tree supervises.

    Attributes:
        name: its path segment under the root.
        argv: the program and its arguments (no shell).
        restart: ``"permanent"``, ``"transient"`` or ``"temporary"``.
        shutdown_timeout: seconds between SIGTERM and SIGKILL.
    """

    name: str = attrs.field(validator=non_empty)
    argv: tuple[str, ...] = attrs.field(validator=non_empty)
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown_timeout: float = attrs.field(default=5.0, validator=positive)

    def __attrs_post_init__(self) -> None:
        if "/" in self.name:
            msg = f"name: must not contain '/', got {self.name!r}"
            raise ValueError(msg)


@attrs.frozen
class PersistenceSection:
    """``[persistence]``: batching of writes and what happens while the store is down.

    Attributes:
        batch_size: records per unit of work.
        flush_interval: seconds a batch may wait before it is written.
        spill: during a store outage, write a full buffer to the spill journal and go
            on, instead of making the producers wait. None (the default) follows the
            mode: paper spills (a live feed cannot slow down), a replay slows down.
        spill_path: the spill journal file (relative to the configuration file);
            default ``tradewind-journal/<strategy id>.jsonl`` next to the configuration.
            A journal found there at start (a crashed run's) is replayed into the store
            first, whatever `spill` says.
        max_pending: records held in memory while the store is unavailable before the
            producers wait or, with `spill`, the buffer is spilled (at least
            `batch_size`).
        durable_timeout: seconds a durable write (an order's journal entry) waits for an
            unavailable store before it is refused.
    """

    batch_size: int = attrs.field(default=2_000, validator=positive)
    flush_interval: float = attrs.field(default=1.0, validator=positive)
    spill: bool | None = None
    spill_path: Path | None = None
    max_pending: int = attrs.field(default=100_000, validator=positive)
    durable_timeout: float = attrs.field(default=2.0, validator=non_negative)

    def __attrs_post_init__(self) -> None:
        if self.max_pending < self.batch_size:
            msg = (
                f"max_pending must be at least batch_size ({self.batch_size}): a full "
                f"batch is held while the store is down, got {self.max_pending}"
            )
            raise ValueError(msg)


@attrs.frozen
class LoggingSection:
    """``[logging]``: how the run logs.

    Attributes:
        format: ``"json"``, ``"console"`` or ``"auto"`` (console on a terminal).
        level: ``"debug"``, ``"info"``, ``"warning"``, ``"error"`` or ``"critical"``.
        file: append log lines to this file (relative to the configuration file)
            instead of stderr.
    """

    format: Literal["json", "console", "auto"] = "auto"
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    file: Path | None = None


@attrs.frozen
class Settings:
    """A whole ``tradewind.toml``.

    Attributes:
        mode: ``"replay"`` (as fast as possible, deterministic, ends with the data) or
            ``"paper"`` (against the wall clock, until stopped).
        seed: seeds the supervisors' restart-backoff jitter and the order actor's
            reconnect-backoff jitter.
        instruments: the tradable instruments (at least one, unique symbols).
        data, store, calendar, strategy, risk, broker, supervision, processes,
        persistence, logging: the sections.
    """

    instruments: tuple[InstrumentSection, ...] = attrs.field(validator=[non_empty, _unique_symbols])
    data: DataSection
    strategy: StrategySection
    risk: RiskSection
    mode: Literal["replay", "paper"] = "replay"
    seed: int = 0
    store: StoreSection = attrs.field(factory=StoreSection)
    calendar: CalendarSection | None = None
    broker: BrokerSection = attrs.field(factory=BrokerSection)
    supervision: SupervisionSection = attrs.field(factory=SupervisionSection)
    processes: tuple[ProcessSection, ...] = attrs.field(default=(), validator=_process_names)
    persistence: PersistenceSection = attrs.field(factory=PersistenceSection)
    logging: LoggingSection = attrs.field(factory=LoggingSection)

    def __attrs_post_init__(self) -> None:
        # No FX rates can be configured: an instrument quoted in another currency than
        # the limits could never pass risk (every order NO_FX_RATE), and a position in it
        # would leave the day's PnL -- and so the kill switch -- without a figure.
        foreign = [
            f"{i.symbol} ({i.currency})"
            for i in self.instruments
            if i.currency != self.risk.currency
        ]
        if foreign:
            msg = (
                f"instruments {', '.join(foreign)} are not quoted in risk.currency "
                f"{self.risk.currency}: every instrument must be (no FX rates can be "
                "configured, and risk values everything in the limits' currency)"
            )
            raise ValueError(msg)

    @property
    def replay(self) -> bool:
        """Whether this is a replay (as opposed to paper trading)."""
        return self.mode == "replay"

    def instrument_map(self) -> dict[str, Instrument]:
        """The domain instruments by symbol, in configuration order."""
        return {i.symbol: i.instrument() for i in self.instruments}


# ----------------------------------------------------------------------------- loading


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path)


def _is_file_spec(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or "\\" in module_part


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    """The settings with every relative file path made relative to ``base``."""
    data = settings.data
    if data.path is not None:
        data = attrs.evolve(data, path=_resolve(base, data.path))
    strategy = settings.strategy
    module_part, colon, class_name = strategy.path.rpartition(":")
    if colon and _is_file_spec(module_part):
        spec = f"{_resolve(base, Path(module_part))}:{class_name}"
        strategy = attrs.evolve(strategy, path=spec)
    store = settings.store
    url = parse_store_url(store.url.reveal())
    if url.backend == SQLITE and not url.is_memory and not Path(url.path).is_absolute():
        store = attrs.evolve(store, url=Secret(f"sqlite:///{_resolve(base, Path(url.path))}"))
    logging = settings.logging
    if logging.file is not None:
        logging = attrs.evolve(logging, file=_resolve(base, logging.file))
    persistence = settings.persistence
    spill_path = persistence.spill_path or DEFAULT_JOURNAL_DIR / f"{settings.strategy.id}.jsonl"
    persistence = attrs.evolve(
        persistence,
        spill=(not settings.replay) if persistence.spill is None else persistence.spill,
        spill_path=_resolve(base, spill_path),
    )
    return attrs.evolve(
        settings,
        data=data,
        strategy=strategy,
        store=store,
        logging=logging,
        persistence=persistence,
    )


def log_file_problem(path: Path) -> str:
    """Why log lines cannot be appended to `path` (its folder is missing or not
    writable, it is a folder), or ""."""
    folder = path.parent
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    return ""


def spill_path_problem(path: Path, *, spill: bool) -> str:
    """Why `path` cannot be the spill journal, or "".

    A journal left there by a crashed run is read at every start, so the path must not
    be a folder; with `spill` its folder is made at start, so the nearest existing
    ancestor must be a writable folder.
    """
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if not spill:
        return ""
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder: the journal's folder {path.parent} cannot be made"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    if not path.exists() and not os.access(existing, os.W_OK | os.X_OK):
        return f"the folder {existing} is not writable"
    return ""


def _check(settings: Settings) -> list[str]:
    """Problems only visible with the file system and the strategy's code."""
    problems: list[str] = []
    if settings.logging.file is not None:
        problem = log_file_problem(settings.logging.file)
        if problem:
            problems.append(f"logging.file (TRADEWIND_LOGGING__FILE): {problem}")
    persistence = settings.persistence
    if persistence.spill_path is not None:
        problem = spill_path_problem(persistence.spill_path, spill=bool(persistence.spill))
        if problem:
            problems.append(
                f"persistence.spill_path (TRADEWIND_PERSISTENCE__SPILL_PATH): {problem}"
            )
    data = settings.data
    if data.source == "csv" and data.path is not None:
        problem = _csv_problem(data.path)
        if problem:
            problems.append(f"data.path (TRADEWIND_DATA__PATH): {problem}")
    try:
        load_strategy_factory(settings)
    except InvalidStrategy as exc:
        problems.append(f"strategy.path (TRADEWIND_STRATEGY__PATH): {exc}")
    return problems


def _csv_problem(path: Path) -> str:
    """Why a bar file cannot be replayed (missing, unreadable, no header), or ""."""
    if not path.is_file():
        return f"no such file: {path}"
    try:
        with path.open(encoding="utf-8-sig") as handle:
            first = next((line for line in handle if line.strip()), "")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read: {path}: {exc}"
    header = tuple(part.strip().lower() for part in first.split(","))
    if header != CSV_HEADER:
        return f"{path}: the first line must be the header {','.join(CSV_HEADER)}"
    return ""


def load_strategy_factory(settings: Settings) -> StrategyFactory:
    """Load the configured strategy class and check its parameters.

    Raises:
        InvalidStrategy: it cannot be loaded or refuses the parameters.
    """
    # Imported here: loading strategies pulls in the strategy host, which is not needed to
    # read a configuration.
    from tradewind.actors._strategy import load_strategy  # noqa: PLC0415

    return load_strategy(settings.strategy.path, settings.strategy.params)


def load_settings(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Settings:
    """Read and validate a run configuration.

    Args:
        path: the TOML file. Relative paths inside it are resolved against its folder.
        env: the environment for ``TRADEWIND_*`` overrides; None means ``os.environ``.
        check: also load the strategy and look for the data file (problems reported
            together with the others only if the file itself is valid).

    Returns:
        The validated settings, with every file path absolute.

    Raises:
        ConfigError: every problem found, one line each, naming the setting and its
            environment variable.
    """
    source = Path(path)
    settings = load_config(Settings, source, env=os.environ if env is None else env)
    settings = _resolve_paths(settings, source.resolve().parent)
    if check:
        problems = _check(settings)
        if problems:
            raise ConfigError(problems, str(source))
    return settings


def settings_document(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets masked (for display)."""
    document: dict[str, Any] = _plain(dump_config(settings))  # type: ignore[assignment]
    # The URL itself is useful to see; only its password is a secret.
    document["store"]["url"] = mask_url(settings.store.url.reveal())
    return document


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def config_hash(settings: Settings) -> str:
    """A short SHA-256 of the effective settings (secrets masked), recorded with the run."""
    text = json.dumps(settings_document(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
