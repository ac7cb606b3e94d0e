-- The outbox table, as the unversioned code before this file created it: IF NOT EXISTS adopts a
-- database that code created.

CREATE TABLE IF NOT EXISTS fanout_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    schema TEXT NOT NULL,
    datum BLOB NOT NULL,
    headers TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    sent_at_ms INTEGER
);

CREATE INDEX IF NOT EXISTS fanout_outbox_pending ON fanout_outbox (seq) WHERE sent_at_ms IS NULL;
