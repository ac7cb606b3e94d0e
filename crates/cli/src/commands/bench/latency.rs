//! Scenarios 4 and 5, fan-out latency and CPU per event: one producer publishing at a fixed
//! open-loop rate to a topic read by three consumer groups.
//!
//! * Fanout: the SDK's `publish_all` (each tick's due events) and three consumer-runtime
//!   instances on SQLite with effect-shaped handlers, the work the three services do: upsert a
//!   counter (rewards' beans), insert a ledger row (pinning's credits), upsert per-user, per-
//!   category statistics (stats). The real services are being built; these stand in for them.
//! * Raw: a `BaseProducer` sending pre-encoded payloads and three `BaseConsumer`s that decode.
//!
//! Latency runs from the moment an event was *due* (open loop: the schedule does not wait for
//! the system, so a stall shows up as latency instead of silently slowing the load) to the
//! moment a handler (or raw consumer) sees it. CPU is this process's user + system time over the
//! measured window (producer, consumers and librdkafka threads; the broker is another process),
//! divided by deliveries (events × 3 groups).

use std::{
    ops::Range,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use fanout_consumer::{async_trait, Consumer, EventMeta, Handler, HandlerError};
use fanout_events::{Event, PostPublished};
use fanout_producer::Publisher;
use hdrhistogram::Histogram;
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    producer::{BaseProducer, BaseRecord, Producer},
    Message,
};

use super::{
    env::{cpu_time, post, title_for, Env, POST_BASE},
    report::{Comparison, Report, Samples, Target, Unit},
    Plan,
};

/// Payload size of the events: a typical `PostPublished`.
const PAYLOAD: usize = 100;
/// Consumer groups per side.
const GROUPS: usize = 3;

/// When each measured event is due: `start + seq / rate`.
struct Schedule {
    start: OnceLock<Instant>,
    rate: f64,
}

impl Schedule {
    fn due(&self, seq: usize) -> Option<Instant> {
        self.start.get().map(|start| *start + Duration::from_secs_f64(seq as f64 / self.rate))
    }
}

/// What one consumer group saw.
struct Sink {
    schedule: Arc<Schedule>,
    histogram: Mutex<Histogram<u64>>,
    seen: Mutex<Vec<bool>>,
    measured: AtomicUsize,
    warm: AtomicUsize,
}

impl Sink {
    fn new(schedule: Arc<Schedule>, events: usize) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            schedule,
            // Microseconds, 1 µs to 10 min, 3 significant digits.
            histogram: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
            seen: Mutex::new(vec![false; events]),
            measured: AtomicUsize::new(0),
            warm: AtomicUsize::new(0),
        }))
    }

    /// Records the latency of the event with `post_id`; warm-up events (below [`POST_BASE`])
    /// only count.
    fn record(&self, post_id: i64) {
        let now = Instant::now();
        let Ok(seq) = usize::try_from(post_id - POST_BASE) else {
            self.warm.fetch_add(1, Ordering::AcqRel);
            return;
        };
        let Some(due) = self.schedule.due(seq) else { return };
        if let Ok(mut seen) = self.seen.lock() {
            match seen.get_mut(seq) {
                Some(flag) if !*flag => *flag = true,
                // A redelivery is not a second delivery.
                _ => return,
            }
        }
        let micros = now.saturating_duration_since(due).as_micros() as u64;
        if let Ok(mut histogram) = self.histogram.lock() {
            histogram.saturating_record(micros.max(1));
        }
        self.measured.fetch_add(1, Ordering::AcqRel);
    }

    /// Records every event not seen by now at its latency so far (a lower bound), so a side that
    /// falls behind is not flattered by the events it never delivered. Returns how many.
    fn record_missing(&self) -> usize {
        let now = Instant::now();
        let missing: Vec<usize> = self
            .seen
            .lock()
            .map(|seen| seen.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| i).collect())
            .unwrap_or_default();
        if let Ok(mut histogram) = self.histogram.lock() {
            for seq in &missing {
                if let Some(due) = self.schedule.due(*seq) {
                    histogram.saturating_record(now.saturating_duration_since(due).as_micros() as u64);
                }
            }
        }
        missing.len()
    }
}

/// One side's run: the three groups' latencies together and CPU per delivery.
struct Outcome {
    histogram: Histogram<u64>,
    cpu_micros_per_delivery: f64,
    missing: usize,
}

/// Calls `send` with each range of events as it falls due, on the calling thread.
fn pace(schedule: &Schedule, events: usize, mut send: impl FnMut(Range<usize>)) {
    let start = Instant::now();
    let _ = schedule.start.set(start);
    let mut sent = 0;
    while sent < events {
        let due = ((start.elapsed().as_secs_f64() * schedule.rate) as usize + 1).min(events);
        if due > sent {
            send(sent..due);
            sent = due;
        }
        // Sleep to the next event's due time, but at least 0.5 ms: waking 2,000 times a second
        // costs both sides the same and keeps the pacer's own CPU small.
        let next = start + Duration::from_secs_f64(sent as f64 / schedule.rate);
        std::thread::sleep(next.saturating_duration_since(Instant::now()).max(Duration::from_micros(500)));
    }
}

/// Waits for the measured window to end: every group saw every event, or `grace` after the
/// schedule ended. Returns the CPU time spent since `cpu_start` and the events never seen.
async fn finish(
    sinks: &[Arc<Sink>],
    events: usize,
    schedule_end: Instant,
    grace: Duration,
    cpu_start: Duration,
) -> anyhow::Result<Outcome> {
    loop {
        if sinks.iter().all(|s| s.measured.load(Ordering::Acquire) >= events) {
            break;
        }
        if Instant::now() > schedule_end + grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cpu = cpu_time()?.saturating_sub(cpu_start);
    let delivered: usize = sinks.iter().map(|s| s.measured.load(Ordering::Acquire)).sum();
    let missing: usize = sinks.iter().map(|s| s.record_missing()).sum();
    let mut histogram = Histogram::new_with_bounds(1, 600_000_000, 3)?;
    for sink in sinks {
        if let Ok(h) = sink.histogram.lock() {
            histogram.add(&*h)?;
        }
    }
    Ok(Outcome {
        histogram,
        cpu_micros_per_delivery: cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64,
        missing,
    })
}

/// Sends warm-up events (ids below [`POST_BASE`]) every 50 ms until every group has seen one:
/// groups joined, partitions assigned, fetch sessions open, schema cached.
async fn warm_up(sinks: &[Arc<Sink>], mut send: impl FnMut(i64) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut id = 1;
    while !sinks.iter().all(|s| s.warm.load(Ordering::Acquire) > 0) {
        if Instant::now() > deadline {
            bail!("the consumers did not receive warm-up events within 60 s");
        }
        // A few keys, so every partition carries some.
        for _ in 0..4 {
            send(id)?;
            id += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The raw side: `BaseProducer` paced on its own thread, three `BaseConsumer` threads.
async fn raw_side(env: &Env, rate: f64, duration: Duration, grace: Duration) -> anyhow::Result<Outcome> {
    let events = (rate * duration.as_secs_f64()) as usize;
    let topic = env.topic("latency-raw", 3).await?;
    let serde = env.serde()?;
    let encoder = serde.encoder::<PostPublished>(&topic).await?;
    serde.writer_schema(encoder.schema_id()).await?;
    let title = title_for(PAYLOAD)?;
    let records: Arc<Vec<(Vec<u8>, Vec<u8>)>> = Arc::new(
        (0..events as u64)
            .map(|seq| {
                let event = post(seq, title);
                Ok((event.key(), encoder.encode(&event)?))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let schedule = Arc::new(Schedule { start: OnceLock::new(), rate });
    let sinks: Vec<Arc<Sink>> =
        (0..GROUPS).map(|_| Sink::new(schedule.clone(), events)).collect::<anyhow::Result<_>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for sink in &sinks {
        let mut config = env.client_config();
        config.set("group.id", env.group("latency-raw")).set("auto.offset.reset", "earliest");
        let (sink, stop, serde, topic) = (sink.clone(), stop.clone(), serde.clone(), topic.clone());
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let consumer: BaseConsumer = config.create()?;
            consumer.subscribe(&[&topic])?;
            while !stop.load(Ordering::Acquire) {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(message)) => {
                        let event =
                            serde.decode_cached::<PostPublished>(message.payload().unwrap_or_default())?;
                        sink.record(event.post_id);
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "raw consumer"),
                    None => {}
                }
            }
            Ok(())
        }));
    }
    let producer: Arc<BaseProducer> = Arc::new(env.publisher_config().client_config()?.create()?);
    let warm_title = title;
    let warm_result = warm_up(&sinks, |id| {
        let mut event = post(0, warm_title);
        event.post_id = id;
        let payload = encoder.encode(&event)?;
        producer
            .send(BaseRecord::to(&topic).key(&event.key()).payload(&payload))
            .map_err(|(e, _)| e)
            .context("raw warm-up send")?;
        producer.poll(Duration::ZERO);
        Ok(())
    })
    .await;
    let outcome = match warm_result {
        Ok(()) => {
            let cpu_start = cpu_time()?;
            let pacer = {
                let (producer, schedule, records, topic) =
                    (producer.clone(), schedule.clone(), records.clone(), topic.clone());
                std::thread::spawn(move || {
                    pace(&schedule, events, |range| {
                        for i in range {
                            let (key, payload) = &records[i];
                            let mut record = BaseRecord::to(&topic).key(key).payload(payload);
                            // The queue holds 100,000 records; a full one means the broker
                            // stalled, and waiting for space is what a producer does then.
                            while let Err((_, back)) = producer.send(record) {
                                record = back;
                                producer.poll(Duration::from_millis(1));
                            }
                        }
                        producer.poll(Duration::ZERO);
                    });
                    producer.flush(Duration::from_secs(30))
                })
            };
            let flushed = tokio::task::spawn_blocking(move || pacer.join()).await?;
            match flushed {
                Ok(result) => result.context("raw producer flush")?,
                Err(_) => bail!("the raw pacer thread panicked"),
            }
            let schedule_end = schedule.due(events).unwrap_or_else(Instant::now);
            finish(&sinks, events, schedule_end, grace, cpu_start).await
        }
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::Release);
    for thread in threads {
        match tokio::task::spawn_blocking(move || thread.join()).await? {
            Ok(result) => result?,
            Err(_) => bail!("a raw consumer thread panicked"),
        }
    }
    outcome
}

/// The three services' kinds of effect.
#[derive(Debug, Clone, Copy)]
enum Effect {
    /// rewards: upsert a per-user counter.
    Counter,
    /// pinning: insert a ledger row.
    Ledger,
    /// stats: upsert per-user, per-category statistics.
    Stats,
}

impl Effect {
    const ALL: [Effect; GROUPS] = [Self::Counter, Self::Ledger, Self::Stats];

    fn table(self) -> &'static str {
        match self {
            Self::Counter => "CREATE TABLE beans (user_id BIGINT PRIMARY KEY, beans BIGINT NOT NULL)",
            Self::Ledger => {
                "CREATE TABLE credit_ledger (post_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, \
                 credits BIGINT NOT NULL)"
            }
            Self::Stats => {
                "CREATE TABLE user_stats (user_id BIGINT NOT NULL, category TEXT NOT NULL, \
                 posts BIGINT NOT NULL, PRIMARY KEY (user_id, category))"
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Ledger => "ledger",
            Self::Stats => "stats",
        }
    }
}

/// A service-shaped handler: its effect, then the latency record.
#[derive(Debug)]
struct ServiceHandler {
    effect: Effect,
    sink: Arc<Sink>,
}

// `Sink` holds a histogram; the handler's Debug need not show it.
impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("measured", &self.measured).finish_non_exhaustive()
    }
}

#[async_trait]
impl Handler<PostPublished> for ServiceHandler {
    async fn handle(
        &self,
        event: PostPublished,
        _meta: &EventMeta,
        tx: &mut sqlx::AnyConnection,
    ) -> Result<(), HandlerError> {
        match self.effect {
            Effect::Counter => {
                sqlx::query(
                    "INSERT INTO beans (user_id, beans) VALUES ($1, 58) \
                     ON CONFLICT (user_id) DO UPDATE SET beans = beans.beans + 58",
                )
                .bind(event.user_id)
                .execute(&mut *tx)
                .await?;
            }
            Effect::Ledger => {
                sqlx::query("INSERT INTO credit_ledger (post_id, user_id, credits) VALUES ($1, $2, 1)")
                    .bind(event.post_id)
                    .bind(event.user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            Effect::Stats => {
                sqlx::query(
                    "INSERT INTO user_stats (user_id, category, posts) VALUES ($1, $2, 1) \
                     ON CONFLICT (user_id, category) DO UPDATE SET posts = user_stats.posts + 1",
                )
                .bind(event.user_id)
                .bind(event.category.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        self.sink.record(event.post_id);
        Ok(())
    }
}

/// The Fanout side: the SDK paced on its own thread, three consumer runtimes on SQLite.
async fn fanout_side(env: &Env, rate: f64, duration: Duration, grace: Duration) -> anyhow::Result<Outcome> {
    let events = (rate * duration.as_secs_f64()) as usize;
    let topic = env.topic("latency-fanout", 3).await?;
    let title = title_for(PAYLOAD)?;
    let all: Arc<Vec<PostPublished>> = Arc::new((0..events as u64).map(|seq| post(seq, title)).collect());
    let schedule = Arc::new(Schedule { start: OnceLock::new(), rate });
    let sinks: Vec<Arc<Sink>> =
        (0..GROUPS).map(|_| Sink::new(schedule.clone(), events)).collect::<anyhow::Result<_>>()?;
    let mut stops = Vec::new();
    let mut running = Vec::new();
    for (effect, sink) in Effect::ALL.into_iter().zip(&sinks) {
        let name = env.group(&format!("latency-{}", effect.name()));
        env.runtime_topics(&topic, &name);
        let config = env.consumer_config(&name, &env.sqlite_store(effect.name()));
        let consumer = Consumer::builder(config)
            .decoder(env.decoder()?)
            .handle_topic::<PostPublished, _>(&topic, ServiceHandler { effect, sink: sink.clone() })
            .build()
            .await?;
        sqlx::query(effect.table()).execute(consumer.pool()).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        running.push(tokio::spawn(consumer.run(async move {
            let _ = stopped.await;
        })));
    }
    let publisher = Publisher::new(env.publisher_config()).await?;
    let warmed = async {
        warm_up(&sinks, |id| {
            let mut event = post(0, title);
            event.post_id = id;
            let publisher = publisher.clone();
            let topic = topic.clone();
            tokio::spawn(async move { publisher.publish_to(&topic, &event, None).await });
            Ok(())
        })
        .await
    }
    .await;
    let outcome = match warmed {
        Ok(()) => {
            let cpu_start = cpu_time()?;
            let failures = Arc::new(AtomicUsize::new(0));
            let pacer = {
                let (publisher, schedule, all, topic, failures) =
                    (publisher.clone(), schedule.clone(), all.clone(), topic.clone(), failures.clone());
                let runtime = tokio::runtime::Handle::current();
                std::thread::spawn(move || {
                    pace(&schedule, events, |range| {
                        let (publisher, all, topic, failures) =
                            (publisher.clone(), all.clone(), topic.clone(), failures.clone());
                        runtime.spawn(async move {
                            let results = publisher.publish_all_to(&topic, &all[range]).await;
                            let failed = results.iter().filter(|r| r.is_err()).count();
                            failures.fetch_add(failed, Ordering::AcqRel);
                        });
                    });
                })
            };
            if tokio::task::spawn_blocking(move || pacer.join()).await?.is_err() {
                bail!("the Fanout pacer thread panicked");
            }
            let schedule_end = schedule.due(events).unwrap_or_else(Instant::now);
            let outcome = finish(&sinks, events, schedule_end, grace, cpu_start).await;
            let failed = failures.load(Ordering::Acquire);
            if failed > 0 {
                bail!("{failed} publishes failed during the latency run");
            }
            outcome
        }
        Err(e) => Err(e),
    };
    publisher.close(Duration::from_secs(30)).await?;
    for stop in stops {
        let _ = stop.send(());
    }
    for run in running {
        run.await?.context("consumer runtime")?;
    }
    outcome
}

/// Runs scenarios 4 and 5.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    report.note(format!(
        "latency/CPU: {} s per rate per side, 3 partitions, {PAYLOAD} B events, {} repetition(s); Fanout = SDK \
         publish_all per 0.5 ms tick + three consumer-runtime instances (separate groups, SQLite stores) \
         whose handlers upsert a counter (rewards), insert a ledger row (pinning) and upsert statistics \
         (stats), standing in for the services being built; raw = BaseProducer + three BaseConsumers that \
         decode; latency from the event's due time (open loop) to the handler",
        plan.latency_duration.as_secs_f64(),
        plan.latency_reps
    ));
    for rate in [1_000.0, 5_000.0] {
        let label = format!("{}k ev/s", rate / 1000.0);
        let mut quantiles: [(Samples, Samples); 3] = Default::default();
        let (mut cpu_raw, mut cpu_fanout) = (Samples::new(), Samples::new());
        for rep in 0..plan.latency_reps {
            let (raw, fanout) = if rep % 2 == 0 {
                let raw = raw_side(env, rate, plan.latency_duration, plan.latency_grace).await?;
                env.cleanup().await;
                (raw, fanout_side(env, rate, plan.latency_duration, plan.latency_grace).await?)
            } else {
                let fanout = fanout_side(env, rate, plan.latency_duration, plan.latency_grace).await?;
                env.cleanup().await;
                (raw_side(env, rate, plan.latency_duration, plan.latency_grace).await?, fanout)
            };
            env.cleanup().await;
            for (side, outcome) in [("raw", &raw), ("Fanout", &fanout)] {
                if outcome.missing > 0 {
                    report.note(format!(
                        "latency {label}: the {side} side had {} deliveries missing {:?} after the schedule ended; \
                         they are counted at their latency so far",
                        outcome.missing, plan.latency_grace
                    ));
                }
            }
            for (i, q) in [0.5, 0.99, 0.999].into_iter().enumerate() {
                quantiles[i].0.push(fanout.histogram.value_at_quantile(q) as f64);
                quantiles[i].1.push(raw.histogram.value_at_quantile(q) as f64);
            }
            cpu_fanout.push(fanout.cpu_micros_per_delivery);
            cpu_raw.push(raw.cpu_micros_per_delivery);
        }
        let targets = [Some(Target::AtMost(1.5)), Some(Target::AtMost(2.0)), None];
        for ((name, (fanout, raw)), target) in ["p50", "p99", "p99.9"].into_iter().zip(quantiles).zip(targets)
        {
            report.compare(Comparison {
                scenario: "4 latency".into(),
                metric: format!("{label}, publish→handler {name}"),
                fanout: ("SDK → 3 runtimes".into(), fanout),
                peer: ("raw → 3 raw".into(), raw),
                unit: Unit::Micros,
                target,
            });
        }
        report.compare(Comparison {
            scenario: "5 CPU".into(),
            metric: format!("{label}, CPU µs per delivery"),
            fanout: ("SDK + 3 runtimes (SQLite)".into(), cpu_fanout),
            peer: ("raw clients".into(), cpu_raw),
            unit: Unit::Micros,
            target: Some(Target::AtMost(2.5)),
        });
    }
    Ok(())
}
