//! Crediting beans: one ledger row per JOB post and one balance update per user per batch.

use fanout_consumer::{async_trait, EventMeta, Handler, HandlerError};
use fanout_events::{Category, PostPublished};
use fanout_service::{Entry, Ledger};
use sqlx::AnyConnection;

use crate::RewardsSettings;

/// The ledger of credited beans and the balances it feeds.
const LEDGER: Ledger = Ledger {
    table: "rewards_ledger",
    amount: "amount",
    at: "credited_at_ms",
    totals: "rewards_balances",
    total: "balance",
    entries: Some("ledger_entries"),
};

/// Credits the author of a JOB post with the configured beans; other posts are ignored.
#[derive(Debug, Clone)]
pub struct CreditBeans {
    amount: i64,
}

impl CreditBeans {
    /// A handler crediting `settings.beans_per_job_post` beans per JOB post.
    pub fn new(settings: &RewardsSettings) -> Self {
        Self { amount: settings.beans_per_job_post }
    }
}

#[async_trait]
impl Handler for CreditBeans {
    type Event = PostPublished;

    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        self.handle_batch(vec![(event, meta.clone())], tx).await
    }

    /// One multi-row ledger insert for the batch's JOB posts, then one balance upsert per user.
    async fn handle_batch(
        &self,
        events: Vec<(PostPublished, EventMeta)>,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        let jobs: Vec<Entry<'_>> = events
            .iter()
            .filter(|(event, _)| event.category == Category::Job)
            .map(|(event, meta)| Entry {
                event_id: &meta.event_id,
                user_id: event.user_id,
                post_id: event.post_id,
            })
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        let credited = LEDGER.credit(tx, &jobs, self.amount).await?;
        if credited < jobs.len() {
            tracing::info!(
                skipped = jobs.len() - credited,
                "events already in the ledger; not credited again"
            );
        }
        Ok(())
    }
}
