//! The trigger engine against the real broker and registry: runs of a flow with a fan-in and a
//! fan-out, the test playing the workers. Every (run, task) starts exactly once, never before all
//! its upstreams of the same run succeeded, although a third of the successes are reported twice
//! and each batch of them in reverse order.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{starts, InProcess};
use fanout_flows::signals::{RunRequested, TaskSucceeded};
use fanout_producer::{PublishOptions, Publisher};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::service::Stack;

mod common;

const FLOW: &str = r#"
name = "nightly"
[[tasks]]
name = "extract-orders"
command = ["true"]
[[tasks]]
name = "extract-users"
command = ["true"]
[[tasks]]
name = "join"
after = ["extract-orders", "extract-users"]
command = ["true"]
[[tasks]]
name = "report"
after = ["join"]
command = ["true"]
[[tasks]]
name = "stats"
after = ["join"]
command = ["true"]
[[tasks]]
name = "export"
after = ["join"]
command = ["true"]
"#;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_task_of_every_run_starts_once_after_its_upstreams_despite_duplicates_and_reordering(
) -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let engine = InProcess::start(&stack, FLOW).await?;
    let topics = engine.config.topics();
    let publisher = Publisher::new(stack.publisher_config("flow-test-worker"))?;
    let serde = AvroSerde::from_urls(&[stack.registry_url()])?;
    let runs: Vec<String> = (1..=30).map(|day| format!("2026-11-{day:02}")).collect();
    let requested = PublishOptions::new().topic(&topics.requested);
    for run in &runs {
        let request = RunRequested {
            flow: "nightly".into(),
            run: run.clone(),
            retry_task: None,
            cascade: false,
            requested_by: "test".into(),
        };
        publisher.publish_with(&request, &requested).await?;
        if run.ends_with('7') {
            publisher.publish_with(&request, &requested).await?; // a run requested twice
        }
    }

    // The workers: every start seen is reported a success; a third of them twice, each batch in
    // reverse order.
    let succeeded = PublishOptions::new().topic(&topics.succeeded);
    let mut reported: HashSet<(String, String, i32)> = HashSet::new();
    let mut finished_at: HashMap<(String, String), i64> = HashMap::new();
    let expected = runs.len() * 6;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    for round in 0.. {
        let seen = starts(&kafka, &topics.started, &serde).await?;
        if seen.len() >= expected {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "only {} of {expected} tasks started within 90 s",
            seen.len()
        );
        let mut batch = Vec::new();
        for start in &seen {
            if reported.insert((start.run.clone(), start.task.clone(), start.attempt)) {
                let at = now_ms();
                finished_at.insert((start.run.clone(), start.task.clone()), at);
                batch.push(TaskSucceeded {
                    flow: start.flow.clone(),
                    run: start.run.clone(),
                    task: start.task.clone(),
                    attempt: start.attempt,
                    started_at: at,
                    finished_at: at,
                    worker: "test".into(),
                    output: None,
                });
            }
        }
        batch.reverse();
        for (n, success) in batch.iter().enumerate() {
            publisher.publish_with(success, &succeeded).await?;
            if (n + round) % 3 == 0 {
                publisher.publish_with(success, &succeeded).await?;
            }
        }
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await; // the next look, not a sync
        }
    }
    engine.wait_caught_up(&kafka).await?;

    let seen = starts(&kafka, &topics.started, &serde).await?;
    let mut once: HashMap<(String, String), usize> = HashMap::new();
    for start in &seen {
        *once.entry((start.run.clone(), start.task.clone())).or_default() += 1;
    }
    assert_eq!(once.len(), expected, "every task of every run started");
    let twice: Vec<_> = once.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "started more than once: {twice:?}");
    let upstreams: HashMap<&str, &[&str]> = HashMap::from([
        ("join", ["extract-orders", "extract-users"].as_slice()),
        ("report", ["join"].as_slice()),
        ("stats", ["join"].as_slice()),
        ("export", ["join"].as_slice()),
    ]);
    for start in &seen {
        for upstream in upstreams.get(start.task.as_str()).copied().unwrap_or_default() {
            let done = finished_at[&(start.run.clone(), (*upstream).to_owned())];
            assert!(
                start.started_at >= done,
                "{} of {} started {} ms before its upstream {upstream} succeeded",
                start.task,
                start.run,
                done - start.started_at
            );
        }
    }

    engine.stop(&kafka).await?;
    stack.stop().await
}
