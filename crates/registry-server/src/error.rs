//! Errors: [`RegistryError`] for starting and running the server, [`ApiError`] for HTTP answers
//! in Confluent's shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The content type of every answer, as Confluent's registry sends it.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why the registry could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A Kafka client could not be created or refused an operation.
    #[error("kafka {operation} failed: {reason}")]
    Kafka {
        /// What was attempted.
        operation: &'static str,
        /// The client's answer.
        reason: String,
    },
    /// The state topic could not be read to its end in time.
    #[error("could not read registry topic `{topic}` to its end within {seconds} s")]
    CatchUpTimeout {
        /// The topic.
        topic: String,
        /// How long was waited.
        seconds: u64,
    },
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("http server failed: {0}")]
    Serve(std::io::Error),
    /// A background task panicked or was cancelled.
    #[error("registry task failed: {0}")]
    Task(String),
}

impl RegistryError {
    pub(crate) fn kafka(operation: &'static str, reason: impl ToString) -> Self {
        RegistryError::Kafka { operation, reason: reason.to_string() }
    }
}

/// A Confluent-shaped error answer: `{"error_code":N,"message":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Confluent error code, e.g. 40401.
    pub code: u32,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 404 for a route that does not exist.
    pub fn not_found_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found")
    }

    /// 405 for a known route with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, 405, "HTTP 405 Method Not Allowed")
    }

    /// 40401.
    pub fn subject_not_found(subject: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."))
    }

    /// 40402.
    pub fn version_not_found(version: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40402, format!("Version {version} not found."))
    }

    /// 40403.
    pub fn schema_not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40403, format!("Schema {what} not found"))
    }

    /// 40403 for a lookup that matched no version of the subject.
    pub fn schema_not_in_subject() -> Self {
        Self::new(StatusCode::NOT_FOUND, 40403, "Schema not found")
    }

    /// 40404.
    pub fn subject_soft_deleted(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40404,
            format!("Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"),
        )
    }

    /// 40405.
    pub fn subject_not_soft_deleted(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40405,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }

    /// 40406.
    pub fn version_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40406,
            format!(
                "Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete \
                 permanently"
            ),
        )
    }

    /// 40407.
    pub fn version_not_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40407,
            format!(
                "Subject '{subject}' Version {version} was not deleted first before being permanently \
                 deleted"
            ),
        )
    }

    /// 40408.
    pub fn config_not_set(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }

    /// 40409.
    pub fn mode_not_set(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40409,
            format!("Subject '{subject}' does not have subject-level mode configured"),
        )
    }

    /// 40410, what the association probe of newer Confluent clients expects.
    pub fn association_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 40410, "Association not found")
    }

    /// 409.
    pub fn incompatible(subject: &str, messages: &[String]) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", \
                 details: [{}]",
                messages.join(", ")
            ),
        )
    }

    /// 422 for a body that is not the JSON expected.
    pub fn unprocessable(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 422, format!("Unprocessable entity: {reason}"))
    }

    /// 42201.
    pub fn invalid_schema(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("Invalid schema: {reason}"))
    }

    /// 42202.
    pub fn invalid_version(version: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between \
                 [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    /// 42203.
    pub fn invalid_compatibility(level: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            format!(
                "Invalid compatibility level '{level}'. Valid values are none, backward, forward, full, \
                 backward_transitive, forward_transitive, and full_transitive"
            ),
        )
    }

    /// 42204.
    pub fn invalid_mode(mode: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42204,
            format!("Invalid mode '{mode}'. Valid values are READWRITE, READONLY and READONLY_OVERRIDE"),
        )
    }

    /// 42205.
    pub fn read_only(subject: &str) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42205, format!("Subject {subject} is in read-only mode"))
    }

    /// 42206.
    pub fn referenced(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42206,
            format!("One or more references exist to the schema {{subject={subject},version={version}}}"),
        )
    }

    /// 50001.
    pub fn store(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            format!("Error in the backend data store: {reason}"),
        )
    }

    /// 50002.
    pub fn timeout(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 50002, format!("Operation timed out: {reason}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.code, "message": self.message });
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}
