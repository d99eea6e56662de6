-- tradewind storage schema, version 1 (SQLite).
-- Prices, quantities and amounts are TEXT holding the Decimal's exact string (never REAL),
-- so they come back identical. Timestamps are INTEGER (64-bit) nanoseconds since the Unix epoch (UTC).
-- Every table has the natural key its writes are idempotent on.

CREATE TABLE instruments (
    symbol        TEXT PRIMARY KEY,
    currency      TEXT NOT NULL,
    tick_size     TEXT NOT NULL,
    lot_size      TEXT NOT NULL,
    min_quantity  TEXT NOT NULL,
    max_quantity  TEXT,
    multiplier    TEXT NOT NULL
);

CREATE TABLE bars (
    instrument  TEXT NOT NULL,
    timeframe   TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    open        TEXT NOT NULL,
    high        TEXT NOT NULL,
    low         TEXT NOT NULL,
    close       TEXT NOT NULL,
    volume      TEXT NOT NULL,
    PRIMARY KEY (instrument, timeframe, ts)
);

CREATE TABLE orders (
    client_order_id  TEXT PRIMARY KEY,
    strategy_id      TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    instrument       TEXT NOT NULL,
    side             TEXT NOT NULL,
    quantity         TEXT NOT NULL,
    order_type       TEXT NOT NULL,
    limit_price      TEXT,
    time_in_force    TEXT NOT NULL,
    tag              TEXT NOT NULL,
    status           TEXT NOT NULL,
    is_open          INTEGER NOT NULL,
    filled_quantity  TEXT NOT NULL,
    avg_fill_price   TEXT,
    broker_order_id  TEXT,
    created_ts       INTEGER NOT NULL,
    updated_ts       INTEGER NOT NULL,
    fill_notional    TEXT NOT NULL,
    status_before_cancel TEXT,
    execution_ids    TEXT NOT NULL,
    last_event_seq   INTEGER NOT NULL,
    reason           TEXT NOT NULL
);
CREATE INDEX orders_strategy_seq ON orders (strategy_id, seq);
CREATE INDEX orders_open ON orders (client_order_id) WHERE is_open;

CREATE TABLE order_events (
    client_order_id  TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    ts               INTEGER NOT NULL,
    status           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    PRIMARY KEY (client_order_id, seq)
);

CREATE TABLE fills (
    execution_id     TEXT PRIMARY KEY,
    client_order_id  TEXT NOT NULL,
    instrument       TEXT NOT NULL,
    side             TEXT NOT NULL,
    quantity         TEXT NOT NULL,
    price            TEXT NOT NULL,
    fee              TEXT NOT NULL,
    fee_currency     TEXT NOT NULL,
    ts               INTEGER NOT NULL
);
CREATE INDEX fills_ts ON fills (ts, execution_id);

CREATE TABLE denials (
    client_order_id  TEXT PRIMARY KEY,
    strategy_id      TEXT NOT NULL,
    instrument       TEXT NOT NULL,
    ts               INTEGER NOT NULL,
    reason           TEXT NOT NULL
);

CREATE TABLE dead_letters (
    actor         TEXT NOT NULL,
    ts            INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    message_type  TEXT NOT NULL,
    message       TEXT NOT NULL,
    error         TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    PRIMARY KEY (actor, ts, seq)
);

CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    config_hash  TEXT NOT NULL,
    started_ts   INTEGER NOT NULL,
    finished_ts  INTEGER,
    outcome      TEXT
);
