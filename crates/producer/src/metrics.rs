//! The producer's Prometheus metrics, registered once in the process's default registry (which
//! every Fanout service serves at `/metrics`).

use std::{sync::OnceLock, time::Duration};

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
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
    /// `fanout_outbox_backlog{table}`: outbox rows not yet published.
    pub(crate) outbox_backlog: IntGaugeVec,
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
                    outbox_backlog: register_int_gauge_vec!(
                        "fanout_outbox_backlog",
                        "Outbox rows enqueued and not yet published, by outbox table.",
                        &["table"]
                    )
                    .expect("fanout_outbox_backlog registers once"),
                }
            })
            .clone()
    }

    pub(crate) fn record_delivery(&self, topic: &str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.produced.with_label_values(&[topic, outcome]).inc();
        self.duration.with_label_values(&[topic]).observe(elapsed.as_secs_f64());
    }

    pub(crate) fn record_refused(&self, topic: &str) {
        self.produced.with_label_values(&[topic, "error"]).inc();
    }
}
