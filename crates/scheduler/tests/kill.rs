//! `kill -9` of a scheduler process with thousands of entries pending, then a new one; two
//! instances, one killed, the survivor taking its partitions: every entry delivered exactly once
//! (read `read_committed`, compared by `ce_id`), none early. `FANOUT_TEST_SCHEDULED` sets how
//! many (5,000 by default; `make scheduler-long` runs 100,000), due at 2,000 a second or over
//! 10 s, whichever is longer.

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

/// How many entries to schedule.
fn count() -> usize {
    std::env::var("FANOUT_TEST_SCHEDULED").ok().and_then(|n| n.parse().ok()).unwrap_or(5_000)
}

/// Schedules `count` entries due from 3 s on, at most 2,000 a second: their `ce_id`s and due times.
async fn schedule_many(
    stack: &Stack,
    schedule_topic: &str,
    target: &str,
    count: usize,
) -> anyhow::Result<Due> {
    let mut config = stack.publisher_config("scheduling-kill-test");
    config.schedule_topic = schedule_topic.to_owned();
    let publisher = Publisher::new(config)?;
    let to = PublishOptions::new().topic(target);
    let start = SystemTime::now() + Duration::from_secs(3);
    let spread = Duration::from_secs_f64((count as f64 / 2_000.0).max(10.0));
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
    Ok(Due { by_id: scheduled.into_iter().collect(), spread })
}

/// What was scheduled.
struct Due {
    by_id: HashMap<String, i64>,
    spread: Duration,
}

/// Asserts `delivered` holds every scheduled entry once, none before its time.
fn check(delivered: &[FetchedRecord], due: &Due) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for record in delivered {
        let id = record.header("ce_id").unwrap_or_default();
        *seen.entry(id).or_default() += 1;
        let due_ms = due.by_id[id];
        let at = record.timestamp_ms.unwrap_or_default();
        assert!(at >= due_ms, "{id} delivered {} ms early", due_ms - at);
    }
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} entries delivered more than once");
    assert_eq!(seen.len(), due.by_id.len(), "every entry delivered");
}

/// SIGTERM to this test's own child; it must exit 0 (finish its transaction, leave the group).
async fn terminate(mut child: Child) -> anyhow::Result<()> {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    let mut exit = None;
    wait_until(Duration::from_secs(30), "the scheduler to exit after SIGTERM", || {
        if let Ok(Some(status)) = child.try_wait() {
            exit = Some(status);
        }
        let done = exit.is_some();
        async move { Ok(done) }
    })
    .await?;
    anyhow::ensure!(exit.is_some_and(|status| status.success()), "exit after SIGTERM: {exit:?}");
    Ok(())
}

async fn clean_up(kafka: &Kafka, schedule_topic: &str, group: &str) -> anyhow::Result<()> {
    kafka.delete_topic(&fanout_core::schedule::dead_letters(schedule_topic)).await?;
    // A killed instance stays a member until its session times out (10 s).
    wait_until(Duration::from_secs(30), "the group to empty and go", || async {
        Ok(kafka.delete_groups(&[group]).await.is_ok())
    })
    .await
}

async fn topic_created(kafka: &Kafka, topic: &str) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(30), "the scheduler to create its topic", || async {
        Ok(fanout_kafka::topic_partitions(&kafka.client_config(), topic, Duration::from_secs(2)).is_ok())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_scheduler_loses_nothing_and_delivers_nothing_twice_or_early() -> anyhow::Result<()> {
    let count = count();
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let target = kafka.topic("scheduled-kill", 3).await?;
    let schedule_topic = kafka.future_topic("schedule-kill");
    let group = unique_name("scheduler-kill");
    let mut first = scheduler(&kafka, &group, schedule_topic.name())?;
    topic_created(&kafka, schedule_topic.name()).await?;
    let due = schedule_many(&stack, schedule_topic.name(), target.name(), count).await?;

    wait_until(due.spread + Duration::from_secs(60), "a quarter delivered before the kill", || async {
        Ok(committed(&kafka, target.name()).await?.len() >= count / 4)
    })
    .await?;
    first.kill()?;
    first.wait()?;
    let second = scheduler(&kafka, &group, schedule_topic.name())?;
    let result = wait_until(
        due.spread + Duration::from_secs(120),
        "every entry delivered after the restart",
        || async { Ok(committed(&kafka, target.name()).await?.len() >= count) },
    )
    .await;
    let delivered = committed(&kafka, target.name()).await?;
    terminate(second).await?;
    result?;
    check(&delivered, &due);

    clean_up(&kafka, schedule_topic.name(), &group).await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_one_killed_the_survivor_delivers_everything_once() -> anyhow::Result<()> {
    let count = count();
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let target = kafka.topic("scheduled-pair", 3).await?;
    let schedule_topic = kafka.future_topic("schedule-pair");
    let group = unique_name("scheduler-pair");
    let mut doomed = scheduler(&kafka, &group, schedule_topic.name())?;
    topic_created(&kafka, schedule_topic.name()).await?;
    let survivor = scheduler(&kafka, &group, schedule_topic.name())?;
    let due = schedule_many(&stack, schedule_topic.name(), target.name(), count).await?;

    wait_until(due.spread + Duration::from_secs(60), "a quarter delivered before the kill", || async {
        Ok(committed(&kafka, target.name()).await?.len() >= count / 4)
    })
    .await?;
    doomed.kill()?;
    doomed.wait()?;
    let result = wait_until(
        due.spread + Duration::from_secs(120),
        "every entry delivered by the survivor",
        || async { Ok(committed(&kafka, target.name()).await?.len() >= count) },
    )
    .await;
    let delivered = committed(&kafka, target.name()).await?;
    terminate(survivor).await?;
    result?;
    check(&delivered, &due);

    clean_up(&kafka, schedule_topic.name(), &group).await?;
    stack.stop().await
}
