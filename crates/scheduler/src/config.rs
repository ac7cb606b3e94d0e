//! The scheduler's configuration: defaults < TOML file < `FANOUT_` environment, as every part of
//! Fanout loads it.

use std::time::Duration;

use fanout_config::{HttpSettings, KafkaSettings};
use serde::{Deserialize, Serialize};

/// Everything `fanout-scheduler` needs; with no file at all it runs against the local stack.
///
/// ```
/// let config: fanout_scheduler::SchedulerConfig = fanout_config::from_toml_str("window_secs = 60").unwrap();
/// assert_eq!(config.topic, "_fanout_schedule");
/// assert_eq!(config.window(), std::time::Duration::from_secs(60));
/// assert!(fanout_config::from_toml_str::<fanout_scheduler::SchedulerConfig>("windows = 1").is_err());
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// The consumer group the instances share (they split the schedule topic's partitions).
    pub name: String,
    /// This instance's fixed identity in the group (Kafka's static membership,
    /// `group.instance.id`), unique among the running instances, e.g. the pod's name in a
    /// StatefulSet. A restarted instance then takes its old place at once (no rebalance, no
    /// waiting out the dead process's `session.timeout.ms`), and its transactional producer
    /// (`<name>-<instance_id>`) aborts the dead process's open transaction at once instead of
    /// readers waiting out `transaction.timeout.ms`. An instance that stops for good keeps its
    /// partitions until its session expires. Unset: a dynamic member, as any consumer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The schedule topic.
    pub topic: String,
    /// Its partitions, when the scheduler creates it (the most instances that share the work).
    pub partitions: i32,
    /// How far ahead entries are held in memory, in seconds; later ones stay in Kafka and are
    /// read in as the window advances (every half window).
    pub window_secs: u64,
    /// The most entries one dispatch transaction carries.
    pub max_batch: usize,
    /// tracing's filter, e.g. `info` or `fanout_scheduler=debug`.
    pub log: String,
    /// `text` or `json`.
    pub log_format: fanout_service::LogFormat,
    /// Where spans are exported (OTLP); unset, the standard `OTEL_*` variables decide.
    pub telemetry: fanout_service::TelemetryConfig,
    /// The cluster.
    pub kafka: KafkaSettings,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpSettings,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            name: "fanout-scheduler".to_owned(),
            instance_id: None,
            topic: fanout_core::schedule::TOPIC.to_owned(),
            partitions: 12,
            window_secs: 600,
            max_batch: 500,
            log: "info".to_owned(),
            log_format: Default::default(),
            telemetry: Default::default(),
            kafka: KafkaSettings::default(),
            http: HttpSettings::on("127.0.0.1:9110"),
        }
    }
}

impl SchedulerConfig {
    /// The near window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// Refuses values the scheduler cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.window_secs < 10 {
            return Err(format!("window_secs: at least 10, got {}", self.window_secs));
        }
        if self.partitions < 1 {
            return Err(format!("partitions: at least 1, got {}", self.partitions));
        }
        if self.instance_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err("instance_id: empty; leave it out for a dynamic member".to_owned());
        }
        if self.max_batch == 0 {
            return Err("max_batch: at least 1".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_file_is_valid_and_names_every_key() {
        let text = include_str!("../scheduler.toml");
        let config: SchedulerConfig = fanout_config::from_toml_str(text).expect("scheduler.toml parses");
        config.validate().expect("scheduler.toml is usable");
        let defaults = SchedulerConfig::default();
        assert_eq!((config.window_secs, config.partitions), (defaults.window_secs, defaults.partitions));
        let table: toml::Table = text.parse().expect("TOML");
        let documented = serde_json::to_value(&defaults).expect("serialises");
        for key in documented.as_object().into_iter().flatten().map(|(key, _)| key) {
            assert!(table.contains_key(key), "scheduler.toml does not show `{key}`");
        }
    }
}
