//! The scheduler's metrics, in the process's default Prometheus registry.

use fanout_core::schedule::Outcome;
use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, Histogram,
    IntCounterVec, IntGauge,
};

use crate::window::BUCKETS;

/// Handles on the scheduler's metrics, registered once per process.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// `fanout_schedule_dispatched_total{outcome}`: delivered, expired, invalid, cancelled.
    pub(crate) dispatched: IntCounterVec,
    /// `fanout_schedule_lateness_seconds`: due time → committed on the target topic.
    pub(crate) lateness: Histogram,
    /// `fanout_scheduled_in_window`: entries held in memory (due within the near window).
    pub(crate) in_window: IntGauge,
    /// `fanout_scheduled_pending{bucket}`, in the order of [`BUCKETS`].
    pub(crate) pending: [IntGauge; BUCKETS.len()],
}

impl Metrics {
    pub(crate) fn get() -> Self {
        static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
        METRICS
            .get_or_init(|| {
                // Registration fails only on a name clash inside this process: a bug in Fanout.
                let pending = register_int_gauge_vec!(
                    "fanout_scheduled_pending",
                    "Scheduled entries of the owned partitions not delivered yet, by when they are due: \
                     overdue (time passed), 1m, 10m, 1h, 1d (due within that much from now), later. Counted \
                     by every whole read of a partition and kept current by what is read live; an entry \
                     cancelled while beyond the window counts until compaction removes it.",
                    &["bucket"]
                )
                .expect("fanout_scheduled_pending registers once");
                let metrics = Self {
                    dispatched: register_int_counter_vec!(
                        "fanout_schedule_dispatched_total",
                        "Scheduled entries settled, by outcome: delivered, expired (past not_after, \
                         dead-lettered), invalid (unreadable, dead-lettered), cancelled (cancels \
                         read live, before or after the entry's delivery).",
                        &["outcome"]
                    )
                    .expect("fanout_schedule_dispatched_total registers once"),
                    lateness: register_histogram!(
                        "fanout_schedule_lateness_seconds",
                        "From an entry's due time to its delivery committed on the target topic.",
                        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
                    )
                    .expect("fanout_schedule_lateness_seconds registers once"),
                    in_window: register_int_gauge!(
                        "fanout_scheduled_in_window",
                        "Scheduled entries held in memory: those due within the near window."
                    )
                    .expect("fanout_scheduled_in_window registers once"),
                    pending: BUCKETS.map(|bucket| pending.with_label_values(&[bucket])),
                };
                for outcome in [Outcome::Delivered, Outcome::Expired, Outcome::Invalid, Outcome::Cancelled] {
                    metrics.dispatched.with_label_values(&[outcome.as_str()]);
                }
                metrics
            })
            .clone()
    }
}
