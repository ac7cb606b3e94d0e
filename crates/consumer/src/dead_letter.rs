//! Dead letters read back, and redriven: [`DeadLetter`] parses the runtime's failure headers;
//! [`DeadLetter::replay`] builds the record that sends it back through its consumer's own retry
//! topic with exactly the headers the runner resumes from.
//!
//! The replay goes to `<topic>.<consumer>.retry`, not to the main topic: only the consumer that
//! failed the event sees it again, other groups of the main topic are not disturbed. The original
//! key, payload and `ce_*` headers travel unchanged, so the dedupe id is the same and an event the
//! consumer has applied since (or a replay replayed twice) is a duplicate, not a second effect.

use chrono::{DateTime, Utc};
use fanout_core::{headers as ce, topics};

use crate::{
    failure::{failure_headers, headers, parse_rfc3339, Failure},
    meta::{Origin, Record},
};

/// A record of a dead-letter topic (`<topic>.<consumer>.dlq`): the original event byte for byte,
/// and the failure history the runtime wrote in its headers (see [`crate::dlq_headers`]).
///
/// Fields parsed from headers are `None` when the header is absent or malformed: a dead-letter
/// topic may hold records someone else wrote, and reading them must not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The record key (the aggregate id), byte for byte.
    pub key: Option<Vec<u8>>,
    /// The payload (Confluent wire-format Avro, normally), byte for byte.
    pub payload: Option<Vec<u8>>,
    /// Every header, in order; non-UTF-8 values as they are.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// `ce_id`, the idempotency key.
    pub event_id: Option<String>,
    /// `ce_type`.
    pub event_type: Option<String>,
    /// The consumer that dead-lettered it.
    pub consumer: Option<String>,
    /// The last failure's text.
    pub error: Option<String>,
    /// Attempts made before it was dead-lettered.
    pub attempts: Option<u32>,
    /// The topic the event was published to.
    pub original_topic: Option<String>,
    /// Its partition there.
    pub original_partition: Option<i32>,
    /// Its offset there.
    pub original_offset: Option<i64>,
    /// When the first attempt failed.
    pub first_failure: Option<DateTime<Utc>>,
    /// When the last attempt failed (about when it was dead-lettered).
    pub last_failure: Option<DateTime<Utc>>,
}

/// A dead letter made ready to go back through its consumer's retry topic; send it with an
/// idempotent, `acks=all` producer, keyed by [`Replay::key`] so it lands on the same retry
/// partition as the runtime's own retry records of that key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replay {
    /// `<topic>.<consumer>.retry`.
    pub topic: String,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original payload.
    pub payload: Option<Vec<u8>>,
    /// The original headers, then the runtime's: attempts so far, first and last failure, last
    /// error, original position, and a not-before time of now (due at once).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Why a dead letter cannot be replayed.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A header the runner needs to resume the event (its original position, its attempts) is
    /// absent or malformed: the record was not written by the Fanout runtime.
    #[error("not a dead letter of the Fanout runtime: header {0} is missing or malformed")]
    MissingHeader(&'static str),
    /// The dead letter belongs to another consumer; replaying it here would apply it to the
    /// wrong consumer's state.
    #[error("dead letter of consumer {found:?}, not of {expected:?}")]
    OtherConsumer {
        /// The consumer asked for.
        expected: String,
        /// The consumer its header names.
        found: String,
    },
    /// The dead letter came from another topic than the one asked for.
    #[error("dead letter of topic {found:?}, not of {expected:?}")]
    OtherTopic {
        /// The topic asked for.
        expected: String,
        /// The topic its header names.
        found: String,
    },
}

fanout_core::debug_as_report!(ReplayError);

impl DeadLetter {
    /// Parses a dead letter from its parts.
    pub fn new(
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    ) -> Self {
        let record = Record {
            topic: String::new(),
            partition: 0,
            offset: 0,
            key,
            payload,
            headers,
            timestamp_ms: None,
        };
        let text = |name: &str| record.header(name).map(str::to_owned);
        let time = |name: &str| {
            record.header(name).and_then(parse_rfc3339).and_then(DateTime::<Utc>::from_timestamp_millis)
        };
        Self {
            event_id: text(ce::ID),
            event_type: text(ce::TYPE),
            consumer: text(headers::CONSUMER),
            error: text(headers::ERROR),
            attempts: record.header_i64(headers::ATTEMPTS).and_then(|a| u32::try_from(a).ok()),
            original_topic: text(headers::ORIGINAL_TOPIC),
            original_partition: record
                .header_i64(headers::ORIGINAL_PARTITION)
                .and_then(|p| i32::try_from(p).ok()),
            original_offset: record.header_i64(headers::ORIGINAL_OFFSET),
            first_failure: time(headers::FIRST_FAILURE_TIME),
            last_failure: time(headers::LAST_FAILURE_TIME),
            key: record.key,
            payload: record.payload,
            headers: record.headers,
        }
    }

    /// The first header named `name`, as UTF-8 text (a non-UTF-8 value counts as absent).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The record that replays this dead letter through `consumer`'s retry topic for `topic`,
    /// due at `now`.
    ///
    /// The attempt history carries over: the runner resumes at the dead letter's attempt count
    /// and first failure time, so if the event fails again it follows the consumer's retry
    /// settings from there (an event that had exhausted its tiers is dead-lettered again after
    /// one more attempt) and returns to the dead-letter topic with its history extended.
    pub fn replay(&self, topic: &str, consumer: &str, now: DateTime<Utc>) -> Result<Replay, ReplayError> {
        match self.consumer.as_deref() {
            Some(found) if found == consumer => {}
            Some(found) => {
                return Err(ReplayError::OtherConsumer {
                    expected: consumer.to_owned(),
                    found: found.to_owned(),
                })
            }
            None => return Err(ReplayError::MissingHeader(headers::CONSUMER)),
        }
        match self.original_topic.as_deref() {
            Some(found) if found == topic => {}
            Some(found) => {
                return Err(ReplayError::OtherTopic { expected: topic.to_owned(), found: found.to_owned() })
            }
            None => return Err(ReplayError::MissingHeader(headers::ORIGINAL_TOPIC)),
        }
        // Without its original position the runner would take the retry record's own position
        // as the event's identity, and an event without `ce_id` would lose its dedupe id.
        let partition =
            self.original_partition.ok_or(ReplayError::MissingHeader(headers::ORIGINAL_PARTITION))?;
        let offset = self.original_offset.ok_or(ReplayError::MissingHeader(headers::ORIGINAL_OFFSET))?;
        let attempts = self.attempts.ok_or(ReplayError::MissingHeader(headers::ATTEMPTS))?;
        let record = Record {
            topic: topics::dead_letter(topic, consumer),
            partition: 0,
            offset: 0,
            key: self.key.clone(),
            payload: self.payload.clone(),
            headers: self.headers.clone(),
            timestamp_ms: None,
        };
        let failure = Failure {
            consumer,
            origin: Origin { topic, partition, offset },
            attempts,
            error: self.error.as_deref(),
            first_failure_ms: self.first_failure.map(|t| t.timestamp_millis()),
            last_failure_ms: self.last_failure.map(|t| t.timestamp_millis()),
        };
        // The same function that writes the runtime's retry records, so a replay is
        // indistinguishable from one: the runner needs no special case for it.
        let extra = [(headers::NOT_BEFORE, now.timestamp_millis().to_string())];
        Ok(Replay {
            topic: topics::retry(topic, consumer),
            key: record.key.clone(),
            payload: record.payload.clone(),
            headers: failure_headers(&record, &failure, &extra),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dispatch::Work,
        failure::{origin, resume_from_headers},
        meta::EventMeta,
    };

    fn dead_letter_headers() -> Vec<(String, Option<Vec<u8>>)> {
        let source = Record {
            topic: "post.published".into(),
            partition: 2,
            offset: 41,
            key: Some(b"k".to_vec()),
            payload: Some(vec![0, 0, 0, 0, 1, 2]),
            headers: vec![
                (ce::ID.into(), Some(b"event-1".to_vec())),
                (ce::TYPE.into(), Some(b"post.published".to_vec())),
                ("binary".into(), Some(vec![0xff])),
            ],
            timestamp_ms: None,
        };
        let failure = Failure {
            consumer: "rewards",
            origin: Origin { topic: "post.published", partition: 2, offset: 41 },
            attempts: 4,
            error: Some("permanent: broken"),
            first_failure_ms: Some(1_000),
            last_failure_ms: Some(9_000),
        };
        failure_headers(&source, &failure, &[])
    }

    #[test]
    fn a_dead_letter_parses_its_history() {
        let letter = DeadLetter::new(Some(b"k".to_vec()), None, dead_letter_headers());
        assert_eq!(letter.event_id.as_deref(), Some("event-1"));
        assert_eq!(letter.event_type.as_deref(), Some("post.published"));
        assert_eq!(letter.consumer.as_deref(), Some("rewards"));
        assert_eq!(letter.attempts, Some(4));
        assert_eq!(letter.original_partition, Some(2));
        assert_eq!(letter.original_offset, Some(41));
        assert_eq!(letter.first_failure.map(|t| t.timestamp_millis()), Some(1_000));
        assert_eq!(letter.error.as_deref(), Some("permanent: broken"));
        let foreign = DeadLetter::new(None, None, vec![("x".into(), None)]);
        assert_eq!(foreign.attempts, None);
        assert_eq!(
            foreign.replay("post.published", "rewards", Utc::now()),
            Err(ReplayError::MissingHeader(headers::CONSUMER))
        );
    }

    #[test]
    fn the_runner_resumes_a_replay_where_the_dead_letter_left_off() {
        let letter =
            DeadLetter::new(Some(b"k".to_vec()), Some(vec![0, 0, 0, 0, 1, 2]), dead_letter_headers());
        let now = DateTime::<Utc>::from_timestamp_millis(20_000).unwrap_or_default();
        let replay = letter.replay("post.published", "rewards", now).expect("replayable");
        assert_eq!(replay.topic, "post.published.rewards.retry");
        // Read back as the runner reads its retry topic.
        let fetched = Record {
            topic: replay.topic.clone(),
            partition: 0,
            offset: 7,
            key: replay.key.clone(),
            payload: replay.payload.clone(),
            headers: replay.headers.clone(),
            timestamp_ms: None,
        };
        let mut work = Work::new(fetched.clone());
        resume_from_headers(&mut work);
        assert_eq!(work.attempt, 4);
        assert_eq!(work.first_failure_ms, Some(1_000));
        assert_eq!(work.not_before_ms, 20_000);
        let from = origin(&fetched, "post.published", true);
        assert_eq!((from.partition, from.offset), (2, 41));
        assert_eq!(EventMeta::of(&fetched, from, 5, &"rewards".into()).event_id, "event-1");
        // Original headers first and unchanged, runtime headers once each.
        assert_eq!(&replay.headers[..3], &dead_letter_headers()[..3]);
        for name in headers::ALL.iter().filter(|n| **n != headers::HELD_BACK) {
            assert_eq!(replay.headers.iter().filter(|(k, _)| k == name).count(), 1, "{name}");
        }
        assert_eq!(
            letter.replay("post.published", "stats", now),
            Err(ReplayError::OtherConsumer { expected: "stats".into(), found: "rewards".into() })
        );
        assert!(matches!(letter.replay("other", "rewards", now), Err(ReplayError::OtherTopic { .. })));
    }
}
