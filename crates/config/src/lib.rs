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

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use fanout_core::Secret;

use config::{Config, Environment, File, FileFormat};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The environment prefix for every Fanout setting.
pub const ENV_PREFIX: &str = "FANOUT";

/// A configuration that could not be loaded.
#[derive(thiserror::Error)]
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
    /// A `FANOUT_*` environment variable sets an unknown key or a malformed value (it was set
    /// for another tool, or is misspelt); the file, if any, is fine.
    #[error("invalid configuration in environment variable {variable}: {reason}")]
    Environment {
        /// The variable, e.g. `FANOUT_KAFKA__BOOSTRAP` (several, comma-separated, when only
        /// their combination fails).
        variable: String,
        /// The deserializer's message, naming the key.
        reason: String,
    },
}

fanout_core::debug_as_report!(ConfigError);

/// Loads `T` from its defaults, then `file` (TOML) when given, then `FANOUT_*` environment
/// variables.
///
/// Fanout's tooling variables are not configuration and are left out, so having them in the
/// shell never makes a service refuse to start: `FANOUT_TEST_*` (test suites), `FANOUT_BENCH_*`
/// (benchmarks), and those of `scripts/stack` and the fuzz tests ([`TOOLING_VARIABLES`]).
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    let variables: Variables = std::env::vars().filter(|(name, _)| is_setting(name)).collect();
    load_with_env(file, &variables)
}

/// The `FANOUT_*` variables a load reads, by name.
type Variables = std::collections::HashMap<String, String>;

/// `FANOUT_` variables that belong to Fanout's tools, not to any configuration.
pub const TOOLING_VARIABLES: &[&str] =
    &["FANOUT_STACK_DIR", "FANOUT_KAFKA_START_TIMEOUT", "FANOUT_FUZZ_COUNT"];

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
        .map_err(|e| ConfigError::Invalid { origin: String::new(), reason: located(text, e.to_string()) })?;
    config
        .try_deserialize()
        .map_err(|e| ConfigError::Invalid { origin: String::new(), reason: e.to_string() })
}

/// Loads `T` from `file` and `variables`; when that fails, says which of them is to blame: the
/// file if it fails on its own, else the first variable that fails with the file, so a typo in
/// `FANOUT_KAFKA__BOOSTRAP` is never reported as a problem "in rewards.toml".
fn load_with_env<T: DeserializeOwned>(file: Option<&Path>, variables: &Variables) -> Result<T, ConfigError> {
    let error = match layered(file, variables) {
        Ok(loaded) => return Ok(loaded),
        Err(error) => error,
    };
    if variables.is_empty() {
        return Err(error);
    }
    layered::<T>(file, &Variables::new())?;
    for (name, value) in variables {
        let one = Variables::from([(name.clone(), value.clone())]);
        if let Err(ConfigError::Invalid { reason, .. }) = layered::<T>(file, &one) {
            return Err(ConfigError::Environment { variable: name.clone(), reason });
        }
    }
    // Only a combination of variables fails; name them all.
    let mut names: Vec<&str> = variables.keys().map(String::as_str).collect();
    names.sort_unstable();
    match error {
        ConfigError::Invalid { reason, .. } => {
            Err(ConfigError::Environment { variable: names.join(", "), reason })
        }
        other => Err(other),
    }
}

fn layered<T: DeserializeOwned>(file: Option<&Path>, variables: &Variables) -> Result<T, ConfigError> {
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
    let env = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .source(Some(variables.clone()))
        .try_parsing(true);
    let config = builder.add_source(env).build().map_err(|e| {
        let text = file.and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default();
        ConfigError::Invalid { origin: origin.clone(), reason: located(&text, e.to_string()) }
    })?;
    config.try_deserialize().map_err(|e| ConfigError::Invalid { origin, reason: e.to_string() })
}

/// `reason` with the line of `text` to blame when it names no line: the TOML parser says where a
/// syntax error is, but a number it parsed that does not fit (`1e309`, `9223372036854775808`) is
/// refused later, without a key or a line. The line is the first whose removal lets the text
/// load; only looked for on this error path, and config files are short.
fn located(text: &str, reason: String) -> String {
    if reason.contains(" line ") || text.is_empty() {
        return reason;
    }
    let lines: Vec<&str> = text.lines().collect();
    let loads = |skip: usize| {
        let without: Vec<&str> =
            lines.iter().enumerate().map(|(i, line)| if i == skip { "" } else { line }).collect();
        Config::builder().add_source(File::from_str(&without.join("\n"), FileFormat::Toml)).build().is_ok()
    };
    match (0..lines.len()).find(|&i| !lines[i].trim().is_empty() && loads(i)) {
        Some(i) => {
            let key = lines[i].split('=').next().unwrap_or_default().trim();
            format!("{reason} (line {}, key `{key}`)", i + 1)
        }
        None => reason,
    }
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

/// Where a service's HTTP endpoints (`/metrics`, `/healthz`, `/readyz`, read APIs) listen, and
/// the bearer token they may require.
///
/// ```toml
/// [http]
/// listen = "0.0.0.0:9101"
/// bearer_token_file = "/run/secrets/fanout-http-token"   # or bearer_token = "..." (FANOUT_HTTP__BEARER_TOKEN)
/// ```
///
/// With a token, every endpoint but `/healthz` and `/readyz` answers 401 unless the request
/// carries `Authorization: Bearer <token>`: the read APIs, `/metrics`, and the gateway's route
/// registration. The two probes stay open because an orchestrator's probe cannot read a secret,
/// and they tell nothing but "up" and "ready" with a few counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Socket address, e.g. `0.0.0.0:9101`.
    pub listen: String,
    /// The token requests must carry (`FANOUT_HTTP__BEARER_TOKEN`); none: the endpoints are open.
    pub bearer_token: Option<Secret>,
    /// A file whose first line is the token: a mounted secret, and the very file Prometheus's
    /// `authorization.credentials_file` reads. Read once at start. Not together with
    /// `bearer_token`.
    pub bearer_token_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { listen: "127.0.0.1:0".to_owned(), bearer_token: None, bearer_token_file: None }
    }
}

impl HttpSettings {
    /// Listening on `listen`, with no token.
    pub fn on(listen: impl Into<String>) -> Self {
        Self { listen: listen.into(), ..Self::default() }
    }

    /// The token requests must carry, from `bearer_token` or `bearer_token_file`; `None` when
    /// neither is set. The error names the key: both set, an unreadable file, an empty token.
    pub fn bearer_token(&self) -> Result<Option<Secret>, String> {
        let token = match (&self.bearer_token, &self.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err("http.bearer_token and http.bearer_token_file: set one of them, not both".into())
            }
            (Some(token), None) => token.expose().trim().to_owned(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("http.bearer_token_file: cannot read {}: {e}", path.display()))?;
                text.lines().next().unwrap_or_default().trim().to_owned()
            }
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            return Err("http.bearer_token: the token is empty".into());
        }
        Ok(Some(Secret::new(token)))
    }
}

/// A configuration's top-level keys, for a type made of another configuration plus keys of its
/// own: it [`take`](Self::take)s its keys and hands the rest, whole, to the other type, whose
/// `deny_unknown_fields` then names any key neither knows. (`serde(flatten)` cannot do this: it
/// turns `deny_unknown_fields` off.) Values keep the loader's lenient typing, so `FANOUT_`
/// environment values still parse as numbers and lists.
///
/// ```
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Inner { name: String }
///
/// let mut keys: fanout_config::Sections = fanout_config::from_toml_str("name = \"x\"\nlog = \"debug\"").unwrap();
/// let log: Option<String> = keys.take("log").unwrap();
/// keys.default("name", "unused: the file set it");
/// let inner: Inner = keys.into_rest().unwrap();
/// assert_eq!((log.as_deref(), inner.name.as_str()), (Some("debug"), "x"));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Sections(config::Map<String, config::Value>);

impl Sections {
    /// Removes `key` and deserializes it; `None` when absent. The error names the key.
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, String> {
        let Some(value) = self.0.remove(key) else {
            return Ok(None);
        };
        // Deserialized as the one entry of a table, so the loader's message carries the whole
        // path (`service.amount`), as it does for every other key.
        let table = config::Map::from([(key.to_owned(), value)]);
        let mut one: BTreeMap<String, T> =
            config::Value::new(None, table).try_deserialize().map_err(|e| e.to_string())?;
        Ok(one.remove(key))
    }

    /// Sets `path` (`"name"`, or `"store.url"` one table down) to `value` unless the
    /// configuration has it: a default that depends on the outer type.
    pub fn default(&mut self, path: &str, value: &str) {
        let (table, key) = match path.split_once('.') {
            None => (&mut self.0, path),
            Some((section, key)) => {
                let entry = self
                    .0
                    .entry(section.to_owned())
                    .or_insert_with(|| config::Value::new(None, config::Map::<String, config::Value>::new()));
                match &mut entry.kind {
                    config::ValueKind::Table(table) => (table, key),
                    // Not a table: leave it for the deserializer to refuse, naming the key.
                    _ => return,
                }
            }
        };
        table.entry(key.to_owned()).or_insert_with(|| config::Value::new(None, value));
    }

    /// Deserializes the keys not taken into `T`.
    pub fn into_rest<T: DeserializeOwned>(self) -> Result<T, String> {
        config::Value::new(None, self.0).try_deserialize().map_err(|e| e.to_string())
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

        let from_file: Sample = load_with_env(Some(&path), &Variables::new()).expect("file loads");
        assert_eq!(from_file.name, "from-file");
        assert_eq!(from_file.kafka.properties.get("linger.ms").map(String::as_str), Some("7"));

        let env = Variables::from([("FANOUT_KAFKA__BOOTSTRAP".to_owned(), "env:9092".to_owned())]);
        let layered: Sample = load_with_env(Some(&path), &env).expect("env loads");
        assert_eq!(layered.kafka.bootstrap, "env:9092");
        assert_eq!(layered.name, "from-file");

        // A misspelt variable is blamed, not the file.
        let env = Variables::from([
            ("FANOUT_NAME".to_owned(), "from-env".to_owned()),
            ("FANOUT_KAFKA__BOOSTRAP".to_owned(), "env:9092".to_owned()),
        ]);
        let err = load_with_env::<Sample>(Some(&path), &env).expect_err("unknown key");
        assert!(
            matches!(&err, ConfigError::Environment { variable, .. } if variable == "FANOUT_KAFKA__BOOSTRAP"),
            "{err}"
        );
        assert!(err.to_string().contains("boostrap") && !err.to_string().contains(".toml"), "{err}");

        // A broken file is blamed although variables are set.
        std::fs::write(&path, "nmae = \"x\"").expect("writes");
        let err = load_with_env::<Sample>(Some(&path), &env).expect_err("unknown key in the file");
        assert!(matches!(&err, ConfigError::Invalid { origin, .. } if origin.contains(".toml")), "{err}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn tooling_variables_are_not_settings() {
        assert!(is_setting("FANOUT_KAFKA__BOOTSTRAP"));
        assert!(is_setting("FANOUT_LOG"));
        assert!(!is_setting("FANOUT_TEST_BOOTSTRAP"));
        assert!(!is_setting("FANOUT_BENCH_DATABASE_URL"));
        assert!(!is_setting("FANOUT_STACK_DIR"));
        assert!(!is_setting("FANOUT_FUZZ_COUNT"));
        assert!(!is_setting("PATH"));
    }

    /// Found by fuzzing (`crates/services/rewards/tests/config_fuzz.rs`): numbers the TOML
    /// parser reads but that do not fit were refused naming neither key nor line.
    #[test]
    fn a_number_that_does_not_fit_is_refused_by_line_and_key() {
        for value in ["1e309", "-1e309", "9223372036854775808", "-9223372036854775809"] {
            let text = format!("# a comment\nname = {value}\n[kafka]\nbootstrap = \"b:9092\"\n");
            let reason = match from_toml_str::<Sample>(&text) {
                Err(ConfigError::Invalid { reason, .. }) => reason,
                other => panic!("{value}: {other:?}"),
            };
            assert!(reason.contains("line 2, key `name`"), "{value}: {reason}");

            let mut file = tempfile::NamedTempFile::new().expect("temp file");
            file.write_all(text.as_bytes()).expect("writes");
            let path = file.path().with_extension("toml");
            std::fs::copy(file.path(), &path).expect("copies");
            let error = load_with_env::<Sample>(Some(&path), &Variables::new()).expect_err("refused");
            assert!(error.to_string().contains("line 2, key `name`"), "{value}: {error}");
            let _ = std::fs::remove_file(&path);
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = from_toml_str::<Sample>("nmae = \"x\"").expect_err("typo rejected");
        assert!(err.to_string().contains("nmae"), "{err}");
        let err = from_toml_str::<Sample>("[kafka]\nbootstrapp = \"x\"").expect_err("nested typo rejected");
        assert!(err.to_string().contains("bootstrapp"), "{err}");
    }

    #[test]
    fn debug_of_an_unknown_key_is_the_report_naming_key_and_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("post-service.toml");
        std::fs::write(&path, "nmae = \"audit\"\n").expect("writes");
        let err = load::<Sample>(Some(&path)).expect_err("unknown key");
        // What `fn main() -> Result<(), ConfigError>` prints after `Error: `.
        let debug = format!("{err:?}");
        assert_eq!(debug, fanout_core::report(&err));
        assert!(debug.contains("nmae") && debug.contains("post-service.toml"), "{debug}");
        assert!(!debug.contains("Invalid {"), "{debug}");
    }

    #[test]
    fn a_bearer_token_comes_from_the_key_or_a_file_never_both() {
        let http: HttpSettings = from_toml_str("listen = \"127.0.0.1:1\"").expect("parses");
        assert_eq!(http.bearer_token(), Ok(None));
        let http: HttpSettings = from_toml_str("bearer_token = \" t0k \"").expect("parses");
        assert_eq!(http.bearer_token().ok().flatten().map(|t| t.expose().to_owned()), Some("t0k".into()));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").expect("writes");
        let file = HttpSettings { bearer_token_file: Some(path.clone()), ..HttpSettings::on("x") };
        assert_eq!(
            file.bearer_token().ok().flatten().map(|t| t.expose().to_owned()),
            Some("from-file".into())
        );
        let both = HttpSettings { bearer_token: Some(Secret::new("a")), ..file };
        assert!(both.bearer_token().expect_err("both").contains("not both"));
        let missing =
            HttpSettings { bearer_token_file: Some(dir.path().join("nope")), ..HttpSettings::default() };
        assert!(missing.bearer_token().expect_err("missing").contains("http.bearer_token_file"));
        let empty = HttpSettings { bearer_token: Some(Secret::new(" ")), ..HttpSettings::default() };
        assert!(empty.bearer_token().expect_err("empty").contains("empty"));
        assert!(!format!(
            "{:?}",
            HttpSettings { bearer_token: Some(Secret::new("t0k")), ..HttpSettings::default() }
        )
        .contains("t0k"));
    }

    #[test]
    fn missing_file_is_named() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/fanout.toml"))).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/fanout.toml"), "{err}");
    }
}
