//! Counting posts by category and by city.

use fanout_consumer::{async_trait, EventMeta, Handler, HandlerError};
use fanout_events::PostPublished;
use sqlx::AnyConnection;

/// Adds one post to its author's counters for the post's category and city.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountPosts;

#[async_trait]
impl Handler<PostPublished> for CountPosts {
    async fn handle(
        &self,
        event: PostPublished,
        _meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO stats_by_category (user_id, category, posts) VALUES ($1, $2, 1) \
             ON CONFLICT (user_id, category) DO UPDATE SET posts = stats_by_category.posts + 1",
        )
        .bind(event.user_id)
        .bind(event.category.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO stats_by_city (user_id, city, posts) VALUES ($1, $2, 1) \
             ON CONFLICT (user_id, city) DO UPDATE SET posts = stats_by_city.posts + 1",
        )
        .bind(event.user_id)
        .bind(&event.city)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
