//! Why a request was not accepted.

use std::borrow::Cow;

/// Why a request was not accepted: for the gateway's log and metrics only.
///
/// The HTTP layer answers every rejection the same way (401, no detail), so a caller learns
/// nothing that would help it forge the next try. None of them carries a secret or a signature;
/// the header names and reasons are the gateway's own words, and the one value from the request
/// that is kept, [`UnknownKey`](Rejection::UnknownKey)'s serial, is checked to be a short plain
/// identifier first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The body is over the source's `max_body_bytes`.
    #[error("body of {actual} bytes is over the limit of {limit}")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
        /// The body's size.
        actual: usize,
    },
    /// A header the scheme needs is not there.
    #[error("missing header {header}")]
    MissingHeader {
        /// The header's name.
        header: Cow<'static, str>,
    },
    /// A header is there but cannot be read (or is there twice).
    #[error("malformed header {header}: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: Cow<'static, str>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body cannot be read as the scheme needs (JSON, its resource, a configured field).
    #[error("malformed body: {reason}")]
    MalformedBody {
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// The request names a key (WeChat Pay's `Wechatpay-Serial`) that is not configured.
    #[error("no platform key with serial {serial}")]
    UnknownKey {
        /// The serial number or key id the request named.
        serial: String,
    },
    /// No signature matches any configured secret or key.
    #[error("no signature matches")]
    BadSignature,
    /// The signature is good but its timestamp is too far from now: a replay, or a clock off.
    #[error("timestamp {} s in the {} (tolerance {tolerance_secs} s)", skew_secs.unsigned_abs(), if *skew_secs < 0 { "past" } else { "future" })]
    StaleTimestamp {
        /// The timestamp minus now, in seconds: negative in the past, positive in the future.
        skew_secs: i64,
        /// The source's tolerance.
        tolerance_secs: u64,
    },
    /// The signature is good but the encrypted resource does not decrypt with any configured key.
    #[error("the resource does not decrypt with any configured key")]
    DecryptionFailed,
}

impl Rejection {
    /// A short stable label for metrics (`fanout_gateway_rejected_total{reason=...}`) and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::BodyTooLarge { .. } => "body_too_large",
            Rejection::MissingHeader { .. } => "missing_header",
            Rejection::MalformedHeader { .. } => "malformed_header",
            Rejection::MalformedBody { .. } => "malformed_body",
            Rejection::UnknownKey { .. } => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::StaleTimestamp { .. } => "stale_timestamp",
            Rejection::DecryptionFailed => "decryption_failed",
        }
    }

    /// Every label [`kind`](Self::kind) returns, so that metrics can be registered up front.
    pub const KINDS: [&'static str; 8] = [
        "body_too_large",
        "missing_header",
        "malformed_header",
        "malformed_body",
        "unknown_key",
        "bad_signature",
        "stale_timestamp",
        "decryption_failed",
    ];

    pub(crate) fn malformed(header: &'static str, reason: &'static str) -> Self {
        Rejection::MalformedHeader { header: Cow::Borrowed(header), reason }
    }

    pub(crate) fn malformed_body(reason: &'static str) -> Self {
        Rejection::MalformedBody { reason: Cow::Borrowed(reason) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skew_says_which_way() {
        let past = Rejection::StaleTimestamp { skew_secs: -400, tolerance_secs: 300 };
        assert_eq!(past.to_string(), "timestamp 400 s in the past (tolerance 300 s)");
        let future = Rejection::StaleTimestamp { skew_secs: 301, tolerance_secs: 300 };
        assert_eq!(future.to_string(), "timestamp 301 s in the future (tolerance 300 s)");
    }

    #[test]
    fn every_kind_is_listed() {
        let all = [
            Rejection::BodyTooLarge { limit: 1, actual: 2 },
            Rejection::MissingHeader { header: "a".into() },
            Rejection::malformed("a", "b"),
            Rejection::malformed_body("c"),
            Rejection::UnknownKey { serial: "1".into() },
            Rejection::BadSignature,
            Rejection::StaleTimestamp { skew_secs: 1, tolerance_secs: 0 },
            Rejection::DecryptionFailed,
        ];
        let kinds: Vec<_> = all.iter().map(Rejection::kind).collect();
        assert_eq!(kinds, Rejection::KINDS);
    }
}
