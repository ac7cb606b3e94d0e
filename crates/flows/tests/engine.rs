//! The trigger engine against the real broker and registry: runs of a flow with a fan-in and a
//! fan-out, the test playing the workers. Every (run, task) starts exactly once, never before all
//! its upstreams of the same run succeeded, although a third of the successes are reported twice
//! and each batch of them in reverse order.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use fanout_flows::{
    signals::{RunRequested, TaskStarted, TaskSucceeded},
    Engine, EngineConfig, SignalTopics,
};
use fanout_kafka::TopicRead;
use fanout_producer::{PublishOptions, Publisher};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{service::Stack, unique_name, wait_until, Kafka};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Offset, TopicPartitionList,
};
use tokio::sync::oneshot;

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

/// Every committed `TaskStarted` on `topic`.
async fn starts(kafka: &Kafka, topic: &str, serde: &AvroSerde) -> anyhow::Result<Vec<TaskStarted>> {
    let mut config = kafka.client_config();
    config.set("isolation.level", "read_committed");
    let records = TopicRead::new(topic).timeout(Duration::from_secs(30)).read(&config).await?;
    let mut starts = Vec::with_capacity(records.len());
    for record in records {
        let payload = record.payload.context("a TaskStarted without payload")?;
        starts.push(serde.decode::<TaskStarted>(&payload).await?);
    }
    Ok(starts)
}

/// True once the engine's group has committed every input signal up to the topics' ends.
fn caught_up(kafka: &Kafka, group: &str, topics: &SignalTopics) -> anyhow::Result<bool> {
    let mut config = kafka.client_config();
    config.set("group.id", group).set("isolation.level", "read_committed");
    let consumer: BaseConsumer = config.create()?;
    let mut wanted = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for topic in [&topics.requested, &topics.succeeded] {
        for partition in 0..3 {
            let (_, end) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
            ends.insert((topic.clone(), partition), end);
            wanted.add_partition(topic, partition);
        }
    }
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(10))?;
    Ok(committed.elements().iter().all(|e| {
        let end = ends[&(e.topic().to_owned(), e.partition())];
        end == 0 || matches!(e.offset(), Offset::Offset(at) if at >= end)
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_task_of_every_run_starts_once_after_its_upstreams_despite_duplicates_and_reordering(
) -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("nightly.toml");
    std::fs::write(&flows, FLOW)?;
    let prefix = unique_name("flows");
    let config = EngineConfig {
        name: unique_name("flow-engine"),
        flows,
        topic_prefix: prefix.clone(),
        partitions: 3,
        state_topic: unique_name("flow-state"),
        schedule_topic: unique_name("no-scheduler"),
        kafka: fanout_config::KafkaSettings { bootstrap: kafka.bootstrap().to_owned(), ..Default::default() },
        registry: fanout_schema_registry::RegistrySettings {
            urls: vec![stack.registry_url().to_owned()],
            ..Default::default()
        },
        http: fanout_config::HttpSettings { listen: "127.0.0.1:0".to_owned() },
        ..EngineConfig::default()
    };
    let topics = config.topics();
    let engine = Engine::start(config.clone()).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(engine.run(async move {
        let _ = stopped.await;
    }));

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
    wait_until(Duration::from_secs(60), "the engine to process every signal", || async {
        caught_up(&kafka, &config.name, &topics)
    })
    .await?;

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

    let _ = stop.send(());
    running.await??;
    let names = [&topics.requested, &topics.started, &topics.succeeded, &topics.failed, &config.state_topic];
    for name in names {
        kafka.delete_topic(name).await?;
    }
    wait_until(Duration::from_secs(30), "the engine group to go", || async {
        Ok(kafka.delete_groups(&[&config.name]).await.is_ok())
    })
    .await?;
    stack.stop().await
}
