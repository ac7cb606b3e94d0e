//! What the services' read APIs share: JSON error bodies with the right status, and id parsing.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

/// An error answered as `{"error": "..."}` with its status.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

fanout_core::debug_as_report!(ApiError);

impl ApiError {
    /// 404: the resource does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    /// 503: the service cannot answer right now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into() }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message in the body.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// A failed query is the service's problem, not the client's: 503 (the database may be back in
/// a moment), logged here with the detail the body does not carry.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        tracing::warn!(%error, "read API query failed");
        Self::unavailable("the database could not be read")
    }
}

/// Parses a user id from a path segment; 400 naming the bad value otherwise.
pub fn user_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::bad_request(format!("user id must be a 64-bit integer, got {raw:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_or_are_bad_requests() {
        assert_eq!(user_id("42"), Ok(42));
        assert_eq!(user_id("-3"), Ok(-3));
        for raw in ["", "abc", "1.5", "99999999999999999999", " 7"] {
            let err = user_id(raw).expect_err(raw);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{raw}");
        }
    }

    #[tokio::test]
    async fn errors_answer_json() {
        let response = ApiError::not_found("no user 7").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(json, serde_json::json!({"error": "no user 7"}));
    }
}
