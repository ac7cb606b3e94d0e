//! Publishes outbox rows in insertion order and marks them sent.

use std::{sync::OnceLock, time::Duration};

use fanout_kafka::Record;
use fanout_schema_registry::wire;
use prometheus::{register_int_gauge_vec, IntGaugeVec};

use super::{store::RelayDb, OutboxError, OutboxRow};
use crate::Publisher;

/// `fanout_outbox_backlog{table}`: outbox rows enqueued and not yet published.
fn backlog_gauge() -> &'static IntGaugeVec {
    static BACKLOG: OnceLock<IntGaugeVec> = OnceLock::new();
    BACKLOG.get_or_init(|| {
        // Registration fails only on a name clash inside this process, which is a bug in Fanout
        // itself, caught by the first test that relays.
        register_int_gauge_vec!(
            "fanout_outbox_backlog",
            "Outbox rows enqueued and not yet published, by outbox table.",
            &["table"]
        )
        .expect("fanout_outbox_backlog registers once")
    })
}

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `sqlite:path.db` or `postgres://...`: the database holding `fanout_outbox`.
    pub db_url: String,
    /// Rows published per round; a crash re-publishes at most one round.
    pub batch_size: i64,
    /// How long to wait before looking again when nothing is pending.
    pub idle_poll: Duration,
    /// How long sent rows are kept before being deleted.
    pub retention: Duration,
}

impl RelayConfig {
    /// Defaults for `db_url`: batches of 500, a 100 ms idle poll, one hour of sent rows kept.
    pub fn new(db_url: impl Into<String>) -> Self {
        Self {
            db_url: db_url.into(),
            batch_size: 500,
            idle_poll: Duration::from_millis(100),
            retention: Duration::from_secs(3600),
        }
    }
}

/// What a relay run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Rows published and marked sent.
    pub published: u64,
    /// Rounds where publishing failed and rows were left pending for the next round.
    pub failed_rounds: u64,
}

/// Runs the relay until `shutdown` resolves: publishes pending rows through `publisher`, in
/// order, and marks them sent after Kafka acknowledged them. Run one relay per outbox table;
/// ordering across several relays is not guaranteed.
pub async fn relay(
    config: RelayConfig,
    publisher: &Publisher,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RelayStats, OutboxError> {
    let db = RelayDb::connect(&config.db_url).await?;
    let backlog = backlog_gauge().with_label_values(&["fanout_outbox"]);
    let mut stats = RelayStats::default();
    let mut last_purge = std::time::Instant::now();
    tokio::pin!(shutdown);
    loop {
        let pending = db.pending(config.batch_size).await?;
        if pending.is_empty() {
            backlog.set(0);
            if last_purge.elapsed() > Duration::from_secs(60) {
                let cutoff = chrono::Utc::now().timestamp_millis() - config.retention.as_millis() as i64;
                db.purge_sent(cutoff).await?;
                last_purge = std::time::Instant::now();
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(stats),
                _ = tokio::time::sleep(config.idle_poll) => continue,
            }
        }
        backlog.set(db.backlog().await?);
        let first = pending[0].seq;
        let payloads = frame_all(publisher, &pending).await?;
        let records: Vec<Record<'_>> = pending
            .iter()
            .zip(&payloads)
            .map(|(row, payload)| Record {
                partition: None,
                topic: &row.topic,
                key: Some(&row.key),
                payload: Some(payload),
                headers: row.envelope().headers().iter().map(|(name, value)| (*name, Some(*value))).collect(),
            })
            .collect();
        let results = publisher.raw().send_all(records).await;
        // Only the unbroken prefix of acknowledged rows is marked: rows after a failure are
        // published again next round, so none is lost (duplicates dedupe on ce_id downstream).
        let acked = results.iter().take_while(|r| r.is_ok()).count();
        if acked > 0 {
            db.mark_sent(first, pending[acked - 1].seq).await?;
            stats.published += acked as u64;
        }
        if acked < results.len() {
            stats.failed_rounds += 1;
            if let Some(Err(e)) = results.into_iter().nth(acked) {
                tracing::warn!(error = %fanout_core::report(&e), "outbox relay: publish failed; retrying the rest next round");
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(stats),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
            return Ok(stats);
        }
    }
}

/// Each row's datum in the Confluent wire format: the registry id of the schema it was written
/// with, then the datum.
async fn frame_all(publisher: &Publisher, rows: &[OutboxRow]) -> Result<Vec<Vec<u8>>, OutboxError> {
    let mut payloads = Vec::with_capacity(rows.len());
    for row in rows {
        let schema_id = publisher.schema_id(&row.topic, &row.schema).await?;
        let mut payload = Vec::with_capacity(5 + row.datum.len());
        wire::write_header(schema_id, &mut payload);
        payload.extend_from_slice(&row.datum);
        payloads.push(payload);
    }
    Ok(payloads)
}
