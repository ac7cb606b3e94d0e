//! `fanout flow start|retry|show|worker`: task flows from the command line. The engine
//! (`fanout-flows`) decides what starts; these ask it to start a run or run a task again, and run
//! the tasks it starts.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use fanout_flows::{signals::RunRequested, SignalTopics, WorkerConfig};
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};

use super::connection::Connection;

/// Task flows (`fanout-flows`).
#[derive(Debug, Subcommand)]
pub enum FlowCommand {
    /// Starts a run of a flow (its root tasks start; each other task the moment its upstreams
    /// of the run succeeded).
    Start(StartArgs),
    /// Runs one task of a run again: after a failure, its blocked dependants wait for it again;
    /// with `--cascade`, its dependants run again after it.
    Retry(RetryArgs),
    /// One run as a text Gantt chart: each task's wait and run, the critical path, and when
    /// the run would have finished on a cron timetable.
    Show(ShowArgs),
    /// Runs the tasks the engine starts (any number of workers share the work), reporting each
    /// one's success, or its failure with the exit status and the tail of stderr.
    Worker(WorkerArgs),
}

/// Where the flows' signals are.
#[derive(Debug, Args)]
pub struct Topics {
    /// The signal topics' prefix (the engine's `topic_prefix`).
    #[arg(long, default_value = "flow")]
    topic_prefix: String,
    #[command(flatten)]
    connection: Connection,
}

/// `fanout flow start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The flow's name.
    flow: String,
    /// The run key, e.g. the business date.
    #[arg(long)]
    run: String,
    #[command(flatten)]
    topics: Topics,
}

/// `fanout flow retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The flow's name.
    flow: String,
    /// The run key.
    #[arg(long)]
    run: String,
    /// The task to run again.
    #[arg(long)]
    task: String,
    /// Run its dependants again after it.
    #[arg(long)]
    cascade: bool,
    #[command(flatten)]
    topics: Topics,
}

/// `fanout flow show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The flow's name.
    flow: String,
    /// The run key.
    #[arg(long)]
    run: String,
    /// A flow file, or a directory of them (the engine's).
    #[arg(long, default_value = "flows")]
    flows: PathBuf,
    /// The chart's width in columns.
    #[arg(long, default_value_t = 60)]
    width: usize,
    #[command(flatten)]
    topics: Topics,
}

/// `fanout flow worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// A flow file, or a directory of them (the engine's).
    #[arg(long, default_value = "flows")]
    flows: PathBuf,
    /// Tasks run at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The consumer group workers share.
    #[arg(long, default_value = "fanout-flow-workers")]
    group: String,
    #[command(flatten)]
    topics: Topics,
}

impl FlowCommand {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Start(args) => request(&args.topics, &args.flow, &args.run, None, false).await,
            Self::Retry(args) => {
                request(&args.topics, &args.flow, &args.run, Some(args.task), args.cascade).await
            }
            Self::Show(args) => args.run().await,
            Self::Worker(args) => args.run().await,
        }
    }
}

async fn request(
    topics: &Topics,
    flow: &str,
    run: &str,
    retry_task: Option<String>,
    cascade: bool,
) -> anyhow::Result<()> {
    let settings = topics.connection.connect().await?;
    let mut config = PublisherConfig::new("fanout-cli");
    config.kafka = settings.kafka;
    config.registry = settings.registry;
    let publisher = Publisher::new(config)?;
    let request = RunRequested {
        flow: flow.to_owned(),
        run: run.to_owned(),
        retry_task: retry_task.clone(),
        cascade,
        requested_by: "fanout flow".into(),
    };
    let topic = SignalTopics::new(&topics.topic_prefix).requested;
    let delivery = publisher.publish_with(&request, &PublishOptions::new().topic(&topic)).await?;
    println!(
        "{}",
        serde_json::json!({
            "flow": flow, "run": run, "retry_task": retry_task, "cascade": cascade,
            "topic": topic, "partition": delivery.partition, "offset": delivery.offset,
        })
    );
    Ok(())
}

impl WorkerArgs {
    async fn run(self) -> anyhow::Result<()> {
        let flows = fanout_flows::load_flows(&self.flows)?;
        let settings = self.topics.connection.connect().await?;
        let config = WorkerConfig {
            group: self.group,
            flows,
            topics: SignalTopics::new(&self.topics.topic_prefix),
            concurrency: self.concurrency,
            worker: fanout_flows::default_worker_name(),
            kafka: settings.kafka,
            registry: settings.registry,
        };
        fanout_flows::run_worker(config, fanout_service::shutdown_signal())
            .await
            .context("the worker stopped")
    }
}

impl ShowArgs {
    async fn run(self) -> anyhow::Result<()> {
        let flows = fanout_flows::load_flows(&self.flows)?;
        let flow = flows.get(&self.flow).with_context(|| {
            let mut known: Vec<&str> = flows.keys().map(String::as_str).collect();
            known.sort_unstable();
            format!("no flow {} in {} (flows: {})", self.flow, self.flows.display(), known.join(", "))
        })?;
        let settings = self.topics.connection.connect().await?;
        let serde = fanout_schema_registry::AvroSerde::from_settings(&settings.registry)?;
        let mut config = fanout_kafka::client_config(&settings.kafka);
        config.set("isolation.level", "read_committed");
        let topics = SignalTopics::new(&self.topics.topic_prefix);
        let key = fanout_flows::signals::run_key(&self.flow, &self.run);
        let read = |topic: String| {
            let (config, key) = (config.clone(), key.clone());
            async move {
                let records = fanout_kafka::TopicRead::new(&topic)
                    .read(&config)
                    .await
                    .with_context(|| format!("cannot read {topic}"))?;
                let ours: Vec<Vec<u8>> = records
                    .into_iter()
                    .filter(|r| r.key.as_deref() == Some(key.as_slice()))
                    .filter_map(|r| r.payload)
                    .collect();
                anyhow::Ok(ours)
            }
        };
        let mut started = Vec::new();
        for payload in read(topics.started.clone()).await? {
            started.push(serde.decode::<fanout_flows::signals::TaskStarted>(&payload).await?);
        }
        let mut succeeded = Vec::new();
        for payload in read(topics.succeeded.clone()).await? {
            succeeded.push(serde.decode::<fanout_flows::signals::TaskSucceeded>(&payload).await?);
        }
        let mut failed = Vec::new();
        for payload in read(topics.failed.clone()).await? {
            failed.push(serde.decode::<fanout_flows::signals::TaskFailed>(&payload).await?);
        }
        let report = fanout_flows::RunReport::new(flow, &self.run, &started, &succeeded, &failed);
        print!("{}", report.render(flow, self.width));
        Ok(())
    }
}
