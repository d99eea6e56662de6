"""tradewind.actors: the trading vocabulary (pure modules) and the trading actors."""

# --- values and market data ---
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
