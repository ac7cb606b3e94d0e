//! Error answers: Confluent's numeric `error_code`s and the body that carries them.

use serde::{Deserialize, Serialize};

/// A route that does not exist (Confluent repeats the HTTP status as the code).
pub const ROUTE_NOT_FOUND: i32 = 404;
/// A known route asked with another method.
pub const METHOD_NOT_ALLOWED: i32 = 405;
/// A schema that breaks the subject's compatibility level (a registration refused).
pub const INCOMPATIBLE_SCHEMA: i32 = 409;
/// A body that is not the JSON the route takes.
pub const UNPROCESSABLE_ENTITY: i32 = 422;
/// No credentials, or credentials the registry did not accept (HTTP 401).
pub const UNAUTHORIZED: i32 = 40101;
/// The user is known but may not do this (HTTP 403), e.g. a read-only user registering.
pub const FORBIDDEN: i32 = 40301;
/// The subject does not exist (or has no live version).
pub const SUBJECT_NOT_FOUND: i32 = 40401;
/// The subject exists, the version does not.
pub const VERSION_NOT_FOUND: i32 = 40402;
/// No schema with that id, or the schema looked up is not under the subject.
pub const SCHEMA_NOT_FOUND: i32 = 40403;
/// The subject was soft-deleted (a soft delete asked again).
pub const SUBJECT_SOFT_DELETED: i32 = 40404;
/// A permanent delete of a subject that was not soft-deleted first.
pub const SUBJECT_NOT_SOFT_DELETED: i32 = 40405;
/// The version was soft-deleted (a soft delete asked again).
pub const VERSION_SOFT_DELETED: i32 = 40406;
/// A permanent delete of a version that was not soft-deleted first.
pub const VERSION_NOT_SOFT_DELETED: i32 = 40407;
/// The subject has no compatibility level of its own.
pub const COMPATIBILITY_NOT_FOUND: i32 = 40408;
/// The subject has no mode of its own.
pub const MODE_NOT_FOUND: i32 = 40409;
/// No association (what newer Confluent clients probe before they fall back).
pub const ASSOCIATION_NOT_FOUND: i32 = 40410;
/// The schema is not valid for its type (for Avro: what Java Avro's parser rejects).
pub const INVALID_SCHEMA: i32 = 42201;
/// A version that is neither a number from 1 to 2^31-1 nor `latest`.
pub const INVALID_VERSION: i32 = 42202;
/// A compatibility level name the registry does not know.
pub const INVALID_COMPATIBILITY_LEVEL: i32 = 42203;
/// A mode name the registry does not know, or one not allowed where it was given.
pub const INVALID_MODE: i32 = 42204;
/// The operation is refused in the subject's mode (a write in read-only mode).
pub const OPERATION_NOT_PERMITTED: i32 = 42205;
/// The version is referenced by another schema and cannot be deleted.
pub const REFERENCE_EXISTS: i32 = 42206;
/// The registry's store failed.
pub const STORE_ERROR: i32 = 50001;
/// The registry's store did not answer in time.
pub const OPERATION_TIMEOUT: i32 = 50002;
/// 500: a follower could not forward a write to the leader.
pub const REQUEST_FORWARDING_FAILED: i32 = 50003;
/// 500: no instance leads (the group is electing one), so a write has nowhere to go.
pub const UNKNOWN_LEADER: i32 = 50004;

/// Every error answer: `{"error_code": N, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Confluent's code, one of this module's constants.
    pub error_code: i32,
    /// The explanation, when the registry gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
