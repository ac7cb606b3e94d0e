//! The gateway's metrics, in the process's default Prometheus registry; every handle a request
//! needs is resolved once per source at start-up.

use std::sync::OnceLock;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, Histogram, HistogramVec,
    IntCounter, IntCounterVec,
};

use crate::Rejection;

/// What became of a request: the `outcome` label of `fanout_gateway_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Verified and published: 200.
    Accepted,
    /// Verified, published before: 200, nothing published.
    Duplicate,
    /// Kafka or the dedupe store did not answer in time: 503.
    Unavailable,
    /// Verified, but its event id or correlation id is not where the source says: 422.
    Unroutable,
    /// Not verified: 401 (413 for a body over the limit), by the rejection's kind.
    Rejected(&'static str),
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Unavailable => "unavailable",
            Outcome::Unroutable => "unroutable",
            Outcome::Rejected(kind) => kind,
        }
    }

    const FIXED: [Outcome; 4] =
        [Outcome::Accepted, Outcome::Duplicate, Outcome::Unavailable, Outcome::Unroutable];
}

struct Families {
    requests: IntCounterVec,
    answered: HistogramVec,
    swept: IntCounter,
    rejects_dropped: IntCounter,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    // Registration fails only on a name clash inside this process: a bug in Fanout.
    FAMILIES.get_or_init(|| Families {
        requests: register_int_counter_vec!(
            "fanout_gateway_requests_total",
            "Callback requests by source and outcome: accepted, duplicate (a retry of one published \
             before), unavailable (503: Kafka or the dedupe store did not answer), unroutable (422: \
             verified, but an id is not where the source's config says), unknown_source (404, source \
             \"_unknown\"), or the reason it was rejected (bad_signature, stale_timestamp, \
             body_too_large, missing_header, malformed_header, malformed_body, unknown_key, \
             decryption_failed).",
            &["source", "outcome"]
        )
        .expect("fanout_gateway_requests_total registers once"),
        answered: register_histogram_vec!(
            "fanout_gateway_accept_duration_seconds",
            "From a callback request's arrival to its 2xx (accepted: verified, published, \
             acknowledged by Kafka and recorded; duplicate: verified and found), by source and outcome.",
            &["source", "outcome"],
            vec![0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
        )
        .expect("fanout_gateway_accept_duration_seconds registers once"),
        swept: register_int_counter!(
            "fanout_gateway_dedupe_forgotten_total",
            "Published callbacks forgotten by the dedupe store after dedupe_hours."
        )
        .expect("fanout_gateway_dedupe_forgotten_total registers once"),
        rejects_dropped: register_int_counter!(
            "fanout_gateway_rejects_dropped_total",
            "Rejected requests not written to the rejects topic because its queue was full (a flood \
             of bad requests); each is still counted and logged."
        )
        .expect("fanout_gateway_rejects_dropped_total registers once"),
    })
}

/// One source's handles.
#[derive(Debug, Clone)]
pub(crate) struct SourceMetrics {
    source: String,
    fixed: [IntCounter; 4],
    accepted_seconds: Histogram,
    duplicate_seconds: Histogram,
}

impl SourceMetrics {
    pub(crate) fn new(source: &str) -> Self {
        let families = families();
        // Every rejection kind shows as 0 from the start, so a rate over it is never empty.
        for kind in Rejection::KINDS {
            families.requests.with_label_values(&[source, kind]);
        }
        Self {
            source: source.to_owned(),
            fixed: Outcome::FIXED.map(|o| families.requests.with_label_values(&[source, o.label()])),
            accepted_seconds: families.answered.with_label_values(&[source, "accepted"]),
            duplicate_seconds: families.answered.with_label_values(&[source, "duplicate"]),
        }
    }

    /// Counts a request's outcome; a 2xx's time since `arrived`.
    pub(crate) fn count(&self, outcome: Outcome, arrived: std::time::Instant) {
        match outcome {
            Outcome::Rejected(kind) => families().requests.with_label_values(&[&self.source, kind]).inc(),
            fixed => {
                let i = Outcome::FIXED.iter().position(|o| *o == fixed).unwrap_or(0);
                self.fixed[i].inc();
            }
        }
        match outcome {
            Outcome::Accepted => self.accepted_seconds.observe(arrived.elapsed().as_secs_f64()),
            Outcome::Duplicate => self.duplicate_seconds.observe(arrived.elapsed().as_secs_f64()),
            _ => {}
        }
    }
}

/// A request for a source the gateway does not have.
pub(crate) fn unknown_source() {
    families().requests.with_label_values(&["_unknown", "unknown_source"]).inc();
}

pub(crate) fn forgotten(count: u64) {
    families().swept.inc_by(count);
}

pub(crate) fn reject_dropped() {
    families().rejects_dropped.inc();
}
