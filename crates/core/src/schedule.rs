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
}
