"""tradewind.storage: persistence on PostgreSQL (asyncpg over trio-asyncio) and SQLite."""

from tradewind.storage._errors import ConflictingWrite as ConflictingWrite
from tradewind.storage._errors import InvalidStoreUrl as InvalidStoreUrl
from tradewind.storage._errors import PoolExhausted as PoolExhausted
from tradewind.storage._errors import RunNotFound as RunNotFound
from tradewind.storage._errors import SchemaOutdated as SchemaOutdated
from tradewind.storage._errors import StoreError as StoreError
from tradewind.storage._errors import StoreInUse as StoreInUse
from tradewind.storage._errors import StoreUnavailable as StoreUnavailable
from tradewind.storage._errors import TransactionFailed as TransactionFailed
from tradewind.storage._errors import UnstorableValue as UnstorableValue
from tradewind.storage._records import DeadLetter as DeadLetter
from tradewind.storage._records import Denial as Denial
from tradewind.storage._records import PoolStatistics as PoolStatistics
from tradewind.storage._records import RetryPolicy as RetryPolicy
from tradewind.storage._records import RunRecord as RunRecord
from tradewind.storage._records import StoreCounts as StoreCounts
from tradewind.storage._store import Store as Store
from tradewind.storage._store import migrate_store as migrate_store
from tradewind.storage._store import open_store as open_store
from tradewind.storage._uow import Transaction as Transaction
from tradewind.storage._url import StoreUrl as StoreUrl
from tradewind.storage._url import mask_url as mask_url
from tradewind.storage._url import parse_store_url as parse_store_url
from tradewind.storage._venue import PaperVenueFill as PaperVenueFill
from tradewind.storage._venue import PaperVenueOrder as PaperVenueOrder
from tradewind.storage._venue import PaperVenueState as PaperVenueState
