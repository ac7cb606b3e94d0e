//! kill -9 of the engine in the middle of many runs: restarted, it restores the runs' join state
//! from the state topic and carries on; every task of every run starts exactly once.

mod common;

use std::{
    collections::HashMap,
    process::Stdio,
    time::{Duration, Instant},
};

use common::{starts, InProcess, TestWorkers};
use fanout_flows::{signals::RunRequested, EngineConfig};
use fanout_producer::{PublishOptions, Publisher};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::service::Stack;
use tokio::process::{Child, Command};

/// How many runs (six tasks each).
fn runs() -> usize {
    std::env::var("FANOUT_TEST_FLOW_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000)
}

fn engine(config: &EngineConfig) -> anyhow::Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_fanout-flows"))
        .env("FANOUT_NAME", &config.name)
        // Static membership, as production should run it: the restarted engine takes its
        // partitions back at once and its producers abort the killed one's open transactions.
        .env("FANOUT_INSTANCE_ID", "kill-test")
        .env("FANOUT_FLOWS", &config.flows)
        .env("FANOUT_TOPIC_PREFIX", &config.topic_prefix)
        .env("FANOUT_PARTITIONS", "3")
        .env("FANOUT_STATE_TOPIC", &config.state_topic)
        .env("FANOUT_SCHEDULE_TOPIC", &config.schedule_topic)
        .env("FANOUT_KAFKA__BOOTSTRAP", &config.kafka.bootstrap)
        .env("FANOUT_REGISTRY__URLS", config.registry.urls.join(","))
        .env("FANOUT_HTTP__LISTEN", "127.0.0.1:0")
        .env("FANOUT_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_engine_restarts_and_starts_every_task_of_every_run_once() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    // The in-process engine only creates the topics and the flow file; it stops at once, and
    // the engine under test runs as a process of its own, to be killed.
    let setup = InProcess::start(&stack, include_str!("../../../flows/nightly.toml")).await?;
    let config = setup.config.clone();
    let topics = config.topics();
    let setup = setup.pause().await?;

    let runs = runs();
    let publisher = Publisher::new(stack.publisher_config("flow-kill-test"))?;
    let requests: Vec<RunRequested> = (0..runs)
        .map(|n| RunRequested {
            flow: "nightly".into(),
            run: format!("run-{n:05}"),
            retry_task: None,
            cascade: false,
            requested_by: "test".into(),
        })
        .collect();
    for sent in publisher.publish_all(&requests, &PublishOptions::new().topic(&topics.requested)).await {
        sent?;
    }

    let expected = runs * 6;
    let mut workers = TestWorkers::new(&stack, &topics)?;
    let mut child = engine(&config)?;
    // Kill it once a third of the tasks started: mid-run for most runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 0.. {
        let seen = workers.answer(round, false).await?;
        if seen >= expected / 3 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {seen} of {expected} started before the kill");
        tokio::time::sleep(Duration::from_millis(50)).await; // the next look, not a sync
    }
    child.start_kill()?;
    child.wait().await?;
    let mut child = engine(&config)?;
    workers.answer_until(expected, Duration::from_secs(180), false).await?;
    setup.wait_caught_up(&kafka).await?;

    let serde = AvroSerde::from_urls(&[stack.registry_url()])?;
    let seen = starts(&kafka, &topics.started, &serde).await?;
    let mut once: HashMap<(String, String), usize> = HashMap::new();
    for start in &seen {
        *once.entry((start.run.clone(), start.task.clone())).or_default() += 1;
    }
    let twice = once.values().filter(|n| **n > 1).count();
    assert_eq!(once.len(), expected, "every task of every run started");
    assert_eq!(twice, 0, "{twice} tasks started more than once");

    child.start_kill()?;
    child.wait().await?;
    setup.stop(&kafka).await?;
    stack.stop().await
}
