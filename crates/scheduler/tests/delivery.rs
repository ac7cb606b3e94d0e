//! Scheduled events against the real broker: delivered at their time and never before, each
//! exactly once (read `read_committed`, compared by `ce_id`), one key's events in schedule order;
//! cancelled ones never; expired and far-future ones as documented.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use common::{committed, ms, post, InProcess};

use fanout_core::schedule;
use fanout_producer::{PublishOptions, Publisher};
use fanout_testkit::{service::Stack, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_arrive_at_their_time_never_early_once_each_in_schedule_order() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let target = kafka.topic("scheduled-target", 3).await?;
    let scheduler = InProcess::start(&kafka, "schedule").await?;
    let schedule_topic = &scheduler.schedule_topic;

    let mut publisher_config = stack.publisher_config("scheduling-test");
    publisher_config.schedule_topic = schedule_topic.name().to_owned();
    let publisher = Publisher::new(publisher_config)?;
    let to = PublishOptions::new().topic(target.name());
    let start = SystemTime::now();
    let mut due: HashMap<String, i64> = HashMap::new();
    // 120 events over the next 3 s, on 20 keys; key 7's three events share one instant.
    for n in 0..120_i64 {
        let at = start + Duration::from_millis(500 + (n as u64 * 25));
        let scheduled = publisher.publish_at(&post(n % 20, n), at, &to).await?;
        due.insert(scheduled.event_id.to_string(), ms(at));
    }
    let instant = start + Duration::from_millis(2_000);
    let mut same_instant = Vec::new();
    for seq in 0..3 {
        let scheduled = publisher.publish_at(&post(7, 1_000 + seq), instant, &to).await?;
        due.insert(scheduled.event_id.to_string(), ms(instant));
        same_instant.push(scheduled.event_id.to_string());
    }
    // In the past: at once. Beyond the 10 s window: brought in by a re-read.
    let past = publisher.publish_at(&post(50, 0), start - Duration::from_secs(60), &to).await?;
    due.insert(past.event_id.to_string(), ms(start - Duration::from_secs(60)));
    let far_at = start + Duration::from_secs(13);
    let far = publisher.publish_at(&post(51, 0), far_at, &to).await?;
    due.insert(far.event_id.to_string(), ms(far_at));
    // Cancelled before its time: never delivered.
    let cancelled = publisher.publish_at(&post(52, 0), start + Duration::from_secs(4), &to).await?;
    publisher.cancel(&cancelled.schedule_id).await?;
    // Due long ago and not acceptable after a second ago: dead-lettered with the reason.
    let expired = publisher
        .publish_at(
            &post(53, 0),
            start - Duration::from_secs(10),
            &to.clone().not_after(start - Duration::from_secs(1)),
        )
        .await?;

    // To a topic Kafka can never have: dead-lettered with the reason, not retried forever.
    let refused =
        publisher.publish_at(&post(54, 0), start, &PublishOptions::new().topic("not a topic!")).await?;

    let expected = due.len();
    wait_until(Duration::from_secs(60), "every scheduled event delivered", || async {
        Ok(committed(&kafka, target.name()).await?.len() >= expected)
    })
    .await?;
    // The last expected event (13 s) is due well after the cancelled one (4 s): had the cancel
    // been lost, the cancelled event would be in by now.
    let delivered = committed(&kafka, target.name()).await?;

    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in &delivered {
        let id = record.header("ce_id").unwrap_or_default().to_owned();
        *seen.entry(id.clone()).or_default() += 1;
        let due_ms = *due.get(&id).unwrap_or_else(|| panic!("delivered an event never scheduled: {id}"));
        let at = record.timestamp_ms.unwrap_or_default();
        assert!(at >= due_ms, "{id} delivered {} ms early", due_ms - at);
        assert_eq!(record.header(schedule::SCHEDULED_FOR), Some(due_ms.to_string().as_str()));
        assert!(record.header(schedule::TARGET_TOPIC).is_none(), "control headers are stripped");
    }
    assert_eq!(seen.len(), expected, "every event delivered");
    assert!(seen.values().all(|count| *count == 1), "each exactly once: {seen:?}");
    assert!(!seen.contains_key(&cancelled.event_id.to_string()), "the cancelled event was delivered");
    assert!(!seen.contains_key(&expired.event_id.to_string()), "the expired event was delivered");

    let key7: Vec<String> = delivered
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"7".as_slice()))
        .filter_map(|r| r.header("ce_id").map(str::to_owned))
        .filter(|id| same_instant.contains(id))
        .collect();
    assert_eq!(key7, same_instant, "one key's events due at one instant keep their schedule order");

    wait_until(Duration::from_secs(30), "the expired and the refused event dead-lettered", || async {
        Ok(committed(&kafka, &schedule::dead_letters(schedule_topic.name())).await?.len() >= 2)
    })
    .await?;
    let dead = committed(&kafka, &schedule::dead_letters(schedule_topic.name())).await?;
    let reason = |id: uuid::Uuid| {
        let id = id.to_string();
        dead.iter().find(|r| r.header("ce_id") == Some(id.as_str())).and_then(|r| r.header(schedule::REASON))
    };
    assert_eq!(dead.len(), 2, "the expired and the refused event are dead-lettered: {dead:?}");
    assert!(reason(expired.event_id).is_some_and(|r| r.contains("not_after")), "{dead:?}");
    assert!(reason(refused.event_id).is_some_and(|r| r.contains("the target refused it")), "{dead:?}");

    scheduler.stop(&kafka).await?;
    stack.stop().await
}

/// `/readyz`: an instance is ready once it read what it owns; one that owns nothing (more
/// instances than partitions) is a ready standby, and takes the partition over when the owner
/// goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_is_ready_and_takes_over() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let owner = InProcess::start_with(&kafka, "schedule-standby", 1).await?;
    let says = |expected: &'static str| (200_u16, expected.to_owned());
    wait_until(Duration::from_secs(30), "the owner ready", || async {
        Ok(owner.readyz().await? == says("partitions=1 loaded=1"))
    })
    .await?;
    let standby = owner.join(&kafka).await?;
    wait_until(Duration::from_secs(30), "the standby ready", || async {
        Ok(standby.readyz().await? == says("partitions=0 loaded=0 standby"))
    })
    .await?;
    assert_eq!(owner.readyz().await?, says("partitions=1 loaded=1"), "the owner keeps its partition");

    let group = owner.config.name.clone();
    let topic = owner.halt().await?;
    wait_until(Duration::from_secs(30), "the standby to take the partition over", || async {
        Ok(standby.readyz().await? == says("partitions=1 loaded=1"))
    })
    .await?;
    standby.halt().await?;
    common::clean_up(&kafka, topic.name(), &group).await?;
    stack.stop().await
}
