//! `fanout schedule show|cancel|reschedule` with the real binary against the real broker: each
//! answers with the entry's state as the schedule partition records it (no scheduler runs here,
//! so nothing is delivered and every answer is about a pending entry or one these commands
//! ended).

use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context};
use fanout_events::{Category, PostPublished};
use fanout_producer::{PublishOptions, Publisher};
use fanout_testkit::service::Stack;
use serde_json::Value;

/// Runs `fanout schedule ARGS… --schedule-topic T --bootstrap B` and parses its one JSON line.
async fn schedule(bootstrap: &str, topic: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .arg("schedule")
        .args(args)
        .args(["--schedule-topic", topic, "--bootstrap", bootstrap])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "fanout schedule {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).with_context(|| format!("not one JSON line: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_cancel_and_reschedule_answer_with_the_entrys_state() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let schedule_topic = kafka.topic("cli-schedule", 3).await?;
    let target = kafka.topic("cli-schedule-target", 1).await?;
    let mut config = stack.publisher_config("cli-schedule-test");
    config.schedule_topic = schedule_topic.name().to_owned();
    let publisher = Publisher::new(config)?;
    let post = PostPublished {
        post_id: 9,
        user_id: 1,
        category: Category::Job,
        city: "Berlin".into(),
        title: "later".into(),
        published_at: 1_764_000_000_000,
    };
    let to = PublishOptions::new().topic(target.name());
    let (bootstrap, topic) = (kafka.bootstrap(), schedule_topic.name());
    let first = publisher.publish_at(&post, SystemTime::now() + Duration::from_secs(3_600), &to).await?;
    let second = publisher.publish_at(&post, SystemTime::now() + Duration::from_secs(3_600), &to).await?;
    let (first_id, second_id) = (first.schedule_id.to_string(), second.schedule_id.to_string());

    let shown = schedule(bootstrap, topic, &["show", &first_id]).await?;
    assert_eq!(shown["state"], "pending", "{shown}");
    assert_eq!(shown["topic"], target.name(), "{shown}");

    let cancelled = schedule(bootstrap, topic, &["cancel", &first_id]).await?;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert!(cancelled.get("too_late").is_none(), "{cancelled}");
    let again = schedule(bootstrap, topic, &["reschedule", &first_id, "--after", "10m"]).await?;
    assert_eq!((&again["state"], &again["too_late"]), (&"cancelled".into(), &true.into()), "{again}");

    let moved = schedule(bootstrap, topic, &["reschedule", &second_id, "--after", "2h"]).await?;
    assert_eq!(moved["state"], "rescheduled", "{moved}");
    let next = moved["rescheduled_as"].as_str().context("the new id")?.to_owned();
    let old = schedule(bootstrap, topic, &["show", &second_id]).await?;
    assert_eq!((&old["state"], &old["rescheduled_as"]), (&"cancelled".into(), &next.clone().into()), "{old}");
    let new = schedule(bootstrap, topic, &["show", &next]).await?;
    assert_eq!(new["state"], "pending", "{new}");
    assert_eq!(new["deliver_at"], moved["deliver_at"], "{new}");

    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["schedule", "show", "not-an-id", "--schedule-topic", topic, "--bootstrap", bootstrap])
        .output()
        .await?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("PARTITION:UUID"), "the error names the format");

    stack.stop().await
}
