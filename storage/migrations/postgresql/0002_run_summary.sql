-- tradewind storage schema, version 2 (PostgreSQL): the end-of-run summary of each run,
-- as the JSON `tradewind run` prints and `tradewind report` reads back.

CREATE TABLE run_summaries (
    run_id   TEXT PRIMARY KEY,
    summary  TEXT NOT NULL
);
