//! Granting pins: one grant row per HOUSING post and one credits update per user per batch.

use fanout_consumer::{async_trait, EventMeta, Handler, HandlerError};
use fanout_events::{Category, PostPublished};
use fanout_service::{Entry, Ledger};
use sqlx::AnyConnection;

use crate::PinningSettings;

/// The grants and the credits they feed.
const GRANTS: Ledger = Ledger {
    table: "pinning_grants",
    amount: "credits",
    at: "granted_at_ms",
    totals: "pinning_credits",
    total: "credits",
    entries: None,
};

/// Grants the author of a HOUSING post the configured top-placement credits; other posts are
/// ignored.
#[derive(Debug, Clone)]
pub struct GrantPins {
    credits: i64,
}

impl GrantPins {
    /// A handler granting `settings.credits_per_housing_post` credits per HOUSING post.
    pub fn new(settings: &PinningSettings) -> Self {
        Self { credits: settings.credits_per_housing_post }
    }
}

#[async_trait]
impl Handler for GrantPins {
    type Event = PostPublished;

    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        self.handle_batch(vec![(event, meta.clone())], tx).await
    }

    /// One multi-row grant insert for the batch's HOUSING posts, then one credits upsert per user.
    async fn handle_batch(
        &self,
        events: Vec<(PostPublished, EventMeta)>,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        let housing: Vec<Entry<'_>> = events
            .iter()
            .filter(|(event, _)| event.category == Category::Housing)
            .map(|(event, meta)| Entry {
                event_id: &meta.event_id,
                user_id: event.user_id,
                post_id: event.post_id,
            })
            .collect();
        if housing.is_empty() {
            return Ok(());
        }
        let granted = GRANTS.credit(tx, &housing, self.credits).await?;
        if granted < housing.len() {
            tracing::info!(skipped = housing.len() - granted, "events already granted; not granted again");
        }
        Ok(())
    }
}
