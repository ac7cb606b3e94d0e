//! Two instances on one state topic with locked doors (users, and HTTPS with certificates of a
//! private CA): the follower checks the caller itself, then forwards a write, credentials
//! included, to the elected leader over HTTPS, trusting the CA it was given.

use std::time::Duration;

use fanout_registry_server::{RegistryConfig, RegistrySecurity, RegistryServer, Role, TlsFiles};
use fanout_testkit::{wait_until, Kafka, Registry, TestCertificates};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn leader(http: &reqwest::Client, url: &str) -> Option<String> {
    let answer =
        http.get(format!("{url}/v1/metadata/leader")).basic_auth("reader", Some("r-pw")).send().await;
    let body: Value = answer.ok()?.json().await.ok()?;
    body["leader"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_writes_with_the_callers_credentials() -> TestResult {
    let kafka = Kafka::connect().await?;
    let certs = TestCertificates::new()?;
    let security = RegistrySecurity {
        users: vec![
            Registry::user("reader", Role::Read, "r-pw")?,
            Registry::user("writer", Role::Write, "w-pw")?,
        ],
        tls: Some(TlsFiles {
            cert_path: certs.cert_path(),
            key_path: certs.key_path(),
            ca_cert_path: Some(certs.ca_path()),
        }),
    };
    let first = Registry::start_secured(&kafka, security.clone()).await?;
    let config = RegistryConfig::new(kafka.bootstrap(), "127.0.0.1:0".parse()?)
        .with_topic(first.state_topic())
        .with_security(security);
    let second = RegistryServer::start(config).await?;
    let urls = [first.url().to_owned(), second.url()];
    assert!(urls.iter().all(|u| u.starts_with("https://")), "{urls:?}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca_path())?)?;
    let http =
        reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(15)).build()?;
    wait_until(Duration::from_secs(30), "both instances to name the same leader", || {
        let (http, urls) = (http.clone(), urls.clone());
        async move {
            let (a, b) = (leader(&http, &urls[0]).await, leader(&http, &urls[1]).await);
            Ok(a.is_some() && a == b)
        }
    })
    .await?;
    let leads = leader(&http, &urls[0]).await.ok_or("no leader")?;
    let follower = urls.iter().find(|u| **u != leads).ok_or("both lead")?;

    let register = |user: &str, password: &str| {
        http.post(format!("{follower}/subjects/forwarded-value/versions"))
            .basic_auth(user, Some(password))
            .json(&json!({"schema": r#"{"type":"record","name":"F","fields":[{"name":"a","type":"int"}]}"#}))
            .send()
    };
    let answer = register("writer", "w-pw").await?;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let id = answer.json::<Value>().await?["id"].as_u64().ok_or("no id")?;
    let served: Value = http
        .get(format!("{leads}/schemas/ids/{id}"))
        .basic_auth("reader", Some("r-pw"))
        .send()
        .await?
        .json()
        .await?;
    assert!(served["schema"].as_str().is_some_and(|s| s.contains("\"F\"")), "{served}");

    // The follower refuses by itself what the leader would refuse.
    let refused = register("reader", "r-pw").await?;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await?["error_code"], 40301);
    assert_eq!(register("writer", "wrong").await?.status(), 401);

    second.shutdown().await?;
    first.stop().await?;
    Ok(())
}
