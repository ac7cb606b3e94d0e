//! Errors: [`RegistryError`] for starting and running the server, [`ApiError`] for HTTP answers
//! in Confluent's shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fanout_schema_registry::protocol::{self as codes, ErrorBody, CONTENT_TYPE};

use crate::schema::SchemaError;

/// Why the registry could not start or stopped.
#[derive(thiserror::Error)]
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
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("http server failed: {0}")]
    Serve(std::io::Error),
    /// A configured user cannot be used (a bad hash, a name twice).
    #[error("registry user '{name}': {reason}")]
    InvalidUser {
        /// The user's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A password could not be hashed.
    #[error("cannot hash the password: {0}")]
    PasswordHash(String),
    /// The TLS certificate or key cannot be used.
    #[error("registry TLS: {0}")]
    Tls(String),
    /// A background task panicked or was cancelled.
    #[error("registry task failed: {0}")]
    Task(String),
}

fanout_core::debug_as_report!(RegistryError);

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
    /// Confluent error code, one of `protocol`'s constants.
    pub code: i32,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: i32, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 401: no credentials, or credentials not accepted. Confluent's security plugin answers
    /// error_code 40101.
    pub fn unauthorized(reason: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, format!("Unauthorized: {reason}"))
    }

    /// 403: the user is known but lacks the write role for `method path`; Confluent's security
    /// plugin answers error_code 40301 ("User is denied operation ...").
    pub fn forbidden(user: &str, method: &axum::http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            format!("User '{user}' is denied operation {method} {path}: it needs the write role"),
        )
    }

    /// 404 for a route that does not exist.
    pub fn not_found_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::ROUTE_NOT_FOUND, "HTTP 404 Not Found")
    }

    /// 405 for a known route with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, codes::METHOD_NOT_ALLOWED, "HTTP 405 Method Not Allowed")
    }

    /// The subject has no (visible) version.
    pub fn subject_not_found(subject: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::SUBJECT_NOT_FOUND, format!("Subject '{subject}' not found."))
    }

    /// The subject has no such version.
    pub fn version_not_found(version: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::VERSION_NOT_FOUND, format!("Version {version} not found."))
    }

    /// No schema with this id.
    pub fn schema_not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::SCHEMA_NOT_FOUND, format!("Schema {what} not found"))
    }

    /// 40403 for a lookup that matched no version of the subject.
    pub fn schema_not_in_subject() -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::SCHEMA_NOT_FOUND, "Schema not found")
    }

    /// A soft delete of a subject already soft-deleted.
    pub fn subject_soft_deleted(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::SUBJECT_SOFT_DELETED,
            format!("Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"),
        )
    }

    /// A permanent delete of a subject not soft-deleted first.
    pub fn subject_not_soft_deleted(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::SUBJECT_NOT_SOFT_DELETED,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }

    /// A soft delete of a version already soft-deleted.
    pub fn version_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::VERSION_SOFT_DELETED,
            format!(
                "Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete \
                 permanently"
            ),
        )
    }

    /// A permanent delete of a version not soft-deleted first.
    pub fn version_not_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::VERSION_NOT_SOFT_DELETED,
            format!(
                "Subject '{subject}' Version {version} was not deleted first before being permanently \
                 deleted"
            ),
        )
    }

    /// The subject has no compatibility level of its own.
    pub fn config_not_set(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::COMPATIBILITY_NOT_FOUND,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }

    /// The subject has no mode of its own.
    pub fn mode_not_set(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::MODE_NOT_FOUND,
            format!("Subject '{subject}' does not have subject-level mode configured"),
        )
    }

    /// What the association probe of newer Confluent clients expects.
    pub fn association_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::ASSOCIATION_NOT_FOUND, "Association not found")
    }

    /// The schema breaks the subject's compatibility level; `messages` say how.
    pub fn incompatible(subject: &str, messages: &[String]) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            codes::INCOMPATIBLE_SCHEMA,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", \
                 details: [{}]",
                messages.join(", ")
            ),
        )
    }

    /// A body that is not the JSON expected.
    pub fn unprocessable(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::UNPROCESSABLE_ENTITY,
            format!("Unprocessable entity: {reason}"),
        )
    }

    /// The schema is not valid (not JSON, not Avro, an unknown type, a missing reference).
    pub fn invalid_schema(reason: impl std::fmt::Display) -> Self {
        let reason = reason.to_string();
        // apache-avro starts some of its messages with the very prefix this answer adds.
        let reason = reason.strip_prefix("Invalid schema: ").unwrap_or(&reason);
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::INVALID_SCHEMA,
            format!("Invalid schema: {reason}"),
        )
    }

    /// [`ApiError::invalid_schema`] for a parse failure, with each of its causes once.
    pub fn schema(error: &SchemaError) -> Self {
        Self::invalid_schema(fanout_core::report(error))
    }

    /// A version that is neither a number from 1 to 2^31-1 nor `latest`.
    pub fn invalid_version(version: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::INVALID_VERSION,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between \
                 [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    /// An unknown compatibility level name.
    pub fn invalid_compatibility(level: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::INVALID_COMPATIBILITY_LEVEL,
            format!(
                "Invalid compatibility level '{level}'. Valid values are none, backward, forward, full, \
                 backward_transitive, forward_transitive, and full_transitive"
            ),
        )
    }

    /// An unknown mode name, or READONLY_OVERRIDE for a subject.
    pub fn invalid_mode(mode: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::INVALID_MODE,
            format!("Invalid mode '{mode}'. Valid values are READWRITE, READONLY and READONLY_OVERRIDE"),
        )
    }

    /// A write refused by the subject's read-only mode.
    pub fn read_only(subject: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::OPERATION_NOT_PERMITTED,
            format!("Subject {subject} is in read-only mode"),
        )
    }

    /// A delete of a version other schemas still reference.
    pub fn referenced(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::REFERENCE_EXISTS,
            format!("One or more references exist to the schema {{subject={subject},version={version}}}"),
        )
    }

    /// The state topic could not be written (or an answer could not be encoded).
    pub fn store(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::STORE_ERROR,
            format!("Error in the backend data store: {reason}"),
        )
    }

    /// A write reached a follower that could not forward it to the leader.
    pub fn forwarding_failed(leader: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::REQUEST_FORWARDING_FAILED,
            format!("Error while forwarding the request to the leader at {leader}: {reason}"),
        )
    }

    /// A write arrived while no instance leads.
    pub fn unknown_leader(waited: std::time::Duration) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::UNKNOWN_LEADER,
            format!("No schema registry instance leads writes (none elected within {waited:?}); retry"),
        )
    }

    /// A write was not confirmed in time.
    pub fn timeout(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::OPERATION_TIMEOUT,
            format!("Operation timed out: {reason}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error_code: self.code, message: Some(self.message) };
        // Two plain fields always serialise; an empty body would still carry the status.
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_schema_message_says_its_prefix_and_each_cause_once() {
        // apache-avro's own wording starts with the prefix.
        let avro = ApiError::invalid_schema("Invalid schema: There is no type called 'record'");
        assert_eq!(avro.message, "Invalid schema: There is no type called 'record'");
        assert_eq!(avro.code, codes::INVALID_SCHEMA);

        let not_json = crate::schema::parse_new("{nope", &[]).expect_err("not JSON");
        let message = ApiError::schema(&not_json).message;
        assert!(message.starts_with("Invalid schema: not JSON: key must be a string"), "{message}");
        assert_eq!(message.matches("Invalid schema").count(), 1, "{message}");
    }
}
