-- tradewind storage schema, version 1 (PostgreSQL).
-- Prices, quantities and amounts are NUMERIC without a precision cap: they come back as
-- the identical Decimal. Timestamps are BIGINT nanoseconds since the Unix epoch (UTC).
-- Every table has the natural key its writes are idempotent on.

CREATE TABLE instruments (
    symbol        TEXT PRIMARY KEY,
    currency      TEXT NOT NULL,
    tick_size     NUMERIC NOT NULL,
    lot_size      NUMERIC NOT NULL,
    min_quantity  NUMERIC NOT NULL,
    max_quantity  NUMERIC,
    multiplier    NUMERIC NOT NULL
);

CREATE TABLE bars (
    instrument  TEXT NOT NULL,
    timeframe   TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    open        NUMERIC NOT NULL,
    high        NUMERIC NOT NULL,
    low         NUMERIC NOT NULL,
    close       NUMERIC NOT NULL,
    volume      NUMERIC NOT NULL,
    PRIMARY KEY (instrument, timeframe, ts)
);

CREATE TABLE orders (
    client_order_id  TEXT PRIMARY KEY,
    strategy_id      TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    instrument       TEXT NOT NULL,
    side             TEXT NOT NULL,
    quantity         NUMERIC NOT NULL,
    order_type       TEXT NOT NULL,
    limit_price      NUMERIC,
    time_in_force    TEXT NOT NULL,
    tag              TEXT NOT NULL,
    status           TEXT NOT NULL,
    is_open          BOOLEAN NOT NULL,
    filled_quantity  NUMERIC NOT NULL,
    avg_fill_price   NUMERIC,
    broker_order_id  TEXT,
    created_ts       BIGINT NOT NULL,
    updated_ts       BIGINT NOT NULL,
    fill_notional    NUMERIC NOT NULL,
    status_before_cancel TEXT,
    execution_ids    TEXT NOT NULL,
    last_event_seq   BIGINT NOT NULL,
    reason           TEXT NOT NULL
);
CREATE INDEX orders_strategy_seq ON orders (strategy_id, seq);
CREATE INDEX orders_open ON orders (client_order_id) WHERE is_open;

CREATE TABLE order_events (
    client_order_id  TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    ts               BIGINT NOT NULL,
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
    quantity         NUMERIC NOT NULL,
    price            NUMERIC NOT NULL,
    fee              NUMERIC NOT NULL,
    fee_currency     TEXT NOT NULL,
    ts               BIGINT NOT NULL
);
CREATE INDEX fills_ts ON fills (ts, execution_id);

CREATE TABLE denials (
    client_order_id  TEXT PRIMARY KEY,
    strategy_id      TEXT NOT NULL,
    instrument       TEXT NOT NULL,
    ts               BIGINT NOT NULL,
    reason           TEXT NOT NULL
);

CREATE TABLE dead_letters (
    actor         TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    message_type  TEXT NOT NULL,
    message       TEXT NOT NULL,
    error         TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    PRIMARY KEY (actor, ts, seq)
);

CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    config_hash  TEXT NOT NULL,
    started_ts   BIGINT NOT NULL,
    finished_ts  BIGINT,
    outcome      TEXT
);
