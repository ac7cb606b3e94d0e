//! Counting posts by category and by city.

use std::collections::BTreeMap;

use fanout_consumer::{async_trait, sql, EventMeta, Handler, HandlerError};
use fanout_events::PostPublished;
use sqlx::AnyConnection;

/// Adds one post to its author's counters for the post's category and city.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountPosts;

#[async_trait]
impl Handler for CountPosts {
    type Event = PostPublished;

    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        self.handle_batch(vec![(event, meta.clone())], tx).await
    }

    /// Counts the batch in memory, then one upsert per (user, category) and per (user, city).
    async fn handle_batch(
        &self,
        events: Vec<(PostPublished, EventMeta)>,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        let mut by_category: BTreeMap<(i64, &str), i64> = BTreeMap::new();
        let mut by_city: BTreeMap<(i64, &str), i64> = BTreeMap::new();
        for (event, _) in &events {
            *by_category.entry((event.user_id, event.category.as_str())).or_default() += 1;
            *by_city.entry((event.user_id, event.city.as_str())).or_default() += 1;
        }
        upsert(tx, "stats_by_category", "category", by_category).await?;
        upsert(tx, "stats_by_city", "city", by_city).await
    }
}

/// Adds `counts` to `table`'s (user_id, `column`) counters, a chunk of rows per statement.
async fn upsert(
    tx: &mut AnyConnection,
    table: &str,
    column: &str,
    counts: BTreeMap<(i64, &str), i64>,
) -> Result<(), HandlerError> {
    let rows: Vec<((i64, &str), i64)> = counts.into_iter().collect();
    for chunk in rows.chunks(sql::MAX_ROWS) {
        let statement = format!(
            "INSERT INTO {table} (user_id, {column}, posts) VALUES {} \
             ON CONFLICT (user_id, {column}) DO UPDATE SET posts = {table}.posts + excluded.posts",
            sql::values(tx, chunk.len(), 3)
        );
        let mut query = sqlx::query(&statement);
        for ((user_id, value), posts) in chunk {
            query = query.bind(*user_id).bind(*value).bind(*posts);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}
