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

use crate::PublishOptions;

use fanout_core::Event;
use tracing::field::{display, Empty};
use tracing::Instrument;
use uuid::Uuid;

/// Why an outbox operation failed.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The database refused a statement.
    #[error("outbox database")]
    Database(#[from] sqlx::Error),
    /// The event could not be Avro-encoded with its own schema.
    #[error("cannot encode {event_type} for the outbox")]
    Encode {
        /// The event type.
        event_type: &'static str,
        /// The Avro encoder's error (boxed: the encoding library's types are not part of the SDK).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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

fanout_core::debug_as_report!(OutboxError);

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
        self.enqueue_with(tx, event, &PublishOptions::default()).await
    }

    /// As [`Outbox::enqueue`], published as `options` say (another topic, a trace to continue,
    /// an event id of the caller's).
    ///
    /// When spans are exported the event's `traceparent` names this call's `enqueue` span (a
    /// child of the caller's current span), so its consumers' `handle` spans join the trace of
    /// the request that made the business change, not of the relay that published it later.
    pub async fn enqueue_with<DB: OutboxDatabase, T: Event>(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        event: &T,
        options: &PublishOptions,
    ) -> Result<Uuid, OutboxError> {
        let topic = options.topic_for::<T>();
        let span = tracing::info_span!("enqueue", event_type = T::TYPE, topic, event_id = Empty);
        let envelope = options.envelope::<T>(&self.source, &span);
        span.record("event_id", display(envelope.id()));
        let row = OutboxRow::new(topic, event, &envelope)?;
        DB::insert(tx, &row).instrument(span).await?;
        Ok(row.event_id)
    }
}
