"""Trading values: sides, rounding directions, exact decimals, instruments, money, event time.

Pure: no trio, no I/O. Every price, quantity and amount is a `decimal.Decimal`.
"""

# Design notes
# ------------
# * One gate for numbers. `to_decimal` is the only way a price, quantity or amount enters a
#   value: Decimal, int and strings parse exactly; float is refused outright (its binary
#   value is already wrong: Decimal(0.1) is 0.1000000000000000055...), bool is refused
#   because it is an int by accident, not a number anyone meant, and NaN/infinity are
#   refused because no price or amount is ever infinite. Strings are matched against a
#   plain decimal grammar first, so "NaN", "inf", "1_000" and "0x10" are refused with the
#   field name rather than half-accepted by `Decimal(str)`.
# * attrs converters receive only the value, and mypy's attrs plugin only understands named
#   functions as converters, so each Decimal field has a one-line named converter that
#   calls `to_decimal` with the field's name. Verbose, but every error names its field and
#   every `__init__` stays precisely typed.
# * Quantization is exact. Rounding to a tick or a lot is done with integer arithmetic on
#   `divmod` in a private context that traps `Inexact`, so a result is always an exact
#   multiple of the step with the step's exponent, never an artefact of the default
#   28-digit context. The direction is always named (`Rounding`); `DOWN`/`UP` mean toward
#   minus/plus infinity (floor/ceiling), which for the positive prices and quantities of
#   trading is "smaller"/"larger".
# * Money conversion computes the whole chain (direct, inverse or cross) in a wide context
#   and rounds once, at the end, to the quantum and direction the caller states; an
#   inverse rate is never materialised as a rounded 1/rate first.
# * Unknown currency pairs raise `CurrencyMismatch`: the error already means "two
#   currencies met without an explicit rate", which is exactly the case.

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import re
from decimal import Decimal
from typing import TYPE_CHECKING, TypeAlias

import attrs
from tradewind.actors._errors import CurrencyMismatch, DomainError, FloatRefused

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: What `to_decimal` accepts (a float is refused at run time even if a caller passes one).
DecimalLike: TypeAlias = Decimal | int | str

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{1,11}")

# Exact arithmetic: any result that would need rounding raises instead.
_EXACT = decimal.Context(
    prec=80,
    rounding=decimal.ROUND_HALF_EVEN,
    Emin=-999999,
    Emax=999999,
    traps=[
        decimal.Inexact,
        decimal.InvalidOperation,
        decimal.DivisionByZero,
        decimal.Overflow,
    ],
)
# Wide context for FX chains: the only rounding that matters is the final quantize.
_WIDE_PREC = 60


class Side(enum.Enum):
    """The side of an order or a fill."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the sign a fill's quantity adds to a position."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        """The other side (the side that closes a position opened on this one)."""
        return Side.SELL if self is Side.BUY else Side.BUY


class Rounding(enum.Enum):
    """A named rounding direction for quantization.

    `DOWN` rounds toward minus infinity (floor), `UP` toward plus infinity (ceiling),
    `NEAREST` to the nearest step with ties to the even step (banker's rounding).
    """

    DOWN = "DOWN"
    UP = "UP"
    NEAREST = "NEAREST"

    @property
    def decimal_mode(self) -> str:
        """The `decimal` module rounding constant for this direction."""
        return _DECIMAL_MODES[self]


_DECIMAL_MODES = {
    Rounding.DOWN: decimal.ROUND_FLOOR,
    Rounding.UP: decimal.ROUND_CEILING,
    Rounding.NEAREST: decimal.ROUND_HALF_EVEN,
}


def to_decimal(value: object, field: str) -> Decimal:
    """Turn a price, quantity or amount into an exact, finite `Decimal`.

    Args:
        value: a `Decimal`, an `int` or a `str` in plain decimal notation (leading and
            trailing whitespace is ignored; an exponent such as ``1.5E-3`` is allowed).
        field: the name of the field being set, used in every error message.

    Returns:
        The exact value; strings and ints are converted without any rounding.

    Raises:
        FloatRefused: `value` is a float.
        DomainError: `value` is a bool, NaN, infinite, a string that is not a plain
            decimal number, or of any other type. The message names `field` and `value`.
    """
    if type(value) is Decimal and value.is_finite():
        return value  # the hot path: every price of every bar passes here
    if isinstance(value, float):
        raise FloatRefused(
            f"{field}: float {value!r} refused; pass a Decimal, an int or a decimal string"
        )
    if isinstance(value, bool):
        raise DomainError(f"{field}: bool {value!r} is not a number")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise DomainError(f"{field}: {value!r} is not a finite number")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            raise DomainError(f"{field}: {value!r} is not a decimal number")
        return Decimal(text)
    raise DomainError(
        f"{field}: {value!r} of type {type(value).__name__} is not a Decimal, int or str"
    )


def round_to_step(value: Decimal, step: Decimal, rounding: Rounding) -> Decimal:
    """Round `value` to an exact multiple of `step` in the named direction.

    Args:
        value: a finite Decimal.
        step: a finite, positive Decimal (a tick size or a lot size).
        rounding: the direction; see `Rounding`.

    Returns:
        ``n * step`` for an integer ``n``, with the exponent of `step` (so ``"1.25"`` on a
        step of ``"0.10"`` with `Rounding.UP` gives ``Decimal("1.30")``). Zero is never
        negative.

    Raises:
        DomainError: the value is so large relative to the step that the multiple cannot
            be represented exactly.
    """
    try:
        quotient, remainder = _EXACT.divmod(value, step)
        n = int(quotient)
        if remainder:
            # divmod truncates toward zero; the remainder carries the sign of `value`.
            toward_infinity = 1 if remainder > 0 else -1
            if rounding is Rounding.DOWN:
                n += min(toward_infinity, 0)
            elif rounding is Rounding.UP:
                n += max(toward_infinity, 0)
            else:
                twice = _EXACT.multiply(abs(remainder), 2)
                if twice > step or (twice == step and n % 2 != 0):
                    n += toward_infinity
        result = _EXACT.multiply(Decimal(n), step)
    except decimal.DecimalException as exc:
        raise DomainError(f"cannot round {value} to a step of {step} exactly") from exc
    return result.copy_abs() if result.is_zero() else result


def is_multiple_of(value: Decimal, step: Decimal) -> bool:
    """Whether `value` is an exact integer multiple of the positive `step`."""
    try:
        return _EXACT.remainder(value, step).is_zero()
    except decimal.DecimalException:
        return False


# ---------------------------------------------------------------- field converters
# One named function per field so the error names the field (see the design notes).


def _tick_size(value: DecimalLike) -> Decimal:
    return to_decimal(value, "tick_size")


def _lot_size(value: DecimalLike) -> Decimal:
    return to_decimal(value, "lot_size")


def _min_quantity(value: DecimalLike) -> Decimal:
    return to_decimal(value, "min_quantity")


def _max_quantity(value: DecimalLike | None) -> Decimal | None:
    return None if value is None else to_decimal(value, "max_quantity")


def _multiplier(value: DecimalLike) -> Decimal:
    return to_decimal(value, "multiplier")


def _amount(value: DecimalLike) -> Decimal:
    return to_decimal(value, "amount")


def _rate(value: DecimalLike) -> Decimal:
    return to_decimal(value, "rate")


def _positive(_instance: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if value <= 0:
        raise DomainError(f"{attribute.name}: must be > 0, got {value}")


def _currency(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise DomainError(
            f"{attribute.name}: {value!r} is not a currency code "
            "(2-12 upper-case letters or digits, starting with a letter)"
        )


def _symbol(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value or value != value.strip():
        raise DomainError(
            f"{attribute.name}: {value!r} is not a symbol "
            "(a non-empty string without surrounding spaces)"
        )


# ---------------------------------------------------------------- instrument


@attrs.frozen
class Instrument:
    """A tradable instrument and the grid its prices and quantities live on.

    Attributes:
        symbol: the instrument's identifier (``"AAPL"``, ``"BTC-USD"``).
        currency: the currency its prices are quoted in (``"USD"``).
        tick_size: the price grid; every valid price is a multiple of it (> 0).
        lot_size: the quantity grid; every valid order quantity is a multiple of it (> 0).
        min_quantity: the smallest order quantity accepted (>= 0).
        max_quantity: the largest order quantity accepted, or None for no limit
            (>= min_quantity).
        multiplier: contract multiplier; notional = price * quantity * multiplier (> 0).

    Raises:
        FloatRefused: a Decimal field was given as a float.
        DomainError: any other invalid field; the message names it.
    """

    symbol: str = attrs.field(validator=_symbol)
    currency: str = attrs.field(validator=_currency)
    tick_size: Decimal = attrs.field(converter=_tick_size, validator=_positive)
    lot_size: Decimal = attrs.field(default=Decimal(1), converter=_lot_size, validator=_positive)
    min_quantity: Decimal = attrs.field(default=Decimal(0), converter=_min_quantity)
    max_quantity: Decimal | None = attrs.field(default=None, converter=_max_quantity)
    multiplier: Decimal = attrs.field(
        default=Decimal(1), converter=_multiplier, validator=_positive
    )

    def __attrs_post_init__(self) -> None:
        if self.min_quantity < 0:
            raise DomainError(f"min_quantity: must be >= 0, got {self.min_quantity}")
        if self.max_quantity is not None and self.max_quantity < self.min_quantity:
            raise DomainError(
                f"max_quantity: must be >= min_quantity ({self.min_quantity}), "
                f"got {self.max_quantity}"
            )

    def round_price(self, price: DecimalLike, rounding: Rounding) -> Decimal:
        """Round a price to this instrument's tick in the named direction.

        Args:
            price: the price (Decimal, int or decimal string; never float).
            rounding: the direction; there is no default on purpose.

        Returns:
            An exact multiple of `tick_size` with the tick's exponent.

        Raises:
            FloatRefused, DomainError: `price` is not an exact finite number.
        """
        return round_to_step(to_decimal(price, "price"), self.tick_size, rounding)

    def round_quantity(self, quantity: DecimalLike, rounding: Rounding = Rounding.DOWN) -> Decimal:
        """Round a quantity to this instrument's lot size (down by default: never more).

        Returns:
            An exact multiple of `lot_size` with the lot's exponent. Min/max are not
            checked here; see `check_quantity`.

        Raises:
            FloatRefused, DomainError: `quantity` is not an exact finite number.
        """
        return round_to_step(to_decimal(quantity, "quantity"), self.lot_size, rounding)

    def limit_price(
        self, side: Side, price: DecimalLike, rounding: Rounding | None = None
    ) -> Decimal:
        """The limit price for an order on `side`, on the tick grid.

        A buy rounds down and a sell rounds up unless `rounding` says otherwise, so a
        rounded limit is never more aggressive than the price asked for.

        Args:
            side: the order's side.
            price: the desired limit price (> 0).
            rounding: an explicit direction overriding the side's default.

        Returns:
            A positive multiple of `tick_size`.

        Raises:
            DomainError: `price` is not positive, or rounds to zero.
        """
        value = to_decimal(price, "limit_price")
        if value <= 0:
            raise DomainError(f"limit_price: must be > 0, got {value}")
        if rounding is None:
            rounding = Rounding.DOWN if side is Side.BUY else Rounding.UP
        result = round_to_step(value, self.tick_size, rounding)
        if result <= 0:
            raise DomainError(
                f"limit_price: {value} rounds to {result} on a tick of {self.tick_size}"
            )
        return result

    def is_on_tick(self, price: Decimal) -> bool:
        """Whether `price` is an exact multiple of the tick size."""
        return is_multiple_of(price, self.tick_size)

    def is_on_lot(self, quantity: Decimal) -> bool:
        """Whether `quantity` is an exact multiple of the lot size."""
        return is_multiple_of(quantity, self.lot_size)

    def check_quantity(self, quantity: DecimalLike, field: str = "quantity") -> Decimal:
        """Validate an order quantity: positive, on the lot grid, within min/max.

        Returns:
            The quantity as a Decimal.

        Raises:
            FloatRefused, DomainError: the quantity breaks a rule; the message names
                `field`, the value and the rule.
        """
        value = to_decimal(quantity, field)
        if value <= 0:
            raise DomainError(f"{field}: must be > 0, got {value}")
        if not self.is_on_lot(value):
            raise DomainError(f"{field}: {value} is not a multiple of lot size {self.lot_size}")
        if value < self.min_quantity:
            raise DomainError(f"{field}: {value} is below min_quantity {self.min_quantity}")
        if self.max_quantity is not None and value > self.max_quantity:
            raise DomainError(f"{field}: {value} is above max_quantity {self.max_quantity}")
        return value

    def notional(self, price: Decimal, quantity: Decimal) -> Money:
        """The notional value of `quantity` at `price`: price * quantity * multiplier."""
        return Money(price * quantity * self.multiplier, self.currency)


# ---------------------------------------------------------------- money


@attrs.frozen(order=False)
class Money:
    """An amount of one currency.

    Adding, subtracting and ordering work only within one currency (`CurrencyMismatch`
    otherwise); equality across currencies is simply False. Multiplying by a Decimal or
    an int scales the amount (in the default decimal context, 28 significant digits).
    Converting goes through `FxRates.convert`.

    Raises:
        FloatRefused: `amount` is a float.
        DomainError: `amount` is not a finite number, or `currency` is not a code.
    """

    amount: Decimal = attrs.field(converter=_amount)
    currency: str = attrs.field(validator=_currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Zero in `currency`."""
        return cls(Decimal(0), currency)

    @classmethod
    def total(cls, items: Iterable[Money], currency: str) -> Money:
        """The sum of `items`, all in `currency` (zero for none).

        Raises:
            CurrencyMismatch: an item is in another currency.
        """
        result = cls.zero(currency)
        for item in items:
            result += item
        return result

    def _same(self, other: Money, operation: str) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"cannot {operation} {self.currency} and {other.currency} without an FX rate"
            )

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other, "add")
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other, "subtract")
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, float):
            raise FloatRefused(f"factor: float {factor!r} refused; multiply by a Decimal")
        if isinstance(factor, bool) or not isinstance(factor, Decimal | int):
            return NotImplemented
        return Money(self.amount * to_decimal(factor, "factor"), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount >= other.amount

    def quantize(self, quantum: DecimalLike, rounding: Rounding) -> Money:
        """This amount rounded to a multiple of `quantum` (e.g. ``"0.01"``) in `rounding`."""
        step = to_decimal(quantum, "quantum")
        if step <= 0:
            raise DomainError(f"quantum: must be > 0, got {step}")
        return Money(round_to_step(self.amount, step, rounding), self.currency)


# ---------------------------------------------------------------- FX


@attrs.frozen
class FxRate:
    """One quoted rate: 1 unit of `base` is worth `rate` units of `quote` (rate > 0)."""

    base: str = attrs.field(validator=_currency)
    quote: str = attrs.field(validator=_currency)
    rate: Decimal = attrs.field(converter=_rate, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.base == self.quote:
            raise DomainError(f"rate: {self.base}/{self.quote} quotes a currency against itself")


def _rates(value: Iterable[FxRate]) -> tuple[FxRate, ...]:
    return tuple(sorted(value, key=lambda r: (r.base, r.quote)))


@attrs.frozen
class FxRates:
    """A table of FX rates with inverse and cross conversion.

    A pair is resolved in this order: the quoted rate ``base/quote``; the inverse of the
    quoted ``quote/base``; a cross through one common currency ``C`` (each leg itself
    direct or inverse), trying candidate currencies in alphabetical order. Quote a
    consistent table: with inconsistent rates the cross result depends on that order.

    Attributes:
        rates: the quoted rates, sorted by (base, quote); one per pair.

    Raises:
        DomainError: the same pair (in either direction) is quoted twice.
    """

    rates: tuple[FxRate, ...] = attrs.field(converter=_rates)
    _table: dict[tuple[str, str], Decimal] = attrs.field(
        init=False, repr=False, eq=False, hash=False
    )

    @_table.default
    def _build_table(self) -> dict[tuple[str, str], Decimal]:
        table: dict[tuple[str, str], Decimal] = {}
        for r in self.rates:
            pair = (r.base, r.quote)
            if pair in table or (r.quote, r.base) in table:
                raise DomainError(f"rates: {r.base}/{r.quote} is quoted more than once")
            table[pair] = r.rate
        return table

    @classmethod
    def from_mapping(cls, rates: Mapping[tuple[str, str], DecimalLike]) -> FxRates:
        """Build a table from ``{("EUR", "USD"): "1.0850", ...}``."""
        return cls(FxRate(base, quote, rate) for (base, quote), rate in rates.items())

    def currencies(self) -> frozenset[str]:
        """Every currency that appears in the table."""
        return frozenset(c for pair in self._table for c in pair)

    def _leg(self, source: str, target: str) -> tuple[Decimal, bool] | None:
        """(rate, invert) for one direct or inverse leg, or None."""
        direct = self._table.get((source, target))
        if direct is not None:
            return direct, False
        inverse = self._table.get((target, source))
        if inverse is not None:
            return inverse, True
        return None

    def _path(self, source: str, target: str) -> list[tuple[Decimal, bool]]:
        leg = self._leg(source, target)
        if leg is not None:
            return [leg]
        for via in sorted(self.currencies() - {source, target}):
            first = self._leg(source, via)
            second = self._leg(via, target)
            if first is not None and second is not None:
                return [first, second]
        raise CurrencyMismatch(f"no FX rate for {source}/{target} (direct, inverse or cross)")

    def rate(self, source: str, target: str) -> Decimal:
        """How many units of `target` one unit of `source` is worth (60 significant digits).

        Raises:
            CurrencyMismatch: no direct, inverse or cross rate links the pair.
        """
        if source == target:
            return Decimal(1)
        with decimal.localcontext(prec=_WIDE_PREC):
            value = Decimal(1)
            for r, invert in self._path(source, target):
                value = value / r if invert else value * r
            return +value

    def convert(
        self,
        money: Money,
        to_currency: str,
        *,
        quantum: DecimalLike = Decimal("0.01"),
        rounding: Rounding = Rounding.NEAREST,
    ) -> Money:
        """Convert `money` into `to_currency`, rounding once at the end.

        The chain of legs is computed with 60 significant digits, then the amount is
        rounded to a multiple of `quantum` in the direction `rounding` (by default to the
        cent, half-even). Converting into the same currency only applies that rounding.

        Raises:
            CurrencyMismatch: no rate links ``money.currency`` and `to_currency`; the
                message names the pair.
            DomainError: `quantum` is not a positive number.
        """
        step = to_decimal(quantum, "quantum")
        if step <= 0:
            raise DomainError(f"quantum: must be > 0, got {step}")
        amount = money.amount
        if money.currency != to_currency:
            with decimal.localcontext(prec=_WIDE_PREC):
                for r, invert in self._path(money.currency, to_currency):
                    amount = amount / r if invert else amount * r
        return Money(round_to_step(amount, step, rounding), to_currency)


# ---------------------------------------------------------------- time

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_NS_PER_US = 1_000


def ns_from_datetime(moment: _dt.datetime) -> int:
    """Nanoseconds since the Unix epoch for a time-zone-aware datetime (exact, no float).

    Raises:
        DomainError: `moment` is naive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DomainError(f"moment: {moment!r} is naive; give it a time zone")
    delta = moment - _EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * _NS_PER_US


def datetime_from_ns(ts: int) -> _dt.datetime:
    """The UTC datetime of `ts` nanoseconds since the epoch (truncated to microseconds)."""
    return _EPOCH + _dt.timedelta(microseconds=ts // _NS_PER_US)


def _non_negative_int(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError(f"{attribute.name}: {value!r} is not an int")
    if value < 0:
        raise DomainError(f"{attribute.name}: must be >= 0, got {value}")


@attrs.frozen(order=True)
class EventTime:
    """A point in the total order of events: nanoseconds since the epoch, then a sequence.

    Two events with the same `ts` are ordered by `seq`; instances compare as (ts, seq).

    Attributes:
        ts: nanoseconds since the Unix epoch, UTC (>= 0).
        seq: tie-breaking sequence number (>= 0).
    """

    ts: int = attrs.field(validator=_non_negative_int)
    seq: int = attrs.field(default=0, validator=_non_negative_int)

    @classmethod
    def from_datetime(cls, moment: _dt.datetime, seq: int = 0) -> EventTime:
        """The event time of an aware datetime."""
        return cls(ns_from_datetime(moment), seq)

    def to_datetime(self) -> _dt.datetime:
        """The UTC datetime of `ts` (truncated to microseconds)."""
        return datetime_from_ns(self.ts)

    def next(self) -> EventTime:
        """The event time right after this one at the same timestamp."""
        return EventTime(self.ts, self.seq + 1)
