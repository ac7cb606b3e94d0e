//! `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, routing::get, Router};

use crate::scheduler::{readiness, Shared as SharedState};

/// Serves until the task is aborted; with `token`, `/metrics` needs it (the probes do not).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<SharedState>,
    token: Option<fanout_core::Secret>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(shared);
    let app = fanout_service::require_bearer(app, token);
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "the scheduler's HTTP endpoint stopped");
    }
}

async fn metrics(State(shared): State<Arc<SharedState>>) -> Result<String, StatusCode> {
    shared.refresh_gauges();
    prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

/// Ready once it joined its group and read each partition it owns: it delivers everything it
/// owns. An instance that owns nothing (more instances than partitions) is a ready standby: it
/// takes partitions over when another instance goes.
async fn ready(State(shared): State<Arc<SharedState>>) -> (StatusCode, String) {
    let (joined, owned, loaded) = readiness(&shared);
    let status = if joined && loaded == owned { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let role = match (joined, owned) {
        (false, _) => " joining",
        (true, 0) => " standby",
        _ => "",
    };
    (status, format!("partitions={owned} loaded={loaded}{role}"))
}
