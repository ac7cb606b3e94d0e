//! The engine's configuration: defaults < TOML file < `FANOUT_` environment, as every part of
//! Fanout loads it.

use std::path::PathBuf;

use fanout_config::{HttpSettings, KafkaSettings};
use fanout_schema_registry::RegistrySettings;
use serde::{Deserialize, Serialize};

/// Everything `fanout-flows` needs; with no file at all it runs the flows of `flows/` against the
/// local stack.
///
/// ```
/// let config: fanout_flows::EngineConfig = fanout_config::from_toml_str("flows = \"ops/flows\"").unwrap();
/// assert_eq!(config.flows, std::path::PathBuf::from("ops/flows"));
/// assert_eq!(config.partitions, 12);
/// assert!(fanout_config::from_toml_str::<fanout_flows::EngineConfig>("flow = \"x\"").is_err());
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// The consumer group the engine instances share (they split the runs by partition).
    pub name: String,
    /// This instance's fixed identity in the group (Kafka's static membership,
    /// `group.instance.id`), unique among the running instances, e.g. the pod's name. A restarted
    /// instance takes its old partitions at once (no rebalance, no waiting out the dead process's
    /// session), and its transactional producer (`<name>-<instance_id>`) aborts the dead
    /// process's open transaction at once, so restoring the runs does not wait out
    /// `transaction.timeout.ms`. Unset: a dynamic member, as any consumer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// A flow file, or a directory whose `*.toml` files are flows.
    pub flows: PathBuf,
    /// The signal topics' common prefix: `<prefix>.run.requested`, `<prefix>.task.started`,
    /// `<prefix>.task.succeeded`, `<prefix>.task.failed`, `<prefix>.task.late` (the signals' own
    /// topics by default).
    pub topic_prefix: String,
    /// Partitions of the signal topics and the state topic, when the engine creates them. They
    /// must be equal: a run's signals and its state share a partition number.
    pub partitions: i32,
    /// The compacted topic of the runs' join state (key `flow/run`).
    pub state_topic: String,
    /// The schedule topic a retry's backoff goes through (`fanout-scheduler`'s).
    pub schedule_topic: String,
    /// The most signals one transaction carries.
    pub max_batch: usize,
    /// How long a run that is over (every task succeeded, failed or blocked) stays answerable,
    /// in seconds: then it is deleted from the state topic (a tombstone) and from memory, so
    /// restore time and memory follow the runs of the last days, not of all time. A late
    /// signal for a forgotten run decides nothing; a new request for its key starts it afresh.
    pub keep_finished_runs_secs: u64,
    /// tracing's filter.
    pub log: String,
    /// `text` or `json`.
    pub log_format: fanout_service::LogFormat,
    /// Where spans are exported (OTLP); unset, the standard `OTEL_*` variables decide.
    pub telemetry: fanout_service::TelemetryConfig,
    /// The cluster.
    pub kafka: KafkaSettings,
    /// The schema registry the signals' schemas are registered in.
    pub registry: RegistrySettings,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpSettings,
}

/// The signal topics of one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalTopics {
    /// Where runs are requested (and tasks retried).
    pub requested: String,
    /// Where the engine starts tasks (workers read it).
    pub started: String,
    /// Where workers report successes.
    pub succeeded: String,
    /// Where workers report failures.
    pub failed: String,
    /// Where `fanout-scheduler` delivers the alarm of a task not finished in time.
    pub late: String,
}

impl SignalTopics {
    /// The topics under `prefix`.
    ///
    /// ```
    /// use fanout_core::Event;
    /// let topics = fanout_flows::SignalTopics::new("flow");
    /// assert_eq!(topics.started, fanout_flows::signals::TaskStarted::TOPIC);
    /// assert_eq!(topics.requested, fanout_flows::signals::RunRequested::TOPIC);
    /// ```
    pub fn new(prefix: &str) -> Self {
        Self {
            requested: format!("{prefix}.run.requested"),
            started: format!("{prefix}.task.started"),
            succeeded: format!("{prefix}.task.succeeded"),
            failed: format!("{prefix}.task.failed"),
            late: format!("{prefix}.task.late"),
        }
    }
}

impl EngineConfig {
    /// The signal topics this engine reads and writes.
    pub fn topics(&self) -> SignalTopics {
        SignalTopics::new(&self.topic_prefix)
    }

    /// The consumer group that forwards the records of the flows' trigger topics as run
    /// requests: `<name>.triggers`.
    ///
    /// ```
    /// let config = fanout_flows::EngineConfig::default();
    /// assert_eq!(config.triggers_group(), "fanout-flows.triggers");
    /// ```
    pub fn triggers_group(&self) -> String {
        format!("{}.triggers", self.name)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            name: "fanout-flows".to_owned(),
            instance_id: None,
            flows: PathBuf::from("flows"),
            topic_prefix: "flow".to_owned(),
            partitions: 12,
            state_topic: "_fanout_flows.state".to_owned(),
            schedule_topic: fanout_core::schedule::TOPIC.to_owned(),
            max_batch: 500,
            keep_finished_runs_secs: 7 * 24 * 3600,
            log: "info".to_owned(),
            log_format: Default::default(),
            telemetry: Default::default(),
            kafka: KafkaSettings::default(),
            registry: RegistrySettings::default(),
            http: HttpSettings::on("127.0.0.1:9111"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_file_is_valid_and_names_every_key() {
        let text = include_str!("../flows.toml");
        let config: EngineConfig = fanout_config::from_toml_str(text).expect("flows.toml parses");
        assert_eq!(config.topics(), SignalTopics::new("flow"));
        let table: toml::Table = text.parse().expect("TOML");
        let documented = serde_json::to_value(EngineConfig::default()).expect("serialises");
        for key in documented.as_object().into_iter().flatten().map(|(key, _)| key) {
            assert!(table.contains_key(key), "flows.toml does not show `{key}`");
        }
    }
}
