"""Cold start against a paper venue that keeps its own state (``[broker] state = "tables"``).

The venue's tables and our journal are written in units of work of their own, so after
a kill they may differ, and the reconciliation at the restart is the ordinary one
against a venue that really may be ahead of our store, behind it, or equal:

* in process, through `open_trading_system` twice on the same store: a first run whose
  last records never reach our store (its persistence drops them: the kill came before
  their commit) or whose journal gets an intent the venue never saw, then a restart;
* out of process, `tradewind run` killed with SIGKILL at seeded points on SQLite and on
  PostgreSQL, restarted until it completes; then our store and the venue's tables must
  agree on every order we know.
"""

from __future__ import annotations

import json
import random
import signal
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import trio
from tradewind.actors import Bar, Order, OrderIntent, OrderType, Side, Strategy, TimeInForce
from tradewind.actors._messages import Persist, PersistDurably
from tradewind.actors._orders import OrderCancelRequested, OrderStatus
from tradewind.actors._reconcile import UNKNOWN_TO_BROKER
from tradewind.actors._settings import load_settings
from tradewind.actors._sources import SourceBar
from tradewind.actors._tree import open_trading_system
from tradewind.storage import open_store

from tests.system.conftest import around_handle, as_if_killed, csv, write_config
from tests.system.test_cold_start import (
    MARK,
    config,
    last_bars,
    processed_again,
    seen_bar,
    start,
    stored,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

    from tradewind.actors._settings import Settings
    from tradewind.actors._sources import SourceItem
    from tradewind.actors._strategy import StrategyContext

    from tests.system.conftest import Handle, WrapActor

T0 = 1_767_571_200 * 10**9
MIN = 60 * 10**9
BARS = 12
TABLES = "[broker]\nstate = 'tables'\nmax_volume_fraction = 0.01\n"  # 10 of 1000 per bar


def bar_ts(n: int) -> int:
    """The time of the n-th bar (from 1)."""
    return T0 + (n - 1) * MIN


def flat_bar(n: int) -> Bar:
    """The n-th bar (from 1) of the replay: a flat market around 100."""
    return Bar("AAPL", "1m", bar_ts(n), "100.00", "101.00", "99.00", "100.00", "1000")


def settings_in(folder: Path, url: str) -> Settings:
    """A replay of `BARS` flat one-minute AAPL bars, the venue in its own tables."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "bars.csv"
    rows = [
        f"{b.ts},{b.instrument},{b.open},{b.high},{b.low},{b.close},{b.volume}"
        for b in map(flat_bar, range(1, BARS + 1))
    ]
    data.write_text("ts,instrument,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return load_settings(write_config(folder, data=csv(data), store=url, extra=TABLES), env={})


class BuyOnce(Strategy):
    """Buys `quantity` AAPL (GTC; at the market, or no higher than `limit`) on the bar of
    time `at`, and does nothing else."""

    def __init__(self, at: int, quantity: int, limit: str | None = None) -> None:
        self.at, self.quantity, self.limit = at, quantity, limit

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if bar.ts == self.at and not ctx.warming_up:
            ctx.buy("AAPL", self.quantity, self.limit, time_in_force=TimeInForce.GTC)


class Idle(Strategy):
    """Never trades: after the restart only what the venue and the journal hold counts."""


def losing_records_after_the_journal() -> WrapActor:
    """A `wrap_actor` whose persistence drops every `Persist` once the first intent is
    journaled: those records were never committed when the process was killed."""
    journaled = False

    async def lossy(handle: Handle, message: Any) -> Any:
        nonlocal journaled
        if journaled and isinstance(message, Persist):
            return None
        answer = await handle(message)
        journaled = journaled or isinstance(message, PersistDurably)
        return answer

    return around_handle("persistence", lossy)


async def venue_of(url: str) -> Any:
    async with open_store(url) as other:
        return await other.paper_venue()


def by_order(fills: Any) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for fill in fills:
        grouped.setdefault(fill.client_order_id, []).append(fill)
    return grouped


class TestReconciliationAgainstTheVenuesTables:
    async def test_venue_ahead_its_fills_are_applied_once_at_the_restart(
        self, tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'ahead.db'}"
        settings = settings_in(tmp_path, url)
        async with open_store(url) as store:
            async with open_trading_system(
                settings,
                store=store,
                strategy_factory=lambda: BuyOnce(bar_ts(3), 25),
                wrap_actor=losing_records_after_the_journal(),
            ) as first:
                await first.wait_finished()
            await as_if_killed(store)
            # our store: the intent only; the venue: the order, filled over three bars
            (journaled,) = await store.orders()
            assert journaled.status is OrderStatus.INITIALIZED
            assert await store.fills() == []
            venue = await venue_of(url)
            at_venue = [f.fill for f in venue.fills]
            assert [f.execution_id for f in at_venue] == [
                f"{journaled.client_order_id}-F{n}" for n in (1, 2, 3)
            ]
            assert [f.quantity for f in at_venue] == [10, 10, 5]

            async with open_trading_system(settings, store=store, strategy_factory=Idle) as second:
                await second.wait_finished()
            ours = await store.fills()
            (order,) = await store.orders()
            positions = await store.positions()
        assert ours == at_venue  # each applied once, in execution order
        assert order.status is OrderStatus.FILLED
        assert order.execution_ids == {f.execution_id for f in at_venue}
        assert positions["AAPL"].quantity == sum(f.quantity for f in ours) == Decimal(25)
        assert second.portfolio.position("AAPL").quantity == Decimal(25)
        assert second.orders.statistics().reconciled_events == 5  # SUBMITTED, ACCEPTED, 3 fills

    async def test_venue_behind_a_journaled_intent_it_never_saw_is_rejected(
        self, tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'behind.db'}"
        settings = settings_in(tmp_path, url)
        async with open_store(url) as store:
            async with open_trading_system(
                settings, store=store, strategy_factory=lambda: BuyOnce(bar_ts(2), 5)
            ) as first:
                await first.wait_finished()
            (placed,) = await store.orders()
            # the next intent was journaled, and the process died before the submit
            intent = OrderIntent(
                strategy_id="sys",
                instrument="AAPL",
                side=Side.SELL,
                quantity=Decimal(5),
                order_type=OrderType.MARKET,
                limit_price=None,
                time_in_force=TimeInForce.GTC,
            )
            lost = Order.create("sys-00000002", intent, bar_ts(BARS))
            async with store.transaction() as tx:
                tx.write_order(lost)
            await as_if_killed(store)
            async with open_trading_system(settings, store=store, strategy_factory=Idle) as second:
                await second.wait_finished()
            orders = {o.client_order_id: o for o in await store.orders()}
            venue = await venue_of(url)
            fills = await store.fills()
        rejected = orders["sys-00000002"]
        assert (rejected.status, rejected.reason) == (OrderStatus.REJECTED, UNKNOWN_TO_BROKER)
        assert [o.order.client_order_id for o in venue.orders] == [placed.client_order_id]
        assert orders[placed.client_order_id].status is OrderStatus.FILLED
        assert fills == [f.fill for f in venue.fills]
        assert second.portfolio.position("AAPL").quantity == Decimal(5)
        assert len(fills) == 1

    async def test_venue_behind_a_journaled_cancel_it_never_saw_is_sent_again(
        self, tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'cancel.db'}"
        settings = settings_in(tmp_path, url)
        async with open_store(url) as store:
            async with open_trading_system(
                settings, store=store, strategy_factory=lambda: BuyOnce(bar_ts(2), 5, "50.00")
            ) as first:
                await first.wait_finished()
            (resting,) = await store.orders()
            assert resting.status is OrderStatus.ACCEPTED
            # the cancel request was journaled, and the process died before the cancel
            coid = resting.client_order_id
            asked = resting.apply(OrderCancelRequested(client_order_id=coid, ts=bar_ts(BARS)))
            request = asked.last_event
            assert request is not None
            async with store.transaction() as tx:
                tx.write_order(asked)
                tx.append_order_events([request])
            await as_if_killed(store)
            async with open_trading_system(settings, store=store, strategy_factory=Idle) as second:
                await second.wait_finished()
            (order,) = await store.orders()
            events = await store.order_events(coid)
            venue = await venue_of(url)
        # we meant to cancel it: the restart sends the cancel, and both sides agree
        assert order.status is OrderStatus.CANCELED
        assert [e.kind.value for e in events][-2:] == ["CANCEL_REQUESTED", "CANCELED"]
        (copy,) = [o.order for o in venue.orders]
        assert copy.status is OrderStatus.CANCELED
        assert second.orders.statistics().working == 0

    async def test_an_order_working_at_the_venue_is_tracked_and_fills_on(
        self, tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'working.db'}"
        settings = settings_in(tmp_path, url)
        async with open_store(url) as store:
            async with open_trading_system(
                settings,
                store=store,
                source=FirstBars(4),
                strategy_factory=lambda: BuyOnce(bar_ts(3), 25, limit="99.50"),
            ) as first:
                await first.wait_finished()
            (working,) = await store.open_orders()
            assert working.status is OrderStatus.PARTIALLY_FILLED
            assert working.filled_quantity == Decimal(10)
            await as_if_killed(store)
            async with open_trading_system(settings, store=store, strategy_factory=Idle) as second:
                await second.wait_finished()
            (order,) = await store.orders()
            ours = await store.fills()
            venue = await venue_of(url)
        assert second.feed.statistics().resumed == 4
        assert second.orders.statistics().reconciled_events == 0  # equal: nothing to settle
        coid = order.client_order_id
        assert [f.execution_id for f in ours] == [f"{coid}-F1", f"{coid}-F2", f"{coid}-F3"]
        assert [f.ts for f in ours] == [bar_ts(4), bar_ts(5), bar_ts(6)]
        assert ours == [f.fill for f in venue.fills]
        assert order.status is OrderStatus.FILLED
        assert order.broker_order_id == "PAPER-00000001"


class FirstBars:
    """The first `count` bars of the replay's file, as a `BarSource`: a run that ends
    early, so that the restart has bars of its own to trade."""

    def __init__(self, count: int) -> None:
        self.bars = [flat_bar(n) for n in range(1, count + 1)]

    @property
    def name(self) -> str:
        return "first-bars"

    def describe(self) -> str:
        return f"the first {len(self.bars)} bars"

    async def items(self, *, skip: int = 0) -> AsyncGenerator[SourceItem, None]:
        for n, bar in enumerate(self.bars[skip:], start=skip + 1):
            await trio.lowlevel.checkpoint()
            yield SourceBar(bar, f"first-bars:{n}")


# ----------------------------------------------------------------------------- SIGKILL

KILLS = 8
TABLES_ONLY = "[broker]\nstate = 'tables'\n"


def read_both(url: str) -> dict[str, Any]:
    """What the store holds (as `stored`) and the venue's tables."""
    return {**stored(url), "venue": trio.run(venue_of, url)}


def run_noting_reconciliations(
    path: Path, after_bars: int | None
) -> tuple[list[tuple[str, int]], list[int]]:
    """`run_and_kill` (None: run to completion) that also returns how many fills each
    reconciliation of the run applied (from its ``reconciled`` log lines)."""
    proc = start(path)
    assert proc.stderr is not None
    seen: list[tuple[str, int]] = []
    reconciled: list[int] = []
    for line in proc.stderr:
        if '"reconciled"' in line:
            reconciled.append(int(json.loads(line)["fills"]))
        if after_bars == 0 and '"run_started"' in line:
            break
        if line.startswith(MARK):
            seen.append(seen_bar(line))
            if after_bars is not None and len(seen) >= after_bars:
                break
    if after_bars is not None:
        proc.send_signal(signal.SIGKILL)
    _out, err = proc.communicate(timeout=120)
    expected = 0 if after_bars is None else -signal.SIGKILL
    assert proc.returncode == expected, err
    return seen, reconciled


def kill_until_complete(tmp_path: Path, url: str, seed: int) -> dict[str, Any]:
    """Kill a replay `KILLS` times at seeded points, run it to completion, and return
    what the store and the venue's tables hold."""
    rng = random.Random(seed)
    path = config(tmp_path / "killed", url, TABLES_ONLY)
    reconciled: list[int] = []
    for kill in range(KILLS + 1):
        before = last_bars(url)
        after_bars = rng.choice([0, *range(1, 25)]) if kill < KILLS else None
        seen, fills = run_noting_reconciliations(path, after_bars)
        assert processed_again(before, seen) == []
        reconciled.extend(fills)
    # the venue was ahead of our store at some restart: reconciliation met real fills
    assert any(reconciled), reconciled
    return read_both(url)


def assert_store_and_venue_agree(after: dict[str, Any]) -> None:
    orders = {o.client_order_id: o for o in after["orders"]}
    venue = after["venue"]
    venue_orders = {o.order.client_order_id: o.order for o in venue.orders}
    venue_fills = [f.fill for f in venue.fills]
    ours = after["fills"]
    assert orders, "the replay placed no order"
    assert ours, "the replay made no fill"
    # no duplicate rows, no client order id used for two intents
    assert len({f.execution_id for f in ours}) == len(ours)
    assert len({f.execution_id for f in venue_fills}) == len(venue_fills)
    assert len(after["bars"]) == len({(b.instrument, b.timeframe, b.ts) for b in after["bars"]})
    assert set(venue_orders) <= set(orders)
    for coid, copy in venue_orders.items():
        assert (copy.intent, copy.created_ts) == (orders[coid].intent, orders[coid].created_ts)
    # our fills are the venue's, order by order (price, quantity, fee: the whole fill)
    assert by_order(ours) == by_order(venue_fills)
    # every order is final, or still working at the venue
    for coid, order in orders.items():
        if order.status.is_working:
            assert coid in venue_orders, f"{coid} works here, unknown to the venue"
            assert venue_orders[coid].status.is_working, f"{coid} works here only"
            assert venue_orders[coid].filled_quantity == order.filled_quantity
        elif order.reason == UNKNOWN_TO_BROKER:
            assert coid not in venue_orders
        elif coid in venue_orders:
            assert venue_orders[coid].status is order.status
    # positions are the sum of the stored fills
    totals: dict[str, Decimal] = {}
    for fill in ours:
        totals[fill.instrument] = totals.get(fill.instrument, Decimal(0)) + (
            fill.side.sign * fill.quantity
        )
    assert {k: v.quantity for k, v in after["positions"].items()} == totals


class TestVenueTablesAfterSigkill:
    def test_sqlite_eight_kills_end_with_store_and_venue_in_agreement(self, tmp_path: Path) -> None:
        after = kill_until_complete(tmp_path, f"sqlite:///{tmp_path / 'killed.db'}", 31)
        assert len(after["runs"]) == KILLS + 1
        assert_store_and_venue_agree(after)

    def test_postgresql_eight_kills_end_with_store_and_venue_in_agreement(
        self, tmp_path: Path, pg_url: str
    ) -> None:
        after = kill_until_complete(tmp_path, pg_url, 47)
        assert len(after["runs"]) == KILLS + 1
        assert_store_and_venue_agree(after)
