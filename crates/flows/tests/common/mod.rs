//! What the flow tests share: an engine in process on topics of its own, committed reads, the
//! wait for the engine to have processed every signal, clean-up.
#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use fanout_flows::{
    signals::{TaskStarted, TaskSucceeded},
    Engine, EngineConfig, EngineError, SignalTopics,
};
use fanout_kafka::TopicRead;
use fanout_producer::{PublishOptions, Publisher};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{service::Stack, unique_name, wait_until, Kafka};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Offset, TopicPartitionList,
};
use tokio::{sync::oneshot, task::JoinHandle};

/// Every committed `TaskStarted` on `topic`.
pub async fn starts(kafka: &Kafka, topic: &str, serde: &AvroSerde) -> anyhow::Result<Vec<TaskStarted>> {
    let mut config = kafka.client_config();
    config.set("isolation.level", "read_committed");
    let records = TopicRead::new(topic).timeout(Duration::from_secs(30)).read(&config).await?;
    let mut starts = Vec::with_capacity(records.len());
    for record in records {
        let payload = record.payload.context("a TaskStarted without payload")?;
        starts.push(serde.decode::<TaskStarted>(&payload).await?);
    }
    Ok(starts)
}

/// An engine running in this process on signal and state topics of its own (3 partitions),
/// with the flow file `flow` written to a temporary directory.
pub struct InProcess {
    pub config: EngineConfig,
    _dir: tempfile::TempDir,
    /// Where its `/metrics` is served (the process's metrics: one engine test per binary).
    http: SocketAddr,
    stop: oneshot::Sender<()>,
    running: JoinHandle<Result<(), EngineError>>,
}

impl InProcess {
    pub async fn start(stack: &Stack, flow: &str) -> anyhow::Result<Self> {
        Self::start_with(stack, flow, &unique_name("no-scheduler")).await
    }

    /// One whose retries and alarms go through the schedule topic `schedule_topic`.
    pub async fn start_with(stack: &Stack, flow: &str, schedule_topic: &str) -> anyhow::Result<Self> {
        Self::start_tuned(stack, flow, |config| config.schedule_topic = schedule_topic.to_owned()).await
    }

    /// One whose configuration `tune` changes first.
    pub async fn start_tuned(
        stack: &Stack,
        flow: &str,
        tune: impl FnOnce(&mut EngineConfig),
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let flows = dir.path().join("flow.toml");
        std::fs::write(&flows, flow)?;
        let config = EngineConfig {
            name: unique_name("flow-engine"),
            flows,
            topic_prefix: unique_name("flows"),
            partitions: 3,
            state_topic: unique_name("flow-state"),
            schedule_topic: unique_name("no-scheduler"),
            kafka: fanout_config::KafkaSettings {
                bootstrap: stack.kafka.bootstrap().to_owned(),
                ..Default::default()
            },
            registry: fanout_schema_registry::RegistrySettings {
                urls: vec![stack.registry_url().to_owned()],
                ..Default::default()
            },
            http: fanout_config::HttpSettings::on("127.0.0.1:0"),
            ..EngineConfig::default()
        };
        let mut config = config;
        tune(&mut config);
        let (http, stop, running) = run(&config).await?;
        Ok(Self { config, _dir: dir, http, stop, running })
    }

    /// Runs a paused engine again on its topics and group: it restores the runs from the state
    /// topic and reads on from the offsets committed.
    pub async fn resume(self) -> anyhow::Result<Self> {
        let (http, stop, running) = run(&self.config).await?;
        Ok(Self { config: self.config, _dir: self._dir, http, stop, running })
    }

    /// The value of one series of `/metrics` (`name`, or `name{label="value"}`); 0 when absent.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let (_, text) = fanout_testkit::service::get_text(&format!("http://{}/metrics", self.http)).await?;
        let value = text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '));
        Ok(value.map(str::parse).transpose()?.unwrap_or(0.0))
    }

    /// Waits until every series has its value (metrics change right after a commit, which the
    /// test may see first).
    pub async fn wait_metrics(&self, expected: &[(&str, f64)]) -> anyhow::Result<()> {
        let waited = wait_until(Duration::from_secs(30), "the engine's metrics", || async {
            for (series, value) in expected {
                if self.metric(series).await? != *value {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await;
        if waited.is_err() {
            let mut seen = Vec::new();
            for (series, _) in expected {
                seen.push((*series, self.metric(series).await?));
            }
            anyhow::bail!("the engine's metrics read {seen:?}, not {expected:?}");
        }
        Ok(())
    }

    /// Waits until the engine has committed every signal written so far.
    pub async fn wait_caught_up(&self, kafka: &Kafka) -> anyhow::Result<()> {
        wait_until(Duration::from_secs(60), "the engine to process every signal", || async {
            caught_up(kafka, &self.config).await
        })
        .await
    }

    /// Waits until the engine has taken its place on every trigger topic (its starting
    /// position committed): records written from then on start runs.
    pub async fn wait_triggers_positioned(&self, kafka: &Kafka) -> anyhow::Result<()> {
        let (group, topics) = (self.config.triggers_group(), trigger_topics(&self.config)?);
        wait_until(Duration::from_secs(60), "the engine's place on the trigger topics", || async {
            Ok(committed(kafka, &group, &topics)?
                .elements()
                .iter()
                .all(|e| matches!(e.offset(), Offset::Offset(_))))
        })
        .await
    }

    /// Stops the engine but keeps its topics, flow file and names, for an engine run otherwise.
    pub async fn pause(self) -> anyhow::Result<Self> {
        let _ = self.stop.send(());
        self.running.await??;
        let (stop, _) = oneshot::channel::<()>();
        Ok(Self {
            config: self.config,
            _dir: self._dir,
            http: self.http,
            stop,
            running: tokio::spawn(async { Ok(()) }),
        })
    }

    /// Stops it and deletes its topics and group.
    pub async fn stop(self, kafka: &Kafka) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.running.await??;
        let topics = self.config.topics();
        let state = &self.config.state_topic;
        for name in
            [&topics.requested, &topics.started, &topics.succeeded, &topics.failed, &topics.late, state]
        {
            kafka.delete_topic(name).await?;
        }
        let mut groups = vec![self.config.name.clone()];
        if !trigger_topics(&self.config)?.is_empty() {
            groups.push(self.config.triggers_group());
        }
        for group in &groups {
            wait_until(Duration::from_secs(30), "the engine's groups to go", || async {
                Ok(kafka.delete_groups(&[group]).await.is_ok())
            })
            .await?;
        }
        Ok(())
    }
}

/// An engine running in the background until the sender is used or dropped, and where its HTTP
/// endpoint is.
type Running = (SocketAddr, oneshot::Sender<()>, JoinHandle<Result<(), EngineError>>);

/// Starts an engine and runs it in the background.
async fn run(config: &EngineConfig) -> anyhow::Result<Running> {
    let engine = Engine::start(config.clone()).await?;
    let http = engine.http_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(engine.run(async move {
        let _ = stopped.await;
    }));
    Ok((http, stop, running))
}

/// The flows' trigger topics.
fn trigger_topics(engine: &EngineConfig) -> anyhow::Result<Vec<String>> {
    let flows = fanout_flows::load_flows(&engine.flows)?;
    Ok(flows
        .values()
        .filter_map(|flow| match &flow.start {
            fanout_flows::Start::Topic(topic) => Some(topic.clone()),
            _ => None,
        })
        .collect())
}

/// `group`'s committed offsets in every partition of `topics`.
fn committed(kafka: &Kafka, group: &str, topics: &[String]) -> anyhow::Result<TopicPartitionList> {
    let mut config = kafka.client_config();
    config.set("group.id", group).set("isolation.level", "read_committed");
    let consumer: BaseConsumer = config.create()?;
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        for partition in fanout_kafka::topic_partitions(&config, topic, Duration::from_secs(10))? {
            wanted.add_partition(topic, partition);
        }
    }
    Ok(consumer.committed_offsets(wanted, Duration::from_secs(10))?)
}

/// True once the trigger topics' records are forwarded, and then the engine's group has
/// committed every input signal up to the topics' ends.
async fn caught_up(kafka: &Kafka, engine: &EngineConfig) -> anyhow::Result<bool> {
    let topics = engine.topics();
    let signals =
        [topics.requested.clone(), topics.succeeded.clone(), topics.failed.clone(), topics.late.clone()];
    // The triggers first: what they forward lands in the signal topics.
    for (group, topics) in
        [(engine.triggers_group(), trigger_topics(engine)?), (engine.name.clone(), signals.to_vec())]
    {
        if topics.is_empty() {
            continue;
        }
        // Past the committed offset there may be transaction markers, never a record.
        for element in committed(kafka, &group, &topics)?.elements() {
            let from = match element.offset() {
                Offset::Offset(at) => at,
                _ => 0,
            };
            let read = TopicRead::new(element.topic()).partitions([element.partition()]).from_offset(from);
            let mut read_config = kafka.client_config();
            read_config.set("isolation.level", "read_committed");
            if !read.read(&read_config).await?.is_empty() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The test's workers: they answer every start seen with a success.
pub struct TestWorkers {
    kafka: Kafka,
    serde: AvroSerde,
    publisher: Publisher,
    topics: SignalTopics,
    reported: HashSet<(String, String, i32)>,
    /// When each (run, task)'s success was reported, Unix ms.
    pub finished_at: HashMap<(String, String), i64>,
}

impl TestWorkers {
    pub fn new(stack: &Stack, topics: &SignalTopics) -> anyhow::Result<Self> {
        Ok(Self {
            kafka: stack.kafka.clone(),
            serde: AvroSerde::from_urls(&[stack.registry_url()])?,
            publisher: Publisher::new(stack.publisher_config("flow-test-worker"))?,
            topics: topics.clone(),
            reported: HashSet::new(),
            finished_at: HashMap::new(),
        })
    }

    /// One look: reports a success for every start not answered yet (a third of them twice and
    /// each batch in reverse order when `unruly`); how many starts there are.
    pub async fn answer(&mut self, round: usize, unruly: bool) -> anyhow::Result<usize> {
        self.answer_where(round, unruly, |_| true).await
    }

    /// One look: reports a success for every start not answered yet that `only` accepts.
    pub async fn answer_only(&mut self, only: impl Fn(&TaskStarted) -> bool) -> anyhow::Result<usize> {
        self.answer_where(0, false, only).await
    }

    async fn answer_where(
        &mut self,
        round: usize,
        unruly: bool,
        only: impl Fn(&TaskStarted) -> bool,
    ) -> anyhow::Result<usize> {
        let seen = starts(&self.kafka, &self.topics.started, &self.serde).await?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let mut batch = Vec::new();
        for start in seen.iter().filter(|start| only(start)) {
            if self.reported.insert((start.run.clone(), start.task.clone(), start.attempt)) {
                self.finished_at.insert((start.run.clone(), start.task.clone()), now);
                batch.push(TaskSucceeded {
                    flow: start.flow.clone(),
                    run: start.run.clone(),
                    task: start.task.clone(),
                    attempt: start.attempt,
                    started_at: now,
                    finished_at: now,
                    worker: "test".into(),
                    output: None,
                });
            }
        }
        if unruly {
            batch.reverse();
            let twice: Vec<TaskSucceeded> = batch
                .iter()
                .enumerate()
                .filter(|(n, _)| (n + round).is_multiple_of(3))
                .map(|(_, s)| s.clone())
                .collect();
            batch.extend(twice);
        }
        let succeeded = PublishOptions::new().topic(&self.topics.succeeded);
        for sent in self.publisher.publish_all(&batch, &succeeded).await {
            sent?;
        }
        Ok(seen.len())
    }

    /// Answers until `expected` starts were seen, or fails after `limit`.
    pub async fn answer_until(
        &mut self,
        expected: usize,
        limit: Duration,
        unruly: bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        for round in 0.. {
            let seen = self.answer(round, unruly).await?;
            if seen >= expected {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {seen} of {expected} tasks started within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await; // the next look, not a sync
        }
        Ok(())
    }
}

/// A worker running in this process for an engine's flows, in a group of its own.
pub struct InProcessWorker {
    pub group: String,
    stop: oneshot::Sender<()>,
    running: JoinHandle<Result<(), fanout_flows::WorkerError>>,
}

impl InProcessWorker {
    pub fn start(engine: &InProcess, concurrency: usize) -> anyhow::Result<Self> {
        let group = unique_name("flow-workers");
        let config = fanout_flows::WorkerConfig {
            group: group.clone(),
            flows: fanout_flows::load_flows(&engine.config.flows)?,
            topics: engine.config.topics(),
            concurrency,
            worker: "test-worker".into(),
            kafka: engine.config.kafka.clone(),
            registry: engine.config.registry.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(fanout_flows::run_worker(config, async move {
            let _ = stopped.await;
        }));
        Ok(Self { group, stop, running })
    }

    /// Stops it (its tasks finish first) and deletes its group.
    pub async fn stop(self, kafka: &Kafka) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.running.await??;
        wait_until(Duration::from_secs(30), "the worker group to go", || async {
            Ok(kafka.delete_groups(&[&self.group]).await.is_ok())
        })
        .await
    }
}
