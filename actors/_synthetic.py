"""Synthetic market data: a seeded random walk of valid bars on each instrument's tick.

Pure: no trio, no I/O. The same arguments always give the same bars.
"""

# Design notes
# ------------
# * Prices are walked in whole ticks (ints) and only turned into `Decimal` at the end,
#   as ``ticks * tick_size``: every price is exactly on the grid, with no rounding step
#   that could disagree with `Instrument.is_on_tick`. The random numbers themselves are
#   floats (that is what `random.Random` draws); they only ever choose an int number of
#   ticks, never a price.
# * Volatility regimes: each instrument is in a calm, normal or wild regime, switching
#   with a small probability per bar, so a strategy sees quiet stretches and bursts.
# * Gaps: now and then an instrument skips a run of bars (a halt, a quiet market), and
#   the first bar after a gap opens away from the last close. Series stay strictly
#   increasing in time, as the feed's sequencer requires.
# * One `random.Random(seed)` drives everything, and instruments are visited in the
#   order given at every step, so adding an instrument changes the other series; a
#   caller who wants independent series gives each its own generator.

from __future__ import annotations

import random
import re
from decimal import Decimal
from typing import TYPE_CHECKING

from tradewind.actors._errors import InvalidMarketData
from tradewind.actors._marketdata import Bar

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from tradewind.actors._values import Instrument

_UNIT_NS = {
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
}
_TIMEFRAME = re.compile(r"([1-9][0-9]*)([smhd])")

#: Per-bar standard deviation of the walk, in ticks, for the calm / normal / wild regimes.
REGIME_SIGMAS = (2.0, 6.0, 18.0)


def timeframe_ns(timeframe: str) -> int:
    """The length of a timeframe such as ``"1m"``, ``"5m"``, ``"1h"``, ``"1d"`` in ns.

    Raises:
        InvalidMarketData: not a count and one of the units s, m, h, d.
    """
    match = _TIMEFRAME.fullmatch(timeframe)
    if match is None:
        raise InvalidMarketData(
            "timeframe", timeframe, "must be a count and a unit s, m, h or d, such as '1m'"
        )
    return int(match.group(1)) * _UNIT_NS[match.group(2)]


def _start_ticks(instrument: Instrument, start_price: Decimal) -> int:
    ticks = int(start_price / instrument.tick_size)
    return max(ticks, 1)


def synthetic_bars(  # noqa: PLR0917 -- the generator's knobs, all with defaults
    instruments: Sequence[Instrument],
    seed: int,
    start_ts: int,
    timeframe: str = "1m",
    count: int = 1_000,
    start_price: Decimal = Decimal(100),
    gap_probability: float = 0.002,
    max_gap_bars: int = 30,
    regime_switch_probability: float = 0.01,
) -> Iterator[Bar]:
    """Generate `count` time steps of bars for every instrument, in time order.

    Each step yields one bar per instrument (in the order given) unless that instrument
    is in a gap. Prices walk in whole ticks from `start_price`, never below one tick; each
    bar opens at the previous close (or away from it after a gap), and its high and low
    bound four intra-bar steps, so every bar is valid. Volume is a whole number of units.

    Args:
        instruments: the instruments; prices are on each one's tick.
        seed: seeds the one random generator; the same seed gives the same bars.
        start_ts: the first step's time, ns since the epoch.
        timeframe: the bar length (``"1m"``); steps are this far apart.
        count: how many time steps.
        start_price: each instrument's first open (rounded down to its tick, at least
            one tick).
        gap_probability: per instrument and step, the chance a gap starts.
        max_gap_bars: a gap skips 1 to this many steps.
        regime_switch_probability: per instrument and step, the chance the volatility
            regime changes.

    Yields:
        Valid bars, ordered by ``ts`` and then by the order of `instruments`.

    Raises:
        InvalidMarketData: the timeframe is malformed.
        ValueError: `count` is negative or there are no instruments.
    """
    step_ns = timeframe_ns(timeframe)
    if count < 0:
        msg = f"count: must be >= 0, got {count}"
        raise ValueError(msg)
    if not instruments:
        msg = "instruments: at least one is needed"
        raise ValueError(msg)
    rng = random.Random(seed)  # noqa: S311 -- market simulation, not cryptography
    last = [_start_ticks(i, start_price) for i in instruments]
    regime = [1] * len(instruments)
    gap_left = [0] * len(instruments)
    gapped = [False] * len(instruments)
    for step in range(count):
        ts = start_ts + step * step_ns
        for index, instrument in enumerate(instruments):
            if rng.random() < regime_switch_probability:
                regime[index] = rng.randrange(len(REGIME_SIGMAS))
            if gap_left[index] > 0:
                gap_left[index] -= 1
                continue
            if rng.random() < gap_probability:
                gap_left[index] = rng.randint(1, max_gap_bars) - 1
                gapped[index] = True
                continue
            sigma = REGIME_SIGMAS[regime[index]]
            open_ticks = last[index]
            if gapped[index]:
                open_ticks = max(1, open_ticks + round(rng.gauss(0.0, sigma * 5)))
                gapped[index] = False
            path = [open_ticks]
            for _ in range(4):
                path.append(max(1, path[-1] + round(rng.gauss(0.0, sigma / 2))))
            close_ticks = path[-1]
            last[index] = close_ticks
            tick = instrument.tick_size
            volume = Decimal(rng.randint(1, 1_000)) * instrument.lot_size
            yield Bar(
                instrument.symbol,
                timeframe,
                ts,
                Decimal(open_ticks) * tick,
                Decimal(max(path)) * tick,
                Decimal(min(path)) * tick,
                Decimal(close_ticks) * tick,
                volume,
            )
