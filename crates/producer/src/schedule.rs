//! Scheduled publishing: an event written now, delivered by `fanout-scheduler` at its time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fanout_core::{
    headers,
    schedule::{self, ScheduleId},
    Event,
};
use fanout_kafka::{Headers, Record};
use uuid::Uuid;

use crate::{PublishError, PublishOptions, Publisher};

/// An event waiting in the schedule topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// Which entry: give it to [`Publisher::cancel`].
    pub schedule_id: ScheduleId,
    /// The event's id (`ce_id`), the one it is delivered with.
    pub event_id: Uuid,
    /// When it is delivered (or at once, if that is past when the scheduler reads it).
    pub deliver_at: SystemTime,
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Publisher {
    /// Publishes `event` to be delivered at `deliver_at`, not before: it is written now (durably,
    /// as `publish` writes) to the schedule topic, and `fanout-scheduler` delivers it then, with
    /// the key, `ce_id`, headers and payload it has now, plus `fanout_scheduled_for`. A time in
    /// the past is delivered at once. `options.not_after` bounds how late it may arrive.
    ///
    /// ```no_run
    /// # async fn example(publisher: fanout_producer::Publisher, post: fanout_events::PostPublished)
    /// # -> Result<(), fanout_producer::PublishError> {
    /// use std::time::{Duration, SystemTime};
    /// let options = fanout_producer::PublishOptions::new();
    /// let reminder = publisher.publish_after(&post, Duration::from_secs(1800), &options).await?;
    /// publisher.cancel(&reminder.schedule_id).await?; // paid in time after all
    /// # Ok(()) }
    /// ```
    pub async fn publish_at<T: Event>(
        &self,
        event: &T,
        deliver_at: SystemTime,
        options: &PublishOptions,
    ) -> Result<Scheduled, PublishError> {
        let record = self.encode(event, options).await?;
        let topic = self.schedule_topic();
        let partitions = self.schedule_partitions().await?;
        let id = Uuid::now_v7();
        let partition = schedule::partition_for(record.key.as_deref(), &id, partitions);
        let event_id = record
            .headers
            .iter()
            .find(|(name, _)| name == headers::ID)
            .and_then(|(_, value)| std::str::from_utf8(value.as_deref()?).ok()?.parse().ok())
            .unwrap_or(Uuid::nil());
        let due = millis(deliver_at).to_string();
        let not_after = options.not_after.map(|limit| millis(limit).to_string());
        let mut all: Headers = record.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
        all = all.add(schedule::TARGET_TOPIC, Some(record.topic.as_bytes()));
        if let Some(key) = &record.key {
            all = all.add(schedule::TARGET_KEY, Some(key));
        }
        all = all.add(schedule::DELIVER_AT, Some(due.as_bytes()));
        if let Some(not_after) = &not_after {
            all = all.add(schedule::NOT_AFTER, Some(not_after.as_bytes()));
        }
        let key = id.to_string();
        self.raw()
            .send(Record {
                topic,
                partition: Some(partition),
                key: Some(key.as_bytes()),
                payload: record.payload.as_deref(),
                headers: all,
            })
            .await?;
        Ok(Scheduled { schedule_id: ScheduleId { partition, id }, event_id, deliver_at })
    }

    /// [`Publisher::publish_at`] `delay` from now.
    pub async fn publish_after<T: Event>(
        &self,
        event: &T,
        delay: Duration,
        options: &PublishOptions,
    ) -> Result<Scheduled, PublishError> {
        self.publish_at(event, SystemTime::now() + delay, options).await
    }

    /// Cancels a scheduled event: once the scheduler has read this (milliseconds, as it reads
    /// its partitions live), the event is not delivered. An event already delivered stays
    /// delivered.
    pub async fn cancel(&self, schedule_id: &ScheduleId) -> Result<(), PublishError> {
        let key = schedule_id.id.to_string();
        self.raw()
            .send(Record {
                topic: self.schedule_topic(),
                partition: Some(schedule_id.partition),
                key: Some(key.as_bytes()),
                payload: None,
                headers: Headers::with_capacity(0),
            })
            .await?;
        Ok(())
    }
}
