//! `/metrics`, `/healthz` and `/readyz`.

use axum::{http::StatusCode, routing::get, Router};

/// Serves until the task is aborted; `/readyz` is 200 once `joined` says the engine is a group
/// member with its partitions' runs restored. With `token`, `/metrics` needs it (the probes do
/// not).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    joined: impl Fn() -> bool + Clone + Send + Sync + 'static,
    token: Option<fanout_core::Secret>,
) {
    let app = Router::new().route("/metrics", get(metrics)).route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get(move || {
            let joined = joined.clone();
            async move {
                if joined() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "joining")
                }
            }
        }),
    );
    let app = fanout_service::require_bearer(app, token);
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "the flow engine's HTTP endpoint stopped");
    }
}

async fn metrics() -> Result<String, StatusCode> {
    prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}
