//! The consumer's configuration: what a team writes in its TOML file.

use std::time::Duration;

use fanout_config::{HttpSettings, KafkaSettings};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::ConsumerError;

/// Everything a consumer needs. Load it with [`fanout_config::load`] (defaults < TOML file <
/// `FANOUT_` environment); unknown keys are refused by name.
///
/// ```toml
/// name = "rewards"
/// [kafka]
/// bootstrap = "127.0.0.1:9092"
/// [store]
/// url = "sqlite:rewards.db"
/// dedupe_retention_hours = 168
/// [processing]
/// key_parallelism = 1000
/// batch_size = 500
/// [retry]
/// attempts = 3
/// delays_ms = [1000, 10000, 60000]
/// scheduler = false                 # true: the first delay is waited out in fanout-scheduler
/// schedule_topic = "_fanout_schedule"
/// [http]
/// listen = "0.0.0.0:9101"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The consumer's name: its consumer group, its dedupe namespace and part of its retry and
    /// dead-letter topic names.
    pub name: String,
    /// The cluster, and raw librdkafka properties.
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// The idempotency store (and the handler's own database).
    #[serde(default)]
    pub store: StoreSettings,
    /// Parallelism and batching.
    #[serde(default)]
    pub processing: ProcessingSettings,
    /// Retries and dead letters.
    #[serde(default)]
    pub retry: RetrySettings,
    /// `/metrics`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub http: HttpSettings,
}

/// Where the consumer keeps its dedupe marks, parked keys and (usually) its business tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite:path/to/file.db` (one instance) or `postgres://user:pass@host/db` (several).
    /// SQLite has a single writer: batches take turns, so a slow handler holds up every key;
    /// concurrent batches pay off on PostgreSQL.
    pub url: String,
    /// How long a dedupe mark is kept; a duplicate arriving later than this is applied again.
    pub dedupe_retention_hours: u64,
    /// Connection pool size; on PostgreSQL it bounds how many batches run at once (SQLite runs
    /// one). `/readyz` uses one more connection of its own.
    pub max_connections: u32,
    /// How long a SQLite writer waits for the write lock before failing.
    pub busy_timeout_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite:fanout-consumer.db".to_owned(),
            dedupe_retention_hours: 24 * 7,
            max_connections: 4,
            busy_timeout_ms: 5_000,
        }
    }
}

/// Parallelism, batching and the drain deadlines.
///
/// The defaults favour throughput without costing latency: with no linger a batch starts as soon
/// as the store has a free writer, with whatever is ready; events that arrive while it runs make
/// the next one, so batches stay small (and fast) under light load and grow towards `batch_size`
/// under heavy load. One SQLite store writes one batch at a time while the next one decodes;
/// PostgreSQL runs up to `store.max_connections` batches at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingSettings {
    /// How many distinct keys of one partition may be in flight at once (1 = strictly serial).
    /// Events of one key always run in order, one batch at a time; a batch takes each key's run
    /// of waiting events together. Default 1,000: enough for a batch of distinct keys.
    pub key_parallelism: usize,
    /// Most events applied in one store transaction (one dedupe statement and one
    /// `handle_batch` call per handler). Default 500: larger batches gain little (the per-batch
    /// cost is already a small share) and hold the store's write lock longer.
    pub batch_size: usize,
    /// How long a partial batch may wait to fill while the store is idle. Default 0: a batch
    /// forms while the previous one writes, so waiting only adds latency.
    pub batch_linger_ms: u64,
    /// Most fetched-but-unfinished events held in memory. When full, the runtime stops taking
    /// records and lets librdkafka's bounded prefetch hold the rest; fetching is paused only if
    /// it stays full for a second (stuck handlers), so rebalances are still served. Default
    /// 10,000: a few batches' worth per partition, about 10 MB of 1 KB events.
    pub max_buffered: usize,
    /// How often finished offsets are committed to Kafka.
    pub commit_interval_ms: u64,
    /// On revocation, how long in-flight work of the revoked partitions may take to finish
    /// before it is abandoned uncommitted. Keep it below the session timeout.
    pub drain_timeout_ms: u64,
    /// How long a graceful shutdown may take in all: in-flight work gets this minus a quarter
    /// (at most 5 s), kept for the final commit and leaving the group; work not finished by then
    /// is abandoned uncommitted, and `run` returns.
    pub shutdown_timeout_ms: u64,
    /// librdkafka `statistics.interval.ms`, the source of the lag gauge (0 turns it off).
    pub statistics_interval_ms: u64,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        Self {
            key_parallelism: 1_000,
            batch_size: 500,
            batch_linger_ms: 0,
            max_buffered: 10_000,
            commit_interval_ms: 1_000,
            drain_timeout_ms: 10_000,
            shutdown_timeout_ms: 30_000,
            statistics_interval_ms: 5_000,
        }
    }
}

/// How failures are retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// In-process attempts (the first included) before the event leaves for the retry topic.
    pub attempts: u32,
    /// First in-process backoff; doubles each attempt, with jitter.
    pub initial_backoff_ms: u64,
    /// Cap of the in-process backoff.
    pub max_backoff_ms: u64,
    /// One retry-topic tier per entry: the delay before each further attempt. Empty = no retry
    /// topic; exhausted in-process attempts dead-letter at once.
    pub delays_ms: Vec<u64>,
    /// Wait out the first delay in `fanout-scheduler` instead of in this process. Off (the
    /// default): a failed event goes to the retry topic at once, marked with its due time, and
    /// waits in memory once fetched from there. On: it is written to [`Self::schedule_topic`]
    /// instead, and the scheduler delivers it to the retry topic when it is due, durably, holding
    /// nothing in the consumer meanwhile; later events of its key take the same way and arrive
    /// behind it (see `failure::Outbound`). A scheduler must run on that topic. Later tiers
    /// (an event failing again on the retry topic) wait in memory in either case, so the events
    /// of its key behind it there keep their order.
    pub scheduler: bool,
    /// The schedule topic `fanout-scheduler` reads, with `scheduler = true`.
    pub schedule_topic: String,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff_ms: 100,
            max_backoff_ms: 5_000,
            delays_ms: vec![1_000, 10_000, 60_000],
            scheduler: false,
            schedule_topic: fanout_core::schedule::TOPIC.to_owned(),
        }
    }
}

/// librdkafka properties the runtime's guarantees rest on; `[kafka.properties]` may not set them.
const OWNED: [&str; 5] = [
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
    "bootstrap.servers",
];

impl ConsumerConfig {
    /// A configuration with defaults and the given name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kafka: KafkaSettings::default(),
            store: StoreSettings::default(),
            processing: ProcessingSettings::default(),
            retry: RetrySettings::default(),
            http: HttpSettings::default(),
        }
    }

    /// Refuses values the runtime cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), ConsumerError> {
        let bad = |key: &str, why: &str| Err(ConsumerError::Config(format!("{key}: {why}")));
        let valid_name = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return bad("name", "must be non-empty ASCII letters, digits, '-', '_' or '.' (it names topics)");
        }
        if self.processing.key_parallelism == 0 {
            return bad("processing.key_parallelism", "must be at least 1");
        }
        if self.processing.batch_size == 0 {
            return bad("processing.batch_size", "must be at least 1");
        }
        if self.processing.max_buffered == 0 {
            return bad("processing.max_buffered", "must be at least 1");
        }
        if self.retry.attempts == 0 {
            return bad("retry.attempts", "must be at least 1 (the first attempt counts)");
        }
        if self.retry.scheduler && self.retry.schedule_topic.trim().is_empty() {
            return bad("retry.schedule_topic", "must name the topic fanout-scheduler reads");
        }
        if self.store.max_connections == 0 {
            return bad("store.max_connections", "must be at least 1");
        }
        if self.store.dedupe_retention_hours == 0 {
            return bad(
                "store.dedupe_retention_hours",
                "must be at least 1 (0 would forget every event at once)",
            );
        }
        if self.kafka.bootstrap.trim().is_empty() {
            return bad("kafka.bootstrap", "must name at least one broker (host:port)");
        }
        let port = self.http.listen.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
        if !matches!(port, Some(Ok(_))) {
            return bad("http.listen", "must be host:port, e.g. 0.0.0.0:9101");
        }
        self.http.bearer_token().map_err(ConsumerError::Config)?;
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            return bad("store.url", "must start with sqlite: or postgres://");
        }
        for key in self.kafka.properties.keys() {
            if OWNED.contains(&key.as_str()) {
                return bad(
                    &format!("kafka.properties.{key}"),
                    "is set by the consumer runtime and may not be overridden",
                );
            }
        }
        Ok(())
    }

    /// The librdkafka configuration of the consumer: offsets stored and committed only by the
    /// runtime, cooperative-sticky assignment, statistics for the lag gauge.
    pub(crate) fn consumer_client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.kafka.bootstrap)
            .set("group.id", &self.name)
            // The runtime commits the low watermark of finished events itself, so a crash never
            // commits past an event whose effect is not in the store.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("auto.offset.reset", "earliest")
            // A fetch the broker parks while a partition is empty is not always woken by the
            // first records that arrive (seen with the first fetch of a new topic's partitions):
            // librdkafka's default wait of 500 ms became the first events' latency. 100 ms bounds
            // that for a few idle fetches a second; `[kafka.properties]` may set it.
            .set("fetch.wait.max.ms", "100")
            // A consumer started before its topic exists (the usual order on a new topic: start
            // the consumer, then publish) subscribes to it by name and sees it only on a metadata
            // refresh; librdkafka's default refresh every 5 minutes was a silent 5-minute wait.
            .set("topic.metadata.refresh.interval.ms", "2000");
        if self.processing.statistics_interval_ms > 0 {
            config.set("statistics.interval.ms", self.processing.statistics_interval_ms.to_string());
        }
        for (key, value) in &self.kafka.properties {
            config.set(key, value);
        }
        config
    }

    /// The librdkafka configuration of the producer writing retry and dead-letter records; the
    /// record producer adds the delivery guarantee (idempotent, `acks=all`).
    pub(crate) fn producer_client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka.bootstrap);
        for (key, value) in &self.kafka.properties {
            // Consumer-only properties would make the producer warn on every start.
            if !is_consumer_only(key) {
                config.set(key, value);
            }
        }
        config.set("linger.ms", "1");
        config
    }

    pub(crate) fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.processing.commit_interval_ms.max(1))
    }
}

fn is_consumer_only(key: &str) -> bool {
    key.starts_with("fetch.")
        || key.starts_with("session.")
        || key.starts_with("heartbeat.")
        || matches!(
            key,
            "auto.offset.reset" | "max.poll.interval.ms" | "isolation.level" | "group.instance.id"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_typos_are_named() {
        let text = "name = \"rewards\"\n[store]\nurl = \"sqlite:x.db\"\n[processing]\nkey_parallelism = 4\n\
                    [retry]\ndelays_ms = [5]\n[http]\nlisten = \"127.0.0.1:0\"";
        let config: ConsumerConfig = fanout_config::from_toml_str(text).expect("parses");
        assert_eq!(config.processing.key_parallelism, 4);
        assert_eq!(config.retry.delays_ms, vec![5]);
        assert_eq!(config.retry.attempts, 3);
        assert!(!config.retry.scheduler, "off unless asked for");
        assert_eq!(config.retry.schedule_topic, "_fanout_schedule");
        config.validate().expect("valid");
        let text = "name = \"rewards\"\n[retry]\nscheduler = true\nschedule_topic = \"sched\"";
        let config: ConsumerConfig = fanout_config::from_toml_str(text).expect("parses");
        assert!(config.retry.scheduler);
        assert_eq!(config.retry.schedule_topic, "sched");

        let err =
            fanout_config::from_toml_str::<ConsumerConfig>("name = \"x\"\n[processing]\nkey_paralelism = 4")
                .expect_err("typo refused");
        assert!(err.to_string().contains("key_paralelism"), "{err}");
    }

    #[test]
    fn owned_properties_and_bad_values_are_refused_by_name() {
        let mut config = ConsumerConfig::new("rewards");
        config.kafka.properties.insert("enable.auto.commit".into(), "true".into());
        let err = config.validate().expect_err("refused");
        assert!(err.to_string().contains("kafka.properties.enable.auto.commit"), "{err}");

        let mut config = ConsumerConfig::new("rewards");
        config.processing.key_parallelism = 0;
        assert!(config.validate().expect_err("refused").to_string().contains("key_parallelism"));

        let config = ConsumerConfig::new("bad name");
        assert!(config.validate().expect_err("refused").to_string().contains("name"));

        let mut config = ConsumerConfig::new("rewards");
        config.retry.scheduler = true;
        config.retry.schedule_topic = String::new();
        assert!(config.validate().expect_err("refused").to_string().contains("retry.schedule_topic"));

        let mut config = ConsumerConfig::new("rewards");
        config.store.dedupe_retention_hours = 0;
        assert!(config.validate().expect_err("refused").to_string().contains("store.dedupe_retention_hours"));

        let mut config = ConsumerConfig::new("rewards");
        config.kafka.bootstrap = " ".into();
        assert!(config.validate().expect_err("refused").to_string().contains("kafka.bootstrap"));

        for listen in ["9101", "0.0.0.0:http", ""] {
            let mut config = ConsumerConfig::new("rewards");
            config.http.listen = listen.into();
            assert!(config.validate().expect_err(listen).to_string().contains("http.listen"), "{listen}");
        }
        let mut config = ConsumerConfig::new("rewards");
        config.http.listen = "[::]:9101".into();
        config.validate().expect("an IPv6 address is fine");
    }

    #[test]
    fn the_client_never_auto_commits() {
        let client = ConsumerConfig::new("rewards").consumer_client_config();
        assert_eq!(client.get("group.id"), Some("rewards"));
        assert_eq!(client.get("enable.auto.commit"), Some("false"));
        assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(client.get("partition.assignment.strategy"), Some("cooperative-sticky"));
        assert_eq!(client.get("fetch.wait.max.ms"), Some("100"));
        let mut config = ConsumerConfig::new("rewards");
        config.kafka.properties.insert("fetch.wait.max.ms".into(), "500".into());
        assert_eq!(
            config.consumer_client_config().get("fetch.wait.max.ms"),
            Some("500"),
            "a team may choose"
        );
    }
}
