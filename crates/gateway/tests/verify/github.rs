//! GitHub's `X-Hub-Signature-256`.

use base64::{engine::general_purpose::STANDARD, Engine};
use fanout_gateway::{Rejection, Verifier};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use super::{
    bodies, genuine_accepted_attacked_rejected, verifier, HttpScheme, Request, Scheme, Signer, LIMIT, NOW,
};

const CURRENT: &str = "the current webhook secret";
const RETIRED: &str = "the webhook secret before it";

fn source_toml() -> String {
    format!("verify = \"github\"\nsecrets = [\"{CURRENT}\"]\nmax_body_bytes = {LIMIT}\n")
}

fn source() -> Verifier {
    verifier(&source_toml())
}

/// The scheme for the HTTP suite.
pub fn http_schemes() -> Vec<HttpScheme> {
    vec![HttpScheme::new("github", source_toml(), GitHub(source()))]
}

fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct GitHub(Verifier);

impl Scheme for GitHub {
    fn verifier(&self) -> &Verifier {
        &self.0
    }

    fn has_timestamp(&self) -> bool {
        false
    }

    fn sign(&self, body: &[u8], _timestamp: i64, signer: &Signer) -> Request {
        let signature = match signer {
            Signer::Current => signature(CURRENT.as_bytes(), body),
            Signer::Retired => signature(RETIRED.as_bytes(), body),
            Signer::Stranger(key) => signature(key, body),
        };
        Request::new(&[("X-Hub-Signature-256", &signature)], body)
    }

    fn forge(&self, valid: &Request, random: &[u8]) -> Request {
        valid.clone().with_header("X-Hub-Signature-256", format!("sha256={}", hex::encode(random)))
    }

    fn misencode(&self, valid: &Request) -> Request {
        let hex = valid.header("X-Hub-Signature-256").strip_prefix("sha256=").unwrap();
        valid.clone().with_header(
            "X-Hub-Signature-256",
            format!("sha256={}", STANDARD.encode(hex::decode(hex).unwrap())),
        )
    }
}

#[test]
fn githubs_documented_test_vector_verifies() {
    let verifier = verifier("verify = \"github\"\nsecrets = [\"It's a Secret to Everybody\"]");
    let request = Request::new(
        &[("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")],
        b"Hello, World!",
    );
    let verified = request.verify(&verifier, NOW).unwrap();
    assert_eq!(verified.body(), b"Hello, World!");
    assert_eq!(verified.timestamp(), None);
}

#[test]
fn rotation_accepts_either_secret() {
    let verifier = verifier(&format!("verify = \"github\"\nsecrets = [\"{CURRENT}\", \"{RETIRED}\"]"));
    for secret in [CURRENT, RETIRED] {
        let request = Request::new(&[("x-hub-signature-256", &signature(secret.as_bytes(), b"{}"))], b"{}");
        assert!(request.verify(&verifier, NOW).is_ok());
    }
}

#[test]
fn the_legacy_sha1_header_alone_is_not_enough() {
    let request =
        Request::new(&[("X-Hub-Signature", "sha1=0123456789abcdef0123456789abcdef01234567")], b"{}");
    let rejection = request.verify(&source(), NOW).unwrap_err();
    assert_eq!(rejection.to_string(), "missing header x-hub-signature-256");
    let sha1 =
        Request::new(&[("X-Hub-Signature-256", "sha1=0123456789abcdef0123456789abcdef01234567")], b"{}");
    assert_eq!(sha1.verify(&source(), NOW).unwrap_err().kind(), "malformed_header");
    let short = Request::new(&[("X-Hub-Signature-256", "sha256=0123")], b"{}");
    assert_eq!(short.verify(&source(), NOW).unwrap_err(), Rejection::BadSignature);
}

proptest! {
    #![proptest_config(super::cases())]

    #[test]
    fn attacks_are_all_rejected(body in bodies(), attack in super::attacks()) {
        genuine_accepted_attacked_rejected(&GitHub(source()), &body, &attack)?;
    }
}
