//! `kill -9` of the scheduler process with thousands of entries pending, then a new one: every
//! entry delivered exactly once (read `read_committed`, compared by `ce_id`), none early.
//! `FANOUT_TEST_SCHEDULED` sets how many (5,000 by default; the long run uses 100,000).

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fanout_events::{Category, PostPublished};
use fanout_kafka::{FetchedRecord, TopicRead};
use fanout_producer::{PublishOptions, Publisher};
use fanout_testkit::{service::Stack, unique_name, wait_until, Kafka};
use futures::{stream, StreamExt, TryStreamExt};

fn ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn committed(kafka: &Kafka, topic: &str) -> anyhow::Result<Vec<FetchedRecord>> {
    let mut config = kafka.client_config();
    config.set("isolation.level", "read_committed");
    Ok(TopicRead::new(topic).read(&config).await?)
}

fn scheduler(kafka: &Kafka, group: &str, topic: &str) -> anyhow::Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_fanout-scheduler"))
        .env("FANOUT_NAME", group)
        .env("FANOUT_TOPIC", topic)
        .env("FANOUT_PARTITIONS", "3")
        .env("FANOUT_WINDOW_SECS", "10")
        .env("FANOUT_KAFKA__BOOTSTRAP", kafka.bootstrap())
        .env("FANOUT_HTTP__LISTEN", "127.0.0.1:0")
        .env("FANOUT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_scheduler_loses_nothing_and_delivers_nothing_twice_or_early() -> anyhow::Result<()> {
    let count: usize =
        std::env::var("FANOUT_TEST_SCHEDULED").ok().and_then(|n| n.parse().ok()).unwrap_or(5_000);
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let target = kafka.topic("scheduled-kill", 3).await?;
    let schedule_topic = kafka.future_topic("schedule-kill");
    let group = unique_name("scheduler-kill");
    let mut first = scheduler(&kafka, &group, schedule_topic.name())?;
    wait_until(Duration::from_secs(30), "the scheduler to create its topic", || async {
        Ok(fanout_kafka::topic_partitions(
            &kafka.client_config(),
            schedule_topic.name(),
            Duration::from_secs(2),
        )
        .is_ok())
    })
    .await?;

    let mut config = stack.publisher_config("scheduling-kill-test");
    config.schedule_topic = schedule_topic.name().to_owned();
    let publisher = Publisher::new(config)?;
    let to = PublishOptions::new().topic(target.name());
    // Spread over 3 s .. 13 s from now, so the kill lands among deliveries.
    let start = SystemTime::now() + Duration::from_secs(3);
    let spread = Duration::from_secs(10);
    let scheduled: Vec<(String, i64)> = stream::iter(0..count)
        .map(|n| {
            let (publisher, to) = (&publisher, &to);
            let at = start + spread.mul_f64(n as f64 / count as f64);
            let post = PostPublished {
                post_id: (n % 500) as i64,
                user_id: n as i64,
                category: Category::Housing,
                city: "Lyon".into(),
                title: format!("scheduled {n}"),
                published_at: 1_764_000_000_000,
            };
            async move {
                let scheduled = publisher.publish_at(&post, at, to).await?;
                anyhow::Ok((scheduled.event_id.to_string(), ms(at)))
            }
        })
        .buffer_unordered(256)
        .try_collect()
        .await?;
    let due: HashMap<String, i64> = scheduled.into_iter().collect();

    wait_until(Duration::from_secs(60), "a quarter delivered before the kill", || async {
        Ok(committed(&kafka, target.name()).await?.len() >= count / 4)
    })
    .await?;
    first.kill()?;
    first.wait()?;
    let mut second = scheduler(&kafka, &group, schedule_topic.name())?;
    let result = wait_until(Duration::from_secs(120), "every entry delivered after the restart", || async {
        Ok(committed(&kafka, target.name()).await?.len() >= count)
    })
    .await;
    let delivered = committed(&kafka, target.name()).await?;
    // SIGTERM to this test's own child: it finishes its transaction and leaves the group.
    Command::new("kill").args(["-TERM", &second.id().to_string()]).status()?;
    let mut exit = None;
    wait_until(Duration::from_secs(30), "the scheduler to exit after SIGTERM", || {
        let status = second.try_wait();
        let done = matches!(status, Ok(Some(_)));
        if let Ok(Some(status)) = status {
            exit = Some(status);
        }
        async move { Ok(done) }
    })
    .await?;
    result?;
    assert!(exit.is_some_and(|status| status.success()), "exit after SIGTERM: {exit:?}");

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for record in &delivered {
        let id = record.header("ce_id").unwrap_or_default();
        *seen.entry(id).or_default() += 1;
        let due_ms = due[id];
        let at = record.timestamp_ms.unwrap_or_default();
        assert!(at >= due_ms, "{id} delivered {} ms early", due_ms - at);
    }
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} entries delivered more than once");
    assert_eq!(seen.len(), count, "every entry delivered");

    kafka.delete_topic(&fanout_core::schedule::dead_letters(schedule_topic.name())).await?;
    // The killed instance stays a member until its session times out (10 s).
    wait_until(Duration::from_secs(30), "the group to empty and go", || async {
        Ok(kafka.delete_groups(&[&group]).await.is_ok())
    })
    .await?;
    stack.stop().await
}
