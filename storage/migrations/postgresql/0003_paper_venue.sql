-- tradewind storage schema, version 3 (PostgreSQL): the paper venue's own state, written
-- by the venue itself (`[broker] state = "tables"`), never by the trading actors.
-- The venue's copy of each order it was sent (the columns of `orders`, its last event,
-- and what the matching engine needs to go on: the submission number, the time of its
-- answer, the first bar time it may fill at and its trading day while it works); every
-- fill it made, keyed by execution id, numbered in execution order; and per series the
-- last bar it traded. NUMERIC for prices and quantities, BIGINT ns for times.

CREATE TABLE paper_venue_orders (
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
    reason           TEXT NOT NULL,
    last_event_kind  TEXT,
    last_event       TEXT,
    submit_no        BIGINT NOT NULL,
    answer_ts        BIGINT NOT NULL,
    eligible_from    BIGINT,
    trading_day      BIGINT
);
CREATE UNIQUE INDEX paper_venue_orders_submit_no ON paper_venue_orders (submit_no);

CREATE TABLE paper_venue_fills (
    execution_id     TEXT PRIMARY KEY,
    client_order_id  TEXT NOT NULL,
    instrument       TEXT NOT NULL,
    side             TEXT NOT NULL,
    quantity         NUMERIC NOT NULL,
    price            NUMERIC NOT NULL,
    fee              NUMERIC NOT NULL,
    fee_currency     TEXT NOT NULL,
    ts               BIGINT NOT NULL,
    fill_no          BIGINT NOT NULL
);
CREATE UNIQUE INDEX paper_venue_fills_fill_no ON paper_venue_fills (fill_no);

CREATE TABLE paper_venue_cursors (
    instrument  TEXT NOT NULL,
    timeframe   TEXT NOT NULL,
    last_ts     BIGINT NOT NULL,
    PRIMARY KEY (instrument, timeframe)
);
