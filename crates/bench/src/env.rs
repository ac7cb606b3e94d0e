//! What every scenario shares: the broker, registry and PostgreSQL it runs against, unique names
//! with clean-up, the benchmark's events, and process CPU time.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use fanout_consumer::{ConsumerConfig, RegistryDecoder};
use fanout_core::{topics, Event};
use fanout_events::{Category, PostPublished};
use fanout_kafka::TopicSpec;
use fanout_producer::PublisherConfig;
use fanout_schema_registry::{AvroSerde, RegistrySettings};
use rdkafka::{
    admin::{AdminClient, AdminOptions},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer as _},
    types::RDKafkaErrorCode,
    ClientConfig,
};
use sqlx::{postgres::PgConnectOptions, ConnectOptions};

/// Post ids start here, so every id has the same varint length and an event's size depends only
/// on its title.
pub const POST_BASE: i64 = 1_000_000_000;

/// The broker, registry and database a run uses, and the names it created (deleted after each
/// scenario).
pub struct Env {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// Schema registry URL.
    pub registry: String,
    /// Scratch files (SQLite stores), removed at the end.
    pub work_dir: PathBuf,
    run: String,
    counter: AtomicUsize,
    admin: AdminClient<DefaultClientContext>,
    topics: Mutex<Vec<String>>,
    groups: Mutex<Vec<String>>,
    postgres: Option<PgConnectOptions>,
    database: Mutex<Option<String>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("bootstrap", &self.bootstrap).field("run", &self.run).finish()
    }
}

impl Env {
    /// Connects the admin client and checks the broker answers.
    pub async fn new(bootstrap: &str, registry: &str, postgres_url: Option<&str>) -> anyhow::Result<Self> {
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
        let probe_bootstrap = bootstrap.to_owned();
        tokio::task::spawn_blocking(move || {
            let probe: BaseConsumer =
                ClientConfig::new().set("bootstrap.servers", &probe_bootstrap).create()?;
            probe.fetch_metadata(None, Duration::from_secs(10)).map(|_| ())
        })
        .await?
        .with_context(|| {
            format!("no Kafka broker answers at {bootstrap}; start it with `scripts/stack up kafka`")
        })?;
        let postgres = postgres_url
            .map(|url| {
                url.parse::<PgConnectOptions>().with_context(|| "--database-url is not a PostgreSQL URL")
            })
            .transpose()?;
        let work_dir = std::env::temp_dir().join(format!("fanout-bench-{run}"));
        std::fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            registry: registry.to_owned(),
            work_dir,
            run,
            counter: AtomicUsize::new(0),
            admin,
            topics: Mutex::new(Vec::new()),
            groups: Mutex::new(Vec::new()),
            postgres,
            database: Mutex::new(None),
        })
    }

    /// A name unique to this run and call: `bench-<run>-<what>-<n>`.
    pub fn name(&self, what: &str) -> String {
        format!("bench-{}-{what}-{}", self.run, self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// A unique consumer-group (or consumer-runtime) name, deleted at clean-up.
    pub fn group(&self, what: &str) -> String {
        let name = self.name(what);
        lock(&self.groups).push(name.clone());
        name
    }

    /// Registers the retry and dead-letter topics a consumer runtime named `consumer` creates
    /// for `topic`, so clean-up deletes them too.
    pub fn runtime_topics(&self, topic: &str, consumer: &str) {
        let mut topics_ = lock(&self.topics);
        topics_.push(topics::retry(topic, consumer));
        topics_.push(topics::dead_letter(topic, consumer));
    }

    /// Creates a unique topic and waits until its partitions have leaders.
    pub async fn topic(&self, what: &str, partitions: i32) -> anyhow::Result<String> {
        let name = self.name(what);
        lock(&self.topics).push(name.clone());
        let spec = TopicSpec::new(&name, partitions);
        fanout_kafka::ensure_topics(&self.client_config(), &[spec], Duration::from_secs(15)).await?;
        Ok(name)
    }

    /// Deletes every topic and consumer group created since the last clean-up. Failures are
    /// reported, not fatal: the figures are already taken.
    pub async fn cleanup(&self) {
        let topics_: Vec<String> = std::mem::take(&mut *lock(&self.topics));
        let groups: Vec<String> = std::mem::take(&mut *lock(&self.groups));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        if !groups.is_empty() {
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            // A group that never committed does not exist on the broker; that is not a failure.
            let _ = self.admin.delete_groups(&names, &options).await;
        }
        if !topics_.is_empty() {
            let names: Vec<&str> = topics_.iter().map(String::as_str).collect();
            match self.admin.delete_topics(&names, &options).await {
                Ok(results) => {
                    for result in results {
                        if let Err((topic, code)) = result {
                            if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                                eprintln!("fanout bench: could not delete topic {topic}: {code}");
                            }
                        }
                    }
                }
                Err(e) => eprintln!("fanout bench: could not delete {} topics: {e}", names.len()),
            }
        }
    }

    /// Registers a topic created elsewhere (by the scenario itself, or by a child process such as
    /// the scheduler's dead-letter topic) for clean-up.
    pub fn adopt_topic(&self, name: &str) {
        lock(&self.topics).push(name.to_owned());
    }

    /// Deletes the consumer group `name` now; true when it is gone or never existed (a group
    /// with a live or not yet expired member cannot be deleted).
    pub async fn delete_group_now(&self, name: &str) -> bool {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        match self.admin.delete_groups(&[name], &options).await {
            Ok(results) => results.iter().all(|result| match result {
                Ok(_) => true,
                Err((_, code)) => *code == RDKafkaErrorCode::GroupIdNotFound,
            }),
            Err(_) => false,
        }
    }

    /// Deletes one topic at once (with anything else pending clean-up).
    pub async fn delete_topic_now(&self, name: &str) {
        lock(&self.topics).push(name.to_owned());
        self.cleanup().await;
    }

    /// Drops the scratch database and removes the scratch directory.
    pub async fn finish(&self) {
        self.cleanup().await;
        let database = lock(&self.database).take();
        if let (Some(name), Some(options)) = (database, self.postgres.as_ref()) {
            let dropped = async {
                let mut conn = options.connect().await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
            }
            .await;
            if let Err(e) = dropped {
                eprintln!("fanout bench: could not drop database {name}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }

    /// A fresh PostgreSQL database for this run (created on first call, dropped by
    /// [`Env::finish`]), as a store URL; `None` when no server was given.
    pub async fn postgres_store(&self) -> anyhow::Result<Option<String>> {
        let Some(options) = self.postgres.as_ref() else { return Ok(None) };
        if let Some(name) = lock(&self.database).clone() {
            return Ok(Some(options.clone().database(&name).to_url_lossy().to_string()));
        }
        let name = format!("bench_{}", self.run);
        let mut conn = options
            .connect()
            .await
            .context("no PostgreSQL answers at --database-url; start it with `scripts/stack up postgres`")?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await?;
        *lock(&self.database) = Some(name.clone());
        Ok(Some(options.clone().database(&name).to_url_lossy().to_string()))
    }

    /// A SQLite store URL in the scratch directory, unique per call.
    pub fn sqlite_store(&self, what: &str) -> String {
        let file = self.work_dir.join(format!("{}.db", self.name(what)));
        format!("sqlite:{}", file.display())
    }

    /// `bootstrap.servers` and nothing else.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// The producer SDK's configuration with its defaults (linger 5 ms, lz4, acks=all,
    /// idempotence): the settings both sides of every produce comparison use.
    pub fn publisher_config(&self) -> PublisherConfig {
        let mut config = PublisherConfig::new("fanout-bench");
        config.kafka.bootstrap = self.bootstrap.clone();
        config.registry = RegistrySettings::with_urls(&[self.registry.as_str()]);
        config
    }

    /// The librdkafka configuration the SDK's producer runs with, for the raw peers, so both
    /// sides send with the same settings.
    pub fn producer_config(&self) -> anyhow::Result<ClientConfig> {
        let config = self.publisher_config();
        Ok(fanout_kafka::producer_config(&config.kafka, &config.producer)?)
    }

    /// A consumer runtime configuration with defaults, on `store`, HTTP on a free port.
    pub fn consumer_config(&self, name: &str, store: &str) -> ConsumerConfig {
        let mut config = ConsumerConfig::new(name);
        config.kafka.bootstrap = self.bootstrap.clone();
        config.store.url = store.to_owned();
        config.http.listen = "127.0.0.1:0".to_owned();
        config
    }

    /// The Confluent wire-format serde on this run's registry.
    pub fn serde(&self) -> anyhow::Result<AvroSerde> {
        Ok(AvroSerde::from_urls(&[self.registry.as_str()])?)
    }

    /// The consumer runtime's production decoder on this run's registry.
    pub fn decoder(&self) -> anyhow::Result<RegistryDecoder> {
        Ok(RegistryDecoder::new(self.serde()?))
    }
}

/// The built-in registry (`fanout registry serve`) as a child process: its CPU stays out of the
/// bench's own getrusage figures, and its logs out of the bench's output.
#[derive(Debug)]
pub struct ChildRegistry {
    child: std::process::Child,
    /// Where it serves.
    pub url: String,
}

impl ChildRegistry {
    /// Starts it on a free port with its own state topic and waits until it serves.
    pub fn start(bootstrap: &str, topic: &str) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args(["registry", "serve", "--listen", &listen, "--bootstrap", bootstrap, "--topic", topic])
            .env("FANOUT_LOG", "error")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting `fanout registry serve`")?;
        let Some(stderr) = child.stderr.take() else { bail!("the registry has no stderr pipe") };
        let mut lines = std::io::BufReader::new(stderr).lines();
        // It announces itself on stderr once its state is read and it listens.
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("schema registry at") => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the registry's output"),
                None => {
                    let status = child.wait()?;
                    bail!("`fanout registry serve` exited ({status}) before serving");
                }
            }
        }
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, url: format!("http://{listen}") })
    }

    /// Stops it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ChildRegistry {
    fn drop(&mut self) {
        // The bench started it; nothing else must outlive the run.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Words titles are made of: text that compresses like text (lz4 finds repeats), unlike a run of
/// one letter (which would compress to nothing and flatter every produce figure).
const WORDS: [&str; 32] = [
    "barista",
    "wanted",
    "weekend",
    "shifts",
    "berlin",
    "flat",
    "share",
    "room",
    "bright",
    "quiet",
    "near",
    "station",
    "bike",
    "sale",
    "used",
    "good",
    "condition",
    "sofa",
    "free",
    "pickup",
    "job",
    "cook",
    "part",
    "time",
    "garden",
    "view",
    "balcony",
    "kitchen",
    "new",
    "offer",
    "city",
    "centre",
];

/// A title of exactly `len` bytes, different for every `seq` (xorshift over [`WORDS`]).
fn title(seq: u64, len: usize) -> String {
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
    }
    out.truncate(len);
    out
}

/// Event number `seq` with a title of `title_len` bytes: distinct post ids (a post is published
/// once), a thousand authors, every category.
pub fn post(seq: u64, title_len: usize) -> PostPublished {
    PostPublished {
        post_id: POST_BASE + seq as i64,
        user_id: 1_000 + (seq % 1_000) as i64,
        category: Category::ALL[(seq % 4) as usize],
        city: "Berlin".to_owned(),
        title: title(seq, title_len),
        published_at: 1_764_000_000_000,
    }
}

/// The Confluent-framed payload size of `event` (5-byte header plus the Avro body).
pub fn framed_len(event: &PostPublished) -> anyhow::Result<usize> {
    let value = apache_avro::to_value(event)?;
    Ok(5 + apache_avro::to_avro_datum(PostPublished::schema(), value)?.len())
}

/// The title length that makes every [`post`] exactly `payload` bytes on the wire (framed).
pub fn title_for(payload: usize) -> anyhow::Result<usize> {
    for len in 0..payload {
        match framed_len(&post(0, len))? {
            n if n == payload => return Ok(len),
            n if n > payload => break,
            _ => {}
        }
    }
    bail!("no title makes a {payload}-byte PostPublished payload")
}

/// User plus system CPU time of this whole process (every thread: librdkafka's included).
pub fn cpu_time() -> anyhow::Result<Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// Waits until `done` holds, checking every 5 ms, failing with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_size_events_exactly() {
        for size in [100, 1024] {
            let len = title_for(size).expect("a title fits");
            for seq in [0, 1, 999, 123_456] {
                assert_eq!(framed_len(&post(seq, len)).expect("encodes"), size);
            }
            assert_ne!(post(1, len).title, post(2, len).title, "titles differ per event");
        }
    }
}
