//! Standard Webhooks, `v1` (HMAC-SHA256) and `v1a` (Ed25519).

use base64::{engine::general_purpose::STANDARD, Engine};
use ed25519_dalek::{Signer as _, SigningKey};
use fanout_gateway::{Rejection, Verifier};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use super::{
    bodies, genuine_accepted_attacked_rejected, verifier, HttpScheme, Request, Scheme, Signer, LIMIT, NOW,
};

const CURRENT: &[u8] = b"the current secret, 32 bytes....";
const PREVIOUS: &[u8] = b"the previous secret, still valid";
const RETIRED: &[u8] = b"a retired secret, no longer kept";
const CURRENT_SEED: [u8; 32] = [1; 32];
const RETIRED_SEED: [u8; 32] = [2; 32];

fn whsec(secret: &[u8]) -> String {
    format!("whsec_{}", STANDARD.encode(secret))
}

fn whpk(seed: [u8; 32]) -> String {
    format!("whpk_{}", STANDARD.encode(SigningKey::from_bytes(&seed).verifying_key().as_bytes()))
}

fn source_toml() -> String {
    format!(
        "verify = \"standard_webhooks\"\nsecrets = [\"{}\", \"{}\"]\npublic_keys = [\"{}\"]\nmax_body_bytes = {LIMIT}\n",
        whsec(CURRENT),
        whsec(PREVIOUS),
        whpk(CURRENT_SEED)
    )
}

fn source() -> Verifier {
    verifier(&source_toml())
}

/// The schemes for the HTTP suite: `v1` and `v1a` requests to one source.
pub fn http_schemes() -> Vec<HttpScheme> {
    vec![
        HttpScheme::new(
            "standard-webhooks-v1",
            source_toml(),
            StandardWebhooks { verifier: source(), asymmetric: false },
        ),
        HttpScheme::new(
            "standard-webhooks-v1a",
            source_toml(),
            StandardWebhooks { verifier: source(), asymmetric: true },
        ),
    ]
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    [format!("{id}.{timestamp}.").as_bytes(), body].concat()
}

fn v1(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(&signed_content(id, timestamp, body));
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn v1a(seed: [u8; 32], id: &str, timestamp: i64, body: &[u8]) -> String {
    let signature = SigningKey::from_bytes(&seed).sign(&signed_content(id, timestamp, body));
    format!("v1a,{}", STANDARD.encode(signature.to_bytes()))
}

fn request(id: &str, timestamp: i64, signature: &str, body: &[u8]) -> Request {
    Request::new(
        &[
            ("webhook-id", id),
            ("webhook-timestamp", &timestamp.to_string()),
            ("webhook-signature", signature),
        ],
        body,
    )
}

/// Signs with `v1` (HMAC) or `v1a` (Ed25519).
struct StandardWebhooks {
    verifier: Verifier,
    asymmetric: bool,
}

impl Scheme for StandardWebhooks {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    fn has_timestamp(&self) -> bool {
        true
    }

    fn sign(&self, body: &[u8], timestamp: i64, signer: &Signer) -> Request {
        let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
        let signature = match (self.asymmetric, signer) {
            (false, Signer::Current) => v1(CURRENT, id, timestamp, body),
            (false, Signer::Retired) => v1(RETIRED, id, timestamp, body),
            (false, Signer::Stranger(key)) => v1(key, id, timestamp, body),
            (true, Signer::Current) => v1a(CURRENT_SEED, id, timestamp, body),
            (true, Signer::Retired) => v1a(RETIRED_SEED, id, timestamp, body),
            (true, Signer::Stranger(seed)) => v1a(*seed, id, timestamp, body),
        };
        request(id, timestamp, &signature, body)
    }

    fn forge(&self, valid: &Request, random: &[u8]) -> Request {
        let version = if self.asymmetric { "v1a" } else { "v1" };
        valid.clone().with_header("webhook-signature", format!("{version},{}", STANDARD.encode(random)))
    }

    fn misencode(&self, valid: &Request) -> Request {
        let (version, encoded) = valid.header("webhook-signature").split_once(',').unwrap();
        let hex = hex::encode(STANDARD.decode(encoded).unwrap());
        valid.clone().with_header("webhook-signature", format!("{version},{hex}"))
    }
}

#[test]
fn the_specs_example_verifies() {
    // The example of Standard Webhooks' own libraries' tests: secret, id, timestamp and body.
    let verifier =
        verifier("verify = \"standard_webhooks\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]");
    let body = br#"{"test": 2432232314}"#;
    let request = request(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        body,
    );
    let verified = request.verify(&verifier, 1614265330).unwrap();
    assert_eq!(verified.body(), body);
    assert_eq!(verified.timestamp(), Some(1614265330));
    assert!(!verified.was_decrypted());
}

#[test]
fn every_configured_secret_and_key_verifies() {
    let verifier = source();
    let body = br#"{"type":"payment.succeeded"}"#;
    for signature in [
        v1(CURRENT, "msg_1", NOW, body),
        v1(PREVIOUS, "msg_1", NOW, body),
        v1a(CURRENT_SEED, "msg_1", NOW, body),
    ] {
        assert!(request("msg_1", NOW, &signature, body).verify(&verifier, NOW).is_ok(), "{signature}");
    }
}

#[test]
fn one_matching_signature_among_several_verifies() {
    let verifier = source();
    let body = b"{}";
    let signatures = format!(
        "v2,c29tZXRoaW5nIG5ldw== {}  {} v1a,{}",
        v1(RETIRED, "msg_1", NOW, body),
        v1(PREVIOUS, "msg_1", NOW, body),
        STANDARD.encode([0u8; 64])
    );
    assert!(request("msg_1", NOW, &signatures, body).verify(&verifier, NOW).is_ok());
    let without = signatures.replace(&v1(PREVIOUS, "msg_1", NOW, body), "");
    assert_eq!(
        request("msg_1", NOW, &without, body).verify(&verifier, NOW).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn a_source_with_only_public_keys_ignores_v1() {
    let verifier =
        verifier(&format!("verify = \"standard_webhooks\"\npublic_keys = [\"{}\"]", whpk(CURRENT_SEED)));
    let body = b"{}";
    assert!(request("m", NOW, &v1a(CURRENT_SEED, "m", NOW, body), body).verify(&verifier, NOW).is_ok());
    let rejection = request("m", NOW, &v1(CURRENT, "m", NOW, body), body).verify(&verifier, NOW).unwrap_err();
    assert_eq!(rejection, Rejection::BadSignature);
}

#[test]
fn the_timestamp_window_is_300_seconds_either_way_by_default() {
    let verifier = source();
    let body = b"{}";
    for (timestamp, accepted) in
        [(NOW - 300, true), (NOW + 300, true), (NOW - 301, false), (NOW + 301, false)]
    {
        let request = request("m", timestamp, &v1(CURRENT, "m", timestamp, body), body);
        let outcome = request.verify(&verifier, NOW);
        assert_eq!(outcome.is_ok(), accepted, "{timestamp}: {outcome:?}");
    }
    let rejection = request("m", NOW - 3600, &v1(CURRENT, "m", NOW - 3600, body), body)
        .verify(&verifier, NOW)
        .unwrap_err();
    assert_eq!(rejection, Rejection::StaleTimestamp { skew_secs: -3600, tolerance_secs: 300 });
}

#[test]
fn missing_and_malformed_headers_are_named() {
    let verifier = source();
    let valid = request("m", NOW, &v1(CURRENT, "m", NOW, b"{}"), b"{}");
    let without_id = Request { headers: valid.headers[1..].to_vec(), body: valid.body.clone() };
    assert_eq!(without_id.verify(&verifier, NOW).unwrap_err().to_string(), "missing header webhook-id");
    let bad_time = valid.clone().with_header("webhook-timestamp", "1764000000.5");
    assert_eq!(bad_time.verify(&verifier, NOW).unwrap_err().kind(), "malformed_header");
    let too_many =
        valid.clone().with_header("webhook-signature", vec![valid.header("webhook-signature"); 17].join(" "));
    assert_eq!(too_many.verify(&verifier, NOW).unwrap_err().kind(), "malformed_header");
}

proptest! {
    #![proptest_config(super::cases())]

    #[test]
    fn v1_attacks_are_all_rejected(body in bodies(), attack in super::attacks()) {
        let scheme = StandardWebhooks { verifier: source(), asymmetric: false };
        genuine_accepted_attacked_rejected(&scheme, &body, &attack)?;
    }

    #[test]
    fn v1a_attacks_are_all_rejected(body in bodies(), attack in super::attacks()) {
        let scheme = StandardWebhooks { verifier: source(), asymmetric: true };
        genuine_accepted_attacked_rejected(&scheme, &body, &attack)?;
    }
}
