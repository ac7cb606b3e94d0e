//! WeChat Pay API v3: an RSA PKCS#1 v1.5 SHA-256 signature of `{timestamp}\n{nonce}\n{body}\n`
//! with the platform key the `Wechatpay-Serial` header names, then the notification's
//! `resource` decrypted with AEAD_AES_256_GCM under the merchant's API v3 key.

use std::{borrow::Cow, collections::HashMap};

use aes_gcm::{
    aead::{Aead, Payload},
    Aes256Gcm, KeyInit, Nonce,
};
use base64::Engine;
use rsa::{pkcs8::DecodePublicKey, traits::PublicKeyParts, Pkcs1v15Sign, RsaPublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_cert::{
    der::{Decode, Encode},
    Certificate,
};

use super::{check_window, parse_timestamp, required, Settings};
use crate::{
    config::{ConfigError, Problem},
    encoding::BASE64,
    headers::Headers,
    rejection::Rejection,
    verifier::Verified,
};

const TIMESTAMP: Cow<'static, str> = Cow::Borrowed("wechatpay-timestamp");
const NONCE: Cow<'static, str> = Cow::Borrowed("wechatpay-nonce");
const SIGNATURE: Cow<'static, str> = Cow::Borrowed("wechatpay-signature");
const SERIAL: Cow<'static, str> = Cow::Borrowed("wechatpay-serial");
const SIGNATURE_TYPE: &str = "wechatpay-signature-type";

/// The only signature type API v3 defines.
const RSA_SHA256: &[u8] = b"WECHATPAY2-SHA256-RSA2048";
/// The only resource algorithm API v3 defines.
const AES_256_GCM: &str = "AEAD_AES_256_GCM";
/// Serial numbers are 40 hex digits and public key ids `PUB_KEY_ID_` and 32 digits.
const MAX_SERIAL: usize = 64;
/// A 4096-bit RSA signature in base64 is 684 characters; nothing longer is worth decoding.
const MAX_SIGNATURE_TEXT: usize = 684;

pub(crate) struct WechatPay {
    /// By serial number or public key id, as [`normalize`] spells them.
    platform_keys: HashMap<String, RsaPublicKey>,
    api_v3_keys: Vec<Aes256Gcm>,
    tolerance: u64,
}

impl WechatPay {
    pub(crate) fn new(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let config = settings.config;
        let api_v3_keys = settings
            .required_list("api_v3_keys", &config.api_v3_keys)?
            .iter()
            .enumerate()
            .map(|(i, key)| {
                // The key is the 32 characters the merchant set, used as they are.
                let bytes = key.expose().as_bytes();
                Aes256Gcm::new_from_slice(bytes).map_err(|_| {
                    settings.error(
                        format!("api_v3_keys[{i}]"),
                        Problem::Length { expected: 32, actual: bytes.len() },
                    )
                })
            })
            .collect::<Result<_, _>>()?;

        let certificates = settings.optional_list("platform_certificates", &config.platform_certificates)?;
        let public_keys = settings.optional_list("platform_public_keys", &config.platform_public_keys)?;
        if certificates.is_empty() && public_keys.is_empty() {
            return Err(settings.error("platform_certificates", Problem::Missing { scheme: config.verify }));
        }
        let mut platform_keys = HashMap::new();
        for (i, pem) in certificates.iter().enumerate() {
            let key = format!("platform_certificates[{i}]");
            let (serial, public_key) =
                certificate(pem).map_err(|cause| settings.error(&key, Problem::Certificate(cause)))?;
            insert(&mut platform_keys, serial, public_key)
                .map_err(|problem| settings.error(&key, problem))?;
        }
        for (i, entry) in public_keys.iter().enumerate() {
            let key = format!("platform_public_keys[{i}]");
            if entry.id.is_empty() {
                return Err(settings.error(format!("{key}.id"), Problem::Empty));
            }
            let public_key = RsaPublicKey::from_public_key_pem(entry.pem.trim()).map_err(|error| {
                settings
                    .error(format!("{key}.pem"), Problem::PublicKey { kind: "RSA", cause: Box::new(error) })
            })?;
            insert(&mut platform_keys, normalize(&entry.id), public_key)
                .map_err(|problem| settings.error(&key, problem))?;
        }
        Ok(Self { platform_keys, api_v3_keys, tolerance: settings.tolerance() })
    }

    pub(crate) fn verify<'b, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &'b [u8],
        now: i64,
    ) -> Result<Verified<'b>, Rejection> {
        let timestamp_text = required(headers, &TIMESTAMP)?;
        let timestamp = parse_timestamp(timestamp_text)
            .ok_or_else(|| Rejection::malformed("wechatpay-timestamp", "not a Unix time in seconds"))?;
        let nonce = required(headers, &NONCE)?;
        let signature_text = required(headers, &SIGNATURE)?;
        let serial = required(headers, &SERIAL)?;
        match headers.header(SIGNATURE_TYPE) {
            crate::Header::Absent => {}
            crate::Header::Once(RSA_SHA256) => {}
            _ => return Err(Rejection::malformed(SIGNATURE_TYPE, "not WECHATPAY2-SHA256-RSA2048")),
        }
        if serial.len() > MAX_SERIAL
            || !serial.iter().all(|&byte| byte.is_ascii_alphanumeric() || byte == b'_')
        {
            return Err(Rejection::malformed("wechatpay-serial", "not a serial number or key id"));
        }
        // Checked to be ASCII just above.
        let serial = String::from_utf8_lossy(serial);
        let public_key = self
            .platform_keys
            .get(&normalize(&serial))
            .ok_or_else(|| Rejection::UnknownKey { serial: serial.into_owned() })?;
        if signature_text.len() > MAX_SIGNATURE_TEXT {
            return Err(Rejection::malformed("wechatpay-signature", "longer than any RSA signature"));
        }
        let signature = BASE64
            .decode(signature_text)
            .map_err(|_| Rejection::malformed("wechatpay-signature", "not base64"))?;
        let digest = Sha256::new()
            .chain_update(timestamp_text)
            .chain_update(b"\n")
            .chain_update(nonce)
            .chain_update(b"\n")
            .chain_update(body)
            .chain_update(b"\n")
            .finalize();
        public_key
            .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
            .map_err(|_| Rejection::BadSignature)?;
        check_window(timestamp, now, self.tolerance)?;

        let plaintext = self.decrypt(body)?;
        Ok(Verified::decrypted(body, plaintext, timestamp))
    }

    fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, Rejection> {
        let notification: Notification = serde_json::from_slice(body)
            .map_err(|_| Rejection::malformed_body("not a JSON notification with a resource"))?;
        let resource = notification.resource;
        if resource.algorithm != AES_256_GCM {
            return Err(Rejection::malformed_body("the resource's algorithm is not AEAD_AES_256_GCM"));
        }
        let nonce = resource.nonce.as_bytes();
        if nonce.len() != 12 {
            return Err(Rejection::malformed_body("the resource's nonce is not 12 bytes"));
        }
        let ciphertext = BASE64
            .decode(&resource.ciphertext)
            .map_err(|_| Rejection::malformed_body("the resource's ciphertext is not base64"))?;
        let aad = resource.associated_data.as_deref().unwrap_or_default().as_bytes();
        // GCM's tag authenticates the key as well as the data, so trying each key is safe: only
        // the one it was encrypted with can succeed.
        self.api_v3_keys
            .iter()
            .find_map(|cipher| {
                cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: &ciphertext, aad }).ok()
            })
            .ok_or(Rejection::DecryptionFailed)
    }
}

/// The part of a notification that the gateway reads; the rest (`id`, `event_type`, ...) stays
/// in the signed body for whoever needs it.
#[derive(Deserialize)]
struct Notification {
    resource: Resource,
}

#[derive(Deserialize)]
struct Resource {
    algorithm: String,
    ciphertext: String,
    nonce: String,
    #[serde(default)]
    associated_data: Option<String>,
}

/// The serial number (as the `Wechatpay-Serial` header writes it) and RSA key of a PEM
/// certificate.
fn certificate(pem: &str) -> Result<(String, RsaPublicKey), Box<dyn std::error::Error + Send + Sync>> {
    // PEM decoded apart from the DER: der 0.7's streaming PEM reader (Certificate::from_pem)
    // never returns on a truncated certificate, which would hang the gateway's start-up.
    let (label, der) = x509_cert::der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|error| format!("not PEM: {error}"))?;
    if label != "CERTIFICATE" {
        return Err(format!("a PEM {label}, not a CERTIFICATE").into());
    }
    let certificate = Certificate::from_der(&der)?;
    let serial = hex::encode_upper(certificate.tbs_certificate.serial_number.as_bytes());
    let spki = certificate.tbs_certificate.subject_public_key_info.to_der()?;
    let public_key = RsaPublicKey::from_public_key_der(&spki)?;
    Ok((normalize(&serial), public_key))
}

fn insert(
    keys: &mut HashMap<String, RsaPublicKey>,
    serial: String,
    public_key: RsaPublicKey,
) -> Result<(), Problem> {
    let bits = public_key.size() * 8;
    if bits < 2048 {
        return Err(Problem::WeakKey { bits });
    }
    if keys.contains_key(&serial) {
        return Err(Problem::DuplicateSerial { serial });
    }
    keys.insert(serial, public_key);
    Ok(())
}

/// One spelling per serial number: uppercase, and without leading zeros when it is a number,
/// since a certificate's DER serial may start with a zero byte that the header leaves out.
fn normalize(serial: &str) -> String {
    let upper = serial.to_ascii_uppercase();
    if upper.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        let trimmed = upper.trim_start_matches('0');
        return if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() };
    }
    upper
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn serials_compare_without_case_or_leading_zeros() {
        assert_eq!(normalize("00ab12"), "AB12");
        assert_eq!(normalize("AB12"), "AB12");
        assert_eq!(normalize("000"), "0");
        assert_eq!(normalize("PUB_KEY_ID_0114"), "PUB_KEY_ID_0114");
    }
}
