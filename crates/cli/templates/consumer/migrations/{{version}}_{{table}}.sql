-- The first migration of version block {{block}} (the table of blocks is in Fanout's
-- crates/migrate). Never edit it once released: the next change is {{next_version}}_<what>.sql.
CREATE TABLE IF NOT EXISTS {{table}} (
    event_id TEXT PRIMARY KEY,
    event_key TEXT,
    event_time TEXT
);
