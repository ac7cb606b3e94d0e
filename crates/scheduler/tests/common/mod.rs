//! What the scheduler's tests share: a scheduler in process, committed reads, the exactly-once
//! and never-early check, clean-up.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fanout_events::{Category, PostPublished};
use fanout_kafka::{FetchedRecord, TopicRead};
use fanout_scheduler::{Scheduler, SchedulerConfig, SchedulerError};
use fanout_testkit::{unique_name, wait_until, Kafka, TestTopic};
use tokio::{sync::oneshot, task::JoinHandle};

/// Unix milliseconds.
pub fn ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A test event: `post_id` is the key.
pub fn post(post_id: i64, seq: i64) -> PostPublished {
    PostPublished {
        post_id,
        user_id: seq,
        category: Category::Job,
        city: "Berlin".into(),
        title: format!("post {post_id} #{seq}"),
        published_at: 1_764_000_000_000,
    }
}

/// Every committed record of `topic` (aborted transactions' records are not).
pub async fn committed(kafka: &Kafka, topic: &str) -> anyhow::Result<Vec<FetchedRecord>> {
    let mut config = kafka.client_config();
    config.set("isolation.level", "read_committed");
    Ok(TopicRead::new(topic).timeout(Duration::from_secs(30)).read(&config).await?)
}

/// Asserts `delivered` holds every scheduled entry of `due` (`ce_id` → due time) once, none
/// before its time.
pub fn assert_exactly_once_never_early(delivered: &[FetchedRecord], due: &HashMap<String, i64>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut late = Vec::with_capacity(delivered.len());
    for record in delivered {
        let id = record.header("ce_id").unwrap_or_default();
        *seen.entry(id).or_default() += 1;
        let due_ms = *due.get(id).unwrap_or_else(|| panic!("delivered an event never scheduled: {id}"));
        let at = record.timestamp_ms.unwrap_or_default();
        assert!(at >= due_ms, "{id} delivered {} ms early", due_ms - at);
        late.push(at - due_ms);
    }
    // For the record (`--nocapture`), not asserted: speed is measured in benchmarks.
    late.sort_unstable();
    let quantile = |q: f64| late.get(((late.len() as f64 * q) as usize).min(late.len().saturating_sub(1)));
    eprintln!(
        "lateness (record time - due) over {} deliveries: p50 {:?} ms, p99 {:?} ms, max {:?} ms",
        late.len(),
        quantile(0.5),
        quantile(0.99),
        late.last()
    );
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} entries delivered more than once");
    assert_eq!(seen.len(), due.len(), "every entry delivered");
}

/// A scheduler running in this process on a schedule topic of its own (3 partitions, a 10 s
/// window).
pub struct InProcess {
    pub config: SchedulerConfig,
    pub schedule_topic: TestTopic,
    /// Where its `/metrics`, `/healthz` and `/readyz` listen.
    pub http: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    pub running: JoinHandle<Result<(), SchedulerError>>,
}

impl InProcess {
    pub async fn start(kafka: &Kafka, prefix: &str) -> anyhow::Result<Self> {
        Self::start_with(kafka, prefix, 3).await
    }

    /// One with a schedule topic of `partitions` partitions.
    pub async fn start_with(kafka: &Kafka, prefix: &str, partitions: i32) -> anyhow::Result<Self> {
        let schedule_topic = kafka.future_topic(prefix);
        let config = SchedulerConfig {
            name: unique_name(prefix),
            topic: schedule_topic.name().to_owned(),
            partitions,
            window_secs: 10,
            // Any free port: tests run side by side.
            http: fanout_config::HttpSettings::on("127.0.0.1:0"),
            kafka: fanout_config::KafkaSettings {
                bootstrap: kafka.bootstrap().to_owned(),
                ..Default::default()
            },
            ..SchedulerConfig::default()
        };
        Self::run(config, schedule_topic).await
    }

    /// A second instance of this one's group, on its schedule topic (this one's guard deletes
    /// the topic; the second's names a topic that never exists).
    pub async fn join(&self, kafka: &Kafka) -> anyhow::Result<Self> {
        Self::run(self.config.clone(), kafka.future_topic("never-created")).await
    }

    async fn run(config: SchedulerConfig, schedule_topic: TestTopic) -> anyhow::Result<Self> {
        let scheduler = Scheduler::start(config.clone()).await?;
        let http = scheduler.http_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(scheduler.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self { config, schedule_topic, http, stop, running })
    }

    /// `/readyz`: its status and body.
    pub async fn readyz(&self) -> anyhow::Result<(u16, String)> {
        fanout_testkit::service::get_text(&format!("http://{}/readyz", self.http)).await
    }

    /// Stops it gracefully and deletes its dead-letter topic and group.
    pub async fn stop(self, kafka: &Kafka) -> anyhow::Result<()> {
        let group = self.config.name.clone();
        let topic = self.halt().await?;
        clean_up(kafka, topic.name(), &group).await
    }

    /// Stops it gracefully; its schedule topic lives as long as the guard returned.
    pub async fn halt(self) -> anyhow::Result<TestTopic> {
        let _ = self.stop.send(());
        self.running.await??;
        Ok(self.schedule_topic)
    }
}

/// Deletes a schedule topic's dead-letter topic and the scheduler group (the topic itself goes
/// with its guard).
pub async fn clean_up(kafka: &Kafka, schedule_topic: &str, group: &str) -> anyhow::Result<()> {
    kafka.delete_topic(&fanout_core::schedule::dead_letters(schedule_topic)).await?;
    // A killed instance stays a member until its session times out (10 s).
    wait_until(Duration::from_secs(30), "the group to empty and go", || async {
        Ok(kafka.delete_groups(&[group]).await.is_ok())
    })
    .await
}
