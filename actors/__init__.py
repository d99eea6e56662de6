"""tradewind.actors: the trading vocabulary (pure modules) and the trading actors."""

# --- values and market data ---
from tradewind.actors._calendar import Session as Session
from tradewind.actors._calendar import SessionTransition as SessionTransition
from tradewind.actors._calendar import TradingCalendar as TradingCalendar
from tradewind.actors._calendar import TransitionKind as TransitionKind
from tradewind.actors._errors import CurrencyMismatch as CurrencyMismatch
from tradewind.actors._errors import DomainError as DomainError
from tradewind.actors._errors import FloatRefused as FloatRefused
from tradewind.actors._errors import InvalidCalendar as InvalidCalendar
from tradewind.actors._errors import InvalidMarketData as InvalidMarketData
from tradewind.actors._marketdata import Bar as Bar
from tradewind.actors._marketdata import BarKey as BarKey
from tradewind.actors._marketdata import BarSequencer as BarSequencer
from tradewind.actors._marketdata import BarStatus as BarStatus
from tradewind.actors._marketdata import SequencerStatistics as SequencerStatistics
from tradewind.actors._marketdata import SeriesKey as SeriesKey
from tradewind.actors._marketdata import Tick as Tick
from tradewind.actors._values import DecimalLike as DecimalLike
from tradewind.actors._values import EventTime as EventTime
from tradewind.actors._values import FxRate as FxRate
from tradewind.actors._values import FxRates as FxRates
from tradewind.actors._values import Instrument as Instrument
from tradewind.actors._values import Money as Money
from tradewind.actors._values import Rounding as Rounding
from tradewind.actors._values import Side as Side
from tradewind.actors._values import datetime_from_ns as datetime_from_ns
from tradewind.actors._values import ns_from_datetime as ns_from_datetime
from tradewind.actors._values import to_decimal as to_decimal
