"""Errors of the trading core. Pure: imports only the runtime's error base.

Each error is a `ValueError` (the caller handed in something wrong) unless stated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradewind.runtime._errors import TradewindError

if TYPE_CHECKING:
    from collections.abc import Sequence


class DomainError(TradewindError, ValueError):
    """A trading value or operation broke one of the domain's rules."""


class FloatRefused(DomainError, TypeError):
    """A price, quantity or amount was given as a float; only Decimal, int or str enter."""


class CurrencyMismatch(DomainError):
    """Money in two currencies was combined without an explicit rate."""


class InvalidMarketData(DomainError):
    """A bar or tick broke a market-data rule; names the field, the value and the rule."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        super().__init__(f"{field}={value!r}: {rule}")
        self.field = field
        self.value = value
        self.rule = rule


class InvalidOrder(DomainError):
    """An order intent or fill is malformed (bad quantity, missing limit price, overfill)."""


class IllegalTransition(DomainError):
    """An order event is not allowed in the order's current state; the order is unchanged."""


class InvalidLimits(DomainError):
    """Risk limits failed validation; the message names every offending field."""


class UnknownInstrument(DomainError, LookupError):
    """A fill, mark or intent named an instrument the portfolio or risk does not know."""


class MissingPrice(DomainError, LookupError):
    """A value needed a price (a mark, a last trade) that has not been seen yet."""


class InvalidCalendar(DomainError):
    """A trading calendar's definition was rejected; ``problems`` lists each, by key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class BrokerError(TradewindError):
    """Base of the errors a broker adapter raises (not the broker's order rejects: those
    are `OrderRejected` / `OrderCancelRejected` events)."""


class BrokerDisconnected(BrokerError, ConnectionError):
    """The broker connection is down: the request was not delivered.

    Retryable: once the connection is back (`Broker.connect`), the same request may be
    sent again; submits are idempotent by client order id.
    """


class InvalidStrategy(DomainError):
    """A strategy could not be loaded from its spec: the module or file is missing, the
    name is not a `Strategy` subclass, or its parameters were refused. The message names
    what was wrong, and ``problems`` lists it (the configuration's way of reporting)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problems = (problem,)


class SpillJournalCorrupt(TradewindError, ValueError):
    """A line of the spill journal cannot be decoded, and it is not the torn last line a
    crash can leave (that one is reported and skipped). The file's fault: nothing is
    skipped silently; ``path``, ``offset`` (the line's first byte) and ``reason`` say
    where and why, so an operator can repair or set aside the file."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: the line at byte {offset} cannot be read back: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason
