//! `fanout_scheduled_pending{bucket}` on `/metrics`: entries due far beyond the window (left in
//! Kafka, never held in memory) are counted in the bucket of their due time, those read by the
//! first whole read of a partition and those read live after it.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use common::{clean_up, post};
use fanout_producer::{PublishOptions, Publisher};
use fanout_scheduler::{Scheduler, SchedulerConfig};
use fanout_testkit::{service::Stack, unique_name, wait_until};

/// The gauge's values on `/metrics`, by bucket.
async fn pending(url: &str) -> anyhow::Result<HashMap<String, i64>> {
    let text = reqwest::get(url).await?.text().await?;
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("fanout_scheduled_pending{bucket=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .filter_map(|(bucket, value)| Some((bucket.to_owned(), value.trim().parse().ok()?)))
        .collect())
}

fn expect(pairs: [(&str, i64); 6]) -> HashMap<String, i64> {
    pairs.into_iter().map(|(bucket, n)| (bucket.to_owned(), n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn far_future_entries_are_counted_in_the_bucket_of_their_due_time() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let target = kafka.topic("pending-target", 3).await?;
    let schedule_topic = kafka.future_topic("schedule-pending");
    let config = SchedulerConfig {
        name: unique_name("scheduler-pending"),
        topic: schedule_topic.name().to_owned(),
        partitions: 3,
        window_secs: 10,
        kafka: fanout_config::KafkaSettings { bootstrap: kafka.bootstrap().to_owned(), ..Default::default() },
        http: fanout_config::HttpSettings::on("127.0.0.1:0"),
        ..SchedulerConfig::default()
    };
    // Started (topics created, port bound) but not running: what is scheduled now is found by
    // the first whole read.
    let scheduler = Scheduler::start(config.clone()).await?;
    let url = format!("http://{}/metrics", scheduler.http_addr());
    let mut publisher_config = stack.publisher_config("scheduling-pending-test");
    publisher_config.schedule_topic = schedule_topic.name().to_owned();
    let publisher = Publisher::new(publisher_config)?;
    let to = PublishOptions::new().topic(target.name());
    let now = SystemTime::now();
    let minutes = |n: u64| now + Duration::from_secs(60 * n);
    let mut seq = 0;
    for at in [minutes(5), minutes(30), minutes(40), minutes(300), minutes(3 * 1_440), minutes(4 * 1_440)] {
        seq += 1;
        publisher.publish_at(&post(seq, seq), at, &to).await?;
    }

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(scheduler.run(async move {
        let _ = stopped.await;
    }));
    let first_read = expect([("overdue", 0), ("1m", 0), ("10m", 1), ("1h", 2), ("1d", 1), ("later", 2)]);
    // What /metrics said last, for the failure message.
    let last = std::sync::Mutex::new(HashMap::new());
    let shows = |expected: &HashMap<String, i64>| {
        let (url, last) = (&url, &last);
        let expected = expected.clone();
        move || {
            let expected = expected.clone();
            async move {
                let now = pending(url).await?;
                let matches = now == expected;
                *last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now;
                Ok(matches)
            }
        }
    };
    let result = wait_until(Duration::from_secs(30), "the first read's counts", shows(&first_read)).await;
    anyhow::ensure!(
        result.is_ok(),
        "fanout_scheduled_pending after the first read: {last:?}, expected {first_read:?}"
    );

    // Read live, after the first read.
    publisher.publish_at(&post(99, 99), minutes(2 * 1_440), &to).await?;
    publisher.publish_at(&post(98, 98), minutes(20 * 60), &to).await?;
    let live = expect([("overdue", 0), ("1m", 0), ("10m", 1), ("1h", 2), ("1d", 2), ("later", 3)]);
    let result = wait_until(Duration::from_secs(30), "the live entries' counts", shows(&live)).await;
    anyhow::ensure!(
        result.is_ok(),
        "fanout_scheduled_pending after live entries: {last:?}, expected {live:?}"
    );

    let _ = stop.send(());
    running.await??;
    clean_up(&kafka, schedule_topic.name(), &config.name).await
}
