//! Fanout's Kafka plumbing, written once: a librdkafka configuration from [`KafkaSettings`]
//! ([`client_config`]), a connection check that names refused credentials ([`check_cluster`]),
//! topic administration ([`admin`]), the one record producer ([`producer`]) and the bounded topic
//! reader ([`reader`]).
//!
//! Every Fanout crate that creates clients, topics or records goes through here, so security
//! properties (`[kafka.properties]`: SASL, TLS) reach every client, "create when absent, then wait
//! until the broker serves it" behaves the same everywhere, and every record is produced with the
//! same guarantee (idempotent, `acks=all`) and counted in the same metrics.
//!
//! Metrics (process default Prometheus registry), of every record produced:
//! `fanout_produced_total{topic,outcome}`, `fanout_produce_duration_seconds{topic}`,
//! `fanout_producer_queue_depth`.

#![warn(missing_docs)]

pub mod admin;
mod connect;
pub mod producer;
pub mod reader;

use fanout_config::KafkaSettings;
use rdkafka::ClientConfig;

pub use admin::{delete_groups, delete_topics, ensure_topics, AdminError, TopicSpec};
pub use connect::{check_cluster, ConnectError};
pub use producer::{
    producer_config, Batch, ClientError, Delivered, Headers, OwnedRecord, ProduceError, ProducerConfigError,
    ProducerSettings, Record, RecordProducer,
};
pub use reader::{is_end_of_partition, topic_partitions, FetchedRecord, ReadError, TopicRead};

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
