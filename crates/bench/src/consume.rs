//! Scenario 2, consume with exactly-once effects: the consumer runtime applying a trivial effect
//! (one row inserted per event, in the same transaction as its dedupe mark) with its SQLite store
//! and with its PostgreSQL store, against the hand-written exactly-once loop doing the same work
//! on the same store ([`super::peer`]), all reading the same pre-filled topic from the beginning
//! in fresh consumer groups. A bare `BaseConsumer` that only decodes stays as a reference line:
//! no durable consumer can match it, so it carries no target.
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
use fanout_core::Event;
use fanout_events::PostPublished;
use fanout_producer::{PublishOptions, Publisher};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    Message,
};

use super::{
    charts::ChartData,
    env::{post, title_for, wait_for, Env},
    peer::{durable_consume, PeerStore, PEER_BATCH},
    report::{Comparison, Report, Samples, Target, Unit},
    Plan,
};

/// Payload size of the consumed events: the size of a typical `PostPublished`.
pub const CONSUME_PAYLOAD: usize = 100;

/// Events handled so far and when the first and the latest were handled.
#[derive(Debug, Default)]
pub struct Progress {
    count: AtomicUsize,
    /// When the first tick came and how many events it counted: those were handled before the
    /// measured interval starts, so the rate leaves them out.
    first: OnceLock<(Instant, usize)>,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    /// Counts one handled event.
    pub fn tick(&self) {
        self.tick_n(1);
    }

    /// Counts `n` events handled together (one batch), now.
    pub fn tick_n(&self, n: usize) {
        let now = Instant::now();
        self.first.get_or_init(|| (now, n));
        if let Ok(mut last) = self.last.lock() {
            *last = Some(now);
        }
        self.count.fetch_add(n, Ordering::AcqRel);
    }

    /// Events handled.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// True once `expected` events were handled or `cap` passed since the first.
    pub fn finished(&self, expected: usize, cap: Duration) -> bool {
        self.count() >= expected || self.first.get().is_some_and(|(first, _)| first.elapsed() >= cap)
    }

    /// Events per second between the first and the latest tick (the first tick's events are
    /// not counted: they were handled before the interval began).
    pub fn rate(&self) -> anyhow::Result<f64> {
        let last = self.last.lock().ok().and_then(|l| *l);
        match (self.first.get(), last, self.count()) {
            (Some((first, before)), Some(last), n) if n > *before && last > *first => {
                Ok((n - before) as f64 / (last - *first).as_secs_f64())
            }
            (_, _, n) => bail!("only {n} events handled; no rate"),
        }
    }
}

/// Publishes `events` events of `payload` bytes to `topic` through the SDK.
pub async fn prefill(env: &Env, topic: &str, events: usize, payload: usize) -> anyhow::Result<()> {
    let title = title_for(payload)?;
    let publisher = Publisher::new(env.publisher_config())?;
    let all: Vec<PostPublished> = (0..events as u64).map(|seq| post(seq, title)).collect();
    let to = PublishOptions::new().topic(topic);
    for chunk in all.chunks(10_000) {
        for result in publisher.publish_all(chunk, &to).await {
            result.context("pre-filling the topic")?;
        }
    }
    publisher.close(Duration::from_secs(30)).await?;
    Ok(())
}

/// The decode-only reference: a `BaseConsumer` in a fresh group reading `topic` from the
/// beginning and decoding each payload with the registry serde (schema cached up front), nothing
/// else; not durable, so no durable consumer can match it. Stops after `expected` events or `cap`
/// after the first; returns events per second.
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

/// The effect table both sides write: one row per event.
pub const EFFECTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_effects (consumer TEXT NOT NULL, \
     post_id BIGINT NOT NULL, user_id BIGINT NOT NULL, PRIMARY KEY (consumer, post_id))";

/// The trivial effect: one row per event, inserted through the runtime's transaction.
#[derive(Debug)]
struct InsertRow {
    consumer: String,
    progress: Arc<Progress>,
}

#[async_trait]
impl Handler for InsertRow {
    type Event = PostPublished;

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

/// The same effect written a batch at a time, as a skilled team would write its handler: one
/// multi-row INSERT per batch the runtime hands over.
#[derive(Debug)]
struct InsertRows {
    consumer: String,
    progress: Arc<Progress>,
}

#[async_trait]
impl Handler for InsertRows {
    type Event = PostPublished;

    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut sqlx::AnyConnection,
    ) -> Result<(), HandlerError> {
        self.handle_batch(vec![(event, meta.clone())], tx).await
    }

    async fn handle_batch(
        &self,
        events: Vec<(PostPublished, EventMeta)>,
        tx: &mut sqlx::AnyConnection,
    ) -> Result<(), HandlerError> {
        if events.is_empty() {
            return Ok(());
        }
        // As the handler docs tell a team: `sql::values` numbers placeholders on PostgreSQL and
        // leaves them anonymous on SQLite, which binds numbered ones in quadratic time.
        let sql = format!(
            "INSERT INTO bench_effects (consumer, post_id, user_id) VALUES {}",
            fanout_consumer::sql::values(tx, events.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for (event, _) in &events {
            query = query.bind(&self.consumer).bind(event.post_id).bind(event.user_id);
        }
        query.execute(&mut *tx).await?;
        self.progress.tick_n(events.len());
        Ok(())
    }
}

/// Which of the handler API's paths the Fanout side's handler uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    /// `Handler::handle`, one INSERT per event.
    PerEvent,
    /// `Handler::handle_batch`, one multi-row INSERT per batch.
    Batch,
}

impl HandlerKind {
    /// Every kind, in report order.
    pub const ALL: [HandlerKind; 2] = [Self::PerEvent, Self::Batch];

    /// As the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::PerEvent => "handle",
            Self::Batch => "handle_batch",
        }
    }
}

/// How the runtime is set up for one consume run; `None` keeps the runtime's default.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeRun {
    /// The handler's path.
    pub handler: HandlerKind,
    /// `processing.key_parallelism`.
    pub key_parallelism: Option<usize>,
    /// `processing.batch_size`.
    pub batch_size: Option<usize>,
}

impl RuntimeRun {
    /// The runtime's defaults with `handler`.
    pub fn defaults(handler: HandlerKind) -> Self {
        Self { handler, key_parallelism: None, batch_size: None }
    }
}

/// The consumer runtime with defaults except what `run` sets, on `store`, in a fresh group;
/// same stopping rule as [`raw_consume`].
pub async fn runtime_consume(
    env: &Env,
    topic: &str,
    store: &str,
    run: RuntimeRun,
    expected: usize,
    cap: Duration,
) -> anyhow::Result<f64> {
    let name = env.group("runtime");
    env.runtime_topics(topic, &name);
    let mut config = env.consumer_config(&name, store);
    if let Some(key_parallelism) = run.key_parallelism {
        config.processing.key_parallelism = key_parallelism;
    }
    if let Some(batch_size) = run.batch_size {
        config.processing.batch_size = batch_size;
    }
    let progress = Arc::new(Progress::default());
    let builder = Consumer::builder(config).decoder(env.decoder()?);
    let builder = match run.handler {
        HandlerKind::PerEvent => {
            builder.handle_topic(topic, InsertRow { consumer: name.clone(), progress: progress.clone() })
        }
        HandlerKind::Batch => {
            builder.handle_topic(topic, InsertRows { consumer: name.clone(), progress: progress.clone() })
        }
    };
    let consumer = builder.build().await?;
    sqlx::query(EFFECTS_TABLE).execute(consumer.pool()).await?;
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

/// The SQLite file path of a store URL made by [`Env::sqlite_store`].
fn sqlite_path(store: &str) -> &str {
    store.strip_prefix("sqlite:").unwrap_or(store)
}

/// Runs the scenario.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report, charts: &mut ChartData) -> anyhow::Result<()> {
    let topic = env.topic("consume", 3).await?;
    prefill(env, &topic, plan.consume_events, CONSUME_PAYLOAD).await?;
    let postgres = env.postgres_store().await?;
    report.note(format!(
        "consume: {} events of {CONSUME_PAYLOAD} B on 3 partitions; each run stops after all of them or {:?} \
         after its first event; the runtime runs with its defaults (unless a row says otherwise), its handler \
         inserts one row per event (`handle`) or one multi-row INSERT per batch (`handle_batch`); the peer is \
         a hand-written exactly-once loop on the same store: a BaseConsumer, up to {PEER_BATCH} records per \
         poll batch decoded with the registry serde's typed fast path, the runtime's dedupe row and the same \
         effect row per event in one transaction per batch (SQLite via rusqlite, WAL, synchronous=FULL; \
         PostgreSQL via sqlx's PgConnection with unnest arrays), offsets stored after the commit and \
         auto-committed every second; the decode-only BaseConsumer is a reference line, not durable",
        plan.consume_events, plan.consume_cap
    ));
    let stores: Vec<(&str, Option<String>)> = {
        let mut stores = vec![("SQLite", None)];
        if let Some(url) = &postgres {
            stores.push(("PostgreSQL", Some(url.clone())));
        }
        stores
    };
    let mut decode_only = Samples::new();
    // Per store: the peer's samples, then each handler kind's.
    let mut peers: Vec<Samples> = vec![Samples::new(); stores.len()];
    let mut fanout: Vec<Vec<Samples>> = vec![vec![Samples::new(); HandlerKind::ALL.len()]; stores.len()];
    for rep in 0..plan.consume_reps {
        // Who goes first alternates (page cache, broker state), see produce.
        let peer_first = rep % 2 == 0;
        decode_only.push(raw_consume(env, &topic, plan.consume_events, plan.consume_cap).await?);
        for (i, (_, url)) in stores.iter().enumerate() {
            if peer_first {
                peers[i].push(peer_run(env, &topic, url.as_deref(), plan).await?);
            }
            for (k, kind) in HandlerKind::ALL.into_iter().enumerate() {
                let store = url.clone().unwrap_or_else(|| env.sqlite_store("consume"));
                let rate = runtime_consume(
                    env,
                    &topic,
                    &store,
                    RuntimeRun::defaults(kind),
                    plan.consume_events,
                    plan.consume_cap,
                )
                .await?;
                fanout[i][k].push(rate);
            }
            if !peer_first {
                peers[i].push(peer_run(env, &topic, url.as_deref(), plan).await?);
            }
        }
    }
    for (i, (store, _)) in stores.iter().enumerate() {
        for (k, kind) in HandlerKind::ALL.into_iter().enumerate() {
            report.compare(Comparison {
                scenario: "2 consume".into(),
                metric: format!("exactly-once effects, {store}, events/s"),
                fanout: (format!("runtime, {}", kind.label()), fanout[i][k].clone()),
                peer: ("hand-written loop".into(), peers[i].clone()),
                unit: Unit::PerSecond,
                target: Some(Target::AtLeast(0.6)),
                floor: Some(absolute_target(store, kind)),
            });
        }
    }
    report.compare(Comparison {
        scenario: "2 consume".into(),
        metric: "reference: decode only, not durable, events/s".into(),
        fanout: ("hand-written loop, SQLite".into(), peers[0].clone()),
        peer: ("BaseConsumer, decode only".into(), decode_only),
        unit: Unit::PerSecond,
        target: None,
        floor: None,
    });
    if postgres.is_none() {
        report.note("consume: PostgreSQL skipped (--database-url none)");
    }
    batch_sizes(env, &topic, plan, &peers[0], report, charts).await
}

/// One run of the hand-written loop: on PostgreSQL at `url`, else on a fresh SQLite file.
async fn peer_run(env: &Env, topic: &str, url: Option<&str>, plan: &Plan) -> anyhow::Result<f64> {
    let sqlite = env.sqlite_store("peer");
    let store = match url {
        Some(url) => PeerStore::Postgres(url),
        None => PeerStore::Sqlite(sqlite_path(&sqlite)),
    };
    durable_consume(env, topic, store, plan.consume_events, plan.consume_cap).await
}

/// The absolute floor for the Fanout side on this machine, events/s.
fn absolute_target(store: &str, kind: HandlerKind) -> f64 {
    match (store, kind) {
        (_, HandlerKind::PerEvent) => 20_000.0,
        ("SQLite", HandlerKind::Batch) => 50_000.0,
        (_, HandlerKind::Batch) => 25_000.0,
    }
}

/// The "consume rate against batch size" figure: the runtime on SQLite at each of
/// `plan.batch_sizes`, with the handler kind that writes a batch at once where there is one, each
/// run beside a run of the SQLite peer (a quick run compares with `sqlite_peer`, the consume
/// figures' peer, instead).
async fn batch_sizes(
    env: &Env,
    topic: &str,
    plan: &Plan,
    sqlite_peer: &Samples,
    report: &mut Report,
    charts: &mut ChartData,
) -> anyhow::Result<()> {
    let kind = *HandlerKind::ALL.last().unwrap_or(&HandlerKind::PerEvent);
    let mut peer_all = Samples::new();
    for &batch_size in &plan.batch_sizes {
        let (mut samples, mut peer) = (Samples::new(), Samples::new());
        for _ in 0..plan.batch_size_reps {
            let store = env.sqlite_store("batch-size");
            let run = RuntimeRun { batch_size: Some(batch_size), ..RuntimeRun::defaults(kind) };
            samples
                .push(runtime_consume(env, topic, &store, run, plan.consume_events, plan.consume_cap).await?);
            let rate = if plan.batch_size_peer_runs {
                peer_run(env, topic, None, plan).await?
            } else {
                sqlite_peer.median()
            };
            peer.push(rate);
            peer_all.push(rate);
        }
        charts.batch_sizes.push((batch_size, samples.median()));
        report.compare(Comparison {
            scenario: "2 consume".into(),
            metric: format!("SQLite, batch_size {batch_size}, events/s"),
            fanout: (format!("runtime, {}", kind.label()), samples),
            peer: ("hand-written loop".into(), peer),
            unit: Unit::PerSecond,
            target: None,
            floor: None,
        });
    }
    charts.batch_peer = Some(peer_all.median());
    Ok(())
}
