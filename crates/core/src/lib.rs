//! The platform's core, shared by every Fanout crate: the [`Event`] trait a domain contract
//! implements, the CloudEvents header names ([`headers`]), the topic naming rules ([`topics`]),
//! W3C trace context ([`trace`]), the clock ([`clock`]) and retry backoff ([`backoff`]).
//!
//! Domain contracts live in `fanout-events`; nothing here knows a business event.

#![warn(missing_docs)]

use apache_avro::Schema;
use serde::{de::DeserializeOwned, Serialize};

pub mod backoff;
pub mod clock;
pub mod headers;
pub mod topics;
pub mod trace;

/// A domain event with an Avro contract, a topic and a partitioning key.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The CloudEvents `type` (`ce_type`), e.g. `post.published`.
    const TYPE: &'static str;
    /// The Kafka topic the event is published to.
    const TOPIC: &'static str;
    /// The Avro schema text, as in `schemas/`.
    const SCHEMA: &'static str;

    /// The parsed Avro schema (parsed once).
    fn schema() -> &'static Schema;

    /// The Kafka key: the aggregate id, so one aggregate's events stay ordered.
    fn key(&self) -> Vec<u8>;

    /// Appends [`Event::key`] to `out`. Publishers call this once per event with a reused
    /// buffer; override it when the key can be written without allocating.
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key());
    }
}
