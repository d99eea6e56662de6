"""The paper venue's own tables (migration 0003): exact values, newer copies win, fills are
idempotent on their execution id, a venue change is one unit, a fresh start clears them.
Both backends, through the `store` fixture."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from tradewind.storage import (
    ConflictingWrite,
    PaperVenueFill,
    PaperVenueOrder,
    PaperVenueState,
    StoreCounts,
)

from tests.storage.samples import fill, lifecycle, new_order

if TYPE_CHECKING:
    from tradewind.storage import Store


def venue_copies(*quantities: str) -> list[PaperVenueOrder]:
    """The venue's copy of one order after its submit, ack and a fill per quantity."""
    snapshots = lifecycle(new_order(1, quantity="3.000001"), *quantities)[1:]
    return [
        PaperVenueOrder(order=s, submit_no=1, answer_ts=101, eligible_from=102, trading_day=0)
        for s in snapshots
    ]


async def test_a_venue_state_reads_back_identical(store: Store) -> None:
    accepted, filled = venue_copies("1.000001")
    assert filled.order.last_event is not None
    the_fill = PaperVenueFill(fill=fill("s1-00000001-F1", quantity="1.000001"), fill_no=1)
    async with store.transaction() as tx:
        tx.write_paper_venue([accepted], [], {})
    async with store.transaction() as tx:
        tx.write_paper_venue([filled], [the_fill], {("AAPL", "1m"): 103, ("MSFT", "1m"): 99})
    state = await store.paper_venue()
    assert state == PaperVenueState(
        orders=[filled], fills=[the_fill], cursors={("AAPL", "1m"): 103, ("MSFT", "1m"): 99}
    )
    (copy,) = state.orders
    assert copy.order.filled_quantity == Decimal("1.000001")
    assert str(copy.order.intent.quantity) == "3.000001"
    # the venue's tables are its own: nothing of ours is counted or written
    assert await store.counts() == StoreCounts(0, 0, 0, 0, 0, 0, 0, 0)
    assert await store.fills() == []


async def test_an_older_copy_of_an_order_never_replaces_a_newer_one(store: Store) -> None:
    accepted, filled = venue_copies("1")
    async with store.transaction() as tx:
        tx.write_paper_venue([filled])
    async with store.transaction() as tx:
        tx.write_paper_venue([accepted])
    (copy,) = (await store.paper_venue()).orders
    assert copy == filled


async def test_a_fill_again_is_skipped_and_a_different_one_conflicts(store: Store) -> None:
    first = PaperVenueFill(fill=fill("s1-00000001-F1"), fill_no=1)
    async with store.transaction() as tx:
        tx.write_paper_venue(fills=[first])
    async with store.transaction() as tx:
        tx.write_paper_venue(fills=[first])
    assert (await store.paper_venue()).fills == (first,)
    other = PaperVenueFill(fill=fill("s1-00000001-F1", price="100.26"), fill_no=1)
    with pytest.raises(ConflictingWrite):
        async with store.transaction() as tx:
            tx.write_paper_venue(fills=[other], cursors={("AAPL", "1m"): 5})
    # the failed unit left nothing behind: not its cursor either
    assert await store.paper_venue() == PaperVenueState(fills=[first])


async def test_clearing_empties_every_venue_table(store: Store) -> None:
    (accepted,) = venue_copies()
    async with store.transaction() as tx:
        tx.write_paper_venue(
            [accepted],
            [PaperVenueFill(fill=fill("s1-00000001-F1"), fill_no=1)],
            {("AAPL", "1m"): 7},
        )
    async with store.transaction() as tx:
        tx.clear_paper_venue()
    assert await store.paper_venue() == PaperVenueState()


async def test_fills_written_after_a_clear_in_the_same_unit_are_kept(store: Store) -> None:
    """A unit is applied in order: the clear deletes only what was written before it."""
    first, second = (PaperVenueFill(fill=fill(f"s1-00000001-F{n}"), fill_no=n) for n in (1, 2))
    async with store.transaction() as tx:
        tx.write_paper_venue(fills=[first])
        tx.clear_paper_venue()
        tx.write_paper_venue(fills=[second], cursors={("AAPL", "1m"): 5})
    assert await store.paper_venue() == PaperVenueState(fills=[second], cursors={("AAPL", "1m"): 5})
