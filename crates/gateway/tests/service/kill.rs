//! kill -9 of the gateway process under load, and a restart: every callback that got a 2xx is on
//! the topic, every one that did not is retried by the provider and lands, and none is on the
//! topic under two event ids.

use std::{
    collections::{HashMap, HashSet},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::common::{callback, post, TestGateway, SECRET};
use fanout_core::headers;
use fanout_gateway::callback_event_id;

const PROVIDERS: usize = 8;
const PER_PROVIDER: usize = 100;

/// The gateway binary on `config`, logging to `log`.
fn spawn(config: &std::path::Path, log: &std::path::Path) -> anyhow::Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_fanout-gateway"))
        .args(["--config", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log)?)
        .spawn()?)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_under_load_loses_nothing_and_publishes_nothing_twice() -> anyhow::Result<()> {
    // The in-process gateway only prepares the topic, schema and database; the one under test is
    // the binary, on fixed ports so the providers find it again after the restart.
    let mut setup = TestGateway::start(|c| crate::common::rename_source(c, "pay-kill")).await?;
    setup.stop().await?;
    let (callbacks_port, http_port) = (free_port()?, free_port()?);
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("gateway.toml");
    let source = &setup.config.sources["pay-kill"];
    std::fs::write(
        &config_path,
        format!(
            r#"
listen = "127.0.0.1:{callbacks_port}"
rejects_topic = "{rejects}"
[http]
listen = "127.0.0.1:{http_port}"
[kafka]
bootstrap = "{bootstrap}"
[registry]
urls = ["{registry}"]
[store]
url = "{store}"
{source}
"#,
            rejects = setup.config.rejects_topic,
            bootstrap = setup.config.kafka.bootstrap,
            registry = setup.config.registry.urls[0],
            store = setup.config.store.url,
            source = crate::common::pay_source("pay-kill", &source.topic),
        ),
    )?;
    let log = dir.path().join("gateway.log");
    let ready = format!("http://127.0.0.1:{http_port}/readyz");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let wait_ready = |client: reqwest::Client, ready: String| async move {
        fanout_testkit::wait_until(Duration::from_secs(30), "the gateway ready", || {
            let (client, ready) = (client.clone(), ready.clone());
            async move { Ok(client.get(&ready).send().await.is_ok_and(|r| r.status().is_success())) }
        })
        .await
    };
    let mut child = spawn(&config_path, &log)?;
    wait_ready(client.clone(), ready.clone()).await?;

    // The providers: each sends its callbacks one after another, retrying one (signed anew)
    // until it gets a 2xx, as payment providers do.
    let url = format!("http://127.0.0.1:{callbacks_port}/callbacks/pay-kill");
    let accepted = Arc::new(AtomicUsize::new(0));
    let providers: Vec<_> = (0..PROVIDERS)
        .map(|p| {
            let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in 0..PER_PROVIDER {
                    let id = format!("evt-{p}-{n}");
                    let deadline = Instant::now() + Duration::from_secs(90);
                    loop {
                        let (headers, body) = callback(&id, &format!("order-{p}-{n}"), SECRET);
                        match post(&client, &url, &headers, body).await {
                            Ok((200, _, answer)) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                                answers.push((id, answer));
                                break;
                            }
                            Ok(_) | Err(_) if Instant::now() < deadline => {
                                tokio::time::sleep(Duration::from_millis(100)).await
                            }
                            Ok((status, _, answer)) => anyhow::bail!("{id}: {status} {answer} for 90 s"),
                            Err(error) => anyhow::bail!("{id}: {error} for 90 s"),
                        }
                    }
                }
                Ok(answers)
            })
        })
        .collect();

    // kill -9 once a quarter got through, then start it again.
    fanout_testkit::wait_until(Duration::from_secs(60), "a quarter of the callbacks accepted", || {
        let done = accepted.load(Ordering::Relaxed) >= PROVIDERS * PER_PROVIDER / 4;
        async move { Ok(done) }
    })
    .await?;
    child.kill()?;
    child.wait()?;
    let at_kill = accepted.load(Ordering::Relaxed);
    let mut child = spawn(&config_path, &log)?;
    wait_ready(client.clone(), ready).await?;

    let mut answers = HashMap::new();
    for provider in providers {
        for (id, answer) in provider.await?? {
            answers.insert(id, answer);
        }
    }
    child.kill()?;
    child.wait()?;
    assert_eq!(answers.len(), PROVIDERS * PER_PROVIDER, "every callback got its 2xx");
    assert!(at_kill < answers.len(), "the kill came under load ({at_kill} accepted then)");

    let records = setup
        .kafka
        .read_at_least(&setup.config.sources["pay-kill"].topic, answers.len(), Duration::from_secs(30))
        .await?;
    let mut on_topic: HashMap<String, usize> = HashMap::new();
    for record in &records {
        let id = record.headers.iter().find(|(n, _)| n == headers::ID).and_then(|(_, v)| v.clone());
        *on_topic.entry(String::from_utf8_lossy(&id.unwrap_or_default()).into_owned()).or_default() += 1;
    }
    let expected: HashSet<String> =
        answers.keys().map(|id| callback_event_id("pay-kill", id).to_string()).collect();
    let missing = expected.iter().filter(|id| !on_topic.contains_key(*id)).count();
    let unknown = on_topic.keys().filter(|id| !expected.contains(*id)).count();
    let copies = records.len() - on_topic.len();
    eprintln!(
        "{} callbacks, {at_kill} accepted before the kill, {} records, {copies} second copies (same ce_id)",
        answers.len(),
        records.len()
    );
    assert_eq!((missing, unknown), (0, 0), "every callback on the topic under its one event id");
    // A second copy can only come from a request in flight at the kill (published, the process
    // killed before its 200): at most one per provider.
    assert!(copies <= PROVIDERS, "{copies} second copies for {PROVIDERS} requests in flight at the kill");
    setup.finish().await
}
