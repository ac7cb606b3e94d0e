//! Confluent's numeric `error_code`s, as the registry puts them in its error bodies.

/// Confluent's `error_code` for "subject not found".
pub const SUBJECT_NOT_FOUND: i32 = 40401;
/// Confluent's `error_code` for "version not found".
pub const VERSION_NOT_FOUND: i32 = 40402;
/// Confluent's `error_code` for "schema not found" (unknown id, or schema not under a subject).
pub const SCHEMA_NOT_FOUND: i32 = 40403;
/// Confluent's `error_code` for "compatibility level not set for this subject".
pub const COMPATIBILITY_NOT_FOUND: i32 = 40408;
