//! The SDK upstream services use to publish Fanout events.
//!
//! * [`Publisher`]: typed events in; Avro in the Confluent wire format with CloudEvents headers
//!   out. `publish` returns only once the event is durably in Kafka (idempotent producer,
//!   `acks=all`); a full local queue makes it wait rather than fail.
//! * [`outbox`]: enqueue events inside your own database transaction and let the relay publish
//!   them, for services that must publish exactly when their transaction commits.
//!
//! Metrics (process default Prometheus registry): `fanout_produced_total{topic,outcome}`,
//! `fanout_produce_duration_seconds{topic}`, `fanout_producer_queue_depth`,
//! `fanout_outbox_backlog{table}`.
#![warn(missing_docs)]

mod config;
mod delivery;
mod envelope;
mod error;
mod metrics;
pub mod outbox;
mod publisher;
mod raw;

pub use config::{ProducerSettings, PublisherConfig};
pub use error::PublishError;
pub use publisher::Publisher;
pub use raw::{Delivery, OutgoingRecord, RawPublisher};
