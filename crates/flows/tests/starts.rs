//! How runs start besides `fanout flow start`: a cron schedule (a run per local date, however
//! often it fires that day) and a trigger topic (a run per record key written since the flow was
//! deployed).

mod common;

use std::time::Duration;

use common::{starts, InProcess};
use fanout_kafka::{OwnedRecord, TopicRead};
use fanout_producer::Publisher;
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{service::Stack, wait_until};

const TASKS: &str = r#"
[[tasks]]
name = "first"
command = ["true"]
[[tasks]]
name = "second"
after = ["first"]
command = ["true"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cron_firing_every_second_starts_one_run_per_local_date() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let flow =
        format!("name = \"ticks\"\n[start]\ncron = \"* * * * * *\"\ntimezone = \"Asia/Tokyo\"\n{TASKS}");
    let engine = InProcess::start(&stack, &flow).await?;
    let topics = engine.config.topics();
    let mut read = kafka.client_config();
    read.set("isolation.level", "read_committed");
    wait_until(Duration::from_secs(30), "three firings", || async {
        Ok(TopicRead::new(&topics.requested).read(&read).await?.len() >= 3)
    })
    .await?;
    engine.wait_caught_up(&kafka).await?;
    let serde = AvroSerde::from_urls(&[stack.registry_url()])?;
    let started = starts(&kafka, &topics.started, &serde).await?;
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).format("%Y-%m-%d").to_string();
    let firsts: Vec<_> = started.iter().filter(|s| s.task == "first").collect();
    // Around Tokyo's midnight two dates may have fired: one run each, never two of one date.
    assert!(firsts.iter().any(|s| s.run == today), "no run for {today}: {started:?}");
    let mut runs: Vec<&str> = firsts.iter().map(|s| s.run.as_str()).collect();
    runs.dedup();
    assert_eq!(runs.len(), firsts.len(), "a date's run started more than once: {started:?}");
    engine.stop(&kafka).await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_key_of_a_trigger_topic_starts_its_run_once() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let trigger = kafka.topic("orders-closed", 2).await?;
    let flow = format!("name = \"on-close\"\n[start]\ntopic = \"{}\"\n{TASKS}", trigger.name());
    let publisher = Publisher::new(stack.publisher_config("flow-trigger-test"))?;
    let record = |key: &str| OwnedRecord {
        topic: trigger.name().to_owned(),
        key: Some(key.as_bytes().to_vec()),
        payload: Some(b"closed".to_vec()),
        headers: Vec::new(),
    };
    // Written before the flow was deployed: history, not a run to start.
    for sent in publisher.send_records(&[record("closed-last-year")]).await {
        sent?;
    }
    let engine = InProcess::start(&stack, &flow).await?;
    let topics = engine.config.topics();
    engine.wait_triggers_positioned(&kafka).await?;
    for sent in publisher.send_records(&[record("order-1"), record("order-2"), record("order-1")]).await {
        sent?;
    }
    let serde = AvroSerde::from_urls(&[stack.registry_url()])?;
    wait_until(Duration::from_secs(30), "both runs started", || async {
        Ok(starts(&kafka, &topics.started, &serde).await?.len() >= 2)
    })
    .await?;
    // Caught up on the trigger topic and on the requests it forwarded: every decision is made.
    engine.wait_caught_up(&kafka).await?;
    let mut runs: Vec<String> =
        starts(&kafka, &topics.started, &serde).await?.into_iter().map(|s| s.run).collect();
    runs.sort();
    assert_eq!(runs, ["order-1", "order-2"], "one run per key written since the deploy, started once");
    engine.stop(&kafka).await?;
    stack.stop().await
}
