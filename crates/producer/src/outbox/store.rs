//! The `fanout_outbox` table in SQLite and PostgreSQL.

use std::future::Future;

use fanout_migrate::Blocks;
use sqlx::{migrate::Migrator, PgPool, Postgres, Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use super::OutboxError;

/// One enqueued event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Insertion order (assigned by the database).
    pub seq: i64,
    /// The event id (`ce_id`), fixed at enqueue so a re-published row dedupes downstream.
    pub event_id: Uuid,
    /// The CloudEvents type.
    pub event_type: String,
    /// Destination topic.
    pub topic: String,
    /// Partitioning key.
    pub key: Vec<u8>,
    /// The Avro schema the datum was written with; the relay resolves its registry id.
    pub schema: String,
    /// The Avro binary datum, unframed.
    pub datum: Vec<u8>,
    /// CloudEvents headers fixed at enqueue (source, time, traceparent).
    pub headers: Vec<(String, String)>,
    /// Enqueue time, milliseconds since the epoch.
    pub created_at_ms: i64,
}

/// A database the outbox can live in: SQLite or PostgreSQL.
pub trait OutboxDatabase: sqlx::Database {
    /// Inserts `row` inside the caller's transaction.
    fn insert(
        tx: &mut Transaction<'_, Self>,
        row: &OutboxRow,
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;
}

fn headers_json(row: &OutboxRow) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        row.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    serde_json::Value::Object(map).to_string()
}

fn parse_headers(text: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
        Ok(map) => map.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_owned()))).collect(),
        Err(_) => Vec::new(),
    }
}

impl OutboxDatabase for Sqlite {
    async fn insert(tx: &mut Transaction<'_, Self>, row: &OutboxRow) -> Result<(), OutboxError> {
        sqlx::query(
            "INSERT INTO fanout_outbox (event_id, event_type, topic, key, schema, datum, headers, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(row.event_id.to_string())
        .bind(&row.event_type)
        .bind(&row.topic)
        .bind(&row.key)
        .bind(&row.schema)
        .bind(&row.datum)
        .bind(headers_json(row))
        .bind(row.created_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl OutboxDatabase for Postgres {
    async fn insert(tx: &mut Transaction<'_, Self>, row: &OutboxRow) -> Result<(), OutboxError> {
        sqlx::query(
            "INSERT INTO fanout_outbox (event_id, event_type, topic, key, schema, datum, headers, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.event_id.to_string())
        .bind(&row.event_type)
        .bind(&row.topic)
        .bind(&row.key)
        .bind(&row.schema)
        .bind(&row.datum)
        .bind(headers_json(row))
        .bind(row.created_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The outbox table on SQLite, in block [`fanout_migrate::OUTBOX_BLOCK`].
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
/// The outbox table on PostgreSQL (`BIGSERIAL`, `BYTEA`), in the same block: one database is
/// one backend, so the two sets never meet.
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

const OUTBOX: Blocks = Blocks::Only(fanout_migrate::OUTBOX_BLOCK);

pub(super) async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), OutboxError> {
    Ok(fanout_migrate::apply(pool, "the outbox", OUTBOX, &SQLITE_MIGRATIONS).await?)
}

pub(super) async fn migrate_postgres(pool: &PgPool) -> Result<(), OutboxError> {
    Ok(fanout_migrate::apply(pool, "the outbox", OUTBOX, &POSTGRES_MIGRATIONS).await?)
}

/// The relay's view of either database.
#[derive(Debug, Clone)]
pub(super) enum RelayDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

macro_rules! pending_row {
    ($row:expr) => {{
        let row = $row;
        let event_id: String = row.try_get("event_id")?;
        OutboxRow {
            seq: row.try_get("seq")?,
            event_id: Uuid::parse_str(&event_id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            event_type: row.try_get("event_type")?,
            topic: row.try_get("topic")?,
            key: row.try_get("key")?,
            schema: row.try_get("schema")?,
            datum: row.try_get("datum")?,
            headers: parse_headers(&row.try_get::<String, _>("headers")?),
            created_at_ms: row.try_get("created_at_ms")?,
        }
    }};
}

const PENDING: &str = "SELECT seq, event_id, event_type, topic, key, schema, datum, headers, created_at_ms \
     FROM fanout_outbox WHERE sent_at_ms IS NULL ORDER BY seq LIMIT ";

impl RelayDb {
    pub(super) async fn connect(url: &str) -> Result<Self, OutboxError> {
        if url.starts_with("sqlite:") {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
            let pool = SqlitePool::connect_with(options.create_if_missing(true)).await?;
            migrate_sqlite(&pool).await?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPool::connect(url).await?;
            migrate_postgres(&pool).await?;
            Ok(Self::Postgres(pool))
        } else {
            Err(OutboxError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// The oldest unsent rows, in insertion order.
    pub(super) async fn pending(&self, limit: i64) -> Result<Vec<OutboxRow>, OutboxError> {
        let sql = format!("{PENDING}{limit}");
        let rows = match self {
            Self::Sqlite(pool) => {
                let rows = sqlx::query(&sql).fetch_all(pool).await?;
                rows.iter().map(|r| Ok(pending_row!(r))).collect::<Result<Vec<_>, sqlx::Error>>()?
            }
            Self::Postgres(pool) => {
                let rows = sqlx::query(&sql).fetch_all(pool).await?;
                rows.iter().map(|r| Ok(pending_row!(r))).collect::<Result<Vec<_>, sqlx::Error>>()?
            }
        };
        Ok(rows)
    }

    /// Marks rows up to and including `last_seq` sent (they were published in order).
    pub(super) async fn mark_sent(&self, first_seq: i64, last_seq: i64) -> Result<(), OutboxError> {
        let now = chrono::Utc::now().timestamp_millis();
        match self {
            Self::Sqlite(pool) => {
                sqlx::query("UPDATE fanout_outbox SET sent_at_ms = ?1 WHERE seq BETWEEN ?2 AND ?3 AND sent_at_ms IS NULL")
                    .bind(now)
                    .bind(first_seq)
                    .bind(last_seq)
                    .execute(pool)
                    .await?;
            }
            Self::Postgres(pool) => {
                sqlx::query("UPDATE fanout_outbox SET sent_at_ms = $1 WHERE seq BETWEEN $2 AND $3 AND sent_at_ms IS NULL")
                    .bind(now)
                    .bind(first_seq)
                    .bind(last_seq)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Unsent rows.
    pub(super) async fn backlog(&self) -> Result<i64, OutboxError> {
        let sql = "SELECT COUNT(*) FROM fanout_outbox WHERE sent_at_ms IS NULL";
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// Deletes rows sent before `cutoff_ms`, keeping the table small.
    pub(super) async fn purge_sent(&self, cutoff_ms: i64) -> Result<u64, OutboxError> {
        Ok(match self {
            Self::Sqlite(pool) => {
                sqlx::query("DELETE FROM fanout_outbox WHERE sent_at_ms < ?1")
                    .bind(cutoff_ms)
                    .execute(pool)
                    .await?
            }
            .rows_affected(),
            Self::Postgres(pool) => {
                sqlx::query("DELETE FROM fanout_outbox WHERE sent_at_ms < $1")
                    .bind(cutoff_ms)
                    .execute(pool)
                    .await?
            }
            .rows_affected(),
        })
    }
}
