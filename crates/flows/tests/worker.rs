//! Workers run the real commands the engine starts: a dependant runs only after its upstream's
//! command finished; a failing command reports its exit status and the tail of its stderr and
//! blocks its dependant; `retry` of the failed task (once fixed) runs it and then the dependant.

mod common;

use std::{path::Path, time::Duration};

use common::{InProcess, InProcessWorker};
use fanout_flows::signals::{RunRequested, TaskFailed};
use fanout_kafka::TopicRead;
use fanout_producer::{PublishOptions, Publisher};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{service::Stack, wait_until};

/// `prepare` takes a second; `report` runs after it; `flaky` fails until the file `fixed`
/// exists; `after-flaky` runs after it.
fn flow(out: &Path) -> String {
    let out = out.display();
    format!(
        r#"
name = "ops"
[[tasks]]
name = "prepare"
command = ["sh", "-c", "sleep 1; date +%s%N > \"$OUT/prepare\""]
env = {{ OUT = "{out}" }}
[[tasks]]
name = "report"
after = ["prepare"]
command = ["sh", "-c", "test -e \"$OUT/prepare\" && date +%s%N > \"$OUT/report\""]
env = {{ OUT = "{out}" }}
[[tasks]]
name = "flaky"
after = ["prepare"]
command = ["sh", "-c", "test -e \"$OUT/fixed\" || {{ echo \"boom: input missing\" >&2; exit 3; }}; touch \"$OUT/flaky\""]
env = {{ OUT = "{out}" }}
[[tasks]]
name = "after-flaky"
after = ["flaky"]
command = ["sh", "-c", "touch \"$OUT/after-flaky\""]
env = {{ OUT = "{out}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_run_the_commands_failures_block_and_a_retry_resumes() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let out = tempfile::tempdir()?;
    let engine = InProcess::start(&stack, &flow(out.path())).await?;
    let topics = engine.config.topics();

    let worker = InProcessWorker::start(&engine, 4)?;

    let publisher = Publisher::new(stack.publisher_config("flow-test"))?;
    let requested = PublishOptions::new().topic(&topics.requested);
    let request = |retry_task: Option<&str>| RunRequested {
        flow: "ops".into(),
        run: "2026-11-30".into(),
        retry_task: retry_task.map(str::to_owned),
        cascade: false,
        requested_by: "test".into(),
    };
    publisher.publish_with(&request(None), &requested).await?;

    let file = |name: &str| out.path().join(name);
    wait_until(Duration::from_secs(60), "report to run after prepare", || async {
        Ok(file("report").exists())
    })
    .await?;
    let stamp =
        |name: &str| -> anyhow::Result<u128> { Ok(std::fs::read_to_string(file(name))?.trim().parse()?) };
    assert!(stamp("report")? >= stamp("prepare")?, "report ran before prepare finished");

    // flaky failed: its signal says how, and after-flaky does not run.
    let serde = AvroSerde::from_urls(&[stack.registry_url()])?;
    let mut read = kafka.client_config();
    read.set("isolation.level", "read_committed");
    wait_until(Duration::from_secs(30), "flaky's failure reported", || async {
        Ok(!TopicRead::new(&topics.failed).read(&read).await?.is_empty())
    })
    .await?;
    let mut failures: Vec<TaskFailed> = Vec::new();
    for record in TopicRead::new(&topics.failed).read(&read).await? {
        failures.push(serde.decode::<TaskFailed>(&record.payload.unwrap_or_default()).await?);
    }
    let failure = &failures[0];
    assert_eq!((failure.task.as_str(), failure.exit_status), ("flaky", Some(3)));
    assert!(failure.stderr_tail.contains("boom: input missing"), "{failure:?}");
    assert!(failure.reason.contains("exited"), "{failure:?}");
    engine.wait_caught_up(&kafka).await?;
    assert!(!file("after-flaky").exists(), "a task ran although its upstream failed");
    let runs = |running: f64, succeeded: f64, failed: f64| {
        [
            ("fanout_flow_runs{state=\"running\"}", running),
            ("fanout_flow_runs{state=\"succeeded\"}", succeeded),
            ("fanout_flow_runs{state=\"failed\"}", failed),
        ]
    };
    // The run is over, failed: flaky failed for good, after-flaky blocked.
    engine.wait_metrics(&runs(0.0, 0.0, 1.0)).await?;

    // Fixed, and retried: flaky runs again, then its dependant.
    std::fs::write(file("fixed"), "")?;
    publisher.publish_with(&request(Some("flaky")), &requested).await?;
    wait_until(Duration::from_secs(60), "after-flaky to run after the retry", || async {
        Ok(file("after-flaky").exists())
    })
    .await?;
    assert!(file("flaky").exists());
    engine.wait_metrics(&runs(0.0, 1.0, 0.0)).await?;

    worker.stop(&kafka).await?;
    engine.stop(&kafka).await?;
    stack.stop().await
}
