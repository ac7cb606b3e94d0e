//! A service's configuration: the consumer runtime's keys, the registry, logging, the scrape
//! target directory and the service's own `[service]` section.

use std::{fmt::Debug, path::PathBuf};

use fanout_config::{HttpSettings, KafkaSettings};
use fanout_consumer::{ConsumerConfig, ProcessingSettings, RetrySettings, StoreSettings};
use fanout_schema_registry::RegistrySettings;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ServiceError;

/// The environment variable naming the directory Prometheus reads file_sd targets from: the
/// `prometheus_targets_dir` key of [`fanout_config::load`]'s environment layer. A configuration
/// built in code sets the field itself.
pub const TARGETS_DIR_ENV: &str = "FANOUT_PROMETHEUS_TARGETS_DIR";

/// What a service adds to [`ServiceConfig`]: its `[service]` section.
pub trait Settings: DeserializeOwned + Default + Clone + Debug + Send + Sync + 'static {
    /// The service's kind (`rewards`): the default consumer name, the default SQLite file and
    /// the key its table migrations are recorded under.
    const SERVICE: &'static str;
    /// The default HTTP port, distinct per service so they run side by side on one host.
    const HTTP_PORT: u16;

    /// Refuses values the service cannot work with; the message names the key
    /// (`service.beans_per_job_post: must be at least 1`).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A service's whole configuration file.
///
/// ```toml
/// name = "rewards"            # consumer group, dedupe namespace; default: the service kind
/// log = "info"                # tracing filter (FANOUT_LOG)
/// log_format = "json"         # text (default) or json (FANOUT_LOG_FORMAT)
/// [kafka]
/// bootstrap = "127.0.0.1:9092"
/// [store]
/// url = "sqlite:rewards.db"   # default: sqlite:<service>.db; postgres://... for several instances
/// [http]
/// listen = "0.0.0.0:9101"     # /metrics, /healthz, /readyz and the read API
/// [registry]
/// urls = ["http://127.0.0.1:8081"]
/// [service]
/// beans_per_job_post = 10     # the service's own settings
/// ```
///
/// `[processing]` and `[retry]` are the consumer runtime's ([`ConsumerConfig`]).
/// `prometheus_targets_dir` is usually set by `FANOUT_PROMETHEUS_TARGETS_DIR`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Settings"))]
pub struct ServiceConfig<S> {
    /// The consumer's name: its consumer group, dedupe namespace and part of its retry and
    /// dead-letter topic names.
    #[serde(default = "default_name::<S>")]
    pub name: String,
    /// The cluster, and raw librdkafka properties.
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// The service's database: dedupe marks and its own tables.
    #[serde(default = "default_store::<S>")]
    pub store: StoreSettings,
    /// Parallelism and batching.
    #[serde(default)]
    pub processing: ProcessingSettings,
    /// Retries and dead letters.
    #[serde(default)]
    pub retry: RetrySettings,
    /// Where `/metrics`, `/healthz`, `/readyz` and the read API listen.
    #[serde(default = "default_http::<S>")]
    pub http: HttpSettings,
    /// The schema registry payloads are decoded through.
    #[serde(default)]
    pub registry: RegistrySettings,
    /// The tracing filter, e.g. `info` or `info,fanout_consumer=debug`.
    #[serde(default = "default_log")]
    pub log: String,
    /// Text or JSON log lines.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Where to write a Prometheus file_sd target for `/metrics` while the service runs.
    #[serde(default)]
    pub prometheus_targets_dir: Option<PathBuf>,
    /// The service's own settings.
    #[serde(default)]
    pub service: S,
}

fn default_name<S: Settings>() -> String {
    S::SERVICE.to_owned()
}

fn default_store<S: Settings>() -> StoreSettings {
    StoreSettings { url: format!("sqlite:{}.db", S::SERVICE), ..StoreSettings::default() }
}

fn default_http<S: Settings>() -> HttpSettings {
    HttpSettings { listen: format!("127.0.0.1:{}", S::HTTP_PORT) }
}

fn default_log() -> String {
    "info".to_owned()
}

impl<S: Settings> Default for ServiceConfig<S> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

impl<S: Settings> ServiceConfig<S> {
    /// Defaults everywhere, with these service settings.
    pub fn new(service: S) -> Self {
        Self {
            name: default_name::<S>(),
            kafka: KafkaSettings::default(),
            store: default_store::<S>(),
            processing: ProcessingSettings::default(),
            retry: RetrySettings::default(),
            http: default_http::<S>(),
            registry: RegistrySettings::default(),
            log: default_log(),
            log_format: LogFormat::default(),
            prometheus_targets_dir: None,
            service,
        }
    }

    /// The consumer runtime's part of the configuration.
    pub fn consumer(&self) -> ConsumerConfig {
        let mut consumer = ConsumerConfig::new(self.name.clone());
        consumer.kafka = self.kafka.clone();
        consumer.store = self.store.clone();
        consumer.processing = self.processing.clone();
        consumer.retry = self.retry.clone();
        consumer.http = self.http.clone();
        consumer
    }

    /// Refuses values the service cannot start with, naming the key.
    pub fn validate(&self) -> Result<(), ServiceError> {
        self.consumer().validate()?;
        if self.registry.urls.is_empty() {
            return Err(ServiceError::Config("registry.urls: at least one URL is needed".into()));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| ServiceError::Config(format!("log: {e} (in {:?})", self.log)))?;
        self.service.validate().map_err(ServiceError::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        amount: i64,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self { amount: 10 }
        }
    }

    impl Settings for Sample {
        const SERVICE: &'static str = "sample";
        const HTTP_PORT: u16 = 9199;

        fn validate(&self) -> Result<(), String> {
            if self.amount > 0 {
                Ok(())
            } else {
                Err("service.amount: must be at least 1".into())
            }
        }
    }

    #[test]
    fn an_empty_file_takes_the_service_defaults() {
        let config: ServiceConfig<Sample> = fanout_config::from_toml_str("").expect("parses");
        assert_eq!(config.name, "sample");
        assert_eq!(config.store.url, "sqlite:sample.db");
        assert_eq!(config.http.listen, "127.0.0.1:9199");
        assert_eq!(config.service.amount, 10);
        assert_eq!(config.log_format, LogFormat::Text);
        config.validate().expect("valid");
        assert_eq!(config.consumer().name, "sample");
    }

    #[test]
    fn every_section_parses_and_reaches_the_consumer() {
        let text = "name = \"x\"\nlog = \"debug\"\nlog_format = \"json\"\n\
                    prometheus_targets_dir = \"/tmp/t\"\n[kafka]\nbootstrap = \"k:1\"\n\
                    [store]\nurl = \"postgres://u@h/db\"\n[processing]\nbatch_size = 3\n\
                    [retry]\ndelays_ms = []\n[http]\nlisten = \"0.0.0.0:1\"\n\
                    [registry]\nurls = \"http://r:1\"\n[service]\namount = 4";
        let config: ServiceConfig<Sample> = fanout_config::from_toml_str(text).expect("parses");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.prometheus_targets_dir, Some(PathBuf::from("/tmp/t")));
        assert_eq!(config.registry.urls, ["http://r:1"]);
        assert_eq!(config.service.amount, 4);
        let consumer = config.consumer();
        assert_eq!(consumer.kafka.bootstrap, "k:1");
        assert_eq!(consumer.store.url, "postgres://u@h/db");
        assert_eq!(consumer.processing.batch_size, 3);
        assert!(consumer.retry.delays_ms.is_empty());
        assert_eq!(consumer.http.listen, "0.0.0.0:1");
    }

    #[test]
    fn unknown_keys_are_named_at_every_level() {
        for (text, key) in [
            ("nmae = \"x\"", "nmae"),
            ("[service]\namuont = 1", "amuont"),
            ("[store]\nulr = \"sqlite:x\"", "ulr"),
            ("[sevrice]\namount = 1", "sevrice"),
        ] {
            let err = fanout_config::from_toml_str::<ServiceConfig<Sample>>(text).expect_err(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused_by_key() {
        let mut config = ServiceConfig::new(Sample { amount: 0 });
        assert!(config.validate().expect_err("amount").to_string().contains("service.amount"));
        config.service.amount = 1;
        config.log = "info,[".into();
        assert!(config.validate().expect_err("log").to_string().contains("log"));
        config.log = "info".into();
        config.name = "no spaces".into();
        assert!(config.validate().expect_err("name").to_string().contains("name"));
    }
}
