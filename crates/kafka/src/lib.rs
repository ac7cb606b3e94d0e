//! Fanout's Kafka plumbing, written once: a librdkafka configuration from [`KafkaSettings`]
//! ([`client_config`]), a connection check that names refused credentials ([`check_cluster`]),
//! and topic administration ([`admin`]).
//!
//! Every Fanout crate that creates clients or topics goes through here, so security properties
//! (`[kafka.properties]`: SASL, TLS) reach every client, and "create when absent, then wait until
//! the broker serves it" behaves the same everywhere.

#![warn(missing_docs)]

pub mod admin;
mod connect;

use fanout_config::KafkaSettings;
use rdkafka::ClientConfig;

pub use admin::{delete_groups, delete_topics, ensure_topics, AdminError, TopicSpec};
pub use connect::{check_cluster, ConnectError};

/// A librdkafka configuration with `bootstrap.servers` and every `[kafka.properties]` entry
/// (`security.protocol`, `sasl.*`, `ssl.*`, ...), for any client: admin, consumer or producer.
///
/// ```
/// let mut settings = fanout_config::KafkaSettings::default();
/// settings.properties.insert("security.protocol".into(), "SASL_PLAINTEXT".into());
/// let config = fanout_kafka::client_config(&settings);
/// assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
/// assert_eq!(config.get("security.protocol"), Some("SASL_PLAINTEXT"));
/// ```
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap);
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}
