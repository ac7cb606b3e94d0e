//! Task flows: a task starts the moment every task it runs after has succeeded in the same run,
//! not at a timetable slot guessed to be late enough.
//!
//! A flow file ([`Flow`]) declares the tasks, their `after` lists and how runs start. A run has
//! a run key (for nightly jobs, the business date), so Monday's "extract done" never satisfies
//! Tuesday's "report". The bus carries completion signals only, never the tasks' data.
#![warn(missing_docs)]

mod config;
mod engine;
mod flow;
mod http;
mod join;
mod metrics;
mod show;
pub mod signals;
mod triggers;
mod worker;

pub use config::{EngineConfig, SignalTopics};
pub use engine::{load_flows, Engine, EngineError};
pub use flow::{CronStart, Flow, FlowError, OnRerun, Start, Task};
pub use join::{Decision, Run, Signal, StoredRun, TaskState};
pub use show::{RunReport, TaskTiming};
pub use worker::{default_worker_name, run_worker, WorkerConfig, WorkerError};
