//! A schedule topic record, read: an entry to deliver, a tombstone (delivered or cancelled), or
//! a record that cannot be delivered (dead-lettered with the reason).

use fanout_core::schedule;
use fanout_kafka::FetchedRecord;
use rdkafka::message::{Headers as _, Message};

/// One scheduled event, as the SDK wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The record key: the schedule id's uuid, as text.
    pub(crate) id: String,
    /// Its offset in the schedule partition: the schedule order of one key's events.
    pub(crate) offset: i64,
    /// What it is: deliverable, or dead-lettered at once with a reason.
    pub(crate) kind: Kind,
    /// The payload, as `publish` would have sent it.
    pub(crate) payload: Option<Vec<u8>>,
    /// Every header, control headers included (dropped when delivered).
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
    /// Where the check for cancels starts when it is dispatched: the partition's read position
    /// when it was first taken for dispatch (a cancel read after that found it gone from the
    /// window; the check finds it instead). `None` until taken.
    pub(crate) check_from: Option<i64>,
}

/// What an entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Deliver to `topic` with `key`, at `due_ms` or later, and not after `not_after_ms`.
    Deliver { topic: String, key: Option<Vec<u8>>, due_ms: i64, not_after_ms: Option<i64> },
    /// The record cannot be delivered: dead-letter it now, saying why.
    Invalid { reason: String },
}

impl Entry {
    /// When it is due: its time, or at once for a record to dead-letter.
    pub(crate) fn due_ms(&self) -> i64 {
        match &self.kind {
            Kind::Deliver { due_ms, .. } => *due_ms,
            Kind::Invalid { .. } => i64::MIN,
        }
    }
}

/// A record of the schedule topic.
#[derive(Debug)]
pub(crate) enum Read {
    /// An entry.
    Entry(Entry),
    /// The entry `id` is gone, with how it ended (`None`: a tombstone that does not say).
    Tombstone(String, Option<schedule::Outcome>),
    /// A dispatch marker ([`schedule::marker`]): the transaction's tombstones follow it.
    Marker,
    /// No key: nothing can refer to it, and compaction cannot remove it; skipped.
    Keyless,
}

/// Reads a schedule record.
pub(crate) fn read(record: FetchedRecord) -> Read {
    let Some(key) = record.key else { return Read::Keyless };
    if key == schedule::MARKER_KEY.as_bytes() {
        return Read::Marker;
    }
    let id = String::from_utf8_lossy(&key).into_owned();
    let Some(payload) = record.payload else {
        return Read::Tombstone(
            id,
            header(&record.headers, schedule::OUTCOME).and_then(schedule::Outcome::parse),
        );
    };
    let kind = kind(&record.headers);
    Read::Entry(Entry {
        id,
        offset: record.offset,
        kind,
        payload: Some(payload),
        headers: record.headers,
        check_from: None,
    })
}

/// The due time of the deliverable entry `message` holds, read from its headers without copying
/// anything; `None` for a tombstone, a marker, a keyless record or an entry that [`read`] would refuse
/// (those must be read whole: they are dead-lettered at once, whatever their time). Lets the
/// readers skip entries beyond the window at the cost of a header scan.
pub(crate) fn deliverable_due<M: Message>(message: &M) -> Option<i64> {
    if message.key()? == schedule::MARKER_KEY.as_bytes() {
        return None;
    }
    message.payload()?;
    let headers = message.headers()?;
    // The last of a name wins, as in `read`.
    let last = |name: &str| headers.iter().filter(|h| h.key == name).last().map(|h| h.value);
    std::str::from_utf8(last(schedule::TARGET_TOPIC)??).ok()?;
    let number = |raw: &[u8]| std::str::from_utf8(raw).ok().and_then(|text| text.trim().parse::<i64>().ok());
    let due = number(last(schedule::DELIVER_AT)??)?;
    match last(schedule::NOT_AFTER) {
        None | Some(None) => Some(due),
        Some(Some(raw)) => number(raw).map(|_| due),
    }
}

fn header<'h>(headers: &'h [(String, Option<Vec<u8>>)], name: &str) -> Option<&'h [u8]> {
    headers.iter().rev().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
}

fn millis(headers: &[(String, Option<Vec<u8>>)], name: &str) -> Result<Option<i64>, String> {
    match header(headers, name) {
        None => Ok(None),
        Some(raw) => {
            std::str::from_utf8(raw).ok().and_then(|text| text.trim().parse().ok()).map(Some).ok_or_else(
                || format!("header {name} is not Unix milliseconds: {:?}", String::from_utf8_lossy(raw)),
            )
        }
    }
}

fn kind(headers: &[(String, Option<Vec<u8>>)]) -> Kind {
    let invalid = |reason: String| Kind::Invalid { reason };
    let Some(topic) = header(headers, schedule::TARGET_TOPIC) else {
        return invalid(format!("no {} header: not a schedule entry", schedule::TARGET_TOPIC));
    };
    let Ok(topic) = std::str::from_utf8(topic) else {
        return invalid(format!("header {} is not UTF-8", schedule::TARGET_TOPIC));
    };
    let due_ms = match millis(headers, schedule::DELIVER_AT) {
        Ok(Some(due)) => due,
        Ok(None) => return invalid(format!("no {} header", schedule::DELIVER_AT)),
        Err(reason) => return invalid(reason),
    };
    let not_after_ms = match millis(headers, schedule::NOT_AFTER) {
        Ok(not_after) => not_after,
        Err(reason) => return invalid(reason),
    };
    Kind::Deliver {
        topic: topic.to_owned(),
        key: header(headers, schedule::TARGET_KEY).map(<[u8]>::to_vec),
        due_ms,
        not_after_ms,
    }
}

/// The headers a delivered event carries: the entry's, without the control headers, plus
/// [`schedule::SCHEDULED_FOR`].
pub(crate) fn delivered_headers(entry: &Entry, due_ms: i64) -> Vec<(String, Option<Vec<u8>>)> {
    let control = [schedule::TARGET_TOPIC, schedule::TARGET_KEY, schedule::DELIVER_AT, schedule::NOT_AFTER];
    let mut headers: Vec<_> =
        entry.headers.iter().filter(|(name, _)| !control.contains(&name.as_str())).cloned().collect();
    headers.push((schedule::SCHEDULED_FOR.to_owned(), Some(due_ms.to_string().into_bytes())));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Option<Vec<u8>>)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), Some(v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn entries_are_read_or_refused_with_the_reason() {
        let good = headers(&[
            ("ce_id", "e1"),
            (schedule::TARGET_TOPIC, "orders"),
            (schedule::TARGET_KEY, "42"),
            (schedule::DELIVER_AT, "1764000000000"),
        ]);
        assert_eq!(
            kind(&good),
            Kind::Deliver {
                topic: "orders".into(),
                key: Some(b"42".to_vec()),
                due_ms: 1_764_000_000_000,
                not_after_ms: None
            }
        );
        let cases = [
            (headers(&[("ce_id", "e1")]), "no fanout_schedule_topic header"),
            (headers(&[(schedule::TARGET_TOPIC, "t")]), "no fanout_deliver_at header"),
            (headers(&[(schedule::TARGET_TOPIC, "t"), (schedule::DELIVER_AT, "soon")]), "\"soon\""),
            (
                headers(&[
                    (schedule::TARGET_TOPIC, "t"),
                    (schedule::DELIVER_AT, "1"),
                    (schedule::NOT_AFTER, "x"),
                ]),
                "fanout_not_after",
            ),
        ];
        for (headers, says) in cases {
            match kind(&headers) {
                Kind::Invalid { reason } => assert!(reason.contains(says), "{reason}"),
                other => panic!("{other:?} for {headers:?}"),
            }
        }
    }

    #[test]
    fn only_deliverable_entries_are_skipped_by_their_time_alone() {
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
        let message = |pairs: &[(&str, &str)], payload: Option<&[u8]>| {
            let headers = pairs.iter().fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header { key, value: Some(value.as_bytes()) })
            });
            OwnedMessage::new(
                payload.map(<[u8]>::to_vec),
                Some(b"id".to_vec()),
                "s".into(),
                Timestamp::NotAvailable,
                0,
                0,
                Some(headers),
            )
        };
        let cases: [&[(&str, &str)]; 6] = [
            &[(schedule::TARGET_TOPIC, "t"), (schedule::DELIVER_AT, "5")],
            &[(schedule::TARGET_TOPIC, "t"), (schedule::DELIVER_AT, "5"), (schedule::NOT_AFTER, "9")],
            &[(schedule::TARGET_TOPIC, "t"), (schedule::DELIVER_AT, "5"), (schedule::NOT_AFTER, "x")],
            &[(schedule::DELIVER_AT, "5")],
            &[(schedule::TARGET_TOPIC, "t"), (schedule::DELIVER_AT, "soon")],
            &[(schedule::TARGET_TOPIC, "t"), (schedule::DELIVER_AT, "1"), (schedule::DELIVER_AT, "7")],
        ];
        for pairs in cases {
            let peeked = deliverable_due(&message(pairs, Some(b"p")));
            let read = match kind(&headers(pairs)) {
                Kind::Deliver { due_ms, .. } => Some(due_ms),
                Kind::Invalid { .. } => None,
            };
            assert_eq!(peeked, read, "{pairs:?}");
        }
        assert_eq!(deliverable_due(&message(cases[0], None)), None, "a tombstone");
    }

    #[test]
    fn delivered_events_keep_their_headers_and_say_when_they_were_due() {
        let mut all = headers(&[("ce_id", "e1"), ("traceparent", "00-x")]);
        all.extend(headers(&[(schedule::TARGET_TOPIC, "t"), (schedule::DELIVER_AT, "5")]));
        let entry = Entry {
            id: "i".into(),
            offset: 0,
            kind: kind(&all),
            payload: None,
            headers: all,
            check_from: None,
        };
        let names: Vec<_> =
            delivered_headers(&entry, 5).into_iter().map(|(n, v)| (n, v.unwrap_or_default())).collect();
        assert_eq!(
            names,
            vec![
                ("ce_id".to_owned(), b"e1".to_vec()),
                ("traceparent".to_owned(), b"00-x".to_vec()),
                (schedule::SCHEDULED_FOR.to_owned(), b"5".to_vec())
            ]
        );
    }
}
