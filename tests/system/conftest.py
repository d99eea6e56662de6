"""Helpers for whole-system tests: small configurations written to a temporary folder."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from tradewind.actors._settings import Settings, load_settings
from tradewind.storage import StoreCounts, Transaction
from tradewind.storage._uow import Write

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from tradewind.runtime import Actor
    from tradewind.storage import Store

    Handle = Callable[[Any], Awaitable[Any]]
    WrapActor = Callable[[str, Callable[[], Actor]], Callable[[], Actor]]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
SMA = f"{EXAMPLES / 'sma_crossover.py'}:SmaCrossover"


def around_handle(path: str, around: Callable[[Handle, Any], Awaitable[Any]]) -> WrapActor:
    """A `wrap_actor` for `open_trading_system`: every message of the actor at `path`
    (every incarnation) goes through ``around(handle, message)``, which may call the
    actor's own `handle` or not."""

    def wrap(actor_path: str, factory: Callable[[], Actor]) -> Callable[[], Actor]:
        if actor_path != path:
            return factory

        def build() -> Actor:
            actor = factory()
            handle = actor.handle

            async def routed(message: Any) -> Any:
                return await around(handle, message)

            actor.handle = routed  # type: ignore[method-assign]
            return actor

        return build

    return wrap


async def as_if_killed(store: Store) -> None:
    """Erase the end of the newest run: a killed process never records it, and a replay
    whose newest run never ended continues from the store."""
    # Test-only raw statement: the store has no API to un-finish a run, on purpose.
    await store._fetch("UPDATE runs SET finished_ts = NULL, outcome = NULL")


RISK = """
[risk]
max_position = 1000
max_order_notional = 1000000
max_gross_exposure = 10000000
max_orders_per_second = 1000
daily_loss_limit = 1000000
"""

INSTRUMENTS = """
[[instruments]]
symbol = "AAPL"
tick_size = 0.01

[[instruments]]
symbol = "MSFT"
tick_size = 0.01
"""


def synthetic(count: int = 300, seed: int = 7, **extra: object) -> str:
    """A [data] table for the synthetic source."""
    lines = [f"source = 'synthetic'\nseed = {seed}\ncount = {count}"]
    lines += [f"{key} = {_toml(value)}" for key, value in extra.items()]
    return "[data]\n" + "\n".join(lines) + "\n"


def csv(path: Path | str) -> str:
    """A [data] table replaying a CSV file."""
    return f"[data]\nsource = 'csv'\npath = '{path}'\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def write_config(
    folder: Path,
    *,
    data: str | None = None,
    strategy: str = SMA,
    params: str = "{ fast = 3, slow = 8, quantity = 5, allow_short = true }",
    store: str = "sqlite://:memory:",
    risk: str = RISK,
    extra: str = "",
    mode: str = "replay",
) -> Path:
    """Write a configuration file and return its path."""
    text = (
        f"mode = '{mode}'\n{extra}\n[store]\nurl = '{store}'\n{INSTRUMENTS}\n"
        f"{data if data is not None else synthetic()}\n"
        f"[strategy]\npath = '{strategy}'\nid = 'sys'\nparams = {params}\n{risk}"
    )
    path = folder / "tradewind.toml"
    path.write_text(text, encoding="utf-8")
    return path


def settings_for(folder: Path, **kwargs: object) -> Settings:
    """Write a configuration and load it."""
    return load_settings(write_config(folder, **kwargs), env={})  # type: ignore[arg-type]


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**kwargs: object) -> Settings:
        return settings_for(tmp_path, **kwargs)

    return make


class MemoryStore:
    """A store that keeps every committed unit of work in memory and never touches a thread.

    Under ``autojump_clock`` a real store's worker-thread or socket I/O lets virtual time
    jump past the actors' ask timeouts; this one commits at a checkpoint, so virtual time
    stands still while it works.
    """

    backend = "memory"

    def __init__(self) -> None:
        self.units: list[tuple[object, ...]] = []

    @asynccontextmanager
    async def run_lock(self) -> AsyncIterator[None]:
        await trio.lowlevel.checkpoint()
        yield

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        tx = Transaction()
        try:
            yield tx
        finally:
            tx.close()
        await trio.lowlevel.checkpoint()
        self.units.append(tx.writes())

    async def last_bars(self) -> dict[object, object]:
        return {}

    async def max_client_order_seq(self, _strategy_id: str) -> int:
        return 0

    async def counts(self) -> StoreCounts:
        return StoreCounts(0, 0, 0, 0, 0, 0, 0, 0)

    def rows(self, table: str) -> list[tuple[object, ...]]:
        """Every row written to `table`, in commit order."""
        return [
            row
            for unit in self.units
            for write in unit
            if isinstance(write, Write) and write.table.name == table
            for row in write.rows
        ]
