//! Scheduled publishing: an event written now, delivered by `fanout-scheduler` at its time;
//! cancelled, moved or looked up with a confirmed answer.

mod state;

use state::{millis, Start, Trace};
pub use state::{CancelOutcome, Ended, RescheduleOutcome, ScheduleState};

use std::time::{Duration, SystemTime};

use fanout_core::{
    headers,
    schedule::{self, Outcome, ScheduleId},
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

impl Publisher {
    /// Publishes `event` to be delivered at `deliver_at`, not before: it is written now (durably,
    /// as `publish` writes) to the schedule topic, and `fanout-scheduler` delivers it then, with
    /// the key, `ce_id`, headers and payload it has now, plus `fanout_scheduled_for`. A time in
    /// the past is delivered at once. `options.not_after` bounds how late it may arrive. A time
    /// beyond `schedule_horizon_days` is refused ([`PublishError::BeyondHorizon`]).
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
        self.check_horizon(deliver_at)?;
        let record = self.encode(event, options).await?;
        let topic = self.schedule_topic();
        let partitions = self.schedule_partitions().await?;
        let event_id = record
            .headers
            .iter()
            .find(|(name, _)| name == headers::ID)
            .and_then(|(_, value)| std::str::from_utf8(value.as_deref()?).ok()?.parse().ok())
            .unwrap_or(Uuid::nil());
        let target = schedule::Target {
            topic: &record.topic,
            key: record.key.as_deref(),
            deliver_at_ms: millis(deliver_at),
            not_after_ms: options.not_after.map(millis),
        };
        let entry = schedule::entry(&target, &record.headers, partitions);
        self.raw()
            .send(Record {
                topic,
                partition: Some(entry.schedule_id.partition),
                key: Some(entry.key.as_bytes()),
                payload: record.payload.as_deref(),
                headers: entry.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect(),
            })
            .await?;
        Ok(Scheduled { schedule_id: entry.schedule_id, event_id, deliver_at })
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

    /// Cancels a scheduled event and says whether it came in time: [`CancelOutcome::Cancelled`]
    /// (the event will never be delivered) or [`CancelOutcome::AlreadyEnded`] (delivered, or
    /// dead-lettered, before the cancel arrived). The schedule partition's order decides, so the
    /// answer is exact even while the scheduler is delivering it: a dispatch commits only if no
    /// cancel precedes it there.
    ///
    /// Cost: the tombstone is written, then the partition is read from the entry's scheduling
    /// until the entry is found, and, when its due time has passed, from then to the tombstone.
    ///
    /// ```no_run
    /// # async fn example(publisher: fanout_producer::Publisher, id: fanout_producer::ScheduleId)
    /// # -> Result<(), fanout_producer::PublishError> {
    /// use fanout_producer::CancelOutcome;
    /// match publisher.cancel(&id).await? {
    ///     CancelOutcome::Cancelled => println!("it will not be sent"),
    ///     CancelOutcome::AlreadyEnded(ended) => println!("too late: {}", ended.outcome),
    ///     CancelOutcome::Unknown => println!("no such entry"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, schedule_id: &ScheduleId) -> Result<CancelOutcome, PublishError> {
        let key = schedule_id.id.to_string();
        let tombstone = self
            .raw()
            .send(Record {
                topic: self.schedule_topic(),
                partition: Some(schedule_id.partition),
                key: Some(key.as_bytes()),
                payload: None,
                headers: Headers::with_capacity(1)
                    .add(schedule::OUTCOME, Some(Outcome::Cancelled.as_str().as_bytes())),
            })
            .await?;
        let (config, topic, id) = (self.client_config(), self.schedule_topic().to_owned(), *schedule_id);
        let trace = self
            .blocking(move || {
                let mut trace = Trace::default();
                trace.read(&config, &topic, &id, Start::scheduled(&id), Some(tombstone.offset), true)?;
                if trace.ended.is_none() {
                    if let Some(entry) = &trace.entry {
                        let start = Start::dispatch_of(entry);
                        trace.read(&config, &topic, &id, start, Some(tombstone.offset), false)?;
                    }
                }
                Ok(trace)
            })
            .await?;
        Ok(match (trace.ended, trace.entry) {
            (Some(ended), _) => CancelOutcome::AlreadyEnded(ended),
            (None, Some(_)) => CancelOutcome::Cancelled,
            (None, None) => CancelOutcome::Unknown,
        })
    }

    /// Moves a pending scheduled event to `deliver_at`: in one Kafka transaction, the entry is
    /// cancelled and a new one (same event, same key, headers and payload; a new schedule id)
    /// takes its place, or nothing happens if the entry had already ended
    /// ([`RescheduleOutcome::AlreadyEnded`]). Rescheduling the same id twice finds it ended
    /// (cancelled, with [`Ended::rescheduled_as`] naming the entry it became).
    ///
    /// Cost: the partition is read from the entry's scheduling to now (a reschedule soon after
    /// scheduling reads little; one a day later reads a day of that partition).
    pub async fn reschedule(
        &self,
        schedule_id: &ScheduleId,
        deliver_at: SystemTime,
    ) -> Result<RescheduleOutcome, PublishError> {
        self.check_horizon(deliver_at)?;
        let (config, topic, id) = (self.client_config(), self.schedule_topic().to_owned(), *schedule_id);
        let (mut trace, read_to) = {
            let (config, topic) = (config.clone(), topic.clone());
            self.blocking(move || {
                let mut trace = Trace::default();
                trace.read(&config, &topic, &id, Start::scheduled(&id), None, false)?;
                let read_to = trace.read_to;
                Ok((trace, read_to))
            })
            .await?
        };
        let entry = match (trace.ended, trace.entry.take()) {
            (Some(ended), _) => return Ok(RescheduleOutcome::AlreadyEnded(ended)),
            (None, None) => return Ok(RescheduleOutcome::Unknown),
            (None, Some(entry)) => entry,
        };
        let next = ScheduleId { partition: id.partition, id: Uuid::now_v7() };
        let (old_key, new_key, next_text) = (id.id.to_string(), next.id.to_string(), next.to_string());
        let due = millis(deliver_at).to_string();
        let headers: Headers = entry
            .headers
            .iter()
            .filter(|(name, _)| name != schedule::DELIVER_AT)
            .map(|(name, value)| (name.as_str(), value.as_deref()))
            .collect::<Headers>()
            .add(schedule::DELIVER_AT, Some(due.as_bytes()));
        let producer = self.rescheduler().await?;
        producer.begin().await?;
        let sent = producer
            .send_all([
                Record {
                    topic: &topic,
                    partition: Some(id.partition),
                    key: Some(old_key.as_bytes()),
                    payload: None,
                    headers: Headers::with_capacity(2)
                        .add(schedule::OUTCOME, Some(Outcome::Cancelled.as_str().as_bytes()))
                        .add(schedule::RESCHEDULED_AS, Some(next_text.as_bytes())),
                },
                Record {
                    topic: &topic,
                    partition: Some(id.partition),
                    key: Some(new_key.as_bytes()),
                    payload: entry.payload.as_deref(),
                    headers,
                },
            ])
            .await;
        let tombstone = match sent.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(delivered) => delivered[0],
            Err(error) => {
                let _ = producer.abort(Duration::from_secs(30)).await;
                return Err(error.into());
            }
        };
        // Whatever ended the entry between the first read and this transaction's tombstone.
        let checked = self
            .blocking(move || {
                trace.read(
                    &config,
                    &topic,
                    &id,
                    Start { time_ms: 0, offset: read_to },
                    Some(tombstone.offset),
                    false,
                )?;
                Ok(trace.ended)
            })
            .await;
        match checked {
            Ok(None) => {
                producer.commit_records(Duration::from_secs(30)).await?;
                let event_id =
                    entry.header(headers::ID).and_then(|id| id.parse().ok()).unwrap_or(Uuid::nil());
                Ok(RescheduleOutcome::Rescheduled(Scheduled { schedule_id: next, event_id, deliver_at }))
            }
            Ok(Some(ended)) => {
                producer.abort(Duration::from_secs(30)).await?;
                Ok(RescheduleOutcome::AlreadyEnded(ended))
            }
            Err(error) => {
                let _ = producer.abort(Duration::from_secs(30)).await;
                Err(error)
            }
        }
    }

    /// What became of a scheduled event: pending (and when), or how it ended. Reads the
    /// partition from the entry's scheduling to now, transactions in flight settled.
    pub async fn schedule_state(&self, schedule_id: &ScheduleId) -> Result<ScheduleState, PublishError> {
        let (config, topic, id) = (self.client_config(), self.schedule_topic().to_owned(), *schedule_id);
        self.blocking(move || {
            let mut trace = Trace::default();
            trace.read(&config, &topic, &id, Start::scheduled(&id), None, false)?;
            Ok(trace.state())
        })
        .await
    }

    /// Runs a blocking read of the schedule topic off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> Result<T, fanout_kafka::ReadError> + Send + 'static,
    ) -> Result<T, PublishError> {
        let topic = self.schedule_topic().to_owned();
        match tokio::task::spawn_blocking(read).await {
            Ok(result) => result.map_err(|source| PublishError::Schedule { topic, source: Box::new(source) }),
            Err(_) => Err(PublishError::Produce(fanout_kafka::ProduceError::Closed)),
        }
    }
}
