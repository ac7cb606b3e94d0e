//! The broker is killed (`kill -9`) and restarted while publishers run: every event acknowledged
//! `Ok` is in Kafka exactly once, and none acknowledged `Ok` is missing.
//!
//! This test kills the shared broker, so it lives alone in its own test binary.

use std::{collections::HashMap, time::Duration};

use anyhow::ensure;
use fanout_core::headers;
use fanout_events::{Category, PostPublished};
use fanout_producer::{PublishOptions, Publisher};
use fanout_testkit::stack::{broker_pid, kill_broker, stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_broker_kill_exactly_once() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("broker-kill", 3).await?;
    let registry = fanout_testkit::Registry::start(&kafka).await?;
    let mut config = fanout_producer::PublisherConfig::new("broker-kill-test");
    config.kafka.bootstrap = kafka.bootstrap().to_owned();
    config.registry = registry.settings();
    // Long enough to ride out the restart below.
    config.producer.delivery_timeout_ms = 120_000;
    let publisher = Publisher::new(config)?;
    let to = PublishOptions::new().topic(topic.name());
    publisher.publish_with(&event(0, 0), &to).await?;

    let per_task = 400;
    let tasks: Vec<_> = (1..=8)
        .map(|task| {
            let publisher = publisher.clone();
            let to = to.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for seq in 0..per_task {
                    let result = publisher.publish_with(&event(task, seq), &to).await;
                    outcomes.push(result.map(|d| d.event_id.to_string()).map_err(|e| e.to_string()));
                }
                outcomes
            })
        })
        .collect();

    // Kill the broker once publishing is well under way, then bring it back.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fanout_producer_metrics_ok() < 300.0 {
        ensure!(std::time::Instant::now() < deadline, "publishing did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = kill_broker().await?;
    let up = tokio::task::spawn_blocking(|| stack(&["up", "kafka"])).await??;
    ensure!(up.contains("ready"), "broker did not come back: {up}");
    ensure!(broker_pid()? != pid, "the broker was not restarted");

    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for task in tasks {
        for outcome in task.await? {
            match outcome {
                Ok(id) => acknowledged.push(id),
                Err(_) => failed += 1,
            }
        }
    }
    eprintln!("acknowledged {} events, {failed} failed during the outage", acknowledged.len());

    let records = kafka.read_at_least(topic.name(), acknowledged.len() + 1, Duration::from_secs(120)).await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in &records {
        *seen.entry(record.header(headers::ID).unwrap_or_default().to_owned()).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "events written twice: {duplicated:?}");
    for id in &acknowledged {
        assert_eq!(seen.get(id), Some(&1), "acknowledged event {id} missing");
    }
    Ok(())
}

fn fanout_producer_metrics_ok() -> f64 {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == "fanout_produced_total")
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "outcome" && l.value() == "ok"))
        .map(|m| m.get_counter().get_value())
        .sum()
}

fn event(task: i64, seq: i64) -> PostPublished {
    PostPublished {
        post_id: task,
        user_id: task,
        category: Category::Job,
        city: "Berlin".into(),
        title: format!("{task}/{seq}"),
        published_at: seq,
    }
}
