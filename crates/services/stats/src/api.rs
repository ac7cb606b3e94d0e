//! `GET /v1/users/{user_id}/stats`.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use fanout_events::Category;
use fanout_service::{api, api::ApiError};
use serde::Serialize;
use sqlx::{AnyPool, Row};

/// A user's post counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Stats {
    user_id: i64,
    posts: i64,
    /// Every category, zero included, so clients see a stable shape.
    by_category: BTreeMap<String, i64>,
    by_city: BTreeMap<String, i64>,
}

/// The read API, over the service's database.
pub fn router(pool: AnyPool) -> Router {
    Router::new().route("/v1/users/{user_id}/stats", get(stats)).with_state(pool)
}

async fn stats(State(pool): State<AnyPool>, Path(raw): Path<String>) -> Result<Json<Stats>, ApiError> {
    let user_id = api::user_id(&raw)?;
    // One statement, so the category and city counters come from one snapshot even while a
    // batch is being applied.
    let rows = sqlx::query(
        "SELECT 'category' AS kind, category AS name, posts FROM stats_by_category WHERE user_id = $1 \
         UNION ALL \
         SELECT 'city' AS kind, city AS name, posts FROM stats_by_city WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&pool)
    .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("user {user_id} has never posted")));
    }
    let mut by_category: BTreeMap<String, i64> =
        Category::ALL.iter().map(|c| (c.as_str().to_owned(), 0)).collect();
    let mut by_city = BTreeMap::new();
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let name: String = row.try_get("name")?;
        let posts: i64 = row.try_get("posts")?;
        if kind == "category" {
            by_category.insert(name, posts);
        } else {
            by_city.insert(name, posts);
        }
    }
    let posts = by_category.values().sum();
    Ok(Json(Stats { user_id, posts, by_category, by_city }))
}
