"""Mean reversion with limit orders: buy below the band around a rolling mean, sell at the mean.

In a configuration: ``strategy.path = "mean_reversion.py:MeanReversion"``.

Each bar, for each instrument:

* orders that have worked for ``max_age`` bars or more are canceled (the band has moved);
* flat and nothing working: a buy limit at ``mean - band * stdev`` (rounded down to the
  tick), i.e. a z-score of ``-band``;
* long and nothing working: a sell limit at the mean (rounded up to the tick) to take the
  reversion.

Every figure comes from ``ctx.history``, ``ctx.position`` and ``ctx.open_orders``, in
Decimal (the standard deviation by `Decimal.sqrt`, exact to the context's precision), so
the strategy keeps no state and decides the same after a crash.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tradewind.actors import Rounding, Strategy, to_decimal

if TYPE_CHECKING:
    from tradewind.actors import Bar, StrategyContext


class MeanReversion(Strategy):
    """Limit orders at a z-score band around a rolling mean.

    Args:
        window: bars in the rolling mean and standard deviation (>= 2).
        band: the entry distance from the mean, in standard deviations (> 0).
        quantity: the order size, in units of the instrument.
        max_age: bars an order may work before it is canceled (>= 1).
    """

    def __init__(
        self,
        window: int = 20,
        band: int | str = 2,
        quantity: int | str = 1,
        max_age: int = 5,
    ) -> None:
        if window < 2 or max_age < 1:
            msg = f"window must be >= 2 and max_age >= 1, got window={window}, max_age={max_age}"
            raise ValueError(msg)
        self.window = window
        self.band = to_decimal(band, "band")
        self.quantity = to_decimal(quantity, "quantity")
        if self.band <= 0 or self.quantity <= 0:
            msg = f"band and quantity must be > 0, got band={band}, quantity={quantity}"
            raise ValueError(msg)
        self.max_age = max_age
        self.lookback = max(window, max_age + 1)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        """Cancel stale orders, then place the entry or the exit."""
        symbol = bar.instrument
        recent = ctx.history(symbol, self.max_age + 1)
        working = ctx.open_orders(symbol)
        if len(recent) > self.max_age:
            too_old = recent[0].ts
            for order in working:
                if order.created_ts <= too_old:
                    ctx.cancel(order.client_order_id, reason="stale")
            working = [o for o in working if o.created_ts > too_old]
        closes = [b.close for b in ctx.history(symbol, self.window)]
        if len(closes) < self.window or working:
            return
        mean = sum(closes, Decimal(0)) / self.window
        variance = sum(((c - mean) ** 2 for c in closes), Decimal(0)) / self.window
        stdev = variance.sqrt()
        instrument = ctx.instrument(symbol)
        held = ctx.position(symbol).quantity
        if held == 0 and stdev > 0:
            entry = instrument.round_price(mean - self.band * stdev, Rounding.DOWN)
            if entry > 0:
                ctx.buy(symbol, self.quantity, limit=entry, tag="entry")
        elif held > 0:
            ctx.sell(symbol, held, limit=instrument.round_price(mean, Rounding.UP), tag="exit")
