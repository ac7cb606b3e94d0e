//! The engine's metrics, in the process's default Prometheus registry.

use prometheus::{register_histogram, register_int_counter, Histogram, IntCounter};

/// The trigger latency's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Handles on the engine's metrics, registered once per process.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// `fanout_flow_trigger_latency_seconds`: the last upstream's success acked → the
    /// dependant's `TaskStarted` committed.
    pub(crate) trigger_latency: Histogram,
    /// `fanout_flow_tasks_started_total`.
    pub(crate) started: IntCounter,
    /// `fanout_flow_tasks_blocked_total`.
    pub(crate) blocked: IntCounter,
    /// `fanout_flow_runs_started_total`.
    pub(crate) runs_started: IntCounter,
}

impl Metrics {
    pub(crate) fn get() -> Self {
        static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
        METRICS
            .get_or_init(|| {
                // Registration fails only on a name clash inside this process: a bug in Fanout.
                Self {
                    trigger_latency: register_histogram!(
                        "fanout_flow_trigger_latency_seconds",
                        "From the last upstream's success (its record time) to the dependant's TaskStarted committed.",
                        LATENCY_BUCKETS.to_vec()
                    )
                    .expect("fanout_flow_trigger_latency_seconds registers once"),
                    started: register_int_counter!(
                        "fanout_flow_tasks_started_total",
                        "Task attempts started (TaskStarted committed), retries included."
                    )
                    .expect("fanout_flow_tasks_started_total registers once"),
                    blocked: register_int_counter!(
                        "fanout_flow_tasks_blocked_total",
                        "Tasks that will not start because an upstream failed for good."
                    )
                    .expect("fanout_flow_tasks_blocked_total registers once"),
                    runs_started: register_int_counter!("fanout_flow_runs_started_total", "Runs started.")
                        .expect("fanout_flow_runs_started_total registers once"),
                }
            })
            .clone()
    }

    /// Handles registered nowhere, so that a unit test counts on its own.
    #[cfg(test)]
    pub(crate) fn unregistered() -> Self {
        let counter = |name: &str| IntCounter::new(name, "test").expect("a valid name");
        let latency =
            prometheus::HistogramOpts::new("trigger_latency", "test").buckets(LATENCY_BUCKETS.to_vec());
        Self {
            trigger_latency: Histogram::with_opts(latency).expect("valid options"),
            started: counter("started"),
            blocked: counter("blocked"),
            runs_started: counter("runs_started"),
        }
    }
}
