//! The schemes, one module each, and what they share: reading the configuration, headers and
//! timestamps.

pub(crate) mod github;
pub(crate) mod hmac;
pub(crate) mod mac;
pub(crate) mod standard_webhooks;
pub(crate) mod stripe;
pub(crate) mod wechatpay;

use std::borrow::Cow;

use crate::{
    config::{ConfigError, Problem, Scheme, SourceConfig, DEFAULT_TOLERANCE_SECS},
    headers::{Header, Headers},
    rejection::Rejection,
};

/// Most signatures one request may carry: rotation needs two or three, and each costs a MAC or
/// an Ed25519 verification, which a caller should not be able to multiply at will.
pub(crate) const MAX_SIGNATURES: usize = 16;

/// One source's configuration with its name, for errors that say where they are.
pub(crate) struct Settings<'c> {
    pub(crate) source: &'c str,
    pub(crate) config: &'c SourceConfig,
}

impl<'c> Settings<'c> {
    /// Refuses any key that `config.verify` does not use.
    pub(crate) fn new(source: &'c str, config: &'c SourceConfig) -> Result<Self, ConfigError> {
        let scheme = config.verify;
        let used: &[&str] = match scheme {
            Scheme::StandardWebhooks => &["secrets", "public_keys", "tolerance_secs"],
            Scheme::Stripe => &["secrets", "tolerance_secs"],
            Scheme::GitHub => &["secrets"],
            Scheme::WechatPayV3 => {
                &["api_v3_keys", "platform_certificates", "platform_public_keys", "tolerance_secs"]
            }
            Scheme::Hmac => &[
                "secrets",
                "secret_encoding",
                "algorithm",
                "signature_header",
                "signature_field",
                "signature_encoding",
                "signature_prefix",
                "timestamp_header",
                "timestamp_field",
                "signed_payload",
                "tolerance_secs",
            ],
            Scheme::None => &[],
        };
        for (key, set) in set_keys(config) {
            if set && !used.contains(&key) {
                return Err(ConfigError::new(source, key, Problem::NotApplicable { scheme }));
            }
        }
        Ok(Self { source, config })
    }

    pub(crate) fn error(&self, key: impl Into<String>, problem: Problem) -> ConfigError {
        ConfigError::new(self.source, key, problem)
    }

    /// The list under `key`: empty when not set, an error when set but empty (a list written
    /// and left empty is a mistake, and would verify nothing).
    pub(crate) fn optional_list<'x, T>(
        &self,
        key: &'static str,
        list: &'x Option<Vec<T>>,
    ) -> Result<&'x [T], ConfigError> {
        match list {
            None => Ok(&[]),
            Some(list) if list.is_empty() => Err(self.error(key, Problem::Empty)),
            Some(list) => Ok(list),
        }
    }

    /// The list under `key`, which must be set and not empty.
    pub(crate) fn required_list<'x, T>(
        &self,
        key: &'static str,
        list: &'x Option<Vec<T>>,
    ) -> Result<&'x [T], ConfigError> {
        match list {
            None => Err(self.error(key, Problem::Missing { scheme: self.config.verify })),
            Some(_) => self.optional_list(key, list),
        }
    }

    pub(crate) fn tolerance(&self) -> u64 {
        self.config.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS)
    }
}

fn set_keys(config: &SourceConfig) -> [(&'static str, bool); 16] {
    [
        ("secrets", config.secrets.is_some()),
        ("public_keys", config.public_keys.is_some()),
        ("tolerance_secs", config.tolerance_secs.is_some()),
        ("max_body_bytes", false), // every scheme takes it
        ("api_v3_keys", config.api_v3_keys.is_some()),
        ("platform_certificates", config.platform_certificates.is_some()),
        ("platform_public_keys", config.platform_public_keys.is_some()),
        ("secret_encoding", config.secret_encoding.is_some()),
        ("algorithm", config.algorithm.is_some()),
        ("signature_header", config.signature_header.is_some()),
        ("signature_field", config.signature_field.is_some()),
        ("signature_encoding", config.signature_encoding.is_some()),
        ("signature_prefix", config.signature_prefix.is_some()),
        ("timestamp_header", config.timestamp_header.is_some()),
        ("timestamp_field", config.timestamp_field.is_some()),
        ("signed_payload", config.signed_payload.is_some()),
    ]
}

/// The value of a header the scheme needs: there once, and not empty.
// A `&Cow` rather than a `&str`: a rejection takes the name by a clone, which for the schemes'
// own headers (borrowed) allocates nothing.
#[allow(clippy::ptr_arg)]
pub(crate) fn required<'h, H: Headers + ?Sized>(
    headers: &'h H,
    name: &Cow<'static, str>,
) -> Result<&'h [u8], Rejection> {
    match headers.header(name) {
        Header::Once([]) => Err(Rejection::MalformedHeader { header: name.clone(), reason: "empty" }),
        Header::Once(value) => Ok(value),
        Header::Absent => Err(Rejection::MissingHeader { header: name.clone() }),
        Header::Repeated => {
            Err(Rejection::MalformedHeader { header: name.clone(), reason: "given more than once" })
        }
    }
}

/// A Unix timestamp in seconds written as plain decimal digits: no sign, no fraction, no space,
/// at most 18 digits (so it fits an i64).
pub(crate) fn parse_timestamp(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0i64, |total, digit| total * 10 + i64::from(digit - b'0')))
}

/// Whether a signed `timestamp` is within `tolerance` seconds of `now`, either way.
pub(crate) fn check_window(timestamp: i64, now: i64, tolerance: u64) -> Result<(), Rejection> {
    let skew = timestamp.saturating_sub(now);
    if skew.unsigned_abs() > tolerance {
        return Err(Rejection::StaleTimestamp { skew_secs: skew, tolerance_secs: tolerance });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_plain_digits() {
        assert_eq!(parse_timestamp(b"1764000000"), Some(1_764_000_000));
        assert_eq!(parse_timestamp(b"0"), Some(0));
        for bad in [&b""[..], b"-1", b"+1", b"1.5", b" 1", b"1e9", b"1234567890123456789", b"\xff"] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_window_is_inclusive_both_ways() {
        assert_eq!(check_window(700, 1000, 300), Ok(()));
        assert_eq!(check_window(1300, 1000, 300), Ok(()));
        assert_eq!(
            check_window(699, 1000, 300),
            Err(Rejection::StaleTimestamp { skew_secs: -301, tolerance_secs: 300 })
        );
        assert_eq!(
            check_window(1301, 1000, 300),
            Err(Rejection::StaleTimestamp { skew_secs: 301, tolerance_secs: 300 })
        );
        assert!(check_window(i64::MAX, i64::MIN, 300).is_err());
    }
}
