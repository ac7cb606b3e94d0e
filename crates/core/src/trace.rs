//! W3C Trace Context (`traceparent`), so one trace links a publish to every handler it causes.
//!
//! Spans reach a tracing backend only when the process installs a [`SpanExporter`] (the service
//! runtime does when OTLP export is configured). Then the SDK's `publish` span is what an event's
//! `traceparent` names, and each consumer's `handle` span is a child of it. Without one, events
//! carry a trace context all the same (a child of the caller's, or a new root), and checking
//! costs one atomic load.

use std::{fmt, sync::OnceLock};

/// A parsed `traceparent` header: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace the event belongs to.
    pub trace_id: u128,
    /// The span that emitted the event.
    pub parent_id: u64,
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Length of a `traceparent` header value.
    pub const LEN: usize = 55;

    /// Writes the header value (the same text as `Display`) into `out` without allocating, for
    /// per-event hot paths; it is ASCII.
    pub fn encode<'a>(&self, out: &'a mut [u8; Self::LEN]) -> &'a [u8] {
        out[..3].copy_from_slice(b"00-");
        out[35] = b'-';
        out[52] = b'-';
        // Each slice is exactly twice its input, the only way `encode_to_slice` can fail.
        let written = hex::encode_to_slice(self.trace_id.to_be_bytes(), &mut out[3..35])
            .and_then(|()| hex::encode_to_slice(self.parent_id.to_be_bytes(), &mut out[36..52]))
            .and_then(|()| hex::encode_to_slice([self.flags], &mut out[53..55]));
        debug_assert!(written.is_ok(), "{written:?}");
        out
    }

    /// A new root trace with random ids, sampled.
    pub fn new_root() -> Self {
        let id = uuid::Uuid::new_v4().as_u128();
        Self { trace_id: id, parent_id: (id as u64) ^ ((id >> 64) as u64) | 1, flags: 1 }
    }

    /// A child in the same trace: same trace id and flags, a fresh span id.
    pub fn child(&self) -> Self {
        let span = uuid::Uuid::new_v4().as_u128() as u64 | 1;
        Self { trace_id: self.trace_id, parent_id: span, flags: self.flags }
    }

    /// Parses a header value; `None` for anything malformed (a bad header is dropped, not fatal).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version != "00"
            || parts.next().is_some()
            || trace.len() != 32
            || parent.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let parent_id = u64::from_str_radix(parent, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        // All-zero ids are invalid by the spec.
        (trace_id != 0 && parent_id != 0).then_some(Self { trace_id, parent_id, flags })
    }
}

/// What links `tracing` spans to the trace context of other processes; implemented over
/// OpenTelemetry by the process's telemetry set-up and installed once with [`install`], so that the
/// crates which make spans need no tracing backend's types.
pub trait SpanExporter: Send + Sync + 'static {
    /// Makes `span`, not entered yet, a child of `parent`, a span of another process (the
    /// `traceparent` of a consumed event, or a caller's).
    fn set_remote_parent(&self, span: &tracing::Span, parent: TraceParent);

    /// The trace context `span` is exported under, as a `traceparent` names it; `None` when the
    /// span is not exported (disabled by the filter).
    fn context(&self, span: &tracing::Span) -> Option<TraceParent>;
}

static EXPORTER: OnceLock<Box<dyn SpanExporter>> = OnceLock::new();

/// Installs the process's span exporter; `false` (and `exporter` is dropped) when one already is.
pub fn install(exporter: impl SpanExporter) -> bool {
    EXPORTER.set(Box::new(exporter)).is_ok()
}

/// The installed span exporter, if any: one atomic load.
pub fn exporter() -> Option<&'static dyn SpanExporter> {
    EXPORTER.get().map(|exporter| &**exporter)
}

/// The trace context an event published inside `span` carries when spans are exported: `span`'s
/// own, `span` being made a child of `parent` when there is one (else of the current span, as
/// `tracing` decides). `None` when nothing is exported; the event then carries a child of
/// `parent` or a new root, as [`Envelope::new`](crate::envelope::Envelope::new) makes them.
pub fn exported(span: &tracing::Span, parent: Option<TraceParent>) -> Option<TraceParent> {
    let exporter = exporter()?;
    if let Some(parent) = parent {
        exporter.set_remote_parent(span, parent);
    }
    exporter.context(span)
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::TraceParent;

    #[test]
    fn round_trips_and_rejects_malformed() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(header).expect("valid header");
        assert_eq!(parsed.to_string(), header);
        let child = parsed.child();
        assert_eq!(child.trace_id, parsed.trace_id);
        assert_ne!(child.parent_id, parsed.parent_id);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        assert!(TraceParent::parse(&TraceParent::new_root().to_string()).is_some());
    }

    #[test]
    fn encode_writes_what_display_writes() {
        let mut out = [0; TraceParent::LEN];
        for trace in [
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid"),
            TraceParent { trace_id: 1, parent_id: 1, flags: 0 },
            TraceParent { trace_id: u128::MAX, parent_id: u64::MAX, flags: 0xff },
            TraceParent::new_root(),
        ] {
            assert_eq!(trace.encode(&mut out), trace.to_string().as_bytes());
        }
    }
}
