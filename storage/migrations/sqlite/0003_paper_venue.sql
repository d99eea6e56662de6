-- tradewind storage schema, version 3 (SQLite): the paper venue's own state, written
-- by the venue itself (`[broker] state = "tables"`), never by the trading actors.
-- The venue's copy of each order it was sent (the columns of `orders`, its last event,
-- and what the matching engine needs to go on: the submission number, the time of its
-- answer, the first bar time it may fill at and its trading day while it works); every
-- fill it made, keyed by execution id, numbered in execution order; and per series the
-- last bar it traded. Decimals as their exact TEXT, times as INTEGER ns.

CREATE TABLE paper_venue_orders (
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
    reason           TEXT NOT NULL,
    last_event_kind  TEXT,
    last_event       TEXT,
    submit_no        INTEGER NOT NULL,
    answer_ts        INTEGER NOT NULL,
    eligible_from    INTEGER,
    trading_day      INTEGER
);
CREATE UNIQUE INDEX paper_venue_orders_submit_no ON paper_venue_orders (submit_no);

CREATE TABLE paper_venue_fills (
    execution_id     TEXT PRIMARY KEY,
    client_order_id  TEXT NOT NULL,
    instrument       TEXT NOT NULL,
    side             TEXT NOT NULL,
    quantity         TEXT NOT NULL,
    price            TEXT NOT NULL,
    fee              TEXT NOT NULL,
    fee_currency     TEXT NOT NULL,
    ts               INTEGER NOT NULL,
    fill_no          INTEGER NOT NULL
);
CREATE UNIQUE INDEX paper_venue_fills_fill_no ON paper_venue_fills (fill_no);

CREATE TABLE paper_venue_cursors (
    instrument  TEXT NOT NULL,
    timeframe   TEXT NOT NULL,
    last_ts     INTEGER NOT NULL,
    PRIMARY KEY (instrument, timeframe)
);
