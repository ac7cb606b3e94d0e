//! Crediting beans: one ledger row and a balance update per JOB post.

use std::time::{SystemTime, UNIX_EPOCH};

use fanout_consumer::{async_trait, EventMeta, Handler, HandlerError};
use fanout_events::{Category, PostPublished};
use sqlx::AnyConnection;

use crate::RewardsSettings;

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
impl Handler<PostPublished> for CreditBeans {
    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        if event.category != Category::Job {
            return Ok(());
        }
        let credited_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        // The ledger is keyed by event id: if this event was credited before (a duplicate older
        // than the runtime's dedupe retention), nothing is inserted and the balance stays.
        let inserted = sqlx::query(
            "INSERT INTO rewards_ledger (event_id, user_id, post_id, amount, credited_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&meta.event_id)
        .bind(event.user_id)
        .bind(event.post_id)
        .bind(self.amount)
        .bind(credited_at_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tracing::info!(event_id = %meta.event_id, "event already in the ledger; not credited again");
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO rewards_balances (user_id, balance, ledger_entries) VALUES ($1, $2, 1) \
             ON CONFLICT (user_id) DO UPDATE SET \
             balance = rewards_balances.balance + excluded.balance, \
             ledger_entries = rewards_balances.ledger_entries + 1",
        )
        .bind(event.user_id)
        .bind(self.amount)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
