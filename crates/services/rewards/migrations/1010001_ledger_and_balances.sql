-- The rewards service's tables (block 101), as they were created before versioning: IF NOT
-- EXISTS adopts a database created then. Portable SQL, one file for SQLite and PostgreSQL.

CREATE TABLE IF NOT EXISTS rewards_ledger (
    event_id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    post_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    credited_at_ms BIGINT NOT NULL);

CREATE INDEX IF NOT EXISTS rewards_ledger_user ON rewards_ledger (user_id);

CREATE TABLE IF NOT EXISTS rewards_balances (
    user_id BIGINT PRIMARY KEY,
    balance BIGINT NOT NULL,
    ledger_entries BIGINT NOT NULL);
