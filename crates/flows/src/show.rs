//! `fanout flow show`: one run as a text Gantt chart, built from its signals alone — each task's
//! wait (started by the engine → taken by a worker) and run, its slack, the critical path, and
//! when the run would have finished on a cron timetable.
//!
//! The timetable is the one the flow replaces: every task gets a slot as long as its
//! `expect_within` (its expected duration plus buffer; its `timeout` when none is declared), and
//! starts when the slots of all its upstreams have ended, whatever they actually took.

use std::{collections::HashMap, fmt::Write as _};

use crate::{
    signals::{TaskFailed, TaskStarted, TaskSucceeded},
    Flow,
};

/// What one task of a run did, from its latest attempt's signals (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskTiming {
    /// The task.
    pub task: String,
    /// Its latest attempt.
    pub attempt: i32,
    /// When the engine started it.
    pub started: Option<i64>,
    /// When a worker began it.
    pub began: Option<i64>,
    /// When it finished (succeeded or failed).
    pub finished: Option<i64>,
    /// Why it failed, when it did.
    pub failed: Option<String>,
}

/// One run, as its signals tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The run key.
    pub run: String,
    /// Each task of the flow, in flow order (tasks that never started have no times).
    pub tasks: Vec<TaskTiming>,
}

impl RunReport {
    /// The report of run `run` of `flow` from the signals given (others are ignored).
    pub fn new(
        flow: &Flow,
        run: &str,
        started: &[TaskStarted],
        succeeded: &[TaskSucceeded],
        failed: &[TaskFailed],
    ) -> Self {
        let mut tasks: Vec<TaskTiming> =
            flow.tasks.iter().map(|t| TaskTiming { task: t.name.clone(), ..TaskTiming::default() }).collect();
        let position: HashMap<&str, usize> =
            flow.tasks.iter().enumerate().map(|(at, t)| (t.name.as_str(), at)).collect();
        let ours = |f: &str, r: &str| f == flow.name && r == run;
        for s in started.iter().filter(|s| ours(&s.flow, &s.run)) {
            let Some(&at) = position.get(s.task.as_str()) else { continue };
            let timing = &mut tasks[at];
            if s.attempt >= timing.attempt {
                *timing = TaskTiming {
                    task: s.task.clone(),
                    attempt: s.attempt,
                    started: Some(s.started_at),
                    ..TaskTiming::default()
                };
            }
        }
        for s in succeeded.iter().filter(|s| ours(&s.flow, &s.run)) {
            let Some(&at) = position.get(s.task.as_str()) else { continue };
            let timing = &mut tasks[at];
            if s.attempt == timing.attempt && timing.finished.is_none() {
                (timing.began, timing.finished) = (Some(s.started_at), Some(s.finished_at));
            }
        }
        for s in failed.iter().filter(|s| ours(&s.flow, &s.run)) {
            let Some(&at) = position.get(s.task.as_str()) else { continue };
            let timing = &mut tasks[at];
            if s.attempt == timing.attempt && timing.finished.is_none() {
                (timing.began, timing.finished) = (Some(s.started_at), Some(s.finished_at));
                timing.failed = Some(s.reason.clone());
            }
        }
        Self { run: run.to_owned(), tasks }
    }

    /// The tasks on the critical path, first to last: from the task that finished last, back
    /// through the upstream that finished last each time.
    pub fn critical_path(&self, flow: &Flow) -> Vec<String> {
        let finished = |name: &str| self.tasks.iter().find(|t| t.task == name).and_then(|t| t.finished);
        let Some(mut at) = self.tasks.iter().filter(|t| t.finished.is_some()).max_by_key(|t| t.finished)
        else {
            return Vec::new();
        };
        let mut path = vec![at.task.clone()];
        while let Some(task) = flow.task(&at.task) {
            let Some(last) = task.after.iter().filter_map(|up| finished(up).map(|f| (f, up))).max() else {
                break;
            };
            let Some(next) = self.tasks.iter().find(|t| &t.task == last.1) else { break };
            path.push(next.task.clone());
            at = next;
        }
        path.reverse();
        path
    }

    /// How much later `task` could have finished without delaying anything: until its earliest
    /// dependant's start (the run's end, for a task nothing runs after).
    pub fn slack(&self, flow: &Flow, task: &str) -> Option<i64> {
        let finished = self.tasks.iter().find(|t| t.task == task)?.finished?;
        let (_, end) = self.span()?;
        let next = flow
            .dependants(task)
            .iter()
            .filter_map(|d| self.tasks.iter().find(|t| t.task == *d)?.started)
            .min()
            .unwrap_or(end);
        Some((next - finished).max(0))
    }

    /// The failed task that keeps `task` from starting, if any: a task that never started
    /// whose upstream (or an upstream's upstream) failed.
    pub fn blocked_by(&self, flow: &Flow, task: &str) -> Option<String> {
        let timing = self.tasks.iter().find(|t| t.task == task)?;
        if timing.started.is_some() {
            return None;
        }
        flow.task(task)?.after.iter().find_map(|up| {
            let upstream = self.tasks.iter().find(|t| &t.task == up)?;
            if upstream.failed.is_some() {
                Some(up.clone())
            } else {
                self.blocked_by(flow, up)
            }
        })
    }

    /// When the run began (its first start) and ended (its last finish), if it did.
    pub fn span(&self) -> Option<(i64, i64)> {
        let begin = self.tasks.iter().filter_map(|t| t.started).min()?;
        let end = self.tasks.iter().filter_map(|t| t.finished).max()?;
        Some((begin, end))
    }

    /// When the run would have finished on the timetable (slots of `expect_within`, or `timeout`,
    /// each after its upstreams' slots), with the tasks taking what they took this time.
    pub fn timetable_end(&self, flow: &Flow) -> Option<i64> {
        let (begin, _) = self.span()?;
        let mut slot_start: HashMap<&str, i64> = HashMap::new();
        let mut end = begin;
        // Flow order may list a task before its upstreams: settle starts until nothing moves.
        for _ in 0..flow.tasks.len() {
            for task in &flow.tasks {
                let start = task
                    .after
                    .iter()
                    .filter_map(|up| {
                        let up_task = flow.task(up)?;
                        let slot = up_task.expect_within.unwrap_or(up_task.timeout).as_millis() as i64;
                        Some(slot_start.get(up.as_str()).copied().unwrap_or(begin) + slot)
                    })
                    .max()
                    .unwrap_or(begin);
                slot_start.insert(task.name.as_str(), start);
            }
        }
        for timing in &self.tasks {
            let took = timing.began.zip(timing.finished).map(|(b, f)| f - b)?;
            end = end.max(slot_start.get(timing.task.as_str()).copied().unwrap_or(begin) + took);
        }
        Some(end)
    }

    /// The chart, `width` columns for the run's span.
    pub fn render(&self, flow: &Flow, width: usize) -> String {
        let mut out = String::new();
        let Some((begin, end)) = self.span() else {
            let _ = writeln!(out, "{} run {}: nothing has started", flow.name, self.run);
            return out;
        };
        let critical = self.critical_path(flow);
        let span = (end - begin).max(1) as f64;
        let column =
            |ms: i64| (((ms - begin) as f64 / span) * width as f64).round().clamp(0.0, width as f64) as usize;
        let name_width = self.tasks.iter().map(|t| t.task.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            out,
            "{} run {}   (. waiting for a worker, # running, x failed; * critical path)",
            flow.name, self.run
        );
        for timing in &self.tasks {
            let mark = if critical.contains(&timing.task) { '*' } else { ' ' };
            let mut bar = vec![' '; width + 1];
            if let Some(started) = timing.started {
                let began = timing.began.unwrap_or(end);
                let finished = timing.finished.unwrap_or(end);
                for cell in bar.iter_mut().take(column(began)).skip(column(started)) {
                    *cell = '.';
                }
                let fill = if timing.failed.is_some() { 'x' } else { '#' };
                for cell in bar.iter_mut().take(column(finished).max(column(began) + 1)).skip(column(began)) {
                    *cell = fill;
                }
            }
            let seconds =
                |ms: Option<i64>| ms.map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
            let wait = timing.started.zip(timing.began).map(|(s, b)| b - s);
            let run = timing.began.zip(timing.finished).map(|(b, f)| f - b);
            let _ = writeln!(
                out,
                "{mark}{:<name_width$} |{}| wait {:>6} run {:>7} slack {:>7}{}",
                timing.task,
                bar.iter().collect::<String>(),
                seconds(wait),
                seconds(run),
                seconds(self.slack(flow, &timing.task)),
                match (&timing.failed, self.blocked_by(flow, &timing.task)) {
                    (Some(reason), _) => format!("  FAILED: {reason}"),
                    (None, Some(upstream)) => format!("  blocked: {upstream} failed"),
                    (None, None) => String::new(),
                }
            );
        }
        let _ = writeln!(out, "finished in {:.1}s; critical path: {}", span / 1000.0, critical.join(" -> "));
        if let Some(timetable) = self.timetable_end(flow) {
            let saved = (timetable - end) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "on a timetable (slots of expect_within, else timeout): {:.1}s, {saved:.1}s later",
                (timetable - begin) as f64 / 1000.0
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow::parse(
            r#"
            name = "n"
            [[tasks]]
            name = "a"
            command = ["true"]
            expect_within = "10s"
            [[tasks]]
            name = "b"
            command = ["true"]
            expect_within = "10s"
            [[tasks]]
            name = "c"
            after = ["a", "b"]
            command = ["true"]
            expect_within = "10s"
            "#,
        )
        .expect("valid")
    }

    fn started(task: &str, at: i64) -> TaskStarted {
        TaskStarted { flow: "n".into(), run: "r".into(), task: task.into(), attempt: 1, started_at: at }
    }

    fn succeeded(task: &str, began: i64, finished: i64) -> TaskSucceeded {
        TaskSucceeded {
            flow: "n".into(),
            run: "r".into(),
            task: task.into(),
            attempt: 1,
            started_at: began,
            finished_at: finished,
            worker: "w".into(),
            output: None,
        }
    }

    #[test]
    fn the_chart_shows_waits_runs_the_critical_path_and_the_timetable() {
        let flow = flow();
        // a takes 2 s, b 5 s; c starts when b is done and takes 1 s: 6 s in all. On the
        // timetable c would wait for both 10 s slots: 10 + 1 = 11 s.
        let started = [started("a", 0), started("b", 0), started("c", 5_050)];
        let succeeded = [succeeded("a", 10, 2_000), succeeded("b", 20, 5_000), succeeded("c", 5_100, 6_100)];
        let report = RunReport::new(&flow, "r", &started, &succeeded, &[]);
        assert_eq!(report.critical_path(&flow), ["b", "c"]);
        assert_eq!(report.span(), Some((0, 6_100)));
        assert_eq!(report.timetable_end(&flow), Some(11_000));
        let chart = report.render(&flow, 30);
        assert!(chart.contains("*b"), "{chart}");
        assert!(chart.contains(" a "), "{chart}");
        assert!(chart.contains("critical path: b -> c"), "{chart}");
        assert!(chart.contains("11.0s, 4.9s later"), "{chart}");
        assert_eq!(report.slack(&flow, "a"), Some(3_050), "a could have finished when c started");
        assert_eq!(report.slack(&flow, "c"), Some(0));
    }

    #[test]
    fn a_failed_task_and_an_older_attempt() {
        let flow = flow();
        let failed = TaskFailed {
            flow: "n".into(),
            run: "r".into(),
            task: "a".into(),
            attempt: 2,
            started_at: 100,
            finished_at: 200,
            worker: "w".into(),
            exit_status: Some(3),
            reason: "exited with 3".into(),
            stderr_tail: String::new(),
        };
        let starts = [started("a", 0), TaskStarted { attempt: 2, ..started("a", 50) }];
        let report = RunReport::new(&flow, "r", &starts, &[succeeded("a", 1, 2)], &[failed]);
        let a = &report.tasks[0];
        assert_eq!((a.attempt, a.started, a.finished), (2, Some(50), Some(200)), "the latest attempt counts");
        let chart = report.render(&flow, 20);
        assert!(chart.contains("FAILED: exited with 3"), "{chart}");
        assert_eq!(report.blocked_by(&flow, "c"), Some("a".to_owned()));
        assert!(chart.contains("blocked: a failed"), "{chart}");
    }
}
