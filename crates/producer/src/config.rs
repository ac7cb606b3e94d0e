//! Publisher configuration: who publishes, where, and the producer's tuning.

use fanout_config::KafkaSettings;
use fanout_kafka::ProducerSettings;
use serde::{Deserialize, Serialize};

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
    /// Throughput knobs (durability is fixed: idempotent, `acks=all`).
    #[serde(default)]
    pub producer: ProducerSettings,
    /// The schedule topic [`crate::Publisher::publish_at`] writes to: `fanout-scheduler`'s
    /// `topic`.
    #[serde(default = "schedule_topic")]
    pub schedule_topic: String,
    /// How far ahead an event may be scheduled, in days (default 366: a year ahead works). A
    /// later `deliver_at` is refused with [`crate::PublishError::BeyondHorizon`]: far more often a
    /// unit mistake (seconds taken for milliseconds) than a plan.
    #[serde(default = "schedule_horizon_days")]
    pub schedule_horizon_days: u32,
}

fn schedule_horizon_days() -> u32 {
    366
}

fn schedule_topic() -> String {
    fanout_core::schedule::TOPIC.to_owned()
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
            schedule_topic: schedule_topic(),
            schedule_horizon_days: schedule_horizon_days(),
        }
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
    fn unknown_keys_in_files_are_named() {
        let err =
            fanout_config::from_toml_str::<PublisherConfig>("[producer]\nlinger = 5").expect_err("typo");
        assert!(err.to_string().contains("linger"), "{err}");
    }
}
