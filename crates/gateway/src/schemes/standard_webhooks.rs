//! Standard Webhooks: `v1` (HMAC-SHA256) and `v1a` (Ed25519) signatures of
//! `{webhook-id}.{webhook-timestamp}.{body}`.

use std::borrow::Cow;

use ed25519_dalek::{Signature, VerifyingKey};

use super::{check_window, mac::Key, parse_timestamp, required, Settings, MAX_SIGNATURES};
use crate::{
    config::{ConfigError, HmacAlgorithm, Problem},
    encoding::{config_base64, signature_base64, MAX_SIGNATURE},
    headers::Headers,
    rejection::Rejection,
    verifier::Verified,
};

const ID: Cow<'static, str> = Cow::Borrowed("webhook-id");
const TIMESTAMP: Cow<'static, str> = Cow::Borrowed("webhook-timestamp");
const SIGNATURE: Cow<'static, str> = Cow::Borrowed("webhook-signature");

/// The spec's bounds for a symmetric secret: at least 24 bytes, at most 64.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

pub(crate) struct StandardWebhooks {
    secrets: Vec<Key>,
    public_keys: Vec<VerifyingKey>,
    tolerance: u64,
}

impl StandardWebhooks {
    pub(crate) fn new(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let config = settings.config;
        let secrets = settings.optional_list("secrets", &config.secrets)?;
        let public_keys = settings.optional_list("public_keys", &config.public_keys)?;
        if secrets.is_empty() && public_keys.is_empty() {
            return Err(settings.error("secrets", Problem::Missing { scheme: config.verify }));
        }
        let secrets = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                let key = format!("secrets[{i}]");
                let encoded = secret
                    .expose()
                    .strip_prefix("whsec_")
                    .ok_or_else(|| settings.error(&key, Problem::Prefix { expected: "whsec_" }))?;
                let bytes = config_base64(encoded).map_err(|problem| settings.error(&key, problem))?;
                if !SECRET_BYTES.contains(&bytes.len()) {
                    let expected = if bytes.len() < *SECRET_BYTES.start() {
                        SECRET_BYTES.start()
                    } else {
                        SECRET_BYTES.end()
                    };
                    return Err(
                        settings.error(&key, Problem::Length { expected: *expected, actual: bytes.len() })
                    );
                }
                Ok(Key::new(HmacAlgorithm::Sha256, &bytes))
            })
            .collect::<Result<_, _>>()?;
        let public_keys = public_keys
            .iter()
            .enumerate()
            .map(|(i, public_key)| {
                let key = format!("public_keys[{i}]");
                let encoded = public_key
                    .strip_prefix("whpk_")
                    .ok_or_else(|| settings.error(&key, Problem::Prefix { expected: "whpk_" }))?;
                let bytes = config_base64(encoded).map_err(|problem| settings.error(&key, problem))?;
                let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    settings.error(&key, Problem::Length { expected: 32, actual: bytes.len() })
                })?;
                let public_key = VerifyingKey::from_bytes(&bytes).map_err(|error| {
                    settings.error(&key, Problem::PublicKey { kind: "Ed25519", cause: Box::new(error) })
                })?;
                if public_key.is_weak() {
                    let cause = "a point of small order, which many signatures would match".into();
                    return Err(settings.error(&key, Problem::PublicKey { kind: "Ed25519", cause }));
                }
                Ok(public_key)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { secrets, public_keys, tolerance: settings.tolerance() })
    }

    pub(crate) fn verify<'b, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &'b [u8],
        now: i64,
    ) -> Result<Verified<'b>, Rejection> {
        let id = required(headers, &ID)?;
        let timestamp_text = required(headers, &TIMESTAMP)?;
        let timestamp = parse_timestamp(timestamp_text)
            .ok_or_else(|| Rejection::malformed("webhook-timestamp", "not a Unix time in seconds"))?;
        let signatures = required(headers, &SIGNATURE)?;

        let entries = || signatures.split(|&byte| byte == b' ').filter(|entry| !entry.is_empty());
        if entries().count() > MAX_SIGNATURES {
            return Err(Rejection::malformed("webhook-signature", "more than 16 signatures"));
        }
        let tags: Vec<_> =
            self.secrets.iter().map(|key| key.tag(&[id, b".", timestamp_text, b".", body])).collect();
        // Ed25519 signs the message whole; built only when a v1a signature can be checked.
        let mut message = None;
        let mut malformed = false;
        let mut matched = false;
        for entry in entries() {
            let Some(comma) = entry.iter().position(|&byte| byte == b',') else {
                malformed = true;
                continue;
            };
            let (version, encoded) = (&entry[..comma], &entry[comma + 1..]);
            let mut buffer = [0; MAX_SIGNATURE];
            match version {
                b"v1" if !tags.is_empty() => {
                    let Some(signature) = signature_base64(encoded, &mut buffer) else {
                        malformed = true;
                        continue;
                    };
                    matched = tags.iter().any(|tag| tag.matches(signature));
                }
                b"v1a" if !self.public_keys.is_empty() => {
                    let Some(signature) = signature_base64(encoded, &mut buffer)
                        .and_then(|bytes| Signature::from_slice(bytes).ok())
                    else {
                        malformed = true;
                        continue;
                    };
                    let message =
                        message.get_or_insert_with(|| [id, b".", timestamp_text, b".", body].concat());
                    matched =
                        self.public_keys.iter().any(|key| key.verify_strict(message, &signature).is_ok());
                }
                // Other versions, and versions for which no key is configured, are for others.
                _ => {}
            }
            if matched {
                break;
            }
        }
        if !matched {
            return Err(if malformed {
                Rejection::malformed(
                    "webhook-signature",
                    "a signature that is not `v1,<base64>` or `v1a,<base64>`",
                )
            } else {
                Rejection::BadSignature
            });
        }
        check_window(timestamp, now, self.tolerance)?;
        Ok(Verified::signed(body, Some(timestamp)))
    }
}
