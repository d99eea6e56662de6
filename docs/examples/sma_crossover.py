"""SMA crossover: long (or short) while the fast moving average is above (below) the slow one.

In a configuration next to this file it is
``strategy.path = "sma_crossover.py:SmaCrossover"``.

Every decision is computed from ``ctx.history`` and ``ctx.position``, in Decimal, so the
strategy keeps no state of its own: after a crash the host rebuilds nothing and the next
decision is the one a crash-free run makes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tradewind.actors import Strategy, to_decimal

if TYPE_CHECKING:
    from tradewind.actors import Bar, StrategyContext


class SmaCrossover(Strategy):
    """Go long when SMA(fast) > SMA(slow), flat (or short) when it is below.

    Args:
        fast: bars in the fast average (>= 1).
        slow: bars in the slow average (> fast).
        quantity: the position size, in units of the instrument.
        allow_short: hold ``-quantity`` while the fast average is below the slow one,
            instead of staying flat.
        symbols: the instruments to trade; all that have bars if empty.
    """

    def __init__(
        self,
        fast: int = 10,
        slow: int = 30,
        quantity: int | str = 1,
        allow_short: bool = False,
        symbols: tuple[str, ...] | list[str] = (),
    ) -> None:
        if not 1 <= fast < slow:
            msg = f"fast and slow must satisfy 1 <= fast < slow, got fast={fast}, slow={slow}"
            raise ValueError(msg)
        self.fast = fast
        self.slow = slow
        self.quantity = to_decimal(quantity, "quantity")
        if self.quantity <= 0:
            msg = f"quantity must be > 0, got {quantity}"
            raise ValueError(msg)
        self.allow_short = allow_short
        self.symbols = frozenset(symbols)
        self.lookback = slow

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        """Trade toward the target position the two averages give."""
        symbol = bar.instrument
        if self.symbols and symbol not in self.symbols:
            return
        closes = [b.close for b in ctx.history(symbol, self.slow)]
        if len(closes) < self.slow or ctx.open_orders(symbol):
            return
        fast = sum(closes[-self.fast :], Decimal(0)) / self.fast
        slow = sum(closes, Decimal(0)) / self.slow
        if fast > slow:
            target = self.quantity
        elif fast < slow:
            target = -self.quantity if self.allow_short else Decimal(0)
        else:
            return
        held = ctx.position(symbol).quantity
        if target > held:
            ctx.buy(symbol, target - held, tag="sma")
        elif target < held:
            ctx.sell(symbol, held - target, tag="sma")
