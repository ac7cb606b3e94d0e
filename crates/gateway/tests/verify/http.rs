//! The attacks again, through a running gateway on the real broker, registry and PostgreSQL,
//! signed at the wall clock's time: each scheme's genuine requests are accepted and published,
//! no attacked one gets a 2xx (a replay of a published one would get "duplicate", which is a 2xx
//! too, so that counts as accepted here), and each source's topic holds exactly the genuine ones.

use std::time::{Duration, SystemTime};

use fanout_gateway::{Gateway, GatewayConfig};
use fanout_testkit::{Kafka, Registry, TestTopic};
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::{attacked, attacks, bodies, HttpScheme, Request, Signer};

/// Cases per scheme: every attack a few times, a few seconds in all (WeChat Pay's RSA signatures
/// cost milliseconds each).
const CASES: u32 = 48;

fn now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

async fn post(client: &reqwest::Client, url: &str, request: &Request) -> anyhow::Result<(u16, String)> {
    let mut builder = client.post(url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let response = builder.send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[test]
fn through_the_gateway_no_attack_is_accepted_and_only_genuine_callbacks_are_published() -> anyhow::Result<()>
{
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let schemes: Vec<HttpScheme> = [
        super::github::http_schemes(),
        super::hmac::http_schemes(),
        super::standard_webhooks::http_schemes(),
        super::stripe::http_schemes(),
        super::wechatpay::http_schemes(),
    ]
    .into_iter()
    .flatten()
    .collect();

    let (kafka, registry, database) = runtime.block_on(async {
        let kafka = Kafka::connect().await?;
        let registry = Registry::start(&kafka).await?;
        let database = fanout_testkit::Postgres::connect().await?.database().await?;
        anyhow::Ok((kafka, registry, database))
    })?;
    let topics: Vec<TestTopic> =
        schemes.iter().map(|s| kafka.future_topic(&format!("attacks-{}", s.name))).collect();
    let rejects = kafka.future_topic("attacks-rejects");
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\nrejects_topic = \"{}\"\npartitions = 1\n[http]\nlisten = \"127.0.0.1:0\"\n",
        rejects.name()
    );
    for (scheme, topic) in schemes.iter().zip(&topics) {
        text.push_str(&format!(
            "[sources.{}]\n{}\ntopic = \"{}\"\nevent_id = \"body:/id\"\ncorrelation_id = \"body:/id\"\n",
            scheme.name,
            scheme.toml,
            topic.name()
        ));
    }
    let mut config: GatewayConfig = fanout_config::from_toml_str(&text)?;
    config.kafka.bootstrap = kafka.bootstrap().to_owned();
    config.registry = registry.settings();
    config.store.url = database.url();
    let gateway = runtime.block_on(Gateway::start(config))?;
    let addr = gateway.callbacks_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = runtime.spawn(gateway.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    for (scheme, topic) in schemes.iter().zip(&topics) {
        let url = format!("http://{addr}/callbacks/{}", scheme.name);
        let accepted = std::cell::Cell::new(0u32);
        let attacked_count = std::cell::Cell::new(0u32);
        let mut runner =
            TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
        runner
            .run(&(bodies(), attacks()), |(body, attack)| {
                let now = now();
                let valid = scheme.scheme.sign(&body, now, &Signer::Current);
                let (status, answer) = runtime
                    .block_on(post(&client, &url, &valid))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if status != 200 {
                    return Err(TestCaseError::fail(format!(
                        "{}: genuine request answered {status} {answer}",
                        scheme.name
                    )));
                }
                if answer.contains("accepted") {
                    accepted.set(accepted.get() + 1);
                }
                let Some(request) = attacked(scheme.scheme.as_ref(), &valid, &body, &attack, now) else {
                    return Ok(());
                };
                attacked_count.set(attacked_count.get() + 1);
                let (status, answer) = runtime
                    .block_on(post(&client, &url, &request))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if (200..300).contains(&status) || !matches!(status, 401 | 413) {
                    return Err(TestCaseError::fail(format!(
                        "{}: {attack:?} answered {status} {answer}",
                        scheme.name
                    )));
                }
                Ok(())
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (accepted, attacked_count) = (accepted.get() as usize, attacked_count.get());
        assert!(attacked_count >= CASES / 2, "{}: only {attacked_count} attacks applied", scheme.name);
        let records =
            runtime.block_on(kafka.read_at_least(topic.name(), accepted, Duration::from_secs(10)))?;
        assert_eq!(records.len(), accepted, "{}: only the genuine callbacks are published", scheme.name);
    }

    let _ = stop.send(());
    runtime.block_on(running)??;
    runtime.block_on(registry.stop())?;
    drop((topics, rejects, database));
    Ok(())
}
