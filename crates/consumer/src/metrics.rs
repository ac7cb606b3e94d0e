//! The consumer's Prometheus metrics, registered once in the process's default registry (served
//! at `/metrics`). Labels are bounded: consumer, topic, outcome, partition; never ids.

use std::{sync::OnceLock, time::Duration};

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, Histogram, HistogramVec,
    IntCounterVec, IntGaugeVec,
};

/// How an event's processing ended, the `outcome` label of `fanout_consumed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler's effect committed.
    Applied,
    /// Already processed; acknowledged without calling the handler.
    Duplicate,
    /// A failed attempt that will be tried again (in process or through the retry topic).
    Retried,
    /// Sent to the dead-letter topic.
    DeadLettered,
    /// Held back in the retry topic behind an earlier event of its key.
    Parked,
    /// Not the handler's failure (store, broker or registry unreachable); will run again.
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "ok",
            Self::Duplicate => "duplicate",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::Parked => "parked",
            Self::Failed => "failed",
        }
    }
}

/// Handles on the consumer metrics.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerMetrics {
    consumed: IntCounterVec,
    handler_duration: HistogramVec,
    end_to_end: HistogramVec,
    pub(crate) lag: IntGaugeVec,
    dead_lettered: IntCounterVec,
    duplicates: IntCounterVec,
    pub(crate) in_flight: IntGaugeVec,
    pub(crate) fetch_pauses: IntCounterVec,
    pub(crate) refetched: IntCounterVec,
    pub(crate) registry_unavailable: IntCounterVec,
    pub(crate) registry_outage: IntGaugeVec,
}

const SECONDS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

impl ConsumerMetrics {
    pub(crate) fn get() -> Self {
        static METRICS: OnceLock<ConsumerMetrics> = OnceLock::new();
        METRICS
            .get_or_init(|| {
                // Registration fails only on a name clash inside this process: a bug in Fanout
                // itself, caught by the first test that consumes.
                Self {
                    consumed: register_int_counter_vec!(
                        "fanout_consumed_total",
                        "Events a consumer finished an attempt on, by outcome (ok, duplicate, retried, \
                         dead_lettered, parked, failed).",
                        &["consumer", "topic", "outcome"]
                    )
                    .expect("fanout_consumed_total registers once"),
                    handler_duration: register_histogram_vec!(
                        "fanout_handler_duration_seconds",
                        "Time a handler took for one call: a batch of events (one event when the batch is run \
                         event by event after a failure).",
                        &["consumer", "topic"],
                        SECONDS.to_vec()
                    )
                    .expect("fanout_handler_duration_seconds registers once"),
                    end_to_end: register_histogram_vec!(
                        "fanout_end_to_end_latency_seconds",
                        "From the event's time (ce_time, else the Kafka timestamp) to its effect committing.",
                        &["consumer", "topic"],
                        SECONDS.to_vec()
                    )
                    .expect("fanout_end_to_end_latency_seconds registers once"),
                    lag: register_int_gauge_vec!(
                        "fanout_consumer_lag",
                        "Messages between the consumer's committed position and the partition's end.",
                        &["consumer", "topic", "partition"]
                    )
                    .expect("fanout_consumer_lag registers once"),
                    dead_lettered: register_int_counter_vec!(
                        "fanout_dead_lettered_total",
                        "Events sent to the consumer's dead-letter topic.",
                        &["consumer", "topic"]
                    )
                    .expect("fanout_dead_lettered_total registers once"),
                    duplicates: register_int_counter_vec!(
                        "fanout_duplicates_total",
                        "Events skipped because the consumer had already applied them.",
                        &["consumer", "topic"]
                    )
                    .expect("fanout_duplicates_total registers once"),
                    in_flight: register_int_gauge_vec!(
                        "fanout_consumer_in_flight",
                        "Events a consumer has fetched and not finished.",
                        &["consumer"]
                    )
                    .expect("fanout_consumer_in_flight registers once"),
                    fetch_pauses: register_int_counter_vec!(
                        "fanout_consumer_fetch_pauses_total",
                        "Times a consumer paused fetching because it stayed full (stuck handlers or a \
                         slow store) or was shutting down; 0 while it keeps up.",
                        &["consumer"]
                    )
                    .expect("fanout_consumer_fetch_pauses_total registers once"),
                    refetched: register_int_counter_vec!(
                        "fanout_consumer_refetched_total",
                        "Records fetched again although already buffered (dropped on arrival), e.g. \
                         after a pause threw away the prefetched ones.",
                        &["consumer"]
                    )
                    .expect("fanout_consumer_refetched_total registers once"),
                    registry_unavailable: register_int_counter_vec!(
                        "fanout_registry_unavailable_total",
                        "Events whose decoding was put off because the schema registry did not answer \
                         (held, never dead-lettered; decoded again after a backoff).",
                        &["consumer"]
                    )
                    .expect("fanout_registry_unavailable_total registers once"),
                    registry_outage: register_int_gauge_vec!(
                        "fanout_registry_outage",
                        "1 while the consumer holds events because the schema registry did not answer, \
                         0 once events decode again.",
                        &["consumer"]
                    )
                    .expect("fanout_registry_outage registers once"),
                }
            })
            .clone()
    }

    /// Creates every counter of `consumer` reading `topic` at zero, so an alert or a dashboard
    /// on them works before they first count (Prometheus shows a series only once it exists).
    pub(crate) fn zero(&self, consumer: &str, topic: &str) {
        for outcome in [
            Outcome::Applied,
            Outcome::Duplicate,
            Outcome::Retried,
            Outcome::DeadLettered,
            Outcome::Parked,
            Outcome::Failed,
        ] {
            self.outcomes(consumer, topic, outcome, 0);
        }
        self.in_flight.with_label_values(&[consumer]);
        self.fetch_pauses.with_label_values(&[consumer]);
        self.refetched.with_label_values(&[consumer]);
        self.registry_unavailable.with_label_values(&[consumer]);
        self.registry_outage.with_label_values(&[consumer]);
    }

    /// Counts `count` events of `topic` that ended as `outcome`.
    pub(crate) fn outcomes(&self, consumer: &str, topic: &str, outcome: Outcome, count: u64) {
        self.consumed.with_label_values(&[consumer, topic, outcome.label()]).inc_by(count);
        match outcome {
            Outcome::DeadLettered => self.dead_lettered.with_label_values(&[consumer, topic]).inc_by(count),
            Outcome::Duplicate => self.duplicates.with_label_values(&[consumer, topic]).inc_by(count),
            _ => {}
        }
    }

    pub(crate) fn handler_duration(&self, consumer: &str, topic: &str, elapsed: Duration) {
        self.handler_duration.with_label_values(&[consumer, topic]).observe(elapsed.as_secs_f64());
    }

    /// The end-to-end latency histogram of one topic, looked up once per batch rather than once
    /// per event.
    pub(crate) fn end_to_end_histogram(&self, consumer: &str, topic: &str) -> Histogram {
        self.end_to_end.with_label_values(&[consumer, topic])
    }
}

/// A batch's outcomes, counted in memory and added to the counters once the batch is over: the
/// label lookups are paid per batch, not per event.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: Vec<(String, Outcome, u64)>,
}

impl Tally {
    pub(crate) fn add(&mut self, topic: &str, outcome: Outcome) {
        match self.counts.iter_mut().find(|(t, o, _)| *o == outcome && t == topic) {
            Some((_, _, count)) => *count += 1,
            None => self.counts.push((topic.to_owned(), outcome, 1)),
        }
    }

    pub(crate) fn record(&self, metrics: &ConsumerMetrics, consumer: &str) {
        for (topic, outcome, count) in &self.counts {
            metrics.outcomes(consumer, topic, *outcome, *count);
        }
    }
}
