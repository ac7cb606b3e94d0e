//! Delayed delivery's record format, shared by the SDK that schedules (`Publisher::publish_at`)
//! and `fanout-scheduler` that delivers.
//!
//! A scheduled event is written to the schedule topic ([`TOPIC`]) as the very record `publish`
//! would have sent — same payload bytes, same CloudEvents headers — with the record's key
//! replaced by the schedule id (the topic is compacted by it, so a delivered or cancelled entry
//! is a tombstone and disappears) and the routing carried in headers: [`TARGET_TOPIC`],
//! [`TARGET_KEY`], [`DELIVER_AT`] and optionally [`NOT_AFTER`]. The scheduler strips those at
//! delivery and adds [`SCHEDULED_FOR`].
//!
//! Entries go to the schedule partition of their *target key* ([`partition_for`]), so one key's
//! scheduled events are owned by one scheduler instance and delivered in (due time, schedule
//! order).

use std::{fmt, str::FromStr};

use uuid::Uuid;

/// The schedule topic's default name.
pub const TOPIC: &str = "_fanout_schedule";
/// Header: the topic the event is delivered to.
pub const TARGET_TOPIC: &str = "fanout_schedule_topic";
/// Header: the key the event is delivered with (absent: no key).
pub const TARGET_KEY: &str = "fanout_schedule_key";
/// Header: when to deliver, Unix milliseconds (decimal). Never before.
pub const DELIVER_AT: &str = "fanout_deliver_at";
/// Header: the latest acceptable delivery, Unix milliseconds; later, the entry is dead-lettered
/// with the reason instead of arriving late.
pub const NOT_AFTER: &str = "fanout_not_after";
/// Header on the delivered event: the time it was scheduled for, Unix milliseconds.
pub const SCHEDULED_FOR: &str = "fanout_scheduled_for";
/// The dead-letter topic of the schedule topic `topic`: entries that could not be delivered
/// (expired, unreadable), each with the reason in [`REASON`].
///
/// ```
/// assert_eq!(fanout_core::schedule::dead_letters("_fanout_schedule"), "_fanout_schedule.dlq");
/// ```
pub fn dead_letters(topic: &str) -> String {
    format!("{topic}.dlq")
}
/// Header on a dead-lettered entry: why it was not delivered.
pub const REASON: &str = "fanout_schedule_reason";

/// Header on a tombstone of the schedule topic: how the entry ended, an [`Outcome`] (absent on
/// tombstones older than this header: read as [`Outcome::Cancelled`]).
pub const OUTCOME: &str = "fanout_schedule_outcome";
/// Header on the tombstone a reschedule writes (`Publisher::reschedule`): the schedule id the
/// entry moved to.
pub const RESCHEDULED_AS: &str = "fanout_rescheduled_as";
/// The key of a dispatch marker: the first record each dispatch transaction writes to a schedule
/// partition, listing the entries it ends (see [`marker`]). One key, so compaction keeps only a
/// partition's latest marker.
pub const MARKER_KEY: &str = "_fanout_dispatch";

/// How a scheduled entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Written to its target topic.
    Delivered,
    /// Not delivered by its `not_after` time: dead-lettered with the reason.
    Expired,
    /// Unreadable or refused by its target for good: dead-lettered with the reason.
    Invalid,
    /// Cancelled (or rescheduled: a new entry took its place) before it was dispatched.
    Cancelled,
}

impl Outcome {
    /// Its name in headers, markers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Expired => "expired",
            Self::Invalid => "invalid",
            Self::Cancelled => "cancelled",
        }
    }

    /// The outcome named `name` (as [`Outcome::as_str`] writes it).
    pub fn parse(name: &[u8]) -> Option<Self> {
        [Self::Delivered, Self::Expired, Self::Invalid, Self::Cancelled]
            .into_iter()
            .find(|outcome| outcome.as_str().as_bytes() == name)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Dispatch markers: why a cancel can be told whether it came in time.
///
/// A dispatch transaction first writes, to each schedule partition it touches, one marker
/// record (key [`MARKER_KEY`]) whose value lists the entries it ends, one `ID OUTCOME` line each;
/// only then does it check that no cancel of those entries precedes the marker, and write the
/// events and tombstones. So the partition's order decides, for readers and the scheduler alike:
/// a cancel written before the committed marker that lists its entry took the entry back; one
/// written after it came too late.
///
/// ```
/// use fanout_core::schedule::{marker, Outcome};
///
/// let value = marker::encode([("a", Outcome::Delivered), ("b", Outcome::Expired)]);
/// assert_eq!(marker::decode(&value).collect::<Vec<_>>(), [("a", Outcome::Delivered), ("b", Outcome::Expired)]);
/// ```
pub mod marker {
    use super::Outcome;

    /// A marker's value for these (entry id, outcome) pairs.
    pub fn encode<'a>(ended: impl IntoIterator<Item = (&'a str, Outcome)>) -> Vec<u8> {
        let mut value = Vec::new();
        for (id, outcome) in ended {
            value.extend_from_slice(id.as_bytes());
            value.push(b' ');
            value.extend_from_slice(outcome.as_str().as_bytes());
            value.push(b'\n');
        }
        value
    }

    /// The (entry id, outcome) pairs of a marker's value; unreadable lines are skipped.
    pub fn decode(value: &[u8]) -> impl Iterator<Item = (&str, Outcome)> {
        value.split(|byte| *byte == b'\n').filter_map(|line| {
            let space = line.iter().position(|byte| *byte == b' ')?;
            let id = std::str::from_utf8(&line[..space]).ok()?;
            Some((id, Outcome::parse(&line[space + 1..])?))
        })
    }
}

/// Which scheduled entry: the schedule partition it lives in and its id (the record key).
/// Printed and parsed as `PARTITION:UUID`.
///
/// ```
/// use fanout_core::schedule::ScheduleId;
///
/// let id: ScheduleId = "3:01a22a6d-bc06-748d-af7d-2a7cd629c4fc".parse().unwrap();
/// assert_eq!(id.partition, 3);
/// assert_eq!(id.to_string(), "3:01a22a6d-bc06-748d-af7d-2a7cd629c4fc");
/// assert!("3".parse::<ScheduleId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScheduleId {
    /// The schedule topic's partition.
    pub partition: i32,
    /// The entry's id, its record key.
    pub id: Uuid,
}

impl ScheduleId {
    /// When the entry was scheduled, Unix milliseconds: the SDK's ids are UUIDv7, whose first
    /// 48 bits are that time (`None` for an id of another version).
    ///
    /// ```
    /// let id = fanout_core::schedule::ScheduleId { partition: 0, id: uuid::Uuid::now_v7() };
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    /// assert!((now.as_millis() as i64 - id.scheduled_at_ms().unwrap()).abs() < 1_000);
    /// ```
    pub fn scheduled_at_ms(&self) -> Option<i64> {
        let (seconds, nanos) = self.id.get_timestamp()?.to_unix();
        Some(seconds as i64 * 1_000 + i64::from(nanos / 1_000_000))
    }
}

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.id)
    }
}

/// A text that is not `PARTITION:UUID`.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a schedule id (PARTITION:UUID): {0:?}")]
pub struct ScheduleIdError(String);
crate::debug_as_report!(ScheduleIdError);

impl FromStr for ScheduleId {
    type Err = ScheduleIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ScheduleIdError(text.to_owned());
        let (partition, id) = text.split_once(':').ok_or_else(bad)?;
        let partition = partition.parse().ok().filter(|p: &i32| *p >= 0).ok_or_else(bad)?;
        Ok(Self { partition, id: Uuid::parse_str(id).map_err(|_| bad())? })
    }
}

/// The schedule partition of an event with target key `key` (FNV-1a, stable across processes
/// and versions); keyless events spread by their id.
pub fn partition_for(key: Option<&[u8]>, id: &Uuid, partitions: i32) -> i32 {
    let bytes = key.unwrap_or(id.as_bytes());
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % partitions.max(1) as u64) as i32
}

/// Where and when a record is to be delivered: what [`entry`] writes into its routing headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The topic it is delivered to.
    pub topic: &'a str,
    /// The key it is delivered with (and partitioned by, in the schedule topic and the target).
    pub key: Option<&'a [u8]>,
    /// When to deliver it, Unix milliseconds; never before.
    pub deliver_at_ms: i64,
    /// The latest acceptable delivery, Unix milliseconds ([`NOT_AFTER`]).
    pub not_after_ms: Option<i64>,
}

/// A record made a schedule entry by [`entry`]: send it to the schedule topic's
/// `schedule_id.partition` with key `key` and these headers, its payload unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Which entry it is (give it to a cancel).
    pub schedule_id: ScheduleId,
    /// The record key: the schedule id's UUID as text.
    pub key: String,
    /// The record's own headers, in order, then the routing headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The one way a record becomes a schedule entry (the SDK's `publish_at`, a consumer's delayed
/// retry, `fanout dlq replay --at` all use it): a fresh id, the schedule partition of the target
/// key among `partitions`, and the record's `headers` followed by the routing headers. Routing
/// headers the record already carries, and a [`SCHEDULED_FOR`] from an earlier delivery, are
/// dropped: the scheduler adds its own at delivery, and two would make the record ambiguous.
///
/// ```
/// use fanout_core::schedule::{self, Target};
///
/// let headers = vec![("ce_id".to_owned(), Some(b"e1".to_vec()))];
/// let target = Target { topic: "orders", key: Some(b"42"), deliver_at_ms: 1_000, not_after_ms: None };
/// let entry = schedule::entry(&target, &headers, 12);
/// assert_eq!(entry.key, entry.schedule_id.id.to_string());
/// assert_eq!(entry.schedule_id.partition, schedule::partition_for(Some(b"42"), &entry.schedule_id.id, 12));
/// let names: Vec<&str> = entry.headers.iter().map(|(n, _)| n.as_str()).collect();
/// assert_eq!(names, ["ce_id", schedule::TARGET_TOPIC, schedule::TARGET_KEY, schedule::DELIVER_AT]);
/// ```
pub fn entry(target: &Target<'_>, headers: &[(String, Option<Vec<u8>>)], partitions: i32) -> Entry {
    const ROUTING: [&str; 5] = [TARGET_TOPIC, TARGET_KEY, DELIVER_AT, NOT_AFTER, SCHEDULED_FOR];
    let id = Uuid::now_v7();
    let partition = partition_for(target.key, &id, partitions);
    let mut all: Vec<(String, Option<Vec<u8>>)> = Vec::with_capacity(headers.len() + 4);
    all.extend(headers.iter().filter(|(name, _)| !ROUTING.contains(&name.as_str())).cloned());
    all.push((TARGET_TOPIC.to_owned(), Some(target.topic.as_bytes().to_vec())));
    if let Some(key) = target.key {
        all.push((TARGET_KEY.to_owned(), Some(key.to_vec())));
    }
    all.push((DELIVER_AT.to_owned(), Some(target.deliver_at_ms.to_string().into_bytes())));
    if let Some(not_after) = target.not_after_ms {
        all.push((NOT_AFTER.to_owned(), Some(not_after.to_string().into_bytes())));
    }
    Entry { schedule_id: ScheduleId { partition, id }, key: id.to_string(), headers: all }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_always_lands_in_one_partition() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(partition_for(Some(b"42"), &a, 12), partition_for(Some(b"42"), &b, 12));
        let spread: std::collections::HashSet<i32> =
            (0..200).map(|n| partition_for(Some(n.to_string().as_bytes()), &a, 12)).collect();
        assert!(spread.len() > 8, "keys spread over the partitions: {spread:?}");
        assert!((0..50).all(|_| (0..12).contains(&partition_for(None, &Uuid::new_v4(), 12))));
    }

    #[test]
    fn an_entry_carries_the_record_headers_once_then_its_routing() {
        let headers = vec![
            ("ce_id".to_owned(), Some(b"e1".to_vec())),
            (SCHEDULED_FOR.to_owned(), Some(b"5".to_vec())),
            (DELIVER_AT.to_owned(), Some(b"6".to_vec())),
            ("null".to_owned(), None),
        ];
        let target = Target { topic: "t", key: None, deliver_at_ms: 7, not_after_ms: Some(9) };
        let entry = entry(&target, &headers, 3);
        let expected: Vec<(String, Option<Vec<u8>>)> = vec![
            ("ce_id".into(), Some(b"e1".to_vec())),
            ("null".into(), None),
            (TARGET_TOPIC.into(), Some(b"t".to_vec())),
            (DELIVER_AT.into(), Some(b"7".to_vec())),
            (NOT_AFTER.into(), Some(b"9".to_vec())),
        ];
        assert_eq!(entry.headers, expected);
        assert!((0..3).contains(&entry.schedule_id.partition));
    }
}
