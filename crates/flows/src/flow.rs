//! A flow file: its tasks, what each runs and after what, and how a run starts. Loading it is
//! where mistakes are caught: a cycle, an unknown upstream, a duplicate name, a cron expression or
//! time zone that does not parse — each refused with the names involved.

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    time::Duration,
};

use serde::Deserialize;

/// A flow, loaded and checked: every upstream exists, no cycle, names unique.
///
/// ```
/// let flow = fanout_flows::Flow::parse(r#"
///     name = "nightly"
///     [start]
///     cron = "0 0 0 * * *"
///     timezone = "Europe/Berlin"
///     [[tasks]]
///     name = "extract"
///     command = ["sh", "-c", "echo extracting"]
///     [[tasks]]
///     name = "report"
///     after = ["extract"]
///     command = ["sh", "-c", "echo reporting"]
/// "#).unwrap();
/// assert_eq!(flow.roots().collect::<Vec<_>>(), ["extract"]);
/// assert_eq!(flow.dependants("extract"), ["report"]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// The flow's name: part of every signal and run.
    pub name: String,
    /// How its runs start (besides `fanout flow start FLOW --run KEY`, which always works).
    pub start: Start,
    /// What a re-run of a task does to its dependants that already started.
    pub on_rerun: OnRerun,
    /// The tasks, in file order.
    pub tasks: Vec<Task>,
    index: HashMap<String, usize>,
    dependants: Vec<Vec<usize>>,
}

/// One task of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Unique within its flow.
    pub name: String,
    /// The tasks of the same run that must all have succeeded before this one starts; empty for a
    /// root (started when the run starts).
    pub after: Vec<String>,
    /// The program and its arguments, run by a worker (no shell unless the command names one).
    pub command: Vec<String>,
    /// Environment variables set for the command, beside the worker's own.
    pub env: BTreeMap<String, String>,
    /// How long one attempt may run before it is killed and counts as failed.
    pub timeout: Duration,
    /// How often a failed attempt is tried again before the task counts as failed; counted
    /// afresh when the task runs again (a cascade's re-run, an operator's retry).
    pub retries: u32,
    /// The wait before the first retry; doubled for each further one of the same series.
    pub backoff: Duration,
    /// When the task counts as late after it started, if declared; otherwise its history
    /// decides.
    pub expect_within: Option<Duration>,
}

/// How a flow's runs start.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// Only on demand: `fanout flow start FLOW --run KEY`.
    Manual,
    /// On a cron schedule in a time zone; the run key is the local date of the firing.
    Cron(Box<CronStart>),
    /// On each record of a topic written since the flow was first deployed; the run key is the
    /// record key.
    Topic(String),
}

/// A cron schedule read in a time zone: when a flow's runs start, and the run key of each (the
/// local date of the firing, `2026-11-30`, so a run is the business day it starts).
#[derive(Debug, Clone)]
pub struct CronStart {
    schedule: cron::Schedule,
    expression: String,
    timezone: chrono_tz::Tz,
}

impl PartialEq for CronStart {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

impl CronStart {
    /// The expression as written (`sec min hour day month weekday`).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's name (`Europe/Berlin`).
    pub fn timezone(&self) -> &str {
        self.timezone.name()
    }

    /// The first firing strictly after `after`, and its run key.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        let local = after.with_timezone(&self.timezone);
        let next = self.schedule.after(&local).next()?;
        Some((next.with_timezone(&chrono::Utc), next.format("%Y-%m-%d").to_string()))
    }
}

/// What a task that runs again (retried by hand, or re-run) does to dependants that had already
/// started after its earlier success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRerun {
    /// Nothing: the dependants' results stand.
    #[default]
    Ignore,
    /// They run again after it succeeds again, and theirs after them.
    Cascade,
}

/// Why a flow file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// Not TOML, or not the shape of a flow file (the message has the line and the key).
    #[error("not a flow file: {0}")]
    Syntax(String),
    /// The flow has no task.
    #[error("flow {flow} has no task")]
    NoTasks {
        /// The flow.
        flow: String,
    },
    /// Two tasks share a name.
    #[error("flow {flow}: two tasks are named {task}")]
    DuplicateTask {
        /// The flow.
        flow: String,
        /// The name used twice.
        task: String,
    },
    /// A task names an upstream the flow does not have.
    #[error("flow {flow}: task {task} runs after {upstream}, which is not a task of the flow")]
    UnknownUpstream {
        /// The flow.
        flow: String,
        /// The task.
        task: String,
        /// The name it gave.
        upstream: String,
    },
    /// The tasks' `after` lists form a cycle: no task of it could ever start.
    #[error("flow {flow} has a cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The flow.
        flow: String,
        /// The tasks of the cycle, each after the one before it, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A task has no command.
    #[error("flow {flow}: task {task} has an empty command")]
    NoCommand {
        /// The flow.
        flow: String,
        /// The task.
        task: String,
    },
    /// A value does not parse; the message names the key.
    #[error("flow {flow}: {key} = {value:?}: {reason}")]
    Value {
        /// The flow.
        flow: String,
        /// Where, e.g. `tasks.extract.timeout` or `start.cron`.
        key: String,
        /// What was written.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// The file's shape, before checking.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowFile {
    name: String,
    #[serde(default)]
    start: StartFile,
    #[serde(default)]
    on_rerun: OnRerun,
    #[serde(default)]
    tasks: Vec<TaskFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartFile {
    cron: Option<String>,
    timezone: Option<String>,
    topic: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    name: String,
    #[serde(default)]
    after: Vec<String>,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default)]
    retries: u32,
    #[serde(default = "default_backoff")]
    backoff: String,
    expect_within: Option<String>,
}

fn default_timeout() -> String {
    "1h".to_owned()
}

fn default_backoff() -> String {
    "30s".to_owned()
}

impl Flow {
    /// Parses and checks a flow file's text.
    pub fn parse(text: &str) -> Result<Self, FlowError> {
        let file: FlowFile = toml::from_str(text).map_err(|e| FlowError::Syntax(e.to_string()))?;
        let flow = file.name.clone();
        if flow.is_empty() || flow.contains('/') {
            // A run's key is `flow/run`: a `/` in the flow's name would make two runs' keys meet.
            return Err(FlowError::Value {
                flow: flow.clone(),
                key: "name".into(),
                value: flow,
                reason: "a flow's name must be non-empty and without '/'".into(),
            });
        }
        let value = |key: String, value: &str, reason: String| FlowError::Value {
            flow: flow.clone(),
            key,
            value: value.to_owned(),
            reason,
        };
        let duration = |key: String, text: &str| {
            humantime::parse_duration(text).map_err(|e| value(key, text, e.to_string()))
        };
        let start = match (file.start.cron, file.start.topic) {
            (Some(_), Some(_)) => {
                return Err(value(
                    "start".into(),
                    "cron and topic",
                    "a flow starts on a cron schedule or on a topic, not both".into(),
                ))
            }
            (Some(expression), None) => {
                let schedule = cron::Schedule::from_str(&expression)
                    .map_err(|e| value("start.cron".into(), &expression, e.to_string()))?;
                let zone = file.start.timezone.unwrap_or_else(|| "UTC".to_owned());
                let timezone = zone
                    .parse::<chrono_tz::Tz>()
                    .map_err(|e| value("start.timezone".into(), &zone, e.to_string()))?;
                Start::Cron(Box::new(CronStart { schedule, expression, timezone }))
            }
            (None, Some(topic)) => Start::Topic(topic),
            (None, None) => Start::Manual,
        };
        if file.tasks.is_empty() {
            return Err(FlowError::NoTasks { flow });
        }
        let mut tasks = Vec::with_capacity(file.tasks.len());
        let mut index = HashMap::new();
        for task in file.tasks {
            if index.insert(task.name.clone(), tasks.len()).is_some() {
                return Err(FlowError::DuplicateTask { flow, task: task.name });
            }
            if task.command.first().is_none_or(String::is_empty) {
                return Err(FlowError::NoCommand { flow, task: task.name });
            }
            let key = |field: &str| format!("tasks.{}.{field}", task.name);
            tasks.push(Task {
                timeout: duration(key("timeout"), &task.timeout)?,
                backoff: duration(key("backoff"), &task.backoff)?,
                expect_within: task
                    .expect_within
                    .as_deref()
                    .map(|t| duration(key("expect_within"), t))
                    .transpose()?,
                name: task.name,
                after: task.after,
                command: task.command,
                env: task.env,
                retries: task.retries,
            });
        }
        let mut dependants = vec![Vec::new(); tasks.len()];
        for (at, task) in tasks.iter().enumerate() {
            for upstream in &task.after {
                let Some(&up) = index.get(upstream) else {
                    return Err(FlowError::UnknownUpstream {
                        flow,
                        task: task.name.clone(),
                        upstream: upstream.clone(),
                    });
                };
                if !dependants[up].contains(&at) {
                    dependants[up].push(at);
                }
            }
        }
        let flow = Self { name: file.name, start, on_rerun: file.on_rerun, tasks, index, dependants };
        if let Some(cycle) = flow.find_cycle() {
            return Err(FlowError::Cycle { flow: flow.name, cycle });
        }
        Ok(flow)
    }

    /// The task named `name`.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.index.get(name).map(|&at| &self.tasks[at])
    }

    /// The tasks that start when a run starts (no upstream), in file order.
    pub fn roots(&self) -> impl Iterator<Item = &str> {
        self.tasks.iter().filter(|t| t.after.is_empty()).map(|t| t.name.as_str())
    }

    /// The tasks that run after `name`, in file order (empty for an unknown name).
    pub fn dependants(&self, name: &str) -> Vec<&str> {
        self.index
            .get(name)
            .map(|&at| self.dependants[at].iter().map(|&d| self.tasks[d].name.as_str()).collect())
            .unwrap_or_default()
    }

    /// Where `name` is in [`Flow::tasks`].
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The positions of the tasks that run after the task at `at`.
    pub(crate) fn dependant_positions(&self, at: usize) -> Vec<usize> {
        self.dependants.get(at).cloned().unwrap_or_default()
    }

    /// A cycle of `after` edges, if there is one: depth-first, the path from the first task met
    /// twice on the current path back to itself.
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; self.tasks.len()];
        for root in 0..self.tasks.len() {
            if marks[root] != Mark::New {
                continue;
            }
            // (task, next dependant to visit)
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            marks[root] = Mark::OnPath;
            while let Some((task, next)) = path.last_mut() {
                let (task, dependant) = (*task, self.dependants[*task].get(*next).copied());
                *next += 1;
                match dependant {
                    None => {
                        marks[task] = Mark::Done;
                        path.pop();
                    }
                    Some(d) if marks[d] == Mark::OnPath => {
                        let from = path.iter().position(|(t, _)| *t == d).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(t, _)| self.tasks[*t].name.clone()).collect();
                        cycle.push(self.tasks[d].name.clone());
                        return Some(cycle);
                    }
                    Some(d) if marks[d] == Mark::New => {
                        marks[d] = Mark::OnPath;
                        path.push((d, 0));
                    }
                    Some(_) => {}
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(tasks: &str) -> Result<Flow, FlowError> {
        Flow::parse(&format!("name = \"f\"\n{tasks}"))
    }

    fn task(name: &str, after: &[&str]) -> String {
        format!("[[tasks]]\nname = \"{name}\"\nafter = {after:?}\ncommand = [\"true\"]\n")
    }

    #[test]
    fn a_cycle_is_refused_with_the_cycle_named() {
        let text = [task("a", &[]), task("b", &["a", "d"]), task("c", &["b"]), task("d", &["c"])].concat();
        let err = flow(&text).expect_err("b -> c -> d -> b is a cycle");
        assert_eq!(err.to_string(), "flow f has a cycle: b -> c -> d -> b");
        let err = flow(&task("x", &["x"])).expect_err("a task after itself");
        assert_eq!(err.to_string(), "flow f has a cycle: x -> x");
    }

    #[test]
    fn unknown_upstreams_and_duplicates_are_named() {
        let err = flow(&[task("a", &[]), task("b", &["typo"])].concat()).expect_err("unknown");
        assert_eq!(err.to_string(), "flow f: task b runs after typo, which is not a task of the flow");
        let err = flow(&[task("a", &[]), task("a", &[])].concat()).expect_err("twice");
        assert_eq!(err.to_string(), "flow f: two tasks are named a");
        assert!(matches!(flow(""), Err(FlowError::NoTasks { .. })));
        let err = flow("[[tasks]]\nname = \"a\"\ncommand = []\n").expect_err("no command");
        assert_eq!(err.to_string(), "flow f: task a has an empty command");
    }

    #[test]
    fn values_that_do_not_parse_name_their_key() {
        let bad_timeout = flow("[[tasks]]\nname = \"a\"\ncommand = [\"true\"]\ntimeout = \"soon\"\n");
        assert!(bad_timeout.expect_err("soon").to_string().starts_with("flow f: tasks.a.timeout = \"soon\""));
        let bad_cron = flow(&format!("[start]\ncron = \"every day\"\n{}", task("a", &[])));
        assert!(bad_cron.expect_err("cron").to_string().contains("start.cron = \"every day\""));
        let bad_zone = flow(&format!(
            "[start]\ncron = \"0 0 0 * * *\"\ntimezone = \"Mars/Olympus\"\n{}",
            task("a", &[])
        ));
        assert!(bad_zone.expect_err("zone").to_string().contains("start.timezone = \"Mars/Olympus\""));
        let slash = Flow::parse(&format!("name = \"a/b\"\n{}", task("t", &[])));
        assert!(slash.expect_err("a/b").to_string().contains("without '/'"));
        let unknown_key = flow("[[tasks]]\nname = \"a\"\ncommand = [\"true\"]\nretry = 3\n");
        assert!(unknown_key.expect_err("retry").to_string().contains("retry"));
    }

    #[test]
    fn the_example_flow_loads() {
        let flow =
            Flow::parse(include_str!("../../../flows/nightly.toml")).expect("flows/nightly.toml is valid");
        assert_eq!(flow.roots().collect::<Vec<_>>(), ["extract-orders", "extract-users"]);
        assert_eq!(flow.dependants("join"), ["daily-report", "city-stats", "export"]);
        assert!(matches!(&flow.start, Start::Cron(cron) if cron.timezone() == "Europe/Berlin"));
    }

    #[test]
    fn fan_in_and_fan_out_are_only_after_lists() {
        let text = [
            task("extract", &[]),
            task("clean", &[]),
            task("join", &["extract", "clean"]),
            task("a", &["join"]),
            task("b", &["join"]),
            task("c", &["join"]),
        ]
        .concat();
        let flow = flow(&text).expect("a valid flow");
        assert_eq!(flow.roots().collect::<Vec<_>>(), ["extract", "clean"]);
        assert_eq!(flow.dependants("join"), ["a", "b", "c"]);
        assert_eq!(flow.dependants("extract"), ["join"]);
        assert_eq!(flow.task("join").map(|t| t.timeout), Some(Duration::from_secs(3_600)));
        assert_eq!(flow.start, Start::Manual);
    }

    #[test]
    fn a_cron_start_reads_its_schedule_in_its_zone_and_names_runs_by_local_date() {
        let text =
            format!("[start]\ncron = \"0 30 1 * * *\"\ntimezone = \"Europe/Berlin\"\n{}", task("a", &[]));
        let flow = flow(&text).expect("valid");
        let Start::Cron(cron) = &flow.start else { panic!("{:?}", flow.start) };
        assert_eq!((cron.expression(), cron.timezone()), ("0 30 1 * * *", "Europe/Berlin"));
        // 23:00 UTC on 29 November is already 00:00 on the 30th in Berlin: the next firing is
        // 01:30 Berlin time (00:30 UTC) on the 30th, the run of that business day.
        let after = chrono::DateTime::parse_from_rfc3339("2026-11-29T23:00:00Z").expect("time").to_utc();
        let (at, run) = cron.next_after(after).expect("a next firing");
        assert_eq!((at.to_rfc3339(), run.as_str()), ("2026-11-30T00:30:00+00:00".to_owned(), "2026-11-30"));
    }
}
