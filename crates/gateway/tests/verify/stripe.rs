//! Stripe's `Stripe-Signature`.

use base64::{engine::general_purpose::STANDARD, Engine};
use fanout_gateway::{Rejection, Verifier};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use super::{
    bodies, genuine_accepted_attacked_rejected, verifier, HttpScheme, Request, Scheme, Signer, LIMIT, NOW,
};

const CURRENT: &str = "whsec_5c8bQnEfH2J1kZ3xR7tW9yA4mD6pL0sV";
const RETIRED: &str = "whsec_Kq2Nw8Zr4Tb6Yc1Xv3Mp5Lh7Gf9Jd0Se";

fn source_toml() -> String {
    format!("verify = \"stripe\"\nsecrets = [\"{CURRENT}\"]\nmax_body_bytes = {LIMIT}\n")
}

fn source() -> Verifier {
    verifier(&source_toml())
}

/// The scheme for the HTTP suite.
pub fn http_schemes() -> Vec<HttpScheme> {
    vec![HttpScheme::new("stripe", source_toml(), Stripe(source()))]
}

/// As Stripe's docs describe it: `signed_payload = t + "." + body`, HMAC-SHA256 with the
/// endpoint's secret, hex.
fn v1(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

struct Stripe(Verifier);

impl Scheme for Stripe {
    fn verifier(&self) -> &Verifier {
        &self.0
    }

    fn has_timestamp(&self) -> bool {
        true
    }

    fn sign(&self, body: &[u8], timestamp: i64, signer: &Signer) -> Request {
        let signature = match signer {
            Signer::Current => v1(CURRENT.as_bytes(), timestamp, body),
            Signer::Retired => v1(RETIRED.as_bytes(), timestamp, body),
            Signer::Stranger(key) => v1(key, timestamp, body),
        };
        Request::new(&[("Stripe-Signature", &format!("t={timestamp},v1={signature}"))], body)
    }

    fn forge(&self, valid: &Request, random: &[u8]) -> Request {
        let t = valid.header("Stripe-Signature").split(',').next().unwrap().to_owned();
        valid.clone().with_header("Stripe-Signature", format!("{t},v1={}", hex::encode(random)))
    }

    fn misencode(&self, valid: &Request) -> Request {
        let (t, hex) = valid.header("Stripe-Signature").split_once(",v1=").unwrap();
        let base64 = STANDARD.encode(hex::decode(hex).unwrap());
        valid.clone().with_header("Stripe-Signature", format!("{t},v1={base64}"))
    }
}

#[test]
fn a_header_as_stripe_sends_it_verifies() {
    // Test mode adds a v0 signature with another secret; v0 is ignored, v1 is what counts.
    let body = br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}"#;
    let header = format!(
        "t={NOW},v1={},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
        v1(CURRENT.as_bytes(), NOW, body)
    );
    let request = Request::new(&[("stripe-signature", &header)], body);
    let verified = request.verify(&source(), NOW).unwrap();
    assert_eq!(verified.body(), body);
    assert_eq!(verified.timestamp(), Some(NOW));
}

#[test]
fn any_v1_with_any_secret_verifies_during_a_rotation() {
    let verifier = verifier(&format!("verify = \"stripe\"\nsecrets = [\"{CURRENT}\", \"{RETIRED}\"]"));
    let body = b"{}";
    let header = format!("t={NOW},v1={},v1={}", "00".repeat(32), v1(RETIRED.as_bytes(), NOW, body));
    assert!(Request::new(&[("stripe-signature", &header)], body).verify(&verifier, NOW).is_ok());
}

#[test]
fn the_secret_is_used_with_its_prefix() {
    // Stripe's libraries key the HMAC with the whole "whsec_..." text; a verifier that decoded
    // it, as Standard Webhooks does, would reject every genuine event.
    let body = b"{}";
    let without_prefix = v1(CURRENT.strip_prefix("whsec_").unwrap().as_bytes(), NOW, body);
    let request = Request::new(&[("stripe-signature", &format!("t={NOW},v1={without_prefix}"))], body);
    assert_eq!(request.verify(&source(), NOW).unwrap_err(), Rejection::BadSignature);
}

#[test]
fn headers_without_t_or_v1_are_malformed() {
    let signature = v1(CURRENT.as_bytes(), NOW, b"{}");
    for header in [
        format!("v1={signature}"),
        format!("t={NOW}"),
        format!("t={NOW},t={NOW},v1={signature}"),
        format!("t={NOW},v1"),
        format!("t=-{NOW},v1={signature}"),
        format!("t={NOW}, v1={signature}"),
    ] {
        let rejection =
            Request::new(&[("stripe-signature", &header)], b"{}").verify(&source(), NOW).unwrap_err();
        assert_eq!(rejection.kind(), "malformed_header", "{header}: {rejection}");
    }
}

proptest! {
    #![proptest_config(super::cases())]

    #[test]
    fn attacks_are_all_rejected(body in bodies(), attack in super::attacks()) {
        genuine_accepted_attacked_rejected(&Stripe(source()), &body, &attack)?;
    }
}
