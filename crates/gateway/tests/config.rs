//! A source's configuration is checked when the gateway loads it: every mistake is named by
//! source and key, and no secret is ever printed.

use std::collections::BTreeMap;

use fanout_gateway::{ConfigError, Problem, SourceConfig, Verifier};
use serde::Deserialize;

/// The gateway's file as far as this crate knows it: sources by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read through Debug only
struct Gateway {
    sources: BTreeMap<String, SourceConfig>,
}

const CERT: &str = include_str!("data/wechatpay-current.cert.pem");

fn load(toml: &str) -> Result<Vec<Verifier>, String> {
    let gateway: Gateway = fanout_config::from_toml_str(toml).map_err(|error| error.to_string())?;
    gateway
        .sources
        .iter()
        .map(|(name, config)| Verifier::from_config(name, config))
        .collect::<Result<_, ConfigError>>()
        .map_err(|error| format!("{error:?}"))
}

fn refused(source: &str) -> ConfigError {
    let config: SourceConfig = fanout_config::from_toml_str(source).unwrap();
    Verifier::from_config("payments", &config).unwrap_err()
}

#[test]
fn a_source_without_verify_is_refused_by_name() {
    let error = load("[sources.orders]\nverify = \"none\"\n[sources.payments]\nsecrets = [\"whsec_x\"]\n")
        .unwrap_err();
    assert!(error.contains("sources.payments.verify"), "{error}");
}

#[test]
fn unknown_keys_and_schemes_are_refused_by_name() {
    let error = load("[sources.payments]\nverify = \"stripe\"\nsecret = [\"whsec_x\"]\n").unwrap_err();
    assert!(error.contains("unknown field `secret`") && error.contains("sources.payments"), "{error}");
    let error = load("[sources.payments]\nverify = \"paypal\"\n").unwrap_err();
    assert!(error.contains("paypal") && error.contains("sources.payments.verify"), "{error}");
}

#[test]
fn none_must_be_explicit_and_then_takes_nothing_but_a_size_limit() {
    assert_eq!(load("[sources.internal]\nverify = \"none\"\nmax_body_bytes = 100\n").unwrap().len(), 1);
    let error = refused("verify = \"none\"\nsecrets = [\"whsec_x\"]");
    assert_eq!(error.key(), "secrets");
    assert!(matches!(error.problem(), Problem::NotApplicable { .. }));
    assert_eq!(format!("{error:?}"), "source \"payments\": `secrets`: not a setting of verify = \"none\"");
}

#[test]
fn each_mistake_names_the_source_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("verify = \"stripe\"", "secrets", "missing; verify = \"stripe\" needs it"),
        ("verify = \"stripe\"\nsecrets = []", "secrets", "empty"),
        ("verify = \"stripe\"\nsecrets = [\"sk_live_123\"]", "secrets[0]", "does not start with `whsec_`"),
        ("verify = \"github\"\nsecrets = [\"s\"]\ntolerance_secs = 60", "tolerance_secs", "not a setting of verify = \"github\""),
        ("verify = \"github\"\nsecrets = [\"s\", \"\"]", "secrets[1]", "empty"),
        (
            "verify = \"standard_webhooks\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"whsec_not*base64\"]",
            "secrets[1]",
            "not valid base64: invalid character at offset 3",
        ),
        ("verify = \"standard_webhooks\"\nsecrets = [\"whsec_c2hvcnQ=\"]", "secrets[0]", "5 bytes where 24 are needed"),
        ("verify = \"standard_webhooks\"\npublic_keys = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]", "public_keys[0]", "does not start with `whpk_`"),
        (
            "verify = \"standard_webhooks\"\npublic_keys = [\"whpk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
            "public_keys[0]",
            "24 bytes where 32 are needed",
        ),
        ("verify = \"standard_webhooks\"", "secrets", "missing; verify = \"standard_webhooks\" needs it"),
        ("verify = \"wechatpay_v3\"\napi_v3_keys = [\"short\"]\nplatform_certificates = [\"x\"]", "api_v3_keys[0]", "5 bytes where 32 are needed"),
        (
            "verify = \"wechatpay_v3\"\napi_v3_keys = [\"0123456789abcdefghijklmnopqrstuv\"]\nplatform_certificates = [\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\"]",
            "platform_certificates[0]",
            "not a PEM X.509 certificate with an RSA key",
        ),
        ("verify = \"wechatpay_v3\"\napi_v3_keys = [\"0123456789abcdefghijklmnopqrstuv\"]", "platform_certificates", "missing"),
        (
            "verify = \"wechatpay_v3\"\napi_v3_keys = [\"0123456789abcdefghijklmnopqrstuv\"]\nplatform_certificates = [\"-----BEGIN PUBLIC KEY-----\\nMIIB\\n-----END PUBLIC KEY-----\"]",
            "platform_certificates[0]",
            "a PEM PUBLIC KEY, not a CERTIFICATE",
        ),
        (
            "verify = \"wechatpay_v3\"\napi_v3_keys = [\"0123456789abcdefghijklmnopqrstuv\"]\nplatform_public_keys = [{ id = \"PUB_KEY_ID_1\", pem = \"-----BEGIN PUBLIC KEY-----\\nMIIB\\n-----END PUBLIC KEY-----\" }]",
            "platform_public_keys[0].pem",
            "not a valid RSA public key",
        ),
        ("verify = \"stripe\"\nsecrets = [\"whsec_x\"]\napi_v3_keys = [\"k\"]", "api_v3_keys", "not a setting of verify = \"stripe\""),
        ("verify = \"stripe\"\nsecrets = [\"whsec_x\"]\nmax_body_bytes = 0", "max_body_bytes", "must be more than 0"),
        ("verify = \"hmac\"\nsecrets = [\"s\"]", "signature_header", "missing"),
        ("verify = \"hmac\"\nsecrets = [\"s\"]\nsignature_header = \"a\"\nsignature_field = \"/b\"", "signature_field", "cannot be set together with `signature_header`"),
        ("verify = \"hmac\"\nsecrets = [\"s\"]\nsignature_header = \"a b\"", "signature_header", "not a valid header name"),
        ("verify = \"hmac\"\nsecrets = [\"s\"]\nsignature_field = \"b\"\nsigned_payload = \"{field:/c}\"", "signature_field", "is not a JSON pointer"),
        ("verify = \"hmac\"\nsecrets = [\"s\"]\nsignature_field = \"/b\"", "signed_payload", "missing"),
        ("verify = \"hmac\"\nsecrets = [\"s\"]\nsignature_header = \"a\"\ntolerance_secs = 60", "tolerance_secs", "applies only with"),
        ("verify = \"hmac\"\nsecrets = [\"s\"]\nsignature_header = \"a\"\ntimestamp_header = \"t\"", "signed_payload", "not signed"),
        ("verify = \"hmac\"\nsecrets = [\"zz\"]\nsecret_encoding = \"hex\"\nsignature_header = \"a\"", "secrets[0]", "not valid hex"),
    ];
    for (config, key, problem) in cases {
        let error = refused(config);
        let printed = format!("{error:?}");
        assert_eq!(error.source_name(), "payments", "{config}");
        assert_eq!(error.key(), *key, "{config}: {printed}");
        assert!(printed.contains(problem), "{config}: {printed}");
        assert!(printed.starts_with(&format!("source \"payments\": `{key}`: ")), "{printed}");
    }
}

#[test]
fn two_certificates_with_one_serial_are_refused() {
    let error = refused(&format!(
        "verify = \"wechatpay_v3\"\napi_v3_keys = [\"0123456789abcdefghijklmnopqrstuv\"]\nplatform_certificates = ['''{CERT}''', '''{CERT}''']"
    ));
    assert_eq!(error.key(), "platform_certificates[1]");
    assert!(matches!(error.problem(), Problem::DuplicateSerial { .. }), "{error:?}");
}

#[test]
fn secrets_never_print() {
    let secrets = [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "0123456789abcdefghijklmnopqrstuv",
        "It's a Secret to Everybody",
    ];
    let configs = [
        format!("verify = \"standard_webhooks\"\nsecrets = [\"{}\"]", secrets[0]),
        format!(
            "verify = \"wechatpay_v3\"\napi_v3_keys = [\"{}\"]\nplatform_certificates = ['''{CERT}''']",
            secrets[1]
        ),
        format!("verify = \"hmac\"\nsecrets = [\"{}\"]\nsignature_header = \"x-sig\"", secrets[2]),
    ];
    for (config, secret) in configs.iter().zip(secrets) {
        let parsed: SourceConfig = fanout_config::from_toml_str(config).unwrap();
        let verifier = Verifier::from_config("payments", &parsed).unwrap();
        for printed in [format!("{parsed:?}"), format!("{verifier:?}"), format!("{verifier:#?}")] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
    // A secret that fails to decode is not quoted either, not even the character at fault.
    let error =
        refused("verify = \"standard_webhooks\"\nsecrets = [\"whsec_abc%defghijklmnopqrstuvwxyz0123\"]");
    assert!(!format!("{error:?}{error}").contains('%'), "{error:?}");
}

/// Fuzzing: the shipped `gateway.toml`, damaged byte by byte (`fanout_testkit::fuzz`), through
/// the loader, the gateway's checks and every source's verifier: nothing panics and every
/// refusal says something. `FANOUT_FUZZ_COUNT` sets the number of cases.
#[test]
fn a_damaged_gateway_file_never_panics_and_every_refusal_says_why() {
    use fanout_gateway::GatewayConfig;
    use fanout_testkit::fuzz;

    let seed = include_str!("../gateway.toml").to_owned();
    let shipped: GatewayConfig = fanout_config::from_toml_str(&seed).unwrap();
    assert!(shipped.validate().is_ok() && !shipped.sources.is_empty());
    let mut runner = proptest::test_runner::TestRunner::new(fuzz::config(fuzz::DEFAULT_CASES / 2));
    runner
        .run(&fuzz::mutated_text(vec![seed]), |text| {
            match fanout_config::from_toml_str::<GatewayConfig>(&text) {
                Err(error) => assert!(!error.to_string().trim().is_empty()),
                Ok(config) => {
                    if let Err(reason) = config.validate() {
                        assert!(!reason.trim().is_empty());
                    }
                    for (name, source) in &config.sources {
                        if let Err(error) = source.verifier(name) {
                            assert!(!error.to_string().trim().is_empty() && !error.key().is_empty());
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
