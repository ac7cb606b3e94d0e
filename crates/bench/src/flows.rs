//! Scenario 8, task flows: `fanout-flows` as a child process, beside a raw produce → consume
//! pair (what Kafka itself adds to one hop).
//!
//! The flow is `a → b`, with `b` declaring `expect_within`, so every start of `b` also writes its
//! "late" alarm to the schedule topic (as in production; no scheduler runs, so none fires). The
//! bench plays the workers: it publishes `TaskSucceeded(a)` with the SDK and watches
//! `flow.task.started` (`read_committed`) for the engine's `TaskStarted(b)` of the same run.
//!
//! * **Runs.** `runs` runs are requested at once (`RunRequested`): the engine starts each run's
//!   `a`. Once all are started, the state topic holds every run; it is what a restart restores.
//! * **Trigger latency**, alternating per repetition with the peer: successes at `rate` per
//!   second (open loop), each measured from its acknowledgement to the watcher seeing its run's
//!   `TaskStarted(b)` (so the engine's read, decision, transaction and the watcher's fetch). The
//!   peer publishes the same successes to a topic of its own, read by the same watcher code: ack
//!   → seen. A second peer, [`ExactlyOncePeer`], turns each success into a record exactly once
//!   with the canonical transactional consume → produce loop (one producer). The engine's own `fanout_flow_trigger_latency_seconds` (success record time →
//!   transaction committed) is printed beside them.
//! * **Throughput**: successes for runs whose `a` is started, as fast as the SDK publishes them;
//!   completions per second = successes / (first publish → last `TaskStarted(b)` seen), and the
//!   engine's CPU per completion.
//! * **Recovery**: the engine is killed (SIGKILL) and started again with the same `instance_id`;
//!   successes published meanwhile wait. Reported: start → `/readyz` (every partition's runs
//!   read back) and start → the first of their starts. Then successes already acted on are
//!   published again, followed by sentinels on the same partitions: once the sentinels' starts
//!   are seen, no duplicate may have started anything.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use fanout_flows::{
    signals::{RunRequested, TaskSucceeded},
    SignalTopics,
};
use fanout_kafka::TopicSpec;
use fanout_producer::{PublishOptions, Publisher};
use futures::{stream::FuturesUnordered, FutureExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    error::KafkaError,
    producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer},
    types::RDKafkaErrorCode,
    Message as _, Offset, TopicPartitionList,
};

use super::{
    child::{bucket_quantile, buckets, Launch},
    env::Env,
    report::{Limit, Report, Samples, Target, Unit},
    Plan,
};

/// Partitions of the signal, state and schedule topics (the engine's default).
const PARTITIONS: i32 = 12;
const FLOW: &str = "bench";
/// `b` declares a deadline, so each of its starts writes an alarm as it would in production.
const FLOW_FILE: &str = r#"
name = "bench"

[[tasks]]
name = "a"
command = ["true"]

[[tasks]]
name = "b"
after = ["a"]
command = ["true"]
expect_within = "1h"
"#;
/// The engine's `instance_id`: the restarted process takes the killed one's place at once.
const INSTANCE: &str = "bench-flows";
/// Successes in flight at once while the throughput runs publish.
const IN_FLIGHT: usize = 5_000;

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn run_name(seq: usize) -> String {
    format!("r{seq:07}")
}

/// The run number of a `bench/rNNNNNNN` record key.
fn seq_of(key: &[u8]) -> Option<usize> {
    std::str::from_utf8(key).ok()?.strip_prefix(FLOW)?.strip_prefix("/r")?.parse().ok()
}

/// Per run: when its success was acknowledged and when (and how often) the watcher saw it.
struct Marks {
    acked_us: Vec<AtomicI64>,
    seen_us: Vec<AtomicI64>,
    seen_count: Vec<AtomicU32>,
    seen_total: AtomicUsize,
}

impl Marks {
    fn new(runs: usize) -> Arc<Self> {
        let zeros = || (0..runs).map(|_| AtomicI64::new(0)).collect();
        Arc::new(Self {
            acked_us: zeros(),
            seen_us: zeros(),
            seen_count: (0..runs).map(|_| AtomicU32::new(0)).collect(),
            seen_total: AtomicUsize::new(0),
        })
    }

    fn seen(&self, seq: usize) {
        let Some(count) = self.seen_count.get(seq) else { return };
        if count.fetch_add(1, Ordering::AcqRel) == 0 {
            self.seen_us[seq].store(now_us(), Ordering::Release);
        }
        self.seen_total.fetch_add(1, Ordering::AcqRel);
    }

    fn all_seen(&self, seqs: std::ops::Range<usize>) -> bool {
        seqs.into_iter().all(|s| self.seen_count[s].load(Ordering::Acquire) > 0)
    }

    /// Runs in `seqs` seen more than once.
    fn twice(&self, seqs: std::ops::Range<usize>) -> usize {
        seqs.into_iter().filter(|s| self.seen_count[*s].load(Ordering::Acquire) > 1).count()
    }

    /// Ack → seen of each run in `seqs`, µs; one never seen counts as late as now.
    fn latencies(&self, seqs: std::ops::Range<usize>) -> anyhow::Result<(Histogram<u64>, usize)> {
        let mut histogram = Histogram::new_with_bounds(1, 600_000_000, 3)?;
        let (now, mut missing) = (now_us(), 0);
        for seq in seqs {
            let acked = self.acked_us[seq].load(Ordering::Acquire);
            let seen = match self.seen_us[seq].load(Ordering::Acquire) {
                0 => {
                    missing += 1;
                    now
                }
                at => at,
            };
            // The consumer may see a record before its producer hears the ack.
            histogram.saturating_record((seen - acked).max(1) as u64);
        }
        Ok((histogram, missing))
    }
}

/// A `read_committed` consumer of `topic` from its current end, on its own thread, marking every
/// run it sees until `stop`.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(env: &Env, topic: &str, marks: Arc<Marks>) -> anyhow::Result<Self> {
        let mut config = env.client_config();
        config
            .set("group.id", env.group("flows-watch"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            // Both sides' watchers see a record within this of its becoming visible.
            .set("fetch.wait.max.ms", "10");
        let consumer: BaseConsumer = config.create()?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
            assignment.add_partition_offset(topic, partition, Offset::Offset(high))?;
        }
        consumer.assign(&assignment)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(20)) {
                    Some(Ok(message)) => {
                        if let Some(seq) = message.key().and_then(seq_of) {
                            marks.seen(seq);
                        }
                    }
                    Some(Err(error)) => eprintln!("fanout bench: flows watcher: {error}"),
                    None => {}
                }
            }
        });
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The exactly-once peer: the consume → produce loop a skilled engineer writes to turn each
/// success into a start exactly once, without any join: read a batch (`read_committed`), write
/// one record per record read and the batch's offsets in one transaction of its one
/// transactional producer, with the engine's producer settings (linger 0, retry backoff 10 ms).
/// The engine adds its join, state records and alarms to this, and alternates two producers.
struct ExactlyOncePeer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl ExactlyOncePeer {
    fn start(env: &Env, input: &str, output: &str) -> anyhow::Result<Self> {
        let mut config = env.client_config();
        config
            .set("group.id", env.group("flows-eos-peer"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10");
        let consumer: BaseConsumer = config.create()?;
        consumer.subscribe(&[input])?;
        let mut config = env.producer_config()?;
        config
            .set("transactional.id", env.name("flows-eos-peer"))
            .set("linger.ms", "0")
            .set("retry.backoff.ms", "10")
            .set("retry.backoff.max.ms", "100");
        let producer: ThreadedProducer<DefaultProducerContext> = config.create()?;
        producer.init_transactions(Duration::from_secs(30))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let (input, output) = (input.to_owned(), output.to_owned());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let mut batch = Vec::new();
                let mut wait = Duration::from_millis(100);
                while batch.len() < 500 {
                    match consumer.poll(wait) {
                        Some(Ok(message)) => batch.push((
                            message.partition(),
                            message.offset(),
                            message.key().map(<[u8]>::to_vec),
                            message.payload().map(<[u8]>::to_vec),
                        )),
                        Some(Err(error)) => bail!("exactly-once peer: {error}"),
                        None => break,
                    }
                    wait = Duration::ZERO;
                }
                if batch.is_empty() {
                    continue;
                }
                producer.begin_transaction()?;
                let mut offsets = TopicPartitionList::new();
                for (partition, offset, key, payload) in &batch {
                    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&output);
                    if let Some(key) = key {
                        record = record.key(key.as_slice());
                    }
                    if let Some(payload) = payload {
                        record = record.payload(payload.as_slice());
                    }
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                                record = back;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            Err((error, _)) => return Err(error.into()),
                        }
                    }
                    offsets.add_partition_offset(&input, *partition, Offset::Offset(offset + 1))?;
                }
                let group = consumer.group_metadata().context("the peer's consumer has no group")?;
                producer.send_offsets_to_transaction(&offsets, &group, Duration::from_secs(30))?;
                producer.commit_transaction(Duration::from_secs(30))?;
            }
            Ok(())
        });
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops the loop; its error, if it failed.
    fn finish(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the exactly-once peer panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for ExactlyOncePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn success(seq: usize) -> TaskSucceeded {
    let finished_at = now_us() / 1_000;
    TaskSucceeded {
        flow: FLOW.into(),
        run: run_name(seq),
        task: "a".into(),
        attempt: 1,
        started_at: finished_at - 30_000,
        finished_at,
        worker: "fanout-bench".into(),
        output: None,
    }
}

/// Publishes the success of each run in `seqs` to `topic` at `rate` per second (open loop: each
/// at its time, whatever the earlier ones' acknowledgements), recording each ack.
async fn paced(
    publisher: &Publisher,
    topic: &str,
    marks: &Arc<Marks>,
    seqs: std::ops::Range<usize>,
    rate: f64,
) -> anyhow::Result<()> {
    let options = PublishOptions::new().topic(topic);
    let began = tokio::time::Instant::now();
    let mut acks = FuturesUnordered::new();
    for (n, seq) in seqs.enumerate() {
        tokio::time::sleep_until(began + Duration::from_secs_f64(n as f64 / rate)).await;
        let (publisher, options, marks) = (publisher.clone(), options.clone(), marks.clone());
        acks.push(tokio::spawn(async move {
            publisher.publish_with(&success(seq), &options).await?;
            marks.acked_us[seq].store(now_us(), Ordering::Release);
            anyhow::Ok(())
        }));
        // Collect finished acks as we go, so a failure surfaces early.
        while let Some(Some(done)) = acks.next().now_or_never() {
            done??;
        }
    }
    while let Some(done) = acks.next().await {
        done??;
    }
    Ok(())
}

/// Publishes the success of each run in `seqs` as fast as the SDK takes them; the partitions
/// they went to.
async fn blast(
    publisher: &Publisher,
    topic: &str,
    marks: &Arc<Marks>,
    seqs: std::ops::Range<usize>,
) -> anyhow::Result<HashSet<i32>> {
    let options = PublishOptions::new().topic(topic);
    let mut partitions = HashSet::new();
    let seqs: Vec<usize> = seqs.collect();
    for chunk in seqs.chunks(IN_FLIGHT) {
        let events: Vec<TaskSucceeded> = chunk.iter().map(|seq| success(*seq)).collect();
        let results = publisher.publish_all(&events, &options).await;
        let acked = now_us();
        for (seq, result) in chunk.iter().zip(results) {
            partitions.insert(result.context("publishing a success")?.partition);
            marks.acked_us[*seq].store(acked, Ordering::Release);
        }
    }
    Ok(partitions)
}

/// Waits until every run in `seqs` has been seen, failing after `timeout`.
async fn all_seen(
    marks: &Marks,
    seqs: std::ops::Range<usize>,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !marks.all_seen(seqs.clone()) {
        if Instant::now() > deadline {
            let missing = seqs.clone().filter(|s| marks.seen_count[*s].load(Ordering::Acquire) == 0).count();
            bail!("{what}: {missing} of {} never started within {timeout:?}", seqs.len());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn millis_at(histogram: &Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1_000.0
}

/// Hands out consecutive run numbers.
struct Runs(usize);

impl Runs {
    fn take(&mut self, n: usize) -> std::ops::Range<usize> {
        let range = self.0..self.0 + n;
        self.0 += n;
        range
    }
}

/// Runs the scenario.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let prefix = env.name("flow");
    let topics = SignalTopics::new(&prefix);
    let state_topic = env.name("flow-state");
    let schedule_topic = env.name("flow-schedule");
    for topic in
        [&topics.requested, &topics.started, &topics.succeeded, &topics.failed, &topics.late, &state_topic]
    {
        env.adopt_topic(topic);
    }
    let spec = TopicSpec::new(&schedule_topic, PARTITIONS).with("cleanup.policy", "compact");
    env.adopt_topic(&schedule_topic);
    fanout_kafka::ensure_topics(&env.client_config(), &[spec], Duration::from_secs(15)).await?;
    let flows_dir = env.work_dir.join(env.name("flows"));
    std::fs::create_dir_all(&flows_dir)?;
    std::fs::write(flows_dir.join("bench.toml"), FLOW_FILE)?;
    let group = env.group("flows");
    // Kept after the run (the scratch directory is not): a missed target sends one there.
    let log = std::env::temp_dir().join(format!("{}.log", env.name("flows-engine")));
    let launch = Launch::sibling("fanout-flows", log)?
        .env("FANOUT_NAME", &group)
        .env("FANOUT_INSTANCE_ID", INSTANCE)
        .env("FANOUT_FLOWS", flows_dir.display().to_string())
        .env("FANOUT_TOPIC_PREFIX", &prefix)
        .env("FANOUT_PARTITIONS", PARTITIONS.to_string())
        .env("FANOUT_STATE_TOPIC", &state_topic)
        .env("FANOUT_SCHEDULE_TOPIC", &schedule_topic)
        .env("FANOUT_KAFKA__BOOTSTRAP", &env.bootstrap)
        .env("FANOUT_REGISTRY__URLS", &env.registry)
        .env("FANOUT_LOG", std::env::var("BENCH_FLOWS_LOG").unwrap_or_else(|_| "warn".into()));
    let result = measure(env, plan, report, &launch, &topics).await;
    // A static member is not removed when it exits: the group goes once its session expired.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !env.delete_group_now(&group).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    result
}

async fn measure(
    env: &Env,
    plan: &Plan,
    report: &mut Report,
    launch: &Launch,
    topics: &SignalTopics,
) -> anyhow::Result<()> {
    let (rate, duration, reps) = (plan.flows_rate, plan.flows_duration, plan.flows_reps);
    let per_rep = (rate * duration.as_secs_f64()) as usize;
    let mut numbers = Runs(0);
    let latency_runs: Vec<_> = (0..reps).map(|_| numbers.take(per_rep)).collect();
    let throughput_runs: Vec<_> = (0..reps).map(|_| numbers.take(plan.flows_throughput_runs)).collect();
    let waiting = numbers.take(plan.flows_recovery_runs);
    let sentinels = numbers.take(plan.flows_recovery_runs);
    let total = plan.flows_runs.max(numbers.0);
    let marks = Marks::new(total);
    let publisher = Publisher::new(env.publisher_config())?;

    let mut engine = launch.spawn()?;
    engine.ready(Duration::from_secs(60)).await.with_context(|| format!("see {}", launch.log.display()))?;
    let _watcher = Watcher::start(env, &topics.started, marks.clone())?;

    // Every run requested; the engine starts each one's `a`.
    println!("  requesting {total} runs…");
    let began = Instant::now();
    let requested = PublishOptions::new().topic(&topics.requested);
    for chunk in (0..total).collect::<Vec<_>>().chunks(IN_FLIGHT) {
        let requests: Vec<RunRequested> = chunk
            .iter()
            .map(|seq| RunRequested {
                flow: FLOW.into(),
                run: run_name(*seq),
                retry_task: None,
                cascade: false,
                requested_by: "fanout-bench".into(),
            })
            .collect();
        for result in publisher.publish_all(&requests, &requested).await {
            result.context("requesting a run")?;
        }
    }
    let wait = Duration::from_secs(60 + total as u64 / 1_000);
    crate::env::wait_for("every run's first task started", wait, || {
        marks.seen_total.load(Ordering::Acquire) >= total
    })
    .await
    .with_context(|| format!("see {}", launch.log.display()))?;
    let start_rate = total as f64 / began.elapsed().as_secs_f64();
    // From here on, the watcher sees `b`'s starts only; the `a` marks are cleared.
    for seq in 0..total {
        marks.seen_count[seq].store(0, Ordering::Release);
        marks.seen_us[seq].store(0, Ordering::Release);
    }
    let (hwm_started, _) = engine.memory()?;
    report.note(format!(
        "8 flows: flow a → b ({} partitions; b declares expect_within, so each start of b also writes its alarm \
         to a schedule topic); {total} runs requested and their first task started at {start_rate:.0} runs/s \
         (VmHWM {hwm_started:.0} MiB after); trigger latency = a's success acknowledged (SDK publish) → b's \
         TaskStarted seen by a read_committed consumer (fetch.wait.max.ms 10); the peer publishes the same \
         successes to a topic of its own, seen by the same consumer code; the engine's log: {}",
        PARTITIONS,
        launch.log.display()
    ));

    // Trigger latency, peer and engine alternating.
    let peer_topic = env.topic("flows-peer", PARTITIONS).await?;
    let peer_marks = Marks::new(per_rep * reps);
    let _peer_watcher = Watcher::start(env, &peer_topic, peer_marks.clone())?;
    let eos_input = env.topic("flows-eos-in", PARTITIONS).await?;
    let eos_output = env.topic("flows-eos-out", PARTITIONS).await?;
    let eos_marks = Marks::new(per_rep * reps);
    let _eos_watcher = Watcher::start(env, &eos_output, eos_marks.clone())?;
    let eos = ExactlyOncePeer::start(env, &eos_input, &eos_output)?;
    let (mut peer_runs, mut eos_runs) = (Runs(0), Runs(0));
    let grace = Duration::from_secs(10);
    let (mut p50, mut p99, mut p999) = (Samples::new(), Samples::new(), Samples::new());
    let (mut peer50, mut peer99, mut peer999) = (Samples::new(), Samples::new(), Samples::new());
    let (mut eos50, mut eos99, mut eos999) = (Samples::new(), Samples::new(), Samples::new());
    let mut own99 = Samples::new();
    let mut notes = Vec::new();
    for (rep, seqs) in latency_runs.iter().enumerate() {
        for side in (0..3).map(|n| (n + rep) % 3) {
            if side == 0 {
                let seqs = peer_runs.take(per_rep);
                paced(&publisher, &peer_topic, &peer_marks, seqs.clone(), rate).await?;
                let _ = all_seen(&peer_marks, seqs.clone(), grace, "peer").await;
                let (histogram, _) = peer_marks.latencies(seqs)?;
                peer50.push(millis_at(&histogram, 0.5));
                peer99.push(millis_at(&histogram, 0.99));
                peer999.push(millis_at(&histogram, 0.999));
            } else if side == 1 {
                let seqs = eos_runs.take(per_rep);
                paced(&publisher, &eos_input, &eos_marks, seqs.clone(), rate).await?;
                let _ = all_seen(&eos_marks, seqs.clone(), grace, "exactly-once peer").await;
                let (histogram, _) = eos_marks.latencies(seqs)?;
                eos50.push(millis_at(&histogram, 0.5));
                eos99.push(millis_at(&histogram, 0.99));
                eos999.push(millis_at(&histogram, 0.999));
            } else {
                let before = buckets(&engine.metrics().await?, "fanout_flow_trigger_latency_seconds");
                paced(&publisher, &topics.succeeded, &marks, seqs.clone(), rate).await?;
                let _ = all_seen(&marks, seqs.clone(), grace, "latency").await;
                let after = buckets(&engine.metrics().await?, "fanout_flow_trigger_latency_seconds");
                let (histogram, missing) = marks.latencies(seqs.clone())?;
                p50.push(millis_at(&histogram, 0.5));
                p99.push(millis_at(&histogram, 0.99));
                p999.push(millis_at(&histogram, 0.999));
                if let Some(bound) = bucket_quantile(&before, &after, 0.99) {
                    own99.push(bound * 1_000.0);
                }
                let twice = marks.twice(seqs.clone());
                notes.push(format!(
                    "rep {rep}: {} measured, {missing} never started, {twice} started twice, max {:.0} ms",
                    histogram.len(),
                    histogram.max() as f64 / 1_000.0
                ));
                if twice > 0 {
                    bail!("the engine started {twice} tasks twice");
                }
            }
        }
    }
    eos.finish()?;
    report.note(format!("8 flows latency: {}", notes.join("; ")));
    let row = |metric: &str, fanout: Samples, peer: Samples, ceiling: Option<f64>| Limit {
        scenario: "8 flows".into(),
        metric: metric.into(),
        fanout: ("fanout-flows".into(), fanout),
        peer: Some(("produce → consume".into(), peer)),
        unit: Unit::Millis,
        bound: ceiling.map(Target::AtMost),
    };
    let at = format!("{rate:.0} completions/s");
    let eos_row = |metric: &str, fanout: &Samples, peer: Samples| Limit {
        peer: Some(("exactly-once consume → produce".into(), peer)),
        ..row(metric, fanout.clone(), Samples::new(), None)
    };
    report.limit(eos_row(&format!("trigger latency p50, {at}"), &p50, eos50));
    report.limit(eos_row(&format!("trigger latency p99, {at}"), &p99, eos99));
    report.limit(eos_row(&format!("trigger latency p99.9, {at}"), &p999, eos999));
    report.limit(row(&format!("trigger latency p50, {at}"), p50, peer50, None));
    report.limit(row(&format!("trigger latency p99, {at}"), p99, peer99, Some(50.0)));
    report.limit(row(&format!("trigger latency p99.9, {at}"), p999, peer999, Some(150.0)));
    if own99.len() > 0 {
        report.limit(Limit {
            metric: "success → committed p99 (own histogram, bucket bound)".into(),
            peer: None,
            ..row("", own99, Samples::new(), Some(50.0))
        });
    }

    // Throughput: successes as fast as they can be published.
    let (mut rates, mut cpu) = (Samples::new(), Samples::new());
    let mut publish_rates = Vec::new();
    for seqs in &throughput_runs {
        let cpu_before = engine.cpu_time()?;
        let began_us = now_us();
        blast(&publisher, &topics.succeeded, &marks, seqs.clone()).await?;
        let published_s = (now_us() - began_us) as f64 / 1e6;
        all_seen(&marks, seqs.clone(), Duration::from_secs(120), "throughput").await?;
        let last = seqs.clone().map(|s| marks.seen_us[s].load(Ordering::Acquire)).max().unwrap_or(began_us);
        let took_s = (last - began_us).max(1) as f64 / 1e6;
        rates.push(seqs.len() as f64 / took_s);
        cpu.push(engine.cpu_time()?.saturating_sub(cpu_before).as_secs_f64() * 1e6 / seqs.len() as f64);
        publish_rates.push(format!("{:.0}/s", seqs.len() as f64 / published_s));
        let twice = marks.twice(seqs.clone());
        if twice > 0 {
            bail!("the engine started {twice} tasks twice");
        }
    }
    report.note(format!(
        "8 flows throughput: {} successes per repetition, published at {} (the SDK, {IN_FLIGHT} per publish_all)",
        plan.flows_throughput_runs,
        publish_rates.join(", ")
    ));
    let absolute = |metric: String, samples: Samples, unit: Unit, bound: Option<Target>| Limit {
        scenario: "8 flows".into(),
        metric,
        fanout: ("fanout-flows".into(), samples),
        peer: None,
        unit,
        bound,
    };
    report.limit(absolute(
        "completions/s, one instance".into(),
        rates,
        Unit::PerSecond,
        Some(Target::AtLeast(10_000.0)),
    ));
    report.limit(absolute("engine CPU per completion".into(), cpu, Unit::Micros, None));

    // Recovery: kill -9; successes wait while no engine runs; the restart restores every run.
    let (hwm_before, _) = engine.memory()?;
    engine.kill();
    blast(&publisher, &topics.succeeded, &marks, waiting.clone()).await?;
    let restarted = Instant::now();
    let restarted_us = now_us();
    let mut engine = launch.spawn()?;
    engine.ready(Duration::from_secs(120)).await.with_context(|| format!("see {}", launch.log.display()))?;
    let ready_s = restarted.elapsed().as_secs_f64();
    all_seen(&marks, waiting.clone(), Duration::from_secs(120), "after the restart").await?;
    let first =
        waiting.clone().map(|s| marks.seen_us[s].load(Ordering::Acquire)).min().unwrap_or(restarted_us);
    let first_s = (first - restarted_us) as f64 / 1e6;
    let (hwm_restored, _) = engine.memory()?;
    // Successes already acted on, again, then sentinels on the same partitions: once the
    // sentinels started, the duplicates before them were read, and must have started nothing.
    let replayed = throughput_runs.first().cloned().unwrap_or_default();
    let replayed = replayed.start..replayed.end.min(replayed.start + plan.flows_recovery_runs);
    let duplicated = blast(&publisher, &topics.succeeded, &marks, replayed.clone()).await?;
    let covered = blast(&publisher, &topics.succeeded, &marks, sentinels.clone()).await?;
    if !duplicated.is_subset(&covered) {
        bail!(
            "the sentinels missed partitions {:?}; use more recovery runs",
            duplicated.difference(&covered)
        );
    }
    all_seen(&marks, sentinels.clone(), Duration::from_secs(60), "sentinels").await?;
    let twice = marks.twice(replayed.clone()) + marks.twice(waiting.clone());
    if twice > 0 {
        bail!("after the restart, {twice} tasks started a second time");
    }
    let terminated = engine.terminate().await;
    println!("  recovery: /readyz {ready_s:.2} s, first start {first_s:.2} s after the restart");
    let one = |v: f64| {
        let mut s = Samples::new();
        s.push(v);
        s
    };
    report.limit(absolute(
        format!("restart → /readyz ({total} runs restored)"),
        one(ready_s),
        Unit::Seconds,
        Some(Target::AtMost(10.0)),
    ));
    report.limit(absolute(
        format!("restart → first start ({total} runs restored)"),
        one(first_s),
        Unit::Seconds,
        None,
    ));
    report.limit(absolute(
        format!("peak RSS (VmHWM), {total} runs"),
        one(hwm_before.max(hwm_restored)),
        Unit::MiB,
        None,
    ));
    report.note(format!(
        "8 flows recovery: kill -9 after the throughput runs; {} successes published while no engine ran all \
         started after the restart; {} successes already acted on were published again and started nothing \
         ({} sentinels behind them on the same partitions started); VmHWM {hwm_before:.0} MiB before the kill, \
         {hwm_restored:.0} MiB once restored",
        waiting.len(),
        replayed.len(),
        sentinels.len()
    ));
    terminated
}
