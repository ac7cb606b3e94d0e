//! The signals of a flow, as events: Avro contracts in `schemas/flows/`, CloudEvents headers,
//! keyed by `flow/run` so one run's signals stay in order on one partition. They say what
//! happened to a task, never what it produced (an output URI at most).

use std::sync::OnceLock;

use apache_avro::Schema;
use fanout_core::Event;
use serde::{Deserialize, Serialize};

/// The key of every signal of one run: `flow/run`.
pub fn run_key(flow: &str, run: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(flow.len() + run.len() + 1);
    key.extend_from_slice(flow.as_bytes());
    key.push(b'/');
    key.extend_from_slice(run.as_bytes());
    key
}

macro_rules! signal {
    ($type:ident, $name:literal, $topic:literal, $file:literal) => {
        impl Event for $type {
            const TYPE: &'static str = $name;
            const TOPIC: &'static str = $topic;
            const SCHEMA: &'static str = include_str!(concat!("../../../schemas/flows/", $file));

            fn schema() -> &'static Schema {
                static SCHEMA: OnceLock<Schema> = OnceLock::new();
                SCHEMA.get_or_init(|| {
                    // Compiled in and parsed by a unit test, so this cannot fail at run time.
                    Schema::parse_str(Self::SCHEMA).expect(concat!("schemas/flows/", $file, " is valid Avro"))
                })
            }

            fn key(&self) -> Vec<u8> {
                run_key(&self.flow, &self.run)
            }
        }
    };
}

/// The engine starts attempt `attempt` of a task (`schemas/flows/task_started.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStarted {
    /// The flow.
    pub flow: String,
    /// The run key.
    pub run: String,
    /// The task.
    pub task: String,
    /// 1 for the first attempt; each retry or re-run adds one.
    pub attempt: i32,
    /// When the engine decided to start it, Unix ms.
    pub started_at: i64,
}
signal!(TaskStarted, "flow.task.started", "flow.task.started", "task_started.avsc");

/// An attempt of a task succeeded (`schemas/flows/task_succeeded.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSucceeded {
    /// The flow.
    pub flow: String,
    /// The run key.
    pub run: String,
    /// The task.
    pub task: String,
    /// Which attempt.
    pub attempt: i32,
    /// When the worker started it, Unix ms.
    pub started_at: i64,
    /// When it finished, Unix ms.
    pub finished_at: i64,
    /// Which worker ran it.
    pub worker: String,
    /// A pointer to what it produced (a URI), never the data itself.
    pub output: Option<String>,
}
signal!(TaskSucceeded, "flow.task.succeeded", "flow.task.succeeded", "task_succeeded.avsc");

/// An attempt of a task failed (`schemas/flows/task_failed.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailed {
    /// The flow.
    pub flow: String,
    /// The run key.
    pub run: String,
    /// The task.
    pub task: String,
    /// Which attempt.
    pub attempt: i32,
    /// When the worker started it, Unix ms.
    pub started_at: i64,
    /// When it ended, Unix ms.
    pub finished_at: i64,
    /// Which worker ran it.
    pub worker: String,
    /// The exit status; `None` when it did not exit (killed at its timeout, or did not start).
    pub exit_status: Option<i32>,
    /// Why, in words.
    pub reason: String,
    /// The last lines of its standard error.
    pub stderr_tail: String,
}
signal!(TaskFailed, "flow.task.failed", "flow.task.failed", "task_failed.avsc");

/// A started task did not finish by the time it was expected to (`schemas/flows/task_late.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLate {
    /// The flow.
    pub flow: String,
    /// The run key.
    pub run: String,
    /// The task.
    pub task: String,
    /// Which attempt.
    pub attempt: i32,
    /// When the engine started it, Unix ms.
    pub started_at: i64,
    /// When it should have finished, Unix ms.
    pub expected_by: i64,
}
signal!(TaskLate, "flow.task.late", "flow.task.late", "task_late.avsc");

/// Start a run, or run one of its tasks again (`schemas/flows/run_requested.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequested {
    /// The flow.
    pub flow: String,
    /// The run key.
    pub run: String,
    /// `None`: start the run; a task: run it again.
    pub retry_task: Option<String>,
    /// With `retry_task`: its dependants run again after it too.
    pub cascade: bool,
    /// Who asked: `cron`, a topic, or an operator.
    pub requested_by: String,
}
signal!(RunRequested, "flow.run.requested", "flow.run.requested", "run_requested.avsc");

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract agrees with its schema file, and a signal's topic is named as its type.
    fn matches_its_schema<E: Event + PartialEq + std::fmt::Debug>(sample: E) {
        assert_eq!(E::TOPIC, E::TYPE);
        fanout_testkit::assert_matches_its_schema(sample);
    }

    #[test]
    fn every_signal_matches_its_schema_file_and_is_keyed_by_its_run() {
        let (flow, run, task) = ("nightly".to_owned(), "2026-11-30".to_owned(), "join".to_owned());
        let started = TaskStarted {
            flow: flow.clone(),
            run: run.clone(),
            task: task.clone(),
            attempt: 1,
            started_at: 5,
        };
        assert_eq!(started.key(), b"nightly/2026-11-30");
        matches_its_schema(started);
        matches_its_schema(TaskSucceeded {
            flow: flow.clone(),
            run: run.clone(),
            task: task.clone(),
            attempt: 2,
            started_at: 5,
            finished_at: 9,
            worker: "host-1/42".into(),
            output: Some("s3://bucket/join/2026-11-30".into()),
        });
        matches_its_schema(TaskFailed {
            flow: flow.clone(),
            run: run.clone(),
            task,
            attempt: 1,
            started_at: 5,
            finished_at: 9,
            worker: "host-1/42".into(),
            exit_status: None,
            reason: "killed at its timeout (1h)".into(),
            stderr_tail: "…".into(),
        });
        matches_its_schema(TaskLate {
            flow: "nightly".into(),
            run: "2026-11-30".into(),
            task: "join".into(),
            attempt: 1,
            started_at: 5,
            expected_by: 9,
        });
        matches_its_schema(RunRequested {
            flow,
            run,
            retry_task: None,
            cascade: false,
            requested_by: "cron".into(),
        });
    }
}
