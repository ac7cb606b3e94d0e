//! `fanout gateway rejects` shows what the gateway refused, with the reason, filtered as asked.

use std::{process::Command, time::Duration};

use anyhow::Context;
use fanout_gateway::{Gateway, GatewayConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_are_listed_with_their_reason_and_filtered() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let registry = fanout_testkit::Registry::start(&kafka).await?;
    let database = fanout_testkit::Postgres::connect().await?.database().await?;
    let topic = kafka.future_topic("rejects-cli-pay");
    let rejects = kafka.future_topic("rejects-cli");
    let mut config: GatewayConfig = fanout_config::from_toml_str(&format!(
        r#"
        listen = "127.0.0.1:0"
        rejects_topic = "{}"
        [http]
        listen = "127.0.0.1:0"
        [sources.pay]
        verify = "github"
        secrets = ["s3cr3t"]
        topic = "{}"
        correlation_id = "body:/id"
        max_body_bytes = 64
        "#,
        rejects.name(),
        topic.name()
    ))?;
    config.kafka.bootstrap = kafka.bootstrap().to_owned();
    config.registry = registry.settings();
    config.store.url = database.url();
    let gateway = Gateway::start(config).await?;
    let url = format!("http://{}/callbacks/pay", gateway.callbacks_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(gateway.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let forged = client.post(&url).header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)));
    assert_eq!(forged.body(r#"{"id":"forged"}"#).send().await?.status().as_u16(), 401);
    assert_eq!(client.post(&url).body("x".repeat(100)).send().await?.status().as_u16(), 413);
    kafka.read_at_least(rejects.name(), 2, Duration::from_secs(10)).await?;

    let rejects_cli = |extra: &[&str]| -> anyhow::Result<Vec<serde_json::Value>> {
        let output = Command::new(env!("CARGO_BIN_EXE_fanout"))
            .args(["gateway", "rejects", "--bootstrap", kafka.bootstrap(), "--topic", rejects.name()])
            .args(extra)
            .output()
            .context("running fanout gateway rejects")?;
        anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout)?.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
    };
    let all = rejects_cli(&["--body"])?;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["source"], "pay");
    assert_eq!(all[0]["reason"], "bad_signature");
    assert_eq!(all[0]["detail"], "no signature matches");
    assert_eq!(all[0]["body"], r#"{"id":"forged"}"#);
    assert_eq!(all[1]["reason"], "body_too_large");
    assert_eq!(all[1]["body_bytes"], 100);
    let only = rejects_cli(&["--reason", "body_too_large"])?;
    assert_eq!(only.len(), 1);
    assert!(only[0].get("body").is_none(), "no body unless asked");
    assert!(rejects_cli(&["--source", "other"])?.is_empty());
    assert!(rejects_cli(&["--since", "2999-01-01T00:00:00Z"])?.is_empty());

    let _ = stop.send(());
    running.await??;
    registry.stop().await?;
    Ok(())
}
