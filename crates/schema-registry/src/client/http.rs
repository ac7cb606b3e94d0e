//! One registry request: authentication, failover across base URLs, retries, and turning every
//! answer (JSON, Confluent error body, HTML from a proxy) into a typed result.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reqwest::{header, Method, StatusCode, Url};
use serde::{de::DeserializeOwned, Serialize};

use fanout_core::backoff::Backoff;

use super::retry::{error_is_retryable, status_is_retryable};
use crate::protocol::{ErrorBody, CONTENT_TYPE};
use crate::{settings::Secret, RegistryError, RegistrySettings};

/// What Confluent's own clients send.
const ACCEPT: &str =
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5";
/// Enough of a bad body to recognise it (an HTML title, a proxy's message) in a log line.
const SNIPPET_CHARS: usize = 160;

enum Auth {
    Basic { username: String, password: Option<Secret> },
    Bearer(Secret),
}

pub(crate) struct Transport {
    client: reqwest::Client,
    bases: Vec<Url>,
    /// The base URL that answered last; the next request starts there so a dead first URL
    /// costs one failed connection, not one per request.
    preferred: AtomicUsize,
    auth: Option<Auth>,
    max_retries: u32,
    backoff: Backoff,
    requests: AtomicU64,
}

/// One failed attempt: whether another may help, and the error to report if none does.
enum Attempt {
    Retry(String),
    Fail(RegistryError),
}

impl Transport {
    pub(crate) fn new(settings: &RegistrySettings) -> Result<Self, RegistryError> {
        if settings.urls.is_empty() {
            return Err(RegistryError::Config("no registry URL given".into()));
        }
        let bases = settings.urls.iter().map(|u| parse_base(u)).collect::<Result<Vec<_>, _>>()?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(settings.request_timeout())
            .connect_timeout(settings.connect_timeout());
        if let Some(path) = &settings.ca_cert_path {
            let pem = std::fs::read(path).map_err(|e| {
                RegistryError::Config(format!("cannot read CA certificate {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                RegistryError::Config(format!("CA certificate {} is not PEM: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot build the HTTP client: {e}")))?;
        let auth = match (&settings.username, &settings.password, &settings.bearer_token) {
            (Some(username), password, _) => {
                Some(Auth::Basic { username: username.clone(), password: password.clone() })
            }
            (None, Some(_), _) => {
                return Err(RegistryError::Config("a password was given without a username".into()))
            }
            (None, None, Some(token)) => Some(Auth::Bearer(token.clone())),
            (None, None, None) => None,
        };
        Ok(Self {
            client,
            bases,
            preferred: AtomicUsize::new(0),
            auth,
            max_retries: settings.max_retries,
            backoff: Backoff {
                initial: std::time::Duration::from_millis(settings.retry_backoff_ms),
                max: std::time::Duration::from_millis(settings.retry_backoff_max_ms),
            },
            requests: AtomicU64::new(0),
        })
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn base_urls(&self) -> Vec<String> {
        self.bases.iter().map(Url::to_string).collect()
    }

    /// Sends `method` to `segments` (each percent-encoded, so a subject may contain `/`) with
    /// `query`, trying every base URL per round and backing off between rounds.
    pub(crate) async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<T, RegistryError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| RegistryError::Config(format!("cannot serialise the request body: {e}")))?;
        let path = display_path(segments);
        let operation = Operation::of(&method, segments);
        let mut attempts = 0;
        let mut last = String::new();
        for round in 0..=self.max_retries {
            if round > 0 {
                tokio::time::sleep(self.backoff.delay(round - 1)).await;
            }
            let start = self.preferred.load(Ordering::Relaxed);
            for offset in 0..self.bases.len() {
                let index = (start + offset) % self.bases.len();
                let url = build_url(&self.bases[index], segments, query);
                attempts += 1;
                match self.attempt(&method, &url, body.as_deref(), &operation).await {
                    Ok(value) => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(value);
                    }
                    Err(Attempt::Fail(error)) => return Err(error),
                    Err(Attempt::Retry(reason)) => {
                        tracing::debug!(%method, %url, %reason, "schema registry request failed; trying again");
                        last = reason;
                    }
                }
            }
        }
        Err(RegistryError::Unavailable { method: method.to_string(), path, attempts, last })
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        operation: &Operation,
    ) -> Result<T, Attempt> {
        let mut request = self.client.request(method.clone(), url.clone()).header(header::ACCEPT, ACCEPT);
        if let Some(body) = body {
            request = request.header(header::CONTENT_TYPE, CONTENT_TYPE).body(body.to_vec());
        }
        request = match &self.auth {
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, password.as_ref().map(Secret::expose))
            }
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
            None => request,
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(|e| transport_error(method, url, e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport_error(method, url, e))?;
        interpret(method, url, status, &bytes, &Refusal { auth: self.auth.as_ref(), operation })
    }
}

/// What a request was for, to say what a 403 refused.
pub(crate) struct Operation {
    /// "register a schema under subject orders-value".
    what: String,
    /// The role Fanout's registry (and Confluent's) ask for it.
    role: &'static str,
}

impl Operation {
    fn of(method: &Method, segments: &[&str]) -> Self {
        let write = |what: String| Self { what, role: "write" };
        let read = |what: String| Self { what, role: "read" };
        match (method.as_str(), segments) {
            ("POST", ["subjects", subject, "versions"]) => {
                write(format!("register a schema under subject {subject}"))
            }
            ("POST", ["subjects", subject]) => read(format!("look a schema up under subject {subject}")),
            ("POST", ["compatibility", "subjects", subject, ..]) => {
                read(format!("test a schema's compatibility with subject {subject}"))
            }
            ("DELETE", ["subjects", subject]) => write(format!("delete subject {subject}")),
            ("DELETE", ["subjects", subject, "versions", version]) => {
                write(format!("delete version {version} of subject {subject}"))
            }
            ("PUT", ["config"]) => write("change the global compatibility level".to_owned()),
            ("PUT", ["config", subject]) => {
                write(format!("change the compatibility level of subject {subject}"))
            }
            ("GET", _) => read(format!("read {}", display_path(segments))),
            (other, _) => write(format!("{other} {}", display_path(segments))),
        }
    }
}

/// Who asked and for what: how a 401 or 403 is explained.
struct Refusal<'a> {
    auth: Option<&'a Auth>,
    operation: &'a Operation,
}

impl Refusal<'_> {
    fn user(&self) -> Option<String> {
        match self.auth {
            Some(Auth::Basic { username, .. }) => Some(username.clone()),
            _ => None,
        }
    }

    fn bearer(&self) -> bool {
        matches!(self.auth, Some(Auth::Bearer(_)))
    }
}

fn transport_error(method: &Method, url: &Url, error: reqwest::Error) -> Attempt {
    if let Some(reason) = tls_failure(&error) {
        return Attempt::Fail(RegistryError::Tls { url: url.to_string(), reason });
    }
    // reqwest's Display hides the cause chain ("error sending request"); the chain says
    // "connection refused" or "timed out", which is what an operator needs. The URL is said
    // once, here, not again inside reqwest's message.
    let retryable = error_is_retryable(&error);
    let reason = format!("{url}: {}", fanout_core::report(&error.without_url()));
    if retryable {
        Attempt::Retry(reason)
    } else {
        Attempt::Fail(RegistryError::Request { method: method.to_string(), url: url.to_string(), reason })
    }
}

/// A TLS failure in `error`'s causes, said with what to do about it; `None` for any other failure.
/// rustls's error sits inside `io::Error`s (nested), whose `source()` skips what they wrap, so
/// each cause that is an `io::Error` is opened with `get_ref`.
fn tls_failure(error: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        let mut wrapped = Some(current);
        while let Some(candidate) = wrapped {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return Some(explain_tls(tls));
            }
            wrapped = candidate
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .map(|inner| inner as &(dyn std::error::Error + 'static));
        }
        cause = current.source();
    }
    None
}

fn explain_tls(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(why) => format!(
            "the registry's certificate is not trusted ({why:?}); if a private CA signed it, set \
             registry.ca_cert_path to that CA's PEM file"
        ),
        rustls::Error::InvalidMessage(_) => {
            format!("the handshake was not understood ({error}); is the registry serving plain HTTP?")
        }
        other => format!("the handshake failed: {other}"),
    }
}

/// Turns a complete answer into a value or a classified failure.
fn interpret<T: DeserializeOwned>(
    method: &Method,
    url: &Url,
    status: StatusCode,
    body: &[u8],
    refusal: &Refusal<'_>,
) -> Result<T, Attempt> {
    let unexpected = |reason: String| RegistryError::UnexpectedResponse {
        method: method.to_string(),
        url: url.to_string(),
        status: status.as_u16(),
        reason,
        snippet: snippet(body),
    };
    if status.is_success() {
        return serde_json::from_slice(body)
            .map_err(|e| Attempt::Fail(unexpected(format!("not the expected JSON: {e}"))));
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body);
    // A 401 or 403 may come from a proxy as HTML, or from Confluent's own registry as Jetty's
    // page: whatever its body, it is the same refusal.
    let said = || match &parsed {
        Ok(e) => e.message.clone().unwrap_or_else(|| format!("error_code {}", e.error_code)),
        Err(_) => format!("{status} {:?}", snippet(body)),
    };
    if status == StatusCode::UNAUTHORIZED {
        return Err(Attempt::Fail(RegistryError::Unauthorized {
            method: method.to_string(),
            url: url.to_string(),
            user: refusal.user(),
            bearer: refusal.bearer(),
            message: said(),
        }));
    }
    if status == StatusCode::FORBIDDEN {
        return Err(Attempt::Fail(RegistryError::Forbidden {
            request: format!("{method} {url}"),
            user: refusal.user(),
            role: refusal.operation.role,
            operation: refusal.operation.what.clone(),
            message: said(),
        }));
    }
    if status_is_retryable(status.as_u16()) {
        let detail = match parsed {
            Ok(e) => format!("error_code {}: {}", e.error_code, e.message.unwrap_or_default()),
            Err(_) => format!("body {:?}", snippet(body)),
        };
        return Err(Attempt::Retry(format!("{url} answered {status}, {detail}")));
    }
    Err(Attempt::Fail(match parsed {
        Ok(e) => RegistryError::Api {
            method: method.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            error_code: e.error_code,
            message: e.message.unwrap_or_default(),
        },
        Err(e) => unexpected(format!("not a Confluent error body: {e}")),
    }))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(SNIPPET_CHARS).collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn parse_base(raw: &str) -> Result<Url, RegistryError> {
    let url = Url::parse(raw)
        .map_err(|e| RegistryError::Config(format!("registry URL {raw:?} is invalid: {e}")))?;
    if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
        return Err(RegistryError::Config(format!("registry URL {raw:?} is not an http(s) base URL")));
    }
    Ok(url)
}

fn build_url(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    // parse_base rejected cannot-be-a-base URLs, so path_segments_mut cannot fail here.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

fn display_path(segments: &[&str]) -> String {
    let mut out = String::new();
    for s in segments {
        out.push('/');
        out.push_str(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://r:8081/schemas/ids/7").unwrap()
    }

    fn outcome(status: u16, body: &str) -> Result<serde_json::Value, Attempt> {
        let operation = Operation::of(&Method::GET, &["schemas", "ids", "7"]);
        let refusal = Refusal { auth: None, operation: &operation };
        interpret(&Method::GET, &url(), StatusCode::from_u16(status).unwrap(), body.as_bytes(), &refusal)
    }

    #[test]
    fn refusals_name_the_user_and_what_was_refused() {
        let auth = Auth::Basic { username: "reader".into(), password: Some(Secret::new("pw")) };
        let operation = Operation::of(&Method::POST, &["subjects", "orders-value", "versions"]);
        let refusal = Refusal { auth: Some(&auth), operation: &operation };
        let answer = |status: u16, body: &str| {
            interpret::<serde_json::Value>(
                &Method::POST,
                &url(),
                StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
                &refusal,
            )
        };
        let Err(Attempt::Fail(forbidden)) = answer(403, r#"{"error_code":40301,"message":"denied"}"#) else {
            panic!("a 403 fails at once")
        };
        let text = forbidden.to_string();
        assert!(
            text.starts_with(
                "user 'reader' lacks the write role needed to register a schema under subject orders-value"
            ),
            "{text}"
        );
        assert!(forbidden.is_auth() && !forbidden.is_transient());
        // Jetty's HTML page from Confluent's registry is the same refusal.
        let Err(Attempt::Fail(unauthorized)) = answer(401, "<html>HTTP ERROR 401</html>") else {
            panic!("a 401 fails at once")
        };
        let text = unauthorized.to_string();
        assert!(text.starts_with("the schema registry refused the credentials for user 'reader'"), "{text}");
        assert!(text.contains("HTTP ERROR 401"), "{text}");

        let anonymous = Refusal { auth: None, operation: &operation };
        let Err(Attempt::Fail(none)) =
            interpret::<serde_json::Value>(&Method::GET, &url(), StatusCode::UNAUTHORIZED, b"{}", &anonymous)
        else {
            panic!("a 401 fails at once")
        };
        assert!(none.to_string().contains("none are configured"), "{none}");
    }

    #[test]
    fn confluent_error_bodies_become_api_errors() {
        let Err(Attempt::Fail(err)) = outcome(404, r#"{"error_code":40403,"message":"Schema 7 not found"}"#)
        else {
            panic!("a 404 must fail at once");
        };
        assert_eq!(err.error_code(), Some(40403));
        assert!(err.is_not_found());
        let text = err.to_string();
        assert!(
            text.contains("40403") && text.contains("Schema 7 not found") && text.contains("/schemas/ids/7"),
            "{text}"
        );
    }

    #[test]
    fn html_is_reported_with_a_snippet() {
        let html = format!(
            "<html><head><title>502 Bad Gateway</title></head><body>{}</body></html>",
            "x".repeat(500)
        );
        for status in [200, 404] {
            let Err(Attempt::Fail(err)) = outcome(status, &html) else { panic!("HTML must fail") };
            let text = err.to_string();
            assert!(matches!(err, RegistryError::UnexpectedResponse { .. }), "{err:?}");
            assert!(text.contains("<title>502 Bad Gateway") && text.contains(&status.to_string()), "{text}");
            assert!(text.len() < 600, "snippet not shortened: {text}");
            assert!(!err.is_not_found(), "an HTML 404 is not a registry answer");
        }
    }

    #[test]
    fn server_errors_and_throttling_are_retried() {
        for status in [408, 429, 500, 503] {
            assert!(matches!(outcome(status, "<html>busy</html>"), Err(Attempt::Retry(_))), "{status}");
        }
        let Err(Attempt::Retry(reason)) = outcome(500, r#"{"error_code":50001,"message":"store"}"#) else {
            panic!()
        };
        assert!(reason.contains("50001"), "{reason}");
    }

    #[test]
    fn urls_encode_subjects_and_keep_base_paths() {
        let base = parse_base("http://r:8081/registry/").unwrap();
        let url = build_url(&base, &["subjects", "a/b c", "versions"], &[("normalize", "false")]);
        assert_eq!(url.as_str(), "http://r:8081/registry/subjects/a%2Fb%20c/versions?normalize=false");
        let bare = parse_base("http://r:8081").unwrap();
        assert_eq!(build_url(&bare, &["config"], &[]).as_str(), "http://r:8081/config");
        assert!(parse_base("not a url").is_err());
        assert!(parse_base("mailto:x@y").is_err());
    }

    #[test]
    fn settings_are_validated() {
        let err = |s: RegistrySettings| Transport::new(&s).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(RegistrySettings { urls: vec![], ..Default::default() }).contains("no registry URL"));
        let missing_ca =
            RegistrySettings { ca_cert_path: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(err(missing_ca).contains("/nonexistent/ca.pem"));
        let orphan = RegistrySettings { password: Some(Secret::new("p")), ..Default::default() };
        assert!(err(orphan).contains("without a username"));
    }
}
