//! The callback gateway's verifiers: is this request really from the provider, and recent?
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

mod config;
mod encoding;
mod headers;
mod rejection;
mod schemes;
mod verifier;

pub use config::{
    ConfigError, HmacAlgorithm, PlatformPublicKey, Problem, Scheme, Secret, SecretEncoding,
    SignatureEncoding, SourceConfig, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_SECS,
};
pub use headers::{Header, Headers};
pub use rejection::Rejection;
pub use verifier::{Verified, Verifier};
