//! Publisher configuration: typed settings plus librdkafka properties passed through.

use std::time::Duration;

use fanout_config::KafkaSettings;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::PublishError;

/// Everything a [`crate::Publisher`] needs. Load it with [`fanout_config::load`] (defaults < TOML
/// file < `FANOUT_` environment) or build it in code with [`PublisherConfig::new`].
///
/// `source` has no default: every event carries it as `ce_source`, and a made-up default would
/// label a team's events as someone else's. A file without it is refused, naming the field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherConfig {
    /// The emitting service, sent as CloudEvents `ce_source` (e.g. `post-service`).
    pub source: String,
    /// The cluster, and raw librdkafka properties.
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// The schema registry.
    #[serde(default)]
    pub registry: fanout_schema_registry::RegistrySettings,
    /// Throughput and durability knobs.
    #[serde(default)]
    pub producer: ProducerSettings,
}

impl PublisherConfig {
    /// The defaults for everything but the emitting service's name, `source`.
    ///
    /// ```
    /// let config = fanout_producer::PublisherConfig::new("post-service");
    /// assert_eq!(config.source, "post-service");
    /// assert_eq!(config.kafka.bootstrap, "127.0.0.1:9092");
    /// ```
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            kafka: KafkaSettings::default(),
            registry: Default::default(),
            producer: ProducerSettings::default(),
        }
    }
}

/// Producer tuning. Durability settings (`acks=all`, idempotence) are fixed: they are the promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerSettings {
    /// `linger.ms`: how long librdkafka waits to fill a batch.
    pub linger_ms: u32,
    /// `compression.type`: none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// `delivery.timeout.ms`: how long librdkafka retries a record before failing it.
    pub delivery_timeout_ms: u32,
    /// `message.max.bytes`: larger records fail before sending.
    pub max_message_bytes: usize,
    /// `queue.buffering.max.messages`: beyond this many in flight, `publish` waits.
    pub queue_max_messages: u32,
    /// `batch.size` in bytes.
    pub batch_size: u32,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            linger_ms: 5,
            compression: "lz4".to_owned(),
            delivery_timeout_ms: 30_000,
            max_message_bytes: 1_000_000,
            queue_max_messages: 100_000,
            batch_size: 1_000_000,
        }
    }
}

/// librdkafka properties the guarantee depends on; `[kafka.properties]` may not weaken them.
const FIXED: [(&str, &str); 3] =
    [("acks", "all"), ("enable.idempotence", "true"), ("max.in.flight.requests.per.connection", "5")];

impl PublisherConfig {
    /// The librdkafka configuration: typed settings first, raw properties after, refusing a raw
    /// property that contradicts the delivery guarantee or a typed field.
    pub fn client_config(&self) -> Result<ClientConfig, PublishError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.kafka.bootstrap)
            .set("linger.ms", self.producer.linger_ms.to_string())
            .set("compression.type", &self.producer.compression)
            .set("delivery.timeout.ms", self.producer.delivery_timeout_ms.to_string())
            .set("message.max.bytes", self.producer.max_message_bytes.to_string())
            .set("queue.buffering.max.messages", self.producer.queue_max_messages.to_string())
            .set("batch.size", self.producer.batch_size.to_string());
        for (key, value) in FIXED {
            config.set(key, value);
        }
        let typed = [
            "bootstrap.servers",
            "linger.ms",
            "compression.type",
            "delivery.timeout.ms",
            "message.max.bytes",
            "queue.buffering.max.messages",
            "batch.size",
        ];
        for (key, value) in &self.kafka.properties {
            if let Some((_, fixed)) = FIXED.iter().find(|(k, _)| k == key) {
                if value != fixed {
                    return Err(PublishError::Config(format!(
                        "kafka.properties.{key} = {value:?} would weaken delivery guarantees (Fanout requires {fixed:?})"
                    )));
                }
            }
            if typed.contains(&key.as_str()) {
                return Err(PublishError::Config(format!(
                    "kafka.properties.{key} duplicates a typed setting; set it under [producer] or [kafka] instead"
                )));
            }
            config.set(key, value);
        }
        Ok(config)
    }

    /// How long `close` waits for in-flight records by default.
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.producer.delivery_timeout_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_source_is_refused_by_name() {
        let err = fanout_config::from_toml_str::<PublisherConfig>("[kafka]\nbootstrap = \"k:9092\"\n")
            .expect_err("no source");
        assert!(err.to_string().contains("source"), "{err}");
        let config: PublisherConfig =
            fanout_config::from_toml_str("source = \"post-service\"\n").expect("source alone is enough");
        assert_eq!(config.source, "post-service");
        assert_eq!(config.producer, ProducerSettings::default());
    }

    #[test]
    fn guarantees_cannot_be_weakened_by_raw_properties() {
        let mut config = PublisherConfig::new("config-tests");
        config.kafka.properties.insert("acks".into(), "1".into());
        let err = config.client_config().expect_err("acks=1 refused");
        assert!(err.to_string().contains("kafka.properties.acks"), "{err}");

        let mut config = PublisherConfig::new("config-tests");
        config.kafka.properties.insert("linger.ms".into(), "100".into());
        let err = config.client_config().expect_err("duplicate of a typed field refused");
        assert!(err.to_string().contains("linger.ms"), "{err}");

        let mut config = PublisherConfig::new("config-tests");
        config.kafka.properties.insert("client.id".into(), "post-service".into());
        let client = config.client_config().expect("a harmless property passes");
        assert_eq!(client.get("client.id"), Some("post-service"));
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("acks"), Some("all"));
    }

    #[test]
    fn unknown_keys_in_files_are_named() {
        let err =
            fanout_config::from_toml_str::<PublisherConfig>("[producer]\nlinger = 5").expect_err("typo");
        assert!(err.to_string().contains("linger"), "{err}");
    }
}
