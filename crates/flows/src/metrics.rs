//! The engine's metrics, in the process's default Prometheus registry.

use prometheus::{
    register_histogram, register_int_counter, register_int_gauge_vec, Histogram, IntCounter, IntGauge,
    IntGaugeVec,
};

use crate::join::RunStatus;

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
    /// `fanout_flow_runs{state}`: the runs of the partitions this instance owns, by status.
    pub(crate) runs: RunsByStatus,
    /// `fanout_flow_tasks_late_total`: alarms of attempts still running when they came.
    pub(crate) late: IntCounter,
}

/// `fanout_flow_runs`, one gauge per status, looked up once.
#[derive(Debug, Clone)]
pub(crate) struct RunsByStatus {
    running: IntGauge,
    succeeded: IntGauge,
    failed: IntGauge,
}

impl RunsByStatus {
    fn new(gauges: &IntGaugeVec) -> Self {
        Self {
            running: gauges.with_label_values(&["running"]),
            succeeded: gauges.with_label_values(&["succeeded"]),
            failed: gauges.with_label_values(&["failed"]),
        }
    }

    /// The gauge of runs in `status`.
    pub(crate) fn of(&self, status: RunStatus) -> &IntGauge {
        match status {
            RunStatus::Running => &self.running,
            RunStatus::Succeeded => &self.succeeded,
            RunStatus::Failed => &self.failed,
        }
    }
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
                    runs: RunsByStatus::new(
                        &register_int_gauge_vec!(
                            "fanout_flow_runs",
                            "Runs of the partitions this instance owns: running, succeeded (every task), or failed (over, with a task failed or blocked).",
                            &["state"]
                        )
                        .expect("fanout_flow_runs registers once"),
                    ),
                    late: register_int_counter!(
                        "fanout_flow_tasks_late_total",
                        "Tasks not finished by their expected time: alarms (TaskLate) that came while their attempt still ran."
                    )
                    .expect("fanout_flow_tasks_late_total registers once"),
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
        let runs =
            IntGaugeVec::new(prometheus::Opts::new("runs", "test"), &["state"]).expect("valid options");
        Self {
            trigger_latency: Histogram::with_opts(latency).expect("valid options"),
            started: counter("started"),
            blocked: counter("blocked"),
            runs_started: counter("runs_started"),
            runs: RunsByStatus::new(&runs),
            late: counter("late"),
        }
    }
}
