//! WeChat Pay API v3: RSA-SHA256 with the platform certificate the serial names, then the
//! resource decrypted.

use std::sync::OnceLock;

use aes_gcm::{aead::Aead, aead::Payload, Aes256Gcm, KeyInit, Nonce};
use base64::{engine::general_purpose::STANDARD, Engine};
use fanout_gateway::{Rejection, Verifier};
use proptest::prelude::*;
use rsa::{pkcs8::DecodePrivateKey, Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};

use super::{
    bodies, genuine_accepted_attacked_rejected, verifier, HttpScheme, Request, Scheme, Signer, LIMIT, NOW,
};

const CURRENT_CERT: &str = include_str!("../data/wechatpay-current.cert.pem");
const CURRENT_KEY: &str = include_str!("../data/wechatpay-current.key.pem");
/// As WeChat Pay writes it: uppercase, without the DER serial's leading zero.
const CURRENT_SERIAL: &str = "F3C2A17D5E4B6019A7C3E2D1F0A9B8C7D6E5F4";
const RETIRED_KEY: &str = include_str!("../data/wechatpay-retired.key.pem");
const RETIRED_SERIAL: &str = "5D4E5F60718293A4B5C6D7E8F901122334455667";
const WEAK_CERT: &str = include_str!("../data/wechatpay-weak.cert.pem");
const API_V3_KEY: &str = "0123456789abcdefghijklmnopqrstuv";

fn config(extra: &str) -> String {
    format!(
        "verify = \"wechatpay_v3\"\napi_v3_keys = [\"{API_V3_KEY}\"]\nplatform_certificates = ['''{CURRENT_CERT}''']\nmax_body_bytes = {LIMIT}\n{extra}"
    )
}

fn rsa_sign(key_pem: &str, message: &[u8]) -> String {
    // Parsed once: the key's precomputation costs as much as a signature.
    static KEYS: OnceLock<[RsaPrivateKey; 2]> = OnceLock::new();
    let [current, retired] = KEYS
        .get_or_init(|| [CURRENT_KEY, RETIRED_KEY].map(|pem| RsaPrivateKey::from_pkcs8_pem(pem).unwrap()));
    let key = if key_pem == CURRENT_KEY { current } else { retired };
    STANDARD.encode(key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message)).unwrap())
}

/// A notification as WeChat Pay sends one: `plaintext` encrypted into its resource.
fn notification(plaintext: &[u8], api_v3_key: &[u8]) -> Vec<u8> {
    let nonce = "fdasflkja484";
    let aad = "transaction";
    let cipher = Aes256Gcm::new_from_slice(api_v3_key).unwrap();
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(nonce.as_bytes()), Payload { msg: plaintext, aad: aad.as_bytes() })
        .unwrap();
    serde_json::json!({
        "id": "EV-2018022511223320873",
        "create_time": "2015-05-20T13:29:35+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": STANDARD.encode(ciphertext),
            "associated_data": aad,
            "nonce": nonce,
        }
    })
    .to_string()
    .into_bytes()
}

fn signed(body: Vec<u8>, timestamp: i64, key_pem: &str, serial: &str) -> Request {
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let message = [format!("{timestamp}\n{nonce}\n").as_bytes(), &body, b"\n"].concat();
    let signature = rsa_sign(key_pem, &message);
    Request::new(
        &[
            ("Wechatpay-Timestamp", &timestamp.to_string()),
            ("Wechatpay-Nonce", nonce),
            ("Wechatpay-Signature", &signature),
            ("Wechatpay-Serial", serial),
        ],
        &body,
    )
}

struct WechatPay(Verifier);

/// The scheme for the HTTP suite.
pub fn http_schemes() -> Vec<HttpScheme> {
    vec![HttpScheme::new("wechatpay", config(""), WechatPay(verifier(&config(""))))]
}

impl Scheme for WechatPay {
    fn verifier(&self) -> &Verifier {
        &self.0
    }

    fn has_timestamp(&self) -> bool {
        true
    }

    fn sign(&self, plaintext: &[u8], timestamp: i64, signer: &Signer) -> Request {
        let body = notification(plaintext, API_V3_KEY.as_bytes());
        match signer {
            Signer::Current => signed(body, timestamp, CURRENT_KEY, CURRENT_SERIAL),
            Signer::Retired => signed(body, timestamp, RETIRED_KEY, RETIRED_SERIAL),
            // A stranger has no platform key: it signs with another key under the platform's
            // serial, or encrypts with another API v3 key (caught only after the signature).
            Signer::Stranger(key) if key[0] % 2 == 0 => signed(body, timestamp, RETIRED_KEY, CURRENT_SERIAL),
            Signer::Stranger(key) => {
                signed(notification(plaintext, key), timestamp, CURRENT_KEY, CURRENT_SERIAL)
            }
        }
    }

    fn forge(&self, valid: &Request, random: &[u8]) -> Request {
        valid.clone().with_header("Wechatpay-Signature", STANDARD.encode(random))
    }

    fn misencode(&self, valid: &Request) -> Request {
        let signature = STANDARD.decode(valid.header("Wechatpay-Signature")).unwrap();
        valid.clone().with_header("Wechatpay-Signature", hex::encode(signature))
    }
}

#[test]
fn a_notification_verifies_and_its_resource_is_decrypted() {
    let verifier = verifier(&config(""));
    let plaintext =
        br#"{"out_trade_no":"1217752501201407033233368018","trade_state":"SUCCESS","amount":{"total":100}}"#;
    let request = signed(notification(plaintext, API_V3_KEY.as_bytes()), NOW, CURRENT_KEY, CURRENT_SERIAL);
    let verified = request.verify(&verifier, NOW).unwrap();
    assert_eq!(verified.body(), plaintext);
    assert!(verified.was_decrypted());
    assert_eq!(verified.signed_body(), request.body.as_slice());
    assert_eq!(verified.timestamp(), Some(NOW));
}

#[test]
fn the_serial_is_matched_with_or_without_leading_zeros_in_either_case() {
    let verifier = verifier(&config(""));
    for serial in
        [CURRENT_SERIAL, "0F3C2A17D5E4B6019A7C3E2D1F0A9B8C7D6E5F4", &CURRENT_SERIAL.to_ascii_lowercase()]
    {
        let request = signed(notification(b"{}", API_V3_KEY.as_bytes()), NOW, CURRENT_KEY, serial);
        assert!(request.verify(&verifier, NOW).is_ok(), "{serial}");
    }
}

#[test]
fn an_unknown_serial_is_named() {
    let request = signed(notification(b"{}", API_V3_KEY.as_bytes()), NOW, RETIRED_KEY, RETIRED_SERIAL);
    let rejection = request.verify(&verifier(&config("")), NOW).unwrap_err();
    assert_eq!(rejection, Rejection::UnknownKey { serial: RETIRED_SERIAL.into() });
    let odd = request.with_header("Wechatpay-Serial", "../../etc/passwd");
    assert_eq!(odd.verify(&verifier(&config("")), NOW).unwrap_err().kind(), "malformed_header");
}

#[test]
fn a_platform_public_key_is_selected_by_its_id() {
    let key = RsaPrivateKey::from_pkcs8_pem(RETIRED_KEY).unwrap();
    let pem =
        rsa::pkcs8::EncodePublicKey::to_public_key_pem(&key.to_public_key(), rsa::pkcs8::LineEnding::LF)
            .unwrap();
    let verifier = verifier(&config(&format!(
        "platform_public_keys = [{{ id = \"PUB_KEY_ID_0114232134912410000000000000\", pem = '''{pem}''' }}]"
    )));
    let request = signed(
        notification(b"{}", API_V3_KEY.as_bytes()),
        NOW,
        RETIRED_KEY,
        "PUB_KEY_ID_0114232134912410000000000000",
    );
    assert!(request.verify(&verifier, NOW).is_ok());
}

#[test]
fn a_rotated_api_v3_key_still_decrypts() {
    let new_key = "vutsrqponmlkjihgfedcba9876543210";
    let verifier = verifier(
        &config("").replace(&format!("[\"{API_V3_KEY}\"]"), &format!("[\"{new_key}\", \"{API_V3_KEY}\"]")),
    );
    for key in [new_key, API_V3_KEY] {
        let request = signed(notification(b"{\"n\":1}", key.as_bytes()), NOW, CURRENT_KEY, CURRENT_SERIAL);
        assert_eq!(request.verify(&verifier, NOW).unwrap().body(), b"{\"n\":1}");
    }
}

#[test]
fn a_genuine_signature_over_a_bad_resource_is_still_rejected() {
    let verifier = verifier(&config(""));
    let wrong_key =
        signed(notification(b"{}", b"another merchant's api v3 key..."), NOW, CURRENT_KEY, CURRENT_SERIAL);
    assert_eq!(wrong_key.verify(&verifier, NOW).unwrap_err(), Rejection::DecryptionFailed);
    let body = String::from_utf8(notification(b"{}", API_V3_KEY.as_bytes())).unwrap();
    for (from, to) in [
        ("AEAD_AES_256_GCM", "AEAD_AES_128_GCM"),
        ("fdasflkja484", "short"),
        ("\"resource\"", "\"resources\""),
    ] {
        let request = signed(body.replace(from, to).into_bytes(), NOW, CURRENT_KEY, CURRENT_SERIAL);
        assert_eq!(request.verify(&verifier, NOW).unwrap_err().kind(), "malformed_body", "{to}");
    }
    let plain = signed(b"{\"resource\":{}}".to_vec(), NOW, CURRENT_KEY, CURRENT_SERIAL);
    assert_eq!(plain.verify(&verifier, NOW).unwrap_err().kind(), "malformed_body");
}

#[test]
fn another_signature_type_is_refused() {
    let request = signed(notification(b"{}", API_V3_KEY.as_bytes()), NOW, CURRENT_KEY, CURRENT_SERIAL)
        .with_header("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3");
    assert_eq!(request.verify(&verifier(&config("")), NOW).unwrap_err().kind(), "malformed_header");
}

#[test]
fn a_weak_certificate_is_refused_at_load() {
    let config: fanout_gateway::SourceConfig = fanout_config::from_toml_str(&format!(
        "verify = \"wechatpay_v3\"\napi_v3_keys = [\"{API_V3_KEY}\"]\nplatform_certificates = ['''{CURRENT_CERT}''', '''{WEAK_CERT}''']"
    ))
    .unwrap();
    let error = Verifier::from_config("wechatpay", &config).unwrap_err();
    assert_eq!(error.key(), "platform_certificates[1]");
    assert_eq!(error.to_string(), "source \"wechatpay\": `platform_certificates[1]`");
    assert!(format!("{error:?}").contains("1024 bits"), "{error:?}");
}

proptest! {
    // An RSA signature costs milliseconds even optimised, and most cases make one or two: half
    // the other schemes' cases still give every attack a few tries.
    #![proptest_config(ProptestConfig { cases: 128, ..super::cases() })]

    #[test]
    fn attacks_are_all_rejected(plaintext in bodies(), attack in super::attacks()) {
        genuine_accepted_attacked_rejected(&WechatPay(verifier(&config(""))), &plaintext, &attack)?;
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..super::cases() })]

    #[test]
    fn any_plaintext_comes_back_as_it_was(plaintext in bodies()) {
        let verifier = verifier(&config(""));
        let request = signed(notification(&plaintext, API_V3_KEY.as_bytes()), NOW, CURRENT_KEY, CURRENT_SERIAL);
        let verified = request.verify(&verifier, NOW).unwrap();
        prop_assert_eq!(verified.body(), plaintext.as_slice());
    }
}
