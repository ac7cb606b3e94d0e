//! The transactional outbox: publish exactly when the caller's own database transaction commits.
//!
//! [`Outbox::enqueue`] writes the encoded event into the `fanout_outbox` table inside the caller's
//! sqlx transaction (SQLite or PostgreSQL), so the event exists if and only if the business
//! change commits. The [`relay`] publishes pending rows in insertion order and marks them sent;
//! killed at any point it publishes the unmarked rows again on restart (at-least-once; consumers
//! dedupe on the event id, which is fixed at enqueue time).
//!
//! ```no_run
//! # async fn example(pool: sqlx::SqlitePool, event: fanout_events::PostPublished) -> Result<(), Box<dyn std::error::Error>> {
//! use fanout_producer::outbox::Outbox;
//!
//! let outbox = Outbox::new("post-service");
//! Outbox::migrate_sqlite(&pool).await?;
//! let mut tx = pool.begin().await?;
//! // ... the business change, in the same transaction ...
//! let event_id = outbox.enqueue(&mut tx, &event).await?;
//! tx.commit().await?;
//! # let _ = event_id; Ok(()) }
//! ```

mod relay;
mod store;

pub use relay::{relay, RelayConfig, RelayStats};
pub use store::{OutboxDatabase, OutboxRow};

use fanout_core::{headers, trace::TraceParent, Event};
use uuid::Uuid;

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The database refused a statement.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The event could not be Avro-encoded with its own schema.
    #[error("cannot encode {event_type} for the outbox: {reason}")]
    Encode {
        /// The event type.
        event_type: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// The outbox table could not be created or migrated.
    #[error(transparent)]
    Migration(#[from] fanout_migrate::MigrationError),
    /// A row could not be framed or published.
    #[error(transparent)]
    Publish(#[from] crate::PublishError),
    /// The relay's database URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported outbox database URL {0:?}: use sqlite:... or postgres://...")]
    UnsupportedUrl(String),
}

/// Enqueues events into the outbox table, in the caller's transaction.
#[derive(Debug, Clone)]
pub struct Outbox {
    source: String,
}

impl Outbox {
    /// An outbox whose events carry `source` as their CloudEvents `ce_source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self { source: source.into() }
    }

    /// Creates or migrates the outbox table in a SQLite database (see [`fanout_migrate`]).
    pub async fn migrate_sqlite(pool: &sqlx::SqlitePool) -> Result<(), OutboxError> {
        store::migrate_sqlite(pool).await
    }

    /// Creates or migrates the outbox table in a PostgreSQL database; instances starting together
    /// take turns (see [`fanout_migrate`]).
    pub async fn migrate_postgres(pool: &sqlx::PgPool) -> Result<(), OutboxError> {
        store::migrate_postgres(pool).await
    }

    /// Writes `event` into the outbox inside `tx`; it is published to the event type's topic after
    /// `tx` commits, never if it rolls back. Returns the event id (`ce_id`) consumers will see.
    pub async fn enqueue<DB: OutboxDatabase, T: Event>(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        event: &T,
    ) -> Result<Uuid, OutboxError> {
        self.enqueue_to(tx, T::TOPIC, event, None).await
    }

    /// As [`Outbox::enqueue`], to `topic`, continuing the trace `parent` when given.
    pub async fn enqueue_to<DB: OutboxDatabase, T: Event>(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        topic: &str,
        event: &T,
        parent: Option<TraceParent>,
    ) -> Result<Uuid, OutboxError> {
        let row = self.row(topic, event, parent)?;
        let id = row.event_id;
        DB::insert(tx, &row).await?;
        Ok(id)
    }

    fn row<T: Event>(
        &self,
        topic: &str,
        event: &T,
        trace: Option<TraceParent>,
    ) -> Result<OutboxRow, OutboxError> {
        let encode_error =
            |e: apache_avro::Error| OutboxError::Encode { event_type: T::TYPE, reason: e.to_string() };
        let value = apache_avro::to_value(event).map_err(encode_error)?;
        let datum = apache_avro::to_avro_datum(T::schema(), value).map_err(encode_error)?;
        let event_id = Uuid::now_v7();
        let time = chrono::Utc::now();
        let trace = trace.map(|t| t.child()).unwrap_or_else(TraceParent::new_root);
        Ok(OutboxRow {
            seq: 0,
            event_id,
            event_type: T::TYPE.to_owned(),
            topic: topic.to_owned(),
            key: event.key(),
            schema: T::SCHEMA.to_owned(),
            datum,
            headers: vec![
                (headers::SOURCE.to_owned(), self.source.clone()),
                (headers::TIME.to_owned(), time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                (headers::TRACEPARENT.to_owned(), trace.to_string()),
            ],
            created_at_ms: time.timestamp_millis(),
        })
    }
}
