//! Scenario 2, consume with exactly-once effects: the consumer runtime applying a trivial effect
//! (one row inserted per event, in the same transaction as its dedupe mark) with its SQLite store
//! and with its PostgreSQL store, against a bare rust-rdkafka `BaseConsumer` that only decodes,
//! all reading the same pre-filled topic from the beginning in fresh consumer groups.
//!
//! The helpers here are shared with the scaling scenario.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use fanout_consumer::{async_trait, Consumer, EventMeta, Handler, HandlerError};
use fanout_events::{Event, PostPublished};
use fanout_producer::Publisher;
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    Message,
};

use super::{
    env::{post, title_for, wait_for, Env},
    report::{Comparison, Report, Samples, Target, Unit},
    Plan,
};

/// Payload size of the consumed events: the size of a typical `PostPublished`.
pub const CONSUME_PAYLOAD: usize = 100;

/// Events handled so far and when the first and the latest were handled.
#[derive(Debug, Default)]
pub struct Progress {
    count: AtomicUsize,
    first: OnceLock<Instant>,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    /// Counts one handled event.
    pub fn tick(&self) {
        let now = Instant::now();
        self.first.get_or_init(|| now);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(now);
        }
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Events handled.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// True once `expected` events were handled or `cap` passed since the first.
    pub fn finished(&self, expected: usize, cap: Duration) -> bool {
        self.count() >= expected || self.first.get().is_some_and(|first| first.elapsed() >= cap)
    }

    /// Events per second between the first and the latest handled event.
    pub fn rate(&self) -> anyhow::Result<f64> {
        let last = self.last.lock().ok().and_then(|l| *l);
        match (self.first.get(), last, self.count()) {
            (Some(first), Some(last), n) if n > 1 && last > *first => {
                Ok((n - 1) as f64 / (last - *first).as_secs_f64())
            }
            (_, _, n) => bail!("only {n} events handled; no rate"),
        }
    }
}

/// Publishes `events` events of `payload` bytes to `topic` through the SDK.
pub async fn prefill(env: &Env, topic: &str, events: usize, payload: usize) -> anyhow::Result<()> {
    let title = title_for(payload)?;
    let publisher = Publisher::new(env.publisher_config()).await?;
    let all: Vec<PostPublished> = (0..events as u64).map(|seq| post(seq, title)).collect();
    for chunk in all.chunks(10_000) {
        for result in publisher.publish_all_to(topic, chunk).await {
            result.context("pre-filling the topic")?;
        }
    }
    publisher.close(Duration::from_secs(30)).await?;
    Ok(())
}

/// The raw peer: a `BaseConsumer` in a fresh group reading `topic` from the beginning and
/// decoding each payload with the registry serde (schema cached up front), nothing else. Stops
/// after `expected` events or `cap` after the first; returns events per second.
pub async fn raw_consume(env: &Env, topic: &str, expected: usize, cap: Duration) -> anyhow::Result<f64> {
    let serde = env.serde()?;
    let id = serde.schema_id_for(topic, PostPublished::SCHEMA).await?;
    serde.writer_schema(id).await?;
    let mut config = env.client_config();
    config.set("group.id", env.group("raw")).set("auto.offset.reset", "earliest");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        consumer.subscribe(&[&topic])?;
        let progress = Progress::default();
        let started = Instant::now();
        while !progress.finished(expected, cap) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let event =
                        serde.decode_cached::<PostPublished>(message.payload().unwrap_or_default())?;
                    std::hint::black_box(event);
                    progress.tick();
                }
                Some(Err(e)) => return Err(e).context("raw consumer"),
                None if progress.count() == 0 && started.elapsed() > Duration::from_secs(30) => {
                    bail!("raw consumer: no record within 30 s")
                }
                None => {}
            }
        }
        progress.rate()
    })
    .await?
}

/// The trivial effect: one row per event, inserted through the runtime's transaction.
#[derive(Debug)]
struct InsertRow {
    consumer: String,
    progress: Arc<Progress>,
}

#[async_trait]
impl Handler<PostPublished> for InsertRow {
    async fn handle(
        &self,
        event: PostPublished,
        _meta: &EventMeta,
        tx: &mut sqlx::AnyConnection,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO bench_effects (consumer, post_id, user_id) VALUES ($1, $2, $3)")
            .bind(&self.consumer)
            .bind(event.post_id)
            .bind(event.user_id)
            .execute(&mut *tx)
            .await?;
        self.progress.tick();
        Ok(())
    }
}

/// The consumer runtime with defaults (batches of 50, 4 store connections) except
/// `key_parallelism`, on `store`, in a fresh group; same stopping rule as [`raw_consume`].
pub async fn runtime_consume(
    env: &Env,
    topic: &str,
    store: &str,
    key_parallelism: usize,
    expected: usize,
    cap: Duration,
) -> anyhow::Result<f64> {
    let name = env.group("runtime");
    env.runtime_topics(topic, &name);
    let mut config = env.consumer_config(&name, store);
    config.processing.key_parallelism = key_parallelism;
    let progress = Arc::new(Progress::default());
    let handler = InsertRow { consumer: name.clone(), progress: progress.clone() };
    let consumer = Consumer::builder(config)
        .decoder(env.decoder()?)
        .handle_topic::<PostPublished, _>(topic, handler)
        .build()
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_effects (consumer TEXT NOT NULL, post_id BIGINT NOT NULL, \
         user_id BIGINT NOT NULL, PRIMARY KEY (consumer, post_id))",
    )
    .execute(consumer.pool())
    .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    let waited = wait_for("the consumer runtime", Duration::from_secs(60) + cap, || {
        progress.finished(expected, cap) || running.is_finished()
    })
    .await;
    let _ = stop.send(());
    running.await?.context("consumer runtime")?;
    waited?;
    progress.rate()
}

/// Runs the scenario.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let topic = env.topic("consume", 3).await?;
    prefill(env, &topic, plan.consume_events, CONSUME_PAYLOAD).await?;
    let postgres = env.postgres_store().await?;
    report.note(format!(
        "consume: {} events of {CONSUME_PAYLOAD} B on 3 partitions; each run stops after all of them or {:?} \
         after its first event; the runtime runs with its defaults (key_parallelism 8, batch_size 50, 4 store \
         connections), its handler inserts one row per event; the raw BaseConsumer decodes with the registry \
         serde's typed fast path, the runtime's Decoder returns an Avro Value that it then converts",
        plan.consume_events, plan.consume_cap
    ));
    let (mut raw, mut sqlite, mut pg) = (Samples::new(), Samples::new(), Samples::new());
    for rep in 0..plan.reps {
        // Who goes first alternates (page cache, broker state), see produce.
        if rep % 2 == 0 {
            raw.push(raw_consume(env, &topic, plan.consume_events, plan.consume_cap).await?);
        }
        let store = env.sqlite_store("consume");
        sqlite.push(runtime_consume(env, &topic, &store, 8, plan.consume_events, plan.consume_cap).await?);
        if let Some(store) = &postgres {
            pg.push(runtime_consume(env, &topic, store, 8, plan.consume_events, plan.consume_cap).await?);
        }
        if rep % 2 == 1 {
            raw.push(raw_consume(env, &topic, plan.consume_events, plan.consume_cap).await?);
        }
    }
    report.compare(Comparison {
        scenario: "2 consume".into(),
        metric: "exactly-once effects, events/s".into(),
        fanout: ("runtime + SQLite".into(), sqlite),
        peer: ("BaseConsumer".into(), raw.clone()),
        unit: Unit::PerSecond,
        target: Some(Target::AtLeast(0.6)),
    });
    if postgres.is_some() {
        report.compare(Comparison {
            scenario: "2 consume".into(),
            metric: "exactly-once effects, events/s".into(),
            fanout: ("runtime + PostgreSQL".into(), pg),
            peer: ("BaseConsumer".into(), raw),
            unit: Unit::PerSecond,
            target: Some(Target::AtLeast(0.4)),
        });
    } else {
        report.note("consume: PostgreSQL skipped (--database-url none)");
    }
    Ok(())
}
