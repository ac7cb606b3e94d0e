//! The fan-out of the mission, end to end against the real broker and the real Prometheus:
//! rewards, pinning, stats and a fourth consumer, the audit crate `fanout new consumer` wrote
//! (`examples/audit`, as README's "Add a consumer" shows it), all apply every event of one topic, while the upstream
//! publishes with the same code and config it uses with three consumers; Prometheus scrapes
//! every consumer's `fanout_consumed_total`.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{ensure, Context};
use audit::AuditSettings;
use fanout_events::{Category, PostPublished};
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use fanout_service::{ScrapeTarget, ServiceConfig, Settings};
use tokio::sync::watch;

// ---- The test. ----

fn service_config<S: Settings>(
    settings: S,
    bootstrap: &str,
    registry: &str,
    dir: &std::path::Path,
) -> ServiceConfig<S> {
    let mut config = ServiceConfig::new(settings);
    config.consumer.name = fanout_testkit::unique_name(S::SERVICE);
    config.consumer.kafka.bootstrap = bootstrap.to_owned();
    config.registry.urls = vec![registry.to_owned()];
    config.consumer.store.url = format!("sqlite:{}", dir.join(format!("{}.db", S::SERVICE)).display());
    config.consumer.http.listen = "127.0.0.1:0".to_owned();
    config
}

fn prometheus_url() -> String {
    std::env::var("FANOUT_TEST_PROMETHEUS").unwrap_or_else(|_| "http://127.0.0.1:9090".to_owned())
}

fn targets_dir() -> std::path::PathBuf {
    std::env::var("FANOUT_STACK_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| fanout_testkit::stack::repo_root().join(".stack"))
        .join("prometheus/targets")
}

/// The consumers whose `fanout_consumed_total{outcome="ok"}` Prometheus has scraped as non-zero
/// for `topic`.
async fn scraped(http: &reqwest::Client, topic: &str) -> anyhow::Result<BTreeSet<String>> {
    let query = format!("fanout_consumed_total{{topic=\"{topic}\",outcome=\"ok\"}} > 0");
    let body: serde_json::Value = http
        .get(format!("{}/api/v1/query", prometheus_url()))
        .query(&[("query", query.as_str())])
        .send()
        .await
        .with_context(|| {
            format!("no Prometheus at {} (start it with `scripts/stack up prometheus`)", prometheus_url())
        })?
        .json()
        .await?;
    ensure!(body["status"] == "success", "Prometheus query failed: {body}");
    Ok(body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|series| series["metric"]["consumer"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_consumer_applies_every_event_beside_the_others_and_prometheus_scrapes_all(
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    // Fail at once, naming the missing part, rather than after the whole run.
    http.get(format!("{}/-/ready", prometheus_url())).send().await.with_context(|| {
        format!("no Prometheus at {} (start it with `scripts/stack up prometheus`)", prometheus_url())
    })?;
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("fanout-e2e", 3).await?;
    let registry = fanout_testkit::Registry::start(&kafka).await?;
    let dir = tempfile::tempdir()?;
    let (bootstrap, url) = (kafka.bootstrap(), registry.url().to_owned());

    let rewards = fanout_rewards::RewardsSettings { topic: topic.name().to_owned(), ..Default::default() };
    let pinning = fanout_pinning::PinningSettings { topic: topic.name().to_owned(), ..Default::default() };
    let stats = fanout_stats::StatsSettings { topic: topic.name().to_owned() };
    let services = vec![
        fanout_rewards::build(service_config(rewards, bootstrap, &url, dir.path())).await?,
        fanout_pinning::build(service_config(pinning, bootstrap, &url, dir.path())).await?,
        fanout_stats::build(service_config(stats, bootstrap, &url, dir.path())).await?,
        audit::build(service_config(
            AuditSettings { topic: topic.name().to_owned() },
            bootstrap,
            &url,
            dir.path(),
        ))
        .await?,
    ];
    let names: BTreeSet<String> = services.iter().map(|s| s.name().to_owned()).collect();
    let audit_pool = services[3].pool().clone();
    // One process, one metrics registry: one scrape target covers all four consumers.
    let target = ScrapeTarget::write(&targets_dir(), "fanout-e2e", services[0].http_addr())?;
    let (stop, stopped) = watch::channel(false);
    let mut running = tokio::task::JoinSet::new();
    for service in services {
        let mut stopped = stopped.clone();
        running.spawn(service.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }

    // The upstream: the same publisher code and config as with three consumers, or none.
    let mut config = PublisherConfig::new("post-service");
    config.kafka.bootstrap = bootstrap.to_owned();
    config.registry.urls = vec![url.clone()];
    let publisher = Publisher::new(config)?;
    let total = 400_i64;
    let events: Vec<PostPublished> = (0..total)
        .map(|i| PostPublished {
            post_id: 50_000 + i,
            user_id: i % 17 + 1,
            category: Category::ALL[(i % 4) as usize],
            city: ["Chengdu", "Wuhan"][(i % 2) as usize].to_owned(),
            title: format!("post {i}"),
            published_at: 1_764_000_000_000 + i,
        })
        .collect();
    for result in publisher.publish_all(&events, &PublishOptions::new().topic(topic.name())).await {
        result?;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let families = prometheus::gather();
        let applied = |name: &str| -> f64 {
            families
                .iter()
                .filter(|f| f.name() == "fanout_consumed_total")
                .flat_map(|f| f.get_metric().iter())
                .filter(|m| {
                    let has =
                        |k: &str, v: &str| m.get_label().iter().any(|l| l.name() == k && l.value() == v);
                    has("consumer", name) && has("topic", topic.name()) && has("outcome", "ok")
                })
                .map(|m| m.get_counter().get_value())
                .sum()
        };
        if names.iter().all(|n| applied(n) >= total as f64) {
            for name in &names {
                assert_eq!(applied(name), total as f64, "{name} applied every event exactly once");
            }
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not every consumer applied all {total} events in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&audit_pool).await?;
    assert_eq!(audited, total, "the fourth consumer's own table has one row per event");

    // Prometheus scrapes every 5 s and re-reads its targets every 2 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = scraped(&http, topic.name()).await?;
        if names.is_subset(&seen) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "Prometheus scraped fanout_consumed_total > 0 only for {seen:?}, not all of {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let _ = stop.send(true);
    while let Some(done) = running.join_next().await {
        done??;
    }
    drop(target);
    for name in &names {
        kafka.delete_consumer(topic.name(), name).await;
    }
    Ok(())
}
