"""The public face of tradewind.storage: the names other packages and users rely on."""

from __future__ import annotations

from tradewind.runtime import TradewindError

from tradewind import storage

PUBLIC = {
    "open_store",
    "migrate_store",
    "Store",
    "Transaction",
    "StoreUrl",
    "parse_store_url",
    "mask_url",
    "RetryPolicy",
    "PoolStatistics",
    "StoreCounts",
    "RunRecord",
    "Denial",
    "DeadLetter",
    "StoreError",
    "StoreUnavailable",
    "PoolExhausted",
    "TransactionFailed",
    "ConflictingWrite",
    "SchemaOutdated",
    "InvalidStoreUrl",
    "RunNotFound",
    "UnstorableValue",
}


def test_every_public_name_is_exported():
    assert {n for n in dir(storage) if not n.startswith("_")} >= PUBLIC


def test_every_storage_error_is_a_tradewind_error():
    errors = [getattr(storage, n) for n in PUBLIC if n.endswith(("Error", "Unavailable"))]
    errors += [storage.PoolExhausted, storage.TransactionFailed, storage.ConflictingWrite]
    errors += [storage.SchemaOutdated, storage.InvalidStoreUrl, storage.RunNotFound]
    errors += [storage.UnstorableValue]
    assert all(issubclass(e, storage.StoreError) for e in errors)
    assert issubclass(storage.StoreError, TradewindError)
    assert issubclass(storage.PoolExhausted, TimeoutError)
    assert issubclass(storage.StoreUnavailable, ConnectionError)
    assert issubclass(storage.InvalidStoreUrl, ValueError)
