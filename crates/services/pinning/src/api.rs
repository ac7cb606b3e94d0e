//! `GET /v1/users/{user_id}/pins`.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use fanout_service::{api, api::ApiError};
use serde::Serialize;
use sqlx::{AnyPool, Row};

/// A user's top-placement credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Pins {
    user_id: i64,
    credits: i64,
}

/// The read API, over the service's database.
pub fn router(pool: AnyPool) -> Router {
    Router::new().route("/v1/users/{user_id}/pins", get(pins)).with_state(pool)
}

async fn pins(State(pool): State<AnyPool>, Path(raw): Path<String>) -> Result<Json<Pins>, ApiError> {
    let user_id = api::user_id(&raw)?;
    let row = sqlx::query("SELECT credits FROM pinning_credits WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(&pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user_id} has never been granted pins")))?;
    Ok(Json(Pins { user_id, credits: row.try_get(0)? }))
}
