//! `GET /v1/users/{user_id}/beans`.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use fanout_service::{api, api::ApiError};
use serde::Serialize;
use sqlx::{AnyPool, Row};

/// A user's beans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Beans {
    user_id: i64,
    balance: i64,
    ledger_entries: i64,
}

/// The read API, over the service's database.
pub fn router(pool: AnyPool) -> Router {
    Router::new().route("/v1/users/{user_id}/beans", get(beans)).with_state(pool)
}

async fn beans(State(pool): State<AnyPool>, Path(raw): Path<String>) -> Result<Json<Beans>, ApiError> {
    let user_id = api::user_id(&raw)?;
    let row = sqlx::query("SELECT balance, ledger_entries FROM rewards_balances WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(&pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user_id} has never been credited beans")))?;
    Ok(Json(Beans { user_id, balance: row.try_get(0)?, ledger_entries: row.try_get(1)? }))
}
