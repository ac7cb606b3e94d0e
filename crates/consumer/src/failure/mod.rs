//! After a failed attempt: what happens next ([`plan`]), and the records that carry a failed
//! event to its consumer's retry and dead-letter topics — the original key, payload and headers
//! byte for byte, plus the runtime's own headers ([`headers`]), written here and read back here
//! (a retry record resumes from them; [`crate::DeadLetter`] parses them).

pub(crate) mod plan;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use fanout_core::schedule;
use fanout_kafka::{ProduceError, ProducerConfigError, ReadError, RecordProducer};
use rdkafka::ClientConfig;

use crate::{
    config::RetrySettings,
    dispatch::Work,
    meta::{Origin, Record},
    routing::Binding,
};

/// Header names the runtime adds to retry and dead-letter records (values are UTF-8 text).
pub mod headers {
    /// Why the event failed last (the handler's or decoder's error text).
    pub const ERROR: &str = "fanout_error";
    /// Attempts made so far (decimal).
    pub const ATTEMPTS: &str = "fanout_attempts";
    /// The topic the event was published to.
    pub const ORIGINAL_TOPIC: &str = "fanout_original_topic";
    /// Its partition there (decimal).
    pub const ORIGINAL_PARTITION: &str = "fanout_original_partition";
    /// Its offset there (decimal).
    pub const ORIGINAL_OFFSET: &str = "fanout_original_offset";
    /// The consumer that failed it.
    pub const CONSUMER: &str = "fanout_consumer";
    /// When the first attempt failed, RFC 3339.
    pub const FIRST_FAILURE_TIME: &str = "fanout_first_failure_time";
    /// When the last attempt failed, RFC 3339.
    pub const LAST_FAILURE_TIME: &str = "fanout_last_failure_time";
    /// Retry records only: not to be run before this time, milliseconds since the epoch.
    pub const NOT_BEFORE: &str = "fanout_not_before";
    /// Retry records only: `true` when the event itself did not fail but waits behind an earlier
    /// event of its key.
    pub const HELD_BACK: &str = "fanout_held_back";

    /// Every runtime header; replaced, never duplicated, when a record passes through again.
    pub const ALL: [&str; 10] = [
        ERROR,
        ATTEMPTS,
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        CONSUMER,
        FIRST_FAILURE_TIME,
        LAST_FAILURE_TIME,
        NOT_BEFORE,
        HELD_BACK,
    ];
}

/// The failure history that travels with a record.
#[derive(Debug, Clone)]
pub(crate) struct Failure<'a> {
    pub(crate) consumer: &'a str,
    pub(crate) origin: Origin<'a>,
    pub(crate) attempts: u32,
    pub(crate) error: Option<&'a str>,
    pub(crate) first_failure_ms: Option<i64>,
    pub(crate) last_failure_ms: Option<i64>,
}

/// The headers of a retry or dead-letter record: the original ones in their order (earlier
/// runtime headers removed), then the runtime's.
pub(crate) fn failure_headers(
    record: &Record,
    failure: &Failure<'_>,
    extra: &[(&'static str, String)],
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out: Vec<(String, Option<Vec<u8>>)> =
        record.headers.iter().filter(|(k, _)| !headers::ALL.contains(&k.as_str())).cloned().collect();
    let mut add = |name: &str, value: String| out.push((name.to_owned(), Some(value.into_bytes())));
    add(headers::CONSUMER, failure.consumer.to_owned());
    add(headers::ORIGINAL_TOPIC, failure.origin.topic.to_owned());
    add(headers::ORIGINAL_PARTITION, failure.origin.partition.to_string());
    add(headers::ORIGINAL_OFFSET, failure.origin.offset.to_string());
    add(headers::ATTEMPTS, failure.attempts.to_string());
    if let Some(error) = failure.error {
        add(headers::ERROR, error.to_owned());
    }
    if let Some(first) = failure.first_failure_ms.and_then(rfc3339) {
        add(headers::FIRST_FAILURE_TIME, first);
    }
    if let Some(last) = failure.last_failure_ms.and_then(rfc3339) {
        add(headers::LAST_FAILURE_TIME, last);
    }
    for (name, value) in extra {
        add(name, value.clone());
    }
    out
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// RFC 3339 back to milliseconds since the epoch.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

/// Where the event was first published: the record's own position, or for a record fetched from
/// the retry topic, the position its headers name.
pub(crate) fn origin<'a>(record: &'a Record, topic: &'a str, on_retry_topic: bool) -> Origin<'a> {
    if on_retry_topic {
        if let (Some(partition), Some(offset)) =
            (record.header_i64(headers::ORIGINAL_PARTITION), record.header_i64(headers::ORIGINAL_OFFSET))
        {
            return Origin { topic, partition: partition as i32, offset };
        }
    }
    Origin { topic, partition: record.partition, offset: record.offset }
}

/// A record fetched from a retry topic resumes where its headers say: attempts made, first
/// failure, and not before its due time.
pub(crate) fn resume_from_headers(work: &mut Work) {
    let record = &work.record;
    work.attempt = record.header_i64(headers::ATTEMPTS).and_then(|a| u32::try_from(a).ok()).unwrap_or(0);
    work.not_before_ms = record.header_i64(headers::NOT_BEFORE).unwrap_or(0);
    work.first_failure_ms = record.header(headers::FIRST_FAILURE_TIME).and_then(parse_rfc3339);
    work.last_error = record.header(headers::ERROR).map(str::to_owned);
}

/// What a failed attempt leaves on its record: which attempt it was, why, and when the first and
/// this failure happened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempts<'a> {
    pub(crate) origin: Origin<'a>,
    pub(crate) attempts: u32,
    pub(crate) error: &'a str,
    pub(crate) first_failure_ms: i64,
    pub(crate) last_failure_ms: i64,
}

/// Why a retry or dead-letter record was not sent: the batch is rolled back and runs again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The broker did not acknowledge it.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// The schedule topic's partitions are unknown, so the entry has no partition to go to.
    #[error("cannot look up the schedule topic {topic} (does fanout-scheduler run on it?)")]
    ScheduleTopic {
        /// `retry.schedule_topic`.
        topic: String,
        /// Why.
        #[source]
        source: ReadError,
    },
}

/// Where delayed retries wait with `retry.scheduler` on.
#[derive(Debug)]
struct ScheduleTopic {
    name: String,
    /// Asked of the cluster at the first delayed retry, not at start-up: the scheduler (which
    /// creates the topic) may well start after its first consumer.
    partitions: tokio::sync::OnceCell<i32>,
    client: ClientConfig,
}

impl ScheduleTopic {
    async fn partitions(&self) -> Result<i32, SendError> {
        let partitions = self.partitions.get_or_try_init(|| async {
            let (client, topic) = (self.client.clone(), self.name.clone());
            let looked_up = tokio::task::spawn_blocking(move || {
                fanout_kafka::topic_partitions(&client, &topic, Duration::from_secs(10))
            })
            .await;
            match looked_up {
                Ok(Ok(partitions)) => Ok(i32::try_from(partitions.len()).unwrap_or(i32::MAX)),
                Ok(Err(source)) => Err(SendError::ScheduleTopic { topic: self.name.clone(), source }),
                // Only a runtime shutting down cancels the lookup: nothing is sent then.
                Err(_) => Err(SendError::Produce(ProduceError::Closed)),
            }
        });
        partitions.await.copied()
    }
}

/// Sends a consumer's retry and dead-letter records through the platform's record producer
/// (idempotent, `acks=all`), each with the failure headers it needs. Every send waits for the
/// broker's acknowledgement: the caller commits the source event only after it returns `Ok`, so
/// a record is never lost between the two topics.
///
/// With `retry.scheduler` on, the records that enter the retry path from a main topic are written
/// to the schedule topic instead, as entries ([`schedule::entry`]) the scheduler delivers to the
/// retry topic at their due time, byte for byte (plus `fanout_scheduled_for`). That write has the
/// same guarantee as the direct one: acknowledged before the store transaction that parks the
/// key commits. A held-back event (a later event of a key whose earlier one waits) must not
/// reach the retry topic before that one: the scheduler delivers one key's entries in due order,
/// and the earlier event was due `delays_ms[0]` after it left (every event enters the retry path
/// from its main topic at the first tier), so the held-back one is due `delays_ms[0]` after
/// *it* leaves, which is later. Consumer instances taking over one another's partitions must
/// therefore have clocks that agree (NTP), as the scheduler already requires.
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    producer: RecordProducer,
    consumer: Arc<str>,
    schedule: Option<Arc<ScheduleTopic>>,
    /// How long a held-back event waits in the schedule: the first tier's delay.
    hold_back_ms: i64,
}

impl Outbound {
    /// The outbound records of `consumer`, produced with `producer`; `kafka` looks up the
    /// schedule topic when `retry.scheduler` is on.
    pub(crate) fn new(
        producer: &ClientConfig,
        kafka: &ClientConfig,
        retry: &RetrySettings,
        consumer: Arc<str>,
    ) -> Result<Self, ProducerConfigError> {
        let schedule = retry.scheduler.then(|| {
            Arc::new(ScheduleTopic {
                name: retry.schedule_topic.clone(),
                partitions: tokio::sync::OnceCell::new(),
                client: kafka.clone(),
            })
        });
        let first = retry.delays_ms.first().copied().unwrap_or(0);
        Ok(Self {
            producer: RecordProducer::from_config(producer.clone())?,
            consumer,
            schedule,
            hold_back_ms: i64::try_from(first).unwrap_or(i64::MAX / 2),
        })
    }

    /// To the retry topic, due at `due_ms`, after a failed attempt (through the scheduler, when
    /// it is on).
    pub(crate) async fn retry(
        &self,
        binding: &Binding,
        record: &Record,
        failed: Attempts<'_>,
        due_ms: i64,
    ) -> Result<(), SendError> {
        let extra = [(headers::NOT_BEFORE, due_ms.to_string())];
        let headers = failure_headers(record, &self.failure(failed), &extra);
        self.send_due(&binding.retry_topic, record, headers, due_ms).await
    }

    /// To the retry topic without an attempt of its own: an earlier event of its key waits in the
    /// retry path, and this one queues behind it instead of overtaking it. Due at once on the
    /// retry topic; through the scheduler, due the first tier's delay from now (see [`Outbound`]).
    pub(crate) async fn hold_back(
        &self,
        binding: &Binding,
        record: &Record,
        origin: Origin<'_>,
        attempts: u32,
        now_ms: i64,
    ) -> Result<(), SendError> {
        let failure = Failure {
            consumer: &self.consumer,
            origin,
            attempts,
            error: None,
            first_failure_ms: None,
            last_failure_ms: None,
        };
        let due_ms = if self.schedule.is_some() { now_ms.saturating_add(self.hold_back_ms) } else { now_ms };
        let extra = [(headers::NOT_BEFORE, due_ms.to_string()), (headers::HELD_BACK, "true".to_owned())];
        let headers = failure_headers(record, &failure, &extra);
        self.send_due(&binding.retry_topic, record, headers, due_ms).await
    }

    /// To the dead-letter topic, with its whole failure history.
    pub(crate) async fn dead_letter(
        &self,
        binding: &Binding,
        record: &Record,
        failed: Attempts<'_>,
    ) -> Result<(), SendError> {
        let headers = failure_headers(record, &self.failure(failed), &[]);
        self.send(&binding.dlq_topic, None, record.key.as_deref(), record, &headers).await
    }

    fn failure<'a>(&'a self, failed: Attempts<'a>) -> Failure<'a> {
        Failure {
            consumer: &self.consumer,
            origin: failed.origin,
            attempts: failed.attempts,
            error: Some(failed.error),
            first_failure_ms: Some(failed.first_failure_ms),
            last_failure_ms: Some(failed.last_failure_ms),
        }
    }

    /// To `topic` now, or with the scheduler on, to the schedule topic as an entry delivered to
    /// `topic` at `due_ms`.
    async fn send_due(
        &self,
        topic: &str,
        record: &Record,
        headers: Vec<(String, Option<Vec<u8>>)>,
        due_ms: i64,
    ) -> Result<(), SendError> {
        let Some(schedule) = &self.schedule else {
            return self.send(topic, None, record.key.as_deref(), record, &headers).await;
        };
        let target =
            schedule::Target { topic, key: record.key.as_deref(), deliver_at_ms: due_ms, not_after_ms: None };
        let entry = schedule::entry(&target, &headers, schedule.partitions().await?);
        let partition = Some(entry.schedule_id.partition);
        self.send(&schedule.name, partition, Some(entry.key.as_bytes()), record, &entry.headers).await
    }

    async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        record: &Record,
        headers: &[(String, Option<Vec<u8>>)],
    ) -> Result<(), SendError> {
        let record = fanout_kafka::Record {
            partition,
            topic,
            key,
            payload: record.payload.as_deref(),
            headers: headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())).collect(),
        };
        self.producer.send(record).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_headers_are_kept_and_runtime_headers_replaced() {
        let record = Record {
            topic: "t.c.retry".into(),
            partition: 0,
            offset: 4,
            key: Some(b"k".to_vec()),
            payload: Some(vec![0, 1, 2]),
            headers: vec![
                ("ce_id".into(), Some(b"id".to_vec())),
                (headers::ATTEMPTS.into(), Some(b"3".to_vec())),
                ("binary".into(), Some(vec![0xff, 0x00])),
                ("null".into(), None),
            ],
            timestamp_ms: None,
        };
        let failure = Failure {
            consumer: "c",
            origin: Origin { topic: "t", partition: 1, offset: 9 },
            attempts: 5,
            error: Some("boom"),
            first_failure_ms: Some(0),
            last_failure_ms: Some(1_000),
        };
        let out = failure_headers(&record, &failure, &[]);
        assert_eq!(
            &out[..3],
            &record.headers[..1].iter().chain(&record.headers[2..]).cloned().collect::<Vec<_>>()[..]
        );
        let get = |name: &str| out.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.clone());
        assert_eq!(get(headers::ATTEMPTS), Some(b"5".to_vec()));
        assert_eq!(out.iter().filter(|(k, _)| k == headers::ATTEMPTS).count(), 1);
        assert_eq!(get(headers::ORIGINAL_TOPIC), Some(b"t".to_vec()));
        assert_eq!(get(headers::FIRST_FAILURE_TIME), Some(b"1970-01-01T00:00:00.000Z".to_vec()));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.000Z"), Some(1_000));
    }
}
