//! A finished run is kept for `keep_finished_runs_secs`, then forgotten: deleted from the state
//! topic (a tombstone, so restores and memory follow recent runs only) and from memory, so a new
//! request for its key starts it afresh.

mod common;

use std::time::Duration;

use common::{starts, InProcess, TestWorkers};
use fanout_flows::signals::{run_key, RunRequested};
use fanout_kafka::TopicRead;
use fanout_producer::{PublishOptions, Publisher};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{service::Stack, wait_until};

const FLOW: &str = r#"
name = "daily"
[[tasks]]
name = "a"
command = ["true"]
[[tasks]]
name = "b"
after = ["a"]
command = ["true"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finished_run_is_forgotten_after_its_retention_and_a_running_one_is_kept() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let engine = InProcess::start_tuned(&stack, FLOW, |config| config.keep_finished_runs_secs = 1).await?;
    let topics = engine.config.topics();
    let publisher = Publisher::new(stack.publisher_config("flow-retention-test"))?;
    let requested = PublishOptions::new().topic(&topics.requested);
    let request = |run: &str| RunRequested {
        flow: "daily".into(),
        run: run.into(),
        retry_task: None,
        cascade: false,
        requested_by: "test".into(),
    };
    publisher
        .publish_all(&[request("done"), request("running")], &requested)
        .await
        .into_iter()
        .try_for_each(|r| r.map(|_| ()))?;

    // `done` runs to its end; `running` never gets past `a`.
    let mut workers = TestWorkers::new(&stack, &topics)?;
    let serde = AvroSerde::from_urls(&[stack.registry_url()])?;
    wait_until(Duration::from_secs(30), "both runs' first task started", || async {
        Ok(starts(&kafka, &topics.started, &serde).await?.len() >= 2)
    })
    .await?;
    workers.answer_only(|start| start.run == "done").await?;
    wait_until(Duration::from_secs(30), "done's second task started", || async {
        Ok(starts(&kafka, &topics.started, &serde).await?.iter().any(|s| s.run == "done" && s.task == "b"))
    })
    .await?;
    workers.answer_only(|start| start.run == "done").await?;

    // Over, then forgotten: a tombstone for its key in the state topic.
    let mut read = kafka.client_config();
    read.set("isolation.level", "read_committed");
    let (done_key, running_key) = (run_key("daily", "done"), run_key("daily", "running"));
    wait_until(Duration::from_secs(30), "done's state deleted", || async {
        let records = TopicRead::new(&engine.config.state_topic).read(&read).await?;
        Ok(records.iter().any(|r| r.key.as_deref() == Some(done_key.as_slice()) && r.payload.is_none()))
    })
    .await?;
    engine
        .wait_metrics(&[
            ("fanout_flow_runs{state=\"succeeded\"}", 0.0),
            ("fanout_flow_runs{state=\"running\"}", 1.0),
        ])
        .await?;
    let records = TopicRead::new(&engine.config.state_topic).read(&read).await?;
    assert!(
        !records.iter().any(|r| r.key.as_deref() == Some(running_key.as_slice()) && r.payload.is_none()),
        "a run still running was deleted"
    );

    // Forgotten in memory too: asked for again, it starts afresh; the running one does not.
    publisher
        .publish_all(&[request("done"), request("running")], &requested)
        .await
        .into_iter()
        .try_for_each(|r| r.map(|_| ()))?;
    wait_until(Duration::from_secs(30), "done to start again", || async {
        Ok(starts(&kafka, &topics.started, &serde)
            .await?
            .iter()
            .filter(|s| s.run == "done" && s.task == "a")
            .count()
            == 2)
    })
    .await?;
    engine.wait_caught_up(&kafka).await?;
    let running_starts =
        starts(&kafka, &topics.started, &serde).await?.iter().filter(|s| s.run == "running").count();
    assert_eq!(running_starts, 1, "the running run, requested again, started again");

    engine.stop(&kafka).await?;
    stack.stop().await
}
