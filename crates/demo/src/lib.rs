//! `fanout demo`: the main job end to end. The built-in registry and the three post-published
//! services run in this process against the local broker; an upstream publishes realistic
//! `PostPublished` events (some sent twice, as an at-least-once upstream does, and poison
//! records); then the demo waits for every consumer to catch up, checks each service's read API
//! against totals computed here from the published events, and prints a summary.
//!
//! Each run uses its own topic (`post.published.demo-<run>`) and fresh service databases, so runs
//! never see each other's events; the topics and databases are removed at the end unless
//! `--keep` is given. The terminal shows the demo's progress and summary only; every log line
//! (services, registry, librdkafka) goes to a file the demo names (`--log-dir`).

mod flows;
mod log;
mod payments;
mod publish;
mod report;
mod services;
mod verify;
mod workload;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};
use clap::Args;
use fanout_kafka::TopicSpec;
use fanout_registry_server::{RegistryConfig, RegistryServer};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rdkafka::ClientConfig;

use report::Row;
use workload::Workload;

/// Run the main job: registry, rewards, pinning and stats against the local broker, N events
/// published through the SDK, and a checked summary.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// One scenario: `fanout` (the post-published services), `flows` (the nightly jobs as a
    /// task flow) or `payments` (a provider's late callbacks through the gateway to two
    /// requesters). Without it, every scenario runs in turn.
    #[arg(value_enum)]
    scenario: Option<Scenario>,
    /// Distinct events to publish (about 5% more are re-sent duplicates, plus one poison record).
    #[arg(long, default_value_t = 2_000)]
    events: usize,
    /// Publishing rate in events per second (0: as fast as the broker acknowledges).
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Kafka bootstrap servers.
    #[arg(long, env = "FANOUT_KAFKA__BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The PostgreSQL server the payments scenario's gateway keeps its dedupe store on (in a
    /// scratch database, dropped at the end).
    #[arg(long, default_value = "postgres://fanout:fanout@127.0.0.1:5432/fanout")]
    database_url: String,
    /// Poison records (not Avro at all) slipped into the stream; each consumer must dead-letter
    /// them and keep going.
    #[arg(long, default_value_t = 1)]
    poison: usize,
    /// Partitions of the demo topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Seed of the event generator (the same seed publishes the same mix).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the run's topics and databases for a look afterwards.
    #[arg(long)]
    keep: bool,
    /// The directory of the run's log file, `demo-<time>-<run>.log`: every log line of the
    /// services, the registry and the Kafka client (the terminal shows the demo's own output
    /// only). Default: the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

/// The demo's scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Fan-out: one event, three independent consumers, each effect exactly once.
    Fanout,
    /// Task flows: each task starts the moment its upstreams of the run are done.
    Flows,
    /// The callback gateway: long-running results come back through the bus to their requesters.
    Payments,
}

/// Beans a JOB post earns and credits a HOUSING post grants: the services' defaults, which the
/// demo leaves in place, so its check also guards those defaults.
const BEANS_PER_JOB: i64 = 10;
const PINS_PER_HOUSING: i64 = 2;

impl DemoArgs {
    /// Runs the demo; an error (or a failed check) makes the process exit non-zero.
    pub async fn run(self) -> anyhow::Result<()> {
        if self.events == 0 {
            bail!("--events must be at least 1");
        }
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        let run = uuid::Uuid::now_v7().simple().to_string();
        let run = &run[run.len() - 8..];
        let log_file = self
            .log_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("demo-{}-{run}.log", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
        log::to_file(&log_file)?;
        let seed = self.seed.unwrap_or_else(|| u64::from_str_radix(run, 16).unwrap_or(42));
        let all = self.scenario.is_none();
        if all || self.scenario == Some(Scenario::Fanout) {
            self.run_fanout(run, seed, &log_file).await?;
        }
        if all || self.scenario == Some(Scenario::Flows) {
            if all {
                println!();
            }
            self.run_flows(run, seed, &log_file).await?;
        }
        if all || self.scenario == Some(Scenario::Payments) {
            if all {
                println!();
            }
            self.run_payments(run, seed, &log_file).await?;
        }
        Ok(())
    }

    async fn run_flows(&self, run: &str, seed: u64, log_file: &Path) -> anyhow::Result<()> {
        let workdir = std::env::temp_dir().join(format!("fanout-demo-flows-{run}"));
        std::fs::create_dir_all(&workdir).with_context(|| format!("cannot create {}", workdir.display()))?;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let registry = RegistryServer::start(RegistryConfig::new(&self.bootstrap, listen))
            .await
            .context("starting the built-in schema registry")?;
        let outcome = flows::run(&self.bootstrap, &registry.url(), run, seed, &workdir).await;
        registry.shutdown().await.context("stopping the registry")?;
        if !self.keep {
            let _ = std::fs::remove_dir_all(&workdir);
        }
        if outcome.is_err() {
            println!("{}", log_line(log_file));
        }
        outcome
    }

    async fn run_payments(&self, run: &str, seed: u64, log_file: &Path) -> anyhow::Result<()> {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let registry = RegistryServer::start(RegistryConfig::new(&self.bootstrap, listen))
            .await
            .context("starting the built-in schema registry")?;
        let outcome = payments::run(&self.bootstrap, &registry.url(), &self.database_url, run, seed).await;
        registry.shutdown().await.context("stopping the registry")?;
        if outcome.is_err() {
            println!("{}", log_line(log_file));
        }
        outcome
    }

    async fn run_fanout(&self, run: &str, seed: u64, log_file: &Path) -> anyhow::Result<()> {
        let topic = format!("{}.demo-{run}", fanout_events::topics::POST_PUBLISHED);
        let log_file = log_file.to_owned();
        let workdir = std::env::temp_dir().join(format!("fanout-demo-{run}"));
        std::fs::create_dir_all(&workdir).with_context(|| format!("cannot create {}", workdir.display()))?;

        let mut kafka = ClientConfig::new();
        kafka.set("bootstrap.servers", &self.bootstrap);
        create_topic(&kafka, &topic, self.partitions).await?;
        let outcome = self.run_in(&topic, &workdir, seed, &log_file).await;

        if self.keep {
            eprintln!("kept topic {topic} and the service databases in {}", workdir.display());
        } else {
            cleanup(&kafka, &topic, &workdir).await;
        }
        outcome
    }

    async fn run_in(&self, topic: &str, workdir: &Path, seed: u64, log_file: &Path) -> anyhow::Result<()> {
        println!(
            "Fanout demo: topic {topic}, {} events at {} events/s (seed {seed})",
            self.events, self.rate
        );
        println!("{}", log_line(log_file));
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let registry = RegistryServer::start(RegistryConfig::new(&self.bootstrap, listen))
            .await
            .context("starting the built-in schema registry")?;
        println!("schema registry   {}", registry.url());

        let running = services::start(&self.bootstrap, &registry.url(), topic, workdir).await?;
        for service in &running.services {
            println!("{:<17} http://{}  (consumer group {:?})", service.name, service.http, service.name);
        }
        services::wait_ready(&running, Duration::from_secs(60)).await?;

        let workload = Workload::generate(self.events, seed);
        let progress = MultiProgress::new();
        let published = publish::publish(
            &self.bootstrap,
            &registry.url(),
            topic,
            &workload,
            self.rate,
            self.poison,
            &progress,
        )
        .await
        .context("publishing the demo's events")?;
        let records = published.records;

        let bars: Vec<ProgressBar> = running
            .services
            .iter()
            .map(|s| {
                let bar = progress.add(ProgressBar::new(records as u64));
                bar.set_style(bar_style());
                bar.set_prefix(format!("{:<9}", s.name));
                bar.set_message("catching up");
                bar
            })
            .collect();
        let catch_up = Duration::from_secs(60) + Duration::from_millis(records as u64 * 20);
        let caught_up = services::wait_caught_up(&running, topic, records as u64, catch_up, &bars).await;
        for bar in &bars {
            bar.finish();
        }
        let families = prometheus::gather();

        let expected = workload.expected(BEANS_PER_JOB, PINS_PER_HOUSING);
        let mismatches = verify::read_apis(&running, &expected).await?;
        let mut rows = Vec::new();
        let mut problems = Vec::new();
        for service in &running.services {
            let figures = report::figures(&families, service.name, topic);
            let theirs: Vec<&String> = mismatches.iter().filter(|m| m.starts_with(service.name)).collect();
            if figures.applied != self.events as u64 {
                problems.push(format!(
                    "{} applied {} events, not {}",
                    service.name, figures.applied, self.events
                ));
            }
            if figures.duplicates < published.resends as u64 {
                problems.push(format!(
                    "{} skipped {} duplicates, fewer than the {} re-sent",
                    service.name, figures.duplicates, published.resends
                ));
            }
            if figures.dead_lettered != published.poison as u64 {
                problems.push(format!(
                    "{} dead-lettered {}, not the {} poison record(s)",
                    service.name, figures.dead_lettered, published.poison
                ));
            }
            problems.extend(theirs.iter().take(5).map(|m| (*m).clone()));
            rows.push(Row {
                consumer: service.name.to_owned(),
                figures,
                metrics_url: format!("http://{}/metrics", service.http),
                verified: theirs.is_empty(),
            });
        }
        println!();
        println!(
            "published {} events ({} re-sent duplicates, {} poison) to {topic}",
            self.events, published.resends, published.poison
        );
        println!("{}", report::table(&rows));
        println!("{}", report::dead_letters(&rows, published.poison as u64));
        println!(
            "checked {} users' beans, pins and stats against totals computed from the published events",
            expected.users.len()
        );
        // Named again at the end, where a reader looks first when something above needs explaining.
        println!("{}", log_line(log_file));

        running.stop().await?;
        registry.shutdown().await.context("stopping the registry")?;
        if let Err(e) = caught_up {
            problems.push(fanout_core::report(e.as_ref()));
        }
        if !problems.is_empty() {
            bail!("the demo's check failed:\n  {}", problems.join("\n  "));
        }
        println!("demo OK: every effect applied exactly once");
        Ok(())
    }
}

/// The line naming the log file, at the start and in the summary.
fn log_line(log_file: &Path) -> String {
    format!("log file          {}", log_file.display())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Creates the demo's topic, failing fast with the way to start a broker when none answers.
async fn create_topic(kafka: &ClientConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let spec = TopicSpec::new(topic, partitions);
    tokio::time::timeout(
        Duration::from_secs(15),
        fanout_kafka::ensure_topics(kafka, &[spec], Duration::from_secs(15)),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "no Kafka broker answered within 15 s (start the local one with `scripts/stack up kafka`)"
        )
    })?
    .context("creating the demo topic")
}

async fn cleanup(kafka: &ClientConfig, topic: &str, workdir: &std::path::Path) {
    let mut topics = vec![topic.to_owned()];
    for name in services::NAMES {
        topics.push(fanout_core::topics::retry(topic, name));
        topics.push(fanout_core::topics::dead_letter(topic, name));
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    // Retry and dead-letter topics exist only if something failed; "unknown topic" is fine.
    if let Ok(Err(e)) =
        tokio::time::timeout(Duration::from_secs(15), fanout_kafka::delete_topics(kafka, &names)).await
    {
        eprintln!("could not delete the demo topics: {e}");
    }
    if let Err(e) = std::fs::remove_dir_all(workdir) {
        eprintln!("could not remove {}: {e}", workdir.display());
    }
}
