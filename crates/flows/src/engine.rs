//! The trigger engine: consumes the signals of the runs it owns and starts each dependant the
//! moment its upstreams of the same run succeeded, exactly once per (run, task, attempt).
//!
//! ```text
//!  flow.run.requested ─┐  (key flow/run; same partition count,          ┌─► flow.task.started
//!  flow.task.succeeded ├─ range assignor: partition p of each topic ──►─┤   (workers run it)
//!  flow.task.failed  ──┤  and of the state topic belong together)       ├─► _fanout_flows.state
//!  flow.task.late ─────┘  (counted only)                                 │   (partition p, key flow/run)
//!                         one Kafka transaction per batch:              └─► consumer offsets
//! ```
//!
//! * **Join state lives in a compacted topic**, not a database: each run's task states are one
//!   record keyed `flow/run`, written in the same Kafka transaction as the starts it decided and
//!   the offsets of the signals that decided them. A crash before the commit decides nothing (the
//!   signals are read again, against the state before them); after it, state, starts and offsets
//!   are all there. No second system has to agree with Kafka, and the engine needs no store.
//! * **Restore**: an instance given partition `p` reads partition `p` of the state topic whole
//!   before it reads that partition's signals (`read_committed`): a restart or a rebalance
//!   resumes exactly where the last commit left off.
//! * **Exactly once per (run, task, attempt)**: [`crate::Run`] starts a task only from
//!   `Waiting` (or a retry, with the next attempt), so duplicated, reordered or replayed signals
//!   decide nothing twice; the transaction makes the decision and its record one.
//! * **Retry backoff** goes through the scheduler: the `TaskStarted` of a retry is written to the
//!   schedule topic, due after the backoff, in the same transaction.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use fanout_core::schedule;
use fanout_kafka::{OwnedRecord, ProduceError, Record, RecordProducer, TopicRead, TopicSpec};
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use fanout_schema_registry::{AvroSerde, SerdeError};
use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
    error::KafkaError,
    message::{BorrowedMessage, Message},
    ClientConfig, ClientContext, Offset, TopicPartitionList,
};

use crate::{
    metrics::Metrics,
    signals::{RunRequested, TaskFailed, TaskLate, TaskStarted, TaskSucceeded},
    CronStart, Decision, EngineConfig, Flow, Run, Signal, SignalTopics, Start, StoredRun, TaskState,
};

/// Transactional producers the batches take turns on.
const PRODUCERS: usize = 2;
/// How long one transaction step may take before it counts as failed.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the engine could not start or stopped.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A flow file could not be read or was refused.
    #[error("cannot load the flows from {path}: {reason}")]
    Flows {
        /// The file or directory.
        path: String,
        /// Why, naming the flow and the problem.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The topics could not be created, or their partition counts differ.
    #[error("topics: {0}")]
    Topics(String),
    /// A Kafka client failed.
    #[error("the engine's Kafka client could not {operation}")]
    Kafka {
        /// What was attempted.
        operation: &'static str,
        /// Why.
        #[source]
        source: KafkaError,
    },
    /// Producing failed for good (fenced: another instance owns the work now).
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// The signal encoder could not be created.
    #[error(transparent)]
    Publisher(#[from] fanout_producer::PublishError),
    /// The HTTP port could not be bound.
    #[error("cannot listen on {listen}")]
    Http {
        /// The configured address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The processing thread could not be started or ended abnormally.
    #[error("the engine's processing thread failed")]
    Thread,
}

fanout_core::debug_as_report!(EngineError);

fn kafka(operation: &'static str) -> impl FnOnce(KafkaError) -> EngineError {
    move |source| EngineError::Kafka { operation, source }
}

/// Loads the flows of a file, or of every `*.toml` in a directory, by name.
pub fn load_flows(path: &std::path::Path) -> Result<HashMap<String, Flow>, EngineError> {
    let refused = |reason: String| EngineError::Flows { path: path.display().to_string(), reason };
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| refused(e.to_string()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut flows = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| refused(format!("{}: {e}", file.display())))?;
        let flow = Flow::parse(&text).map_err(|e| refused(format!("{}: {e}", file.display())))?;
        if flows.contains_key(&flow.name) {
            return Err(refused(format!("{}: a second flow named {}", file.display(), flow.name)));
        }
        flows.insert(flow.name.clone(), flow);
    }
    if flows.is_empty() {
        return Err(refused("no flow file (*.toml)".into()));
    }
    Ok(flows)
}

/// A run with its flow's name.
type NamedRun = (String, Run);
/// One partition's runs, by `flow/run` key.
type Runs = HashMap<Vec<u8>, NamedRun>;

/// What the processing thread and the rebalance callbacks share.
struct Shared {
    flows: HashMap<String, Flow>,
    runs: Mutex<HashMap<i32, Runs>>,
    state_topic: String,
    /// The topics whose partitions carry runs (not the trigger topics).
    signal_topics: [String; 4],
    read_config: ClientConfig,
    /// Set once the instance is a member with its partitions' runs restored.
    joined: AtomicBool,
    /// Bumped at every assignment change: a batch gathered across one is dropped, since its
    /// records may belong to partitions given away (or be delivered again).
    generation: std::sync::atomic::AtomicU64,
    metrics: Metrics,
}

impl Shared {
    fn runs(&self) -> MutexGuard<'_, HashMap<i32, Runs>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the runs a batch changed back as they were before it (its transaction failed).
    fn undo(&self, before: HashMap<RunSlot, Option<NamedRun>>) {
        let mut runs = self.runs();
        for ((partition, key), earlier) in before {
            let Some(owned) = runs.get_mut(&partition) else { continue };
            match earlier {
                Some(run) => owned.insert(key, run),
                None => owned.remove(&key),
            };
        }
    }

    /// Counts what a batch decided, once its transaction committed (at `acked`, Unix ms): the
    /// runs it changed move from their status before it to their status now.
    fn committed(&self, decided: &Decided, acked: i64) {
        self.metrics.started.inc_by(decided.starts.len() as u64);
        self.metrics.runs_started.inc_by(decided.runs_started);
        self.metrics.blocked.inc_by(decided.blocked);
        self.metrics.late.inc_by(decided.late);
        for at in &decided.triggered_at {
            self.metrics.trigger_latency.observe((acked - at).max(0) as f64 / 1000.0);
        }
        let runs = self.runs();
        for ((partition, key), before) in &decided.before {
            let was = before.as_ref().map(|(_, run)| run.status());
            let now = runs.get(partition).and_then(|owned| owned.get(key)).map(|(_, run)| run.status());
            if was != now {
                if let Some(was) = was {
                    self.metrics.runs.of(was).dec();
                }
                if let Some(now) = now {
                    self.metrics.runs.of(now).inc();
                }
            }
        }
    }

    /// Partition `partition`'s runs, restored, are this instance's now.
    fn assigned(&self, partition: i32, runs: Runs) {
        self.count_runs(&runs, 1);
        if let Some(earlier) = self.runs().insert(partition, runs) {
            self.count_runs(&earlier, -1);
        }
    }

    /// Partition `partition`'s runs are another instance's now.
    fn revoked(&self, partition: i32) {
        let runs = self.runs().remove(&partition);
        if let Some(runs) = runs {
            self.count_runs(&runs, -1);
        }
    }

    /// Gives up every partition's runs (the engine stops).
    fn release(&self) {
        let partitions: Vec<i32> = self.runs().keys().copied().collect();
        for partition in partitions {
            self.revoked(partition);
        }
    }

    /// Adds `sign` (1 or -1) to the runs gauge of each run's status.
    fn count_runs(&self, runs: &Runs, sign: i64) {
        for (_, run) in runs.values() {
            self.metrics.runs.of(run.status()).add(sign);
        }
    }

    /// Reads `partitions` of the state topic whole, side by side in one read: the runs as the
    /// last commit left them, by partition.
    fn restore(&self, partitions: &[i32]) -> Result<HashMap<i32, Runs>, fanout_kafka::ReadError> {
        let mut restored: HashMap<i32, Runs> = partitions.iter().map(|p| (*p, Runs::new())).collect();
        TopicRead::new(&self.state_topic)
            .partitions(partitions.iter().copied())
            .settled()
            .timeout(Duration::from_secs(30))
            .read_blocking(&self.read_config, |record| {
                let (Some(key), Some(value), Some(runs)) =
                    (record.key, record.payload, restored.get_mut(&record.partition))
                else {
                    return std::ops::ControlFlow::Continue(());
                };
                match serde_json::from_slice::<StateRecord>(&value) {
                    Ok(state) => match self.flows.get(&state.flow) {
                        Some(flow) => {
                            runs.insert(key, (state.flow.clone(), Run::from_stored(flow, &state.run)));
                        }
                        None => {
                            tracing::warn!(flow = %state.flow, "state of a flow no longer loaded; skipped (it stays in the state topic)")
                        }
                    },
                    Err(error) => tracing::warn!(%error, "unreadable run state; skipped"),
                }
                std::ops::ControlFlow::Continue(())
            })?;
        Ok(restored)
    }
}

/// A run's state record: the flow, and the run as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct StateRecord {
    flow: String,
    run: StoredRun,
}

struct Context {
    shared: Arc<Shared>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if !fanout_kafka::is_end_of_partition(&error) {
            tracing::warn!(error = %fanout_core::report(&error), reason, "flow engine consumer: librdkafka error");
        }
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                self.shared.generation.fetch_add(1, Ordering::SeqCst);
                // Every signal topic's partition p comes with the others' (range assignor): the
                // state of p is restored once, before any of its signals is read. Trigger topics'
                // partitions carry no runs.
                let partitions: HashSet<i32> = list
                    .elements()
                    .iter()
                    .filter(|e| self.shared.signal_topics.iter().any(|t| t == e.topic()))
                    .map(|e| e.partition())
                    .collect();
                let partitions: Vec<i32> = partitions.into_iter().collect();
                let started = Instant::now();
                match self.shared.restore(&partitions) {
                    Ok(restored) => {
                        let count: usize = restored.values().map(HashMap::len).sum();
                        tracing::info!(partitions = ?partitions, runs = count, took = ?started.elapsed(), "flow runs restored");
                        for (partition, runs) in restored {
                            self.shared.assigned(partition, runs);
                        }
                    }
                    Err(error) => {
                        // Without its state a partition cannot be processed correctly: the
                        // process stops and restarts rather than deciding on a blank slate.
                        tracing::error!(error = %fanout_core::report(&error), "cannot restore flow runs; stopping");
                        std::process::abort();
                    }
                }
                self.shared.joined.store(true, Ordering::SeqCst);
            }
            Rebalance::Revoke(list) => {
                self.shared.generation.fetch_add(1, Ordering::SeqCst);
                for element in list.elements() {
                    self.shared.revoked(element.partition());
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "flow engine rebalance failed"),
        }
    }
}

/// A started engine: topics exist, clients created, the HTTP port bound.
pub struct Engine {
    config: EngineConfig,
    shared: Arc<Shared>,
    consumer: BaseConsumer<Context>,
    producers: Vec<RecordProducer>,
    publisher: Publisher,
    serde: AvroSerde,
    schedule_partitions: Option<i32>,
    listener: tokio::net::TcpListener,
    /// What `/metrics` requires (`[http] bearer_token`), if anything.
    http_token: Option<fanout_core::Secret>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("name", &self.config.name).finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the flows, creates the signal and state topics when absent (refusing partition
    /// counts that differ), the consumer and the transactional producer, and binds HTTP.
    pub async fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let http_token = config.http.bearer_token().map_err(EngineError::Config)?;
        let flows = load_flows(&config.flows)?;
        let client = fanout_kafka::client_config(&config.kafka);
        let topics = config.topics();
        let mut triggers: HashMap<&str, &str> = HashMap::new();
        for flow in flows.values() {
            let Start::Topic(topic) = &flow.start else { continue };
            let refused =
                |reason: String| EngineError::Flows { path: config.flows.display().to_string(), reason };
            if [&topics.requested, &topics.started, &topics.succeeded, &topics.failed, &topics.late]
                .contains(&topic)
            {
                return Err(refused(format!(
                    "flow {} starts on {topic}, one of the engine's own signal topics",
                    flow.name
                )));
            }
            if let Some(other) = triggers.insert(topic, &flow.name) {
                return Err(refused(format!("flows {other} and {} both start on topic {topic}", flow.name)));
            }
        }
        // The engine reads the late alarms too, to count those of tasks still running.
        let inputs = [
            topics.requested.as_str(),
            topics.succeeded.as_str(),
            topics.failed.as_str(),
            topics.late.as_str(),
        ];
        let mut specs: Vec<TopicSpec> =
            inputs.iter().map(|t| TopicSpec::new(*t, config.partitions)).collect();
        specs.push(TopicSpec::new(&topics.started, config.partitions));
        specs.push(TopicSpec::new(&config.state_topic, config.partitions).with("cleanup.policy", "compact"));
        fanout_kafka::ensure_topics(&client, &specs, Duration::from_secs(30))
            .await
            .map_err(|e| EngineError::Topics(fanout_core::report(&e)))?;
        let mut counts = Vec::new();
        for topic in inputs.iter().copied().chain([config.state_topic.as_str()]) {
            let (client, name) = (client.clone(), topic.to_owned());
            let partitions = tokio::task::spawn_blocking(move || {
                fanout_kafka::topic_partitions(&client, &name, Duration::from_secs(10))
            })
            .await
            .map_err(|_| EngineError::Thread)?
            .map_err(|e| EngineError::Topics(fanout_core::report(&e)))?;
            counts.push((topic.to_owned(), partitions.len()));
        }
        if counts.iter().any(|(_, n)| *n != counts[0].1) {
            return Err(EngineError::Topics(format!(
                "a run's signals and its state must share a partition number, so these topics need \
                 equal partition counts: {counts:?}"
            )));
        }
        let schedule_partitions = {
            let (client, name) = (client.clone(), config.schedule_topic.clone());
            tokio::task::spawn_blocking(move || {
                fanout_kafka::topic_partitions(&client, &name, Duration::from_secs(10))
            })
            .await
            .ok()
            .and_then(Result::ok)
            .map(|p| p.len() as i32)
        };
        if schedule_partitions.is_none() {
            tracing::warn!(topic = %config.schedule_topic, "no schedule topic (is fanout-scheduler running?): retries start without their backoff");
        }
        let mut read_config = client.clone();
        // A restore ends at each partition's end, which a fetch parked there reports only when
        // it returns: librdkafka's 500 ms default would add that much to every restore.
        read_config.set("isolation.level", "read_committed").set("fetch.wait.max.ms", "10");
        let shared = Arc::new(Shared {
            flows,
            runs: Mutex::default(),
            state_topic: config.state_topic.clone(),
            signal_topics: [
                topics.requested.clone(),
                topics.succeeded.clone(),
                topics.failed.clone(),
                topics.late.clone(),
            ],
            read_config,
            joined: AtomicBool::new(false),
            generation: std::sync::atomic::AtomicU64::new(0),
            metrics: Metrics::get(),
        });
        if config.instance_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(EngineError::Config("instance_id: empty; leave it out for a dynamic member".into()));
        }
        let mut consumer_config = client.clone();
        if let Some(instance) = &config.instance_id {
            consumer_config.set("group.instance.id", instance);
        }
        consumer_config
            .set("group.id", &config.name)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range")
            .set("fetch.wait.max.ms", "10");
        if !config.kafka.properties.contains_key("session.timeout.ms") {
            consumer_config.set("session.timeout.ms", "10000").set("heartbeat.interval.ms", "2000");
        }
        let consumer: BaseConsumer<Context> = consumer_config
            .create_with_context(Context { shared: shared.clone() })
            .map_err(kafka("create the consumer"))?;
        let mut producer_config = client;
        if !config.kafka.properties.contains_key("transaction.timeout.ms") {
            producer_config.set("transaction.timeout.ms", "10000");
        }
        if !config.kafka.properties.contains_key("linger.ms") {
            // A batch hands over all its records at once and waits for them: lingering would
            // only add to every start's latency.
            producer_config.set("linger.ms", "0");
        }
        if !config.kafka.properties.contains_key("retry.backoff.ms") {
            // librdkafka's 100 ms would be added to a transaction each time the broker asks it to
            // wait for the previous one's markers (CONCURRENT_TRANSACTIONS); Kafka's Java client
            // retries those after 20 ms for the same reason (KAFKA-5477).
            producer_config.set("retry.backoff.ms", "10").set("retry.backoff.max.ms", "100");
        }
        // Batches take turns on these: the broker writes a committed transaction's markers
        // after answering the commit, and the same producer's next transaction is refused
        // (CONCURRENT_TRANSACTIONS, retried after a backoff) until they are written. Another
        // producer's is not, so a batch need not wait for the one before it to settle.
        let mut producers = Vec::with_capacity(PRODUCERS);
        for turn in 0..PRODUCERS {
            let id = match &config.instance_id {
                Some(instance) => format!("{}-{instance}-{turn}", config.name),
                None => format!("{}-{}", config.name, uuid::Uuid::now_v7()),
            };
            producers.push(
                RecordProducer::transactional(producer_config.clone(), &id, TRANSACTION_TIMEOUT).await?,
            );
        }
        let mut publisher_config = PublisherConfig::new(&config.name);
        publisher_config.kafka = config.kafka.clone();
        publisher_config.registry = config.registry.clone();
        let publisher = Publisher::new(publisher_config)?;
        let serde = AvroSerde::from_settings(&config.registry)
            .map_err(|e| EngineError::Topics(fanout_core::report(&e)))?;
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .map_err(|source| EngineError::Http { listen: config.http.listen.clone(), source })?;
        Ok(Self {
            config,
            shared,
            consumer,
            producers,
            publisher,
            serde,
            schedule_partitions,
            listener,
            http_token,
        })
    }

    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub fn http_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Processes signals until `shutdown` completes; then finishes the batch in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), EngineError> {
        let Self {
            config,
            shared,
            consumer,
            producers,
            publisher,
            serde,
            schedule_partitions,
            listener,
            http_token,
        } = self;
        let topics = config.topics();
        // A flow started by a topic: each of its records requests the run named by its key.
        let triggers: HashMap<String, String> = shared
            .flows
            .values()
            .filter_map(|flow| match &flow.start {
                Start::Topic(topic) => Some((topic.clone(), flow.name.clone())),
                _ => None,
            })
            .collect();
        let subscribed: Vec<&str> = shared.signal_topics.iter().map(String::as_str).collect();
        consumer.subscribe(&subscribed).map_err(kafka("subscribe"))?;
        let forwarding = (!triggers.is_empty()).then(|| {
            tokio::spawn(crate::triggers::forward(
                config.clone(),
                fanout_kafka::client_config(&config.kafka),
                triggers,
                publisher.clone(),
            ))
        });
        let requested = PublishOptions::new().topic(&topics.requested);
        let crons: Vec<_> = shared
            .flows
            .values()
            .filter_map(|flow| match &flow.start {
                Start::Cron(cron) => Some(tokio::spawn(fire(
                    flow.name.clone(),
                    (**cron).clone(),
                    publisher.clone(),
                    requested.clone(),
                ))),
                _ => None,
            })
            .collect();
        let http = tokio::spawn(crate::http::serve(
            listener,
            {
                let shared = shared.clone();
                move || shared.joined.load(Ordering::SeqCst)
            },
            http_token,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = tokio::runtime::Handle::current();
        let mut processor = Processor {
            shared: shared.clone(),
            consumer,
            producers,
            turn: 0,
            publisher,
            serde,
            schedule_topic: config.schedule_topic.clone(),
            schedule_partitions,
            started: PublishOptions::new().topic(&topics.started),
            late: PublishOptions::new().topic(&topics.late),
            history: History::default(),
            keep_finished: Duration::from_secs(config.keep_finished_runs_secs),
            last_sweep: Instant::now(),
            topics,
            state_topic: config.state_topic.clone(),
            max_batch: config.max_batch,
        };
        let thread_stop = stop.clone();
        let (ended, thread_ended) = tokio::sync::oneshot::channel::<()>();
        let worker = std::thread::Builder::new()
            .name("fanout-flows".into())
            .spawn(move || {
                let result = processor.run(&handle, &thread_stop);
                let _ = ended.send(());
                result
            })
            .map_err(|_| EngineError::Thread)?;
        tracing::info!(group = %config.name, "flow engine started");
        // Until asked to stop, or until the processing thread stops by itself (an error it
        // cannot recover from): then the engine stops too, instead of looking alive.
        tokio::select! {
            () = shutdown => {}
            _ = thread_ended => {}
        }
        stop.store(true, Ordering::SeqCst);
        let result = tokio::task::spawn_blocking(move || worker.join()).await;
        // The consumer's close gives its partitions up; if it could not say so, the runs it held
        // are no longer this instance's all the same.
        shared.release();
        http.abort();
        for cron in crons {
            cron.abort();
        }
        if let Some(forwarding) = forwarding {
            forwarding.abort();
        }
        tracing::info!(group = %config.name, "flow engine stopped");
        match result {
            Ok(Ok(result)) => result,
            _ => Err(EngineError::Thread),
        }
    }
}

/// The processing thread's state.
struct Processor {
    shared: Arc<Shared>,
    consumer: BaseConsumer<Context>,
    /// The transactional producers batches take turns on, and whose turn it is.
    producers: Vec<RecordProducer>,
    turn: usize,
    publisher: Publisher,
    serde: AvroSerde,
    schedule_topic: String,
    schedule_partitions: Option<i32>,
    topics: SignalTopics,
    /// Where `TaskStarted` goes.
    started: PublishOptions,
    /// Where the scheduler delivers "late" alarms.
    late: PublishOptions,
    /// The tasks' recent run times, for deadlines nobody declared.
    history: History,
    /// How long a finished run is kept, and when they were last looked for.
    keep_finished: Duration,
    last_sweep: Instant,
    state_topic: String,
    max_batch: usize,
}

/// A record polled: its topic, partition and offset, and the signal (`None`: unreadable).
type Polled = (String, i32, i64, Option<Read>);

/// A signal read, with where it came from.
struct Read {
    key: Vec<u8>,
    flow: String,
    kind: Kind,
    /// The signal's record time (Unix ms): a success's, for the trigger latency.
    success_at: Option<i64>,
    /// A success's run time (the worker's start to finish), for the task's history.
    took_ms: Option<i64>,
}

/// What a record read asks of its run.
enum Kind {
    /// Start the run.
    Begin,
    /// A worker's report or an operator's retry.
    Signal(Signal),
    /// The scheduler delivered the "late" alarm of this attempt of a task.
    Late { task: String, attempt: u32 },
}

impl Processor {
    fn run(&mut self, handle: &tokio::runtime::Handle, stop: &AtomicBool) -> Result<(), EngineError> {
        let mut failures = 0u32;
        // Often enough that a run is kept at most half as long again as asked, at most a minute.
        let sweep_every = (self.keep_finished / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
        while !stop.load(Ordering::SeqCst) {
            if self.last_sweep.elapsed() >= sweep_every {
                self.last_sweep = Instant::now();
                if let Err(error) = handle.block_on(self.forget_finished()) {
                    if let Failure::Fatal(error) = error {
                        tracing::error!(error = %fanout_core::report(&error), "flow engine transaction outcome unknown; stopping");
                        return Err(EngineError::Produce(error));
                    }
                    tracing::warn!(error = %fanout_core::report(&error), "forgetting finished runs failed; trying again later");
                }
            }
            let mut batch: Vec<Polled> = Vec::new();
            // The assignment generation each record was polled under.
            let mut generations: Vec<u64> = Vec::new();
            let mut wait = Duration::from_millis(100);
            let mut unreadable = None;
            while batch.len() < self.max_batch.max(1) {
                match self.consumer.poll(wait) {
                    None => break,
                    Some(Ok(message)) => {
                        generations.push(self.shared.generation.load(Ordering::SeqCst));
                        let position = (message.topic().to_owned(), message.partition(), message.offset());
                        match handle.block_on(self.decode(&message)) {
                            Ok(read) => batch.push((position.0, position.1, position.2, read)),
                            Err(error) => {
                                // The registry is unavailable: this record and what follows wait.
                                batch.push((position.0, position.1, position.2, None));
                                unreadable = Some(error);
                                break;
                            }
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(error = %fanout_core::report(&error), "flow engine consumer error");
                        break;
                    }
                }
                wait = Duration::ZERO;
            }
            if batch.is_empty() {
                continue;
            }
            let latest = generations.last().copied().unwrap_or_default();
            if generations.first().is_some_and(|first| *first != latest) {
                // The assignment changed while the batch was gathered (the rebalance callback
                // runs inside poll): records polled before it belong to partitions given away,
                // or to partitions given back, whose reading restarted at the last commit and
                // brings them again. Only the records polled since are this batch's.
                let before = batch.len();
                let mut kept = generations.iter().map(|g| *g == latest);
                batch.retain(|_| kept.next().unwrap_or(false));
                tracing::debug!(dropped = before - batch.len(), "assignment changed mid-batch");
                if batch.is_empty() {
                    continue;
                }
            }
            if let Some(error) = unreadable {
                tracing::warn!(error = %fanout_core::report(&error), "the registry is unavailable; the signals wait");
                self.rewind(&batch)?;
                std::thread::sleep(backoff(&mut failures));
                continue;
            }
            match handle.block_on(self.process(&batch)) {
                Ok(()) => failures = 0,
                Err(Failure::Fatal(error)) => {
                    // A commit that failed may still have committed: only the state topic says
                    // which, so the process stops and its restart restores from there.
                    tracing::error!(error = %fanout_core::report(&error), "flow engine transaction outcome unknown; stopping");
                    return Err(EngineError::Produce(error));
                }
                Err(Failure::Produce(error)) if error.is_fenced() => {
                    tracing::error!(error = %fanout_core::report(&error), "flow engine fenced; stopping");
                    return Err(EngineError::Produce(error));
                }
                Err(error) => {
                    tracing::warn!(error = %fanout_core::report(&error), "flow engine transaction failed; reading the batch again");
                    self.rewind(&batch)?;
                    std::thread::sleep(backoff(&mut failures));
                }
            }
        }
        Ok(())
    }

    /// Decodes a signal record: `Ok(None)` (logged) for one that can never be read (it is
    /// skipped), `Err` while the registry cannot be asked (it is read again later).
    async fn decode(&self, message: &BorrowedMessage<'_>) -> Result<Option<Read>, SerdeError> {
        let (Some(payload), Some(key)) = (message.payload(), message.key()) else {
            tracing::warn!(
                topic = message.topic(),
                offset = message.offset(),
                "signal without key or payload; skipped"
            );
            return Ok(None);
        };
        let read = |flow: String, kind: Kind, success_at: Option<i64>, took_ms: Option<i64>| Read {
            key: key.to_vec(),
            flow,
            kind,
            success_at,
            took_ms,
        };
        let at = message.timestamp().to_millis();
        let topic = message.topic();
        // A signal whose key is not its run's would put its run's state in another partition.
        let keyed = |flow: &str, run: &str| crate::signals::run_key(flow, run) == key;
        let decoded = if topic == self.topics.succeeded {
            self.serde.decode::<TaskSucceeded>(payload).await.map(|s| {
                let took = Some(s.finished_at.saturating_sub(s.started_at));
                let ok = keyed(&s.flow, &s.run);
                let signal = Signal::Succeeded { task: s.task, attempt: s.attempt.max(0) as u32 };
                ok.then(|| read(s.flow, Kind::Signal(signal), at, took))
            })
        } else if topic == self.topics.failed {
            self.serde.decode::<TaskFailed>(payload).await.map(|s| {
                let ok = keyed(&s.flow, &s.run);
                let signal = Signal::Failed { task: s.task, attempt: s.attempt.max(0) as u32 };
                ok.then(|| read(s.flow, Kind::Signal(signal), None, None))
            })
        } else if topic == self.topics.late {
            self.serde.decode::<TaskLate>(payload).await.map(|l| {
                let ok = keyed(&l.flow, &l.run);
                let late = Kind::Late { task: l.task, attempt: l.attempt.max(0) as u32 };
                ok.then(|| read(l.flow, late, None, None))
            })
        } else {
            self.serde.decode::<RunRequested>(payload).await.map(|r| {
                let ok = keyed(&r.flow, &r.run);
                ok.then(|| match r.retry_task {
                    Some(task) => {
                        read(r.flow, Kind::Signal(Signal::Retry { task, cascade: r.cascade }), None, None)
                    }
                    None => read(r.flow, Kind::Begin, None, None),
                })
            })
        };
        match decoded {
            Ok(Some(read)) => Ok(Some(read)),
            Ok(None) => {
                tracing::warn!(topic, offset = message.offset(), key = %String::from_utf8_lossy(key), "signal keyed otherwise than flow/run; skipped");
                Ok(None)
            }
            Err(error) if error.is_transient() => Err(error),
            Err(error) => {
                tracing::error!(topic, offset = message.offset(), error = %fanout_core::report(&error), "unreadable signal; skipped");
                Ok(None)
            }
        }
    }

    /// Applies a batch and commits its decisions, the runs' new state and the offsets in one
    /// transaction; on failure the runs are put back as they were before it.
    async fn process(&mut self, batch: &[Polled]) -> Result<(), Failure> {
        let now = now_ms();
        let decided = decide(&self.shared, &mut self.history, batch, now);
        let result = self.commit(batch, &decided, now).await;
        self.turn = self.turn.wrapping_add(1);
        match result {
            Ok(()) => self.shared.committed(&decided, now_ms()),
            Err(_) => self.shared.undo(decided.before),
        }
        result
    }

    async fn commit(&self, batch: &[Polled], decided: &Decided, now: i64) -> Result<(), Failure> {
        let mut records: Vec<(OwnedRecord, Option<i32>)> =
            Vec::with_capacity(decided.starts.len() + decided.before.len());
        let mut alarms: Vec<(RunSlot, String, String)> = Vec::new();
        for Starting { started, delay, expect_within, slot } in &decided.starts {
            let record = self.publisher.encode(started, &self.started).await?;
            if let (Some(within), Some(partitions)) = (expect_within, self.schedule_partitions) {
                // The "late" alarm: the scheduler sends it when the task should have finished,
                // unless a later transaction of this engine cancels it first.
                let begins = now + delay.as_millis() as i64;
                let late = TaskLate {
                    flow: started.flow.clone(),
                    run: started.run.clone(),
                    task: started.task.clone(),
                    attempt: started.attempt,
                    started_at: begins,
                    expected_by: begins + within.as_millis() as i64,
                };
                let alarm = self.publisher.encode(&late, &self.late).await?;
                let target = schedule::Target {
                    topic: &alarm.topic,
                    key: alarm.key.as_deref(),
                    deliver_at_ms: late.expected_by,
                    not_after_ms: None,
                };
                let entry = schedule::entry(&target, &alarm.headers, partitions);
                alarms.push((slot.clone(), started.task.clone(), entry.schedule_id.to_string()));
                let scheduled = OwnedRecord {
                    topic: self.schedule_topic.clone(),
                    key: Some(entry.key.into_bytes()),
                    payload: alarm.payload,
                    headers: entry.headers,
                };
                records.push((scheduled, Some(entry.schedule_id.partition)));
            }
            match (delay.is_zero(), self.schedule_partitions) {
                (false, Some(partitions)) => {
                    // A retry's backoff: the scheduler delivers the start when it is due.
                    let target = schedule::Target {
                        topic: &record.topic,
                        key: record.key.as_deref(),
                        deliver_at_ms: now + delay.as_millis() as i64,
                        not_after_ms: None,
                    };
                    let entry = schedule::entry(&target, &record.headers, partitions);
                    let scheduled = OwnedRecord {
                        topic: self.schedule_topic.clone(),
                        key: Some(entry.key.into_bytes()),
                        payload: record.payload,
                        headers: entry.headers,
                    };
                    records.push((scheduled, Some(entry.schedule_id.partition)));
                }
                _ => records.push((record, None)),
            }
        }
        // One batch can start a task twice (a retry asked for twice; a failed attempt's retry and
        // an operator's): the later alarm replaces the earlier in the run, so the earlier is
        // called off in the transaction that sets it, or it would fire for an attempt nobody
        // waits on.
        let mut replaced = Vec::new();
        {
            let mut runs = self.shared.runs();
            for ((partition, key), task, alarm) in alarms {
                if let Some((_, run)) = runs.get_mut(&partition).and_then(|owned| owned.get_mut(&key)) {
                    replaced.extend(run.late.insert(task, alarm));
                }
            }
        }
        for alarm in decided.cancels.iter().chain(&replaced) {
            let Ok(id) = alarm.parse::<schedule::ScheduleId>() else { continue };
            let cancel = OwnedRecord {
                topic: self.schedule_topic.clone(),
                key: Some(id.id.to_string().into_bytes()),
                payload: None,
                headers: vec![(
                    schedule::OUTCOME.to_owned(),
                    Some(schedule::Outcome::Cancelled.as_str().as_bytes().to_vec()),
                )],
            };
            records.push((cancel, Some(id.partition)));
        }
        {
            let runs = self.shared.runs();
            for (partition, key) in decided.before.keys() {
                let Some((flow_name, run)) = runs.get(partition).and_then(|owned| owned.get(key)) else {
                    continue;
                };
                let Some(flow) = self.shared.flows.get(flow_name) else { continue };
                let state = StateRecord { flow: flow_name.clone(), run: run.to_stored(flow) };
                let value = serde_json::to_vec(&state).unwrap_or_default();
                let record = OwnedRecord {
                    topic: self.state_topic.clone(),
                    key: Some(key.clone()),
                    payload: Some(value),
                    headers: Vec::new(),
                };
                records.push((record, Some(*partition)));
            }
        }
        let mut offsets = TopicPartitionList::new();
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for (topic, partition, offset, _) in batch {
            let slot = next.entry((topic.as_str(), *partition)).or_insert(0);
            *slot = (*slot).max(offset + 1);
        }
        for ((topic, partition), offset) in next {
            let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
        let began = Instant::now();
        let producer = &self.producers[self.turn % self.producers.len()];
        producer.begin().await?;
        let sending = Instant::now();
        let sent = producer
            .send_all(
                records.iter().map(|(record, partition)| Record { partition: *partition, ..record.record() }),
            )
            .await;
        let acked_at = Instant::now();
        let failed = match (sent.into_iter().find_map(Result::err), self.consumer.group_metadata()) {
            (Some(error), _) => Some(Failure::Produce(error)),
            (None, None) => Some(Failure::NoGroup),
            (None, Some(group)) => match producer.commit(offsets, group, TRANSACTION_TIMEOUT).await {
                Ok(()) => {
                    tracing::debug!(
                        signals = batch.len(),
                        records = records.len(),
                        began = ?sending.duration_since(began),
                        sent = ?acked_at.duration_since(sending),
                        committed = ?acked_at.elapsed(),
                        "batch committed"
                    );
                    None
                }
                // Committed or not, only the broker knows: never aborted, never replayed here.
                Err(error) => return Err(Failure::Fatal(error)),
            },
        };
        if let Some(failed) = failed {
            if let Err(error) = producer.abort(TRANSACTION_TIMEOUT).await {
                tracing::error!(error = %fanout_core::report(&error), "aborting the flow engine's transaction failed");
                return Err(Failure::Fatal(error));
            }
            return Err(failed);
        }
        Ok(())
    }

    /// Deletes the runs over for longer than `keep_finished` from the state topic (tombstones,
    /// in a transaction of their own), then from memory.
    async fn forget_finished(&mut self) -> Result<(), Failure> {
        /// The most runs one transaction forgets; the rest wait for the next sweep.
        const MOST: usize = 10_000;
        let cutoff = now_ms().saturating_sub(self.keep_finished.as_millis() as i64);
        let expired: Vec<RunSlot> = self
            .shared
            .runs()
            .iter()
            .flat_map(|(partition, owned)| {
                owned
                    .iter()
                    .filter(|(_, (_, run))| run.finished_at.is_some_and(|at| at <= cutoff))
                    .map(|(key, _)| (*partition, key.clone()))
            })
            .take(MOST)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let producer = &self.producers[self.turn % self.producers.len()];
        self.turn = self.turn.wrapping_add(1);
        producer.begin().await?;
        let sent = producer
            .send_all(expired.iter().map(|(partition, key)| Record {
                topic: &self.state_topic,
                key: Some(key),
                payload: None,
                headers: fanout_kafka::Headers::with_capacity(0),
                partition: Some(*partition),
            }))
            .await;
        let committed = match sent.into_iter().find_map(Result::err) {
            Some(error) => Err(Failure::Produce(error)),
            None => producer.commit_records(TRANSACTION_TIMEOUT).await.map_err(Failure::Fatal),
        };
        if let Err(Failure::Produce(error)) = committed {
            producer.abort(TRANSACTION_TIMEOUT).await.map_err(Failure::Fatal)?;
            return Err(Failure::Produce(error));
        }
        committed?;
        let mut runs = self.shared.runs();
        for (partition, key) in &expired {
            if let Some((_, run)) = runs.get_mut(partition).and_then(|owned| owned.remove(key)) {
                self.shared.metrics.runs.of(run.status()).dec();
            }
        }
        tracing::info!(runs = expired.len(), "finished runs forgotten");
        Ok(())
    }

    /// Puts the consumer back at the batch's first offsets, to read it again.
    fn rewind(&self, batch: &[Polled]) -> Result<(), EngineError> {
        let mut first: HashMap<(&str, i32), i64> = HashMap::new();
        for (topic, partition, offset, _) in batch {
            let slot = first.entry((topic.as_str(), *partition)).or_insert(*offset);
            *slot = (*slot).min(*offset);
        }
        for ((topic, partition), offset) in first {
            // No rebalance can happen between the poll and here (callbacks run inside poll): the
            // partition is ours, and a seek that fails would skip the batch. Stopping is safer.
            self.consumer
                .seek(topic, partition, Offset::Offset(offset), Duration::from_secs(10))
                .map_err(kafka("seek back to a batch that did not commit"))?;
        }
        Ok(())
    }
}

/// Applies each signal of a batch to its run: what the batch decided, and the runs it changed as
/// they were before it. Nothing is counted here: the batch's transaction may still fail, and the
/// batch then be decided again.
fn decide(shared: &Shared, history: &mut History, batch: &[Polled], now: i64) -> Decided {
    let mut decided = Decided::default();
    let mut runs = shared.runs();
    for (_, partition, _, read) in batch {
        let Some(read) = read else { continue };
        let Some(flow) = shared.flows.get(&read.flow) else {
            tracing::warn!(flow = %read.flow, "signal for a flow this engine does not have; skipped");
            continue;
        };
        if let (Some(took), Kind::Signal(Signal::Succeeded { task, .. })) = (read.took_ms, &read.kind) {
            history.record(&flow.name, task, took);
        }
        // A partition revoked since the poll: its new owner reads it from the last commit.
        let Some(owned) = runs.get_mut(partition) else { continue };
        if owned.get(&read.key).is_some_and(|(stored, _)| *stored != flow.name) {
            tracing::warn!(flow = %flow.name, key = %String::from_utf8_lossy(&read.key), "signal for a run of another flow; skipped");
            continue;
        }
        let signal = match &read.kind {
            Kind::Begin => None,
            Kind::Signal(signal) => Some(signal),
            Kind::Late { task, attempt } => {
                // Late only while that attempt still runs: an alarm that raced its task's finish
                // (dispatched before the cancel came) or a newer attempt's start is no news.
                let state = owned.get(&read.key).and_then(|(_, run)| run.state(flow, task));
                if state == Some(TaskState::Started(*attempt)) {
                    decided.late += 1;
                }
                continue;
            }
        };
        let slot = (*partition, read.key.clone());
        decided.before.entry(slot.clone()).or_insert_with(|| owned.get(&read.key).cloned());
        let (_, run) = owned.entry(read.key.clone()).or_insert_with(|| (flow.name.clone(), Run::new(flow)));
        let decisions = match signal {
            None => {
                let decisions = run.begin(flow);
                // A run asked for again (every instance's cron fires; a request sent twice)
                // begins once: only its first begin starts its roots.
                if !decisions.is_empty() {
                    decided.runs_started += 1;
                }
                decisions
            }
            Some(signal) => {
                let task = match signal {
                    Signal::Succeeded { task, .. }
                    | Signal::Failed { task, .. }
                    | Signal::Retry { task, .. } => task,
                };
                let before = run.state(flow, task);
                let decisions = run.apply(flow, signal);
                // It finished (or runs again): its pending alarm is called off.
                if run.state(flow, task) != before {
                    if let Some(alarm) = run.late.remove(task) {
                        decided.cancels.push(alarm);
                    }
                }
                decisions
            }
        };
        // Kept from when it was first found over, for the retention of finished runs.
        run.finished_at = if run.is_over() { run.finished_at.or(Some(now)) } else { None };
        let run_name = run_of(&read.key, &flow.name);
        for decision in decisions {
            match decision {
                Decision::Start { task, attempt, delay } => {
                    if let Some(at) = read.success_at {
                        decided.triggered_at.push(at);
                    }
                    if let Some(alarm) = run.late.remove(&task) {
                        decided.cancels.push(alarm);
                    }
                    // Declared, or learned: the p95 of the task's earlier run times.
                    let expect_within = flow
                        .task(&task)
                        .and_then(|t| t.expect_within)
                        .or_else(|| history.p95(&flow.name, &task));
                    let started = TaskStarted {
                        flow: flow.name.clone(),
                        run: run_name.clone(),
                        task,
                        attempt: attempt as i32,
                        started_at: now,
                    };
                    decided.starts.push(Starting { started, delay, expect_within, slot: slot.clone() });
                }
                Decision::Blocked { task, upstream } => {
                    decided.blocked += 1;
                    tracing::info!(flow = %flow.name, run = %run_name, %task, %upstream, "task blocked by a failed upstream");
                }
            }
        }
    }
    decided
}

/// The wait after the `n`th failure in a row: 0.2 s doubling to 6.4 s.
fn backoff(failures: &mut u32) -> Duration {
    *failures = failures.saturating_add(1);
    Duration::from_millis(100 << (*failures).min(6))
}

/// A run's place: its state partition and key.
type RunSlot = (i32, Vec<u8>);

/// A start decided: the signal, its delay, and the alarm it sets.
struct Starting {
    started: TaskStarted,
    delay: Duration,
    expect_within: Option<Duration>,
    slot: RunSlot,
}

/// What a batch decided: the starts, the alarms called off, the run requests forwarded, the runs
/// it changed as they were before it, and the record times of the successes that triggered
/// starts.
#[derive(Default)]
struct Decided {
    starts: Vec<Starting>,
    /// Schedule ids of "late" alarms to call off.
    cancels: Vec<String>,
    before: HashMap<RunSlot, Option<NamedRun>>,
    triggered_at: Vec<i64>,
    /// Runs begun.
    runs_started: u64,
    /// Tasks blocked by a failed upstream.
    blocked: u64,
    /// "Late" alarms of attempts still running.
    late: u64,
}

/// Why a batch did not commit.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Sending failed: the transaction was aborted, nothing of it is visible.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// The producer cannot go on, or a commit failed and may have committed or not.
    #[error("the transaction's outcome is unknown, or the producer is broken")]
    Fatal(#[source] ProduceError),
    #[error(transparent)]
    Encode(#[from] fanout_producer::PublishError),
    #[error("the consumer has left its group: nothing can be committed")]
    NoGroup,
}

/// The run key of a `flow/run` record key.
fn run_of(key: &[u8], flow: &str) -> String {
    let key = String::from_utf8_lossy(key);
    key.strip_prefix(flow).and_then(|rest| rest.strip_prefix('/')).unwrap_or(&key).to_owned()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Requests a run of `flow` at each firing of `cron`, named by its local date. Every instance
/// fires: the requests of one firing name one run, which starts once.
async fn fire(flow: String, cron: CronStart, publisher: Publisher, requested: PublishOptions) {
    let mut after = chrono::Utc::now();
    loop {
        let Some((at, run)) = cron.next_after(after) else { return };
        let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        after = at;
        let request = RunRequested {
            flow: flow.clone(),
            run: run.clone(),
            retry_task: None,
            cascade: false,
            requested_by: "cron".into(),
        };
        match publisher.publish_with(&request, &requested).await {
            Ok(_) => tracing::info!(%flow, %run, "cron fired: run requested"),
            Err(error) => {
                tracing::error!(%flow, %run, error = %fanout_core::report(&error), "cron fired but the run request failed")
            }
        }
    }
}

/// Each task's recent run times (the last [`History::KEPT`] successes this instance saw): the
/// p95 is its deadline when the flow declares no `expect_within`. Kept in memory: after a restart
/// deadlines come back as runs complete.
#[derive(Debug, Default)]
struct History(HashMap<(String, String), std::collections::VecDeque<i64>>);

impl History {
    const KEPT: usize = 100;
    /// Fewer successes than this say too little to alarm on.
    const ENOUGH: usize = 5;

    fn record(&mut self, flow: &str, task: &str, took_ms: i64) {
        let times = self.0.entry((flow.to_owned(), task.to_owned())).or_default();
        if times.len() == Self::KEPT {
            times.pop_front();
        }
        times.push_back(took_ms.max(0));
    }

    fn p95(&self, flow: &str, task: &str) -> Option<Duration> {
        let times = self.0.get(&(flow.to_owned(), task.to_owned()))?;
        if times.len() < Self::ENOUGH {
            return None;
        }
        let mut sorted: Vec<i64> = times.iter().copied().collect();
        sorted.sort_unstable();
        let at = ((sorted.len() as f64 * 0.95).ceil() as usize).clamp(1, sorted.len()) - 1;
        Some(Duration::from_millis(sorted[at] as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::RunStatus;

    /// `ops`: `a`, then `b` after it; `a` does not retry.
    const OPS: &str = "name = \"ops\"\n[[tasks]]\nname = \"a\"\ncommand = [\"true\"]\n\
                       [[tasks]]\nname = \"b\"\nafter = [\"a\"]\ncommand = [\"true\"]\n";

    /// What the processing thread shares, owning partition 0, counting on metrics of its own.
    fn shared(flow: &str) -> Shared {
        let flow = Flow::parse(flow).expect("a valid flow");
        Shared {
            flows: HashMap::from([(flow.name.clone(), flow)]),
            runs: Mutex::new(HashMap::from([(0, Runs::new())])),
            state_topic: "state".into(),
            signal_topics: ["requested".into(), "succeeded".into(), "failed".into(), "late".into()],
            read_config: ClientConfig::new(),
            joined: AtomicBool::new(true),
            generation: std::sync::atomic::AtomicU64::new(0),
            metrics: Metrics::unregistered(),
        }
    }

    /// A record of run `ops/<run>` read from partition 0.
    fn polled(run: &str, kind: Kind) -> Polled {
        let read = Read {
            key: format!("ops/{run}").into_bytes(),
            flow: "ops".into(),
            kind,
            success_at: None,
            took_ms: None,
        };
        ("signals".into(), 0, 0, Some(read))
    }

    fn begin(run: &str) -> Polled {
        polled(run, Kind::Begin)
    }

    fn succeeded(run: &str, task: &str) -> Polled {
        polled(run, Kind::Signal(Signal::Succeeded { task: task.into(), attempt: 1 }))
    }

    fn failed(run: &str, task: &str) -> Polled {
        polled(run, Kind::Signal(Signal::Failed { task: task.into(), attempt: 1 }))
    }

    fn late(run: &str, task: &str, attempt: u32) -> Polled {
        polled(run, Kind::Late { task: task.into(), attempt })
    }

    /// Decides a batch whose transaction then commits.
    fn commit(shared: &Shared, history: &mut History, batch: &[Polled]) -> Decided {
        let decided = decide(shared, history, batch, 0);
        shared.committed(&decided, 0);
        decided
    }

    /// The runs gauge: running, succeeded, failed.
    fn runs(shared: &Shared) -> [i64; 3] {
        [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed].map(|s| shared.metrics.runs.of(s).get())
    }

    #[test]
    fn a_batch_is_counted_once_when_its_transaction_commits_not_each_time_it_is_decided() {
        let shared = shared(OPS);
        let mut history = History::default();
        // The run begins and `a` fails for good: `b` is blocked.
        let batch = [begin("r1"), failed("r1", "a")];
        let counts = |m: &Metrics| (m.runs_started.get(), m.started.get(), m.blocked.get());

        // The first transaction fails: the runs are put back, and nothing was counted.
        let decided = decide(&shared, &mut history, &batch, 0);
        assert_eq!((decided.runs_started, decided.starts.len(), decided.blocked), (1, 1, 1));
        shared.undo(decided.before);
        assert_eq!(counts(&shared.metrics), (0, 0, 0), "a failed transaction counts nothing");

        // The batch is read again, decided the same, and commits.
        let decided = decide(&shared, &mut history, &batch, 0);
        shared.committed(&decided, 0);
        assert_eq!(counts(&shared.metrics), (1, 1, 1), "one run, one start, one blocked task");
    }

    #[test]
    fn a_run_requested_again_is_started_once() {
        let shared = shared(OPS);
        let mut history = History::default();
        commit(&shared, &mut history, &[begin("r1"), begin("r1")]);
        commit(&shared, &mut history, &[begin("r1"), begin("r2")]);
        assert_eq!(shared.metrics.runs_started.get(), 2, "r1 and r2");
    }

    #[test]
    fn the_runs_gauge_follows_committed_changes_and_the_partitions_owned() {
        let shared = shared(OPS);
        let mut history = History::default();
        commit(&shared, &mut history, &[begin("r1"), begin("r2")]);
        assert_eq!(runs(&shared), [2, 0, 0]);
        // A transaction that fails changes nothing.
        let decided = decide(&shared, &mut history, &[failed("r1", "a")], 0);
        shared.undo(decided.before);
        assert_eq!(runs(&shared), [2, 0, 0]);
        // r1's first task fails for good (the second is blocked): the run is over, failed.
        commit(&shared, &mut history, &[failed("r1", "a")]);
        assert_eq!(runs(&shared), [1, 0, 1]);
        commit(&shared, &mut history, &[succeeded("r2", "a"), succeeded("r2", "b"), begin("r2")]);
        assert_eq!(runs(&shared), [0, 1, 1], "r2 succeeded; asked to begin again, it stays so");

        // The partition goes to another instance and comes back, restored.
        let restored = shared.runs()[&0].clone();
        shared.revoked(0);
        assert_eq!(runs(&shared), [0, 0, 0]);
        shared.assigned(0, restored.clone());
        shared.assigned(0, restored);
        assert_eq!(runs(&shared), [0, 1, 1], "an assignment replacing another counts its runs once");
        shared.release();
        assert_eq!(runs(&shared), [0, 0, 0]);
    }

    #[test]
    fn a_late_alarm_counts_only_while_its_attempt_still_runs() {
        let shared = shared(OPS);
        let mut history = History::default();
        commit(&shared, &mut history, &[begin("r1")]);
        let decided = commit(&shared, &mut history, &[late("r1", "a", 1)]);
        assert_eq!(shared.metrics.late.get(), 1, "a is still running");
        assert!(decided.before.is_empty(), "an alarm changes no run");
        // Not running: b has not started, a's attempt 2 never did, r9 does not exist.
        commit(&shared, &mut history, &[late("r1", "b", 1), late("r1", "a", 2), late("r9", "a", 1)]);
        assert_eq!(shared.metrics.late.get(), 1);
        assert!(!shared.runs()[&0].contains_key(b"ops/r9".as_slice()), "an alarm begins no run");
        // a finishes, and its alarm, dispatched before the cancel came, arrives after: no news.
        commit(&shared, &mut history, &[succeeded("r1", "a"), late("r1", "a", 1)]);
        assert_eq!(shared.metrics.late.get(), 1);
        commit(&shared, &mut history, &[late("r1", "b", 1)]);
        assert_eq!(shared.metrics.late.get(), 2, "b runs now");
    }

    #[test]
    fn a_deadline_is_learned_from_enough_history() {
        let mut history = History::default();
        for took in [100, 200, 300, 400] {
            history.record("f", "t", took);
        }
        assert_eq!(history.p95("f", "t"), None, "four runs say too little");
        for took in 500..=600 {
            history.record("f", "t", took);
        }
        assert_eq!(history.p95("f", "t"), Some(Duration::from_millis(595)), "the last 100 runs' p95");
        assert_eq!(history.p95("f", "other"), None);
    }
}
