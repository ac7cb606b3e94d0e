//! `kill -9` of a scheduler process with thousands of entries pending, then a new one; two
//! instances, one killed, the survivor taking its partitions: every entry delivered exactly once
//! (read `read_committed`, compared by `ce_id`), none early. `FANOUT_TEST_SCHEDULED` sets how
//! many (5,000 by default; `make scheduler-long` runs 100,000), due at 2,000 a second or over
//! 10 s, whichever is longer. With an `instance_id`, the restarted process delivers again sooner
//! than the dead member's session could expire.

mod common;

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use common::{assert_exactly_once_never_early, clean_up, committed, ms, post};
use fanout_producer::{PublishOptions, Publisher};
use fanout_testkit::{service::Stack, unique_name, wait_until, Kafka};
use futures::{stream, StreamExt, TryStreamExt};

fn scheduler(kafka: &Kafka, group: &str, topic: &str) -> anyhow::Result<Child> {
    scheduler_as(kafka, group, topic, None)
}

/// A scheduler process, with a fixed `instance_id` when given.
fn scheduler_as(kafka: &Kafka, group: &str, topic: &str, instance: Option<&str>) -> anyhow::Result<Child> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fanout-scheduler"));
    if let Some(instance) = instance {
        command.env("FANOUT_INSTANCE_ID", instance);
    }
    Ok(command
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
            let post = post((n % 500) as i64, n as i64);
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
    assert_exactly_once_never_early(&delivered, &due.by_id);

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
    assert_exactly_once_never_early(&delivered, &due.by_id);

    clean_up(&kafka, schedule_topic.name(), &group).await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_instance_with_an_instance_id_is_replaced_at_once() -> anyhow::Result<()> {
    let count = count();
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let target = kafka.topic("scheduled-static", 3).await?;
    let schedule_topic = kafka.future_topic("schedule-static");
    let group = unique_name("scheduler-static");
    let instance = Some("instance-0");
    let mut first = scheduler_as(&kafka, &group, schedule_topic.name(), instance)?;
    topic_created(&kafka, schedule_topic.name()).await?;
    let due = schedule_many(&stack, schedule_topic.name(), target.name(), count).await?;

    wait_until(due.spread + Duration::from_secs(60), "a quarter delivered before the kill", || async {
        Ok(committed(&kafka, target.name()).await?.len() >= count / 4)
    })
    .await?;
    first.kill()?;
    first.wait()?;
    let (killed, killed_ms) = (Instant::now(), ms(SystemTime::now()));
    let second = scheduler_as(&kafka, &group, schedule_topic.name(), instance)?;
    // Only the new process can have sent a record after the kill (the record's time is when it
    // was produced).
    let resumed = wait_until(Duration::from_secs(30), "a delivery by the restarted instance", || async {
        let delivered = committed(&kafka, target.name()).await?;
        Ok(delivered.iter().any(|r| r.timestamp_ms.is_some_and(|at| at > killed_ms)))
    })
    .await;
    let resumed_after = killed.elapsed();
    let result = match resumed {
        Ok(()) => {
            wait_until(
                due.spread + Duration::from_secs(120),
                "every entry delivered after the restart",
                || async { Ok(committed(&kafka, target.name()).await?.len() >= count) },
            )
            .await
        }
        Err(error) => Err(error),
    };
    let delivered = committed(&kafka, target.name()).await?;
    terminate(second).await?;
    result?;
    // A dynamic member's successor waits out the dead member's session (10 s) and its open
    // transaction (10 s); the static one takes its place and aborts that transaction at once.
    assert!(
        resumed_after < Duration::from_secs(8),
        "the restarted instance delivered again only {resumed_after:?} after the kill"
    );
    assert_exactly_once_never_early(&delivered, &due.by_id);

    clean_up(&kafka, schedule_topic.name(), &group).await?;
    stack.stop().await
}
