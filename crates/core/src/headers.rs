//! CloudEvents Kafka protocol binding (binary mode) header names, plus W3C trace context.
//!
//! The payload is pure domain data; these headers carry the envelope.

/// CloudEvents spec version; always [`SPECVERSION_VALUE`].
pub const SPECVERSION: &str = "ce_specversion";
/// The value of [`SPECVERSION`].
pub const SPECVERSION_VALUE: &str = "1.0";
/// The event id, a UUIDv7; consumers dedupe on it.
pub const ID: &str = "ce_id";
/// The event type, e.g. `post.published`.
pub const TYPE: &str = "ce_type";
/// The emitting service.
pub const SOURCE: &str = "ce_source";
/// When the event was emitted, RFC 3339.
pub const TIME: &str = "ce_time";
/// The payload's media type; see [`CONTENT_TYPE_AVRO`].
pub const CONTENT_TYPE: &str = "content-type";
/// Media type of a Confluent wire-format Avro payload.
pub const CONTENT_TYPE_AVRO: &str = "application/avro";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
