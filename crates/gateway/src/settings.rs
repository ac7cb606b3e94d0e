//! `fanout-gateway`'s configuration: where it listens, its cluster, registry and dedupe store, and
//! one `[sources.NAME]` table per provider it accepts callbacks from.

use std::{collections::BTreeMap, fmt, time::Duration};

use fanout_config::{HttpSettings, KafkaSettings};
use fanout_schema_registry::RegistrySettings;
use serde::{Deserialize, Deserializer};

use crate::{
    config::{ConfigError, Problem, Scheme, SourceConfig},
    Verifier,
};

/// The least `dedupe_hours` accepted: longer than Stripe's three days of retries, so a provider's
/// last retry of an event the gateway published is still recognised.
pub const MIN_DEDUPE_HOURS: u64 = 72;

/// Everything `fanout-gateway` needs. With no file it runs against the local stack, but it
/// accepts nothing until a source is configured.
///
/// ```
/// let config: fanout_gateway::GatewayConfig = fanout_config::from_toml_str(
///     r#"
///     [sources.orders-pay]
///     verify = "hmac"
///     secrets = ["s3cr3t"]
///     signature_header = "X-Signature"
///     topic = "payment.results"
///     event_id = "body:/id"
///     correlation_id = "body:/out_trade_no"
///     "#,
/// )?;
/// let source = &config.sources["orders-pay"];
/// assert_eq!(source.topic, "payment.results");
/// assert_eq!(config.dedupe_hours, 168);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The gateway's name: the `ce_source` of what it publishes, and its log and scrape name.
    pub name: String,
    /// Where providers' callbacks arrive, `POST /callbacks/{source}`: the only route served
    /// there, so this is the one port to expose to the internet.
    pub listen: String,
    /// `/metrics`, `/healthz`, `/readyz` and the requesters' route registration, on a port of
    /// their own that need not be public; with `bearer_token` (or `bearer_token_file`) all but
    /// the two probes need `Authorization: Bearer <token>`.
    pub http: HttpSettings,
    /// The cluster.
    pub kafka: KafkaSettings,
    /// The registry the `CallbackReceived` schema is registered in, under each source's topic.
    pub registry: RegistrySettings,
    /// The dedupe store: a PostgreSQL database every instance of the gateway shares.
    pub store: StoreSettings,
    /// How long a published callback's provider id is remembered, in hours (at least
    /// [`MIN_DEDUPE_HOURS`]; default a week): a retry within it is answered 200 and publishes
    /// nothing.
    pub dedupe_hours: u64,
    /// How long a callback waits for Kafka's acknowledgement before it is answered 503.
    pub publish_timeout_ms: u64,
    /// The `Retry-After` of a 503, in seconds.
    pub retry_after_secs: u64,
    /// Where rejected requests are written with their reason (headers `fanout_gateway_reason`,
    /// `fanout_gateway_detail`, ...; the body's first 64 KiB), for an operator to inspect.
    pub rejects_topic: String,
    /// Partitions of a source's topic when the gateway creates it.
    pub partitions: i32,
    /// How often published callbacks older than `dedupe_hours` are forgotten, in seconds.
    pub sweep_interval_secs: u64,
    /// Where to write a Prometheus file_sd target for `/metrics` while the gateway runs
    /// (`FANOUT_PROMETHEUS_TARGETS_DIR`, as for every Fanout service).
    pub prometheus_targets_dir: Option<std::path::PathBuf>,
    /// tracing's filter, e.g. `info` or `fanout_gateway=debug`.
    pub log: String,
    /// `text` or `json`.
    pub log_format: fanout_service::LogFormat,
    /// Where spans are exported (OTLP); unset, the standard `OTEL_*` variables decide.
    pub telemetry: fanout_service::TelemetryConfig,
    /// The sources, by the name in their URL (`/callbacks/<name>`).
    pub sources: BTreeMap<String, SourceSettings>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            name: "fanout-gateway".to_owned(),
            listen: "127.0.0.1:9120".to_owned(),
            http: HttpSettings::on("127.0.0.1:9121"),
            kafka: KafkaSettings::default(),
            registry: RegistrySettings::default(),
            store: StoreSettings::default(),
            dedupe_hours: 168,
            publish_timeout_ms: 5_000,
            retry_after_secs: 10,
            rejects_topic: "_fanout_gateway_rejects".to_owned(),
            partitions: 6,
            sweep_interval_secs: 3600,
            prometheus_targets_dir: None,
            log: "info".to_owned(),
            log_format: Default::default(),
            telemetry: Default::default(),
            sources: BTreeMap::new(),
        }
    }
}

impl GatewayConfig {
    /// Refuses values the gateway cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.dedupe_hours < MIN_DEDUPE_HOURS {
            return Err(format!(
                "dedupe_hours: at least {MIN_DEDUPE_HOURS} (providers retry for up to three days), got {}",
                self.dedupe_hours
            ));
        }
        if self.partitions < 1 {
            return Err(format!("partitions: at least 1, got {}", self.partitions));
        }
        if self.sweep_interval_secs == 0 {
            return Err("sweep_interval_secs: at least 1".to_owned());
        }
        self.http.bearer_token()?;
        if self.publish_timeout_ms == 0 {
            return Err("publish_timeout_ms: at least 1".to_owned());
        }
        if self.name.trim().is_empty() {
            return Err("name: empty; it is the ce_source of every callback published".to_owned());
        }
        if !self.store.url.starts_with("postgres://") && !self.store.url.starts_with("postgresql://") {
            return Err(format!(
                "store.url: a PostgreSQL URL (postgres://...) that every instance shares, got {}",
                fanout_config::redact_url(&self.store.url)
            ));
        }
        for name in self.sources.keys() {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return Err(format!(
                    "sources.{name}: a source's name is its URL path segment: letters, digits, '-', '_' \
                     and '.' only"
                ));
            }
        }
        Ok(())
    }

    /// [`publish_timeout_ms`](Self::publish_timeout_ms) as a duration.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

/// The dedupe store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `postgres://user:password@host/database`.
    pub url: String,
    /// Connections in the pool; lookups and records are batched, so a few carry thousands of
    /// callbacks a second.
    pub max_connections: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { url: "postgres://fanout:fanout@127.0.0.1:5432/fanout".to_owned(), max_connections: 8 }
    }
}

/// One source: how its requests are verified ([`SourceConfig`]'s keys) and routed.
///
/// Routing keys, beside the verification keys of [`SourceConfig`]:
///
/// | key | |
/// |---|---|
/// | `topic` | where its callbacks are published (required) |
/// | `event_id` | the provider's id of the callback, the dedupe key (scheme default, else required) |
/// | `correlation_id` | which request the callback answers: the event's key (required) |
/// | `event_type` | what happened, e.g. `TRANSACTION.SUCCESS` (scheme default, else none; a callback without it is published without it) |
///
/// Each of the last three is a [`Field`]: `header:<name>`, `body:<JSON pointer>` (the body as
/// published, so WeChat Pay's decrypted resource) or `signed:<JSON pointer>` (the body as signed,
/// so WeChat Pay's notification around the resource).
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The topic its callbacks are published to.
    pub topic: String,
    /// Where the provider's event id is.
    pub event_id: Field,
    /// Where the correlation id is.
    pub correlation_id: Field,
    /// Where the event type is, if anywhere.
    pub event_type: Option<Field>,
    /// How its requests are verified.
    pub verification: SourceConfig,
}

impl<'de> Deserialize<'de> for SourceSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut keys = fanout_config::Sections::deserialize(deserializer)?;
        let topic: Option<String> = keys.take("topic").map_err(D::Error::custom)?;
        let event_id: Option<Field> = keys.take("event_id").map_err(D::Error::custom)?;
        let correlation_id: Option<Field> = keys.take("correlation_id").map_err(D::Error::custom)?;
        let event_type: Option<Field> = keys.take("event_type").map_err(D::Error::custom)?;
        let verification: SourceConfig = keys.into_rest().map_err(D::Error::custom)?;
        let missing = |key: &str, what: &str| D::Error::custom(format!("missing `{key}`: {what}"));
        let topic = topic.ok_or_else(|| missing("topic", "the topic its callbacks are published to"))?;
        let event_id = match event_id.or_else(|| Field::default_event_id(verification.verify)) {
            Some(field) => field,
            None => {
                return Err(missing(
                    "event_id",
                    "where the provider's id of a callback is (e.g. body:/id), the dedupe key",
                ))
            }
        };
        let correlation_id = correlation_id.ok_or_else(|| {
            missing(
                "correlation_id",
                "where the id of the request a callback answers is (e.g. body:/out_trade_no); it is \
                 the published event's key",
            )
        })?;
        let event_type = event_type.or_else(|| Field::default_event_type(verification.verify));
        Ok(Self { topic, event_id, correlation_id, event_type, verification })
    }
}

impl SourceSettings {
    /// Builds the source's verifier (every key checked) and checks its routing.
    pub fn verifier(&self, source: &str) -> Result<Verifier, ConfigError> {
        if self.topic.trim().is_empty() {
            return Err(ConfigError::new(source, "topic", Problem::Empty));
        }
        Verifier::from_config(source, &self.verification)
    }
}

/// Where a value is in a request: `header:<name>`, `body:<JSON pointer>` or
/// `signed:<JSON pointer>`.
///
/// ```
/// use fanout_gateway::Field;
///
/// let field: Field = "body:/resource/out_trade_no".parse()?;
/// assert_eq!(field.to_string(), "body:/resource/out_trade_no");
/// assert!("body:resource".parse::<Field>().is_err()); // a pointer starts with '/'
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A request header, by name (matched case-insensitively).
    Header(String),
    /// A JSON pointer into the body as published (decrypted, where the scheme decrypts).
    Body(String),
    /// A JSON pointer into the body as signed.
    Signed(String),
}

impl Field {
    fn default_event_id(scheme: Scheme) -> Option<Self> {
        match scheme {
            Scheme::StandardWebhooks => Some(Self::Header("webhook-id".into())),
            Scheme::Stripe => Some(Self::Body("/id".into())),
            Scheme::GitHub => Some(Self::Header("x-github-delivery".into())),
            Scheme::WechatPayV3 => Some(Self::Signed("/id".into())),
            _ => None,
        }
    }

    fn default_event_type(scheme: Scheme) -> Option<Self> {
        match scheme {
            Scheme::StandardWebhooks | Scheme::Stripe => Some(Self::Body("/type".into())),
            Scheme::GitHub => Some(Self::Header("x-github-event".into())),
            Scheme::WechatPayV3 => Some(Self::Signed("/event_type".into())),
            _ => None,
        }
    }
}

impl std::str::FromStr for Field {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let pointer = |rest: &str| {
            if rest.starts_with('/') {
                Ok(rest.to_owned())
            } else {
                Err(format!("{text:?}: a JSON pointer starts with '/', e.g. body:/id"))
            }
        };
        match text.split_once(':') {
            Some(("header", name)) if !name.is_empty() && http::HeaderName::try_from(name).is_ok() => {
                Ok(Self::Header(name.to_ascii_lowercase()))
            }
            Some(("header", _)) => Err(format!("{text:?}: not a header name")),
            Some(("body", rest)) => pointer(rest).map(Self::Body),
            Some(("signed", rest)) => pointer(rest).map(Self::Signed),
            _ => {
                Err(format!("{text:?}: expected header:<name>, body:<JSON pointer> or signed:<JSON pointer>"))
            }
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Body(pointer) => write!(f, "body:{pointer}"),
            Self::Signed(pointer) => write!(f, "signed:{pointer}"),
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_file_is_valid() {
        let text = include_str!("../gateway.toml");
        let config: GatewayConfig = fanout_config::from_toml_str(text).expect("gateway.toml parses");
        config.validate().expect("gateway.toml is usable");
        for (name, source) in &config.sources {
            source.verifier(name).expect("its sources build");
        }
    }

    #[test]
    fn schemes_bring_their_ids_and_a_missing_key_is_named() {
        let config: GatewayConfig = fanout_config::from_toml_str(
            "[sources.gh]\nverify = \"github\"\nsecrets = [\"x\"]\ntopic = \"t\"\n\
             correlation_id = \"body:/repository/full_name\"",
        )
        .expect("parses");
        let source = &config.sources["gh"];
        assert_eq!(source.event_id, Field::Header("x-github-delivery".into()));
        assert_eq!(source.event_type, Some(Field::Header("x-github-event".into())));

        for (text, named) in [
            ("[sources.a]\nverify = \"none\"\ncorrelation_id = \"body:/c\"\nevent_id = \"body:/i\"", "topic"),
            ("[sources.a]\nverify = \"none\"\ntopic = \"t\"\ncorrelation_id = \"body:/c\"", "event_id"),
            ("[sources.a]\nverify = \"none\"\ntopic = \"t\"\nevent_id = \"body:/i\"", "correlation_id"),
            ("[sources.a]\nverify = \"none\"\ntopic = \"t\"\nevent_id = \"body\"\ncorrelation_id = \"body:/c\"", "body"),
            ("[sources.a]\nverify = \"none\"\ntopic = \"t\"\nevent_id = \"body:/i\"\ncorrelation_id = \"body:/c\"\ntopik = 1", "topik"),
            ("[sources.a]\ntopic = \"t\"\nevent_id = \"body:/i\"\ncorrelation_id = \"body:/c\"", "verify"),
        ] {
            let err = fanout_config::from_toml_str::<GatewayConfig>(text).expect_err(named);
            assert!(err.to_string().contains(named), "{named}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused_by_key() {
        let mut config = GatewayConfig { dedupe_hours: 70, ..GatewayConfig::default() };
        assert!(config.validate().expect_err("70 h").contains("dedupe_hours"));
        config.dedupe_hours = 72;
        config.store.url = "sqlite:gateway.db".into();
        assert!(config.validate().expect_err("sqlite").contains("store.url"));
        config.store.url = "postgres://u:pw@h/db".into();
        config.validate().expect("valid");
        let source: GatewayConfig = fanout_config::from_toml_str(
            "[sources.\"a b\"]\nverify = \"none\"\ntopic = \"t\"\nevent_id = \"body:/i\"\ncorrelation_id = \"body:/c\"",
        )
        .expect("parses");
        assert!(source.validate().expect_err("space").contains("sources.a b"));
    }
}
