//! The producer's librdkafka configuration: typed tuning, `[kafka.properties]` passed through,
//! and the delivery guarantee on top.

use fanout_config::KafkaSettings;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use super::{ClientError, GUARANTEES};

/// Producer tuning (the `[producer]` section of a publisher's configuration). Durability
/// (`acks=all`, idempotence) is not here: it is the promise, not a knob.
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
    /// `queue.buffering.max.messages`: beyond this many in flight, a send waits.
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

/// Why a producer could not be configured or created.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ProducerConfigError {
    /// A `[kafka.properties]` entry would weaken the delivery guarantee.
    #[error(
        "kafka.properties.{key} = {value:?} would weaken delivery guarantees (Fanout requires {required:?})"
    )]
    Weakens {
        /// The property.
        key: String,
        /// Its value in the configuration.
        value: String,
        /// The only value Fanout accepts.
        required: &'static str,
    },
    /// A `[kafka.properties]` entry duplicates a typed setting, so two places would say one thing.
    #[error("kafka.properties.{key} duplicates a typed setting; set it under [producer] or [kafka] instead")]
    DuplicatesTyped {
        /// The property.
        key: String,
    },
    /// librdkafka refused the configuration (an unknown property, a bad value).
    #[error("cannot create the Kafka producer")]
    Create(#[source] ClientError),
}

fanout_core::debug_as_report!(ProducerConfigError);

/// The librdkafka configuration of a producer for `kafka`, tuned by `settings`: typed settings
/// first, `[kafka.properties]` after, the delivery guarantee on top. A property that contradicts
/// the guarantee or duplicates a typed setting is refused, naming it.
///
/// ```
/// let mut kafka = fanout_config::KafkaSettings::default();
/// kafka.properties.insert("client.id".into(), "post-service".into());
/// let config = fanout_kafka::producer_config(&kafka, &Default::default()).expect("valid");
/// assert_eq!(config.get("client.id"), Some("post-service"));
/// assert_eq!(config.get("acks"), Some("all"));
///
/// kafka.properties.insert("acks".into(), "1".into());
/// let refused = fanout_kafka::producer_config(&kafka, &Default::default()).expect_err("weaker");
/// assert!(refused.to_string().contains("kafka.properties.acks"));
/// ```
pub fn producer_config(
    kafka: &KafkaSettings,
    settings: &ProducerSettings,
) -> Result<ClientConfig, ProducerConfigError> {
    let typed = [
        ("bootstrap.servers", kafka.bootstrap.clone()),
        ("linger.ms", settings.linger_ms.to_string()),
        ("compression.type", settings.compression.clone()),
        ("delivery.timeout.ms", settings.delivery_timeout_ms.to_string()),
        ("message.max.bytes", settings.max_message_bytes.to_string()),
        ("queue.buffering.max.messages", settings.queue_max_messages.to_string()),
        ("batch.size", settings.batch_size.to_string()),
    ];
    let mut config = ClientConfig::new();
    for (key, value) in &typed {
        config.set(*key, value);
    }
    for (key, value) in &kafka.properties {
        if let Some((_, required)) = GUARANTEES.iter().find(|(k, _)| k == key) {
            if value != required {
                return Err(ProducerConfigError::Weakens {
                    key: key.clone(),
                    value: value.clone(),
                    required,
                });
            }
        }
        if typed.iter().any(|(k, _)| k == key) {
            return Err(ProducerConfigError::DuplicatesTyped { key: key.clone() });
        }
        config.set(key, value);
    }
    for (key, value) in GUARANTEES {
        config.set(key, value);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarantees_cannot_be_weakened_by_raw_properties() {
        let with = |key: &str, value: &str| {
            let mut kafka = KafkaSettings::default();
            kafka.properties.insert(key.into(), value.into());
            producer_config(&kafka, &ProducerSettings::default())
        };
        let err = with("acks", "1").expect_err("acks=1 refused");
        assert!(matches!(err, ProducerConfigError::Weakens { ref key, .. } if key == "acks"), "{err}");

        let err = with("linger.ms", "100").expect_err("duplicate of a typed field refused");
        assert!(
            matches!(err, ProducerConfigError::DuplicatesTyped { ref key } if key == "linger.ms"),
            "{err}"
        );

        let client = with("enable.idempotence", "true").expect("restating the guarantee is fine");
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        let client = with("client.id", "post-service").expect("a harmless property passes");
        assert_eq!(client.get("client.id"), Some("post-service"));
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("linger.ms"), Some("5"));
    }
}
