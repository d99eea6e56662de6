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

# isort: split
# --- orders, portfolio, risk ---
from tradewind.actors._errors import IllegalTransition as IllegalTransition
from tradewind.actors._errors import InvalidLimits as InvalidLimits
from tradewind.actors._errors import InvalidOrder as InvalidOrder
from tradewind.actors._errors import MissingPrice as MissingPrice
from tradewind.actors._errors import UnknownInstrument as UnknownInstrument
from tradewind.actors._orders import ORDER_EVENT_TYPES as ORDER_EVENT_TYPES
from tradewind.actors._orders import TRANSITIONS as TRANSITIONS
from tradewind.actors._orders import ClientOrderIds as ClientOrderIds
from tradewind.actors._orders import Fill as Fill
from tradewind.actors._orders import Order as Order
from tradewind.actors._orders import OrderAccepted as OrderAccepted
from tradewind.actors._orders import OrderCanceled as OrderCanceled
from tradewind.actors._orders import OrderCancelRejected as OrderCancelRejected
from tradewind.actors._orders import OrderCancelRequested as OrderCancelRequested
from tradewind.actors._orders import OrderDenied as OrderDenied
from tradewind.actors._orders import OrderEvent as OrderEvent
from tradewind.actors._orders import OrderEventKind as OrderEventKind
from tradewind.actors._orders import OrderExpired as OrderExpired
from tradewind.actors._orders import OrderFilled as OrderFilled
from tradewind.actors._orders import OrderIntent as OrderIntent
from tradewind.actors._orders import OrderRejected as OrderRejected
from tradewind.actors._orders import OrderStatus as OrderStatus
from tradewind.actors._orders import OrderSubmitted as OrderSubmitted
from tradewind.actors._orders import OrderType as OrderType
from tradewind.actors._orders import TimeInForce as TimeInForce
from tradewind.actors._orders import format_client_order_id as format_client_order_id
from tradewind.actors._orders import parse_client_order_id as parse_client_order_id
from tradewind.actors._orders import replay_order_events as replay_order_events
from tradewind.actors._portfolio import Portfolio as Portfolio
from tradewind.actors._portfolio import Position as Position
from tradewind.actors._risk import ORDER_RATE_WINDOW_NS as ORDER_RATE_WINDOW_NS
from tradewind.actors._risk import Accept as Accept
from tradewind.actors._risk import Decision as Decision
from tradewind.actors._risk import Deny as Deny
from tradewind.actors._risk import DenyReason as DenyReason
from tradewind.actors._risk import KillSwitchDecision as KillSwitchDecision
from tradewind.actors._risk import OrderRateWindow as OrderRateWindow
from tradewind.actors._risk import RiskLimits as RiskLimits
from tradewind.actors._risk import TradingState as TradingState
from tradewind.actors._risk import check_cancel as check_cancel
from tradewind.actors._risk import check_order as check_order
from tradewind.actors._risk import kill_switch as kill_switch
from tradewind.actors._risk import orders_in_window as orders_in_window
from tradewind.actors._risk import within_price_band as within_price_band

# isort: split
# --- broker and orders actor ---
from tradewind.actors._broker import BROKER_EVENT_TYPES as BROKER_EVENT_TYPES
from tradewind.actors._broker import Broker as Broker
from tradewind.actors._broker import BrokerEvent as BrokerEvent
from tradewind.actors._errors import BrokerDisconnected as BrokerDisconnected
from tradewind.actors._errors import BrokerError as BrokerError
from tradewind.actors._order_actor import BookChange as BookChange
from tradewind.actors._order_actor import OrderActor as OrderActor
from tradewind.actors._order_actor import OrderBook as OrderBook
from tradewind.actors._order_actor import OrderBookStatistics as OrderBookStatistics
from tradewind.actors._paper import PaperBroker as PaperBroker
from tradewind.actors._paper import PaperConfig as PaperConfig
from tradewind.actors._paper import PaperExchange as PaperExchange
from tradewind.actors._paper import PaperFaults as PaperFaults
from tradewind.actors._paper import PaperStatistics as PaperStatistics
from tradewind.actors._paper_venue import DurablePaperBroker as DurablePaperBroker
from tradewind.actors._reconcile import UNKNOWN_TO_BROKER as UNKNOWN_TO_BROKER
from tradewind.actors._reconcile import BrokerView as BrokerView
from tradewind.actors._reconcile import Reconciliation as Reconciliation
from tradewind.actors._reconcile import reconcile as reconcile

# isort: split
# --- risk and strategy actors ---
from tradewind.actors._errors import InvalidStrategy as InvalidStrategy
from tradewind.actors._messages import IntentDenied as IntentDenied
from tradewind.actors._messages import OrderUpdated as OrderUpdated
from tradewind.actors._messages import SessionChanged as SessionChanged
from tradewind.actors._risk_actor import Effect as Effect
from tradewind.actors._risk_actor import Peer as Peer
from tradewind.actors._risk_actor import RiskActor as RiskActor
from tradewind.actors._risk_actor import RiskBook as RiskBook
from tradewind.actors._risk_actor import RiskSettings as RiskSettings
from tradewind.actors._risk_actor import RiskStatistics as RiskStatistics
from tradewind.actors._risk_actor import reload_risk_limits as reload_risk_limits
from tradewind.actors._strategy import DEFAULT_HISTORY as DEFAULT_HISTORY
from tradewind.actors._strategy import PortfolioView as PortfolioView
from tradewind.actors._strategy import Strategy as Strategy
from tradewind.actors._strategy import StrategyActor as StrategyActor
from tradewind.actors._strategy import StrategyContext as StrategyContext
from tradewind.actors._strategy import StrategyFactory as StrategyFactory
from tradewind.actors._strategy import StrategyHost as StrategyHost
from tradewind.actors._strategy import StrategyStatistics as StrategyStatistics
from tradewind.actors._strategy import load_strategy as load_strategy

# isort: split
# --- feed and persistence actors ---
from tradewind.actors._eventlog import EventLog as EventLog
from tradewind.actors._eventlog import canonical as canonical
from tradewind.actors._feed import FeedActor as FeedActor
from tradewind.actors._feed import FeedKeeper as FeedKeeper
from tradewind.actors._feed import FeedStatistics as FeedStatistics
from tradewind.actors._feed import bar_conflation_key as bar_conflation_key
from tradewind.actors._persistence import PersistenceActor as PersistenceActor
from tradewind.actors._persistence import PersistenceKeeper as PersistenceKeeper
from tradewind.actors._persistence import PersistenceStatistics as PersistenceStatistics
from tradewind.actors._persistence import UnitOfWorkStore as UnitOfWorkStore
from tradewind.actors._sources import CSV_HEADER as CSV_HEADER
from tradewind.actors._sources import BarSource as BarSource
from tradewind.actors._sources import CsvBarSource as CsvBarSource
from tradewind.actors._sources import InvalidBarFile as InvalidBarFile
from tradewind.actors._sources import SourceBar as SourceBar
from tradewind.actors._sources import SourceItem as SourceItem
from tradewind.actors._sources import SourceRejection as SourceRejection
from tradewind.actors._sources import SyntheticBarSource as SyntheticBarSource
from tradewind.actors._sources import write_bars_csv as write_bars_csv
from tradewind.actors._synthetic import synthetic_bars as synthetic_bars
from tradewind.actors._synthetic import timeframe_ns as timeframe_ns

# isort: split
# --- database outage: the spill journal ---
from tradewind.actors._errors import SpillJournalCorrupt as SpillJournalCorrupt
from tradewind.actors._spill import SPILL_TYPES as SPILL_TYPES
from tradewind.actors._spill import SpillBatch as SpillBatch
from tradewind.actors._spill import SpillJournal as SpillJournal
from tradewind.actors._spill import SpillRecovery as SpillRecovery
from tradewind.actors._spill import SpillStatistics as SpillStatistics
from tradewind.actors._spill import TornLine as TornLine
from tradewind.actors._spill import decode_record as decode_record
from tradewind.actors._spill import encode_record as encode_record
