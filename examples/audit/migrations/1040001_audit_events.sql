-- The first migration of version block 104 (the table of blocks is in Fanout's
-- crates/migrate). Never edit it once released: the next change is 1040002_<what>.sql.
CREATE TABLE IF NOT EXISTS audit_events (
    event_id TEXT PRIMARY KEY,
    event_key TEXT,
    event_time TEXT
);
