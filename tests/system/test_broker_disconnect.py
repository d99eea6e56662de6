"""Broker disconnection mid-replay: nothing lost, nothing doubled, and the final state of
an uninterrupted run, apart from the intents denied while the broker was down.

The replay runs on the `tradewind.testing` harness, which paces its steps on trio time
(one step of bars per virtual minute, the bars' own spacing) so that the order actor's
reconnect timer fires between bars, deterministically under the virtual clock. The
broker drops the connection at seeded random bars and refuses a seeded number of
reconnects each time, so outages last from part of a step to a few steps; the venue
trades on meanwhile. A scripted strategy submits the same intents whatever happened
(they depend on the bar alone), each tagged: a second, uninterrupted run that skips the
tags the first run had denied must then end in exactly the same orders, fills and
positions.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from tradewind.actors import (
    PaperBroker,
    PaperFaults,
    Strategy,
    TimeInForce,
)
from tradewind.actors._risk import DenyReason

from tests.system.conftest import synthetic
from tradewind.testing import open_harness

if TYPE_CHECKING:
    from tradewind.actors import Bar, Order, StrategyContext
    from tradewind.actors._messages import IntentDenied
    from tradewind.actors._settings import Settings

STEPS = 80
STEP_NS = 60 * 10**9
CENT = Decimal("0.01")


class Scripted(Strategy):
    """Submits intents that depend on the bar alone (never on fills or positions):
    market orders, resting GTC limits and DAY limits, each tagged with its origin.

    Args:
        skip: tags not to submit (the intents another run had denied).
        submitted: where each submitted tag is noted.
        denied: where each denial is noted.
    """

    def __init__(
        self, skip: frozenset[str], submitted: list[str], denied: list[IntentDenied]
    ) -> None:
        self.skip = skip
        self.submitted = submitted
        self.denied = denied

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        step = (bar.ts // STEP_NS) % 7
        close = bar.close
        plan: list[tuple[str, object]] = []
        if step in {0, 3}:
            plan.append(("market-buy", lambda tag: ctx.buy(bar.instrument, 2, tag=tag)))
        if step == 5:
            plan.append(("market-sell", lambda tag: ctx.sell(bar.instrument, 3, tag=tag)))
        if step in {1, 4}:
            below = (close * Decimal("0.999")).quantize(CENT)
            plan.append(
                (
                    "gtc-buy",
                    lambda tag: ctx.buy(
                        bar.instrument, 1, below, time_in_force=TimeInForce.GTC, tag=tag
                    ),
                )
            )
        if step == 2:
            above = (close * Decimal("1.001")).quantize(CENT)
            plan.append(("day-sell", lambda tag: ctx.sell(bar.instrument, 1, above, tag=tag)))
        for kind, act in plan:
            tag = f"{bar.instrument}:{bar.ts}:{kind}"
            if tag in self.skip:
                continue
            self.submitted.append(tag)
            act(tag)  # type: ignore[operator]

    def on_denied(self, denial: IntentDenied, ctx: StrategyContext) -> None:
        self.denied.append(denial)


async def replay(settings: Settings, faults: PaperFaults, skip: frozenset[str] = frozenset()):
    submitted: list[str] = []
    denied: list[IntentDenied] = []
    params = {"skip": skip, "submitted": submitted, "denied": denied}
    async with open_harness(
        Scripted, params=params, settings=settings, faults=[faults], run_id="disconnect"
    ) as h:
        await h.run()
    broker = h.system.broker
    assert isinstance(broker, PaperBroker)
    return h.system, broker, submitted, denied


def orders_of(system) -> dict[str, Order]:
    book = system.orders
    return {**book.finished, **book.working}


@pytest.fixture
def settings(make_settings):
    return make_settings(data=synthetic(count=STEPS, seed=5, interval=60.0))


class TestBrokerDisconnect:
    @pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
    async def test_a_disconnect_loses_and_doubles_nothing_and_ends_as_an_uninterrupted_run(
        self, settings, seed, autojump_clock
    ):
        rng = random.Random(seed)
        start = settings.data.start_ts
        points = sorted(rng.sample(range(4, STEPS - 12, 4), 3))  # outages never overlap
        faults = PaperFaults(
            disconnect_at=[start + p * STEP_NS for p in points],
            failed_reconnects=rng.randint(3, 7),  # outages of a part of a step to two steps
        )
        system, broker, submitted, denied = await replay(settings, faults)

        # the outages happened, were reconciled, and intents were denied meanwhile
        stats = broker.statistics()
        assert stats.disconnects == len(points) + 1  # and the session closed at the end
        assert system.orders.statistics().disconnects == len(points)
        assert system.orders.connected
        assert system.orders.down_since is None
        assert system.orders.statistics().reconnects == len(points)
        assert system.orders.statistics().reconciled_events > 0  # the venue traded on
        assert denied, "no intent fell into an outage"
        assert {d.reason for d in denied} == {DenyReason.BROKER_DISCONNECTED}
        assert all(d.detail for d in denied)

        # every intent reached the broker exactly once, or was denied with a reason
        orders = orders_of(system)
        placed = [o.intent.tag for o in orders.values()]
        denied_tags = [d.intent.tag for d in denied]
        assert len(placed) == len(set(placed))
        assert len(denied_tags) == len(set(denied_tags))
        assert sorted(placed + denied_tags) == sorted(submitted)
        broker.exchange.connect()  # the session was closed when the system stopped
        at_venue = broker.exchange.lookup_orders(sorted(orders))
        assert len(at_venue) == len(orders) == stats.submits

        # the final state equals an uninterrupted run without the denied intents
        clean, clean_broker, clean_submitted, clean_denied = await replay(
            settings, PaperFaults(), skip=frozenset(denied_tags)
        )
        assert clean_denied == []
        assert sorted(clean_submitted) == sorted(placed)
        assert orders_of(clean) == orders
        assert system.orders.execution_ids == clean.orders.execution_ids
        assert dict(system.portfolio.positions) == dict(clean.portfolio.positions)
        assert clean_broker.statistics().fills == stats.fills
        assert system.risk.state is clean.risk.state
