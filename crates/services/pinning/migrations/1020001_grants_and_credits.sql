-- The pinning service's tables (block 102), as they were created before versioning: IF NOT
-- EXISTS adopts a database created then. Portable SQL, one file for SQLite and PostgreSQL.

CREATE TABLE IF NOT EXISTS pinning_grants (
    event_id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    post_id BIGINT NOT NULL,
    credits BIGINT NOT NULL,
    granted_at_ms BIGINT NOT NULL);

CREATE INDEX IF NOT EXISTS pinning_grants_user ON pinning_grants (user_id);

CREATE TABLE IF NOT EXISTS pinning_credits (
    user_id BIGINT PRIMARY KEY,
    credits BIGINT NOT NULL);
