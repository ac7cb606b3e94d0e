//! What the schedule topic says of one entry: pending, or how it ended.
//!
//! The schedule partition's order is the arbiter (see [`fanout_core::schedule::marker`]): an
//! entry ended at the first of its cancel tombstone or the committed dispatch marker listing
//! it. Reading it back is a bounded read of that one partition, `read_committed`, from when the
//! entry was scheduled (its id is a UUIDv7, which carries that time).

use std::{
    ops::ControlFlow,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fanout_core::schedule::{self, marker, Outcome, ScheduleId};
use fanout_kafka::{FetchedRecord, ReadError, TopicRead};
use rdkafka::ClientConfig;

/// How an entry ended, as its partition records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Delivered, expired, invalid (both dead-lettered) or cancelled.
    pub outcome: Outcome,
    /// The entry that took its place, when it was cancelled by a reschedule.
    pub rescheduled_as: Option<ScheduleId>,
}

/// A scheduled entry, as [`crate::Publisher::schedule_state`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleState {
    /// Waiting for its time.
    Pending {
        /// When it is due.
        deliver_at: SystemTime,
        /// The topic it is delivered to.
        topic: String,
    },
    /// It ended: delivered, dead-lettered or cancelled.
    Ended(Ended),
    /// The partition holds no trace of it: not an id the SDK gave, or it ended longer ago than
    /// the schedule topic keeps tombstones (`delete.retention.ms`, a day by default).
    Unknown,
}

/// What [`crate::Publisher::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The entry will never be delivered: it was pending (or an earlier cancel had already
    /// taken it back).
    Cancelled,
    /// Too late: the entry had already ended this way (delivered, dead-lettered, or cancelled
    /// by a reschedule).
    AlreadyEnded(Ended),
    /// No trace of the entry (see [`ScheduleState::Unknown`]); nothing to cancel.
    Unknown,
}

/// What [`crate::Publisher::reschedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RescheduleOutcome {
    /// The entry was pending; it is now this new entry, due at the new time (the old id is
    /// cancelled, with [`Ended::rescheduled_as`] pointing here).
    Rescheduled(crate::Scheduled),
    /// Too late: the entry had already ended this way; nothing was scheduled.
    AlreadyEnded(Ended),
    /// No trace of the entry (see [`ScheduleState::Unknown`]); nothing was scheduled.
    Unknown,
}

/// How much earlier than an entry's due time its dispatch marker may be stamped: none when the
/// scheduler's clock stamps it (it dispatches at the due time or after, by that clock), some for
/// a topic whose broker stamps records (`LogAppendTime`) with a clock that may differ.
const STAMP_SLACK_MS: i64 = 5 * 60 * 1_000;

/// Where a trace starts reading.
pub(crate) struct Start {
    /// The first record stamped at or after this time (Unix ms)…
    pub(crate) time_ms: i64,
    /// …and not before this offset.
    pub(crate) offset: i64,
}

impl Start {
    /// From when the entry `id` was scheduled (a minute earlier, for clock steps).
    pub(crate) fn scheduled(id: &ScheduleId) -> Self {
        Self { time_ms: id.scheduled_at_ms().map_or(0, |ms| ms - 60_000), offset: 0 }
    }

    /// Where a dispatch of `entry` (read at its offset) can first be: after it, and stamped no
    /// earlier than its due time.
    pub(crate) fn dispatch_of(entry: &FetchedRecord) -> Self {
        let due = entry.header_i64(schedule::DELIVER_AT).unwrap_or(0);
        Self { time_ms: due.saturating_sub(STAMP_SLACK_MS), offset: entry.offset + 1 }
    }
}

/// What a read of the partition found about one entry.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// The entry itself.
    pub(crate) entry: Option<FetchedRecord>,
    /// Its first ending.
    pub(crate) ended: Option<Ended>,
    /// The offset after the last record read: where a further read goes on.
    pub(crate) read_to: i64,
}

impl Trace {
    /// What the trace says.
    pub(crate) fn state(&self) -> ScheduleState {
        match (&self.ended, &self.entry) {
            (Some(ended), _) => ScheduleState::Ended(*ended),
            (None, Some(entry)) => ScheduleState::Pending {
                deliver_at: UNIX_EPOCH
                    + Duration::from_millis(entry.header_i64(schedule::DELIVER_AT).unwrap_or(0).max(0) as u64),
                topic: entry.header(schedule::TARGET_TOPIC).unwrap_or_default().to_owned(),
            },
            (None, None) => ScheduleState::Unknown,
        }
    }

    /// Reads `topic`'s partition of `id` (`read_committed`) from `start` up to `until` (waiting
    /// for transactions open before it to end), or to the end, open transactions settled; with
    /// `entry_only`, stops at the entry. Adds what it finds to this trace. Blocking.
    pub(crate) fn read(
        &mut self,
        config: &ClientConfig,
        topic: &str,
        id: &ScheduleId,
        start: Start,
        until: Option<i64>,
        entry_only: bool,
    ) -> Result<(), ReadError> {
        let key = id.id.to_string();
        let mut read = TopicRead::new(topic)
            .partitions([id.partition])
            .from_timestamp(start.time_ms)
            .from_offset(start.offset)
            .timeout(Duration::from_secs(30));
        read = match until {
            Some(until) => read.until_offset(until),
            None => read.settled(),
        };
        let mut config = config.clone();
        config.set("isolation.level", "read_committed");
        read.read_blocking(&config, |record| {
            self.read_to = self.read_to.max(record.offset + 1);
            self.see(&key, record);
            if entry_only && self.entry.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
    }

    fn see(&mut self, key: &str, record: FetchedRecord) {
        let Some(record_key) = record.key.as_deref() else { return };
        if record_key == schedule::MARKER_KEY.as_bytes() {
            let listed = record.payload.as_deref().and_then(|value| {
                marker::decode(value).find(|(id, _)| *id == key).map(|(_, outcome)| outcome)
            });
            if let Some(outcome) = listed {
                self.end(Ended { outcome, rescheduled_as: None });
            }
            return;
        }
        if record_key != key.as_bytes() {
            return;
        }
        if record.payload.is_none() {
            let outcome = record
                .header(schedule::OUTCOME)
                .and_then(|name| Outcome::parse(name.as_bytes()))
                .unwrap_or(Outcome::Cancelled);
            let rescheduled_as = record.header(schedule::RESCHEDULED_AS).and_then(|id| id.parse().ok());
            self.end(Ended { outcome, rescheduled_as });
        } else if self.entry.is_none() {
            self.entry = Some(record);
        }
    }

    fn end(&mut self, ended: Ended) {
        self.ended.get_or_insert(ended);
    }
}

/// Unix milliseconds of `time`.
pub(crate) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, key: &str, payload: Option<&[u8]>, headers: &[(&str, &str)]) -> FetchedRecord {
        FetchedRecord {
            topic: "s".into(),
            partition: 0,
            offset,
            key: Some(key.as_bytes().to_vec()),
            payload: payload.map(<[u8]>::to_vec),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), Some(v.as_bytes().to_vec()))).collect(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn the_first_ending_in_partition_order_is_the_one_that_counts() {
        let id = "0190a000-0000-7000-8000-000000000001";
        let entry = record(1, id, Some(b"e"), &[(schedule::DELIVER_AT, "5"), (schedule::TARGET_TOPIC, "t")]);
        let mut trace = Trace::default();
        trace.see(id, entry);
        assert!(matches!(trace.state(), ScheduleState::Pending { ref topic, .. } if topic == "t"));
        let listed = marker::encode([("other", Outcome::Delivered), (id, Outcome::Delivered)]);
        trace.see(id, record(2, schedule::MARKER_KEY, Some(&listed), &[]));
        trace.see(id, record(3, id, None, &[(schedule::OUTCOME, "cancelled")]));
        assert_eq!(
            trace.state(),
            ScheduleState::Ended(Ended { outcome: Outcome::Delivered, rescheduled_as: None })
        );

        let mut cancelled = Trace::default();
        cancelled.see(
            id,
            record(4, id, None, &[(schedule::RESCHEDULED_AS, "0:0190a000-0000-7000-8000-000000000002")]),
        );
        let Some(Ended { outcome: Outcome::Cancelled, rescheduled_as: Some(next) }) = cancelled.ended else {
            panic!("{:?}", cancelled.ended)
        };
        assert_eq!(next.to_string(), "0:0190a000-0000-7000-8000-000000000002");
        assert_eq!(Trace::default().state(), ScheduleState::Unknown);
    }
}
