"""The durable paper venue: its state round-trips through its own tables, every change is
written through before the answer, and a store outage takes the venue down, not wrong.

Real SQLite and real PostgreSQL (a fault proxy in front of it for the outage); no mocks.
"""

from __future__ import annotations

import urllib.parse
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import trio
from tradewind.actors import (
    Bar,
    BrokerDisconnected,
    DomainError,
    Instrument,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    PaperConfig,
    PaperFaults,
    Side,
    TimeInForce,
)
from tradewind.actors._paper_venue import DurablePaperBroker
from tradewind.actors._settings import config_hash, load_settings
from tradewind.runtime import ConfigError
from tradewind.runtime._aio import open_aio_loop
from tradewind.storage import (
    PaperVenueFill,
    PaperVenueOrder,
    PaperVenueState,
    open_store,
)

from tests.faultproxy import open_fault_proxy
from tests.system.conftest import write_config

if TYPE_CHECKING:
    from pathlib import Path

    from tradewind.storage import Store

AAPL = Instrument("AAPL", "USD", Decimal("0.01"))
T0 = 1_700_000_000 * 10**9
MIN = 60 * 10**9
DAY = 86_400 * 10**9
# At most 100 of a 1000-volume bar fills per bar: partial fills.
CONFIG = PaperConfig([AAPL], max_volume_fraction="0.1", timeframe="1m", fee_bps="1")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/venue.db"
    url: str = request.getfixturevalue("pg_url")
    return url


def bar(ts: int, low: str = "99.00", high: str = "101.00", timeframe: str = "1m") -> Bar:
    return Bar("AAPL", timeframe, ts, "100.00", high, low, "100.00", "1000")


def quiet(ts: int) -> Bar:
    """A bar no resting order of the scenario trades on (above every limit)."""
    return Bar("AAPL", "1m", ts, "105.00", "105.00", "105.00", "105.00", "1000")


def submitted(
    seq: int,
    ts: int,
    *,
    quantity: int = 10,
    limit: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "AAPL",
) -> Order:
    coid = f"s1-{seq:08d}"
    intent = OrderIntent(
        strategy_id="s1",
        instrument=symbol,
        side=Side.BUY,
        quantity=quantity,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        limit_price=limit,
        time_in_force=tif,
    )
    return Order.create(coid, intent, ts).apply(OrderSubmitted(client_order_id=coid, ts=ts))


async def opened(store: Store, **kwargs: object) -> DurablePaperBroker:
    venue = await DurablePaperBroker.open(store, CONFIG, **kwargs)  # type: ignore[arg-type]
    await venue.connect()
    return venue


async def trade_a_scenario(venue: DurablePaperBroker) -> None:
    """Open, partially filled, canceled, expired, rejected and IOC-canceled orders."""
    (ack,) = await venue.submit(submitted(1, T0, quantity=250, limit="99.50"))
    assert isinstance(ack, OrderAccepted)
    await venue.submit(submitted(2, T0, limit="90.00"))
    await venue.submit(submitted(3, T0, limit="50.00", tif=TimeInForce.DAY))
    (reject,) = await venue.submit(submitted(4, T0, symbol="XYZ"))
    assert isinstance(reject, OrderRejected)
    first = await venue.on_bar(bar(T0 + MIN))
    assert [e.fill.execution_id for e in first if isinstance(e, OrderFilled)] == ["s1-00000001-F1"]
    await venue.on_bar(bar(T0 + 2 * MIN))
    (canceled,) = await venue.cancel("s1-00000002", T0 + 2 * MIN)
    assert isinstance(canceled, OrderCanceled)
    await venue.submit(submitted(5, T0 + 2 * MIN, limit="80.00", tif=TimeInForce.IOC))
    events = await venue.on_bar(quiet(T0 + 3 * MIN))
    assert [type(e) for e in events] == [OrderCanceled]  # the IOC found nothing
    events = await venue.on_bar(quiet(T0 + DAY + MIN))
    assert [type(e) for e in events] == [OrderExpired]  # the DAY order, a day later


ALL = [f"s1-{n:08d}" for n in range(1, 6)]


class TestRoundTrip:
    async def test_a_reloaded_venue_answers_exactly_as_the_one_that_wrote(
        self, store_url: str
    ) -> None:
        async with open_store(store_url) as store, open_store(store_url) as other:
            venue = await opened(store)
            await trade_a_scenario(venue)
            reloaded = await opened(other)
            assert await reloaded.open_orders() == await venue.open_orders()
            assert await reloaded.lookup_orders(ALL) == await venue.lookup_orders(ALL)
            assert await reloaded.fills_since(0) == await venue.fills_since(0)
            (still,) = await reloaded.open_orders()
            assert (still.client_order_id, still.status) == (
                "s1-00000001",
                OrderStatus.PARTIALLY_FILLED,
            )
            assert still.filled_quantity == Decimal(200)
            statuses = {o.client_order_id: o.status for o in await reloaded.lookup_orders(ALL)}
            assert statuses == {
                "s1-00000001": OrderStatus.PARTIALLY_FILLED,
                "s1-00000002": OrderStatus.CANCELED,
                "s1-00000003": OrderStatus.EXPIRED,
                "s1-00000004": OrderStatus.REJECTED,
                "s1-00000005": OrderStatus.CANCELED,
            }
            kept = ("submits", "accepted", "rejected", "fills", "canceled", "expired", "working")
            before, after = venue.statistics(), reloaded.statistics()
            assert [getattr(after, k) for k in kept] == [getattr(before, k) for k in kept]
            assert (after.submits, after.accepted, after.working) == (5, 4, 1)

    async def test_the_reloaded_venue_continues_execution_ids_and_broker_order_ids(
        self, store_url: str
    ) -> None:
        async with open_store(store_url) as store, open_store(store_url) as other:
            venue = await opened(store)
            await trade_a_scenario(venue)
            reloaded = await opened(other)
            # a bar at or before the cursor is not traded again
            assert await reloaded.on_bar(bar(T0 + 2 * MIN)) == ()
            (fill,) = await reloaded.on_bar(bar(T0 + DAY + 2 * MIN))
            assert isinstance(fill, OrderFilled)
            assert fill.fill.execution_id == "s1-00000001-F3"
            assert fill.fill.quantity == Decimal(50)
            assert fill.fill.fee == Decimal("0.4975")  # 1 bp of 50 x 99.50, exact
            (ack,) = await reloaded.submit(submitted(6, T0 + DAY + 2 * MIN))
            assert isinstance(ack, OrderAccepted)
            assert ack.broker_order_id == "PAPER-00000005"
            # a submit repeated after the reload gets the first answer, and nothing new
            (again,) = await reloaded.submit(submitted(1, T0, quantity=250, limit="99.50"))
            assert again == OrderAccepted(
                client_order_id="s1-00000001", ts=T0, broker_order_id="PAPER-00000001"
            )
            assert reloaded.statistics().submits == 6

    async def test_a_replay_from_its_first_bar_starts_an_empty_venue(self, store_url: str) -> None:
        async with open_store(store_url) as store:
            venue = await opened(store)
            await trade_a_scenario(venue)
            fresh = await opened(store, fresh=True)
            assert await fresh.lookup_orders(ALL) == ()
            assert await store.paper_venue() == PaperVenueState()
            (ack,) = await fresh.submit(submitted(1, T0, quantity=250, limit="99.50"))
            assert isinstance(ack, OrderAccepted)
            assert ack.broker_order_id == "PAPER-00000001"


async def stored(url: str) -> PaperVenueState:
    async with open_store(url) as handle:
        return await handle.paper_venue()


def orders_of(state: PaperVenueState) -> dict[str, PaperVenueOrder]:
    return {o.order.client_order_id: o for o in state.orders}


class TestWriteThrough:
    async def test_each_change_is_in_the_tables_when_the_call_returns(self, store_url: str) -> None:
        async with open_store(store_url) as store:
            venue = await opened(store)
            assert await stored(store_url) == PaperVenueState()
            order = submitted(1, T0, quantity=250, limit="99.50")
            await venue.submit(order)
            (copy,) = (await stored(store_url)).orders
            assert copy == PaperVenueOrder(
                order=(await venue.lookup_orders([order.client_order_id]))[0],
                submit_no=1,
                answer_ts=T0,
                eligible_from=T0 + 1,
                trading_day=CONFIG.day_of(T0),
            )
            assert copy.order.status is OrderStatus.ACCEPTED

            (filled,) = await venue.on_bar(bar(T0 + MIN))
            assert isinstance(filled, OrderFilled)
            state = await stored(store_url)
            assert state.fills == (PaperVenueFill(fill=filled.fill, fill_no=1),)
            assert state.cursors == {("AAPL", "1m"): T0 + MIN}
            assert orders_of(state)["s1-00000001"].order.filled_quantity == Decimal(100)

            # a bar that changes nothing is not written (see the module notes)
            assert await venue.on_bar(quiet(T0 + 2 * MIN)) == ()
            assert (await stored(store_url)).cursors == {("AAPL", "1m"): T0 + MIN}
            # nor is a bar of another timeframe, nor a cancel the venue refuses
            assert await venue.on_bar(bar(T0 + 3 * MIN, timeframe="5m")) == ()
            (refused,) = await venue.cancel("s1-00000009", T0 + 3 * MIN)
            assert isinstance(refused, OrderCancelRejected)
            assert venue.writes == 2

            # a cancel that waits for the bar of its time changes nothing yet (module
            # notes of the paper broker); the bar that settles it is written
            assert await venue.cancel("s1-00000001", T0 + 3 * MIN) == ()
            assert venue.writes == 2
            (canceled,) = await venue.on_bar(quiet(T0 + 3 * MIN))
            assert isinstance(canceled, OrderCanceled)
            copy = orders_of(await stored(store_url))["s1-00000001"]
            assert copy.order.status is OrderStatus.CANCELED
            assert (copy.eligible_from, copy.trading_day) == (None, None)
            assert venue.writes == 3

    async def test_a_bar_traded_while_disconnected_is_stored_before_the_error(
        self, store_url: str
    ) -> None:
        async with open_store(store_url) as store:
            venue = await opened(store)
            await venue.submit(submitted(1, T0))
            await venue.disconnect()
            with pytest.raises(BrokerDisconnected, match="not connected"):
                await venue.on_bar(bar(T0 + MIN))
            state = await stored(store_url)
            assert [f.fill.execution_id for f in state.fills] == ["s1-00000001-F1"]
            assert orders_of(state)["s1-00000001"].order.status is OrderStatus.FILLED
            # a disconnected venue takes no submit, and stores nothing for it
            with pytest.raises(BrokerDisconnected):
                await venue.submit(submitted(2, T0 + MIN))
            assert len((await stored(store_url)).orders) == 1

    async def test_an_injected_drop_still_stores_what_the_bar_did(self, tmp_path: object) -> None:
        url = f"sqlite:///{tmp_path}/drop.db"
        faults = PaperFaults(disconnect_at=(T0 + MIN,), failed_reconnects=1)
        async with open_store(url) as store:
            venue = await opened(store, faults=faults)
            await venue.submit(submitted(1, T0))
            with pytest.raises(BrokerDisconnected, match="fault injection"):
                await venue.on_bar(bar(T0 + MIN))
            assert len((await stored(url)).fills) == 1
            with pytest.raises(BrokerDisconnected, match="refused"):
                await venue.connect()
            await venue.connect()
            (fill,) = await venue.fills_since(0)
            assert fill.execution_id == "s1-00000001-F1"


class TestRefusals:
    async def test_held_acknowledgements_are_refused(self, tmp_path: object) -> None:
        async with open_store(f"sqlite:///{tmp_path}/r.db") as store:
            with pytest.raises(DomainError, match="ack_delay_bars"):
                await DurablePaperBroker.open(store, CONFIG, PaperFaults(ack_delay_bars=1))

    async def test_a_working_order_stored_without_its_eligibility_is_refused(
        self, tmp_path: object
    ) -> None:
        url = f"sqlite:///{tmp_path}/corrupt.db"
        async with open_store(url) as store:
            venue = await opened(store)
            await venue.submit(submitted(1, T0, limit="1.00"))
            (copy,) = (await store.paper_venue()).orders
            async with store.transaction() as tx:
                tx.clear_paper_venue()
                tx.write_paper_venue([PaperVenueOrder(order=copy.order, submit_no=1, answer_ts=T0)])
            with pytest.raises(DomainError, match="without its eligibility"):
                await DurablePaperBroker.open(store, CONFIG)

    async def test_loading_into_an_engine_that_has_traded_is_refused(
        self, tmp_path: object
    ) -> None:
        async with open_store(f"sqlite:///{tmp_path}/twice.db") as store:
            venue = await opened(store)
            await venue.submit(submitted(1, T0))
            state = await store.paper_venue()
            records = [venue.exchange.record(o.order.client_order_id) for o in state.orders]
            with pytest.raises(DomainError, match="fresh engine"):
                venue.exchange.load(records, [f.fill for f in state.fills], state.cursors)

    def test_records_validate_their_numbers(self) -> None:
        with pytest.raises(ValueError, match="submit_no: must be an int >= 1"):
            PaperVenueOrder(order=submitted(1, T0), submit_no=0, answer_ts=T0)
        with pytest.raises(TypeError):
            PaperVenueFill(fill="F1", fill_no=1)  # type: ignore[arg-type]


def via(url: str, host_port: str) -> str:
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host_port}" if userinfo else host_port
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class TestStoreOutage:
    async def test_a_failed_write_takes_the_venue_down_until_its_tables_can_be_read(
        self, pg_url: str
    ) -> None:
        target = urllib.parse.urlsplit(pg_url)
        async with (
            open_aio_loop(),
            open_fault_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
            open_store(
                via(pg_url, proxy.url_host), pool_size=1, connect_timeout=2, acquire_timeout=2
            ) as store,
        ):
            venue = await opened(store)
            await venue.submit(submitted(1, T0, limit="99.50"))
            proxy.cut()
            # the venue's change cannot be stored: the call fails as a lost connection
            with pytest.raises(BrokerDisconnected, match="could not be stored"):
                await venue.submit(submitted(2, T0))
            assert (venue.connected, venue.stale) == (False, True)
            # while the store is down the venue is down: no reconnect, no trading
            with pytest.raises(BrokerDisconnected, match="cannot be read"):
                await venue.connect()
            with pytest.raises(BrokerDisconnected, match="cannot be read"):
                await venue.on_bar(bar(T0 + MIN))
            proxy.restore()
            await venue.connect()
            assert (venue.connected, venue.stale, venue.reloads) == (True, False, 1)
            # the unstored submit never happened; the stored order is there, and the bar
            # the venue could not trade while it was down is traded now
            (working,) = await venue.open_orders()
            assert working.client_order_id == "s1-00000001"
            assert await venue.lookup_orders(["s1-00000002"]) == ()
            (ack,) = await venue.submit(submitted(2, T0))
            assert isinstance(ack, OrderAccepted)
            assert ack.broker_order_id == "PAPER-00000002"
            events = await venue.on_bar(bar(T0 + MIN))
            assert [e.fill.execution_id for e in events if isinstance(e, OrderFilled)] == [
                "s1-00000001-F1",
                "s1-00000002-F1",
            ]

    async def test_a_write_cancelled_mid_commit_is_settled_by_a_reload(
        self, tmp_path: object
    ) -> None:
        url = f"sqlite:///{tmp_path}/cancel.db"
        async with open_store(url) as store:
            venue = await opened(store)
            await venue.subscribe(["AAPL"])
            with trio.CancelScope() as scope:
                scope.cancel()
                await venue.submit(submitted(1, T0))
            assert scope.cancelled_caught
            assert (venue.stale, venue.connected) == (True, True)
            # the redelivered submit is answered from the tables after the reload
            (ack,) = await venue.submit(submitted(1, T0))
            assert isinstance(ack, OrderAccepted)
            assert venue.reloads == 1
            assert venue.subscriptions == {"AAPL"}  # the session went on through the reload
            assert [o.order.client_order_id for o in (await store.paper_venue()).orders] == [
                "s1-00000001"
            ]


class TestTheStateSetting:
    def test_the_default_is_the_journal(self, tmp_path: Path) -> None:
        settings = load_settings(write_config(tmp_path), env={})
        assert settings.broker.state == "journal"

    def test_tables_is_taken_from_the_file_or_the_environment(self, tmp_path: Path) -> None:
        path = write_config(tmp_path, extra="[broker]\nstate = 'tables'\n")
        assert load_settings(path, env={}).broker.state == "tables"
        env = {"TRADEWIND_BROKER__STATE": "tables"}
        assert load_settings(write_config(tmp_path), env=env).broker.state == "tables"

    def test_another_value_is_refused_naming_the_path_and_the_allowed_values(
        self, tmp_path: Path
    ) -> None:
        path = write_config(tmp_path, extra="[broker]\nstate = 'disk'\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        expected = (
            "broker.state (TRADEWIND_BROKER__STATE): expected one of 'journal', 'tables', "
            "got 'disk'"
        )
        assert caught.value.problems == (expected,)

    def test_the_setting_is_part_of_the_configuration_hash(self, tmp_path: Path) -> None:
        journal = load_settings(write_config(tmp_path), env={})
        tables = load_settings(write_config(tmp_path, extra="[broker]\nstate = 'tables'\n"), env={})
        assert config_hash(journal) != config_hash(tables)
