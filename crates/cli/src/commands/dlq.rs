//! `fanout dlq list|show|replay --consumer NAME`: a consumer's dead letters, inspected and
//! redriven.
//!
//! All three read `<topic>.<consumer>.dlq` from its oldest retained record up to the end it had
//! when the command started (the partitions' high watermarks) and stop there: dead letters
//! arriving meanwhile are left for the next run, and an empty topic returns at once. A missing
//! dead-letter topic is an error naming it (the consumer creates it when it starts, so a missing
//! one means a wrong `--consumer`/`--topic`, not "no dead letters").
//!
//! `replay` republishes each selected dead letter to the consumer's own retry topic
//! (`<topic>.<consumer>.retry`), due at once, built by [`DeadLetter::replay`] so the runner
//! resumes it like any retry: only that consumer sees it again, the original key, payload and
//! `ce_*` headers are kept (an event already applied is counted as a duplicate, not applied
//! twice), and its attempt history carries on (failing again sends it back to the dead-letter
//! topic with the attempts extended). Replays are never removed from the dead-letter topic; select
//! them with the filters instead (`--since` a time after the last replay, `--event-id`).
//!
//! `replay --at TIME` (or `--after 10m`) replays later instead: each replay, the same record, is
//! written to the schedule topic as an entry addressed to the retry topic
//! ([`fanout_core::schedule::entry`], as `fanout publish --at` writes), and `fanout-scheduler`
//! delivers it then; until then `fanout schedule list` shows it and `fanout schedule cancel`
//! stops it. Its not-before time is the scheduled time too, so the consumer would not run it
//! earlier even if it arrived earlier.
//!
//! Each replay, once acknowledged, is recorded in `<topic>.<consumer>.dlq.replays` (see
//! [`replays`]); `list`, `show` and `replay` print the latest replay's time of each dead letter
//! in `replayed` (null for never), and for a replay at a later time, the time it is scheduled for
//! in `replay_scheduled_for`. A dry run records nothing.

mod replays;

use std::{
    ops::ControlFlow,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use clap::{Args, Subcommand};
use fanout_consumer::{DeadLetter, Replay};
use fanout_core::{schedule, topics};
use fanout_kafka::{Delivered, ProduceError, ProducerSettings, ReadError, Record, RecordProducer, TopicRead};
use fanout_schema_registry::AvroSerde;
use rdkafka::ClientConfig;
use replays::{Landed, Mark};
use serde_json::{json, Map, Value};

use super::connection::Connection;

/// Inspect and redrive a consumer's dead letters (`<topic>.<consumer>.dlq`).
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One JSON line per matching dead letter: position, key, event id and type, error, attempts,
    /// original position, first and last failure time, and when it was last replayed (null: never).
    List(Selection),
    /// Like `list`, plus every header and the payload decoded through the registry.
    Show(ShowArgs),
    /// Republish matching dead letters to the consumer's own retry topic, due at once (or at
    /// `--at`/`--after`, through `fanout-scheduler`).
    Replay(ReplayArgs),
}

impl DlqCommand {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        let selection = match &self {
            Self::List(selection) => selection,
            Self::Show(args) => &args.selection,
            Self::Replay(args) => &args.selection,
        };
        // Refused credentials fail here, by name, not as a metadata timeout further on.
        selection.connection.connect_within(selection.timeout()).await?;
        match self {
            Self::List(selection) => list(selection).await,
            Self::Show(args) => args.run().await,
            Self::Replay(args) => args.run().await,
        }
    }
}

/// Which dead letters: the consumer and topic, then filters that must all hold.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// The consumer (its `name`, which is also its group) whose dead letters to read.
    #[arg(long)]
    consumer: String,
    /// The topic the events were published to.
    #[arg(long, default_value = fanout_events::topics::POST_PUBLISHED)]
    topic: String,
    /// Only dead letters whose last failure is at or after this time (RFC 3339, e.g.
    /// 2026-01-02T03:04:05Z). Records without the header use their Kafka timestamp.
    #[arg(long, value_parser = super::parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only dead letters whose last failure is at or before this time (RFC 3339).
    #[arg(long, value_parser = super::parse_time)]
    until: Option<DateTime<Utc>>,
    /// Only dead letters whose error text contains this (case-insensitive).
    #[arg(long)]
    error: Option<String>,
    /// Only dead letters with exactly this key (the aggregate id, as text).
    #[arg(long)]
    key: Option<String>,
    /// Only dead letters of this event id (`ce_id`).
    #[arg(long)]
    event_id: Option<String>,
    /// Stop after this many matching dead letters.
    #[arg(long)]
    max: Option<usize>,
    #[command(flatten)]
    connection: Connection,
    /// Seconds to wait for the cluster to answer, and at most between two records while reading.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// `fanout dlq show`: the selection, and the registry the payloads are decoded through.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    selection: Selection,
}

/// `fanout dlq replay`: the selection, and how to send.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    selection: Selection,
    /// Print what would be replayed and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send at most this many events per second (the consumer's handler may call a dependency
    /// that just recovered; a burst of redriven events should not knock it over again).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Replay at this time (RFC 3339) instead of now: each replay is written to the schedule
    /// topic, and `fanout-scheduler` delivers it to the retry topic then.
    #[arg(long, value_parser = super::parse_time, conflicts_with = "after")]
    at: Option<DateTime<Utc>>,
    /// Replay after this long (`90s`, `10m`, `2h`) instead of now, through `fanout-scheduler`.
    #[arg(long, value_parser = super::parse_duration)]
    after: Option<Duration>,
    /// The schedule topic `fanout-scheduler` reads (with `--at`/`--after`).
    #[arg(long, default_value = schedule::TOPIC)]
    schedule_topic: String,
}

/// A replay as it is sent: to the retry topic, or (replayed later) as a schedule entry
/// addressed to it.
#[derive(Debug)]
struct Outgoing {
    replay: Replay,
    /// For a replay at a later time: its schedule entry, and the schedule topic it goes to.
    entry: Option<schedule::Entry>,
    schedule_topic: Option<String>,
}

impl Outgoing {
    /// Where it is sent.
    fn topic(&self) -> &str {
        self.schedule_topic.as_deref().unwrap_or(&self.replay.topic)
    }
}

/// A dead letter and where it is in the dead-letter topic.
#[derive(Debug)]
struct Found {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    letter: DeadLetter,
    /// Its latest recorded replay.
    replayed: Option<Mark>,
}

impl Found {
    /// When it was dead-lettered: the runtime's last failure time, else the record's timestamp.
    fn time(&self) -> Option<DateTime<Utc>> {
        self.letter.last_failure.or_else(|| self.timestamp_ms.and_then(DateTime::from_timestamp_millis))
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("must be a number of events per second greater than 0".to_owned()),
    }
}

fn rfc3339(time: Option<DateTime<Utc>>) -> Value {
    time.map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true))).unwrap_or(Value::Null)
}

fn text(bytes: Option<&[u8]>) -> Value {
    bytes.map(|b| Value::String(String::from_utf8_lossy(b).into_owned())).unwrap_or(Value::Null)
}

impl Selection {
    fn dlq_topic(&self) -> String {
        topics::dead_letter(&self.topic, &self.consumer)
    }

    fn retry_topic(&self) -> String {
        topics::retry(&self.topic, &self.consumer)
    }

    fn replays_topic(&self) -> String {
        topics::dead_letter_replays(&self.topic, &self.consumer)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    fn matches(&self, found: &Found) -> bool {
        let letter = &found.letter;
        let time = found.time();
        if self.since.is_some_and(|since| time.is_none_or(|t| t < since)) {
            return false;
        }
        if self.until.is_some_and(|until| time.is_none_or(|t| t > until)) {
            return false;
        }
        if let Some(needle) = &self.error {
            let needle = needle.to_lowercase();
            if !letter.error.as_deref().is_some_and(|e| e.to_lowercase().contains(&needle)) {
                return false;
            }
        }
        if let Some(key) = &self.key {
            if letter.key.as_deref() != Some(key.as_bytes()) {
                return false;
            }
        }
        if let Some(id) = &self.event_id {
            if letter.event_id.as_deref() != Some(id.as_str()) {
                return false;
            }
        }
        true
    }

    /// The summary line of one dead letter, as `list` prints it.
    fn line(&self, found: &Found) -> Value {
        let letter = &found.letter;
        json!({
            "dlq_topic": self.dlq_topic(),
            "dlq_partition": found.partition,
            "dlq_offset": found.offset,
            "key": text(letter.key.as_deref()),
            "ce_id": letter.event_id,
            "ce_type": letter.event_type,
            "consumer": letter.consumer,
            "error": letter.error,
            "attempts": letter.attempts,
            "original_topic": letter.original_topic,
            "original_partition": letter.original_partition,
            "original_offset": letter.original_offset,
            "first_failure_time": rfc3339(letter.first_failure),
            "last_failure_time": rfc3339(letter.last_failure),
            "replayed": Mark::shown(found.replayed.as_ref()),
            "replay_scheduled_for": Mark::scheduled(found.replayed.as_ref()),
        })
    }

    /// A client of the cluster `--config`, the environment and `--bootstrap` name.
    fn client_config(&self) -> anyhow::Result<ClientConfig> {
        Ok(self.connection.settings()?.client_config())
    }

    /// Reads the matching dead letters, in dead-letter-topic order per partition (which is the
    /// order they were dead-lettered in, per key), each with its latest recorded replay.
    /// Blocking: run it off the async workers.
    fn read(&self) -> anyhow::Result<Vec<Found>> {
        let dlq = self.dlq_topic();
        let mut found = Vec::new();
        if self.max == Some(0) {
            return Ok(found);
        }
        let config = self.client_config()?;
        TopicRead::new(&dlq)
            .timeout(self.timeout())
            .read_blocking(&config, |record| {
                let candidate = Found {
                    partition: record.partition,
                    offset: record.offset,
                    timestamp_ms: record.timestamp_ms,
                    letter: DeadLetter::new(record.key, record.payload, record.headers),
                    replayed: None,
                };
                if self.matches(&candidate) {
                    found.push(candidate);
                }
                if self.max.is_some_and(|max| found.len() >= max) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .map_err(|e| self.explain(e, "dead-letter"))?;
        found.sort_by_key(|f| (f.partition, f.offset));
        if !found.is_empty() {
            let mut marks = replays::read(&config, &self.replays_topic(), self.timeout())
                .map_err(|e| self.explain(e, "replays"))?;
            for item in &mut found {
                item.replayed = marks.remove(&(item.partition, item.offset));
            }
        }
        Ok(found)
    }

    /// `error` in the words of this command: a missing topic of the consumer says which flags
    /// to check, an unanswered metadata request where it was sent.
    fn explain(&self, error: ReadError, what: &str) -> anyhow::Error {
        match error {
            ReadError::UnknownTopic { topic } => anyhow::anyhow!(
                "{what} topic {topic} does not exist: consumer {:?} has never run on topic {:?} in this \
                 cluster (check --consumer and --topic)",
                self.consumer,
                self.topic
            ),
            error @ ReadError::Kafka { operation: "fetch the metadata", .. } => {
                let bootstrap = self.connection.settings().map(|s| s.kafka.bootstrap).unwrap_or_default();
                anyhow::Error::new(error)
                    .context(format!("cannot reach Kafka at {bootstrap} within {}s", self.timeout))
            }
            error => anyhow::Error::new(error),
        }
    }

    /// Reads off the async workers: librdkafka's poll blocks.
    async fn read_async(&self) -> anyhow::Result<Vec<Found>> {
        let selection = self.clone();
        tokio::task::spawn_blocking(move || selection.read()).await.context("the reader task failed")?
    }
}

async fn list(selection: Selection) -> anyhow::Result<()> {
    for found in selection.read_async().await? {
        println!("{}", selection.line(&found));
    }
    Ok(())
}

impl ShowArgs {
    /// Prints each matching dead letter with its headers and decoded payload. A payload that does
    /// not decode is printed with the reason: it is often why the event was dead-lettered.
    async fn run(self) -> anyhow::Result<()> {
        let serde = AvroSerde::from_settings(&self.selection.connection.settings()?.registry)?;
        for found in self.selection.read_async().await? {
            let mut line = self.selection.line(&found);
            let mut headers = Map::new();
            for (name, value) in &found.letter.headers {
                headers.insert(name.clone(), text(value.as_deref()));
            }
            line["headers"] = Value::Object(headers);
            line["timestamp_ms"] = json!(found.timestamp_ms);
            line["last_replay"] = json!(found.replayed);
            let payload = found.letter.payload.as_deref().unwrap_or_default();
            if let Some(id) = fanout_schema_registry::wire::schema_id(payload) {
                line["schema_id"] = json!(id);
            }
            match serde.decode_json(payload).await {
                Ok(value) => line["value"] = value,
                Err(error) => line["decode_error"] = Value::String(error.to_string()),
            }
            println!("{line}");
        }
        Ok(())
    }
}

impl ReplayArgs {
    /// Checks everything first (both topics exist, every selected dead letter is replayable), so
    /// a bad selection sends nothing; then sends, waits for every acknowledgement and reports.
    async fn run(self) -> anyhow::Result<()> {
        let selection = &self.selection;
        let dlq = selection.dlq_topic();
        let retry = selection.retry_topic();
        // The consumer creates its retry topic with as many partitions as the main topic; one
        // auto-created here would have the broker's defaults, so it must already exist.
        let probe = selection.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            fanout_kafka::topic_partitions(&probe.client_config()?, &probe.retry_topic(), probe.timeout())
                .map(|_| ())
                .map_err(|e| probe.explain(e, "retry"))
        })
        .await
        .context("the metadata task failed")??;
        let found = selection.read_async().await?;

        let now = Utc::now();
        let later = match (self.at, self.after) {
            (Some(at), _) => Some(at),
            (None, Some(after)) => {
                Some(now + chrono::Duration::from_std(after).context("--after is too long")?)
            }
            (None, None) => None,
        }
        .map(|at| at.trunc_subsecs(3));
        let mut replays = Vec::with_capacity(found.len());
        let mut invalid = 0usize;
        for item in &found {
            // Replayed later, not before then on the retry topic either.
            match item.letter.replay(&selection.topic, &selection.consumer, later.unwrap_or(now)) {
                Ok(replay) => replays.push(replay),
                Err(e) => {
                    invalid += 1;
                    eprintln!("fanout: {dlq} partition {} offset {}: {e}", item.partition, item.offset);
                }
            }
        }
        if invalid > 0 {
            eprintln!("fanout dlq replay: matched {}, replayed 0 ({invalid} not replayable)", found.len());
            bail!("{invalid} of {} selected dead letters cannot be replayed; nothing was sent", found.len());
        }

        let via = match later {
            Some(at) => format!(
                " through {} at {}",
                self.schedule_topic,
                at.to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
            None => String::new(),
        };
        if self.dry_run {
            for item in &found {
                let mut line = selection.line(item);
                line["replay_to"] = Value::String(retry.clone());
                if let Some(at) = later {
                    line["replay_at"] = rfc3339(Some(at));
                }
                println!("{line}");
            }
            eprintln!(
                "fanout dlq replay: matched {}, replayed 0 (dry run: {} would go to {retry}{via})",
                found.len(),
                replays.len()
            );
            return Ok(());
        }
        let outgoing = self.outgoing(replays, later).await?;

        let producer = self.producer()?;
        if !outgoing.is_empty() {
            // Created before anything is sent, so a replay is never left without its record for
            // want of the topic (and a producer never auto-creates it uncompacted).
            let spec = replays::spec(&selection.replays_topic());
            fanout_kafka::ensure_topics(&selection.client_config()?, &[spec], selection.timeout())
                .await
                .with_context(|| format!("cannot create {}", selection.replays_topic()))?;
        }
        let outcomes = self.send(&producer, &outgoing).await;
        let mut failures = Vec::new();
        let mut replayed = Vec::new();
        for ((item, sent), outcome) in found.iter().zip(&outgoing).zip(outcomes) {
            match outcome {
                Ok(delivered) => replayed.push((item, sent, delivered)),
                Err(e) => failures.push(format!(
                    "{dlq} partition {} offset {}: {}",
                    item.partition,
                    item.offset,
                    fanout_core::report(&e)
                )),
            }
        }
        let (marks, unrecorded) = self.record(&producer, &replayed, later).await?;
        for ((item, sent, delivered), mark) in replayed.iter().zip(&marks) {
            let mut line = selection.line(item);
            line["replayed_to"] = json!({
                "topic": sent.topic(),
                "partition": delivered.partition,
                "offset": delivered.offset,
            });
            if let Some(entry) = &sent.entry {
                line["schedule_id"] = Value::String(entry.schedule_id.to_string());
                line["replay_scheduled_for"] = rfc3339(later);
            }
            if let Some(mark) = mark {
                line["replayed"] = Mark::shown(Some(mark));
            }
            println!("{line}");
        }
        for failure in &failures {
            eprintln!("fanout: not replayed: {failure}");
        }
        for failure in &unrecorded {
            eprintln!("fanout: replayed, but not recorded as replayed: {failure}");
        }
        eprintln!(
            "fanout dlq replay: matched {}, replayed {}, failed {} ({dlq} -> {retry}{via}; recorded in {})",
            found.len(),
            replayed.len(),
            failures.len(),
            selection.replays_topic()
        );
        if !failures.is_empty() {
            // Replaying the same selection again is safe: what did arrive is deduplicated.
            bail!(
                "{} of {} dead letters were not replayed; run the command again",
                failures.len(),
                found.len()
            );
        }
        if !unrecorded.is_empty() {
            bail!(
                "{} of {} replays were sent but not recorded: `fanout dlq list` shows them as not \
                 replayed; replaying them again is harmless",
                unrecorded.len(),
                replayed.len()
            );
        }
        Ok(())
    }

    /// A producer for the replays and their records; delivery waits at least 30 s (`--timeout`
    /// when longer), so a broker restarting meanwhile does not fail the replay.
    fn producer(&self) -> anyhow::Result<RecordProducer> {
        let selection = &self.selection;
        let tuning = ProducerSettings {
            delivery_timeout_ms: u32::try_from(selection.timeout.max(30).saturating_mul(1_000))
                .unwrap_or(u32::MAX),
            ..ProducerSettings::default()
        };
        RecordProducer::new(&selection.connection.settings()?.kafka, &tuning)
            .context("cannot create the Kafka producer")
    }

    /// The replays as they are sent: as they are, or replayed `later`, each as a schedule entry
    /// addressed to the retry topic (the schedule topic must exist: `fanout-scheduler` creates
    /// it, and one auto-created here would be neither compacted nor read).
    async fn outgoing(
        &self,
        replays: Vec<Replay>,
        later: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Vec<Outgoing>> {
        // Nothing to send needs no schedule topic.
        let Some(at) = later.filter(|_| !replays.is_empty()) else {
            return Ok(replays
                .into_iter()
                .map(|replay| Outgoing { replay, entry: None, schedule_topic: None })
                .collect());
        };
        let selection = &self.selection;
        let (client, topic, timeout) =
            (selection.client_config()?, self.schedule_topic.clone(), selection.timeout());
        let partitions =
            tokio::task::spawn_blocking(move || fanout_kafka::topic_partitions(&client, &topic, timeout))
                .await
                .context("the metadata task failed")?
                .with_context(|| {
                    format!(
                "cannot replay later: the schedule topic {} is not there (is fanout-scheduler running?)",
                self.schedule_topic
            )
                })?;
        let partitions = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
        Ok(replays
            .into_iter()
            .map(|replay| {
                let target = schedule::Target {
                    topic: &replay.topic,
                    key: replay.key.as_deref(),
                    deliver_at_ms: at.timestamp_millis(),
                    not_after_ms: None,
                };
                let entry = schedule::entry(&target, &replay.headers, partitions);
                Outgoing { replay, entry: Some(entry), schedule_topic: Some(self.schedule_topic.clone()) }
            })
            .collect())
    }

    /// Sends in order (so replays of one key keep their order), at most `--rate` per second, and
    /// waits for every acknowledgement. One result per replay: where it landed in the retry topic
    /// (or the schedule topic).
    async fn send(
        &self,
        producer: &RecordProducer,
        replays: &[Outgoing],
    ) -> Vec<Result<Delivered, ProduceError>> {
        let mut pacing = self.rate.map(|rate| {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        // One batch: records are handed over one after another, in order, and acknowledged
        // together at the end.
        let mut batch = producer.batch::<ProduceError>(replays.len());
        for replay in replays {
            if let Some(tick) = pacing.as_mut() {
                tick.tick().await;
            }
            let record = match &replay.entry {
                None => Record {
                    partition: None,
                    topic: &replay.replay.topic,
                    key: replay.replay.key.as_deref(),
                    payload: replay.replay.payload.as_deref(),
                    headers: replay
                        .replay
                        .headers
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_deref()))
                        .collect(),
                },
                Some(entry) => Record {
                    partition: Some(entry.schedule_id.partition),
                    topic: &self.schedule_topic,
                    key: Some(entry.key.as_bytes()),
                    payload: replay.replay.payload.as_deref(),
                    headers: entry
                        .headers
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_deref()))
                        .collect(),
                },
            };
            batch.send(record, Instant::now()).await;
        }
        batch.finish().await
    }

    /// Records the acknowledged replays in the replays topic, all with this run's id and the
    /// time they were acknowledged by. One mark per replay, `None` where recording failed; and
    /// the failures, described.
    async fn record(
        &self,
        producer: &RecordProducer,
        replayed: &[(&Found, &Outgoing, Delivered)],
        later: Option<DateTime<Utc>>,
    ) -> anyhow::Result<(Vec<Option<Mark>>, Vec<String>)> {
        let topic = self.selection.replays_topic();
        // To the millisecond, as every time the command prints.
        let (run, now) = (uuid::Uuid::now_v7().to_string(), Utc::now().trunc_subsecs(3));
        let marks: Vec<Mark> = replayed
            .iter()
            .map(|(item, sent, delivered)| Mark {
                dlq_partition: item.partition,
                dlq_offset: item.offset,
                ce_id: item.letter.event_id.clone(),
                replayed_at: now,
                replayed_to: Landed {
                    topic: sent.topic().to_owned(),
                    partition: delivered.partition,
                    offset: delivered.offset,
                },
                run: run.clone(),
                scheduled_for: sent.entry.as_ref().and(later),
                schedule_id: sent.entry.as_ref().map(|entry| entry.schedule_id.to_string()),
            })
            .collect();
        let keys: Vec<String> = marks.iter().map(Mark::key).collect();
        let values = marks.iter().map(Mark::value).collect::<Result<Vec<_>, _>>()?;
        let records = keys.iter().zip(&values).map(|(key, value)| Record {
            partition: None,
            topic: &topic,
            key: Some(key.as_bytes()),
            payload: Some(value),
            headers: fanout_kafka::Headers::with_capacity(0),
        });
        let outcomes = producer.send_all(records).await;
        let mut recorded = Vec::with_capacity(marks.len());
        let mut failures = Vec::new();
        for (mark, outcome) in marks.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) => recorded.push(Some(mark)),
                Err(e) => {
                    failures.push(format!("{} in {topic}: {}", mark.key(), fanout_core::report(&e)));
                    recorded.push(None);
                }
            }
        }
        Ok((recorded, failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(key: &str, error: &str, last_failure: &str) -> Found {
        let headers = vec![
            ("ce_id".to_owned(), Some(b"id-1".to_vec())),
            (fanout_consumer::dlq_headers::ERROR.to_owned(), Some(error.as_bytes().to_vec())),
            (
                fanout_consumer::dlq_headers::LAST_FAILURE_TIME.to_owned(),
                Some(last_failure.as_bytes().to_vec()),
            ),
        ];
        Found {
            partition: 0,
            offset: 3,
            timestamp_ms: None,
            letter: DeadLetter::new(Some(key.as_bytes().to_vec()), None, headers),
            replayed: None,
        }
    }

    fn selection(args: &[&str]) -> Selection {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            selection: Selection,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["dlq", "--consumer", "c"].iter().chain(args))
            .expect("valid arguments");
        cli.selection
    }

    #[test]
    fn filters_all_must_hold() {
        let letter = found("k1", "permanent: Post Is Broken", "2026-01-02T03:04:05.000Z");
        assert!(selection(&[]).matches(&letter));
        assert!(selection(&["--error", "is broken", "--key", "k1", "--event-id", "id-1"]).matches(&letter));
        assert!(!selection(&["--error", "timeout"]).matches(&letter));
        assert!(!selection(&["--key", "k2"]).matches(&letter));
        assert!(!selection(&["--event-id", "id-2"]).matches(&letter));
        assert!(selection(&["--since", "2026-01-02T03:04:05Z", "--until", "2026-01-02T03:04:05Z"])
            .matches(&letter));
        assert!(!selection(&["--since", "2026-01-02T03:04:06Z"]).matches(&letter));
        assert!(!selection(&["--until", "2026-01-02T04:04:04+01:00"]).matches(&letter));
    }

    #[test]
    fn bad_times_and_rates_are_refused_by_name() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            replay: ReplayArgs,
        }
        let err = <Cli as clap::Parser>::try_parse_from(["dlq", "--consumer", "c", "--since", "yesterday"])
            .expect_err("refused");
        assert!(err.to_string().contains("--since"), "{err}");
        let err = <Cli as clap::Parser>::try_parse_from(["dlq", "--consumer", "c", "--rate", "0"])
            .expect_err("refused");
        assert!(err.to_string().contains("--rate"), "{err}");
        let err = <Cli as clap::Parser>::try_parse_from(["dlq", "--consumer", "c", "--at", "tomorrow"])
            .expect_err("refused");
        assert!(err.to_string().contains("--at"), "{err}");
        let both = ["dlq", "--consumer", "c", "--at", "2026-01-02T03:04:05Z", "--after", "10m"];
        assert!(<Cli as clap::Parser>::try_parse_from(both).is_err(), "--at or --after, not both");
        let cli = <Cli as clap::Parser>::try_parse_from(["dlq", "--consumer", "c", "--after", "90s"])
            .expect("valid");
        assert_eq!(cli.replay.after, Some(Duration::from_secs(90)));
        assert_eq!(cli.replay.schedule_topic, "_fanout_schedule");
    }
}
