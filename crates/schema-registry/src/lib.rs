//! Fanout's Confluent Schema Registry client and its wire-format Avro serde.
//!
//! * [`SchemaRegistryClient`] speaks the Confluent REST API to any compatible registry, with
//!   caching (single-flight, "not found" kept briefly), retries with backoff and jitter, failover
//!   across base URLs, basic or bearer auth and TLS.
//! * [`AvroSerde`] writes and reads the Confluent wire format ([`wire`]): the producer's
//!   [`Encoder`] resolves its schema id once and then encodes synchronously; decoding reads with
//!   the writer schema from the registry and the consumer's own reader schema.
//! * [`protocol`] is the REST protocol itself (bodies, levels, version specs, error codes), the
//!   one definition this client and Fanout's registry server both speak.
//!
//! ```no_run
//! use fanout_events::{Event, PostPublished};
//! use fanout_schema_registry::{AvroSerde, RegistrySettings, SchemaSelection};
//!
//! # async fn example(payload: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let settings = RegistrySettings { schema: SchemaSelection::UseLatest, ..RegistrySettings::with_urls(&["http://127.0.0.1:8081"]) };
//! let serde = AvroSerde::from_settings(&settings)?;
//! let event: PostPublished = serde.decode(payload).await?;
//! println!("{} by {}", event.title, event.user_id);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod client;
mod error;
pub mod protocol;
mod serde;
mod settings;
mod subject;
pub mod wire;

pub use client::SchemaRegistryClient;
pub use error::{RegistryError, SerdeError};
pub use protocol::{
    Compatibility, CompatibilityCheck, RegisteredSchema, SchemaReference, SchemaType, SubjectVersion,
    UnregisteredSchema, Version, COMPATIBILITY_NOT_FOUND, SCHEMA_NOT_FOUND, SUBJECT_NOT_FOUND,
    VERSION_NOT_FOUND,
};
pub use serde::{AvroSerde, Encoder, SerdeConfig, WriterSchema};
pub use settings::{RegistrySettings, SchemaSelection, Secret};
pub use subject::{NoRecordName, SubjectKind, SubjectNameStrategy};
pub use wire::FrameError;

#[cfg(test)]
mod tests {
    /// The producer keeps encoders in `Arc<dyn Any + Send + Sync>` and shares the serde and
    /// client across tasks.
    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<super::Encoder<fanout_events::PostPublished>>();
        check::<super::AvroSerde>();
        check::<super::SchemaRegistryClient>();
        check::<super::SerdeError>();
    }
}
