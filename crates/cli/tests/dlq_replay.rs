//! `fanout dlq list|show|replay` against the real broker, the built-in registry and PostgreSQL:
//! a consumer dead-letters one key while the others flow; the dead letter is listed and filtered
//! with the real binary; a dry run sends nothing; after the handler is fixed a replay applies the
//! effect exactly once, and a second replay of the same dead letter is a duplicate. A dead letter
//! that fails again returns to the dead-letter topic with its attempts extended. The list shows
//! when each dead letter was last replayed (`-` before, never for a dry run). A replay `--at` a
//! time goes through a scheduler running in this process and arrives then.

use fanout_testkit::wait_until;
use std::{
    process::Output,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context};
use chrono::SubsecRound;
use fanout_consumer::{
    async_trait, Consumer, ConsumerError, EventMeta, Handler, HandlerError, RegistryDecoder,
};
use fanout_events::{Category, PostPublished};
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use fanout_scheduler::{Scheduler, SchedulerConfig, SchedulerError};
use fanout_testkit::{unique_name, Kafka, Postgres, Registry, TestDatabase, TestTopic};
use serde_json::Value;
use sqlx::{AnyPool, Row};
use tokio::{sync::oneshot, task::JoinHandle};

type TestResult = anyhow::Result<()>;

/// The post whose events fail while the handler is "broken".
const BROKEN: i64 = 7;

/// Fails post [`BROKEN`] permanently while `broken` is set; otherwise records one effect row.
#[derive(Debug, Clone)]
struct Effects {
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl Handler for Effects {
    type Event = PostPublished;

    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut sqlx::AnyConnection,
    ) -> Result<(), HandlerError> {
        if event.post_id == BROKEN && self.broken.load(Ordering::SeqCst) {
            return Err(HandlerError::permanent(format!("post {} is broken", event.post_id)));
        }
        sqlx::query("INSERT INTO effects (event_id, post_id, attempt) VALUES ($1, $2, $3)")
            .bind(&meta.event_id)
            .bind(event.post_id)
            .bind(i64::from(meta.attempt))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// Broker, registry, database and a running consumer, with the main topic's events published.
struct Stack {
    kafka: Kafka,
    topic: TestTopic,
    registry: Registry,
    _db: TestDatabase,
    name: String,
    pool: AnyPool,
    broken: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ConsumerError>>,
    /// (post id, ce_id, offset in the main topic), in publish order.
    published: Vec<(i64, String, i64)>,
}

fn post(post_id: i64) -> PostPublished {
    PostPublished {
        post_id,
        user_id: post_id * 10,
        category: Category::Job,
        city: "Lisbon".into(),
        title: format!("post {post_id}"),
        published_at: 1_764_000_000_000,
    }
}

impl Stack {
    async fn start(prefix: &str) -> anyhow::Result<Self> {
        let kafka = Kafka::connect().await?;
        // One partition: the broken key sits between healthy keys of the same partition.
        let topic = kafka.topic(prefix, 1).await?;
        let registry = Registry::start(&kafka).await?;
        let db = Postgres::connect().await?.database().await?;
        let registry_settings = registry.settings();

        let mut config = fanout_testkit::consumer_config("dlq", &db.url());
        config.retry.attempts = 2;
        let name = config.name.clone();
        let broken = Arc::new(AtomicBool::new(true));
        let consumer = Consumer::builder(config)
            .decoder(RegistryDecoder::from_settings(&registry_settings)?)
            .handle_topic(topic.name(), Effects { broken: broken.clone() })
            .build()
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL, post_id BIGINT NOT NULL, \
             attempt BIGINT NOT NULL)",
        )
        .execute(consumer.pool())
        .await?;
        let pool = consumer.pool().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(consumer.run(async move {
            let _ = stopped.await;
        }));

        let publisher = Publisher::new(PublisherConfig {
            source: "dlq-test".into(),
            kafka: fanout_config::KafkaSettings {
                bootstrap: kafka.bootstrap().to_owned(),
                ..Default::default()
            },
            registry: registry_settings,
            ..PublisherConfig::new("dlq-test")
        })?;
        let mut published = Vec::new();
        let to = PublishOptions::new().topic(topic.name());
        for post_id in [1, BROKEN, 2, 3] {
            let delivery = publisher.publish_with(&post(post_id), &to).await?;
            published.push((post_id, delivery.event_id.to_string(), delivery.offset));
        }
        publisher.close(Duration::from_secs(10)).await?;
        Ok(Self { kafka, topic, registry, _db: db, name, pool, broken, stop: Some(stop), task, published })
    }

    fn broken_event(&self) -> anyhow::Result<(String, i64)> {
        self.published
            .iter()
            .find(|(post_id, _, _)| *post_id == BROKEN)
            .map(|(_, id, offset)| (id.clone(), *offset))
            .context("the broken post was published")
    }

    /// `fanout dlq <command> --consumer NAME --topic TOPIC --bootstrap B <args>`.
    async fn dlq(&self, command: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["dlq", command, "--consumer", &self.name, "--topic", self.topic.name()];
        all.extend(["--bootstrap", self.kafka.bootstrap()]);
        all.extend(args);
        fanout(&all).await
    }

    /// `dlq <command>` that must succeed; its JSON lines.
    async fn dlq_lines(&self, command: &str, args: &[&str]) -> anyhow::Result<(Vec<Value>, String)> {
        let out = self.dlq(command, args).await?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(out.status.success(), "fanout dlq {command} {args:?} failed: {stderr}");
        Ok((json_lines(&out.stdout)?, stderr))
    }

    async fn effects(&self, post_id: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM effects WHERE post_id = $1")
            .bind(post_id)
            .fetch_one(&self.pool)
            .await?
            .try_get::<i64, _>(0)?)
    }

    /// Waits until the healthy posts are applied and `count` dead letters of the broken post
    /// are listed.
    async fn wait_dead_letters(&self, count: usize) -> anyhow::Result<Vec<Value>> {
        wait_until(Duration::from_secs(60), "the healthy posts applied", || async {
            Ok(self.effects(1).await? == 1 && self.effects(2).await? == 1 && self.effects(3).await? == 1)
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Before the consumer created the dead-letter topic, `list` fails naming it.
            let out = self.dlq("list", &["--key", &BROKEN.to_string()]).await?;
            if out.status.success() {
                let lines = json_lines(&out.stdout)?;
                if lines.len() >= count {
                    return Ok(lines);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {count} dead letters; last list: {} / {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(mut self) -> TestResult {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.task).await???;
        self.kafka.delete_consumer(self.topic.name(), &self.name).await;
        self.registry.stop().await?;
        Ok(())
    }
}

/// `fanout-scheduler` running in this process on a schedule topic of its own.
struct InProcessScheduler {
    topic: TestTopic,
    group: String,
    stop: oneshot::Sender<()>,
    running: JoinHandle<Result<(), SchedulerError>>,
}

impl InProcessScheduler {
    async fn start(kafka: &Kafka) -> anyhow::Result<Self> {
        let topic = kafka.future_topic("dlq-at-schedule");
        let config = SchedulerConfig {
            name: unique_name("dlq-at-scheduler"),
            topic: topic.name().to_owned(),
            partitions: 3,
            window_secs: 10,
            kafka: fanout_config::KafkaSettings {
                bootstrap: kafka.bootstrap().to_owned(),
                ..Default::default()
            },
            http: fanout_config::HttpSettings::on("127.0.0.1:0"),
            ..SchedulerConfig::default()
        };
        let group = config.name.clone();
        let scheduler = Scheduler::start(config).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(scheduler.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self { topic, group, stop, running })
    }

    /// Stops it and deletes its dead-letter topic and group (the topic goes with its guard).
    async fn stop(self, kafka: &Kafka) -> TestResult {
        let _ = self.stop.send(());
        self.running.await??;
        kafka.delete_topic(&fanout_core::schedule::dead_letters(self.topic.name())).await?;
        let group = self.group.as_str();
        wait_until(Duration::from_secs(30), "the scheduler group gone", || async move {
            Ok(kafka.delete_groups(&[group]).await.is_ok())
        })
        .await
    }
}

async fn fanout(args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(args)
        .env("FANOUT_LOG", "error")
        .kill_on_drop(true)
        .output()
        .await?)
}

fn json_lines(stdout: &[u8]) -> anyhow::Result<Vec<Value>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l}")))
        .collect()
}

/// When a listed dead letter was last replayed.
fn replay_time(line: &Value) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let text = line["replayed"].as_str().with_context(|| format!("no replay time in {line}"))?;
    Ok(chrono::DateTime::parse_from_rfc3339(text).with_context(|| format!("not a time: {line}"))?.to_utc())
}

/// Records in `topic` now.
async fn records_in(kafka: &Kafka, topic: &str) -> anyhow::Result<usize> {
    Ok(kafka.read(topic).await?.len())
}

/// A counter of the default Prometheus registry (the consumer runs in this process).
fn consumed(consumer: &str, outcome: &str) -> f64 {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == "fanout_consumed_total")
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| {
            [("consumer", consumer), ("outcome", outcome)]
                .iter()
                .all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v))
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fixed_dead_letter_is_replayed_once_and_a_second_replay_is_a_duplicate() -> TestResult {
    let started = chrono::Utc::now();
    let stack = Stack::start("dlq-replay").await?;
    let (event_id, offset) = stack.broken_event()?;
    let key = BROKEN.to_string();

    // The broken event is dead-lettered while the healthy ones around it are applied.
    let dead = stack.wait_dead_letters(1).await?;
    ensure!(dead.len() == 1, "one dead letter: {dead:?}");
    let line = &dead[0];
    assert_eq!(line["key"], key.as_str());
    assert_eq!(line["ce_id"], event_id.as_str());
    assert_eq!(line["ce_type"], "post.published");
    assert_eq!(line["consumer"], stack.name.as_str());
    assert!(line["error"].as_str().is_some_and(|e| e.contains("post 7 is broken")), "{line}");
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["original_topic"], stack.topic.name());
    assert_eq!(line["original_partition"], 0);
    assert_eq!(line["original_offset"], offset);
    assert_eq!(line["dlq_partition"], 0);
    assert!(line["first_failure_time"].is_string() && line["last_failure_time"].is_string(), "{line}");
    assert!(line["replayed"].is_null(), "not replayed yet: {line}");
    assert_eq!(stack.effects(BROKEN).await?, 0);

    // Filters: each one that matches finds it, each one that does not prints nothing.
    let since = started.to_rfc3339();
    for args in [
        vec!["--error", "IS BROKEN"],
        vec!["--event-id", event_id.as_str()],
        vec!["--since", since.as_str(), "--until", "2999-01-01T00:00:00Z"],
        vec!["--max", "1"],
    ] {
        let (lines, _) = stack.dlq_lines("list", &args).await?;
        assert_eq!(lines.len(), 1, "{args:?} matches the dead letter");
    }
    for args in [
        vec!["--error", "timeout"],
        vec!["--key", "8"],
        vec!["--event-id", "no-such-event"],
        vec!["--since", "2999-01-01T00:00:00Z"],
        vec!["--until", "2000-01-01T00:00:00Z"],
        vec!["--max", "0"],
    ] {
        let (lines, _) = stack.dlq_lines("list", &args).await?;
        assert!(lines.is_empty(), "{args:?} matches nothing: {lines:?}");
    }

    // Show: every header, the payload decoded through the registry.
    let registry = stack.registry.url();
    let (shown, _) = stack.dlq_lines("show", &["--key", &key, "--registry", registry]).await?;
    ensure!(shown.len() == 1, "show prints the dead letter: {shown:?}");
    assert_eq!(shown[0]["value"]["post_id"], BROKEN);
    assert_eq!(shown[0]["headers"]["ce_id"], event_id.as_str());
    assert_eq!(shown[0]["headers"]["ce_source"], "dlq-test");
    assert_eq!(shown[0]["headers"]["fanout_attempts"], "1");

    // A dry run sends nothing.
    let retry = fanout_core::topics::retry(stack.topic.name(), &stack.name);
    let retry_before = records_in(&stack.kafka, &retry).await?;
    let main_before = records_in(&stack.kafka, stack.topic.name()).await?;
    let (planned, stderr) = stack.dlq_lines("replay", &["--key", &key, "--dry-run"]).await?;
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0]["replay_to"], retry.as_str());
    assert!(stderr.contains("matched 1, replayed 0"), "{stderr}");
    assert_eq!(records_in(&stack.kafka, &retry).await?, retry_before, "the dry run sent nothing");
    let (listed, _) = stack.dlq_lines("list", &[]).await?;
    assert!(listed[0]["replayed"].is_null(), "the dry run recorded nothing: {listed:?}");

    // The handler is fixed; the replay applies the effect exactly once, through the retry topic
    // (the main topic, read by every other consumer group, is untouched).
    stack.broken.store(false, Ordering::SeqCst);
    let before_replay = chrono::Utc::now();
    let (replayed, stderr) = stack.dlq_lines("replay", &["--key", &key]).await?;
    assert!(stderr.contains("matched 1, replayed 1, failed 0"), "{stderr}");
    assert_eq!(replayed[0]["replayed_to"]["topic"], retry.as_str());
    // The list now says when it was replayed, and show where to and by which run.
    let (listed, _) = stack.dlq_lines("list", &[]).await?;
    let first_replay = replay_time(&listed[0])?;
    // Recorded to the millisecond.
    let between = before_replay.timestamp_millis()..=chrono::Utc::now().timestamp_millis();
    assert!(between.contains(&first_replay.timestamp_millis()), "{} not in {between:?}", listed[0]);
    assert_eq!(replayed[0]["replayed"], listed[0]["replayed"], "the replay prints what it recorded");
    let (shown, _) = stack.dlq_lines("show", &["--registry", registry]).await?;
    assert_eq!(shown[0]["replayed"], listed[0]["replayed"]);
    assert_eq!(shown[0]["last_replay"]["replayed_to"], replayed[0]["replayed_to"]);
    assert_eq!(shown[0]["last_replay"]["ce_id"], event_id.as_str());
    wait_until(Duration::from_secs(30), "the replayed event applied", || async {
        Ok(stack.effects(BROKEN).await? >= 1)
    })
    .await?;
    assert_eq!(records_in(&stack.kafka, &retry).await?, retry_before + 1);
    assert_eq!(records_in(&stack.kafka, stack.topic.name()).await?, main_before);
    let (applied_id, attempt): (String, i64) = {
        let row = sqlx::query("SELECT event_id, attempt FROM effects WHERE post_id = $1")
            .bind(BROKEN)
            .fetch_one(&stack.pool)
            .await?;
        (row.try_get(0)?, row.try_get(1)?)
    };
    assert_eq!(applied_id, event_id, "applied under its original ce_id");
    assert_eq!(attempt, 2, "the attempt history carried over");

    // The same dead letter replayed again is counted as a duplicate and not applied twice.
    let duplicates_before = consumed(&stack.name, "duplicate");
    let (_, stderr) = stack.dlq_lines("replay", &["--event-id", &event_id]).await?;
    assert!(stderr.contains("matched 1, replayed 1, failed 0"), "{stderr}");
    wait_until(Duration::from_secs(30), "the second replay counted as a duplicate", || async {
        Ok(consumed(&stack.name, "duplicate") > duplicates_before)
    })
    .await?;
    assert_eq!(stack.effects(BROKEN).await?, 1, "applied exactly once");
    assert_eq!(
        sqlx::query("SELECT COUNT(*) FROM effects").fetch_one(&stack.pool).await?.try_get::<i64, _>(0)?,
        4,
        "one effect per published event"
    );
    let (still, _) = stack.dlq_lines("list", &[]).await?;
    assert_eq!(still.len(), 1, "nothing new was dead-lettered");
    assert!(replay_time(&still[0])? >= first_replay, "the latest replay is shown: {}", still[0]);
    assert_ne!(
        shown[0]["last_replay"]["run"],
        stack.dlq_lines("show", &["--registry", registry]).await?.0[0]["last_replay"]["run"],
        "the second run's record replaced the first's"
    );

    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_dead_letter_that_fails_again_returns_with_its_history() -> TestResult {
    let stack = Stack::start("dlq-refail").await?;
    let (event_id, offset) = stack.broken_event()?;
    let key = BROKEN.to_string();
    let first = stack.wait_dead_letters(1).await?;

    // Still broken: the replay fails again and comes back.
    let (_, stderr) = stack.dlq_lines("replay", &["--key", &key, "--rate", "5"]).await?;
    assert!(stderr.contains("matched 1, replayed 1, failed 0"), "{stderr}");
    let dead = stack.wait_dead_letters(2).await?;
    ensure!(dead.len() == 2, "exactly two dead letters: {dead:?}");
    let again = &dead[1];
    assert_eq!(again["ce_id"], event_id.as_str());
    assert_eq!(again["attempts"], 2, "{again}");
    assert_eq!(again["original_offset"], offset);
    assert_eq!(again["original_topic"], stack.topic.name());
    assert_eq!(again["first_failure_time"], first[0]["first_failure_time"], "the first failure is kept");
    assert!(
        again["last_failure_time"].as_str() >= first[0]["last_failure_time"].as_str(),
        "{again} after {}",
        first[0]
    );
    assert_eq!(stack.effects(BROKEN).await?, 0);
    assert!(dead[0]["replayed"].is_string(), "the first was replayed: {}", dead[0]);
    assert!(dead[1]["replayed"].is_null(), "its return was not: {}", dead[1]);

    // Both dead letters match `--key`; `--since` the first one's failure selects only the new
    // one, so an operator can replay just the latest.
    let since = again["last_failure_time"].as_str().context("a time")?.to_owned();
    let (latest, _) = stack.dlq_lines("list", &["--key", &key, "--since", &since]).await?;
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0]["attempts"], 2);

    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_at_a_time_goes_through_the_scheduler_and_is_applied_then() -> TestResult {
    let stack = Stack::start("dlq-at").await?;
    let (event_id, _) = stack.broken_event()?;
    let key = BROKEN.to_string();
    stack.wait_dead_letters(1).await?;
    let scheduler = InProcessScheduler::start(&stack.kafka).await?;
    stack.broken.store(false, Ordering::SeqCst);

    let outcome = async {
        let at = (chrono::Utc::now() + chrono::Duration::seconds(3)).trunc_subsecs(3);
        let at_text = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let schedule_topic = scheduler.topic.name();
        let args = ["--key", key.as_str(), "--at", at_text.as_str(), "--schedule-topic", schedule_topic];
        let (replayed, stderr) = stack.dlq_lines("replay", &args).await?;
        let sent_at = chrono::Utc::now();
        ensure!(stderr.contains("matched 1, replayed 1, failed 0"), "{stderr}");
        ensure!(stderr.contains(&format!("through {schedule_topic} at {at_text}")), "{stderr}");
        ensure!(replayed.len() == 1, "one replay: {replayed:?}");
        ensure!(replayed[0]["replayed_to"]["topic"] == schedule_topic, "to the schedule topic: {replayed:?}");
        ensure!(replayed[0]["replay_scheduled_for"] == at_text.as_str(), "for {at_text}: {replayed:?}");
        if sent_at < at {
            ensure!(stack.effects(BROKEN).await? == 0, "applied before its time");
        }

        // The replay log records it as scheduled for that time, with its schedule entry.
        let (listed, _) = stack.dlq_lines("list", &[]).await?;
        ensure!(listed[0]["replay_scheduled_for"] == at_text.as_str(), "recorded for {at_text}: {listed:?}");
        ensure!(listed[0]["replayed"].is_string(), "recorded as replayed: {listed:?}");
        let (shown, _) = stack.dlq_lines("show", &["--registry", stack.registry.url()]).await?;
        ensure!(
            shown[0]["last_replay"]["schedule_id"] == replayed[0]["schedule_id"]
                && replayed[0]["schedule_id"].is_string(),
            "the schedule entry recorded: {shown:?}"
        );
        ensure!(shown[0]["last_replay"]["replayed_to"]["topic"] == schedule_topic, "{shown:?}");

        // The scheduler delivers it to the retry topic at its time; applied once, then.
        wait_until(Duration::from_secs(60), "the scheduled replay applied", || async {
            Ok(stack.effects(BROKEN).await? == 1)
        })
        .await?;
        let retry = fanout_core::topics::retry(stack.topic.name(), &stack.name);
        let delivered = stack.kafka.read(&retry).await?;
        let arrived = delivered
            .iter()
            .find(|r| r.header("ce_id") == Some(event_id.as_str()))
            .context("the replay in the retry topic")?;
        ensure!(
            arrived.header_i64(fanout_core::schedule::SCHEDULED_FOR) == Some(at.timestamp_millis()),
            "delivered by the scheduler, for {at_text}: {arrived:?}"
        );
        ensure!(
            arrived.timestamp_ms.is_some_and(|t| t >= at.timestamp_millis()),
            "delivered early: {arrived:?}"
        );
        ensure!(stack.effects(BROKEN).await? == 1, "applied exactly once");
        anyhow::Ok(())
    }
    .await;
    scheduler.stop(&stack.kafka).await?;
    stack.stop().await?;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_an_empty_dead_letter_topic_returns_at_once() -> TestResult {
    let kafka = Kafka::connect().await?;
    let consumer = unique_name("dlq-none");

    // No such consumer on this topic: the missing topic is named.
    let out = fanout(&["dlq", "list", "--consumer", &consumer, "--bootstrap", kafka.bootstrap()]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("post.published.{consumer}.dlq does not exist")), "{stderr}");

    // An unparseable time names the option.
    let out = fanout(&["dlq", "replay", "--consumer", &consumer, "--since", "yesterday"]).await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));

    // No broker: a clear error within the timeout, not a hang.
    let out =
        fanout(&["dlq", "list", "--consumer", &consumer, "--bootstrap", "127.0.0.1:1", "--timeout", "2"])
            .await?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no Kafka broker at 127.0.0.1:1 answered within 2s"), "{stderr}");

    // An empty dead-letter topic: nothing listed, nothing replayed, no waiting for records.
    let topic = unique_name("dlq-empty");
    let dlq = fanout_core::topics::dead_letter(&topic, &consumer);
    let retry = fanout_core::topics::retry(&topic, &consumer);
    kafka.create_topic(&dlq, 2).await?;
    kafka.create_topic(&retry, 2).await?;
    let started = Instant::now();
    let common =
        ["--consumer", consumer.as_str(), "--topic", topic.as_str(), "--bootstrap", kafka.bootstrap()];
    let list = fanout(&[&["dlq", "list"][..], &common[..]].concat()).await?;
    let replay = fanout(&[&["dlq", "replay"][..], &common[..]].concat()).await?;
    let elapsed = started.elapsed();
    // Nothing replayed, nothing recorded: the replays topic was not created.
    let replays = fanout_core::topics::dead_letter_replays(&topic, &consumer);
    let (client, probe) = (kafka.client_config(), replays.clone());
    let recorded = tokio::task::spawn_blocking(move || {
        fanout_kafka::topic_partitions(&client, &probe, Duration::from_secs(5))
    })
    .await?;
    for name in [&dlq, &retry, &replays] {
        kafka.delete_topic(name).await?;
    }
    assert!(matches!(recorded, Err(fanout_kafka::ReadError::UnknownTopic { .. })), "{recorded:?}");
    assert!(list.status.success() && list.stdout.is_empty(), "{list:?}");
    assert!(replay.status.success() && replay.stdout.is_empty(), "{replay:?}");
    assert!(String::from_utf8_lossy(&replay.stderr).contains("matched 0, replayed 0"));
    assert!(elapsed < Duration::from_secs(8), "an empty topic returns at once ({elapsed:?})");
    Ok(())
}
