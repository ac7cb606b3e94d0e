//! Generic HMAC: header or body field, SHA-256 or SHA-512, hex or base64, with a prefix.

use base64::{engine::general_purpose::STANDARD, Engine};
use fanout_gateway::{Rejection, Verifier};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::{Sha256, Sha512};

use super::{
    bodies, genuine_accepted_attacked_rejected, verifier, HttpScheme, Request, Scheme, Signer, LIMIT, NOW,
};

const CURRENT: &str = "a shared secret of the provider";
const RETIRED: &str = "the secret it had before that";

fn sha512_base64(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).unwrap();
    parts.iter().for_each(|part| mac.update(part));
    STANDARD.encode(mac.finalize().into_bytes())
}

fn sha256_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    parts.iter().for_each(|part| mac.update(part));
    hex::encode(mac.finalize().into_bytes())
}

/// Slack's shape: `X-Slack-Signature: v0=<hex of HMAC-SHA256 of "v0:{timestamp}:{body}">`,
/// `X-Slack-Request-Timestamp`.
struct SlackLike(Verifier);

fn slack_like_toml() -> String {
    format!(
        r#"
        verify = "hmac"
        secrets = ["{CURRENT}"]
        signature_header = "X-Slack-Signature"
        signature_prefix = "v0="
        timestamp_header = "X-Slack-Request-Timestamp"
        signed_payload = "v0:{{timestamp}}:{{body}}"
        max_body_bytes = {LIMIT}
        "#
    )
}

fn slack_like() -> Verifier {
    verifier(&slack_like_toml())
}

impl Scheme for SlackLike {
    fn verifier(&self) -> &Verifier {
        &self.0
    }

    fn has_timestamp(&self) -> bool {
        true
    }

    fn sign(&self, body: &[u8], timestamp: i64, signer: &Signer) -> Request {
        let secret = match signer {
            Signer::Current => CURRENT.as_bytes(),
            Signer::Retired => RETIRED.as_bytes(),
            Signer::Stranger(key) => key,
        };
        let signature = sha256_hex(secret, &[format!("v0:{timestamp}:").as_bytes(), body]);
        Request::new(
            &[
                ("X-Slack-Request-Timestamp", &timestamp.to_string()),
                ("X-Slack-Signature", &format!("v0={signature}")),
            ],
            body,
        )
    }

    fn forge(&self, valid: &Request, random: &[u8]) -> Request {
        valid.clone().with_header("X-Slack-Signature", format!("v0={}", hex::encode(random)))
    }

    fn misencode(&self, valid: &Request) -> Request {
        let hex = valid.header("X-Slack-Signature").strip_prefix("v0=").unwrap();
        valid
            .clone()
            .with_header("X-Slack-Signature", format!("v0={}", STANDARD.encode(hex::decode(hex).unwrap())))
    }
}

/// Shopify's shape: `X-Shopify-Hmac-Sha256: <base64 of HMAC-SHA256 of the body>`, no timestamp;
/// here with SHA-512 and a base64 secret, to cover those settings too.
struct Sha512Base64(Verifier);

fn sha512_toml() -> String {
    format!(
        "verify = \"hmac\"\nsecrets = [\"{}\"]\nsecret_encoding = \"base64\"\nalgorithm = \"sha512\"\nsignature_header = \"X-Signature\"\nsignature_encoding = \"base64\"\nmax_body_bytes = {LIMIT}\n",
        STANDARD.encode(CURRENT)
    )
}

fn sha512_source() -> Verifier {
    verifier(&sha512_toml())
}

/// The schemes for the HTTP suite.
pub fn http_schemes() -> Vec<HttpScheme> {
    vec![
        HttpScheme::new("hmac-slack-like", slack_like_toml(), SlackLike(slack_like())),
        HttpScheme::new("hmac-sha512-base64", sha512_toml(), Sha512Base64(sha512_source())),
    ]
}

impl Scheme for Sha512Base64 {
    fn verifier(&self) -> &Verifier {
        &self.0
    }

    fn has_timestamp(&self) -> bool {
        false
    }

    fn sign(&self, body: &[u8], _timestamp: i64, signer: &Signer) -> Request {
        let secret = match signer {
            Signer::Current => CURRENT.as_bytes(),
            Signer::Retired => RETIRED.as_bytes(),
            Signer::Stranger(key) => key,
        };
        Request::new(&[("X-Signature", &sha512_base64(secret, &[body]))], body)
    }

    fn forge(&self, valid: &Request, random: &[u8]) -> Request {
        valid.clone().with_header("X-Signature", STANDARD.encode(random))
    }

    fn misencode(&self, valid: &Request) -> Request {
        let bytes = STANDARD.decode(valid.header("X-Signature")).unwrap();
        valid.clone().with_header("X-Signature", hex::encode(bytes))
    }
}

/// Mailgun's shape: the body carries `signature: {timestamp, token, signature}`, the signature
/// being the hex HMAC-SHA256 of timestamp and token.
#[test]
fn a_signature_in_the_body_over_body_fields_verifies() {
    let verifier = verifier(&format!(
        r#"
        verify = "hmac"
        secrets = ["{CURRENT}"]
        signature_field = "/signature/signature"
        timestamp_field = "/signature/timestamp"
        signed_payload = "{{field:/signature/timestamp}}{{field:/signature/token}}"
        "#
    ));
    let token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
    let body = |timestamp: i64, signature: &str| {
        serde_json::json!({
            "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
            "event-data": {"event": "delivered"}
        })
        .to_string()
        .into_bytes()
    };
    let good = sha256_hex(CURRENT.as_bytes(), &[NOW.to_string().as_bytes(), token.as_bytes()]);
    assert!(Request::new(&[], &body(NOW, &good)).verify(&verifier, NOW).is_ok());
    let stale = sha256_hex(CURRENT.as_bytes(), &[(NOW - 900).to_string().as_bytes(), token.as_bytes()]);
    let rejection = Request::new(&[], &body(NOW - 900, &stale)).verify(&verifier, NOW).unwrap_err();
    assert_eq!(rejection, Rejection::StaleTimestamp { skew_secs: -900, tolerance_secs: 300 });
    let moved = Request::new(&[], &body(NOW + 1, &good)).verify(&verifier, NOW).unwrap_err();
    assert_eq!(moved, Rejection::BadSignature);
    let missing =
        Request::new(&[], br#"{"signature":{"timestamp":"1"}}"#).verify(&verifier, NOW).unwrap_err();
    assert_eq!(missing.kind(), "malformed_body");
    assert_eq!(Request::new(&[], b"not json").verify(&verifier, NOW).unwrap_err().kind(), "malformed_body");
}

#[test]
fn a_plain_body_signature_defaults_to_hex_sha256_without_prefix() {
    let verifier =
        verifier(&format!("verify = \"hmac\"\nsecrets = [\"{CURRENT}\"]\nsignature_header = \"X-Sig\""));
    let body = b"{\"ok\":true}";
    let request = Request::new(&[("x-sig", &sha256_hex(CURRENT.as_bytes(), &[body]))], body);
    assert!(request.verify(&verifier, NOW).is_ok());
    let prefixed =
        Request::new(&[("x-sig", &format!("sha256={}", sha256_hex(CURRENT.as_bytes(), &[body])))], body);
    assert_eq!(prefixed.verify(&verifier, NOW).unwrap_err().kind(), "malformed_header");
}

proptest! {
    #![proptest_config(super::cases())]

    #[test]
    fn slack_like_attacks_are_all_rejected(body in bodies(), attack in super::attacks()) {
        genuine_accepted_attacked_rejected(&SlackLike(slack_like()), &body, &attack)?;
    }

    #[test]
    fn sha512_base64_attacks_are_all_rejected(body in bodies(), attack in super::attacks()) {
        genuine_accepted_attacked_rejected(&Sha512Base64(sha512_source()), &body, &attack)?;
    }
}
