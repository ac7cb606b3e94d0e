//! `fanout demo flows`: the nightly-jobs scenario. A DAG of six tasks with one fan-in (a task
//! after two) and one fan-out (a task that three depend on) runs through the engine and a worker
//! in this process, with commands that sleep for random durations. The demo prints the run's
//! Gantt chart and how much earlier than a cron timetable it finished, and checks its own result:
//! every task started once, none before its upstreams succeeded, the run ahead of the timetable.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::{bail, Context};
use fanout_flows::{
    signals::{RunRequested, TaskStarted, TaskSucceeded},
    Engine, EngineConfig, RunReport, SignalTopics, WorkerConfig,
};
use fanout_kafka::TopicRead;
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use fanout_schema_registry::{AvroSerde, RegistrySettings};
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;

/// Each task's slot on the timetable the flow replaces: its expected duration plus buffer.
const SLOT: &str = "4s";

/// The flow: (task, upstreams, duration range in ms).
const TASKS: [(&str, &[&str], (u64, u64)); 6] = [
    ("extract-orders", &[], (1_000, 3_000)),
    ("extract-users", &[], (300, 1_500)),
    ("join", &["extract-orders", "extract-users"], (500, 1_500)),
    ("daily-report", &["join"], (200, 1_000)),
    ("city-stats", &["join"], (200, 1_000)),
    ("export", &["join"], (200, 1_000)),
];

/// The flow file, with each task sleeping a random duration drawn from `seed`.
fn flow_file(seed: u64) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut text = "name = \"nightly\"\n".to_owned();
    for (task, after, (low, high)) in TASKS {
        let ms = rng.gen_range(low..=high);
        text.push_str(&format!(
            "[[tasks]]\nname = \"{task}\"\nafter = {after:?}\ncommand = [\"sh\", \"-c\", \"sleep {}.{:03}\"]\nexpect_within = \"{SLOT}\"\n",
            ms / 1_000,
            ms % 1_000
        ));
    }
    text
}

/// Runs the scenario against the broker at `bootstrap` and the registry at `registry`.
pub async fn run(
    bootstrap: &str,
    registry: &str,
    run: &str,
    seed: u64,
    workdir: &Path,
) -> anyhow::Result<()> {
    println!("Fanout demo, flows: the nightly jobs as a flow of six tasks (seed {seed})");
    let flows = workdir.join("flows");
    std::fs::create_dir_all(&flows)?;
    std::fs::write(flows.join("nightly.toml"), flow_file(seed))?;
    let kafka = fanout_config::KafkaSettings { bootstrap: bootstrap.to_owned(), ..Default::default() };
    let registry = RegistrySettings { urls: vec![registry.to_owned()], ..Default::default() };
    let config = EngineConfig {
        name: format!("fanout-flows-demo-{run}"),
        flows: flows.clone(),
        topic_prefix: format!("flow.demo-{run}"),
        partitions: 3,
        state_topic: format!("_fanout_flows.state.demo-{run}"),
        kafka: kafka.clone(),
        registry: registry.clone(),
        http: fanout_config::HttpSettings::on("127.0.0.1:0"),
        ..EngineConfig::default()
    };
    let topics = config.topics();
    let workers = format!("fanout-flow-workers-demo-{run}");
    let outcome = drive(&config, &topics, &workers, &kafka, &registry, run).await;
    cleanup(bootstrap, &config, &topics, &workers).await;
    outcome
}

async fn drive(
    config: &EngineConfig,
    topics: &SignalTopics,
    workers: &str,
    kafka: &fanout_config::KafkaSettings,
    registry: &RegistrySettings,
    run: &str,
) -> anyhow::Result<()> {
    let engine = Engine::start(config.clone()).await.context("starting the flow engine")?;
    let (stop_engine, engine_stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = tokio::spawn(engine.run(async move {
        let _ = engine_stopped.await;
    }));
    let flows = fanout_flows::load_flows(&config.flows)?;
    let flow = flows.get("nightly").context("the demo's flow")?.clone();
    let worker = WorkerConfig {
        group: workers.to_owned(),
        flows,
        topics: topics.clone(),
        concurrency: 4,
        worker: fanout_flows::default_worker_name(),
        kafka: kafka.clone(),
        registry: registry.clone(),
    };
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(fanout_flows::run_worker(worker, async move {
        let _ = worker_stopped.await;
    }));

    let mut publisher_config = PublisherConfig::new("fanout-demo");
    publisher_config.kafka = kafka.clone();
    publisher_config.registry = registry.clone();
    let publisher = Publisher::new(publisher_config)?;
    let run_key = format!("2026-11-30-{run}");
    let request = RunRequested {
        flow: "nightly".into(),
        run: run_key.clone(),
        retry_task: None,
        cascade: false,
        requested_by: "fanout demo".into(),
    };
    publisher.publish_with(&request, &PublishOptions::new().topic(&topics.requested)).await?;
    println!("run {run_key} requested; the engine starts each task the moment its upstreams are done");

    let serde = AvroSerde::from_settings(registry)?;
    let mut read = fanout_kafka::client_config(kafka);
    read.set("isolation.level", "read_committed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (started, succeeded) = loop {
        let started: Vec<TaskStarted> = decode_all(&serde, &read, &topics.started).await?;
        let succeeded: Vec<TaskSucceeded> = decode_all(&serde, &read, &topics.succeeded).await?;
        if succeeded.len() >= TASKS.len() {
            break (started, succeeded);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the run did not finish within 60 s: {} of {} tasks succeeded",
                succeeded.len(),
                TASKS.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // the next look, not a sync
    };
    let _ = stop_worker.send(());
    worker.await.context("the worker panicked")??;
    let _ = stop_engine.send(());
    engine.await.context("the engine panicked")??;

    let failed: Vec<fanout_flows::signals::TaskFailed> = decode_all(&serde, &read, &topics.failed).await?;
    let report = RunReport::new(&flow, &run_key, &started, &succeeded, &failed);
    println!();
    print!("{}", report.render(&flow, 60));
    check(&flow, &report, &started, &succeeded)?;
    println!("flows demo OK: every task started once, each the moment its upstreams were done");
    Ok(())
}

/// The demo's own check: each task started once, never before its upstreams succeeded, and the
/// run ahead of the timetable.
fn check(
    flow: &fanout_flows::Flow,
    report: &RunReport,
    started: &[TaskStarted],
    succeeded: &[TaskSucceeded],
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut starts: HashMap<&str, usize> = HashMap::new();
    for start in started {
        *starts.entry(start.task.as_str()).or_default() += 1;
    }
    let finished: HashMap<&str, i64> = succeeded.iter().map(|s| (s.task.as_str(), s.finished_at)).collect();
    for task in &flow.tasks {
        match starts.get(task.name.as_str()) {
            Some(1) => {}
            count => problems.push(format!("{} started {} times", task.name, count.copied().unwrap_or(0))),
        }
        let Some(start) = started.iter().find(|s| s.task == task.name) else { continue };
        for upstream in &task.after {
            match finished.get(upstream.as_str()) {
                Some(done) if *done <= start.started_at => {}
                _ => problems.push(format!("{} started before {upstream} succeeded", task.name)),
            }
        }
    }
    match (report.span(), report.timetable_end(flow)) {
        (Some((_, end)), Some(timetable)) if end < timetable => {
            println!("{:.1}s earlier than the timetable", (timetable - end) as f64 / 1000.0);
        }
        _ => problems.push("the run did not finish ahead of its timetable".into()),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the flows demo's check failed:\n  {}", problems.join("\n  "))
    }
}

async fn decode_all<T: fanout_core::Event>(
    serde: &AvroSerde,
    config: &ClientConfig,
    topic: &str,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for record in TopicRead::new(topic).read(config).await.with_context(|| format!("reading {topic}"))? {
        if let Some(payload) = record.payload {
            out.push(serde.decode::<T>(&payload).await?);
        }
    }
    Ok(out)
}

async fn cleanup(bootstrap: &str, config: &EngineConfig, topics: &SignalTopics, workers: &str) {
    let mut kafka = ClientConfig::new();
    kafka.set("bootstrap.servers", bootstrap);
    let names = [
        topics.requested.as_str(),
        topics.started.as_str(),
        topics.succeeded.as_str(),
        topics.failed.as_str(),
        topics.late.as_str(),
        config.state_topic.as_str(),
    ];
    if let Ok(Err(e)) =
        tokio::time::timeout(Duration::from_secs(15), fanout_kafka::delete_topics(&kafka, &names)).await
    {
        eprintln!("could not delete the flows demo's topics: {e}");
    }
    // The groups are empty once their members left; deleting them may take the coordinator a moment.
    for _ in 0..30 {
        let groups = [config.name.as_str(), workers];
        if fanout_kafka::delete_groups(&kafka, &groups).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("could not delete the flows demo's consumer groups");
}
