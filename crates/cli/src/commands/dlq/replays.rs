//! Which dead letters were replayed, and when: `<topic>.<consumer>.dlq.replays`.
//!
//! A dead letter stays in its topic after a replay (Kafka does not delete single records), so
//! `fanout dlq replay` records each replay in a compacted topic of its own, once the replayed
//! record was acknowledged: keyed by the dead letter's position (`<partition>/<offset>`), the
//! value saying when, where the replay landed and which run sent it. Compaction keeps the latest
//! replay of each dead letter. A crash between the replay and its record leaves a replayed dead
//! letter shown as not replayed; replaying it again is harmless (the consumer dedupes on `ce_id`).

use std::{collections::HashMap, ops::ControlFlow, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use fanout_kafka::{ReadError, TopicRead, TopicSpec};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One replay of a dead letter, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Mark {
    /// The dead letter's partition in the dead-letter topic.
    pub(super) dlq_partition: i32,
    /// Its offset there.
    pub(super) dlq_offset: i64,
    /// Its `ce_id`, so the record reads on its own.
    pub(super) ce_id: Option<String>,
    /// When the replay was acknowledged.
    pub(super) replayed_at: DateTime<Utc>,
    /// Where the replay landed: the consumer's retry topic, or for a replay at a later time
    /// (`--at`/`--after`), the schedule topic.
    pub(super) replayed_to: Landed,
    /// The `fanout dlq replay` run that sent it (one id per run).
    pub(super) run: String,
    /// For a replay at a later time: when `fanout-scheduler` delivers it to the retry topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) scheduled_for: Option<DateTime<Utc>>,
    /// For a replay at a later time: its schedule entry (`PARTITION:UUID`, for
    /// `fanout schedule cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) schedule_id: Option<String>,
}

/// A record's place in a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Landed {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
}

impl Mark {
    /// The record's key: the dead letter's position, so compaction keeps one replay per letter.
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.dlq_partition, self.dlq_offset)
    }

    /// The record's value.
    pub(super) fn value(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    /// The `replayed` field of a listed dead letter: the time of its latest replay, null for none.
    pub(super) fn shown(mark: Option<&Mark>) -> Value {
        match mark {
            Some(mark) => json!(mark.replayed_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => Value::Null,
        }
    }

    /// The `replay_scheduled_for` field of a listed dead letter: when its latest replay is (or
    /// was) delivered, for a replay at a later time; null otherwise.
    pub(super) fn scheduled(mark: Option<&Mark>) -> Value {
        match mark.and_then(|mark| mark.scheduled_for) {
            Some(at) => json!(at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => Value::Null,
        }
    }
}

/// The topic, created before the first replay is sent: compacted, one partition (the records
/// are few, and one partition keeps them in the order they were written).
pub(super) fn spec(topic: &str) -> TopicSpec {
    TopicSpec::new(topic, 1).with("cleanup.policy", "compact")
}

/// The latest recorded replay of each dead letter, by (partition, offset) in the dead-letter
/// topic; none when nothing was ever replayed (the topic does not exist). Records that are not
/// marks are skipped: the topic is an operator's to write to as well. Blocking.
pub(super) fn read(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<(i32, i64), Mark>, ReadError> {
    let mut marks = HashMap::new();
    let read = TopicRead::new(topic).timeout(timeout).read_blocking(config, |record| {
        if let Some(mark) = record.payload.as_deref().and_then(|v| serde_json::from_slice::<Mark>(v).ok()) {
            // One partition, read in offset order: a later replay replaces an earlier one.
            marks.insert((mark.dlq_partition, mark.dlq_offset), mark);
        }
        ControlFlow::Continue(())
    });
    match read {
        Ok(()) | Err(ReadError::UnknownTopic { .. }) => Ok(marks),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_is_keyed_by_the_dead_letters_position() {
        let mark = Mark {
            dlq_partition: 2,
            dlq_offset: 41,
            ce_id: Some("event-1".into()),
            replayed_at: DateTime::from_timestamp_millis(1_767_322_800_123).unwrap_or_default(),
            replayed_to: Landed { topic: "t.c.retry".into(), partition: 0, offset: 7 },
            run: "run-1".into(),
            scheduled_for: None,
            schedule_id: None,
        };
        assert_eq!(mark.key(), "2/41");
        let value = mark.value().expect("serializes");
        let parsed: Mark = serde_json::from_slice(&value).expect("parses back");
        assert_eq!(parsed, mark);
        assert!(!String::from_utf8_lossy(&value).contains("scheduled_for"), "absent unless scheduled");
        assert_eq!(Mark::shown(Some(&mark)), json!("2026-01-02T03:00:00.123Z"));
        assert_eq!(Mark::shown(None), Value::Null);
        assert_eq!(Mark::scheduled(Some(&mark)), Value::Null);

        let scheduled = Mark {
            replayed_to: Landed { topic: "_fanout_schedule".into(), partition: 1, offset: 3 },
            scheduled_for: DateTime::from_timestamp_millis(1_767_322_860_000),
            schedule_id: Some("1:01a22a6d-bc06-748d-af7d-2a7cd629c4fc".into()),
            ..mark
        };
        let parsed: Mark =
            serde_json::from_slice(&scheduled.value().expect("serializes")).expect("parses back");
        assert_eq!(parsed, scheduled);
        assert_eq!(Mark::scheduled(Some(&scheduled)), json!("2026-01-02T03:01:00.000Z"));
    }
}
