//! The `fanout_outbox` table in SQLite and PostgreSQL.

use std::{
    future::Future,
    time::{Duration, UNIX_EPOCH},
};

use fanout_core::{envelope::Envelope, headers, trace::TraceParent, Event};
use fanout_migrate::Blocks;
use sqlx::{migrate::Migrator, PgPool, Postgres, Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use super::OutboxError;

/// One enqueued event: its encoded payload and its envelope, fixed at enqueue so that every
/// publication of the row (a relay restarted mid-batch publishes it again) carries the same
/// `ce_id`, `ce_time` and trace, and consumers dedupe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Insertion order (assigned by the database).
    pub seq: i64,
    /// The event id (`ce_id`).
    pub event_id: Uuid,
    /// The CloudEvents type (`ce_type`).
    pub event_type: String,
    /// Destination topic.
    pub topic: String,
    /// Partitioning key.
    pub key: Vec<u8>,
    /// The Avro schema the datum was written with; the relay resolves its registry id.
    pub schema: String,
    /// The Avro binary datum, unframed.
    pub datum: Vec<u8>,
    /// The emitting service (`ce_source`).
    pub source: String,
    /// The event's trace context (`traceparent`).
    pub trace: TraceParent,
    /// Enqueue time, which is the event's `ce_time`, milliseconds since the epoch.
    pub created_at_ms: i64,
}

impl OutboxRow {
    /// The row of `event` for `topic` with `envelope` (which [`super::Outbox::enqueue`] makes
    /// fresh), its datum encoded with the event's own schema.
    pub fn new<T: Event>(topic: &str, event: &T, envelope: &Envelope<'_>) -> Result<Self, OutboxError> {
        let encode_error =
            |source: apache_avro::Error| OutboxError::Encode { event_type: T::TYPE, source: source.into() };
        let value = apache_avro::to_value(event).map_err(encode_error)?;
        let datum = apache_avro::to_avro_datum(T::schema(), value).map_err(encode_error)?;
        let since = envelope.time().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(Self {
            seq: 0,
            event_id: envelope.id(),
            event_type: envelope.event_type().to_owned(),
            topic: topic.to_owned(),
            key: event.key(),
            schema: T::SCHEMA.to_owned(),
            datum,
            source: envelope.source().to_owned(),
            trace: envelope.trace(),
            created_at_ms: i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        })
    }

    /// The envelope fixed at enqueue, rebuilt: the relay's headers are the ones the SDK would
    /// have sent for the same id, time and trace, byte for byte.
    pub fn envelope(&self) -> Envelope<'_> {
        let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(self.created_at_ms).unwrap_or(0));
        Envelope::from_parts(&self.event_type, &self.source, self.event_id, time, self.trace)
    }
}

/// A database the outbox can live in: SQLite or PostgreSQL.
pub trait OutboxDatabase: sqlx::Database {
    /// Inserts `row` inside the caller's transaction.
    fn insert(
        tx: &mut Transaction<'_, Self>,
        row: &OutboxRow,
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;
}

/// The `headers` column: the envelope's headers the row does not have a column for (source, time,
/// trace), as a JSON object of texts. Relays of every version read them from there.
const STORED_HEADERS: [&str; 3] = [headers::SOURCE, headers::TIME, headers::TRACEPARENT];

fn headers_json(row: &OutboxRow) -> String {
    let envelope = row.envelope();
    let map: serde_json::Map<String, serde_json::Value> = envelope
        .headers()
        .iter()
        .filter(|(name, _)| STORED_HEADERS.contains(name))
        .map(|(name, value)| ((*name).to_owned(), String::from_utf8_lossy(value).into_owned().into()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The source and trace of the `headers` column. A row whose trace is missing or malformed
/// (written by hand) is published as the root of a new trace rather than not at all.
fn parse_headers(text: &str) -> (String, TraceParent) {
    let map = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text).unwrap_or_default();
    let received =
        Envelope::parse(map.iter().map(|(name, value)| (name.as_str(), value.as_str().map(str::as_bytes))));
    let source = received.source.unwrap_or_default().to_owned();
    (source, received.trace.unwrap_or_else(TraceParent::new_root))
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
        let (source, trace) = parse_headers(&row.try_get::<String, _>("headers")?);
        OutboxRow {
            seq: row.try_get("seq")?,
            event_id: Uuid::parse_str(&event_id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            event_type: row.try_get("event_type")?,
            topic: row.try_get("topic")?,
            key: row.try_get("key")?,
            schema: row.try_get("schema")?,
            datum: row.try_get("datum")?,
            source,
            trace,
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
