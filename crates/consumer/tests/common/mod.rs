//! Shared helpers: Confluent-framed test events decoded through a real registry, a producer of
//! test events, a recording handler with scriptable failures, a consumer running in the
//! background, and waits with deadlines.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use fanout_consumer::{
    async_trait, Consumer, ConsumerConfig, EventMeta, Handler, HandlerError, RegistryDecoder,
};
use fanout_core::Event;
use fanout_events::{Category, PostPublished};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{Kafka, Registry, TestTopic};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use sqlx::{AnyPool, Row};
use tokio::{sync::oneshot, task::JoinHandle};

pub type TestResult = Result<(), anyhow::Error>;

/// The schema id the test frames carry: the id a fresh registry gives the first schema
/// registered, which [`registry`] registers (and checks) before a consumer starts.
pub const SCHEMA_ID: u32 = 1;

/// Confluent wire format: magic byte 0, big-endian [`SCHEMA_ID`], Avro binary.
pub fn encode(event: &PostPublished) -> Vec<u8> {
    let value = apache_avro::to_value(event).expect("a PostPublished converts to an Avro value");
    let datum = apache_avro::to_avro_datum(PostPublished::schema(), value).expect("a PostPublished encodes");
    let mut out = Vec::with_capacity(5 + datum.len());
    fanout_schema_registry::wire::write_header(SCHEMA_ID, &mut out);
    out.extend_from_slice(&datum);
    out
}

/// Fanout's registry for one consumer, holding `PostPublished` (subject `<topic>-value`) as
/// [`SCHEMA_ID`], and the production decoder reading through it: the frames [`encode`] writes
/// decode as in production, and any other id is unknown to it.
pub async fn registry(topic: &str) -> anyhow::Result<(Registry, RegistryDecoder)> {
    let registry = Registry::start(&Kafka::connect().await?).await?;
    let serde = AvroSerde::from_settings(&registry.settings())?;
    let id = serde.encoder::<PostPublished>(topic).await?.schema_id();
    anyhow::ensure!(id == SCHEMA_ID, "a fresh registry gave PostPublished id {id}, not {SCHEMA_ID}");
    Ok((registry, RegistryDecoder::new(serde)))
}

/// A test event: `post` is the key, `seq` its position among the key's events.
pub fn post(post: i64, seq: i64) -> PostPublished {
    PostPublished {
        post_id: post,
        user_id: seq,
        category: Category::Job,
        city: "Berlin".into(),
        title: format!("post {post} #{seq}"),
        published_at: 1_764_000_000_000,
    }
}

/// One record to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub event_id: String,
}

impl Outgoing {
    pub fn event(event: &PostPublished) -> Self {
        Self { key: event.key(), payload: encode(event), event_id: uuid::Uuid::now_v7().to_string() }
    }
}

/// The `traceparent` [`publish`] sends.
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Publishes records with CloudEvents headers and waits for each acknowledgement.
pub async fn publish(kafka: &Kafka, topic: &str, records: &[Outgoing]) -> TestResult {
    publish_traced(kafka, topic, records, TRACEPARENT).await
}

/// As [`publish`], with the given `traceparent` header.
pub async fn publish_traced(
    kafka: &Kafka,
    topic: &str,
    records: &[Outgoing],
    traceparent: &str,
) -> TestResult {
    let producer: FutureProducer = kafka.client_config().set("enable.idempotence", "true").create()?;
    let time = chrono::Utc::now().to_rfc3339();
    let mut sends = Vec::new();
    for record in records {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "ce_specversion", value: Some("1.0") })
            .insert(Header { key: "ce_id", value: Some(record.event_id.as_str()) })
            .insert(Header { key: "ce_type", value: Some(PostPublished::TYPE) })
            .insert(Header { key: "ce_source", value: Some("tests") })
            .insert(Header { key: "ce_time", value: Some(time.as_str()) })
            .insert(Header { key: "traceparent", value: Some(traceparent) });
        let out = FutureRecord::to(topic).key(&record.key).payload(&record.payload).headers(headers);
        sends.push(producer.send(out, Duration::from_secs(30)));
    }
    for sent in futures_join(sends).await {
        sent.map_err(|(e, _)| e)?;
    }
    Ok(())
}

async fn futures_join<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

/// Scripted behaviour of the [`Recorder`] handler.
#[derive(Debug, Default)]
pub struct Script {
    /// By post id: its events fail transiently on their first this-many attempts (by
    /// `meta.attempt`: a batch that fails is re-run event by event within the same attempt, so
    /// counting calls would count that re-run too).
    pub transient: Mutex<HashMap<i64, u32>>,
    /// Events, as (post id, seq), that always fail transiently.
    pub always_transient: Mutex<Vec<(i64, i64)>>,
    /// Posts whose events fail permanently.
    pub permanent: Mutex<Vec<i64>>,
    /// Posts whose events take this long.
    pub slow: Mutex<HashMap<i64, Duration>>,
    /// Posts whose events insert their `claims` row twice: the database's unique-key violation.
    pub duplicate_claim: Mutex<Vec<i64>>,
    /// By post id: its events find the database gone (a closed pool) on their first this-many
    /// attempts.
    pub database_gone: Mutex<HashMap<i64, u32>>,
}

/// Writes one row per applied event into `effects`, and one into `order_violations` whenever an
/// event of a key arrives after a later one of that key was applied.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub script: Arc<Script>,
    pub calls: Arc<AtomicUsize>,
}

pub const EFFECTS: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS claims (post_id BIGINT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL, post_id BIGINT NOT NULL, seq BIGINT NOT NULL, attempt BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS order_violations (post_id BIGINT NOT NULL, seq BIGINT NOT NULL, after_seq BIGINT NOT NULL)",
];

#[async_trait]
impl Handler for Recorder {
    type Event = PostPublished;

    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut sqlx::AnyConnection,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tracing::info!(post_id = event.post_id, seq = event.user_id, "recorder applying");
        let delay = self.script.slow.lock().ok().and_then(|s| s.get(&event.post_id).copied());
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if self.script.permanent.lock().is_ok_and(|p| p.contains(&event.post_id)) {
            return Err(HandlerError::permanent(format!("post {} is forbidden", event.post_id)));
        }
        if self.script.always_transient.lock().is_ok_and(|p| p.contains(&(event.post_id, event.user_id))) {
            return Err(HandlerError::transient(format!("post {} backend down", event.post_id)));
        }
        let failing = self.script.transient.lock().ok().and_then(|t| t.get(&event.post_id).copied());
        if failing.is_some_and(|attempts| meta.attempt <= attempts) {
            return Err(HandlerError::transient("flaky"));
        }
        if self.script.duplicate_claim.lock().is_ok_and(|p| p.contains(&event.post_id)) {
            for _ in 0..2 {
                sqlx::query("INSERT INTO claims (post_id) VALUES ($1)")
                    .bind(event.post_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let gone = self.script.database_gone.lock().ok().and_then(|t| t.get(&event.post_id).copied());
        if gone.is_some_and(|attempts| meta.attempt <= attempts) {
            let closed = AnyPool::connect_lazy("sqlite::memory:")?;
            closed.close().await;
            sqlx::query("SELECT 1").execute(&closed).await?;
        }
        let max: i64 = sqlx::query("SELECT COALESCE(MAX(seq), -1) AS m FROM effects WHERE post_id = $1")
            .bind(event.post_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("m")?;
        if event.user_id <= max {
            sqlx::query("INSERT INTO order_violations (post_id, seq, after_seq) VALUES ($1, $2, $3)")
                .bind(event.post_id)
                .bind(event.user_id)
                .bind(max)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO effects (event_id, post_id, seq, attempt) VALUES ($1, $2, $3, $4)")
            .bind(&meta.event_id)
            .bind(event.post_id)
            .bind(event.user_id)
            .bind(i64::from(meta.attempt))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A test configuration: testkit's (unique name, fast commits and retries, HTTP on a free
/// port) with two retry-topic tiers, so events held back on the retry topic can be tested.
pub fn config(store_url: &str) -> ConsumerConfig {
    let mut config = fanout_testkit::consumer_config("consumer", store_url);
    config.retry.delays_ms = vec![300, 300];
    config
}

/// A SQLite store URL in a fresh temporary directory (kept alive by the returned guard).
pub fn sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("consumer.db").display());
    (dir, url)
}

/// A consumer running in the background.
pub struct Running {
    pub name: String,
    pub pool: AnyPool,
    pub http: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), fanout_consumer::ConsumerError>>,
    // Kept for as long as the consumer runs; its state topic goes when the test ends.
    _registry: Option<Registry>,
}

impl Running {
    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(mut self) -> TestResult {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.task).await???;
        Ok(())
    }

    /// A crash: the run future is dropped mid-stream, nothing more is committed to Kafka.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Builds the consumer with a [`Recorder`] on `topic`, creates the effect tables, runs it.
pub async fn start(config: ConsumerConfig, topic: &str, recorder: Recorder) -> anyhow::Result<Running> {
    Ok(run(build(config, topic, recorder).await?))
}

/// A consumer built with a [`Recorder`] on `topic` and its effect tables, and the registry it
/// decodes through; nothing is consumed until [`run`], so a test can prepare the store first.
pub struct Built {
    pub consumer: Consumer,
    /// `None` when the test runs the registry itself.
    pub registry: Option<Registry>,
}

/// Builds the consumer with a [`Recorder`] on `topic` and creates the effect tables.
pub async fn build(config: ConsumerConfig, topic: &str, recorder: Recorder) -> anyhow::Result<Built> {
    let (registry, decoder) = self::registry(topic).await?;
    let consumer = Consumer::builder(config).decoder(decoder).handle_topic(topic, recorder).build().await?;
    create_effects(consumer.pool()).await?;
    Ok(Built { consumer, registry: Some(registry) })
}

/// Creates the [`Recorder`]'s tables.
pub async fn create_effects(pool: &AnyPool) -> TestResult {
    for statement in EFFECTS {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}

/// Starts a [`Recorder`] consumer of `topic` whose registry is not up yet: it is told a free
/// port, returned, where a test brings a registry up later (no retries, a short connect
/// timeout, so an outage shows at once).
pub async fn start_before_registry(
    config: ConsumerConfig,
    topic: &str,
) -> anyhow::Result<(Running, std::net::SocketAddr)> {
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let settings = fanout_schema_registry::RegistrySettings {
        max_retries: 0,
        connect_timeout_ms: 300,
        ..fanout_schema_registry::RegistrySettings::with_urls(&[format!("http://{address}").as_str()])
    };
    let consumer = Consumer::builder(config)
        .decoder(RegistryDecoder::from_settings(&settings)?)
        .handle_topic(topic, Recorder::default())
        .build()
        .await?;
    create_effects(consumer.pool()).await?;
    Ok((run(Built { consumer, registry: None }), address))
}

/// Runs a built consumer in the background until [`Running::stop`].
pub fn run(Built { consumer, registry }: Built) -> Running {
    let name = consumer.name().to_owned();
    let pool = consumer.pool().clone();
    let http = consumer.http_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    Running { name, pool, http, stop: Some(stop), task, _registry: registry }
}

pub use fanout_testkit::wait_until;

pub async fn scalar(pool: &AnyPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query(sql).fetch_one(pool).await?.try_get::<i64, _>(0)?)
}

/// Rows in `effects`.
pub async fn effects(pool: &AnyPool) -> anyhow::Result<i64> {
    scalar(pool, "SELECT COUNT(*) FROM effects").await
}

/// A counter or gauge of the default registry, 0 when absent.
pub fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v))
        })
        .map(|m| {
            if m.get_counter().get_value() != 0.0 {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            }
        })
        .sum()
}

/// True when the default registry holds a series of `name` with these labels (whatever its value).
pub fn metric_present(name: &str, labels: &[(&str, &str)]) -> bool {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .any(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
}

/// Sample count and sum of a histogram of the default registry, (0, 0) when absent.
pub fn histogram(name: &str, labels: &[(&str, &str)]) -> (u64, f64) {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v))
        })
        .fold((0, 0.0), |(count, sum), m| {
            (count + m.get_histogram().get_sample_count(), sum + m.get_histogram().get_sample_sum())
        })
}

pub fn outcome(consumer: &str, outcome: &str) -> f64 {
    metric("fanout_consumed_total", &[("consumer", consumer), ("outcome", outcome)])
}

/// A record read back from a topic (the DLQ).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// The records of `topic` once it holds at least `count`, waiting at most `limit`.
pub async fn read_topic(
    kafka: &Kafka,
    topic: &str,
    count: usize,
    limit: Duration,
) -> anyhow::Result<Vec<Fetched>> {
    let records = kafka.read_at_least(topic, count, limit).await?;
    Ok(records
        .into_iter()
        .map(|record| Fetched { key: record.key, payload: record.payload, headers: record.headers })
        .collect())
}

/// Deletes the retry and dead-letter topics and the group of a consumer of `topic`.
pub async fn delete_derived(kafka: &Kafka, topic: &TestTopic, consumer: &str) {
    kafka.delete_consumer(topic.name(), consumer).await;
}

/// A minimal HTTP/1.0 GET, answered within 5 s; the whole response (status line first) as text.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(response) => Ok(response?),
        Err(_) => anyhow::bail!("GET {path} not answered within 5 s"),
    }
}

/// The HTTP status code of a `GET path`.
pub async fn http_status(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<u16> {
    let response = http_get(addr, path).await?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    status.ok_or_else(|| anyhow::anyhow!("no status line in {response:?}"))
}

/// Waits until the consumer's `/readyz` answers 200 (it owns source partitions, its store and
/// registry answer).
pub async fn wait_ready(running: &Running, limit: Duration) -> TestResult {
    let http = running.http;
    wait_until(limit, "the consumer ready", || async move {
        Ok(http_get(http, "/readyz").await?.lines().next().is_some_and(|l| l.contains(" 200 ")))
    })
    .await
}

/// How many partitions the consumer owns, as its `/readyz` reports: (of its source topics, of its
/// retry topics).
pub async fn partitions(running: &Running) -> anyhow::Result<(usize, usize)> {
    let response = http_get(running.http, "/readyz").await?;
    let count = |field: &str| {
        let count = response
            .split_whitespace()
            .find_map(|word| word.strip_prefix(field))
            .and_then(|n| n.parse().ok());
        count.ok_or_else(|| anyhow::anyhow!("no {field} in {response:?}"))
    };
    Ok((count("source_partitions=")?, count("retry_partitions=")?))
}

/// How many partitions the consumer owns, of source and retry topics together.
pub async fn assigned(running: &Running) -> anyhow::Result<usize> {
    let (sources, retries) = partitions(running).await?;
    Ok(sources + retries)
}
