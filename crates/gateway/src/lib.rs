//! The callback gateway: providers' callbacks verified, deduplicated and published to the bus.
//!
//! [`Gateway`] (the `fanout-gateway` binary) serves `POST /callbacks/{source}`. A request is
//! verified by its source's [`Verifier`] (401 without a reason when it fails, 413 over the size
//! limit, 404 for an unknown source); its provider event id, correlation id and event type are
//! found where the source's [`SourceSettings`] say; a callback published before (remembered in
//! PostgreSQL for at least [`MIN_DEDUPE_HOURS`]) is answered 200 and not published again; any
//! other is published as a [`CallbackReceived`] keyed by its correlation id, under an event id
//! derived from the provider's ([`callback_event_id`]), and answered 200 only once Kafka
//! acknowledged it and the store remembered it: 503 with `Retry-After` otherwise, so the provider
//! retries. The gateway never calls a requester: requesters read the topic.
//!
//! # Verifiers: is this request really from the provider, and recent?
//!
//! Each source the gateway accepts callbacks from is configured by name with a [`SourceConfig`]:
//! its verification scheme (`verify = "standard_webhooks" | "stripe" | "github" | "wechatpay_v3" |
//! "hmac" | "none"`), the secrets or keys in the formats providers hand out, several at once so
//! that a key can be rotated without a gap, the timestamp tolerance and the body size limit.
//! [`Verifier::from_config`] checks every key once, at start-up, and [`Verifier::verify`] then
//! checks a request's raw body and headers: [`Verified`] with the body to publish (WeChat Pay's
//! resource decrypted), or a [`Rejection`] whose [`kind`](Rejection::kind) labels logs and
//! metrics. Verification fails closed: anything missing, malformed, unknown or out of date is a
//! rejection, and signatures are compared in constant time.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use fanout_gateway::{Rejection, SourceConfig, Verifier};
//!
//! // One source of the gateway's file, `[sources.github]`.
//! let config: SourceConfig = fanout_config::from_toml_str(
//!     r#"
//!     verify = "github"
//!     secrets = ["It's a Secret to Everybody"]
//!     "#,
//! )?;
//! let verifier = Verifier::from_config("github", &config)?;
//! let headers = [(
//!     "X-Hub-Signature-256",
//!     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
//! )];
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
//!
//! let verified = verifier.verify(&headers[..], b"Hello, World!", now)?;
//! assert_eq!(verified.body(), b"Hello, World!");
//!
//! let tampered = verifier.verify(&headers[..], b"Hello, World?", now);
//! assert_eq!(tampered.unwrap_err(), Rejection::BadSignature);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod awaiter;
mod callback;
mod config;
mod dedupe;
mod encoding;
mod error;
mod gateway;
mod headers;
mod metrics;
mod rejection;
mod schemes;
mod settings;
mod verifier;

pub use awaiter::{Awaiter, AwaiterConfig, AwaiterError, Pending, Reply};
pub use callback::{callback_event_id, CallbackReceived, CallbackTimedOut};
pub use config::{
    ConfigError, HmacAlgorithm, PlatformPublicKey, Problem, Scheme, Secret, SecretEncoding,
    SignatureEncoding, SourceConfig, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_SECS,
};
pub use error::GatewayError;
pub use gateway::{
    Gateway, REJECT_AT, REJECT_BODY_BYTES_HEADER, REJECT_DETAIL, REJECT_REASON, REJECT_SOURCE,
};
pub use headers::{Header, Headers};
pub use rejection::Rejection;
pub use settings::{Field, GatewayConfig, SourceSettings, StoreSettings, MIN_DEDUPE_HOURS};
pub use verifier::{Verified, Verifier};

/// `at` in Unix milliseconds (0 before the epoch).
pub(crate) fn unix_ms(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
