//! The CloudEvents envelope of an event (Kafka protocol binding, binary mode): the event's id,
//! type, source, time and trace context, carried in record headers while the payload carries
//! domain data only. Built here for every record Fanout publishes (the SDK's `Publisher`, the
//! outbox relay) and parsed here for every record a consumer reads, so both ends agree on names,
//! order and formats.
//!
//! Building runs once per published event, so it does not allocate: the id, the time and the
//! trace context are formatted into buffers inside the [`Envelope`], and [`Envelope::headers`]
//! borrows them. Formatting them through `Display` into fresh `String`s cost more than encoding the
//! event itself.

use std::{
    cell::RefCell,
    fmt::Write as _,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use uuid::{ContextV7, Timestamp, Uuid};

use crate::{headers, trace::TraceParent};

/// `ce_time` text, `2025-01-01T00:00:00.000Z`; longer only past the year 9999.
const TIME_CAPACITY: usize = 32;

/// Event ids are ordered by creation across the process, as `Uuid::now_v7` orders them; ours are
/// made from the time the caller already read instead of a second reading of the clock.
static V7_CONTEXT: Mutex<ContextV7> = Mutex::new(ContextV7::new());

/// The envelope of one outgoing event, with its header values formatted.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use fanout_core::{envelope::Envelope, headers};
///
/// let at = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
/// let envelope = Envelope::new("post.published", "post-service", None, at);
/// let headers = envelope.headers();
/// assert_eq!(headers[0], (headers::SPECVERSION, &b"1.0"[..]));
/// assert_eq!(headers[4], (headers::TIME, &b"2025-11-24T16:00:00.123Z"[..]));
///
/// // What a consumer reads back.
/// let read = Envelope::parse(headers.iter().map(|(name, value)| (*name, Some(*value))));
/// assert_eq!(read.id, Some(envelope.id().to_string().as_str()));
/// assert_eq!(read.time, Some(at));
/// ```
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    event_type: &'a str,
    source: &'a str,
    id: Uuid,
    time: SystemTime,
    trace: TraceParent,
    id_text: [u8; uuid::fmt::Hyphenated::LENGTH],
    time_text: [u8; TIME_CAPACITY],
    time_len: usize,
    trace_text: [u8; TraceParent::LEN],
}

impl<'a> Envelope<'a> {
    /// The envelope of a new event of `event_type` emitted by `source` at `now`: a fresh UUIDv7
    /// id of `now` (ordered after every id made before it in this process), and a trace context
    /// that is a child of `parent` or, without one, a new root trace.
    pub fn new(event_type: &'a str, source: &'a str, parent: Option<TraceParent>, now: SystemTime) -> Self {
        let trace = parent.map(|p| p.child()).unwrap_or_else(TraceParent::new_root);
        Self::from_parts(event_type, source, new_v7(now), now, trace)
    }

    /// The envelope of a new event of `event_type` emitted by `source` at `now` carrying exactly
    /// `trace` (the context of the span that publishes it; see [`crate::trace::exported`]).
    pub fn traced(event_type: &'a str, source: &'a str, trace: TraceParent, now: SystemTime) -> Self {
        Self::from_parts(event_type, source, new_v7(now), now, trace)
    }

    /// The envelope of an event that already has its identity: the outbox relay rebuilds the
    /// envelope fixed at enqueue time from these parts, byte for byte.
    pub fn from_parts(
        event_type: &'a str,
        source: &'a str,
        id: Uuid,
        time: SystemTime,
        trace: TraceParent,
    ) -> Self {
        let mut envelope = Self {
            event_type,
            source,
            id,
            time,
            trace,
            id_text: [0; uuid::fmt::Hyphenated::LENGTH],
            time_text: [0; TIME_CAPACITY],
            time_len: 0,
            trace_text: [0; TraceParent::LEN],
        };
        id.as_hyphenated().encode_lower(&mut envelope.id_text);
        envelope.time_len = write_time(time, &mut envelope.time_text);
        trace.encode(&mut envelope.trace_text);
        envelope
    }

    /// The event id (`ce_id`), the consumers' idempotency key.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// When the event was emitted (`ce_time`, sent with millisecond precision).
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// The event's trace context (`traceparent`).
    pub fn trace(&self) -> TraceParent {
        self.trace
    }

    /// The event type (`ce_type`).
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    /// The emitting service (`ce_source`).
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// The record headers, names and values, in this order: `ce_specversion`, `ce_id`, `ce_type`,
    /// `ce_source`, `ce_time`, `content-type`, `traceparent`.
    pub fn headers(&self) -> [(&'static str, &[u8]); 7] {
        [
            (headers::SPECVERSION, headers::SPECVERSION_VALUE.as_bytes()),
            (headers::ID, &self.id_text),
            (headers::TYPE, self.event_type.as_bytes()),
            (headers::SOURCE, self.source.as_bytes()),
            (headers::TIME, &self.time_text[..self.time_len]),
            (headers::CONTENT_TYPE, headers::CONTENT_TYPE_AVRO.as_bytes()),
            (headers::TRACEPARENT, &self.trace_text),
        ]
    }

    /// What the CloudEvents headers among `headers` say. Lenient, as a reader of other teams'
    /// records must be: a header that is absent, not UTF-8 or malformed is `None`, never an
    /// error, and the first of repeated names counts.
    pub fn parse<'h>(headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>) -> Received<'h> {
        let mut received = Received::default();
        let (mut id, mut time, mut trace) = (None, None, None);
        for (name, value) in headers {
            let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else { continue };
            let slot = match name {
                headers::ID => &mut id,
                headers::TYPE => &mut received.event_type,
                headers::SOURCE => &mut received.source,
                headers::TIME => &mut time,
                headers::TRACEPARENT => &mut trace,
                _ => continue,
            };
            slot.get_or_insert(text);
        }
        received.id = id.map(str::trim).filter(|id| !id.is_empty());
        received.time = time.and_then(parse_time);
        received.trace = trace.and_then(TraceParent::parse);
        received
    }
}

/// What a received record's CloudEvents headers say (see [`Envelope::parse`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received<'h> {
    /// The event id (`ce_id`), trimmed; `None` when absent or blank.
    pub id: Option<&'h str>,
    /// The event type (`ce_type`).
    pub event_type: Option<&'h str>,
    /// The emitting service (`ce_source`).
    pub source: Option<&'h str>,
    /// When the event was emitted (`ce_time`), when valid RFC 3339.
    pub time: Option<SystemTime>,
    /// The producer's trace context (`traceparent`), when valid.
    pub trace: Option<TraceParent>,
}

/// A `ce_time` value as a time; `None` unless it is RFC 3339.
fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(SystemTime::from)
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

/// Writes `time` as RFC 3339 UTC with milliseconds (`2025-01-01T00:00:00.000Z`, what chrono's
/// `to_rfc3339_opts(SecondsFormat::Millis, true)` writes) into `out`; returns the length.
fn write_time(time: SystemTime, out: &mut [u8; TIME_CAPACITY]) -> usize {
    // A clock before 1970 is a broken clock; it is stamped as the epoch rather than failing.
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
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
        let now = SystemTime::now();
        let ids: Vec<Uuid> = (0..1_000).map(|_| Envelope::new("t", "s", None, now).id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not strictly increasing");
        let millis = now.duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64;
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            let (seconds, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
            assert_eq!(seconds * 1_000 + u64::from(nanos) / 1_000_000, millis);
        }
    }

    #[test]
    fn headers_carry_the_envelope_in_the_documented_order_and_parse_back() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let now = UNIX_EPOCH + Duration::from_millis(1_764_000_000_042);
        let envelope = Envelope::new("post.published", "post-service", parent, now);
        let headers = envelope.headers();
        let names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
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
        let read = Envelope::parse(headers.iter().map(|(name, value)| (*name, Some(*value))));
        assert_eq!(read.id, Some(envelope.id().to_string().as_str()));
        assert_eq!(read.event_type, Some("post.published"));
        assert_eq!(read.source, Some("post-service"));
        assert_eq!(read.time, Some(now));
        let trace = read.trace.expect("valid traceparent");
        assert_eq!(trace, envelope.trace());
        assert_eq!(trace.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, "continues the parent's trace");
        assert_ne!(trace.parent_id, 0x00f0_67aa_0ba9_02b7, "as a child span");

        // Rebuilt from its parts, as the outbox relay does: the same bytes.
        let again = Envelope::from_parts("post.published", "post-service", envelope.id(), now, trace);
        assert_eq!(again.headers(), headers);
    }

    #[test]
    fn parsing_is_lenient_and_takes_the_first_of_repeated_names() {
        let read = Envelope::parse([
            (headers::ID, Some(&b"  abc "[..])),
            (headers::ID, Some(&b"second"[..])),
            (headers::TIME, Some(&b"yesterday"[..])),
            (headers::TRACEPARENT, Some(&b"00-zz"[..])),
            (headers::SOURCE, None),
            (headers::TYPE, Some(&[0xff, 0xfe][..])),
            ("other", Some(&b"x"[..])),
        ]);
        assert_eq!(read, Received { id: Some("abc"), ..Received::default() });
        assert_eq!(Envelope::parse([(headers::ID, Some(&b"  "[..]))]).id, None, "a blank id is no id");
    }
}
