//! Cancel and reschedule against the real broker, each confirmed: the caller learns whether the
//! entry was still pending or had already ended, and the answer is the truth even when the
//! cancel races the delivery.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, SystemTime},
};

use common::{committed, ms, post, InProcess};

use fanout_core::schedule::{self, Outcome, ScheduleId};
use fanout_producer::{CancelOutcome, Ended, PublishOptions, Publisher, RescheduleOutcome, ScheduleState};
use fanout_testkit::{service::Stack, wait_until};
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_reschedule_say_whether_they_came_in_time() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let target = kafka.topic("cancel-target", 3).await?;
    let scheduler = InProcess::start(&kafka, "schedule-cancel").await?;
    let mut publisher_config = stack.publisher_config("cancel-test");
    publisher_config.schedule_topic = scheduler.schedule_topic.name().to_owned();
    let publisher = Publisher::new(publisher_config)?;
    let to = PublishOptions::new().topic(target.name());
    let now = SystemTime::now();
    let ended = |outcome, rescheduled_as| Ended { outcome, rescheduled_as };

    // Pending: taken back, and it says so afterwards.
    let pending = publisher.publish_at(&post(1, 0), now + Duration::from_secs(30), &to).await?;
    assert!(matches!(
        publisher.schedule_state(&pending.schedule_id).await?,
        ScheduleState::Pending { ref topic, .. } if topic == target.name()
    ));
    assert_eq!(publisher.cancel(&pending.schedule_id).await?, CancelOutcome::Cancelled);
    assert_eq!(
        publisher.schedule_state(&pending.schedule_id).await?,
        ScheduleState::Ended(ended(Outcome::Cancelled, None))
    );

    // Delivered: too late, and told so.
    let soon = publisher.publish_at(&post(2, 0), now, &to).await?;
    let soon_id = soon.event_id.to_string();
    wait_until(Duration::from_secs(30), "the due event delivered", || async {
        Ok(committed(&kafka, target.name())
            .await?
            .iter()
            .any(|r| r.header("ce_id") == Some(soon_id.as_str())))
    })
    .await?;
    assert_eq!(
        publisher.cancel(&soon.schedule_id).await?,
        CancelOutcome::AlreadyEnded(ended(Outcome::Delivered, None))
    );

    // Expired (past its not_after): dead-lettered, and a cancel says that.
    let expired = publisher
        .publish_at(
            &post(3, 0),
            now - Duration::from_secs(5),
            &to.clone().not_after(now - Duration::from_secs(1)),
        )
        .await?;
    wait_until(Duration::from_secs(30), "the expired entry dead-lettered", || async {
        Ok(!matches!(publisher.schedule_state(&expired.schedule_id).await?, ScheduleState::Pending { .. }))
    })
    .await?;
    assert_eq!(
        publisher.cancel(&expired.schedule_id).await?,
        CancelOutcome::AlreadyEnded(ended(Outcome::Expired, None))
    );

    // Rescheduled: moved from a minute ahead to one second, delivered once under its new id,
    // with the same event id; the old id says where it went, and cannot be moved twice.
    let moved = publisher.publish_at(&post(4, 0), now + Duration::from_secs(60), &to).await?;
    let new_time = SystemTime::now() + Duration::from_secs(1);
    let RescheduleOutcome::Rescheduled(next) = publisher.reschedule(&moved.schedule_id, new_time).await?
    else {
        panic!("a pending entry is rescheduled");
    };
    assert_ne!(next.schedule_id, moved.schedule_id);
    assert_eq!(next.event_id, moved.event_id, "the same event, moved");
    assert_eq!(
        publisher.reschedule(&moved.schedule_id, now).await?,
        RescheduleOutcome::AlreadyEnded(ended(Outcome::Cancelled, Some(next.schedule_id)))
    );
    let moved_id = moved.event_id.to_string();
    wait_until(Duration::from_secs(30), "the rescheduled event delivered", || async {
        Ok(committed(&kafka, target.name())
            .await?
            .iter()
            .any(|r| r.header("ce_id") == Some(moved_id.as_str())))
    })
    .await?;
    let delivered = committed(&kafka, target.name()).await?;
    let copies: Vec<_> = delivered.iter().filter(|r| r.header("ce_id") == Some(moved_id.as_str())).collect();
    assert_eq!(copies.len(), 1, "delivered once");
    assert!(copies[0].timestamp_ms.unwrap_or_default() >= ms(new_time), "not before its new time");
    assert_eq!(copies[0].header(schedule::SCHEDULED_FOR), Some(ms(new_time).to_string().as_str()));
    assert_eq!(
        publisher.schedule_state(&next.schedule_id).await?,
        ScheduleState::Ended(ended(Outcome::Delivered, None))
    );

    // A year ahead is fine (and costs no memory: it stays in Kafka); beyond the horizon is a
    // mistake, refused by name.
    let year = publisher.publish_at(&post(5, 0), now + Duration::from_secs(365 * 86_400), &to).await?;
    assert!(matches!(publisher.schedule_state(&year.schedule_id).await?, ScheduleState::Pending { .. }));
    assert_eq!(publisher.cancel(&year.schedule_id).await?, CancelOutcome::Cancelled);
    let beyond = publisher.publish_at(&post(6, 0), now + Duration::from_secs(400 * 86_400), &to).await;
    let refused = beyond.expect_err("400 days ahead is beyond the default horizon").to_string();
    assert!(refused.contains("schedule_horizon_days"), "{refused}");

    // An id nobody scheduled.
    let stranger = ScheduleId { partition: 0, id: uuid::Uuid::now_v7() };
    assert_eq!(publisher.schedule_state(&stranger).await?, ScheduleState::Unknown);
    assert_eq!(publisher.cancel(&stranger).await?, CancelOutcome::Unknown);
    assert!(
        !delivered.iter().any(|r| r.header("ce_id") == Some(pending.event_id.to_string().as_str())),
        "the cancelled entry was delivered"
    );

    scheduler.stop(&kafka).await?;
    stack.stop().await
}

/// Cancels land while their entries come due: whatever each cancel answered is what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_the_delivery_is_told_the_truth() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let target = kafka.topic("cancel-race-target", 3).await?;
    let scheduler = InProcess::start(&kafka, "schedule-race").await?;
    let mut publisher_config = stack.publisher_config("cancel-race-test");
    publisher_config.schedule_topic = scheduler.schedule_topic.name().to_owned();
    let publisher = Publisher::new(publisher_config)?;
    let to = PublishOptions::new().topic(target.name());

    // 400 entries on 40 keys, one every 5 ms over 2 s. Cancels sweep them from the last one
    // back while deliveries sweep forward from the first: they meet somewhere in the middle,
    // where cancels and deliveries race.
    let start = SystemTime::now() + Duration::from_secs(4);
    let mut entries = Vec::new();
    for n in 0..400_u64 {
        let at = start + Duration::from_millis(n * 5);
        entries.push(publisher.publish_at(&post(n as i64 % 40, n as i64), at, &to).await?);
    }
    while SystemTime::now() < start + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(20)).await; // a point in time, not a sync
    }
    let outcomes: Vec<(String, CancelOutcome)> = futures::stream::iter(entries.iter().rev())
        .map(|entry| {
            let publisher = publisher.clone();
            async move { (entry.event_id.to_string(), publisher.cancel(&entry.schedule_id).await) }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|(id, outcome)| outcome.map(|o| (id, o)))
        .collect::<Result<_, _>>()?;

    let told_delivered: HashSet<&str> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, CancelOutcome::AlreadyEnded(Ended { outcome: Outcome::Delivered, .. })))
        .map(|(id, _)| id.as_str())
        .collect();
    let told_cancelled = outcomes.iter().filter(|(_, o)| *o == CancelOutcome::Cancelled).count();
    assert_eq!(told_delivered.len() + told_cancelled, entries.len(), "every cancel answered: {outcomes:?}");
    assert!(
        !told_delivered.is_empty() && told_cancelled > 0,
        "the cancels raced the deliveries: {} too late, {told_cancelled} in time",
        told_delivered.len()
    );

    // One sentinel per schedule partition, due after every entry: the scheduler delivers a
    // partition in due order, so once the sentinels are in, no entry can still come.
    let mut sentinel_keys: HashMap<i32, i64> = HashMap::new();
    for key in 1_000_i64.. {
        let partition = schedule::partition_for(Some(key.to_string().as_bytes()), &uuid::Uuid::nil(), 3);
        sentinel_keys.entry(partition).or_insert(key);
        if sentinel_keys.len() == 3 {
            break;
        }
    }
    let mut sentinels = HashSet::new();
    for key in sentinel_keys.values() {
        let sentinel = publisher.publish_at(&post(*key, -1), start + Duration::from_secs(4), &to).await?;
        sentinels.insert(sentinel.event_id.to_string());
    }
    wait_until(Duration::from_secs(60), "the sentinels delivered", || async {
        let delivered = committed(&kafka, target.name()).await?;
        Ok(delivered.iter().filter(|r| r.header("ce_id").is_some_and(|id| sentinels.contains(id))).count()
            == 3)
    })
    .await?;
    let delivered: Vec<String> = committed(&kafka, target.name())
        .await?
        .iter()
        .filter_map(|r| r.header("ce_id").map(str::to_owned))
        .filter(|id| !sentinels.contains(id))
        .collect();
    let unique: HashSet<&str> = delivered.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), delivered.len(), "no entry delivered twice");
    let cancelled_yet_delivered: Vec<_> = unique.difference(&told_delivered).collect();
    let told_yet_missing: Vec<_> = told_delivered.difference(&unique).collect();
    assert!(
        cancelled_yet_delivered.is_empty() && told_yet_missing.is_empty(),
        "delivered exactly the entries whose cancel was told so: {} told `cancelled` were delivered \
         (e.g. {:?}), {} told `delivered` were not",
        cancelled_yet_delivered.len(),
        cancelled_yet_delivered.first(),
        told_yet_missing.len()
    );
    eprintln!("{} cancelled in time, {} too late", told_cancelled, told_delivered.len());

    scheduler.stop(&kafka).await?;
    stack.stop().await
}
