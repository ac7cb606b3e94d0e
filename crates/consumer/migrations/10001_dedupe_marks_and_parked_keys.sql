-- The consumer runtime's tables, as the unversioned code before this file created them: IF NOT
-- EXISTS adopts a database that code created. Portable SQL, one file for SQLite and PostgreSQL.

CREATE TABLE IF NOT EXISTS fanout_processed (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id));

CREATE INDEX IF NOT EXISTS fanout_processed_age ON fanout_processed (consumer, processed_at_ms);

CREATE TABLE IF NOT EXISTS fanout_parked_keys (
    consumer TEXT NOT NULL,
    topic TEXT NOT NULL,
    record_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    original_offset BIGINT NOT NULL,
    parked_at_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, record_key, event_id));
