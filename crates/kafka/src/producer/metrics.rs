//! The record producer's Prometheus metrics, registered once in the process's default registry
//! (which every Fanout service serves at `/metrics`). They count every record Fanout produces,
//! whoever sends it: SDK publishes, outbox rows, retry and dead-letter records, replays.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, PoisonError, RwLock},
    time::Duration,
};

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, Histogram, HistogramVec,
    IntCounter, IntCounterVec, IntGauge,
};

/// Handles on the producer metrics.
#[derive(Clone, Debug)]
pub(crate) struct ProducerMetrics {
    /// `fanout_produced_total{topic,outcome}`: records acknowledged (`ok`) or failed (`error`).
    produced: IntCounterVec,
    /// `fanout_produce_duration_seconds{topic}`: from handing a record to librdkafka to its ack.
    duration: HistogramVec,
    /// `fanout_producer_queue_depth`: records handed to librdkafka and not yet acknowledged.
    pub(crate) queue_depth: IntGauge,
}

impl ProducerMetrics {
    pub(crate) fn get() -> Self {
        static METRICS: OnceLock<ProducerMetrics> = OnceLock::new();
        METRICS
            .get_or_init(|| {
                // Registration fails only on a name clash inside this process, which is a bug in
                // Fanout itself, caught by the first test that publishes.
                Self {
                    produced: register_int_counter_vec!(
                        "fanout_produced_total",
                        "Records the producer handed to Kafka, by topic and outcome (ok, error).",
                        &["topic", "outcome"]
                    )
                    .expect("fanout_produced_total registers once"),
                    duration: register_histogram_vec!(
                        "fanout_produce_duration_seconds",
                        "Time from handing a record to the producer until Kafka acknowledged it.",
                        &["topic"],
                        vec![
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                            10.0, 30.0
                        ]
                    )
                    .expect("fanout_produce_duration_seconds registers once"),
                    queue_depth: register_int_gauge!(
                        "fanout_producer_queue_depth",
                        "Records handed to the producer and not yet acknowledged by Kafka."
                    )
                    .expect("fanout_producer_queue_depth registers once"),
                }
            })
            .clone()
    }

    /// The handles of one topic's series. Looking a labelled series up hashes its label values
    /// under a lock; a delivery report should not, so callers resolve these once per topic (see
    /// [`TopicMetricsCache`]) and record through them.
    pub(crate) fn topic(&self, topic: &str) -> TopicMetrics {
        TopicMetrics {
            topic: topic.to_owned(),
            produced: self.produced.clone(),
            ok: self.produced.with_label_values(&[topic, "ok"]),
            error: OnceLock::new(),
            duration: self.duration.with_label_values(&[topic]),
        }
    }
}

/// One topic's producer series, resolved.
#[derive(Clone, Debug)]
pub(crate) struct TopicMetrics {
    topic: String,
    produced: IntCounterVec,
    ok: IntCounter,
    /// Resolved at the first failure, so a topic that never failed exports no error series.
    error: OnceLock<IntCounter>,
    duration: Histogram,
}

impl TopicMetrics {
    /// A record acknowledged (or finally failed) `elapsed` after it was handed to librdkafka.
    pub(crate) fn record_delivery(&self, ok: bool, elapsed: Duration) {
        if ok {
            self.ok.inc();
        } else {
            self.record_refused();
        }
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// A record that failed: refused by librdkafka outright, or not acknowledged.
    pub(crate) fn record_refused(&self) {
        self.error.get_or_init(|| self.produced.with_label_values(&[&self.topic, "error"])).inc();
    }
}

/// Per-topic metric handles of one producer: one lookup per send (one per batch) instead of two
/// label lookups per delivery report.
#[derive(Debug, Default)]
pub(crate) struct TopicMetricsCache {
    topics: RwLock<HashMap<String, Arc<TopicMetrics>>>,
}

impl TopicMetricsCache {
    /// `topic`'s handles, resolved on first use.
    pub(crate) fn get(&self, topic: &str) -> Arc<TopicMetrics> {
        if let Some(known) = self.topics.read().unwrap_or_else(PoisonError::into_inner).get(topic) {
            return known.clone();
        }
        let resolved = Arc::new(ProducerMetrics::get().topic(topic));
        self.topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(topic.to_owned())
            .or_insert(resolved)
            .clone()
    }
}
