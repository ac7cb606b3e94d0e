//! A typed client of Toxiproxy's HTTP API (Shopify's TCP fault proxy, v2), as
//! `scripts/stack up toxiproxy` runs it: proxies, the toxics that make faults on them, and the
//! byte counts that show traffic went through them.

use std::time::Duration;

use serde_json::{json, Value};

/// Where `scripts/stack up toxiproxy` serves the API.
pub const DEFAULT_TOXIPROXY_API: &str = "http://127.0.0.1:8474";

/// How long one API call may take; the API answers from memory, so this only bounds a hung server.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors from Toxiproxy's API; each says what was asked and what came back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ToxiproxyError {
    /// Nothing answered at the API's address.
    #[error(
        "no Toxiproxy answers at {api} ({reason}); start it with `scripts/stack up toxiproxy`, or point \
         FANOUT_TEST_TOXIPROXY at a running one"
    )]
    Unreachable {
        /// The API's base URL.
        api: String,
        /// What the HTTP client reported.
        reason: String,
    },
    /// The API answered a call with an error status.
    #[error("Toxiproxy refused {method} {path}: {status} {body}")]
    Refused {
        /// The HTTP method.
        method: &'static str,
        /// The path called.
        path: String,
        /// The status it answered.
        status: u16,
        /// Its body (Toxiproxy's error message).
        body: String,
    },
    /// A call failed on the way, or its answer was not what the API documents.
    #[error("Toxiproxy's answer to {method} {path} could not be used: {reason}")]
    BadAnswer {
        /// The HTTP method.
        method: &'static str,
        /// The path called.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

fanout_core::debug_as_report!(ToxiproxyError);

/// One direction of a proxied connection, which a toxic applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// From the client to the server (requests).
    Upstream,
    /// From the server to the client (responses).
    Downstream,
}

impl Stream {
    /// Both directions, for a fault that cuts or slows a connection as a whole.
    pub const BOTH: [Stream; 2] = [Stream::Upstream, Stream::Downstream];

    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// What a toxic does to the data of its stream (Toxiproxy's toxic types, with their attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToxicKind {
    /// Delays each chunk by `latency_ms` ± up to `jitter_ms` (`latency`). Data is held, never
    /// dropped, also when the toxic is removed.
    Latency {
        /// The mean delay.
        latency_ms: u64,
        /// The most the delay of one chunk differs from the mean, either way.
        jitter_ms: u64,
    },
    /// Lets no data through, dropping it, and closes the connection after `timeout_ms`; with 0
    /// it never closes it (`timeout`). Removing the toxic closes the connections it held, so a
    /// client finds out then, as after a partition that heals with its connections reset.
    Timeout {
        /// When to close; 0 for never.
        timeout_ms: u64,
    },
    /// Resets (TCP RST) a connection `timeout_ms` after the first data it sees, which it drops
    /// (`reset_peer`).
    ResetPeer {
        /// How long after the first data to reset; 0 for at once.
        timeout_ms: u64,
    },
    /// Limits the stream to `rate_kb` kilobytes a second (`bandwidth`).
    Bandwidth {
        /// The rate in KB/s.
        rate_kb: u64,
    },
}

impl ToxicKind {
    fn type_and_attributes(self) -> (&'static str, Value) {
        match self {
            ToxicKind::Latency { latency_ms, jitter_ms } => {
                ("latency", json!({ "latency": latency_ms, "jitter": jitter_ms }))
            }
            ToxicKind::Timeout { timeout_ms } => ("timeout", json!({ "timeout": timeout_ms })),
            ToxicKind::ResetPeer { timeout_ms } => ("reset_peer", json!({ "timeout": timeout_ms })),
            ToxicKind::Bandwidth { rate_kb } => ("bandwidth", json!({ "rate": rate_kb })),
        }
    }
}

/// A toxic to add to a proxy: a name unique on the proxy, what it does, and to which stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    /// Its name on the proxy, which [`Toxiproxy::remove_toxic`] takes.
    pub name: String,
    /// What it does.
    pub kind: ToxicKind,
    /// The direction it applies to.
    pub stream: Stream,
    /// The share of connections it applies to, 0.0 to 1.0.
    pub toxicity: f32,
}

impl Toxic {
    /// A toxic on every connection of the proxy.
    pub fn new(name: impl Into<String>, kind: ToxicKind, stream: Stream) -> Self {
        Self { name: name.into(), kind, stream, toxicity: 1.0 }
    }

    /// The same toxic on both streams, named `NAME-upstream` and `NAME-downstream`.
    pub fn both_ways(name: &str, kind: ToxicKind) -> [Toxic; 2] {
        Stream::BOTH.map(|stream| Toxic::new(format!("{name}-{}", stream.as_str()), kind, stream))
    }
}

/// A proxy: Toxiproxy listens at `listen` and forwards each connection to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Its name in the API.
    pub name: String,
    /// Where clients connect (`host:port`).
    pub listen: String,
    /// Where it forwards to (`host:port`).
    pub upstream: String,
}

/// A client of Toxiproxy's API.
#[derive(Debug, Clone)]
pub struct Toxiproxy {
    api: String,
    http: reqwest::Client,
}

impl Toxiproxy {
    /// Connects to the API at `FANOUT_TEST_TOXIPROXY` (default [`DEFAULT_TOXIPROXY_API`]),
    /// failing with [`ToxiproxyError::Unreachable`] when nothing answers.
    pub async fn connect() -> Result<Self, ToxiproxyError> {
        let api = std::env::var("FANOUT_TEST_TOXIPROXY").unwrap_or_else(|_| DEFAULT_TOXIPROXY_API.to_owned());
        Self::connect_to(&api).await
    }

    /// Connects to the API at `api` (`http://host:port`) and checks that it answers.
    pub async fn connect_to(api: &str) -> Result<Self, ToxiproxyError> {
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().map_err(|e| {
            ToxiproxyError::Unreachable { api: api.to_owned(), reason: fanout_core::report(&e) }
        })?;
        let toxiproxy = Self { api: api.trim_end_matches('/').to_owned(), http };
        toxiproxy.version().await?;
        Ok(toxiproxy)
    }

    /// The API's base URL.
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The server's version, as it reports it.
    pub async fn version(&self) -> Result<String, ToxiproxyError> {
        let response = self.http.get(format!("{}/version", self.api)).send().await.map_err(|e| {
            ToxiproxyError::Unreachable { api: self.api.clone(), reason: fanout_core::report(&e) }
        })?;
        Self::text("GET", "/version", response).await
    }

    /// Creates `proxies`, or leaves each as it is when one of that name already has the same
    /// addresses (`POST /populate`); one of that name with other addresses is replaced.
    pub async fn ensure_proxies(&self, proxies: &[Proxy]) -> Result<(), ToxiproxyError> {
        let body: Vec<Value> = proxies
            .iter()
            .map(|p| json!({ "name": p.name, "listen": p.listen, "upstream": p.upstream, "enabled": true }))
            .collect();
        self.call("POST", "/populate", Some(Value::Array(body))).await.map(drop)
    }

    /// Enables or disables `proxy`. A disabled proxy closes its connections and stops listening,
    /// so a client's connects are refused.
    pub async fn set_enabled(&self, proxy: &str, enabled: bool) -> Result<(), ToxiproxyError> {
        self.call("POST", &format!("/proxies/{proxy}"), Some(json!({ "enabled": enabled }))).await.map(drop)
    }

    /// Adds `toxic` to `proxy`: from now on, on its connections, existing ones included.
    pub async fn add_toxic(&self, proxy: &str, toxic: &Toxic) -> Result<(), ToxiproxyError> {
        let (kind, attributes) = toxic.kind.type_and_attributes();
        let body = json!({
            "name": toxic.name,
            "type": kind,
            "stream": toxic.stream.as_str(),
            "toxicity": toxic.toxicity,
            "attributes": attributes,
        });
        self.call("POST", &format!("/proxies/{proxy}/toxics"), Some(body)).await.map(drop)
    }

    /// Removes the toxic named `toxic` from `proxy`.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ToxiproxyError> {
        self.call("DELETE", &format!("/proxies/{proxy}/toxics/{toxic}"), None).await.map(drop)
    }

    /// The names of the toxics on `proxy` now.
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<String>, ToxiproxyError> {
        let path = format!("/proxies/{proxy}/toxics");
        let answer = self.call("GET", &path, None).await?;
        let list = answer.as_array().ok_or_else(|| ToxiproxyError::BadAnswer {
            method: "GET",
            path: path.clone(),
            reason: format!("expected a list of toxics, got {answer}"),
        })?;
        Ok(list.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect())
    }

    /// Removes every toxic from `proxy` and enables it, leaving other proxies alone.
    pub async fn heal(&self, proxy: &str) -> Result<(), ToxiproxyError> {
        for toxic in self.toxics(proxy).await? {
            self.remove_toxic(proxy, &toxic).await?;
        }
        self.set_enabled(proxy, true).await
    }

    /// Removes every toxic from every proxy and enables them all (`POST /reset`).
    pub async fn reset(&self) -> Result<(), ToxiproxyError> {
        self.call("POST", "/reset", None).await.map(drop)
    }

    /// The bytes `proxy` has received from both sides since Toxiproxy started, from its
    /// `/metrics` (served when it runs with `-proxy-metrics`, as `scripts/stack` starts it).
    pub async fn bytes(&self, proxy: &str) -> Result<u64, ToxiproxyError> {
        let response = self.http.get(format!("{}/metrics", self.api)).send().await.map_err(|e| {
            ToxiproxyError::Unreachable { api: self.api.clone(), reason: fanout_core::report(&e) }
        })?;
        let text = Self::text("GET", "/metrics", response).await?;
        let label = format!("proxy=\"{proxy}\"");
        let mut total = 0.0;
        for line in text.lines() {
            if line.starts_with("toxiproxy_proxy_received_bytes_total{") && line.contains(&label) {
                let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
                total += value.ok_or_else(|| ToxiproxyError::BadAnswer {
                    method: "GET",
                    path: "/metrics".to_owned(),
                    reason: format!("not a sample: {line}"),
                })?;
            }
        }
        // Prometheus counters are floats; byte counts are whole numbers well below 2^53.
        Ok(total as u64)
    }

    /// Calls the API and returns its answer as JSON (`Null` for an empty body).
    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ToxiproxyError> {
        let url = format!("{}{path}", self.api);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url),
        };
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await.map_err(|e| ToxiproxyError::Unreachable {
            api: self.api.clone(),
            reason: fanout_core::report(&e),
        })?;
        let text = Self::text(method, path, response).await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ToxiproxyError::BadAnswer {
            method,
            path: path.to_owned(),
            reason: format!("{e}: {text}"),
        })
    }

    /// The body of a successful answer, or [`ToxiproxyError::Refused`].
    async fn text(
        method: &'static str,
        path: &str,
        response: reqwest::Response,
    ) -> Result<String, ToxiproxyError> {
        let status = response.status();
        let text = response.text().await.map_err(|e| ToxiproxyError::BadAnswer {
            method,
            path: path.to_owned(),
            reason: fanout_core::report(&e),
        })?;
        if !status.is_success() {
            return Err(ToxiproxyError::Refused {
                method,
                path: path.to_owned(),
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(text)
    }
}
