//! Granting pins: one grant row and a credits update per HOUSING post.

use std::time::{SystemTime, UNIX_EPOCH};

use fanout_consumer::{async_trait, EventMeta, Handler, HandlerError};
use fanout_events::{Category, PostPublished};
use sqlx::AnyConnection;

use crate::PinningSettings;

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
impl Handler<PostPublished> for GrantPins {
    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        if event.category != Category::Housing {
            return Ok(());
        }
        let granted_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        // Grants are keyed by event id: a duplicate older than the runtime's dedupe retention
        // inserts nothing and grants nothing.
        let inserted = sqlx::query(
            "INSERT INTO pinning_grants (event_id, user_id, post_id, credits, granted_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&meta.event_id)
        .bind(event.user_id)
        .bind(event.post_id)
        .bind(self.credits)
        .bind(granted_at_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tracing::info!(event_id = %meta.event_id, "event already granted; not granted again");
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO pinning_credits (user_id, credits) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET credits = pinning_credits.credits + excluded.credits",
        )
        .bind(event.user_id)
        .bind(self.credits)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
