//! Client and serde settings, loadable with `fanout_config` (`[registry]` in TOML).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer, Serialize};

use crate::subject::SubjectNameStrategy;

pub use fanout_core::Secret;

/// Which registered schema a producer writes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaSelection {
    /// Register the application's schema (idempotent) and write with its id. Convenient in
    /// development; in production the registry then decides compatibility at deploy time.
    #[default]
    AutoRegister,
    /// Look the application's schema up under the subject; fail if it was never registered.
    Lookup,
    /// Write with the subject's latest version.
    UseLatest,
    /// Write with this version of the subject.
    PinnedVersion(i32),
    /// Write with this schema id.
    PinnedId(u32),
}

/// How to reach the registry, and how the serde picks subjects and schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// Base URLs, tried in order on connection errors and 5xx. A comma-separated string is
    /// accepted too (handy in environment variables).
    #[serde(deserialize_with = "list_or_comma_string")]
    pub urls: Vec<String>,
    /// Basic auth user; needs `password`.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<Secret>,
    /// Bearer token (used when no username is set).
    pub bearer_token: Option<Secret>,
    /// An extra CA certificate (PEM) to trust, for registries behind a private CA.
    pub ca_cert_path: Option<PathBuf>,
    /// Per-request timeout, in milliseconds.
    pub request_timeout_ms: u64,
    /// TCP/TLS connect timeout, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Retries after the first attempt, for connection errors, timeouts, 408, 429 and 5xx.
    pub max_retries: u32,
    /// First backoff between retries, in milliseconds; doubles each retry, with equal jitter (at least half of it, at most all).
    pub retry_backoff_ms: u64,
    /// Upper bound of one backoff, in milliseconds.
    pub retry_backoff_max_ms: u64,
    /// How long a "not found" answer is cached, in milliseconds (0 disables).
    pub not_found_ttl_ms: u64,
    /// Subject name strategy for values the serde writes.
    pub subject_strategy: SubjectNameStrategy,
    /// Which schema the serde writes with.
    pub schema: SchemaSelection,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            urls: vec!["http://127.0.0.1:8081".to_owned()],
            username: None,
            password: None,
            bearer_token: None,
            ca_cert_path: None,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 3_000,
            max_retries: 3,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 2_000,
            not_found_ttl_ms: 5_000,
            subject_strategy: SubjectNameStrategy::default(),
            schema: SchemaSelection::default(),
        }
    }
}

impl RegistrySettings {
    /// Default settings for these base URLs.
    pub fn with_urls<S: AsRef<str>>(urls: &[S]) -> Self {
        Self { urls: urls.iter().map(|u| u.as_ref().to_owned()).collect(), ..Self::default() }
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn not_found_ttl(&self) -> Duration {
        Duration::from_millis(self.not_found_ttl_ms)
    }
}

fn list_or_comma_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        One(String),
        Many(Vec<String>),
    }
    let urls = match Urls::deserialize(deserializer)? {
        Urls::One(s) => s.split(',').map(str::to_owned).collect(),
        Urls::Many(v) => v,
    };
    Ok(urls.into_iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let settings = RegistrySettings {
            username: Some("svc".into()),
            password: Some(Secret::new("hunter2")),
            bearer_token: Some(Secret::new("tok-123")),
            ..RegistrySettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("tok-123"), "{shown}");
        assert!(shown.contains("svc"));
    }

    #[test]
    fn urls_from_a_list_or_a_comma_string() {
        let s: RegistrySettings = serde_json::from_str(r#"{"urls": "http://a:1, http://b:2,"}"#).unwrap();
        assert_eq!(s.urls, ["http://a:1", "http://b:2"]);
        let s: RegistrySettings =
            serde_json::from_str(r#"{"urls": ["http://a:1"], "schema": {"pinned_version": 3}}"#).unwrap();
        assert_eq!(s.urls, ["http://a:1"]);
        assert_eq!(s.schema, SchemaSelection::PinnedVersion(3));
        assert!(serde_json::from_str::<RegistrySettings>(r#"{"url": "x"}"#)
            .unwrap_err()
            .to_string()
            .contains("url"));
    }
}
