//! The SDK upstream services use to publish Fanout events.
//!
//! * [`Publisher`]: typed events in; Avro in the Confluent wire format with CloudEvents headers
//!   out. `publish` returns only once the event is durably in Kafka (idempotent producer,
//!   `acks=all`); a full local queue makes it wait rather than fail.
//! * [`outbox`]: enqueue events inside your own database transaction and let the relay publish
//!   them, for services that must publish exactly when their transaction commits.
//!
//! Both send through `fanout-kafka`'s record producer, the one producer of the platform.
//!
//! Metrics (process default Prometheus registry): `fanout_produced_total{topic,outcome}`,
//! `fanout_produce_duration_seconds{topic}` and `fanout_producer_queue_depth` from the record
//! producer; `fanout_outbox_backlog{table}` from the relay.
#![warn(missing_docs)]

mod clock;
mod config;
mod error;
mod options;
pub mod outbox;
mod publisher;
mod schedule;

pub use config::PublisherConfig;
pub use error::PublishError;
pub use fanout_core::schedule::{Outcome, ScheduleId};
pub use fanout_kafka::{Delivered, OwnedRecord, ProduceError, ProducerConfigError, ProducerSettings};
pub use options::PublishOptions;
pub use publisher::{Delivery, Publisher};
pub use schedule::{CancelOutcome, Ended, RescheduleOutcome, ScheduleState, Scheduled};
