//! The read API and `/metrics` behind `[http] bearer_token_file`: refused without the token,
//! served with it; the probes stay open. A Prometheus configured as the local stack's
//! (`deploy/local/prometheus/prometheus.yml`, its `fanout-secured` job reading the same token
//! file) scrapes it, because the service writes its target where that job looks.

use std::{process::Stdio, time::Duration};

use anyhow::Context;
use fanout_rewards::RewardsConfig;
use fanout_testkit::{
    service::{sqlite, Running, Stack},
    wait_until,
};

const TOKEN: &str = "metrics-scrape-t0k";

#[tokio::test(flavor = "multi_thread")]
async fn the_read_api_and_metrics_need_the_token_and_prometheus_scrapes_with_it() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("rewards-bearer", 1).await?;
    let (dir, url) = sqlite("rewards-bearer")?;
    let token_file = dir.path().join("scrape-token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let targets = dir.path().join("targets");
    let mut config = RewardsConfig::default();
    stack.configure(&mut config, &url);
    config.service.topic = topic.name().to_owned();
    config.consumer.http.bearer_token_file = Some(token_file.clone());
    config.prometheus_targets_dir = Some(targets.clone());
    let running = Running::start(fanout_rewards::build(config).await?);
    let http = reqwest::Client::new();

    for path in ["/metrics", "/v1/users/1/beans"] {
        let refused = http.get(running.url(path)).send().await?;
        assert_eq!(refused.status(), 401, "{path} without the token");
        let body: serde_json::Value = refused.json().await?;
        assert!(body["error"].as_str().is_some_and(|e| e.contains("Bearer")), "{body}");
        let wrong = http.get(running.url(path)).bearer_auth("not-it").send().await?;
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
    let metrics = http.get(running.url("/metrics")).bearer_auth(TOKEN).send().await?;
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await?.contains("fanout_consumed_total"));
    // Served, and answered by the read API itself: no such user.
    assert_eq!(http.get(running.url("/v1/users/1/beans")).bearer_auth(TOKEN).send().await?.status(), 404);
    assert_eq!(http.get(running.url("/healthz")).send().await?.status(), 200);
    assert_ne!(http.get(running.url("/readyz")).send().await?.status(), 401);

    // A Prometheus of the local stack's configuration, scraping every second.
    let target = targets.join("secured").join(format!("{}-{}.json", running.name, running.http.port()));
    anyhow::ensure!(target.is_file(), "no scrape target at {}", target.display());
    let template = include_str!("../../../../deploy/local/prometheus/prometheus.yml");
    let rendered = template
        .replace("@TARGETS_DIR@", &targets.display().to_string())
        .replace("@SCRAPE_TOKEN_FILE@", &token_file.display().to_string())
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("refresh_interval: 2s", "refresh_interval: 1s");
    let prometheus_yml = dir.path().join("prometheus.yml");
    std::fs::write(&prometheus_yml, rendered)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", prometheus_yml.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting prometheus (scripts/stack up prometheus installs it)")?;
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=up%7Bjob%3D%22fanout-secured%22%2Cservice%3D%22{}%22%7D",
        running.name
    );
    wait_until(Duration::from_secs(30), "Prometheus to scrape the service with the token", || {
        let request = http.get(&query).send();
        async move {
            let Ok(answer) = request.await else { return Ok(false) };
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            Ok(body["data"]["result"][0]["value"][1] == "1")
        }
    })
    .await?;

    let name = running.name.clone();
    running.stop().await?;
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}
