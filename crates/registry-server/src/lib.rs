//! A Confluent Schema Registry–compatible HTTP server that keeps all its state in a compacted
//! Kafka topic (default `_schemas`).
//!
//! The process holds no state of its own: on start it creates the topic if absent (one
//! partition, `cleanup.policy=compact`), reads it from the beginning to rebuild every subject,
//! version, id, compatibility level and mode, then keeps tailing it. A restart therefore keeps
//! every id and version, and ids are never reused.
//!
//! Writes are single-writer: an in-process mutex serializes them, and each is decided on the state
//! this process has read. Running several writing instances on one topic would need leader
//! election and is **not supported**; extra instances work as readers.
//!
//! Only Avro schemas are supported, with references. A new schema must pass Java Avro's parsing
//! rules, the ones Confluent's registry applies, on registration, lookup and compatibility tests
//! alike (422 / 42201 otherwise). Compatibility levels are Confluent's (`BACKWARD` by default),
//! checked with apache-avro.
//!
//! ```no_run
//! use fanout_registry_server::{RegistryConfig, RegistryServer};
//!
//! # async fn example() -> Result<(), fanout_registry_server::RegistryError> {
//! let config = RegistryConfig::new("127.0.0.1:9092", "127.0.0.1:8081".parse().expect("address"))
//!     .with_topic("_schemas");
//! let registry = RegistryServer::start(config).await?;
//! println!("schema registry at {}", registry.url());
//! registry.shutdown().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod api;
mod compat;
mod config;
mod error;
#[cfg(test)]
mod fuzz;
mod record;
mod schema;
mod server;
mod service;
mod state;
mod store;
mod validate;

pub use config::{RegistryConfig, DEFAULT_TOPIC};
pub use error::RegistryError;
pub use server::{RegistryServer, RunningRegistry};
