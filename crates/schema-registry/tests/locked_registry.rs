//! The client against the built-in registry with its doors locked: HTTPS with a certificate of a
//! test CA, and basic-auth users with the read and the write role. Every refusal is a typed
//! error that says who was refused and what to do.

use fanout_core::Secret;
use fanout_registry_server::{RegistrySecurity, Role, TlsFiles};
use fanout_schema_registry::{RegistryError, RegistrySettings, SchemaRegistryClient, UnregisteredSchema};
use fanout_testkit::{Registry, TestCertificates};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const SCHEMA: &str =
    r#"{"type":"record","name":"Locked","namespace":"fanout.test","fields":[{"name":"a","type":"string"}]}"#;

#[tokio::test]
async fn users_roles_and_tls_together() -> TestResult {
    let certs = TestCertificates::new()?;
    let security = RegistrySecurity {
        users: vec![
            Registry::user("reader", Role::Read, "reader-pw")?,
            Registry::user("writer", Role::Write, "writer-pw")?,
        ],
        tls: Some(TlsFiles { cert_path: certs.cert_path(), key_path: certs.key_path(), ca_cert_path: None }),
    };
    let kafka = fanout_testkit::Kafka::connect().await?;
    let registry = Registry::start_secured(&kafka, security).await?;
    assert!(registry.url().starts_with("https://"), "{}", registry.url());
    let settings = |user: Option<(&str, &str)>| RegistrySettings {
        username: user.map(|(name, _)| name.to_owned()),
        password: user.map(|(_, password)| Secret::new(password)),
        ca_cert_path: Some(certs.ca_path()),
        max_retries: 0,
        ..registry.settings()
    };
    let client = |user| SchemaRegistryClient::new(settings(user));
    let schema = UnregisteredSchema::avro(SCHEMA);

    // The write role registers; the read role reads what was registered, and looks it up.
    let id = client(Some(("writer", "writer-pw")))?.register("locked-value", &schema).await?;
    let reader = client(Some(("reader", "reader-pw")))?;
    assert_eq!(reader.schema_by_id(id).await?.schema, SCHEMA);
    assert_eq!(reader.lookup("locked-value", &schema).await?.id, id);
    assert_eq!(reader.latest("locked-value").await?.id, id);

    // ... but may not register.
    let other = UnregisteredSchema::avro(r#""string""#);
    let refused = reader.register("locked-value", &other).await.expect_err("a reader registered");
    assert!(matches!(refused, RegistryError::Forbidden { .. }), "{refused:?}");
    let said = refused.to_string();
    assert!(
        said.starts_with(
            "user 'reader' lacks the write role needed to register a schema under subject locked-value"
        ),
        "{said}"
    );

    // A wrong password, and no credentials at all.
    let wrong = client(Some(("writer", "not-the-password")))?.subjects().await.expect_err("wrong password");
    assert!(matches!(wrong, RegistryError::Unauthorized { .. }), "{wrong:?}");
    assert!(
        wrong.to_string().starts_with("the schema registry refused the credentials for user 'writer'"),
        "{wrong}"
    );
    let anonymous = client(None)?.subjects().await.expect_err("no credentials");
    assert!(anonymous.to_string().contains("none are configured"), "{anonymous}");

    // Without the test CA, the certificate is not trusted: at once, not after retries.
    let untrusting = SchemaRegistryClient::new(RegistrySettings {
        ca_cert_path: None,
        max_retries: 3,
        ..settings(Some(("writer", "writer-pw")))
    })?;
    let untrusted = untrusting.subjects().await.expect_err("an unknown CA was trusted");
    assert!(matches!(untrusted, RegistryError::Tls { .. }), "{untrusted:?}");
    assert!(
        untrusted.to_string().contains("certificate is not trusted")
            && untrusted.to_string().contains("ca_cert_path"),
        "{untrusted}"
    );
    assert_eq!(untrusting.http_requests(), 1, "a TLS failure is not retried");

    // On the wire: Confluent's statuses, codes and challenge.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca_path())?)?;
    let http = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).build()?;
    let url = format!("{}/subjects", registry.url());
    let answer = http.get(&url).send().await?;
    assert_eq!(answer.status(), 401);
    let challenge =
        answer.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"fanout-registry\""));
    let body: serde_json::Value = answer.json().await?;
    assert_eq!(body["error_code"], 40101, "{body}");
    let answer = http.get(&url).basic_auth("writer", Some("nope")).send().await?;
    assert_eq!(answer.status(), 401);
    let answer = http
        .delete(format!("{}/subjects/locked-value", registry.url()))
        .basic_auth("reader", Some("reader-pw"))
        .send()
        .await?;
    assert_eq!(answer.status(), 403);
    let body: serde_json::Value = answer.json().await?;
    assert_eq!(body["error_code"], 40301, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("'reader'"), "{body}");
    // Plain HTTP to the HTTPS port is not served.
    let plain = reqwest::get(registry.url().replacen("https://", "http://", 1) + "/subjects").await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true), "plain HTTP was served");

    registry.stop().await?;
    Ok(())
}
