//! A service's configuration: the consumer runtime's keys, the registry, logging, the scrape
//! target directory and the service's own `[service]` section.

use std::{fmt::Debug, path::PathBuf};

use fanout_consumer::ConsumerConfig;
use fanout_schema_registry::RegistrySettings;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{ServiceError, TelemetryConfig};

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

/// A service's whole configuration file: the consumer runtime's keys at the top level, then the
/// service's own.
///
/// ```toml
/// name = "rewards"            # consumer group, dedupe namespace; default: the service kind
/// log = "info"                # tracing filter (FANOUT_LOG)
/// log_format = "json"         # text (default) or json (FANOUT_LOG_FORMAT)
/// [telemetry]
/// otlp_endpoint = "http://127.0.0.1:4318"  # export spans over OTLP/HTTP (or OTEL_EXPORTER_OTLP_ENDPOINT)
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
/// `name`, `[kafka]`, `[store]`, `[processing]`, `[retry]` and `[http]` are the consumer
/// runtime's ([`ConsumerConfig`], in [`consumer`](Self::consumer)); a service only changes
/// their defaults (its name, `sqlite:<service>.db`, its own port). `prometheus_targets_dir` is
/// usually set by `FANOUT_PROMETHEUS_TARGETS_DIR`.
#[derive(Debug, Clone)]
pub struct ServiceConfig<S> {
    /// The consumer runtime's keys.
    pub consumer: ConsumerConfig,
    /// The schema registry payloads are decoded through.
    pub registry: RegistrySettings,
    /// The tracing filter, e.g. `info` or `info,fanout_consumer=debug`.
    pub log: String,
    /// Text or JSON log lines.
    pub log_format: LogFormat,
    /// Where spans are exported (`[telemetry]`); nowhere by default.
    pub telemetry: TelemetryConfig,
    /// Where to write a Prometheus file_sd target for `/metrics` while the service runs.
    pub prometheus_targets_dir: Option<PathBuf>,
    /// The service's own settings.
    pub service: S,
}

// By hand: the service takes its own keys out and the rest is a `ConsumerConfig`, which refuses a
// key neither knows (`serde(flatten)` would accept it silently).
impl<'de, S: Settings> Deserialize<'de> for ServiceConfig<S> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut keys = fanout_config::Sections::deserialize(deserializer)?;
        let defaults = Self::new(S::default());
        let registry = keys.take("registry").map_err(D::Error::custom)?;
        let log = keys.take("log").map_err(D::Error::custom)?;
        let log_format = keys.take("log_format").map_err(D::Error::custom)?;
        let telemetry = keys.take("telemetry").map_err(D::Error::custom)?;
        let prometheus_targets_dir = keys.take("prometheus_targets_dir").map_err(D::Error::custom)?;
        let service = keys.take("service").map_err(D::Error::custom)?;
        keys.default("name", &defaults.consumer.name);
        keys.default("store.url", &defaults.consumer.store.url);
        keys.default("http.listen", &defaults.consumer.http.listen);
        Ok(Self {
            consumer: keys.into_rest().map_err(D::Error::custom)?,
            registry: registry.unwrap_or(defaults.registry),
            log: log.unwrap_or(defaults.log),
            log_format: log_format.unwrap_or(defaults.log_format),
            telemetry: telemetry.unwrap_or(defaults.telemetry),
            prometheus_targets_dir: prometheus_targets_dir.or(defaults.prometheus_targets_dir),
            service: service.unwrap_or(defaults.service),
        })
    }
}

impl<S: Settings> Default for ServiceConfig<S> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

impl<S: Settings> ServiceConfig<S> {
    /// Defaults everywhere, with these service settings.
    pub fn new(service: S) -> Self {
        let mut consumer = ConsumerConfig::new(S::SERVICE);
        consumer.store.url = format!("sqlite:{}.db", S::SERVICE);
        consumer.http.listen = format!("127.0.0.1:{}", S::HTTP_PORT);
        Self {
            consumer,
            registry: RegistrySettings::default(),
            log: "info".to_owned(),
            log_format: LogFormat::default(),
            telemetry: TelemetryConfig::default(),
            prometheus_targets_dir: None,
            service,
        }
    }

    /// Refuses values the service cannot start with, naming the key.
    pub fn validate(&self) -> Result<(), ServiceError> {
        self.consumer.validate()?;
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
        assert_eq!(config.consumer.name, "sample");
        assert_eq!(config.consumer.store.url, "sqlite:sample.db");
        assert_eq!(config.consumer.http.listen, "127.0.0.1:9199");
        assert_eq!(config.service.amount, 10);
        assert_eq!(config.log_format, LogFormat::Text);
        config.validate().expect("valid");
        assert_eq!(config.consumer.name, "sample");
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
        let consumer = config.consumer.clone();
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
        config.consumer.name = "no spaces".into();
        assert!(config.validate().expect_err("name").to_string().contains("name"));
    }
}
