//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body. GitHub signs no
//! timestamp, so a captured delivery stays valid: the gateway's dedupe on `X-GitHub-Delivery`
//! is what stops a replay.

use std::borrow::Cow;

use super::{mac::Key, required, Settings};
use crate::{
    config::{ConfigError, HmacAlgorithm, Problem},
    encoding::{signature_hex, MAX_SIGNATURE},
    headers::Headers,
    rejection::Rejection,
    verifier::Verified,
};

const SIGNATURE: Cow<'static, str> = Cow::Borrowed("x-hub-signature-256");

pub(crate) struct GitHub {
    secrets: Vec<Key>,
}

impl GitHub {
    pub(crate) fn new(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let secrets = settings.required_list("secrets", &settings.config.secrets)?;
        let secrets = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                if secret.expose().is_empty() {
                    return Err(settings.error(format!("secrets[{i}]"), Problem::Empty));
                }
                Ok(Key::new(HmacAlgorithm::Sha256, secret.expose().as_bytes()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { secrets })
    }

    pub(crate) fn verify<'b, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &'b [u8],
    ) -> Result<Verified<'b>, Rejection> {
        let header = required(headers, &SIGNATURE)?;
        let hex = header
            .strip_prefix(b"sha256=")
            .ok_or_else(|| Rejection::malformed("x-hub-signature-256", "does not start with sha256="))?;
        let mut buffer = [0; MAX_SIGNATURE];
        let signature = signature_hex(hex, &mut buffer)
            .ok_or_else(|| Rejection::malformed("x-hub-signature-256", "the signature is not hex"))?;
        if !self.secrets.iter().any(|key| key.tag(&[body]).matches(signature)) {
            return Err(Rejection::BadSignature);
        }
        Ok(Verified::signed(body, None))
    }
}
