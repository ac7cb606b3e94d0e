//! The CloudEvents envelope of one event — id, time, trace context — formatted on the stack, and
//! the Kafka headers built from it with no intermediate owned strings.
//!
//! This runs once per published event. Formatting the id, the time and the trace context through
//! `Display` into fresh `String`s, then copying them into an owned header list, then into
//! librdkafka's headers, cost more than encoding the event itself.

use std::{
    cell::RefCell,
    fmt::Write as _,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use fanout_core::{headers, trace::TraceParent};
use fanout_kafka::Headers;
use uuid::{ContextV7, Timestamp, Uuid};

/// `ce_time` text, `2025-01-01T00:00:00.000Z`; longer only past the year 9999.
const TIME_CAPACITY: usize = 32;

/// Event ids are ordered by creation across the process, as `Uuid::now_v7` orders them; ours are
/// made from the time the publisher already read (see [`Clock`]) instead of a second reading.
static V7_CONTEXT: Mutex<ContextV7> = Mutex::new(ContextV7::new());

/// Reads the time once per event. The monotonic reading times the delivery
/// (`fanout_produce_duration_seconds`); the wall-clock time for `ce_time` and the event id is
/// derived from it and an anchor, instead of reading the system clock two more times (each
/// reading costs as much as a third of building the envelope).
pub(crate) struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    /// Re-anchored after this long, so the wall-clock times follow any adjustment of the system
    /// clock (NTP slews by at most 0.05%, i.e. under 0.5 ms per second).
    const ANCHOR_FOR: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self { wall: SystemTime::now(), mono: Instant::now() }
    }

    /// The current monotonic and wall-clock times.
    pub(crate) fn now(&mut self) -> (Instant, SystemTime) {
        let mono = Instant::now();
        let since = mono.saturating_duration_since(self.mono);
        if since > Self::ANCHOR_FOR {
            *self = Self { wall: SystemTime::now(), mono };
            return (mono, self.wall);
        }
        (mono, self.wall + since)
    }
}

/// The per-event part of the envelope.
pub(crate) struct Stamp {
    /// The event id (`ce_id`).
    pub(crate) event_id: Uuid,
    id: [u8; uuid::fmt::Hyphenated::LENGTH],
    time: [u8; TIME_CAPACITY],
    time_len: usize,
    trace: [u8; TraceParent::LEN],
}

impl Stamp {
    /// A fresh event id and `ce_time`, both of `now`, and a trace context: a child of `parent`,
    /// or a new root trace.
    pub(crate) fn new(parent: Option<TraceParent>, now: SystemTime) -> Self {
        let event_id = new_v7(now);
        let trace_parent = parent.map(|p| p.child()).unwrap_or_else(TraceParent::new_root);
        let mut stamp = Self {
            event_id,
            id: [0; uuid::fmt::Hyphenated::LENGTH],
            time: [0; TIME_CAPACITY],
            time_len: 0,
            trace: [0; TraceParent::LEN],
        };
        event_id.as_hyphenated().encode_lower(&mut stamp.id);
        stamp.time_len = write_time(now, &mut stamp.time);
        trace_parent.encode(&mut stamp.trace);
        stamp
    }

    fn time(&self) -> &[u8] {
        &self.time[..self.time_len]
    }

    /// The headers in their documented order, as (name, value) pairs.
    fn pairs<'a>(&'a self, source: &'a str, event_type: &'a str) -> [(&'static str, &'a [u8]); 7] {
        [
            (headers::SPECVERSION, headers::SPECVERSION_VALUE.as_bytes()),
            (headers::ID, &self.id),
            (headers::TYPE, event_type.as_bytes()),
            (headers::SOURCE, source.as_bytes()),
            (headers::TIME, self.time()),
            (headers::CONTENT_TYPE, headers::CONTENT_TYPE_AVRO.as_bytes()),
            (headers::TRACEPARENT, &self.trace),
        ]
    }

    /// The producer's headers straight from the stamp.
    pub(crate) fn headers(&self, source: &str, event_type: &str) -> Headers {
        self.pairs(source, event_type).iter().map(|(name, value)| (*name, Some(*value))).collect()
    }

    /// The same headers as owned pairs, for an [`fanout_kafka::OwnedRecord`].
    pub(crate) fn owned_headers(&self, source: &str, event_type: &str) -> Vec<(String, Option<Vec<u8>>)> {
        self.pairs(source, event_type)
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Some(value.to_vec())))
            .collect()
    }
}

/// A UUIDv7 for `now`, ordered after every id made before it in this process.
fn new_v7(now: SystemTime) -> Uuid {
    // A clock before 1970 is a broken clock; it is stamped as the epoch rather than failing.
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    // A poisoned lock only means another thread panicked while holding this counter; it is
    // still a counter.
    let context = V7_CONTEXT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Uuid::new_v7(Timestamp::from_unix(&*context, since.as_secs(), since.subsec_nanos()))
}

/// The last second formatted on this thread, so that formatting `ce_time` costs a copy and three
/// digits instead of a calendar computation per event.
struct SecondCache {
    second: i64,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `second`, milliseconds to be patched.
    text: String,
}

thread_local! {
    static SECOND: RefCell<SecondCache> = const { RefCell::new(SecondCache { second: i64::MIN, text: String::new() }) };
}

/// Writes `now` as RFC 3339 UTC with milliseconds (`2025-01-01T00:00:00.000Z`, what chrono's
/// `to_rfc3339_opts(SecondsFormat::Millis, true)` writes) into `out`; returns the length.
fn write_time(now: SystemTime, out: &mut [u8; TIME_CAPACITY]) -> usize {
    // A clock before 1970 is a broken clock; it is stamped as the epoch rather than failing.
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let millis = since.subsec_millis();
    let fresh = || SecondCache { second: i64::MIN, text: String::new() };
    SECOND
        .try_with(|cache| match cache.try_borrow_mut() {
            Ok(mut cache) => cache.write(second, millis, out),
            Err(_) => fresh().write(second, millis, out),
        })
        // Only while this thread is exiting.
        .unwrap_or_else(|_| fresh().write(second, millis, out))
}

impl SecondCache {
    /// Writes `second` plus `millis` into `out`, reformatting only when the second changed.
    fn write(&mut self, second: i64, millis: u32, out: &mut [u8; TIME_CAPACITY]) -> usize {
        if self.second != second {
            self.second = second;
            self.text.clear();
            let time = chrono::DateTime::from_timestamp(second, 0).unwrap_or_default();
            // Writing into a String cannot fail.
            let _ = write!(self.text, "{}", time.format("%Y-%m-%dT%H:%M:%S.000Z"));
        }
        let text = self.text.as_bytes();
        let len = text.len().min(TIME_CAPACITY);
        out[..len].copy_from_slice(&text[..len]);
        // The milliseconds are the three digits before the closing `Z`.
        if let Some(digits) = len.checked_sub(4).and_then(|start| out.get_mut(start..start + 3)) {
            digits[0] = b'0' + (millis / 100) as u8;
            digits[1] = b'0' + (millis / 10 % 10) as u8;
            digits[2] = b'0' + (millis % 10) as u8;
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn chrono_text(at: SystemTime) -> String {
        chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    fn our_text(at: SystemTime) -> String {
        let mut out = [0; TIME_CAPACITY];
        let len = write_time(at, &mut out);
        String::from_utf8(out[..len].to_vec()).expect("ASCII")
    }

    #[test]
    fn ce_time_is_what_chrono_writes_also_within_and_across_seconds() {
        let base = UNIX_EPOCH + Duration::from_millis(1_764_000_000_000);
        // Same second (cached), the next second, a leap day, the epoch, and back again.
        for offset_ms in [0, 1, 7, 99, 100, 999, 1_000, 1_001, 59_999, 86_400_000, 3_000] {
            let at = base + Duration::from_millis(offset_ms);
            assert_eq!(our_text(at), chrono_text(at), "at +{offset_ms} ms");
        }
        for at in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_millis(951_782_400_123), // 2000-02-29
            UNIX_EPOCH + Duration::from_millis(253_402_300_799_999), // 9999-12-31T23:59:59.999
        ] {
            assert_eq!(our_text(at), chrono_text(at));
        }
    }

    #[test]
    fn event_ids_are_version_7_ordered_and_carry_the_time() {
        let mut clock = Clock::new();
        let ids: Vec<Uuid> = (0..1_000).map(|_| Stamp::new(None, clock.now().1).event_id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not strictly increasing");
        let (_, now) = clock.now();
        let millis = now.duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64;
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            let (seconds, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
            let id_millis = seconds * 1_000 + u64::from(nanos) / 1_000_000;
            assert!(id_millis <= millis && millis - id_millis < 60_000, "{id_millis} vs {millis}");
        }
    }

    #[test]
    fn the_clock_follows_the_system_clock() {
        let mut clock = Clock::new();
        let before = SystemTime::now();
        let (_, derived) = clock.now();
        let after = SystemTime::now();
        // Derived from an anchor a moment ago: within the readings around it, give or take the
        // rounding of two clocks.
        let slack = Duration::from_millis(5);
        assert!(
            derived + slack >= before && derived <= after + slack,
            "{derived:?} not in [{before:?}, {after:?}]"
        );
    }

    #[test]
    fn headers_carry_the_stamp_in_the_documented_order() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let stamp = Stamp::new(parent, SystemTime::now());
        let owned = stamp.owned_headers("post-service", "post.published");
        let names: Vec<&str> = owned.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                headers::SPECVERSION,
                headers::ID,
                headers::TYPE,
                headers::SOURCE,
                headers::TIME,
                headers::CONTENT_TYPE,
                headers::TRACEPARENT
            ]
        );
        let value = |name: &str| {
            let (_, value) = owned.iter().find(|(n, _)| n == name).expect("present");
            String::from_utf8(value.clone().expect("a value")).expect("UTF-8")
        };
        assert_eq!(value(headers::ID), stamp.event_id.to_string());
        assert_eq!(Uuid::parse_str(&value(headers::ID)).map(|id| id.get_version_num()), Ok(7));
        assert_eq!(value(headers::SOURCE), "post-service");
        assert_eq!(value(headers::TYPE), "post.published");
        assert!(chrono::DateTime::parse_from_rfc3339(&value(headers::TIME)).is_ok());
        let trace = TraceParent::parse(&value(headers::TRACEPARENT)).expect("valid traceparent");
        assert_eq!(trace.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, "continues the parent's trace");

        let built = stamp.headers("post-service", "post.published");
        assert_eq!(
            built.bytes(),
            owned.iter().map(|(n, v)| n.len() + v.as_ref().map_or(0, Vec::len)).sum::<usize>()
        );
    }
}
