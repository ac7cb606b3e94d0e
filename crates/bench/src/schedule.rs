//! Scenario 7, delayed delivery: `fanout-scheduler` as a child process with a million entries
//! pending, beside a raw produce → `read_committed` consume pair (what Kafka itself adds).
//!
//! * **Fill.** The pending entries are written straight to the schedule topic by a raw
//!   `BaseProducer` (the SDK's producer settings), in the record format of
//!   [`fanout_core::schedule`]: the CloudEvents headers an SDK event carries, the routing
//!   headers, a 100-byte payload, key = a v7 uuid. They are due uniformly over the day that
//!   starts 10 minutes after the fill (none comes due during the run; ~7,000 of a million fall in
//!   a 10-minute window, as they would in production).
//! * **Load.** The scheduler starts (its own binary, `fanout-scheduler`, next to `fanout`) and
//!   reads every partition whole; the time until `/readyz` answers 200 and its peak RSS
//!   (`VmHWM` of `/proc/PID/status`) are reported.
//! * **Lateness**, alternating per repetition: entries due at `rate` per second (open loop,
//!   written `LEAD` ahead of their due time) are delivered by the scheduler to a target topic;
//!   a `read_committed` consumer of the target records *now − due* for each (`fanout_scheduled_for`
//!   header). The peer produces a record at the due time to a topic of its own and the same
//!   consumer code records *now − due*. Both include the consumer's fetch; the scheduler's own
//!   `fanout_schedule_lateness_seconds` (due → transaction committed) is printed beside them.
//! * **Recovery.** With entries coming due, the scheduler is killed (SIGKILL) and started again
//!   at once with the same `instance_id`; reported: kill → first delivery of an entry due after
//!   the kill (only the new process can have delivered it, never early), and kill → `/readyz`.
//!
//! The watcher of both sides fetches with `fetch.wait.max.ms` 10 ms (`BENCH_FETCH_WAIT_MS`
//! overrides it): a transactional record becomes visible at its commit marker, and a consumer
//! whose parked fetch is not woken then sees it up to that long later (the consumer runtime's
//! 100 ms added about 30 ms to the scheduler's p99 in a quick run). `BENCH_SCHEDULER_LOG` sets
//! the child's log filter (`warn` by default) for profiling; its log is kept in the temporary
//! directory and named in the notes. `BENCH_SCHEDULER_INSTANCE=none` runs it without an
//! `instance_id` (a dynamic member), to compare recovery.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use fanout_core::{headers, schedule};
use fanout_kafka::TopicSpec;
use hdrhistogram::Histogram;
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    error::KafkaError,
    message::{Header, Headers as _, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext},
    types::RDKafkaErrorCode,
    ClientContext, Message, Offset, TopicPartitionList,
};

use super::{
    child::{bucket_quantile, buckets, Launch},
    env::Env,
    report::{Limit, Report, Samples, Target, Unit},
    Plan,
};

/// The schedule topic's partitions (the scheduler's default).
const PARTITIONS: i32 = 12;
/// Payload bytes of every entry: a typical framed `PostPublished`.
const PAYLOAD: usize = 100;
/// How far ahead of its due time a measured entry is written: the scheduler reads it live and
/// holds it in its window before it is due.
const LEAD_MS: i64 = 2_000;
/// The far entries are due from this long after the fill on…
const FAR_FROM: Duration = Duration::from_secs(600);
/// …over this span.
const FAR_SPAN: Duration = Duration::from_secs(86_400);
/// A prime larger than any pending count: `seq × PERMUTE mod count` visits every slot once
/// (for a count it does not divide).
const PERMUTE: i64 = 2_654_435_761;
/// Header carrying a measured entry's sequence number (both sides).
const SEQ: &str = "bench_seq";
/// The scheduler's `instance_id` (static group membership): the restarted process takes the
/// killed one's place in the group without waiting out its session.
const INSTANCE: &str = "bench-scheduler";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Counts delivery reports.
#[derive(Default)]
struct Acks {
    acked: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

/// A producer with the SDK's settings that counts its acknowledgements.
fn producer(env: &Env) -> anyhow::Result<BaseProducer<Acks>> {
    Ok(env.producer_config()?.create_with_context(Acks::default())?)
}

/// Sends one record, waiting for room in librdkafka's queue (a fill of a million outruns it).
fn send(producer: &BaseProducer<Acks>, mut record: BaseRecord<'_, str, [u8]>) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((error, _)) => return Err(error).context("producing"),
        }
    }
}

/// Waits for every acknowledgement; fails on any error.
fn settle(producer: &BaseProducer<Acks>, sent: usize) -> anyhow::Result<()> {
    producer.flush(Duration::from_secs(120)).context("flushing")?;
    let acks = producer.context();
    let (acked, failed) = (acks.acked.load(Ordering::Relaxed), acks.failed.load(Ordering::Relaxed));
    if failed > 0 || acked < sent {
        let first = acks.first_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
        bail!("{acked} of {sent} records acknowledged, {failed} failed (first: {first})");
    }
    Ok(())
}

/// A payload of [`PAYLOAD`] bytes: Confluent framing and text that compresses like text.
fn payload(seq: u64) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0, 0, 1];
    let text = format!("{seq} barista wanted weekend shifts near the station, bright quiet flat share room");
    bytes.extend(text.bytes().cycle().take(PAYLOAD - 5));
    bytes
}

/// The headers `publish` gives an event (constant values but a fresh `ce_id`), then `extra`.
fn event_headers(extra: &[(&str, &[u8])]) -> OwnedHeaders {
    let id = uuid::Uuid::now_v7().to_string();
    let base: [(&str, &[u8]); 7] = [
        (headers::SPECVERSION, headers::SPECVERSION_VALUE.as_bytes()),
        (headers::ID, id.as_bytes()),
        (headers::TYPE, b"post.published"),
        (headers::SOURCE, b"fanout-bench"),
        (headers::TIME, b"2026-11-30T05:00:00.000Z"),
        (headers::CONTENT_TYPE, headers::CONTENT_TYPE_AVRO.as_bytes()),
        (headers::TRACEPARENT, b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ];
    base.iter().chain(extra).fold(OwnedHeaders::new_with_capacity(base.len() + extra.len()), |all, (k, v)| {
        all.insert(Header { key: k, value: Some(*v) })
    })
}

/// Writes one schedule entry as the SDK's `publish_at` would: key = a new schedule id, partition
/// by target key, routing in headers.
fn send_entry(
    producer: &BaseProducer<Acks>,
    schedule_topic: &str,
    target: &str,
    seq: u64,
    due_ms: i64,
    measured: bool,
) -> anyhow::Result<()> {
    let id = uuid::Uuid::now_v7();
    let key = id.to_string();
    let target_key = (seq % 100_000).to_string();
    let partition = schedule::partition_for(Some(target_key.as_bytes()), &id, PARTITIONS);
    let due = due_ms.to_string();
    let seq_text = seq.to_string();
    let mut extra: Vec<(&str, &[u8])> = vec![
        (schedule::TARGET_TOPIC, target.as_bytes()),
        (schedule::TARGET_KEY, target_key.as_bytes()),
        (schedule::DELIVER_AT, due.as_bytes()),
    ];
    if measured {
        extra.push((SEQ, seq_text.as_bytes()));
    }
    let payload = payload(seq);
    let record = BaseRecord::to(schedule_topic)
        .partition(partition)
        .key(key.as_str())
        .payload(payload.as_slice())
        .headers(event_headers(&extra));
    send(producer, record)
}

/// Fills the schedule topic with `count` entries due over the next day; returns entries/s.
fn fill(env: &Env, schedule_topic: &str, target: &str, count: usize) -> anyhow::Result<f64> {
    let producer = producer(env)?;
    let started = Instant::now();
    let from = now_ms() + FAR_FROM.as_millis() as i64;
    let span = FAR_SPAN.as_millis() as i64;
    // Written in an order unrelated to their due times (a multiplicative permutation), as a
    // production topic fills: a reader cannot count on the log's order.
    let count_i = count.max(1) as i64;
    for seq in 0..count as u64 {
        let slot = (seq as i64).wrapping_mul(PERMUTE).rem_euclid(count_i);
        let due = from + slot * span / count_i;
        send_entry(&producer, schedule_topic, target, seq, due, false)?;
        if seq % 1_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    settle(&producer, count)?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The measured entries (or the peer's records): `rate` per second from `start_ms`, entry `n`
/// due at `start_ms + n / rate`.
#[derive(Debug, Clone, Copy)]
struct Pace {
    start_ms: i64,
    rate: f64,
    count: usize,
}

impl Pace {
    fn due_ms(&self, seq: usize) -> i64 {
        self.start_ms + (seq as f64 * 1_000.0 / self.rate) as i64
    }
}

/// Calls `send(seq, due_ms)` for each entry once the wall clock reaches `due − lead_ms`, on the
/// calling thread, until all are sent or `stop` is set.
fn pace(
    pace: Pace,
    lead_ms: i64,
    stop: &AtomicBool,
    mut send: impl FnMut(usize, i64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut next = 0;
    while next < pace.count && !stop.load(Ordering::Relaxed) {
        let now = now_ms();
        while next < pace.count && pace.due_ms(next) - lead_ms <= now {
            send(next, pace.due_ms(next))?;
            next += 1;
        }
        // To the next entry's time, at least 0.5 ms: waking 2,000 times a second costs both
        // sides the same.
        let wait = if next < pace.count { (pace.due_ms(next) - lead_ms - now_ms()).max(0) } else { 0 };
        std::thread::sleep(Duration::from_millis(wait as u64).max(Duration::from_micros(500)));
    }
    Ok(())
}

/// What the target's consumer saw.
struct Seen {
    histogram: Mutex<Histogram<u64>>,
    /// Per measured entry: seen yet.
    flags: Mutex<Vec<bool>>,
    measured: AtomicUsize,
    duplicates: AtomicUsize,
    /// Unix µs of the first record due after `first_after_ms` (0: none yet).
    first_after_us: AtomicI64,
    first_after_ms: AtomicI64,
    /// The worst lateness (µs) per second of due time, from the first measured entry's second.
    worst_by_second: Mutex<Vec<(i64, i64)>>,
}

impl Seen {
    fn new(count: usize) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            // Microseconds, 1 µs to 10 min.
            histogram: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
            flags: Mutex::new(vec![false; count]),
            measured: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            first_after_us: AtomicI64::new(0),
            first_after_ms: AtomicI64::new(i64::MAX),
            worst_by_second: Mutex::new(Vec::new()),
        }))
    }

    fn record(&self, seq: usize, due_ms: i64) {
        let now = now_us();
        if due_ms > self.first_after_ms.load(Ordering::Acquire) {
            let _ = self.first_after_us.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
        if let Ok(mut flags) = self.flags.lock() {
            match flags.get_mut(seq) {
                Some(flag) if !*flag => *flag = true,
                Some(_) => {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                None => return,
            }
        }
        let late = (now - due_ms * 1_000).max(1);
        if let Ok(mut histogram) = self.histogram.lock() {
            histogram.saturating_record(late as u64);
        }
        if let Ok(mut worst) = self.worst_by_second.lock() {
            let second = due_ms.div_euclid(1_000);
            match worst.iter_mut().find(|(s, _)| *s == second) {
                Some((_, w)) => *w = (*w).max(late),
                None => worst.push((second, late)),
            }
        }
        self.measured.fetch_add(1, Ordering::AcqRel);
    }

    /// How many seconds of due time had an entry later than `over_ms`, and the five worst as
    /// `HH:MM:SS (+Ns): M ms` (UTC, and from `start_ms`), to find a run's tail in the scheduler's
    /// log.
    fn stalls(&self, start_ms: i64, over_ms: i64) -> String {
        let mut worst = self.worst_by_second.lock().map(|w| w.clone()).unwrap_or_default();
        worst.retain(|(_, late)| *late > over_ms * 1_000);
        let seconds = worst.len();
        worst.sort_unstable_by_key(|(_, late)| std::cmp::Reverse(*late));
        worst.truncate(5);
        worst.sort_unstable();
        let listed = worst
            .iter()
            .map(|(second, late)| {
                let of_day = second.rem_euclid(86_400);
                format!(
                    "{:02}:{:02}:{:02} (+{}s): {} ms",
                    of_day / 3_600,
                    of_day / 60 % 60,
                    of_day % 60,
                    second - start_ms.div_euclid(1_000),
                    late / 1_000
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("{seconds} s; worst: {listed}")
    }

    /// Records every entry not seen by now at its lateness so far: a side that falls behind is
    /// not flattered by what it never delivered. Returns how many.
    fn record_missing(&self, pace: &Pace) -> usize {
        let now = now_us();
        let missing: Vec<usize> = self
            .flags
            .lock()
            .map(|flags| flags.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| i).collect())
            .unwrap_or_default();
        if let Ok(mut histogram) = self.histogram.lock() {
            for seq in &missing {
                histogram.saturating_record((now - pace.due_ms(*seq) * 1_000).max(1) as u64);
            }
        }
        missing.len()
    }
}

/// A `read_committed` consumer of `topic` from its current end, on its own thread, recording
/// every record's lateness into `seen` until `stop`.
fn watch(
    env: &Env,
    topic: &str,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let mut config = env.client_config();
    config
        .set("group.id", env.group("schedule-watch"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        // A fetch parked on an empty partition returns within this even if the broker does
        // not wake it when records become visible (read_committed: at the commit marker).
        .set("fetch.wait.max.ms", std::env::var("BENCH_FETCH_WAIT_MS").unwrap_or_else(|_| "10".into()));
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        assignment.add_partition_offset(topic, partition, Offset::Offset(high))?;
    }
    consumer.assign(&assignment)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(20)) {
                Some(Ok(message)) => {
                    let Some(headers) = message.headers() else { continue };
                    let text = |name: &str| {
                        headers
                            .iter()
                            .find(|h| h.key == name)
                            .and_then(|h| h.value)
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(|v| v.parse::<i64>().ok())
                    };
                    if let (Some(seq), Some(due)) = (text(SEQ), text(schedule::SCHEDULED_FOR)) {
                        seen.record(seq as usize, due);
                    }
                }
                Some(Err(error)) => eprintln!("fanout bench: schedule watcher: {error}"),
                None => {}
            }
        }
    }))
}

/// One side's run: lateness of every measured record.
struct Run {
    histogram: Histogram<u64>,
    missing: usize,
    duplicates: usize,
    /// Seconds of the run with an entry over 100 ms late, and how late.
    stalls: String,
}

/// Waits until `seen` has every entry of `pace` or `grace` after the last was due, then stops
/// the watcher.
async fn collect(
    seen: &Arc<Seen>,
    pace: &Pace,
    grace: Duration,
    stop: &AtomicBool,
    watcher: std::thread::JoinHandle<()>,
) -> anyhow::Result<Run> {
    let last_due = pace.due_ms(pace.count.saturating_sub(1));
    let deadline = last_due + grace.as_millis() as i64;
    while seen.measured.load(Ordering::Acquire) < pace.count && now_ms() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let missing = seen.record_missing(pace);
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || watcher.join()).await;
    let histogram = seen.histogram.lock().map(|h| h.clone()).unwrap_or_else(|p| p.into_inner().clone());
    Ok(Run {
        histogram,
        missing,
        duplicates: seen.duplicates.load(Ordering::Relaxed),
        stalls: seen.stalls(pace.start_ms, 100),
    })
}

/// The peer: a record produced at its due time to `topic`, read by the same watcher.
async fn peer_run(
    env: &Env,
    topic: &str,
    rate: f64,
    duration: Duration,
    grace: Duration,
) -> anyhow::Result<Run> {
    let count = (rate * duration.as_secs_f64()) as usize;
    let seen = Seen::new(count)?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(env, topic, seen.clone(), stop.clone())?;
    let pace_of = Pace { start_ms: now_ms() + 200, rate, count };
    let producer = producer(env)?;
    let topic_name = topic.to_owned();
    let sending = tokio::task::spawn_blocking(move || {
        let never = AtomicBool::new(false);
        pace(pace_of, 0, &never, |seq, due| {
            let (due_text, seq_text) = (due.to_string(), seq.to_string());
            let key = (seq % 100_000).to_string();
            let payload = payload(seq as u64);
            let headers =
                event_headers(&[(schedule::SCHEDULED_FOR, due_text.as_bytes()), (SEQ, seq_text.as_bytes())]);
            send(
                &producer,
                BaseRecord::to(&topic_name).key(key.as_str()).payload(payload.as_slice()).headers(headers),
            )?;
            producer.poll(Duration::ZERO);
            Ok(())
        })?;
        settle(&producer, count)
    });
    let run = collect(&seen, &pace_of, grace, &stop, watcher).await;
    sending.await??;
    run
}

/// The scheduler's side: measured entries written [`LEAD_MS`] ahead, delivered by the scheduler
/// to `target`.
async fn scheduler_run(
    env: &Env,
    schedule_topic: &str,
    target: &str,
    rate: f64,
    duration: Duration,
    grace: Duration,
) -> anyhow::Result<Run> {
    let count = (rate * duration.as_secs_f64()) as usize;
    let seen = Seen::new(count)?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(env, target, seen.clone(), stop.clone())?;
    let pace_of = Pace { start_ms: now_ms() + LEAD_MS + 200, rate, count };
    let sending = spawn_entries(env, schedule_topic, target, pace_of, Arc::new(AtomicBool::new(false)))?;
    let run = collect(&seen, &pace_of, grace, &stop, watcher).await;
    sending.await??;
    run
}

/// Writes the measured entries of `pace_of` on a blocking thread, each [`LEAD_MS`] ahead.
fn spawn_entries(
    env: &Env,
    schedule_topic: &str,
    target: &str,
    pace_of: Pace,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let producer = producer(env)?;
    let (schedule_topic, target) = (schedule_topic.to_owned(), target.to_owned());
    Ok(tokio::task::spawn_blocking(move || {
        let mut sent = 0;
        pace(pace_of, LEAD_MS, &stop, |seq, due| {
            send_entry(&producer, &schedule_topic, &target, seq as u64, due, true)?;
            producer.poll(Duration::ZERO);
            sent += 1;
            Ok(())
        })?;
        settle(&producer, sent)
    }))
}

/// `fanout_scheduled_pending{bucket}` from Prometheus text, as `bucket=count` pairs.
fn pending(metrics: &str) -> String {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("fanout_scheduled_pending{bucket=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .map(|(bucket, n)| format!("{bucket}={}", n.trim()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn millis_at(histogram: &Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1_000.0
}

/// Runs the scenario.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let schedule_topic = env.name("schedule");
    env.adopt_topic(&schedule_topic);
    env.adopt_topic(&schedule::dead_letters(&schedule_topic));
    let spec = TopicSpec::new(&schedule_topic, PARTITIONS).with("cleanup.policy", "compact");
    fanout_kafka::ensure_topics(&env.client_config(), &[spec], Duration::from_secs(15)).await?;
    let target = env.topic("schedule-target", 3).await?;
    let peer_topic = env.topic("schedule-peer", 3).await?;
    let group = env.group("scheduler");
    // Kept after the run (the scratch directory is not): a missed target sends one there.
    let log = std::env::temp_dir().join(format!("{}.log", env.name("scheduler")));
    let mut launch = Launch::sibling("fanout-scheduler", log)?
        .env("FANOUT_NAME", &group)
        .env("FANOUT_TOPIC", &schedule_topic)
        .env("FANOUT_PARTITIONS", PARTITIONS.to_string())
        .env("FANOUT_WINDOW_SECS", plan.schedule_window_secs.to_string())
        .env("FANOUT_KAFKA__BOOTSTRAP", &env.bootstrap)
        // `BENCH_SCHEDULER_LOG=info` (or a tracing filter) when profiling the scheduler.
        .env("FANOUT_LOG", std::env::var("BENCH_SCHEDULER_LOG").unwrap_or_else(|_| "warn".into()));
    // `BENCH_SCHEDULER_INSTANCE=none`: a dynamic member, to compare its recovery.
    if std::env::var("BENCH_SCHEDULER_INSTANCE").as_deref() != Ok("none") {
        launch = launch.env("FANOUT_INSTANCE_ID", INSTANCE);
    }
    let pending_count = plan.schedule_pending;
    let (rate, duration, grace) = (plan.schedule_rate, plan.schedule_duration, Duration::from_secs(10));
    println!("  filling {pending_count} entries due over the next day…");
    let fill_rate = tokio::task::block_in_place(|| fill(env, &schedule_topic, &target, pending_count))?;
    report.note(format!(
        "7 schedule: {pending_count} entries pending (due uniformly over a day from 10 min on) written by a raw \
         producer at {fill_rate:.0}/s; {} partitions; the scheduler's window {} s (re-read every {} s); measured \
         entries at {rate:.0}/s written {LEAD_MS} ms ahead of their time; lateness = the target's read_committed \
         consumer seeing the record − its due time; the scheduler's log: {}",
        PARTITIONS,
        plan.schedule_window_secs,
        plan.schedule_window_secs / 2,
        launch.log.display()
    ));

    // Load: the first process reads the million entries.
    let began = Instant::now();
    let mut first = launch.spawn()?;
    first.ready(Duration::from_secs(300)).await.with_context(|| format!("see {}", launch.log.display()))?;
    let load = began.elapsed().as_secs_f64();
    let (hwm_loaded, rss_loaded) = first.memory()?;
    println!("  loaded {pending_count} in {load:.1} s; VmHWM {hwm_loaded:.0} MiB, VmRSS {rss_loaded:.0} MiB");

    // Lateness, peer and scheduler alternating.
    let (mut p50, mut p99, mut p999) = (Samples::new(), Samples::new(), Samples::new());
    let (mut peer50, mut peer99, mut peer999) = (Samples::new(), Samples::new(), Samples::new());
    let mut own99 = Samples::new();
    let mut notes = Vec::new();
    for rep in 0..plan.schedule_reps {
        for side in [rep % 2, 1 - rep % 2] {
            if side == 0 {
                let run = peer_run(env, &peer_topic, rate, duration, grace).await?;
                peer50.push(millis_at(&run.histogram, 0.5));
                peer99.push(millis_at(&run.histogram, 0.99));
                peer999.push(millis_at(&run.histogram, 0.999));
            } else {
                let before = buckets(&first.metrics().await?, "fanout_schedule_lateness_seconds");
                let run = scheduler_run(env, &schedule_topic, &target, rate, duration, grace).await?;
                let after = buckets(&first.metrics().await?, "fanout_schedule_lateness_seconds");
                p50.push(millis_at(&run.histogram, 0.5));
                p99.push(millis_at(&run.histogram, 0.99));
                p999.push(millis_at(&run.histogram, 0.999));
                if let Some(bound) = bucket_quantile(&before, &after, 0.99) {
                    own99.push(bound * 1_000.0);
                }
                notes.push(format!(
                    "rep {rep}: {} measured, {} never delivered, {} twice, max {:.0} ms; seconds with an entry over 100 ms late: {}",
                    run.histogram.len(),
                    run.missing,
                    run.duplicates,
                    run.histogram.max() as f64 / 1_000.0,
                    run.stalls
                ));
                if run.duplicates > 0 {
                    bail!("the scheduler delivered {} entries twice", run.duplicates);
                }
            }
        }
    }
    let (hwm_after, rss_after) = first.memory()?;
    let metrics = first.metrics().await?;
    report.note(format!(
        "7 schedule: {}; fanout_scheduled_pending after the runs: {}",
        notes.join("; "),
        pending(&metrics)
    ));
    let row = |metric: &str, fanout: Samples, peer: Samples, ceiling: Option<f64>| Limit {
        scenario: "7 schedule".into(),
        metric: metric.into(),
        fanout: ("fanout-scheduler".into(), fanout),
        peer: Some(("produce → consume".into(), peer)),
        unit: Unit::Millis,
        bound: ceiling.map(Target::AtMost),
    };
    let at = format!("{pending_count} pending, {rate:.0} due/s");
    report.limit(row(&format!("lateness p50, {at}"), p50, peer50, None));
    report.limit(row(&format!("lateness p99, {at}"), p99, peer99.clone(), Some(100.0)));
    report.limit(row(&format!("lateness p99.9, {at}"), p999, peer999, Some(500.0)));
    if own99.len() > 0 {
        report.limit(Limit {
            metric: "due → committed p99 (own histogram, bucket bound)".into(),
            peer: None,
            ..row("", own99, Samples::new(), Some(100.0))
        });
    }

    // Recovery: kill -9 while entries come due, start again at once.
    let recovery_count = (rate * 60.0) as usize;
    let seen = Seen::new(recovery_count)?;
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = watch(env, &target, seen.clone(), stop_watch.clone())?;
    let stop_entries = Arc::new(AtomicBool::new(false));
    let pace_of = Pace { start_ms: now_ms() + LEAD_MS + 200, rate, count: recovery_count };
    let entries = spawn_entries(env, &schedule_topic, &target, pace_of, stop_entries.clone())?;
    let flowing = Instant::now() + Duration::from_secs(60);
    while seen.measured.load(Ordering::Acquire) < (rate as usize).max(1) {
        if Instant::now() > flowing {
            bail!("no deliveries before the kill");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kill_ms = now_ms();
    seen.first_after_ms.store(kill_ms, Ordering::Release);
    first.kill();
    let killed = Instant::now();
    let mut second = launch.spawn()?;
    let recovered = second.ready(Duration::from_secs(300)).await;
    let ready_after = killed.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.first_after_us.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_delivery = match seen.first_after_us.load(Ordering::Acquire) {
        0 => f64::INFINITY,
        us => (us - kill_ms * 1_000) as f64 / 1e6,
    };
    stop_entries.store(true, Ordering::Relaxed);
    stop_watch.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || watcher.join()).await;
    entries.await??;
    recovered?;
    let (hwm_second, _) = second.memory()?;
    let terminated = second.terminate().await;
    println!("  recovery: first delivery {first_delivery:.2} s, ready {ready_after:.2} s after the kill");

    let one = |v: f64| {
        let mut s = Samples::new();
        s.push(v);
        s
    };
    let absolute = |metric: String, value: f64, unit: Unit, ceiling: Option<f64>| Limit {
        scenario: "7 schedule".into(),
        metric,
        fanout: ("fanout-scheduler".into(), one(value)),
        peer: None,
        unit,
        bound: ceiling.map(Target::AtMost),
    };
    report.limit(absolute(
        format!("kill -9 → first delivery, {pending_count} pending"),
        first_delivery,
        Unit::Seconds,
        Some(10.0),
    ));
    report.limit(absolute(
        format!("kill -9 → /readyz, {pending_count} pending"),
        ready_after,
        Unit::Seconds,
        None,
    ));
    report.limit(absolute(
        format!("start → /readyz (read {pending_count} entries)"),
        load,
        Unit::Seconds,
        None,
    ));
    report.limit(absolute(
        format!("peak RSS (VmHWM), {pending_count} pending, after the runs"),
        hwm_after.max(hwm_second),
        Unit::MiB,
        Some(100.0),
    ));
    report.note(format!(
        "7 schedule memory: VmHWM {hwm_loaded:.0} MiB / VmRSS {rss_loaded:.0} MiB once loaded; VmHWM {hwm_after:.0} MiB / \
         VmRSS {rss_after:.0} MiB after the lateness runs; the restarted process's VmHWM {hwm_second:.0} MiB"
    ));
    // A static member is not removed when it exits: the group goes once its session expired.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !env.delete_group_now(&group).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    terminated
}
