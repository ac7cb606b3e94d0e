//! How to publish, beyond the event itself.

use fanout_core::{
    envelope::Envelope,
    trace::{self, TraceParent},
    Event,
};

/// How [`crate::Publisher`] and [`crate::outbox::Outbox`] publish, beyond the event itself. The
/// default publishes to the event type's own topic and starts a new trace per event.
///
/// ```
/// use fanout_core::trace::TraceParent;
/// use fanout_producer::PublishOptions;
///
/// let caused_by = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// let options = PublishOptions::new().topic("post.published.replay");
/// let options = PublishOptions { trace_parent: caused_by, ..options };
/// assert_eq!(options.topic.as_deref(), Some("post.published.replay"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// Another topic than the event type's own (tests, migrations, per-tenant topics); the
    /// schema subject follows it.
    pub topic: Option<String>,
    /// The trace to continue, e.g. the request's or the event's that caused this one: each
    /// event becomes a child span of it, so its handlers join that trace. `None` starts a new
    /// trace per event, or, when spans are exported ([`fanout_core::trace`]), continues the
    /// caller's current span if there is one.
    pub trace_parent: Option<TraceParent>,
    /// For a scheduled event ([`crate::Publisher::publish_at`]): the latest acceptable delivery.
    /// An event the scheduler could not deliver by then is dead-lettered with the reason rather
    /// than arriving late. Ignored by immediate publishing.
    pub not_after: Option<std::time::SystemTime>,
    /// The event's id (`ce_id`) when the caller already has one, instead of a fresh UUIDv7: an
    /// event published twice with one id is applied once by every consumer. The callback
    /// gateway derives it from the provider's event id, so that a provider's retry that is
    /// published again is still one event. Honoured by [`crate::Publisher::publish_with`] and
    /// [`crate::Publisher::encode`]; [`crate::Publisher::publish_all`] gives each event its own.
    pub event_id: Option<uuid::Uuid>,
}

impl PublishOptions {
    /// The defaults: the event type's topic, a new trace per event.
    pub fn new() -> Self {
        Self::default()
    }

    /// These options, to `topic`.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// These options, continuing the trace `parent`.
    pub fn trace_parent(mut self, parent: TraceParent) -> Self {
        self.trace_parent = Some(parent);
        self
    }

    /// These options, for a scheduled event that must not arrive after `limit`.
    pub fn not_after(mut self, limit: std::time::SystemTime) -> Self {
        self.not_after = Some(limit);
        self
    }

    /// These options, publishing with the event id `id` (see [`event_id`](Self::event_id)).
    pub fn event_id(mut self, id: uuid::Uuid) -> Self {
        self.event_id = Some(id);
        self
    }

    /// The envelope of an event of type `T` published now with these options inside `span`: its
    /// trace context is `span`'s when spans are exported ([`trace::exported`]), else a child of
    /// the trace parent or a new root.
    pub(crate) fn envelope<'a, T: Event>(&self, source: &'a str, span: &tracing::Span) -> Envelope<'a> {
        let now = std::time::SystemTime::now();
        let trace = trace::exported(span, self.trace_parent);
        match (self.event_id, trace) {
            (Some(id), trace) => {
                let trace = trace
                    .or_else(|| self.trace_parent.map(|p| p.child()))
                    .unwrap_or_else(TraceParent::new_root);
                Envelope::from_parts(T::TYPE, source, id, now, trace)
            }
            (None, Some(trace)) => Envelope::traced(T::TYPE, source, trace, now),
            (None, None) => Envelope::new(T::TYPE, source, self.trace_parent, now),
        }
    }

    /// The topic an event of type `T` goes to.
    pub(crate) fn topic_for<T: Event>(&self) -> &str {
        self.topic.as_deref().unwrap_or(T::TOPIC)
    }
}
