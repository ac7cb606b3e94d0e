//! The join: one run's state, and what each signal changes in it. Pure and deterministic, so the
//! engine's exactly-once comes from storing this state with its decisions in one transaction:
//! a worker's signal seen twice, late or out of order decides nothing twice. (An operator's
//! retry request is an action, not a report: each one read runs the task again.)

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{Flow, OnRerun};

/// Where one task of a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Not started: an upstream has not succeeded yet.
    Waiting,
    /// Started (attempt `n`), no result yet.
    Started(u32),
    /// Succeeded at attempt `n`.
    Succeeded(u32),
    /// Failed for good at attempt `n` (its retries spent).
    Failed(u32),
    /// Will not start: an upstream failed for good.
    Blocked,
}

/// What a worker or an operator reports about one task of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Attempt `attempt` of `task` succeeded.
    Succeeded {
        /// The task.
        task: String,
        /// Which attempt.
        attempt: u32,
    },
    /// Attempt `attempt` of `task` failed.
    Failed {
        /// The task.
        task: String,
        /// Which attempt.
        attempt: u32,
    },
    /// An operator asks `task` to run again (`fanout flow retry RUN TASK [--cascade]`): after a
    /// failure, its blocked dependants wait for it again; after a success, `cascade` runs its
    /// dependants again once it succeeds (whatever the flow's `on_rerun`).
    Retry {
        /// The task.
        task: String,
        /// Run the dependants again too.
        cascade: bool,
    },
}

/// What the engine must do after a signal: each at most once, since the state records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start attempt `attempt` of `task`, after `delay` (a retry's backoff; zero otherwise).
    Start {
        /// The task.
        task: String,
        /// Which attempt.
        attempt: u32,
        /// How long to wait first.
        delay: Duration,
    },
    /// `task` will not start: `upstream` failed for good.
    Blocked {
        /// The task.
        task: String,
        /// The upstream whose failure blocks it.
        upstream: String,
    },
}

/// Where a run is as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunStatus {
    /// A task has not finished (or not started) yet.
    Running,
    /// Every task succeeded.
    Succeeded,
    /// Over, with a task failed for good or blocked.
    Failed,
}

/// One run of a flow: every task's state, in the flow's task order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    states: Vec<TaskState>,
    /// Per task: its dependants run again after its next success (a cascading retry).
    cascade: Vec<bool>,
    /// Per task: the attempt its current series began with (its first attempt, a cascade's
    /// re-run or an operator's retry). The series' retries and backoff count from there, so a
    /// task run again gets its whole retry budget whatever its attempt number.
    series: Vec<u32>,
    /// The engine's pending "late" alarms, by task: the schedule id of each (cancelled when the
    /// task finishes first).
    pub late: BTreeMap<String, String>,
    /// When the run was found over (every task succeeded, failed or blocked), Unix ms; `None`
    /// while any task can still start. The engine forgets a run kept over for long enough.
    pub finished_at: Option<i64>,
}

impl Run {
    /// A run of `flow` before it starts: every task waiting.
    pub fn new(flow: &Flow) -> Self {
        Self {
            states: vec![TaskState::Waiting; flow.tasks.len()],
            cascade: vec![false; flow.tasks.len()],
            series: vec![1; flow.tasks.len()],
            late: BTreeMap::new(),
            finished_at: None,
        }
    }

    /// Rebuilds a run from stored states (task order), as [`Run::states`] gave them.
    pub fn from_states(flow: &Flow, states: Vec<TaskState>) -> Option<Self> {
        (states.len() == flow.tasks.len()).then(|| Self {
            cascade: vec![false; states.len()],
            series: vec![1; states.len()],
            states,
            late: BTreeMap::new(),
            finished_at: None,
        })
    }

    /// Every task's state, in the flow's task order.
    pub fn states(&self) -> &[TaskState] {
        &self.states
    }

    /// The run as stored: each task's state by name (so a flow file that gains or loses tasks
    /// still reads its earlier runs), the tasks whose next success re-runs their dependants, and
    /// where each task's series of attempts began when not at its first attempt.
    pub fn to_stored(&self, flow: &Flow) -> StoredRun {
        let name = |at: usize| flow.tasks[at].name.clone();
        StoredRun {
            states: self.states.iter().enumerate().map(|(at, state)| (name(at), *state)).collect(),
            cascade: self.cascade.iter().enumerate().filter(|(_, c)| **c).map(|(at, _)| name(at)).collect(),
            series: self
                .series
                .iter()
                .enumerate()
                .filter(|(_, s)| **s != 1)
                .map(|(at, s)| (name(at), *s))
                .collect(),
            late: self.late.clone(),
            finished_at: self.finished_at,
        }
    }

    /// A stored run of `flow`: tasks it does not know wait, tasks the flow lost are dropped.
    pub fn from_stored(flow: &Flow, stored: &StoredRun) -> Self {
        let mut run = Self::new(flow);
        for (at, task) in flow.tasks.iter().enumerate() {
            if let Some(state) = stored.states.get(&task.name) {
                run.states[at] = *state;
            }
            run.cascade[at] = stored.cascade.contains(&task.name);
            run.series[at] = stored.series.get(&task.name).copied().unwrap_or(1);
        }
        run.late = stored.late.clone();
        run.finished_at = stored.finished_at;
        run
    }

    /// The state of `task`.
    pub fn state(&self, flow: &Flow, task: &str) -> Option<TaskState> {
        flow.position(task).map(|at| self.states[at])
    }

    /// True once every task succeeded, failed or is blocked.
    pub fn is_over(&self) -> bool {
        self.states
            .iter()
            .all(|s| matches!(s, TaskState::Succeeded(_) | TaskState::Failed(_) | TaskState::Blocked))
    }

    /// Where the run is as a whole: running until it is over, then succeeded or failed.
    pub(crate) fn status(&self) -> RunStatus {
        if !self.is_over() {
            RunStatus::Running
        } else if self.states.iter().all(|s| matches!(s, TaskState::Succeeded(_))) {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        }
    }

    /// The run starts: its roots start (once; starting a started run decides nothing).
    pub fn begin(&mut self, flow: &Flow) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for (at, task) in flow.tasks.iter().enumerate() {
            if task.after.is_empty() && self.states[at] == TaskState::Waiting {
                self.states[at] = TaskState::Started(1);
                self.series[at] = 1;
                decisions.push(start(&task.name, 1, Duration::ZERO));
            }
        }
        decisions
    }

    /// Applies one signal; what it decides. A duplicate, a stale attempt or a signal for an
    /// unknown task decides nothing.
    pub fn apply(&mut self, flow: &Flow, signal: &Signal) -> Vec<Decision> {
        let mut decisions = Vec::new();
        match signal {
            Signal::Succeeded { task, attempt } => {
                let Some(at) = flow.position(task) else { return decisions };
                let rerun = match self.states[at] {
                    TaskState::Started(current) | TaskState::Failed(current) if *attempt >= current => false,
                    TaskState::Succeeded(earlier) if *attempt > earlier => true,
                    // A duplicate, or an attempt older than the one running now.
                    _ => return decisions,
                };
                if matches!(self.states[at], TaskState::Failed(_)) {
                    // A success that arrives after the failure (two workers ran the attempt):
                    // the dependants it blocked may start after all.
                    self.unblock_after(flow, at);
                }
                self.states[at] = TaskState::Succeeded(*attempt);
                let cascade = self.cascade[at] || (rerun && flow.on_rerun == OnRerun::Cascade);
                self.cascade[at] = false;
                for d in flow.dependant_positions(at) {
                    let ready = flow.tasks[d].after.iter().all(|up| {
                        flow.position(up).is_some_and(|u| matches!(self.states[u], TaskState::Succeeded(_)))
                    });
                    match self.states[d] {
                        TaskState::Waiting if ready => {
                            self.states[d] = TaskState::Started(1);
                            self.series[d] = 1;
                            decisions.push(start(&flow.tasks[d].name, 1, Duration::ZERO));
                        }
                        TaskState::Started(n) | TaskState::Succeeded(n) | TaskState::Failed(n)
                            if cascade && ready =>
                        {
                            self.states[d] = TaskState::Started(n + 1);
                            self.series[d] = n + 1;
                            // Its own dependants run again after it, in turn.
                            self.cascade[d] = true;
                            decisions.push(start(&flow.tasks[d].name, n + 1, Duration::ZERO));
                        }
                        _ => {}
                    }
                }
            }
            Signal::Failed { task, attempt } => {
                let Some(at) = flow.position(task) else { return decisions };
                if self.states[at] != TaskState::Started(*attempt) {
                    return decisions;
                }
                let spec = &flow.tasks[at];
                // Retries spent in this series: a re-run's attempt 5 is its series' first try.
                let spent = attempt.saturating_sub(self.series[at]);
                if spent < spec.retries {
                    let next = attempt + 1;
                    self.states[at] = TaskState::Started(next);
                    let delay = spec.backoff.saturating_mul(1 << spent.min(16));
                    decisions.push(start(task, next, delay));
                } else {
                    self.states[at] = TaskState::Failed(*attempt);
                    self.block_after(flow, at, &mut decisions);
                }
            }
            Signal::Retry { task, cascade } => {
                let Some(at) = flow.position(task) else { return decisions };
                let next = match self.states[at] {
                    TaskState::Failed(n) | TaskState::Succeeded(n) | TaskState::Started(n) => n + 1,
                    TaskState::Waiting | TaskState::Blocked => return decisions,
                };
                match self.states[at] {
                    TaskState::Failed(_) => self.unblock_after(flow, at),
                    // A re-run of a success: its dependants may already have run on the old
                    // result; the flow's policy (or the operator) says whether they run again.
                    TaskState::Succeeded(_) => {
                        self.cascade[at] = *cascade || flow.on_rerun == OnRerun::Cascade;
                    }
                    _ => {}
                }
                self.cascade[at] |= *cascade;
                self.states[at] = TaskState::Started(next);
                self.series[at] = next;
                decisions.push(start(task, next, Duration::ZERO));
            }
        }
        decisions
    }

    /// Every task downstream of `at` that has not started is blocked by it.
    fn block_after(&mut self, flow: &Flow, at: usize, decisions: &mut Vec<Decision>) {
        let upstream = &flow.tasks[at].name;
        let mut stack = flow.dependant_positions(at);
        while let Some(d) = stack.pop() {
            if self.states[d] == TaskState::Waiting {
                self.states[d] = TaskState::Blocked;
                decisions
                    .push(Decision::Blocked { task: flow.tasks[d].name.clone(), upstream: upstream.clone() });
                stack.extend(flow.dependant_positions(d));
            }
        }
    }

    /// The tasks blocked downstream of `at` wait again (it is being retried).
    fn unblock_after(&mut self, flow: &Flow, at: usize) {
        let mut stack = flow.dependant_positions(at);
        while let Some(d) = stack.pop() {
            if self.states[d] == TaskState::Blocked {
                self.states[d] = TaskState::Waiting;
                stack.extend(flow.dependant_positions(d));
            }
        }
    }
}

/// A run as the engine's state topic keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredRun {
    /// Each task's state, by name.
    pub states: BTreeMap<String, TaskState>,
    /// Tasks whose next success re-runs their dependants.
    pub cascade: Vec<String>,
    /// The attempt each task's current series of attempts began with, where not its first
    /// (a cascade's re-run or an operator's retry): its retries and backoff count from there.
    /// Absent from records written before it was kept: every series began at attempt 1.
    #[serde(default)]
    pub series: BTreeMap<String, u32>,
    /// The pending "late" alarms' schedule ids, by task.
    #[serde(default)]
    pub late: BTreeMap<String, String>,
    /// When the run was found over, Unix ms (absent while it runs, and in records written
    /// before it was kept: such a run is kept until it changes again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

fn start(task: &str, attempt: u32, delay: Duration) -> Decision {
    Decision::Start { task: task.to_owned(), attempt, delay }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// extract and clean → join (fan-in) → a, b, c (fan-out); c retries once.
    fn nightly(on_rerun: &str) -> Flow {
        let task = |name: &str, after: &[&str], retries: u32| {
            format!("[[tasks]]\nname = \"{name}\"\nafter = {after:?}\ncommand = [\"true\"]\nretries = {retries}\n")
        };
        let text = [
            format!("name = \"nightly\"\non_rerun = \"{on_rerun}\"\n"),
            task("extract", &[], 0),
            task("clean", &[], 0),
            task("join", &["extract", "clean"], 0),
            task("a", &["join"], 0),
            task("b", &["join"], 0),
            task("c", &["join"], 1),
        ]
        .concat();
        Flow::parse(&text).expect("a valid flow")
    }

    fn succeeded(task: &str, attempt: u32) -> Signal {
        Signal::Succeeded { task: task.to_owned(), attempt }
    }

    fn started(decisions: &[Decision]) -> Vec<(String, u32)> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Start { task, attempt, .. } => Some((task.clone(), *attempt)),
                Decision::Blocked { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_fan_in_starts_once_after_its_last_upstream_and_a_fan_out_starts_all() {
        let flow = nightly("ignore");
        let mut run = Run::new(&flow);
        assert_eq!(started(&run.begin(&flow)), [("extract".into(), 1), ("clean".into(), 1)]);
        assert!(run.begin(&flow).is_empty(), "a run starts once");
        assert!(started(&run.apply(&flow, &succeeded("extract", 1))).is_empty(), "join waits for clean");
        assert_eq!(started(&run.apply(&flow, &succeeded("clean", 1))), [("join".into(), 1)]);
        assert!(run.apply(&flow, &succeeded("clean", 1)).is_empty(), "a duplicate decides nothing");
        let fan_out = started(&run.apply(&flow, &succeeded("join", 1)));
        assert_eq!(fan_out, [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
    }

    #[test]
    fn a_failure_retries_with_backoff_then_blocks_its_dependants() {
        let flow = nightly("ignore");
        let mut run = Run::new(&flow);
        run.begin(&flow);
        run.apply(&flow, &succeeded("extract", 1));
        let failed = |attempt| Signal::Failed { task: "clean".into(), attempt };
        let decisions = run.apply(&flow, &failed(1));
        let blocked: Vec<_> = decisions
            .iter()
            .filter(|d| matches!(d, Decision::Blocked { .. }))
            .map(|d| format!("{d:?}"))
            .collect();
        assert_eq!(blocked.len(), 4, "join and its three dependants are blocked: {decisions:?}");
        assert_eq!(run.state(&flow, "a"), Some(TaskState::Blocked));
        assert!(run.is_over());

        // The operator fixes it and retries: the blocked tasks wait for it again.
        let retry = run.apply(&flow, &Signal::Retry { task: "clean".into(), cascade: false });
        assert_eq!(started(&retry), [("clean".into(), 2)]);
        assert_eq!(run.state(&flow, "a"), Some(TaskState::Waiting));
        assert_eq!(started(&run.apply(&flow, &succeeded("clean", 2))), [("join".into(), 1)]);

        // c retries once, after its backoff, then fails for good.
        run.apply(&flow, &succeeded("join", 1));
        let again = run.apply(&flow, &Signal::Failed { task: "c".into(), attempt: 1 });
        assert_eq!(again, [Decision::Start { task: "c".into(), attempt: 2, delay: Duration::from_secs(30) }]);
        assert!(run.apply(&flow, &Signal::Failed { task: "c".into(), attempt: 1 }).is_empty(), "stale");
        run.apply(&flow, &Signal::Failed { task: "c".into(), attempt: 2 });
        assert_eq!(run.state(&flow, "c"), Some(TaskState::Failed(2)));
    }

    #[test]
    fn a_success_after_the_failure_unblocks_the_dependants() {
        let flow = nightly("ignore");
        let mut run = Run::new(&flow);
        run.begin(&flow);
        run.apply(&flow, &succeeded("extract", 1));
        run.apply(&flow, &Signal::Failed { task: "clean".into(), attempt: 1 });
        assert_eq!(run.state(&flow, "join"), Some(TaskState::Blocked));
        // Another worker ran the same attempt, and it succeeded.
        assert_eq!(started(&run.apply(&flow, &succeeded("clean", 1))), [("join".into(), 1)]);
        assert_eq!(run.state(&flow, "a"), Some(TaskState::Waiting));
    }

    #[test]
    fn a_rerun_upstream_restarts_its_dependants_only_under_cascade() {
        for (policy, restarts) in [("ignore", 0), ("cascade", 1)] {
            let flow = nightly(policy);
            let mut run = Run::new(&flow);
            run.begin(&flow);
            run.apply(&flow, &succeeded("extract", 1));
            run.apply(&flow, &succeeded("clean", 1));
            assert_eq!(run.state(&flow, "join"), Some(TaskState::Started(1)));
            // extract runs again (an operator's retry) and succeeds again.
            run.apply(&flow, &Signal::Retry { task: "extract".into(), cascade: false });
            let decisions = started(&run.apply(&flow, &succeeded("extract", 2)));
            assert_eq!(decisions.len(), restarts, "{policy}: {decisions:?}");
        }
        // `--cascade` on the retry itself overrides `ignore`, and reaches the fan-out in turn.
        let flow = nightly("ignore");
        let mut run = Run::new(&flow);
        run.begin(&flow);
        for task in ["extract", "clean", "join"] {
            run.apply(&flow, &succeeded(task, 1));
        }
        run.apply(&flow, &Signal::Retry { task: "join".into(), cascade: true });
        let again = started(&run.apply(&flow, &succeeded("join", 2)));
        assert_eq!(again, [("a".into(), 2), ("b".into(), 2), ("c".into(), 2)]);
    }

    #[test]
    fn a_task_run_again_gets_its_whole_retry_budget_and_backoff_from_the_start() {
        let failed = |task: &str, attempt| Signal::Failed { task: task.into(), attempt };
        let retry = |attempt, delay| {
            vec![Decision::Start { task: "c".into(), attempt, delay: Duration::from_secs(delay) }]
        };
        let flow = nightly("cascade");
        let mut run = Run::new(&flow);
        run.begin(&flow);
        for task in ["extract", "clean", "join"] {
            run.apply(&flow, &succeeded(task, 1));
        }
        // c (one retry, 30 s backoff) fails twice: for good.
        assert_eq!(run.apply(&flow, &failed("c", 1)), retry(2, 30));
        run.apply(&flow, &failed("c", 2));
        assert_eq!(run.state(&flow, "c"), Some(TaskState::Failed(2)));

        // An operator's retry starts attempt 3: it is the first of a new series, so it is retried
        // once, after the first backoff, not failed for good at once.
        run.apply(&flow, &Signal::Retry { task: "c".into(), cascade: false });
        assert_eq!(run.apply(&flow, &failed("c", 3)), retry(4, 30));
        // Kept in the state record (and absent from older records, read as series of 1).
        let stored = run.to_stored(&flow);
        assert_eq!(stored.series.get("c"), Some(&3));
        let mut restored = Run::from_stored(&flow, &stored);
        assert_eq!(restored, run);
        restored.apply(&flow, &failed("c", 4));
        assert_eq!(restored.state(&flow, "c"), Some(TaskState::Failed(4)), "its one retry spent");
        let old: StoredRun = serde_json::from_str(r#"{"states":{"c":{"Started":2}},"cascade":[]}"#)
            .expect("an old record reads");
        assert!(old.series.is_empty());

        // A cascade re-runs c (attempt 5 after join's re-run): again a series of its own.
        run.apply(&flow, &succeeded("c", 4));
        run.apply(&flow, &Signal::Retry { task: "join".into(), cascade: false });
        assert_eq!(
            started(&run.apply(&flow, &succeeded("join", 2))),
            [("a".into(), 2), ("b".into(), 2), ("c".into(), 5)]
        );
        assert_eq!(run.apply(&flow, &failed("c", 5)), retry(6, 30));
        run.apply(&flow, &failed("c", 6));
        assert_eq!(run.state(&flow, "c"), Some(TaskState::Failed(6)));
    }

    proptest! {
        /// Signals duplicated and reordered at random: every task starts exactly once, and only
        /// after all its upstreams succeeded.
        #[test]
        fn duplicated_and_reordered_signals_start_each_task_once(seed in any::<u64>(), dup in 0usize..6) {
            let flow = nightly("ignore");
            let mut run = Run::new(&flow);
            let mut starts: Vec<(String, u32)> = started(&run.begin(&flow));
            let mut pending: Vec<Signal> = starts.iter().map(|(t, a)| succeeded(t, *a)).collect();
            let mut rng = seed;
            let mut next = |n: usize| {
                rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (rng >> 33) as usize % n.max(1)
            };
            let mut steps = 0;
            while !pending.is_empty() && steps < 1_000 {
                steps += 1;
                let signal = pending.swap_remove(next(pending.len()));
                if next(10) < dup {
                    pending.push(signal.clone());
                }
                for (task, attempt) in started(&run.apply(&flow, &signal)) {
                    let upstreams_done = flow.task(&task).into_iter().flat_map(|t| &t.after).all(|up| {
                        matches!(run.state(&flow, up), Some(TaskState::Succeeded(_)))
                    });
                    prop_assert!(upstreams_done, "{task} started before its upstreams succeeded");
                    pending.push(succeeded(&task, attempt));
                    starts.push((task, attempt));
                }
            }
            let mut names: Vec<&str> = starts.iter().map(|(t, _)| t.as_str()).collect();
            names.sort_unstable();
            prop_assert_eq!(names, vec!["a", "b", "c", "clean", "extract", "join"]);
            prop_assert!(run.is_over());
        }
    }
}
