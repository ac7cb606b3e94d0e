//! The Confluent Schema Registry REST protocol, shared by the client in this crate and by
//! `fanout-registry-server`: the request and response bodies, the names of compatibility levels,
//! version specs, and the numeric error codes.
//!
//! Only what is on the wire lives here; how a client retries or how a server decides is each
//! side's own business.

mod codes;
mod types;

pub use codes::{COMPATIBILITY_NOT_FOUND, SCHEMA_NOT_FOUND, SUBJECT_NOT_FOUND, VERSION_NOT_FOUND};
pub use types::{
    Compatibility, CompatibilityCheck, ConfigAnswer, ConfigUpdate, ErrorBody, IdAnswer, RegisteredSchema,
    SchemaReference, SchemaType, SubjectVersion, UnregisteredSchema, Version, CONTENT_TYPE,
};
