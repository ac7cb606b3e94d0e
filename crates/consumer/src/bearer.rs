//! A bearer token in front of a service's HTTP endpoints (`[http] bearer_token`), shared by every
//! Fanout process that serves `/metrics`: consumer services, the gateway's admin port, the
//! scheduler and the flow engine.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use fanout_core::Secret;
use subtle::ConstantTimeEq;

/// The paths served without the token: an orchestrator's liveness and readiness probes cannot
/// read a secret, and these answer only "up" and "ready" with a few counts.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// `router` with every route but [`OPEN_PATHS`] (unknown paths included) answering 401 unless the
/// request carries `Authorization: Bearer <token>`; compared in constant time. `None`: `router`
/// as it is.
///
/// ```
/// use fanout_consumer::axum::{routing::get, Router};
///
/// let router = Router::new().route("/metrics", get(|| async { "# metrics" }));
/// let locked = fanout_consumer::require_bearer(router, Some(fanout_core::Secret::new("t0k")));
/// # let _ = locked;
/// ```
pub fn require_bearer(router: Router, token: Option<Secret>) -> Router {
    match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(token, check)),
        None => router,
    }
}

async fn check(State(token): State<Secret>, request: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(presented) if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) => {
            next.run(request).await
        }
        Some(_) => refuse(request.uri().path(), "the bearer token was not accepted"),
        None => refuse(request.uri().path(), "this endpoint needs Authorization: Bearer <token>"),
    }
}

/// 401 with `{"error": reason}`, as the read APIs' other errors, and the challenge.
fn refuse(path: &str, reason: &'static str) -> Response {
    tracing::info!(path, reason, "HTTP request refused");
    let body = format!("{{\"error\":\"{reason}\"}}");
    let mut response =
        (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"fanout\""));
    response
}
