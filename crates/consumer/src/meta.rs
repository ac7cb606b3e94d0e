//! A fetched record, owned, and the metadata a handler sees.

use std::{fmt, sync::Arc};

use chrono::{DateTime, Utc};
use fanout_core::{
    envelope::Envelope,
    trace::{self, TraceParent},
};
use tracing::field::Empty;

/// A record as fetched; the runtime keeps it byte for byte until its verdict is in.
pub(crate) use fanout_kafka::FetchedRecord as Record;

/// What a handler knows about the event besides its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventMeta {
    /// The event id (`ce_id`); `topic/partition/offset` when the record had none.
    pub event_id: String,
    /// The event type (`ce_type`), when present.
    pub event_type: Option<String>,
    /// The emitting service (`ce_source`), when present.
    pub source: Option<String>,
    /// When the event was emitted (`ce_time`), when present and valid RFC 3339.
    pub time: Option<DateTime<Utc>>,
    /// The producer's trace context, when present and valid.
    pub traceparent: Option<TraceParent>,
    /// The topic the event was published to (not the retry topic it may come back through).
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The record key (the aggregate id), byte for byte.
    pub key: Option<Vec<u8>>,
    /// 1 on the first attempt, counting every attempt, in process and through the retry topic.
    pub attempt: u32,
    /// The consumer applying it, for the per-event span.
    pub(crate) consumer: Arc<str>,
    /// The `handle` span the runtime opened for it when spans are exported.
    pub(crate) span: HandleSpan,
}

/// The `handle` span the runtime opens for an event when spans are exported (see
/// [`fanout_core::trace`]): a handler's batch call runs while it is open, and the default
/// [`Handler::handle_batch`](crate::Handler::handle_batch) runs `handle` inside it. Not part of
/// the metadata's identity: two metas compare equal whatever their spans.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandleSpan(pub(crate) Option<tracing::Span>);

impl PartialEq for HandleSpan {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for HandleSpan {}

/// A trace context's ids as the `handle` span shows them, formatted only when the span is
/// recorded: the trace id, or the parent span's id; empty without a context.
#[derive(Clone, Copy)]
enum TraceField {
    TraceId(Option<TraceParent>),
    ParentId(Option<TraceParent>),
}

impl fmt::Display for TraceField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TraceId(Some(trace)) => write!(f, "{:032x}", trace.trace_id),
            Self::ParentId(Some(trace)) => write!(f, "{:016x}", trace.parent_id),
            Self::TraceId(None) | Self::ParentId(None) => Ok(()),
        }
    }
}

/// Where a record came from when it arrives through the retry topic (the runtime's own headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

impl EventMeta {
    /// Metadata of `record`, `attempt` being the 1-based attempt about to run. `origin` is the
    /// original position when the record came through the retry topic.
    pub(crate) fn of(record: &Record, origin: Origin<'_>, attempt: u32, consumer: &Arc<str>) -> Self {
        let envelope =
            Envelope::parse(record.headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())));
        Self {
            // The idempotency key: `ce_id`, or the original position for records without one (a
            // position names one record forever, so a redelivery of it is still recognised).
            event_id: match envelope.id {
                Some(id) => id.to_owned(),
                None => format!("{}/{}/{}", origin.topic, origin.partition, origin.offset),
            },
            event_type: envelope.event_type.map(str::to_owned),
            source: envelope.source.map(str::to_owned),
            time: envelope.time.map(DateTime::<Utc>::from),
            traceparent: envelope.trace,
            topic: origin.topic.to_owned(),
            partition: origin.partition,
            offset: origin.offset,
            key: record.key.clone(),
            attempt,
            consumer: consumer.clone(),
            span: HandleSpan::default(),
        }
    }

    /// The span a per-event handler call runs in: the one the runtime opened for the event when
    /// spans are exported, else a new one (see [`EventMeta::new_span`]).
    pub(crate) fn span(&self, event_type: &'static str) -> tracing::Span {
        match &self.span.0 {
            Some(span) => span.clone(),
            None => self.new_span(event_type),
        }
    }

    /// A `handle` span for the event: it continues the producer's trace (`trace_id`, `parent_id`
    /// from `traceparent`; when spans are exported, it is a child of the producer's span) and
    /// names the event. Its fields are formatted only if a subscriber records the span.
    pub(crate) fn new_span(&self, event_type: &'static str) -> tracing::Span {
        let span = tracing::info_span!(
            "handle",
            consumer = %self.consumer,
            event_type,
            topic = %self.topic,
            partition = self.partition,
            offset = self.offset,
            event_id = %self.event_id,
            attempt = self.attempt,
            trace_id = %TraceField::TraceId(self.traceparent),
            parent_id = %TraceField::ParentId(self.traceparent),
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        if let (Some(exporter), Some(parent)) = (trace::exporter(), self.traceparent) {
            exporter.set_remote_parent(&span, parent);
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(headers: Vec<(&str, &str)>) -> Record {
        Record {
            topic: "t".into(),
            partition: 2,
            offset: 9,
            key: Some(b"k".to_vec()),
            payload: None,
            headers: headers.into_iter().map(|(k, v)| (k.to_owned(), Some(v.as_bytes().to_vec()))).collect(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn meta_reads_cloudevents_headers_and_falls_back_to_the_position() {
        let r = record(vec![
            ("ce_id", "abc"),
            ("ce_type", "post.published"),
            ("ce_time", "2026-01-02T03:04:05.678Z"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ]);
        let origin = Origin { topic: "t", partition: 2, offset: 9 };
        let consumer: Arc<str> = Arc::from("c");
        let meta = EventMeta::of(&r, origin, 1, &consumer);
        assert_eq!(meta.event_id, "abc");
        assert_eq!(meta.event_type.as_deref(), Some("post.published"));
        assert!(meta.time.is_some());
        assert!(meta.traceparent.is_some());
        let bare = record(vec![("ce_time", "yesterday")]);
        let meta = EventMeta::of(&bare, origin, 2, &consumer);
        assert_eq!(meta.event_id, "t/2/9");
        assert_eq!(meta.time, None);
        assert_eq!(meta.attempt, 2);
    }
}
