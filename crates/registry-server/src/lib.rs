//! A Confluent Schema Registry–compatible HTTP server that keeps all its state in a compacted
//! Kafka topic (default `_schemas`).
//!
//! The process holds no state of its own: on start it creates the topic if absent (one
//! partition, `cleanup.policy=compact`), reads it from the beginning to rebuild every subject,
//! version, id, compatibility level and mode, then keeps tailing it. A restart therefore keeps
//! every id and version, and ids are never reused.
//!
//! Several instances may serve one topic, with no single point of failure: they elect a leader
//! through Kafka's group protocol (the consumer group `_fanout-registry-<topic>`, as Confluent's
//! registry does), every instance answers reads from its own copy of the state, and a follower
//! forwards writes (registrations, deletes, config and mode changes) to the leader. When the
//! leader dies, another instance leads within the group's session (6 s). Inside the leader an
//! in-process mutex serializes writes, each decided on the state it has read; and since a leader
//! paused past its session may still write once, every instance refuses a record that
//! contradicts an earlier one in the log, so no id ever names two schemas.
//!
//! Only Avro schemas are supported, with references. A new schema must pass Java Avro's parsing
//! rules, the ones Confluent's registry applies, on registration, lookup and compatibility tests
//! alike (422 / 42201 otherwise). Compatibility levels are Confluent's (`BACKWARD` by default),
//! checked with apache-avro.
//!
//! Locked doors (both off by default): with users configured ([`RegistrySecurity`]), every
//! request needs HTTP basic credentials of one of them — 401 with `WWW-Authenticate: Basic
//! realm="fanout-registry"` and error_code 40101 otherwise — and every change needs the `write`
//! [`Role`] (403, error_code 40301, for a `read` user); passwords are argon2 hashes
//! ([`hash_password`]). With [`TlsFiles`] it serves HTTPS only (rustls).
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
mod auth;
mod compat;
mod config;
mod election;
mod error;
#[cfg(test)]
mod fuzz;
mod record;
mod schema;
mod server;
mod service;
mod state;
mod store;
mod tls;
mod validate;

pub use auth::hash_password;
pub use config::{RegistryConfig, RegistrySecurity, RegistryUser, Role, TlsFiles, DEFAULT_TOPIC};
pub use error::RegistryError;
pub use server::{RegistryServer, RunningRegistry};
