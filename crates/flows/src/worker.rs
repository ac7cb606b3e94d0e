//! The worker: takes started tasks, runs their commands, and reports nothing but the final
//! signal — `TaskSucceeded`, or `TaskFailed` with the exit status and the tail of stderr.
//!
//! Workers share a consumer group on the started topic, so any number of them, on any machine,
//! split the work. A start's offset is committed only after its signal is acknowledged by Kafka:
//! a worker that dies mid-task leaves the start to another worker, which runs it again (tasks are
//! expected to be idempotent, as a cron job rerun by hand is), and the engine takes whichever
//! success arrives first once.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    process::Stdio,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use fanout_schema_registry::{AvroSerde, RegistrySettings};
use rdkafka::{
    consumer::{CommitMode, Consumer, StreamConsumer},
    Message, Offset, TopicPartitionList,
};
use tokio::{io::AsyncReadExt, sync::mpsc};

use crate::{
    signals::{TaskFailed, TaskStarted, TaskSucceeded},
    Flow, SignalTopics,
};

/// How much of a failed command's stderr its signal carries.
const STDERR_TAIL: usize = 2_048;

/// What a worker needs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The consumer group workers share.
    pub group: String,
    /// The flows, by name (the same files the engine loads).
    pub flows: HashMap<String, Flow>,
    /// The signal topics.
    pub topics: SignalTopics,
    /// Tasks run at once.
    pub concurrency: usize,
    /// How the worker names itself in its signals (host and process by default).
    pub worker: String,
    /// The cluster.
    pub kafka: fanout_config::KafkaSettings,
    /// The schema registry.
    pub registry: RegistrySettings,
}

/// Why a worker could not start or stopped.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The Kafka consumer failed.
    #[error("the worker's consumer could not {operation}")]
    Kafka {
        /// What was attempted.
        operation: &'static str,
        /// Why.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Reporting a signal failed (Kafka or the registry); the start is left to run again.
    #[error(transparent)]
    Publish(#[from] fanout_producer::PublishError),
    /// The registry client could not be created.
    #[error(transparent)]
    Registry(#[from] fanout_schema_registry::RegistryError),
}

fanout_core::debug_as_report!(WorkerError);

/// The worker's default name: host and process.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}/{}", std::process::id())
}

/// Runs tasks until `shutdown` completes; the tasks running then finish and report first.
pub async fn run_worker(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let kafka = |operation| move |source| WorkerError::Kafka { operation, source };
    let mut client = fanout_kafka::client_config(&config.kafka);
    client
        .set("group.id", &config.group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A task may run for hours: the worker is not taken for dead while its tasks run (it
        // polls on, partitions paused while it is full). A rebalance still moves partitions,
        // and a start not committed yet then runs again elsewhere.
        .set("max.poll.interval.ms", "86400000");
    let consumer: StreamConsumer = client.create().map_err(kafka("create the consumer"))?;
    consumer.subscribe(&[&config.topics.started]).map_err(kafka("subscribe"))?;
    let mut publisher_config = PublisherConfig::new(&config.worker);
    publisher_config.kafka = config.kafka.clone();
    publisher_config.registry = config.registry.clone();
    let publisher = Publisher::new(publisher_config)?;
    let serde = AvroSerde::from_settings(&config.registry)?;
    let config = Arc::new(config);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, i32, i64, Result<(), WorkerError>)>();
    // Per partition: the offsets still running, and the highest finished. The commit stops
    // before the lowest running one, or after the highest finished when none runs.
    let mut running: HashMap<(String, i32), (BTreeSet<i64>, i64)> = HashMap::new();
    let mut in_flight = 0usize;
    let mut stopping = false;
    tokio::pin!(shutdown);
    loop {
        if stopping && in_flight == 0 {
            break;
        }
        // Full (or stopping): the partitions are paused, and polling goes on, so the worker
        // still answers rebalances instead of stalling the group; pausing again each time
        // covers partitions a rebalance just gave it.
        if stopping || in_flight >= config.concurrency.max(1) {
            let assignment = consumer.assignment().map_err(kafka("read the assignment"))?;
            consumer.pause(&assignment).map_err(kafka("pause"))?;
        } else {
            let assignment = consumer.assignment().map_err(kafka("read the assignment"))?;
            consumer.resume(&assignment).map_err(kafka("resume"))?;
        }
        tokio::select! {
            () = &mut shutdown, if !stopping => {
                // The tasks running finish and report; no new one is taken.
                stopping = true;
            }
            done = done_rx.recv() => {
                let Some((topic, partition, offset, result)) = done else { break };
                in_flight -= 1;
                if let Err(error) = result {
                    // Not reported: the start stays uncommitted and runs again after a restart.
                    tracing::error!(error = %fanout_core::report(&error), %topic, partition, offset, "a task's signal could not be reported; stopping");
                    return Err(error);
                }
                let (offsets, finished) = running.entry((topic.clone(), partition)).or_insert((BTreeSet::new(), -1));
                offsets.remove(&offset);
                *finished = (*finished).max(offset);
                let commit_to = offsets.first().copied().unwrap_or(*finished + 1);
                let mut list = TopicPartitionList::new();
                let _ = list.add_partition_offset(&topic, partition, Offset::Offset(commit_to));
                let mode = if stopping && in_flight == 0 { CommitMode::Sync } else { CommitMode::Async };
                if let Err(error) = consumer.commit(&list, mode) {
                    tracing::warn!(%error, %topic, partition, "commit failed; the next one covers it");
                }
            }
            message = consumer.recv() => {
                let message = message.map_err(kafka("read"))?;
                let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
                let Some(payload) = message.payload() else {
                    tracing::warn!(%topic, partition, offset, "TaskStarted without payload; skipped");
                    continue;
                };
                let started = loop {
                    match serde.decode::<TaskStarted>(payload).await {
                        Ok(started) => break Some(started),
                        // The registry is unavailable: the task waits rather than being lost.
                        Err(error) if error.is_transient() => {
                            tracing::warn!(error = %fanout_core::report(&error), "the registry is unavailable; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(error) => {
                            tracing::error!(%topic, partition, offset, error = %fanout_core::report(&error), "unreadable TaskStarted; skipped");
                            break None;
                        }
                    }
                };
                let Some(started) = started else { continue };
                running.entry((topic.clone(), partition)).or_insert((BTreeSet::new(), -1)).0.insert(offset);
                in_flight += 1;
                let (config, publisher, done) = (config.clone(), publisher.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let result = run_task(&config, &publisher, started).await;
                    let _ = done.send((topic, partition, offset, result));
                });
            }
        }
    }
    publisher.flush(Duration::from_secs(10)).await?;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs one started task and reports its outcome.
async fn run_task(
    config: &WorkerConfig,
    publisher: &Publisher,
    started: TaskStarted,
) -> Result<(), WorkerError> {
    let began = now_ms();
    let outcome = match config.flows.get(&started.flow).and_then(|flow| flow.task(&started.task)) {
        None => Err((
            None,
            format!("this worker has no task {} in flow {}", started.task, started.flow),
            String::new(),
        )),
        Some(task) => execute(task, &started).await,
    };
    let finished = now_ms();
    match outcome {
        Ok(()) => {
            let signal = TaskSucceeded {
                flow: started.flow,
                run: started.run,
                task: started.task,
                attempt: started.attempt,
                started_at: began,
                finished_at: finished,
                worker: config.worker.clone(),
                output: None,
            };
            publisher.publish_with(&signal, &PublishOptions::new().topic(&config.topics.succeeded)).await?;
        }
        Err((exit_status, reason, stderr_tail)) => {
            tracing::warn!(flow = %started.flow, run = %started.run, task = %started.task, %reason, "task failed");
            let signal = TaskFailed {
                flow: started.flow,
                run: started.run,
                task: started.task,
                attempt: started.attempt,
                started_at: began,
                finished_at: finished,
                worker: config.worker.clone(),
                exit_status,
                reason,
                stderr_tail,
            };
            publisher.publish_with(&signal, &PublishOptions::new().topic(&config.topics.failed)).await?;
        }
    }
    Ok(())
}

/// A failed attempt: the exit status (if it exited), why, and the tail of its stderr.
type Failure = (Option<i32>, String, String);

/// Runs the task's command with its environment and timeout.
async fn execute(task: &crate::Task, started: &TaskStarted) -> Result<(), Failure> {
    let Some((program, args)) = task.command.split_first() else {
        return Err((None, "the task has no command".into(), String::new()));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(&task.env)
        .env("FANOUT_FLOW", &started.flow)
        .env("FANOUT_RUN", &started.run)
        .env("FANOUT_TASK", &started.task)
        .env("FANOUT_ATTEMPT", started.attempt.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: at the timeout the whole group is killed, children included
        // (a `sh -c` pipeline's), not only the shell.
        .process_group(0)
        .kill_on_drop(true);
    let mut child =
        command.spawn().map_err(|e| (None, format!("cannot start {program}: {e}"), String::new()))?;
    let mut stderr = child.stderr.take();
    let tail = tokio::spawn(async move {
        let mut tail = Vec::new();
        let mut chunk = [0u8; 4_096];
        if let Some(stderr) = stderr.as_mut() {
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    let status = match tokio::time::timeout(task.timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(error)) => {
            return Err((None, format!("waiting for {program} failed: {error}"), String::new()))
        }
        Err(_) => {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            let tail = tokio::time::timeout(Duration::from_secs(1), tail)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err((
                None,
                format!("killed at its timeout ({})", humantime::format_duration(task.timeout)),
                tail,
            ));
        }
    };
    // Children the command left behind may hold stderr open: the tail is not waited for long.
    let tail = tokio::time::timeout(Duration::from_secs(1), tail)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err((status.code(), format!("{program} exited with {status}"), tail))
    }
}
