//! The ecosystem's own code as the peer: requests signed by the official Python
//! `standardwebhooks` package, and WeChat Pay callbacks made with Python's `cryptography` the way
//! WeChat Pay makes them, must verify here; tampered, they must not.
//!
//! Python and both packages come from the workspace's `.venv` (`make .venv/.installed`, from
//! tests/interop/requirements.txt). Without it these tests fail, saying so: they never skip.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use fanout_gateway::{Rejection, SourceConfig, Verifier};
use serde::Deserialize;
use serde_json::json;

/// The workspace's virtualenv Python, or a failure that says how to make it.
fn python() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = workspace.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: these tests need the Python peers of tests/interop/requirements.txt; \
         make the virtualenv with `make .venv/.installed` at the workspace root",
        python.display()
    );
    python
}

/// Runs `tests/peers/<script>` with `input` as JSON on stdin and parses its JSON output.
fn peer<T: for<'de> Deserialize<'de>>(script: &str, input: &serde_json::Value) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(script);
    let mut child = Command::new(python())
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{script} failed ({}); if a module is missing, run `make .venv/.installed` again: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn verifier(toml: &str) -> Verifier {
    let config: SourceConfig = fanout_config::from_toml_str(toml).unwrap();
    Verifier::from_config("peer", &config).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().try_into().unwrap()
}

/// Bodies whose bytes are easy to get wrong: non-ASCII, whitespace, newlines, escapes.
fn bodies() -> Vec<String> {
    vec![
        r#"{"type":"invoice.paid","data":{"id":"in_1"}}"#.to_owned(),
        "{\n  \"type\": \"contact.created\",\n  \"name\": \"Zoë Łukasz 王芳\"\n}\n".to_owned(),
        r#"{"emoji":"🎉","escaped":"\u00e9\"\\","empty":{}}"#.to_owned(),
        String::new(),
    ]
}

#[derive(Deserialize)]
struct StandardWebhooksPeer {
    secret: String,
    public_key: String,
    signed: Vec<Signatures>,
}

#[derive(Deserialize)]
struct Signatures {
    v1: String,
    v1a: String,
}

#[test]
fn requests_signed_by_the_standardwebhooks_package_verify() {
    let timestamp = now();
    let bodies = bodies();
    let messages: Vec<_> =
        bodies.iter().enumerate().map(|(i, body)| json!({"id": format!("msg_{i}"), "body": body})).collect();
    let peer: StandardWebhooksPeer =
        peer("standard_webhooks.py", &json!({"timestamp": timestamp, "messages": messages}));
    let verifier = verifier(&format!(
        "verify = \"standard_webhooks\"\nsecrets = [\"{}\"]\npublic_keys = [\"{}\"]",
        peer.secret, peer.public_key
    ));

    for (i, (body, signatures)) in bodies.iter().zip(&peer.signed).enumerate() {
        for signature in [&signatures.v1, &signatures.v1a, &format!("{} {}", signatures.v1a, signatures.v1)] {
            let headers = [
                ("webhook-id", format!("msg_{i}")),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature.clone()),
            ];
            let verified = verifier.verify(&headers[..], body.as_bytes(), SystemTime::now());
            assert!(verified.is_ok(), "{signature} over {body:?}: {verified:?}");

            let tampered = format!("{body} ");
            let rejection =
                verifier.verify(&headers[..], tampered.as_bytes(), SystemTime::now()).unwrap_err();
            assert_eq!(rejection, Rejection::BadSignature, "{signature}");
            let other_id = [("webhook-id", format!("msg_{i}x")), headers[1].clone(), headers[2].clone()];
            let rejection = verifier.verify(&other_id[..], body.as_bytes(), SystemTime::now()).unwrap_err();
            assert_eq!(rejection, Rejection::BadSignature, "{signature}");
        }
    }
}

#[derive(Deserialize)]
struct WechatPayPeer {
    certificate: String,
    api_v3_key: String,
    requests: Vec<PeerRequest>,
}

#[derive(Deserialize)]
struct PeerRequest {
    headers: BTreeMap<String, String>,
    body: String,
}

#[test]
fn callbacks_made_as_wechat_pay_makes_them_verify_and_decrypt() {
    let timestamp = now();
    let plaintexts = [
        json!({"mchid": "1230000109", "out_trade_no": "order-1", "trade_state": "SUCCESS", "amount": {"total": 100, "currency": "CNY"}})
            .to_string(),
        json!({"out_trade_no": "order-2", "trade_state_desc": "支付成功", "attach": "🎫"}).to_string(),
    ];
    let peer: WechatPayPeer =
        peer("wechatpay.py", &json!({"timestamp": timestamp, "plaintexts": plaintexts}));
    let platform = verifier(&format!(
        "verify = \"wechatpay_v3\"\napi_v3_keys = [\"{}\"]\nplatform_certificates = ['''{}''']",
        peer.api_v3_key, peer.certificate
    ));

    for (plaintext, request) in plaintexts.iter().zip(&peer.requests) {
        let headers: Vec<_> = request.headers.clone().into_iter().collect();
        let verified = platform.verify(&headers, request.body.as_bytes(), SystemTime::now()).unwrap();
        assert_eq!(verified.body(), plaintext.as_bytes());
        assert!(verified.was_decrypted());
        assert_eq!(verified.signed_body(), request.body.as_bytes());

        let tampered = request.body.replacen("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESZ", 1);
        let rejection = platform.verify(&headers, tampered.as_bytes(), SystemTime::now()).unwrap_err();
        assert_eq!(rejection, Rejection::BadSignature);
        let mut other_serial = headers.clone();
        other_serial.iter_mut().find(|(name, _)| name == "Wechatpay-Serial").unwrap().1 =
            "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into();
        let rejection =
            platform.verify(&other_serial, request.body.as_bytes(), SystemTime::now()).unwrap_err();
        assert_eq!(rejection.kind(), "unknown_key");
    }

    // Another merchant's API v3 key: the signature is the platform's, the resource is not ours.
    let other_key = verifier(&format!(
        "verify = \"wechatpay_v3\"\napi_v3_keys = [\"{}\"]\nplatform_certificates = ['''{}''']",
        "x".repeat(32),
        peer.certificate
    ));
    let request = &peer.requests[0];
    let headers: Vec<_> = request.headers.clone().into_iter().collect();
    let rejection = other_key.verify(&headers, request.body.as_bytes(), SystemTime::now()).unwrap_err();
    assert_eq!(rejection, Rejection::DecryptionFailed);
}
