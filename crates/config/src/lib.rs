//! Fanout's configuration conventions, shared by the producer SDK, the consumer runtime, the
//! services and the CLI.
//!
//! Precedence: the type's defaults < a TOML file < environment variables prefixed `FANOUT_`, with
//! `__` between nested keys (`FANOUT_KAFKA__BOOTSTRAP=host:9092` sets `kafka.bootstrap`). Keys
//! the type does not know are an error that names the key, so a typo never silently falls back to
//! a default. librdkafka properties pass through untouched under `[kafka.properties]`.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     #[serde(default)]
//!     kafka: fanout_config::KafkaSettings,
//! }
//!
//! let settings: Settings = fanout_config::from_toml_str("[kafka]\nbootstrap = \"b:9092\"").unwrap();
//! assert_eq!(settings.kafka.bootstrap, "b:9092");
//! let err = fanout_config::from_toml_str::<Settings>("[kafka]\nbootstrapp = \"b:9092\"").unwrap_err();
//! assert!(err.to_string().contains("bootstrapp"));
//! ```
#![warn(missing_docs)]

use std::{collections::BTreeMap, path::Path};

use config::{Config, Environment, File, FileFormat};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The environment prefix for every Fanout setting.
pub const ENV_PREFIX: &str = "FANOUT";

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file named does not exist or cannot be read.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A value is malformed or a key is unknown; the message names the key.
    #[error("invalid configuration{origin}: {reason}")]
    Invalid {
        /// " in FILE" when a file was involved.
        origin: String,
        /// The deserializer's message, naming the key.
        reason: String,
    },
}

/// Loads `T` from its defaults, then `file` (TOML) when given, then `FANOUT_*` environment
/// variables.
///
/// Fanout's tooling variables are not configuration and are left out, so having them in the
/// shell never makes a service refuse to start: `FANOUT_TEST_*` (test suites), `FANOUT_BENCH_*`
/// (benchmarks) and those of `scripts/stack` ([`TOOLING_VARIABLES`]).
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    let variables = std::env::vars().filter(|(name, _)| is_setting(name)).collect();
    load_with_env(
        file,
        Environment::with_prefix(ENV_PREFIX).prefix_separator("_").separator("__").source(Some(variables)),
    )
}

/// `FANOUT_` variables that belong to Fanout's tools, not to any configuration.
pub const TOOLING_VARIABLES: &[&str] = &["FANOUT_STACK_DIR", "FANOUT_KAFKA_START_TIMEOUT"];

fn is_setting(name: &str) -> bool {
    name.starts_with("FANOUT_")
        && !name.starts_with("FANOUT_TEST_")
        && !name.starts_with("FANOUT_BENCH_")
        && !TOOLING_VARIABLES.contains(&name)
}

/// Loads `T` from TOML text alone (no file, no environment): for tests and embedded defaults.
pub fn from_toml_str<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let config = Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::Invalid { origin: String::new(), reason: e.to_string() })?;
    config
        .try_deserialize()
        .map_err(|e| ConfigError::Invalid { origin: String::new(), reason: e.to_string() })
}

fn load_with_env<T: DeserializeOwned>(file: Option<&Path>, env: Environment) -> Result<T, ConfigError> {
    let mut builder = Config::builder();
    let mut origin = String::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                reason: "no such file".to_owned(),
            });
        }
        origin = format!(" in {}", path.display());
        builder = builder.add_source(File::from(path).format(FileFormat::Toml));
    }
    let config = builder
        .add_source(env.try_parsing(true))
        .build()
        .map_err(|e| ConfigError::Invalid { origin: origin.clone(), reason: e.to_string() })?;
    config.try_deserialize().map_err(|e| ConfigError::Invalid { origin, reason: e.to_string() })
}

/// Where the Kafka cluster is, and librdkafka properties passed through as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, ...), applied last.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self { bootstrap: "127.0.0.1:9092".to_owned(), properties: BTreeMap::new() }
    }
}

/// Where a service's HTTP endpoints (`/metrics`, `/healthz`, `/readyz`, read APIs) listen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Socket address, e.g. `0.0.0.0:9101`.
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { listen: "127.0.0.1:0".to_owned() }
    }
}

/// `url` with its password replaced by `***`, for error messages and logs: a database or
/// broker URL may carry credentials, and an error message is not the place for them.
///
/// ```
/// assert_eq!(fanout_config::redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
/// assert_eq!(fanout_config::redact_url("sqlite:x.db"), "sqlite:x.db");
/// ```
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        kafka: KafkaSettings,
        #[serde(default = "default_name")]
        name: String,
    }

    fn default_name() -> String {
        "fallback".to_owned()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "name = \"from-file\"\n[kafka]\nbootstrap = \"file:9092\"\n[kafka.properties]\n\"linger.ms\" = \"7\"")
            .expect("writes");
        let path = file.path().with_extension("toml");
        std::fs::copy(file.path(), &path).expect("copies");

        let empty: Sample = from_toml_str("").expect("defaults load");
        assert_eq!(empty.name, "fallback");
        assert_eq!(empty.kafka.bootstrap, "127.0.0.1:9092");

        let from_file: Sample =
            load_with_env(Some(&path), Environment::with_prefix("FANOUT_TEST_NONE")).expect("file loads");
        assert_eq!(from_file.name, "from-file");
        assert_eq!(from_file.kafka.properties.get("linger.ms").map(String::as_str), Some("7"));

        let source =
            std::collections::HashMap::from([("FANOUT_KAFKA__BOOTSTRAP".to_owned(), "env:9092".to_owned())]);
        let env =
            Environment::with_prefix(ENV_PREFIX).prefix_separator("_").separator("__").source(Some(source));
        let layered: Sample = load_with_env(Some(&path), env).expect("env loads");
        assert_eq!(layered.kafka.bootstrap, "env:9092");
        assert_eq!(layered.name, "from-file");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn tooling_variables_are_not_settings() {
        assert!(is_setting("FANOUT_KAFKA__BOOTSTRAP"));
        assert!(is_setting("FANOUT_LOG"));
        assert!(!is_setting("FANOUT_TEST_BOOTSTRAP"));
        assert!(!is_setting("FANOUT_BENCH_DATABASE_URL"));
        assert!(!is_setting("FANOUT_STACK_DIR"));
        assert!(!is_setting("PATH"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = from_toml_str::<Sample>("nmae = \"x\"").expect_err("typo rejected");
        assert!(err.to_string().contains("nmae"), "{err}");
        let err = from_toml_str::<Sample>("[kafka]\nbootstrapp = \"x\"").expect_err("nested typo rejected");
        assert!(err.to_string().contains("bootstrapp"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/fanout.toml"))).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/fanout.toml"), "{err}");
    }
}
