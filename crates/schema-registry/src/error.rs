//! The crate's errors: one enum for talking to the registry, one for encoding and decoding.

use crate::wire::FrameError;

/// A registry call that failed.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry answered with a Confluent error body (a 4xx, or a 5xx once retries ran out).
    #[error("schema registry {method} {url} answered {status} (error_code {error_code}): {message}")]
    Api {
        /// The HTTP method.
        method: String,
        /// The full request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Confluent's `error_code`, e.g. 40403.
        error_code: i32,
        /// The registry's `message`.
        message: String,
    },
    /// The registry refused the credentials (HTTP 401): none configured, a wrong user name or
    /// password, or a bearer token it does not accept.
    #[error("the schema registry refused {} ({method} {url}): {message}", credentials_said(user.as_deref(), *bearer))]
    Unauthorized {
        /// The HTTP method.
        method: String,
        /// The full request URL.
        url: String,
        /// The basic-auth user sent, if any.
        user: Option<String>,
        /// Whether a bearer token was sent instead.
        bearer: bool,
        /// What the registry said (its `message`, or the start of a body that is not JSON).
        message: String,
    },
    /// The credentials were accepted but do not allow this operation (HTTP 403): e.g. a user
    /// with the read role registering a schema.
    #[error("{} lacks the {role} role needed to {operation} ({request}): {message}", who(user.as_deref()))]
    Forbidden {
        /// The HTTP method and the full request URL, e.g. `POST https://registry/subjects/...`.
        request: String,
        /// The basic-auth user sent, if any.
        user: Option<String>,
        /// `read` or `write`: what the operation needs.
        role: &'static str,
        /// What was attempted, e.g. "register a schema under subject orders-value".
        operation: String,
        /// What the registry said.
        message: String,
    },
    /// The TLS handshake with the registry failed, e.g. its certificate is signed by a CA the
    /// client does not trust. Not retried: trying again would fail the same way.
    #[error("TLS with the schema registry at {url} failed: {reason}")]
    Tls {
        /// The full request URL.
        url: String,
        /// What failed, and what to configure.
        reason: String,
    },
    /// The registry answered something that is not the JSON this API promises (an HTML page from a
    /// proxy, a truncated body, a wrong shape).
    #[error(
        "schema registry {method} {url} answered {status} with an unexpected body ({reason}): {snippet:?}"
    )]
    UnexpectedResponse {
        /// The HTTP method.
        method: String,
        /// The full request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Why the body was rejected.
        reason: String,
        /// The first bytes of the body, lossily decoded.
        snippet: String,
    },
    /// No registry URL answered usefully within the retry budget (connection refused, timeouts,
    /// 408/429/5xx on every attempt).
    #[error("schema registry unavailable for {method} {path} after {attempts} attempts; last error: {last}")]
    Unavailable {
        /// The HTTP method.
        method: String,
        /// The request path (with the subject or id), the same for every base URL.
        path: String,
        /// Requests sent, across all base URLs.
        attempts: u32,
        /// The last failure, with its URL.
        last: String,
    },
    /// The request could not be sent for a reason retrying will not fix (e.g. a redirect loop).
    #[error("schema registry request {method} {url} failed: {reason}")]
    Request {
        /// The HTTP method.
        method: String,
        /// The full request URL.
        url: String,
        /// The HTTP client's message.
        reason: String,
    },
    /// A schema held by the registry (or given to it) is not valid Avro.
    #[error("schema {what} is not valid Avro: {reason}")]
    InvalidSchema {
        /// Which schema (an id, a subject and version, or a reference).
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// The client settings are unusable (no URL, a malformed URL, an unreadable CA file).
    #[error("invalid schema registry settings: {0}")]
    Config(String),
}

fanout_core::debug_as_report!(RegistryError);

fn credentials_said(user: Option<&str>, bearer: bool) -> String {
    match (user, bearer) {
        (Some(user), _) => format!("the credentials for user '{user}'"),
        (None, true) => "the bearer token".to_owned(),
        (None, false) => "the request: it needs credentials and none are configured (registry.username and \
             registry.password, or registry.bearer_token)"
            .to_owned(),
    }
}

fn who(user: Option<&str>) -> String {
    match user {
        Some(user) => format!("user '{user}'"),
        None => "the client's credentials".to_owned(),
    }
}

impl RegistryError {
    /// Confluent's `error_code`, when the registry sent one.
    pub fn error_code(&self) -> Option<i32> {
        match self {
            Self::Api { error_code, .. } => Some(*error_code),
            _ => None,
        }
    }

    /// True when the registry refused the credentials (401) or the operation for them (403).
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Forbidden { .. })
    }

    /// True for a definite "not found" (HTTP 404) answer.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }

    /// True when trying again later may succeed: the registry was unreachable or overloaded.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Encoding or decoding a Confluent wire-format Avro payload failed.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SerdeError {
    /// The payload is not Confluent-framed (empty, short, or the first byte is not 0).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The payload names a schema id the registry does not know (registry error 40403).
    #[error("unknown schema id {0}: the registry has no schema with this id")]
    UnknownSchemaId(u32),
    /// `decode_cached` was asked for an id whose schema has not been fetched yet.
    #[error("schema id {0} is not cached; decode it once with the async decode first")]
    NotCached(u32),
    /// The registry could not be asked, or refused; the context says what was being done.
    #[error("schema registry call failed for {context}")]
    Registry {
        /// What was being resolved, e.g. "subject post.published-value" or "schema id 7".
        context: String,
        /// The registry error (boxed: it is large, and errors should keep `Result` small).
        #[source]
        source: Box<RegistryError>,
    },
    /// A schema (from the registry or the application) could not be parsed.
    #[error("schema {what} is not valid Avro: {reason}")]
    InvalidSchema {
        /// Which schema.
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// The registry's schema for a subject cannot hold the application's values.
    #[error("registered schema id {id} for subject {subject} cannot hold values written with the application's schema: {reason}")]
    IncompatibleSchema {
        /// The subject.
        subject: String,
        /// The registered schema's id.
        id: u32,
        /// Why.
        reason: String,
    },
    /// The Avro body does not match the writer schema, or cannot be read as the reader schema.
    #[error("cannot decode payload written with schema id {id}: {reason}")]
    Decode {
        /// The writer schema id from the frame.
        id: u32,
        /// Why.
        reason: String,
    },
    /// The datum decoded, but bytes were left over: the payload is corrupt or framed wrongly.
    #[error("payload written with schema id {id} has {trailing} trailing bytes after the Avro datum")]
    TrailingBytes {
        /// The writer schema id.
        id: u32,
        /// How many bytes were left.
        trailing: usize,
    },
    /// The value cannot be encoded with the schema.
    #[error("cannot encode a value with schema id {id} (subject {subject}): {reason}")]
    Encode {
        /// The schema id the encoder writes.
        id: u32,
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
}

fanout_core::debug_as_report!(SerdeError);

impl SerdeError {
    /// The registry error inside, if any.
    pub fn registry_error(&self) -> Option<&RegistryError> {
        match self {
            Self::Registry { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }

    /// True when retrying the same bytes later may succeed (the registry was unavailable);
    /// every other error is permanent for these bytes.
    pub fn is_transient(&self) -> bool {
        self.registry_error().is_some_and(RegistryError::is_transient)
    }
}
