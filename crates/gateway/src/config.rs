//! A source's verification settings as the operator writes them, and what is wrong with them.

use std::{error::Error as StdError, fmt};

use serde::Deserialize;

/// The timestamp tolerance when a source sets none: five minutes either way, as Stripe and Svix.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The body size limit when a source sets none: 1 MiB, well above what payment and webhook
/// providers send (Stripe's events are a few KiB), well below what would hurt the gateway.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How a source's callbacks are verified: one `[sources.NAME]` table of the gateway's config.
///
/// `verify` is required, so a source is unverified only where its config says `verify = "none"`.
/// Which of the other keys apply depends on the scheme; a key set for a scheme that does not
/// use it is an error, as is an unknown key, rather than silently ignored.
///
/// | `verify`            | keys |
/// |---------------------|------|
/// | `standard_webhooks` | `secrets` (`whsec_<base64>`) and/or `public_keys` (`whpk_<base64>`, Ed25519, for `v1a`), `tolerance_secs` |
/// | `stripe`            | `secrets` (the endpoint's `whsec_...`, used as it is), `tolerance_secs` |
/// | `github`            | `secrets` (the webhook's secret, as typed) |
/// | `wechatpay_v3`      | `api_v3_keys` (32 characters), `platform_certificates` (PEM) and/or `platform_public_keys`, `tolerance_secs` |
/// | `hmac`              | `secrets`, `secret_encoding`, `algorithm`, `signature_header` or `signature_field`, `signature_encoding`, `signature_prefix`, `timestamp_header` or `timestamp_field`, `signed_payload`, `tolerance_secs` |
/// | `none`              | (nothing but `max_body_bytes`) |
///
/// Every scheme takes `max_body_bytes`. Lists take several entries so that a secret or key can
/// be rotated without a gap: a request signed with any of them is accepted.
///
/// ```
/// use fanout_gateway::{Scheme, SourceConfig};
///
/// let config: SourceConfig = fanout_config::from_toml_str(
///     r#"
///     verify = "standard_webhooks"
///     secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
///     tolerance_secs = 120
///     "#,
/// )?;
/// assert_eq!(config.verify, Scheme::StandardWebhooks);
/// assert!(!format!("{config:?}").contains("MfKQ9r8"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The verification scheme.
    pub verify: Scheme,
    /// Shared secrets (Standard Webhooks `v1`, Stripe, GitHub, generic HMAC).
    #[serde(default)]
    pub secrets: Option<Vec<Secret>>,
    /// Standard Webhooks Ed25519 public keys, `whpk_<base64 of the 32-byte key>`, for `v1a`.
    #[serde(default)]
    pub public_keys: Option<Vec<String>>,
    /// How far a signed timestamp may be from now, past or future, in seconds (default
    /// [`DEFAULT_TOLERANCE_SECS`]); only for schemes whose requests carry one.
    #[serde(default)]
    pub tolerance_secs: Option<u64>,
    /// The largest body accepted, in bytes (default [`DEFAULT_MAX_BODY_BYTES`]).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// WeChat Pay: the merchant's API v3 keys (32 characters each), which decrypt the resource.
    #[serde(default)]
    pub api_v3_keys: Option<Vec<Secret>>,
    /// WeChat Pay: the platform certificates (PEM); each is selected by its serial number, which
    /// the `Wechatpay-Serial` header names.
    #[serde(default)]
    pub platform_certificates: Option<Vec<String>>,
    /// WeChat Pay: platform public keys (the newer "WeChat Pay public key" mode), each selected
    /// by its id (`PUB_KEY_ID_...`) in the `Wechatpay-Serial` header.
    #[serde(default)]
    pub platform_public_keys: Option<Vec<PlatformPublicKey>>,
    /// Generic HMAC: how `secrets` are written (default `raw`: the text's bytes).
    #[serde(default)]
    pub secret_encoding: Option<SecretEncoding>,
    /// Generic HMAC: the hash (default `sha256`).
    #[serde(default)]
    pub algorithm: Option<HmacAlgorithm>,
    /// Generic HMAC: the header carrying the signature.
    #[serde(default)]
    pub signature_header: Option<String>,
    /// Generic HMAC: the body's JSON field carrying the signature, as a JSON pointer
    /// (`/signature/value`). The signed payload then cannot include the whole body.
    #[serde(default)]
    pub signature_field: Option<String>,
    /// Generic HMAC: how the signature is written (default `hex`).
    #[serde(default)]
    pub signature_encoding: Option<SignatureEncoding>,
    /// Generic HMAC: text before the signature, e.g. `sha256=`; required when set.
    #[serde(default)]
    pub signature_prefix: Option<String>,
    /// Generic HMAC: the header carrying the request's Unix timestamp in seconds.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// Generic HMAC: the body's JSON field (a JSON pointer) carrying the Unix timestamp.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// Generic HMAC: what is signed, as a template of literal text and the placeholders
    /// `{body}` (the raw body), `{timestamp}` and `{field:/json/pointer}`; default `{body}`,
    /// e.g. `v0:{timestamp}:{body}` or `{timestamp}.{body}`.
    #[serde(default)]
    pub signed_payload: Option<String>,
}

/// A verification scheme, the value of a source's `verify` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` with `v1`
    /// (HMAC-SHA256) and `v1a` (Ed25519) signatures of `{id}.{timestamp}.{body}`.
    StandardWebhooks,
    /// Stripe: `Stripe-Signature: t=...,v1=...`, HMAC-SHA256 of `{t}.{body}`.
    Stripe,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body.
    #[serde(rename = "github")]
    GitHub,
    /// WeChat Pay API v3: RSA-SHA256 over timestamp, nonce and body with the platform key the
    /// `Wechatpay-Serial` header names; the body's resource decrypted with AEAD_AES_256_GCM.
    #[serde(rename = "wechatpay_v3")]
    WechatPayV3,
    /// An HMAC of a configured payload, in a configured header or body field.
    Hmac,
    /// No verification: every request within the size limit is accepted.
    None,
}

impl Scheme {
    /// The scheme as `verify` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard_webhooks",
            Scheme::Stripe => "stripe",
            Scheme::GitHub => "github",
            Scheme::WechatPayV3 => "wechatpay_v3",
            Scheme::Hmac => "hmac",
            Scheme::None => "none",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WeChat Pay platform public key and the id the `Wechatpay-Serial` header names it by.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformPublicKey {
    /// The key's id, `PUB_KEY_ID_...`.
    pub id: String,
    /// The RSA public key, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub pem: String,
}

/// How a generic HMAC source's secrets are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretEncoding {
    /// The text's UTF-8 bytes are the key.
    #[default]
    Raw,
    /// Standard base64 (padding optional).
    Base64,
    /// Hexadecimal.
    Hex,
}

/// The hash of a generic HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256.
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a generic HMAC signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Hexadecimal, either case.
    #[default]
    Hex,
    /// Standard base64 (padding optional).
    Base64,
}

pub use fanout_core::Secret;

/// A source's configuration that cannot be used: which source, which key, and what is wrong.
///
/// It never contains the secret or key itself, only where it is (`secrets[1]`).
#[derive(thiserror::Error)]
#[error("source {source_name:?}: `{key}`")]
pub struct ConfigError {
    source_name: String,
    key: String,
    #[source]
    problem: Problem,
}

fanout_core::debug_as_report!(ConfigError);

impl ConfigError {
    pub(crate) fn new(source_name: &str, key: impl Into<String>, problem: Problem) -> Self {
        Self { source_name: source_name.to_owned(), key: key.into(), problem }
    }

    /// The source, as named in the gateway's config.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The key, with the entry's index for lists: `secrets[1]`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

/// What is wrong with one key of a source's configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The scheme needs the key and it is not set.
    #[error("missing; verify = \"{scheme}\" needs it")]
    Missing {
        /// The source's scheme.
        scheme: Scheme,
    },
    /// The key is set but the scheme does not use it.
    #[error("not a setting of verify = \"{scheme}\"")]
    NotApplicable {
        /// The source's scheme.
        scheme: Scheme,
    },
    /// The key cannot be set together with another.
    #[error("cannot be set together with `{other}`")]
    Conflict {
        /// The other key.
        other: &'static str,
    },
    /// A list with nothing in it, or an empty text, which would verify nothing.
    #[error("empty")]
    Empty,
    /// A number that must be positive is zero.
    #[error("must be more than 0")]
    Zero,
    /// The value lacks the prefix its format has.
    #[error("does not start with `{expected}`")]
    Prefix {
        /// The prefix, e.g. `whsec_`.
        expected: &'static str,
    },
    /// The value is not valid base64 or hexadecimal; the reason gives the offset, never the
    /// character, which would be part of a secret.
    #[error("not valid {encoding}: {reason}")]
    Encoding {
        /// `base64` or `hex`.
        encoding: &'static str,
        /// What is wrong, and where.
        reason: String,
    },
    /// The decoded value has the wrong length.
    #[error("{actual} bytes where {expected} are needed")]
    Length {
        /// The length the format has.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// Not a usable public key.
    #[error("not a valid {kind} public key")]
    PublicKey {
        /// What kind of key was expected, e.g. `Ed25519`.
        kind: &'static str,
        /// Why it is not one.
        #[source]
        cause: Box<dyn StdError + Send + Sync>,
    },
    /// Not a PEM X.509 certificate with an RSA key.
    #[error("not a PEM X.509 certificate with an RSA key")]
    Certificate(#[source] Box<dyn StdError + Send + Sync>),
    /// An RSA key too short to trust.
    #[error("an RSA key of {bits} bits; at least 2048 are needed")]
    WeakKey {
        /// The key's size.
        bits: usize,
    },
    /// Two certificates or keys with the same serial number or id, so a request could not
    /// say which it was signed with.
    #[error("serial number {serial} appears twice")]
    DuplicateSerial {
        /// The serial number or id.
        serial: String,
    },
    /// A JSON pointer that does not start with `/`.
    #[error("{pointer:?} is not a JSON pointer (it starts with `/`)")]
    Pointer {
        /// The value given.
        pointer: String,
    },
    /// A value that cannot be used as it is (a `signed_payload` template, a header name, a key
    /// that would promise what it does not do); the text says why.
    #[error("{0}")]
    Invalid(&'static str),
}
