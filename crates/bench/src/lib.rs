//! `fanout bench`: what Fanout costs on top of Kafka, measured side by side with its peers in the
//! same run.
//!
//! Each scenario alternates peer and Fanout within every repetition and reports medians with
//! their spread and the median per-repetition ratio, so background load (a shared machine) hits
//! both sides alike. Targets are printed beside the ratios; the bench reports them, it does not
//! fail on them. Every scenario creates uniquely named topics and groups and deletes them after.

mod charts;
mod child;
mod consume;
mod context;
mod env;
mod flows;
mod gateway;
mod gateway_peer;
mod latency;
mod load;
mod peer;
mod produce;
mod report;
mod scaling;
mod schedule;
mod serde;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Args, ValueEnum};

use self::{charts::ChartData, env::Env, report::Report};

/// Run Fanout's benchmark against the local broker: each figure beside its peer's, measured in
/// the same run, with the ratio and its target.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A short run (under a minute without `schedule`, `flows` and `gateway`, which add half a
    /// minute each): fewer events and repetitions, every ratio still printed.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (comma-separated). Context (machine, Kafka, perf test) always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Repetitions per figure (default: 3 quick, 5 full).
    #[arg(long)]
    reps: Option<usize>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "FANOUT_KAFKA__BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// A schema registry to use; by default the built-in one (`fanout registry serve`) runs as a
    /// child process on a free port, with its own state topic (deleted afterwards).
    #[arg(long)]
    registry: Option<String>,
    /// PostgreSQL server for the PostgreSQL store (a scratch database is created and dropped);
    /// `none` skips it.
    #[arg(long, default_value = "postgres://fanout:fanout@127.0.0.1:5432/fanout")]
    database_url: String,
    /// Python with confluent-kafka[avro,schemaregistry] for the serde peer (`make .venv/.installed`).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Kafka's jars, for kafka-producer-perf-test and the Kafka version.
    #[arg(long, default_value = ".stack/kafka/lib")]
    kafka_lib: PathBuf,
    /// Also write the summary table (Markdown) to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Where the full run writes its SVG charts (latency per rate, consume rate per batch size);
    /// a quick run writes them only when this is given.
    #[arg(long)]
    charts: Option<PathBuf>,
    /// A server the bench runs as a child process of its own (hidden: not for people).
    #[command(subcommand)]
    serve: Option<Serve>,
}

/// The servers the bench starts as child processes of the `fanout` binary, so that they run
/// under the same conditions as the Fanout service they are compared with.
#[derive(Debug, clap::Subcommand)]
enum Serve {
    /// The gateway scenario's peer: the bare axum handler that publishes callbacks unverified.
    #[command(name = "gateway-peer", hide = true)]
    GatewayPeer(gateway_peer::GatewayPeerArgs),
}

/// Where a full run's charts go unless `--charts` says otherwise (BENCHMARKS.md embeds them).
const DEFAULT_CHARTS: &str = "docs/bench";

/// The scenarios, by the numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 1: SDK publish vs BaseProducer.
    Produce,
    /// 2: consumer runtime (SQLite, PostgreSQL) vs a hand-written exactly-once loop.
    Consume,
    /// 3: wire-format serde vs Confluent's Python serde and the bare Avro crates.
    Serde,
    /// 4 and 5: fan-out latency and CPU per event, three groups.
    Latency,
    /// 6: consume rate over 1, 2, 4 partitions, key parallelism on and off.
    Scaling,
    /// 7: delayed delivery: `fanout-scheduler`'s lateness, memory and recovery with a million
    /// entries pending, beside a raw produce → consume pair.
    Schedule,
    /// 8: task flows: `fanout-flows`'s trigger latency beside a raw produce → consume pair, its
    /// completions per second, and its restart with every run's state to restore.
    Flows,
    /// 9: the callback gateway: `fanout-gateway`'s verified callbacks per second and request →
    /// 2xx latency, beside the bare axum handler that publishes without verifying or deduplicating.
    Gateway,
}

/// How much each scenario does; `--quick` and full differ only here.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Repetitions of the produce, consume and serde figures.
    pub reps: usize,
    /// Events per produce run, 100 B.
    pub produce_events_100b: usize,
    /// Events per produce run, 1 KB.
    pub produce_events_1kb: usize,
    /// Events pre-filled for the consume runs.
    pub consume_events: usize,
    /// A consume run stops this long after its first event at the latest.
    pub consume_cap: Duration,
    /// Repetitions of the consume figures (runtime and peer on each store).
    pub consume_reps: usize,
    /// `processing.batch_size` values of the consume-rate-against-batch-size figure.
    pub batch_sizes: Vec<usize>,
    /// Repetitions per batch size of that figure.
    pub batch_size_reps: usize,
    /// Whether each batch-size run gets a peer run beside it (else the batch-size rows compare
    /// with the consume figures' peer median, to keep a quick run short).
    pub batch_size_peer_runs: bool,
    /// Rust serde operations per repetition.
    pub serde_ops: usize,
    /// Python serde operations per repetition.
    pub python_ops: usize,
    /// The fan-out latency rates, events/s.
    pub latency_rates: Vec<f64>,
    /// Open-loop duration per rate and side.
    pub latency_duration: Duration,
    /// How long after the schedule ends deliveries may still arrive.
    pub latency_grace: Duration,
    /// Repetitions of the latency runs.
    pub latency_reps: usize,
    /// Partition counts of the scaling topics.
    pub scaling_partitions: Vec<i32>,
    /// Events pre-filled per scaling topic.
    pub scaling_events: usize,
    /// A scaling run stops this long after its first event at the latest.
    pub scaling_cap: Duration,
    /// Repetitions of the scaling runs.
    pub scaling_reps: usize,
    /// Records of the Kafka tools' perf test.
    pub perf_test_records: usize,
    /// Entries pending in the schedule topic (due over the next day) during the schedule runs.
    pub schedule_pending: usize,
    /// Measured entries coming due per second.
    pub schedule_rate: f64,
    /// Duration of each side's lateness run.
    pub schedule_duration: Duration,
    /// Repetitions of the lateness runs.
    pub schedule_reps: usize,
    /// The scheduler's `window_secs` (it re-reads every partition every half window).
    pub schedule_window_secs: u64,
    /// Runs in the flow engine's state (at least those the measurements use): what its restart
    /// restores.
    pub flows_runs: usize,
    /// Completions (upstream successes) per second of the trigger-latency runs.
    pub flows_rate: f64,
    /// Duration of each side's trigger-latency run.
    pub flows_duration: Duration,
    /// Repetitions of the trigger-latency and throughput runs.
    pub flows_reps: usize,
    /// Successes per throughput run.
    pub flows_throughput_runs: usize,
    /// Successes published while the engine is down (and as many re-published after).
    pub flows_recovery_runs: usize,
    /// Keep-alive connections of the gateway scenario's closed-loop runs, one figure each.
    pub gateway_connections: Vec<usize>,
    /// Duration of each side's closed-loop (throughput) run.
    pub gateway_throughput_duration: Duration,
    /// Requests per second of the open-loop (latency) runs.
    pub gateway_rate: f64,
    /// Duration of each side's open-loop run.
    pub gateway_latency_duration: Duration,
    /// Repetitions of the gateway runs (peer and gateway alternating).
    pub gateway_reps: usize,
}

impl Plan {
    fn new(quick: bool, reps: Option<usize>) -> Self {
        if quick {
            Self {
                reps: reps.unwrap_or(3),
                produce_events_100b: 40_000,
                produce_events_1kb: 20_000,
                consume_events: 20_000,
                consume_cap: Duration::from_millis(500),
                consume_reps: reps.unwrap_or(2),
                // The ends of the range only, and no 10k/s latency row: under a minute.
                batch_sizes: vec![50, 1_000],
                batch_size_reps: 1,
                batch_size_peer_runs: false,
                serde_ops: 200_000,
                python_ops: 3_000,
                latency_rates: vec![1_000.0, 5_000.0],
                latency_duration: Duration::from_secs(1),
                latency_grace: Duration::from_secs(1),
                latency_reps: reps.unwrap_or(1),
                // The ends of the range only: a quick run must stay under a minute.
                scaling_partitions: vec![1, 4],
                scaling_events: 3_000,
                scaling_cap: Duration::from_millis(500),
                scaling_reps: 1,
                perf_test_records: 30_000,
                schedule_pending: 50_000,
                schedule_rate: 2_000.0,
                schedule_duration: Duration::from_secs(4),
                schedule_reps: reps.unwrap_or(1),
                schedule_window_secs: 60,
                flows_runs: 20_000,
                flows_rate: 1_000.0,
                flows_duration: Duration::from_secs(4),
                flows_reps: reps.unwrap_or(1),
                flows_throughput_runs: 5_000,
                flows_recovery_runs: 500,
                gateway_connections: vec![64, 256],
                gateway_throughput_duration: Duration::from_secs(3),
                gateway_rate: 1_000.0,
                gateway_latency_duration: Duration::from_secs(4),
                gateway_reps: reps.unwrap_or(1),
            }
        } else {
            Self {
                reps: reps.unwrap_or(5),
                produce_events_100b: 300_000,
                produce_events_1kb: 150_000,
                consume_events: 100_000,
                consume_cap: Duration::from_secs(20),
                consume_reps: reps.unwrap_or(5),
                batch_sizes: vec![50, 200, 500, 1_000],
                batch_size_reps: reps.unwrap_or(3),
                batch_size_peer_runs: true,
                serde_ops: 500_000,
                python_ops: 20_000,
                latency_rates: vec![1_000.0, 5_000.0, 10_000.0],
                latency_duration: Duration::from_secs(30),
                latency_grace: Duration::from_secs(30),
                latency_reps: reps.unwrap_or(3),
                scaling_partitions: vec![1, 2, 4],
                scaling_events: 30_000,
                scaling_cap: Duration::from_secs(10),
                scaling_reps: 3,
                perf_test_records: 300_000,
                schedule_pending: 1_000_000,
                schedule_rate: 2_000.0,
                schedule_duration: Duration::from_secs(40),
                schedule_reps: reps.unwrap_or(3),
                // Every run then spans at least one re-read of the million entries (every 30 s);
                // the default window (600 s) re-reads ten times less often.
                schedule_window_secs: 60,
                flows_runs: 100_000,
                flows_rate: 1_000.0,
                flows_duration: Duration::from_secs(20),
                flows_reps: reps.unwrap_or(3),
                flows_throughput_runs: 10_000,
                flows_recovery_runs: 1_000,
                gateway_connections: vec![64, 256],
                gateway_throughput_duration: Duration::from_secs(10),
                gateway_rate: 1_000.0,
                gateway_latency_duration: Duration::from_secs(20),
                gateway_reps: reps.unwrap_or(3),
            }
        }
    }
}

/// `path` as given when it exists relative to the working directory, else relative to the
/// workspace this binary was built from (so `target/release/fanout bench` finds `.venv` and
/// `.stack` from anywhere in the checkout).
fn locate(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_owned();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidate = workspace.join(path);
    if candidate.exists() {
        candidate
    } else {
        path.to_owned()
    }
}

impl BenchArgs {
    /// Runs the selected scenarios and prints every figure with its ratio, then the summary.
    pub async fn run(self) -> anyhow::Result<()> {
        if let Some(Serve::GatewayPeer(peer)) = self.serve {
            return peer.run().await;
        }
        let started = Instant::now();
        let plan = Plan::new(self.quick, self.reps);
        let postgres = (self.database_url != "none").then_some(self.database_url.as_str());
        let mut env = Env::new(&self.bootstrap, "", postgres).await?;
        let mut report = Report::default();
        let mut charts = ChartData::default();
        println!("fanout bench ({})", if self.quick { "quick" } else { "full" });
        if cfg!(debug_assertions) {
            println!("  warning: this is a debug build; its figures mean little (cargo build --release -p fanout-cli)");
        }
        let registry_topic = env.name("schemas");
        let registry = match &self.registry {
            Some(url) => {
                env.registry = url.clone();
                None
            }
            None => {
                let started = tokio::task::block_in_place(|| {
                    env::ChildRegistry::start(&self.bootstrap, &registry_topic)
                });
                match started {
                    Ok(child) => {
                        env.registry = child.url.clone();
                        Some(child)
                    }
                    Err(e) => {
                        env.delete_topic_now(&registry_topic).await;
                        env.finish().await;
                        return Err(e);
                    }
                }
            }
        };
        let result = self.scenarios(&env, &plan, &mut report, &mut charts).await;
        if let Some(registry) = registry {
            registry.stop();
            env.delete_topic_now(&registry_topic).await;
        }
        env.finish().await;
        result?;

        context::load(&mut report, "load average at end");
        report.context("wall time", format!("{:.1} s", started.elapsed().as_secs_f64()));
        let summary = report.markdown();
        println!("\n{summary}");
        if let Some(path) = &self.markdown {
            std::fs::write(path, &summary).with_context(|| format!("writing {}", path.display()))?;
        }
        let charts_dir = match (&self.charts, self.quick) {
            (Some(dir), _) => Some(dir.clone()),
            (None, false) => Some(locate(Path::new(DEFAULT_CHARTS))),
            (None, true) => None,
        };
        if let Some(dir) = charts_dir {
            for path in charts::write(&dir, &charts)? {
                println!("chart: {}", path.display());
            }
        }
        let missed = report.missed();
        if missed > 0 {
            println!("{missed} target(s) missed; see the table above.");
        }
        Ok(())
    }

    async fn scenarios(
        &self,
        env: &Env,
        plan: &Plan,
        report: &mut Report,
        charts: &mut ChartData,
    ) -> anyhow::Result<()> {
        println!("\n== context ==");
        if self.quick {
            report.note(
                "quick mode: every run is short (consume runs stop 0.5 s after their first event, before the \
                 runtime's steady state; batch sizes 50 and 1,000 only; latency runs last 1 s per rate and side, \
                 1k and 5k/s only; scaling covers 1 and 4 partitions; schedule has 50,000 entries pending, not a million, and runs 4 s per side; flows keeps 20,000 runs, not 100,000, and runs 4 s per side; gateway runs 3 s per side at 64 and 256 connections and 4 s at 1,000 req/s, once) and repetitions are few; the figures are indicative, the full run's count",
            );
        }
        context::machine(report);
        report.context("registry", env.registry.clone());
        context::kafka(env, plan, &locate(&self.kafka_lib), report).await;
        let python = locate(&self.python);
        let python = python.exists().then_some(python);
        report.context(
            "python peer",
            match &python {
                Some(path) => path.display().to_string(),
                None => format!("{} not found; make it with `make .venv/.installed`", self.python.display()),
            },
        );
        let wanted = |s: Scenario| self.only.is_empty() || self.only.contains(&s);
        let scenarios = [
            (Scenario::Serde, "3 serde"),
            (Scenario::Produce, "1 produce"),
            (Scenario::Consume, "2 consume"),
            (Scenario::Latency, "4 latency and 5 CPU"),
            (Scenario::Scaling, "6 scaling"),
            (Scenario::Schedule, "7 schedule"),
            (Scenario::Flows, "8 flows"),
            (Scenario::Gateway, "9 gateway"),
        ];
        for (scenario, title) in scenarios.into_iter().filter(|(s, _)| wanted(*s)) {
            println!("\n== {title} ==");
            let began = Instant::now();
            let result = match scenario {
                Scenario::Produce => produce::run(env, plan, report).await,
                Scenario::Consume => consume::run(env, plan, report, charts).await,
                Scenario::Serde => serde::run(env, plan, python.as_deref(), report).await,
                Scenario::Latency => latency::run(env, plan, report, charts).await,
                Scenario::Scaling => scaling::run(env, plan, report).await,
                Scenario::Schedule => schedule::run(env, plan, report).await,
                Scenario::Flows => flows::run(env, plan, report).await,
                Scenario::Gateway => gateway::run(env, plan, report).await,
            };
            // Topics go even when the scenario failed.
            env.cleanup().await;
            result.with_context(|| format!("scenario {title}"))?;
            println!("  ({:.1} s)", began.elapsed().as_secs_f64());
        }
        Ok(())
    }
}
