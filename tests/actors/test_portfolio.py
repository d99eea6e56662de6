"""Positions and the portfolio: netting, PnL, cash, fees, idempotency, currency totals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.actors import (
    CurrencyMismatch,
    DomainError,
    Fill,
    FxRates,
    Instrument,
    MissingPrice,
    Money,
    Portfolio,
    Position,
    Side,
    UnknownInstrument,
)
from tradewind.actors._portfolio import book_fill

from tests.strategies import ORDER_TEST_INSTRUMENTS, order_prices, order_quantities

D = Decimal
_serial = iter(range(1, 10**9))


def fill(  # noqa: PLR0917 -- a terse test builder: side, quantity, price read best in order
    side: Side,
    quantity: str | Decimal,
    price: str | Decimal,
    instrument: str = "AAPL",
    fee: str | Decimal = "0",
    fee_currency: str = "USD",
    execution_id: str | None = None,
    ts: int = 1,
) -> Fill:
    return Fill(
        execution_id=execution_id or f"x{next(_serial)}",
        client_order_id="s1-00000001",
        instrument=instrument,
        side=side,
        quantity=D(quantity),
        price=D(price),
        fee=D(fee),
        fee_currency=fee_currency,
        ts=ts,
    )


def portfolio(**cash: str) -> Portfolio:
    return Portfolio(ORDER_TEST_INSTRUMENTS, cash)


def position_after(*fills: Fill, instrument: str = "AAPL") -> Position:
    book = portfolio()
    for f in fills:
        book.apply_fill(f)
    return book.position(instrument)


class TestPositionNetting:
    def test_buys_average_their_entry_price(self):
        pos = position_after(fill(Side.BUY, "10", "100"), fill(Side.BUY, "30", "104"))
        assert (pos.quantity, pos.avg_entry_price) == (D(40), D(103))

    def test_partial_close_realizes_at_the_average_price(self):
        pos = position_after(fill(Side.BUY, "10", "100"), fill(Side.SELL, "4", "112"))
        assert (pos.quantity, pos.avg_entry_price, pos.realized_pnl) == (D(6), D(100), D(48))

    def test_short_gains_when_price_falls(self):
        pos = position_after(fill(Side.SELL, "5", "50"), fill(Side.BUY, "5", "45"))
        assert (pos.quantity, pos.realized_pnl, pos.avg_entry_price) == (D(0), D(25), None)

    def test_flip_opens_the_rest_at_the_fill_price(self):
        pos = position_after(fill(Side.BUY, "10", "100"), fill(Side.SELL, "15", "110"))
        assert (pos.quantity, pos.avg_entry_price, pos.realized_pnl) == (D(-5), D(110), D(100))

    def test_multiplier_scales_pnl(self):
        es = [fill(Side.BUY, "2", "4000", "ES"), fill(Side.SELL, "1", "4010", "ES")]
        pos = position_after(*es, instrument="ES")
        assert (pos.realized_pnl, pos.unrealized_pnl(D(4020))) == (D(500), D(1000))

    def test_fees_in_the_position_currency_count_on_the_position(self):
        pos = position_after(
            fill(Side.BUY, "1", "10", fee="0.5"),
            fill(Side.BUY, "1", "10", fee="9", fee_currency="EUR"),
        )
        assert pos.fees == D("0.5")

    def test_unrealized_pnl_of_a_short(self):
        pos = position_after(fill(Side.SELL, "3", "20"))
        assert pos.unrealized_pnl(D(18)) == D(6)

    def test_fill_for_another_instrument_is_refused(self):
        with pytest.raises(UnknownInstrument, match="instrument: fill"):
            Position.flat(ORDER_TEST_INSTRUMENTS["AAPL"]).apply(fill(Side.BUY, "1", "1", "ES"))

    def test_thirds_keep_total_pnl_exact(self):
        pos = position_after(
            fill(Side.BUY, "1", "1"), fill(Side.BUY, "2", "2"), fill(Side.SELL, "1", "3")
        )
        assert pos.realized_pnl + pos.unrealized_pnl(D(3)) == D(3 * 3 - 1 - 4)


class TestPortfolio:
    def test_same_execution_id_is_booked_once(self):
        book = portfolio(USD="1000")
        first = fill(Side.BUY, "2", "10", fee="1", execution_id="dup")
        assert (book.apply_fill(first), book.apply_fill(first)) == (True, False)
        assert (book.position("AAPL").quantity, book.cash["USD"], book.fees["USD"]) == (
            D(2),
            D(979),
            D(1),
        )
        assert book.has_fill("dup")

    def test_unknown_instrument_is_refused_and_changes_nothing(self):
        book = portfolio()
        with pytest.raises(UnknownInstrument, match="'MSFT'"):
            book.apply_fill(fill(Side.BUY, "1", "1", "MSFT", execution_id="m"))
        assert (book.positions, book.has_fill("m")) == ({}, False)

    def test_untraded_instrument_is_flat(self):
        assert portfolio().position("ES") == Position.flat(ORDER_TEST_INSTRUMENTS["ES"])

    def test_unrealized_pnl_needs_a_mark(self):
        book = portfolio()
        book.apply_fill(fill(Side.BUY, "1", "10"))
        with pytest.raises(MissingPrice, match="no mark for AAPL"):
            book.unrealized_pnl("AAPL")

    def test_flat_position_needs_no_mark(self):
        assert portfolio().unrealized_pnl("AAPL") == 0

    def test_mark_refuses_a_non_positive_price(self):
        with pytest.raises(DomainError, match="price: must be > 0"):
            portfolio().mark("AAPL", "0")

    def test_mark_refuses_an_unknown_instrument(self):
        with pytest.raises(UnknownInstrument):
            portfolio().mark("MSFT", "1")

    def test_a_fill_newer_than_the_mark_marks_at_its_price(self):
        book = portfolio()
        book.mark("AAPL", "100", ts=1)
        assert book_fill(book, fill(Side.BUY, "10", "110", ts=2))
        assert book.marks == {"AAPL": D(110)}
        assert book.unrealized_pnl("AAPL") == 0

    def test_a_fill_not_newer_than_the_mark_leaves_it(self):
        book = portfolio()
        book.mark("AAPL", "100", ts=2)
        book_fill(book, fill(Side.BUY, "10", "110", ts=2))
        book.mark("ES", "50")  # a mark of unknown time is never replaced by a fill
        book_fill(book, fill(Side.BUY, "1", "60", "ES", ts=3))
        assert book.marks == {"AAPL": D(100), "ES": D(50)}
        assert book.copy().mark_time("AAPL") == 2

    def test_equity_is_cash_plus_marked_positions(self):
        book = portfolio(USD="10000")
        book.apply_fill(fill(Side.BUY, "10", "100", fee="1"))
        book.mark("AAPL", "105")
        assert (book.marks, book.equity_by_currency()) == ({"AAPL": D(105)}, {"USD": D(10049)})

    def test_pnl_per_currency_nets_fees(self):
        book = portfolio()
        book.apply_fill(fill(Side.BUY, "10", "100", fee="2"))
        book.apply_fill(fill(Side.SELL, "10", "20", "SAP", fee="1", fee_currency="EUR"))
        book.mark("AAPL", "101")
        book.mark("SAP", "19")
        assert book.pnl_by_currency() == {"USD": D(8), "EUR": D(9)}
        assert book.realized_pnl_by_currency() == {"USD": D(0), "EUR": D(0)}

    def test_total_converts_only_through_fx_rates(self):
        book = portfolio(USD="100", EUR="100")
        fx = FxRates.from_mapping({("EUR", "USD"): "1.10"})
        total = book.total(book.equity_by_currency(), fx, "USD")
        assert total == Money(D("210.00"), "USD")

    def test_total_without_a_rate_raises(self):
        book = portfolio(USD="100", JPY="100")
        fx = FxRates.from_mapping({("EUR", "USD"): "1.10"})
        with pytest.raises(CurrencyMismatch):
            book.total(book.equity_by_currency(), fx, "USD")

    def test_copy_is_independent(self):
        book = portfolio()
        clone = book.copy()
        clone.apply_fill(fill(Side.BUY, "1", "1", execution_id="c"))
        assert (book.has_fill("c"), clone.has_fill("c")) == (False, True)

    def test_instruments_listed_twice_are_refused(self):
        aapl = ORDER_TEST_INSTRUMENTS["AAPL"]
        with pytest.raises(DomainError, match="instruments: AAPL is listed twice"):
            Portfolio([aapl, aapl])

    def test_float_cash_is_refused_naming_the_currency(self):
        with pytest.raises(DomainError, match=r"cash\[USD\]"):
            Portfolio([], {"USD": 1.5})  # type: ignore[dict-item]


# ---------------------------------------------------------------- properties

SYMBOLS = sorted(ORDER_TEST_INSTRUMENTS)


@st.composite
def fill_sets(draw: st.DrawFn) -> list[Fill]:
    """Fills of several orders in several instruments, each with a unique execution id."""
    count = draw(st.integers(1, 25))
    return [
        fill(
            draw(st.sampled_from(Side)),
            draw(order_quantities(50)),
            draw(order_prices(1, 50_000)),
            draw(st.sampled_from(SYMBOLS)),
            fee=D(draw(st.integers(0, 300))).scaleb(-2),
            fee_currency=draw(st.sampled_from(["USD", "EUR"])),
            execution_id=f"e{i}",
        )
        for i in range(count)
    ]


def book_of(fills: list[Fill], marks: dict[str, Decimal]) -> Portfolio:
    book = portfolio(USD="1000000", EUR="1000000")
    for f in fills:
        book.apply_fill(f)
    for symbol, price in marks.items():
        book.mark(symbol, price)
    return book


marks_strategy = st.fixed_dictionaries({s: order_prices(1, 50_000) for s in SYMBOLS})


class TestPortfolioProperties:
    @given(fill_sets(), st.randoms(use_true_random=False), marks_strategy)
    def test_any_interleaving_gives_the_same_positions_cash_and_total_pnl(self, fills, rnd, marks):
        shuffled = list(fills)
        rnd.shuffle(shuffled)
        a, b = book_of(fills, marks), book_of(shuffled, marks)
        assert {s: a.position(s).quantity for s in SYMBOLS} == {
            s: b.position(s).quantity for s in SYMBOLS
        }
        assert (a.cash, a.fees) == (b.cash, b.fees)
        assert a.pnl_by_currency() == b.pnl_by_currency()
        assert a.equity_by_currency() == b.equity_by_currency()

    @given(fill_sets(), marks_strategy)
    def test_pnl_is_realized_plus_unrealized_less_fees_per_currency(self, fills, marks):
        book = book_of(fills, marks)
        expected: dict[str, D] = {}
        for part, sign in (
            (book.realized_pnl_by_currency(), 1),
            (book.unrealized_pnl_by_currency(), 1),
            (book.fees, -1),
        ):
            for currency, amount in part.items():
                expected[currency] = expected.get(currency, D(0)) + sign * amount
        got = book.pnl_by_currency()
        assert got == expected
        # the same digits too (the kill switch prints the day's PnL)
        assert {c: str(v) for c, v in got.items()} == {c: str(v) for c, v in expected.items()}

    @given(fill_sets(), marks_strategy)
    def test_position_is_the_sum_of_its_signed_fills(self, fills, marks):
        book = book_of(fills, marks)
        for symbol in SYMBOLS:
            expected = sum((f.signed_quantity for f in fills if f.instrument == symbol), D(0))
            assert book.position(symbol).quantity == expected

    @given(fill_sets(), marks_strategy)
    def test_total_pnl_equals_cash_flows_plus_marked_value(self, fills, marks):
        book = book_of(fills, marks)
        for symbol in SYMBOLS:
            mult = ORDER_TEST_INSTRUMENTS[symbol].multiplier
            mine = [f for f in fills if f.instrument == symbol]
            flows = sum((-f.signed_quantity * f.price * mult for f in mine), D(0))
            pos = book.position(symbol)
            value = pos.quantity * marks[symbol] * mult
            assert pos.realized_pnl + book.unrealized_pnl(symbol) == flows + value

    @given(fill_sets(), marks_strategy, st.data())
    def test_replaying_any_fills_again_changes_nothing(self, fills, marks, data):
        book = book_of(fills, marks)
        before = (book.positions, book.cash, book.fees)
        again = data.draw(st.lists(st.sampled_from(fills), max_size=10))
        assert not any(book.apply_fill(f) for f in again)
        assert (book.positions, book.cash, book.fees) == before

    @given(fill_sets(), marks_strategy)
    def test_closing_every_position_leaves_no_basis_and_only_realized_pnl(self, fills, marks):
        book = book_of(fills, marks)
        for symbol, pos in book.positions.items():
            if not pos.is_flat:
                side = Side.SELL if pos.quantity > 0 else Side.BUY
                book.apply_fill(fill(side, abs(pos.quantity), marks[symbol], symbol))
        for symbol, pos in book.positions.items():
            assert (pos.quantity, pos.cost_basis, pos.avg_entry_price) == (D(0), D(0), None)
            assert book.unrealized_pnl(symbol) == 0

    def test_instrument_mapping_is_keyed_by_symbol(self):
        book = Portfolio({"x": Instrument("AAPL", "USD", D("0.01"))})
        assert set(book.instruments) == {"AAPL"}
