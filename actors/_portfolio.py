"""Positions and the portfolio: netting fills per instrument, PnL, cash and fees.

Pure: no trio, no I/O. Every quantity, price and amount is an exact `Decimal`.
"""

# Design notes
# ------------
# * A `Position` keeps a signed quantity and a signed *cost basis* (the entry notional of the
#   open quantity, in price units), not an average price. The average entry price is
#   derived (``cost_basis / quantity``). When a fill reduces a position the released part
#   of the cost basis is computed once and the very same Decimal is subtracted from the
#   cost basis and added to realized PnL, so realized + unrealized PnL always equals the
#   exact cash flows plus the marked value, whatever the order of the fills: the one
#   division (a partial close releases ``cost_basis * closed / |quantity|``) can only move
#   PnL between "realized" and "unrealized", never create or lose any.
# * That division is rounded half-even to `RELEASE_QUANTUM` (1e-12). Left at the context's
#   28 significant digits, its result would make later sums round too (a third of a basis
#   has 28 digits; added to a value of another magnitude it loses the last ones), and the
#   identity above would hold only approximately. With a fixed quantum every other sum
#   and product here is exact for any realistic magnitude (below about 1e16).
# * Netting is average-cost: a fill in the position's direction adds to the cost basis; a
#   fill against it closes at the average price, and whatever exceeds the position opens a
#   new one at the fill price (a flip).
# * PnL is in the instrument's currency with the multiplier applied; fees are kept in the
#   currency they were charged in (a position counts only the fees in its own currency,
#   the portfolio counts all of them per currency). Cash moves with every fill: a buy pays
#   ``price * quantity * multiplier``, a sell receives it, a fee is paid.
# * Totals are per currency. A single-currency total goes through `FxRates` and nothing
#   else: there is no implicit rate anywhere.
# * `Portfolio` is mutable (`attrs.define`): it is the portfolio actor's state and grows
#   with every fill; the execution ids it applied make `apply_fill` idempotent, so a fill
#   redelivered after a restart or replayed from the store is counted once. `copy()` gives
#   an independent portfolio for what-if checks.

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Final

import attrs
from tradewind.actors._errors import DomainError, MissingPrice, UnknownInstrument
from tradewind.actors._values import FxRates, Instrument, Money, Rounding, to_decimal

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tradewind.actors._orders import Fill
    from tradewind.actors._values import DecimalLike

_ZERO = Decimal(0)
#: A partial close releases ``cost_basis * closed / |quantity|`` rounded half-even to this
#: quantum: the one rounding in the module (see the design notes).
RELEASE_QUANTUM: Final = Decimal("1e-12")


@attrs.frozen
class Position:
    """The net position in one instrument, built from its fills.

    Attributes:
        instrument: the instrument's symbol.
        currency: the instrument's currency; PnL and `fees` are in it.
        multiplier: the instrument's contract multiplier.
        quantity: signed quantity: positive long, negative short, zero flat.
        cost_basis: signed entry notional of the open quantity, in price units (without
            the multiplier); zero when flat.
        realized_pnl: PnL locked in by closing fills, multiplier applied.
        fees: fees charged in `currency` on this instrument's fills.
    """

    instrument: str
    currency: str
    multiplier: Decimal
    quantity: Decimal = _ZERO
    cost_basis: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO
    fees: Decimal = _ZERO

    @classmethod
    def flat(cls, instrument: Instrument) -> Position:
        """A flat position in `instrument`."""
        return cls(instrument.symbol, instrument.currency, instrument.multiplier)

    @property
    def is_flat(self) -> bool:
        """True when the quantity is zero."""
        return self.quantity == 0

    @property
    def avg_entry_price(self) -> Decimal | None:
        """The average price the open quantity was entered at (None when flat)."""
        return None if self.quantity == 0 else self.cost_basis / self.quantity

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        """The PnL of the open quantity marked at `mark`, multiplier applied."""
        return (mark * self.quantity - self.cost_basis) * self.multiplier

    def market_value(self, mark: Decimal) -> Decimal:
        """The signed value of the open quantity at `mark`, multiplier applied."""
        return mark * self.quantity * self.multiplier

    def apply(self, fill: Fill) -> Position:
        """The position after `fill` (average-cost netting, see the module notes).

        This is plain arithmetic: idempotency by execution id is `Portfolio`'s job.

        Raises:
            UnknownInstrument: the fill is for another instrument.
        """
        if fill.instrument != self.instrument:
            msg = (
                f"instrument: fill {fill.execution_id} is for {fill.instrument}, "
                f"not {self.instrument}"
            )
            raise UnknownInstrument(msg)
        fee = fill.fee if fill.fee_currency == self.currency else _ZERO
        held = self.quantity
        traded = fill.signed_quantity
        if held == 0 or (held > 0) == (traded > 0):
            return attrs.evolve(
                self,
                quantity=held + traded,
                cost_basis=self.cost_basis + fill.price * traded,
                fees=self.fees + fee,
            )
        closed = min(abs(traded), abs(held))
        if closed == abs(held):
            released = self.cost_basis
        else:
            share = self.cost_basis * closed / abs(held)
            released = share.quantize(RELEASE_QUANTUM, rounding=ROUND_HALF_EVEN)
        direction = 1 if held > 0 else -1
        realized = (fill.price * closed * direction - released) * self.multiplier
        quantity = held + traded
        # What is left after the close: the rest of the old basis, or a new position
        # opened at the fill price by the part of the fill beyond the old quantity.
        cost_basis = (
            self.cost_basis - released if quantity * direction >= 0 else fill.price * quantity
        )
        return attrs.evolve(
            self,
            quantity=quantity,
            cost_basis=cost_basis,
            realized_pnl=self.realized_pnl + realized,
            fees=self.fees + fee,
        )


def _instruments(value: Iterable[Instrument] | Mapping[str, Instrument]) -> dict[str, Instrument]:
    items = value.values() if isinstance(value, Mapping) else value
    table: dict[str, Instrument] = {}
    for instrument in items:
        if instrument.symbol in table:
            msg = f"instruments: {instrument.symbol} is listed twice"
            raise DomainError(msg)
        table[instrument.symbol] = instrument
    return table


def _cash(value: Mapping[str, DecimalLike]) -> dict[str, Decimal]:
    return {currency: to_decimal(amount, f"cash[{currency}]") for currency, amount in value.items()}


@attrs.define
class Portfolio:
    """Positions, marks, cash and fees of one account, updated fill by fill.

    Args:
        instruments: the instruments that may be traded (a mapping by symbol or any
            iterable of `Instrument`).
        cash: starting cash per currency.

    Raises:
        DomainError: an instrument is listed twice or a cash amount is not a number.
    """

    instruments: dict[str, Instrument] = attrs.field(converter=_instruments)
    cash: dict[str, Decimal] = attrs.field(factory=dict, converter=_cash)
    _positions: dict[str, Position] = attrs.field(init=False, factory=dict)
    _marks: dict[str, Decimal] = attrs.field(init=False, factory=dict)
    # The event time of each mark, when the caller gave one (see `book_fill`).
    _mark_ts: dict[str, int] = attrs.field(init=False, factory=dict)
    _fees: dict[str, Decimal] = attrs.field(init=False, factory=dict)
    _execution_ids: set[str] = attrs.field(init=False, factory=set)

    def _instrument(self, symbol: str) -> Instrument:
        try:
            return self.instruments[symbol]
        except KeyError:
            msg = f"instrument: {symbol!r} is not one of the portfolio's instruments"
            raise UnknownInstrument(msg) from None

    def apply_fill(self, fill: Fill) -> bool:
        """Book `fill` once: position, cash and fees.

        Returns:
            True if the fill was booked, False if its execution id was booked before
            (nothing changed).

        Raises:
            UnknownInstrument: the fill's instrument is not in the portfolio; nothing
                changed.
        """
        if fill.execution_id in self._execution_ids:
            return False
        instrument = self._instrument(fill.instrument)
        position = self._positions.get(instrument.symbol) or Position.flat(instrument)
        self._positions[instrument.symbol] = position.apply(fill)
        flow = -fill.signed_quantity * fill.price * instrument.multiplier
        self.cash[instrument.currency] = self.cash.get(instrument.currency, _ZERO) + flow
        self.cash[fill.fee_currency] = self.cash.get(fill.fee_currency, _ZERO) - fill.fee
        self._fees[fill.fee_currency] = self._fees.get(fill.fee_currency, _ZERO) + fill.fee
        self._execution_ids.add(fill.execution_id)
        return True

    def has_fill(self, execution_id: str) -> bool:
        """Whether the fill with `execution_id` was booked."""
        return execution_id in self._execution_ids

    def mark(self, instrument: str, price: DecimalLike, ts: int | None = None) -> None:
        """Record the latest price of `instrument` for unrealized PnL and market value.

        `ts` is the event time of the price (a bar's time for its close), if known: a
        fill made later than it marks the instrument at the fill's price (`book_fill`).

        Raises:
            UnknownInstrument: the instrument is not in the portfolio.
            DomainError: the price is not a positive number.
        """
        self._instrument(instrument)
        value = to_decimal(price, "price")
        if value <= 0:
            msg = f"price: must be > 0, got {value}"
            raise DomainError(msg)
        self._marks[instrument] = value
        if ts is None:
            self._mark_ts.pop(instrument, None)
        else:
            self._mark_ts[instrument] = ts

    def mark_time(self, instrument: str) -> int | None:
        """The event time of the mark of `instrument`, or None (unmarked, or marked
        without a time)."""
        return self._mark_ts.get(instrument)

    @property
    def marks(self) -> Mapping[str, Decimal]:
        """The latest mark per instrument (read-only view)."""
        return dict(self._marks)

    def position(self, instrument: str) -> Position:
        """The position in `instrument` (flat if it never traded).

        Raises:
            UnknownInstrument: the instrument is not in the portfolio.
        """
        found = self._positions.get(instrument)
        return found if found is not None else Position.flat(self._instrument(instrument))

    @property
    def positions(self) -> Mapping[str, Position]:
        """Every position that ever traded, by symbol (flat ones included)."""
        return dict(self._positions)

    @property
    def fees(self) -> Mapping[str, Decimal]:
        """Total fees charged, per fee currency."""
        return dict(self._fees)

    def _mark_of(self, symbol: str) -> Decimal:
        try:
            return self._marks[symbol]
        except KeyError:
            msg = f"no mark for {symbol}: call mark() before valuing an open position"
            raise MissingPrice(msg) from None

    def unrealized_pnl(self, instrument: str) -> Decimal:
        """Unrealized PnL of `instrument` at its mark (zero when flat, even unmarked).

        Raises:
            MissingPrice: the position is open and has never been marked.
        """
        position = self.position(instrument)
        if position.is_flat:
            return _ZERO
        return position.unrealized_pnl(self._mark_of(instrument))

    def _by_currency(self, values: Iterable[tuple[str, Decimal]]) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for currency, value in values:
            totals[currency] = totals.get(currency, _ZERO) + value
        return totals

    def realized_pnl_by_currency(self) -> dict[str, Decimal]:
        """Realized PnL per instrument currency (before fees)."""
        return self._by_currency((p.currency, p.realized_pnl) for p in self._positions.values())

    def unrealized_pnl_by_currency(self) -> dict[str, Decimal]:
        """Unrealized PnL per instrument currency.

        Raises:
            MissingPrice: an open position has never been marked.
        """
        return self._by_currency(
            (p.currency, self.unrealized_pnl(p.instrument)) for p in self._positions.values()
        )

    def pnl_by_currency(self) -> dict[str, Decimal]:
        """Realized + unrealized PnL minus fees, per currency.

        Raises:
            MissingPrice: an open position has never been marked.
        """
        # One pass (risk values this on every bar of an open position); the sums are the
        # same as realized + unrealized - fees per currency, added in that order.
        totals: dict[str, Decimal] = {}
        for position in self._positions.values():
            currency = position.currency
            totals[currency] = totals.get(currency, _ZERO) + position.realized_pnl
        for position in self._positions.values():
            if position.quantity:
                currency = position.currency
                pnl = position.unrealized_pnl(self._mark_of(position.instrument))
                totals[currency] = totals.get(currency, _ZERO) + pnl
        for currency, fee in self._fees.items():
            totals[currency] = totals.get(currency, _ZERO) - fee
        return totals

    def market_value_by_currency(self) -> dict[str, Decimal]:
        """The signed marked value of the open positions, per currency.

        Raises:
            MissingPrice: an open position has never been marked.
        """
        return self._by_currency(
            (p.currency, _ZERO if p.is_flat else p.market_value(self._mark_of(p.instrument)))
            for p in self._positions.values()
        )

    def equity_by_currency(self) -> dict[str, Decimal]:
        """Cash plus the marked value of the open positions, per currency.

        Raises:
            MissingPrice: an open position has never been marked.
        """
        return self._by_currency(
            [*self.cash.items(), *self.market_value_by_currency().items()],
        )

    def total(
        self,
        amounts: Mapping[str, Decimal],
        fx: FxRates,
        currency: str,
        *,
        quantum: DecimalLike = Decimal("0.01"),
        rounding: Rounding = Rounding.NEAREST,
    ) -> Money:
        """The sum of per-currency `amounts` in `currency`, converted through `fx`.

        Each amount is converted by `FxRates.convert` (rounded to `quantum` in the
        direction `rounding`) and the results are added; e.g.
        ``portfolio.total(portfolio.equity_by_currency(), fx, "USD")``.

        Raises:
            CurrencyMismatch: `fx` has no rate for one of the currencies.
        """
        return Money.total(
            (
                fx.convert(Money(amount, code), currency, quantum=quantum, rounding=rounding)
                for code, amount in sorted(amounts.items())
            ),
            currency,
        )

    def copy(self) -> Portfolio:
        """An independent portfolio with the same state."""
        clone = Portfolio(self.instruments, self.cash)
        clone._positions = dict(self._positions)
        clone._marks = dict(self._marks)
        clone._mark_ts = dict(self._mark_ts)
        clone._fees = dict(self._fees)
        clone._execution_ids = set(self._execution_ids)
        return clone


def book_fill(portfolio: Portfolio, fill: Fill) -> bool:
    """Apply `fill` to `portfolio` once (by execution id), marking its instrument at the
    fill's price first when it has no mark yet or its mark is older than the fill (a
    fill is a trade: a market buy at the open of a bar that gapped up is worth what it
    cost, not the previous bar's close). A mark without a time is kept. Returns True
    when the fill was new and booked.

    Raises:
        UnknownInstrument: the portfolio does not hold the fill's instrument.
    """
    symbol = fill.instrument
    if not portfolio.has_fill(fill.execution_id):
        marked_at = portfolio.mark_time(symbol)
        if symbol not in portfolio.marks or (marked_at is not None and fill.ts > marked_at):
            portfolio.mark(symbol, fill.price, fill.ts)
    return portfolio.apply_fill(fill)
