//! The Confluent Schema Registry REST protocol, shared by the client in this crate and by
//! `fanout-registry-server`: the request and response bodies, compatibility levels, modes,
//! version specs, and the numeric error codes.
//!
//! Only what is on the wire lives here; how a client retries or how a server decides is each
//! side's own business.

mod config;
mod errors;
mod schema;

pub use config::{Compatibility, CompatibilityCheck, Config, ConfigUpdate, Mode, ModeBody};
pub use errors::*;
pub use schema::{
    RegisteredSchema, SchemaId, SchemaReference, SchemaType, SubjectAndVersion, SubjectVersion,
    UnregisteredSchema, Version,
};

/// The content type the registry answers with, and the one to send bodies with.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
