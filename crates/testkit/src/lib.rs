//! What every Fanout integration test uses to reach the real broker and the real PostgreSQL.
//!
//! * The broker is at `FANOUT_TEST_BOOTSTRAP` (default `127.0.0.1:9092`). [`Kafka::connect`]
//!   fails with a message that says how to start it when no broker answers: tests never skip.
//! * [`Kafka::topic`] creates a uniquely named topic and deletes it when the guard drops;
//!   [`unique_name`] gives unique consumer-group names.
//! * [`Kafka::read`] reads a topic up to its current end, [`Kafka::read_at_least`] until it holds
//!   a number of records; neither joins a consumer group.
//! * [`Postgres::database`] creates a fresh database per test (server at
//!   `FANOUT_TEST_DATABASE_URL`, default `postgres://fanout:fanout@127.0.0.1:5432/fanout`) and drops
//!   it afterwards.
//! * [`Registry::start`] runs Fanout's schema registry in process on a state topic of its own;
//!   [`consumer_config`] is a consumer configuration with fast commits and retries;
//!   [`Registry::start_secured`] runs it with users and TLS, [`TestCertificates`] makes a CA and
//!   a certificate for it.
//! * [`service`]: a consumer service against the broker and a registry, run in the background,
//!   read through its HTTP API; [`stack`]: the local stack's script and broker process.
//! * [`fuzz`]: the case count of the fuzz tests (`FANOUT_FUZZ_COUNT`) and strategies that mutate
//!   valid inputs.
//!
//! ```no_run
//! # async fn example() -> Result<(), fanout_testkit::TestkitError> {
//! let kafka = fanout_testkit::Kafka::connect().await?;
//! let topic = kafka.topic("orders", 3).await?;
//! let group = fanout_testkit::unique_name("orders-consumer");
//! assert!(topic.name().starts_with("test-orders-"));
//! # let _ = group; Ok(()) }
//! ```
#![warn(missing_docs)]

mod consumer;
use std::time::Duration;

pub mod fuzz;
mod kafka;
mod postgres;
mod registry;
mod sample;
pub mod service;
pub mod stack;
mod tls;
mod wait;

/// anyhow, the error type of the kit's functions and of tests written with it.
pub use anyhow;
pub use consumer::{bootstrap, consumer_config};
pub use fanout_kafka::FetchedRecord;
pub use kafka::{Kafka, TestTopic};
pub use postgres::{Postgres, TestDatabase};
pub use registry::Registry;
pub use sample::{assert_matches_its_schema, sample, sample_json};
/// serde_json, for read APIs' answers (`json!`, [`service::wait_for_json`]).
pub use serde_json;
pub use tls::TestCertificates;
pub use wait::wait_until;

/// Default broker address when `FANOUT_TEST_BOOTSTRAP` is unset.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";
/// Default PostgreSQL server URL when `FANOUT_TEST_DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://fanout:fanout@127.0.0.1:5432/fanout";

/// Errors from the test kit; each says what to do about it.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No broker answered a metadata request in time.
    #[error(
        "no Kafka broker answers at {bootstrap} ({reason}); start the local stack with \
         `scripts/stack up kafka`, or point FANOUT_TEST_BOOTSTRAP at a running broker"
    )]
    BrokerUnavailable {
        /// The address tried.
        bootstrap: String,
        /// What the client reported.
        reason: String,
    },
    /// The broker refused an admin operation.
    #[error("kafka admin operation `{operation}` on `{target}` failed: {reason}")]
    Admin {
        /// What was attempted (create topic, delete topic).
        operation: &'static str,
        /// The topic concerned.
        target: String,
        /// The broker's answer.
        reason: String,
    },
    /// No PostgreSQL server answered.
    #[error(
        "no PostgreSQL answers at {url} ({reason}); start it with `scripts/stack up postgres`, or \
         point FANOUT_TEST_DATABASE_URL at a running server"
    )]
    PostgresUnavailable {
        /// The server URL tried (without password).
        url: String,
        /// What the driver reported.
        reason: String,
    },
    /// A topic could not be read.
    #[error("cannot read a topic")]
    Read(#[from] fanout_kafka::ReadError),
    /// A topic did not reach the expected number of records in time.
    #[error("{topic} holds {found} of the {expected} records expected after {waited:?}")]
    TooFewRecords {
        /// The topic.
        topic: String,
        /// The records awaited.
        expected: usize,
        /// The records it held at the deadline.
        found: usize,
        /// How long was waited.
        waited: Duration,
    },
    /// PostgreSQL refused a statement.
    #[error("postgres statement failed")]
    Postgres(#[from] sqlx::Error),
    /// The in-process registry could not start or stop.
    #[error("the test registry failed")]
    Registry(#[from] fanout_registry_server::RegistryError),
}

fanout_core::debug_as_report!(TestkitError);

/// A name unique to this call: `test-<prefix>-<uuid>`. Use it for consumer groups, transactional
/// ids and anything else that must not collide between tests or runs.
pub fn unique_name(prefix: &str) -> String {
    format!("test-{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_names_differ_and_keep_the_prefix() {
        let a = super::unique_name("x");
        let b = super::unique_name("x");
        assert_ne!(a, b);
        assert!(a.starts_with("test-x-"));
    }
}
