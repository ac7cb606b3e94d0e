-- The stats service's tables (block 103), as they were created before versioning: IF NOT
-- EXISTS adopts a database created then. Portable SQL, one file for SQLite and PostgreSQL.

CREATE TABLE IF NOT EXISTS stats_by_category (
    user_id BIGINT NOT NULL,
    category TEXT NOT NULL,
    posts BIGINT NOT NULL,
    PRIMARY KEY (user_id, category));

CREATE TABLE IF NOT EXISTS stats_by_city (
    user_id BIGINT NOT NULL,
    city TEXT NOT NULL,
    posts BIGINT NOT NULL,
    PRIMARY KEY (user_id, city));
