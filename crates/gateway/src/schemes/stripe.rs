//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of `{t}.{body}`
//! keyed with the endpoint's whole `whsec_...` secret.

use std::borrow::Cow;

use super::{check_window, mac::Key, parse_timestamp, required, Settings, MAX_SIGNATURES};
use crate::{
    config::{ConfigError, HmacAlgorithm, Problem},
    encoding::{signature_hex, MAX_SIGNATURE},
    headers::Headers,
    rejection::Rejection,
    verifier::Verified,
};

const SIGNATURE: Cow<'static, str> = Cow::Borrowed("stripe-signature");

pub(crate) struct Stripe {
    secrets: Vec<Key>,
    tolerance: u64,
}

impl Stripe {
    pub(crate) fn new(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let secrets = settings.required_list("secrets", &settings.config.secrets)?;
        let secrets = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                let secret = secret.expose();
                if !secret.starts_with("whsec_") {
                    return Err(
                        settings.error(format!("secrets[{i}]"), Problem::Prefix { expected: "whsec_" })
                    );
                }
                // Stripe's libraries key the HMAC with the secret's text as it is, prefix included.
                Ok(Key::new(HmacAlgorithm::Sha256, secret.as_bytes()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { secrets, tolerance: settings.tolerance() })
    }

    pub(crate) fn verify<'b, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &'b [u8],
        now: i64,
    ) -> Result<Verified<'b>, Rejection> {
        let header = required(headers, &SIGNATURE)?;
        let mut timestamp_text = None;
        let mut signatures = 0;
        for item in header.split(|&byte| byte == b',') {
            let Some(equals) = item.iter().position(|&byte| byte == b'=') else {
                return Err(Rejection::malformed("stripe-signature", "an item that is not key=value"));
            };
            match &item[..equals] {
                b"t" if timestamp_text.is_some() => {
                    return Err(Rejection::malformed("stripe-signature", "two timestamps"));
                }
                b"t" => timestamp_text = Some(&item[equals + 1..]),
                b"v1" => signatures += 1,
                // v0 (test mode's old scheme) and whatever Stripe adds later are not ours to check.
                _ => {}
            }
        }
        let timestamp_text =
            timestamp_text.ok_or_else(|| Rejection::malformed("stripe-signature", "no timestamp t="))?;
        let timestamp = parse_timestamp(timestamp_text)
            .ok_or_else(|| Rejection::malformed("stripe-signature", "t= is not a Unix time in seconds"))?;
        if signatures == 0 {
            return Err(Rejection::malformed("stripe-signature", "no v1 signature"));
        }
        if signatures > MAX_SIGNATURES {
            return Err(Rejection::malformed("stripe-signature", "more than 16 signatures"));
        }

        let tags: Vec<_> = self.secrets.iter().map(|key| key.tag(&[timestamp_text, b".", body])).collect();
        let mut malformed = false;
        let matched =
            header.split(|&byte| byte == b',').filter_map(|item| item.strip_prefix(b"v1=")).any(|hex| {
                let mut buffer = [0; MAX_SIGNATURE];
                match signature_hex(hex, &mut buffer) {
                    Some(signature) => tags.iter().any(|tag| tag.matches(signature)),
                    None => {
                        malformed = true;
                        false
                    }
                }
            });
        if !matched {
            return Err(if malformed {
                Rejection::malformed("stripe-signature", "a v1 signature that is not hex")
            } else {
                Rejection::BadSignature
            });
        }
        check_window(timestamp, now, self.tolerance)?;
        Ok(Verified::signed(body, Some(timestamp)))
    }
}
