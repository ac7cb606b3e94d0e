//! `fanout schedule list|show|cancel|reschedule`: what waits in the schedule topic, one entry's
//! state, and taking an entry back or moving it, each with a confirmed answer.

use std::{collections::BTreeMap, ops::ControlFlow, time::Duration};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use fanout_core::schedule::{self, ScheduleId};
use fanout_kafka::{FetchedRecord, TopicRead};
use fanout_producer::{CancelOutcome, Ended, Publisher, PublisherConfig, RescheduleOutcome, ScheduleState};

use super::connection::KafkaArgs;

/// Scheduled events (`fanout-scheduler`'s schedule topic).
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// One JSON line per pending entry, in due order: schedule id, event id and type, target
    /// topic and key, due time.
    List(ListArgs),
    /// One entry: pending (and when), or how it ended (delivered, expired, invalid, cancelled,
    /// rescheduled as another id).
    Show(EntryArgs),
    /// Cancels an entry by its schedule id (`PARTITION:UUID`, as `publish --at` printed it) and
    /// says whether it came in time (`cancelled`) or the entry had already ended.
    Cancel(EntryArgs),
    /// Moves a pending entry to a new time (it gets a new schedule id, printed); says so if the
    /// entry had already ended.
    Reschedule(RescheduleArgs),
}

/// `fanout schedule list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only entries for this target topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only entries due before this time (RFC 3339).
    #[arg(long, value_parser = super::parse_time)]
    due_before: Option<DateTime<Utc>>,
    /// The schedule topic.
    #[arg(long, default_value = schedule::TOPIC)]
    schedule_topic: String,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// `fanout schedule show|cancel`: one entry.
#[derive(Debug, Args)]
pub struct EntryArgs {
    /// The entry.
    schedule_id: ScheduleId,
    /// The schedule topic.
    #[arg(long, default_value = schedule::TOPIC)]
    schedule_topic: String,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// `fanout schedule reschedule`.
#[derive(Debug, Args)]
pub struct RescheduleArgs {
    #[command(flatten)]
    entry: EntryArgs,
    /// The new time (RFC 3339).
    #[arg(long, value_parser = super::parse_time, conflicts_with = "after", required_unless_present = "after")]
    at: Option<DateTime<Utc>>,
    /// The new time, this long from now (`90s`, `10m`, `2h`).
    #[arg(long, value_parser = super::parse_duration)]
    after: Option<Duration>,
}

impl ScheduleCommand {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::List(args) => args.run().await,
            Self::Show(args) => args.show().await,
            Self::Cancel(args) => args.cancel().await,
            Self::Reschedule(args) => args.run().await,
        }
    }
}

/// A pending entry, as listed.
fn listed(record: &FetchedRecord) -> Option<(i64, serde_json::Value)> {
    let due: i64 = record.header(schedule::DELIVER_AT)?.parse().ok()?;
    let id = uuid::Uuid::parse_str(std::str::from_utf8(record.key.as_deref()?).ok()?).ok()?;
    let time = |ms: i64| {
        DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
    };
    Some((
        due,
        serde_json::json!({
            "schedule_id": ScheduleId { partition: record.partition, id }.to_string(),
            "event_id": record.header(fanout_core::headers::ID),
            "event_type": record.header(fanout_core::headers::TYPE),
            "topic": record.header(schedule::TARGET_TOPIC),
            "key": record.header(schedule::TARGET_KEY),
            "deliver_at": time(due),
            "not_after": record.header_i64(schedule::NOT_AFTER).and_then(time),
        }),
    ))
}

impl ListArgs {
    async fn run(self) -> anyhow::Result<()> {
        let settings = self.kafka.connect().await?;
        let mut config = fanout_kafka::client_config(&settings.kafka);
        config.set("isolation.level", "read_committed");
        let read = TopicRead::new(&self.schedule_topic).timeout(Duration::from_secs(10));
        let (topic, before) = (self.topic.clone(), self.due_before.map(|t| t.timestamp_millis()));
        let pending = tokio::task::spawn_blocking(move || {
            // By (partition, id): a later tombstone removes the entry.
            let mut pending: BTreeMap<(i32, Vec<u8>), (i64, serde_json::Value)> = BTreeMap::new();
            read.read_blocking(&config, |record| {
                let Some(key) = record.key.clone() else { return ControlFlow::Continue(()) };
                let slot = (record.partition, key);
                match record.payload {
                    None => {
                        pending.remove(&slot);
                    }
                    Some(_) => {
                        let wanted = |(due, line): &(i64, serde_json::Value)| {
                            topic.as_deref().is_none_or(|t| line["topic"] == t)
                                && before.is_none_or(|b| *due < b)
                        };
                        match listed(&record).filter(wanted) {
                            Some(entry) => pending.insert(slot, entry),
                            None => pending.remove(&slot),
                        };
                    }
                }
                ControlFlow::Continue(())
            })
            .map(|()| pending)
        })
        .await
        .context("the schedule read stopped")?
        .with_context(|| format!("cannot read the schedule topic {}", self.schedule_topic))?;
        let mut entries: Vec<(i64, serde_json::Value)> = pending.into_values().collect();
        entries.sort_by_key(|(due, _)| *due);
        for (_, line) in entries {
            println!("{line}");
        }
        Ok(())
    }
}

impl EntryArgs {
    async fn publisher(&self) -> anyhow::Result<Publisher> {
        let settings = self.kafka.connect().await?;
        let mut config = PublisherConfig::new("fanout-cli");
        config.kafka = settings.kafka;
        config.schedule_topic = self.schedule_topic.clone();
        Ok(Publisher::new(config)?)
    }

    async fn show(self) -> anyhow::Result<()> {
        let state = self.publisher().await?.schedule_state(&self.schedule_id).await?;
        let mut line = serde_json::json!({ "schedule_id": self.schedule_id.to_string() });
        match state {
            ScheduleState::Pending { deliver_at, topic } => {
                line["state"] = "pending".into();
                line["deliver_at"] = rfc3339(deliver_at).into();
                line["topic"] = topic.into();
            }
            ScheduleState::Ended(ended) => describe(&mut line, ended),
            ScheduleState::Unknown => line["state"] = "unknown".into(),
            other => line["state"] = format!("{other:?}").into(),
        }
        println!("{line}");
        Ok(())
    }

    async fn cancel(self) -> anyhow::Result<()> {
        let publisher = self.publisher().await?;
        let outcome = publisher.cancel(&self.schedule_id).await?;
        publisher.close(Duration::from_secs(10)).await?;
        let mut line = serde_json::json!({ "schedule_id": self.schedule_id.to_string() });
        match outcome {
            CancelOutcome::Cancelled => line["state"] = "cancelled".into(),
            CancelOutcome::AlreadyEnded(ended) => {
                describe(&mut line, ended);
                line["too_late"] = true.into();
            }
            CancelOutcome::Unknown => line["state"] = "unknown".into(),
        }
        println!("{line}");
        Ok(())
    }
}

impl RescheduleArgs {
    async fn run(self) -> anyhow::Result<()> {
        let deliver_at = match (self.at, self.after) {
            (Some(at), _) => std::time::SystemTime::from(at),
            (None, Some(after)) => std::time::SystemTime::now() + after,
            (None, None) => anyhow::bail!("give the new time: --at TIME or --after DURATION"),
        };
        let publisher = self.entry.publisher().await?;
        let outcome = publisher.reschedule(&self.entry.schedule_id, deliver_at).await?;
        let mut line = serde_json::json!({ "schedule_id": self.entry.schedule_id.to_string() });
        match outcome {
            RescheduleOutcome::Rescheduled(scheduled) => {
                line["state"] = "rescheduled".into();
                line["rescheduled_as"] = scheduled.schedule_id.to_string().into();
                line["deliver_at"] = rfc3339(scheduled.deliver_at).into();
            }
            RescheduleOutcome::AlreadyEnded(ended) => {
                describe(&mut line, ended);
                line["too_late"] = true.into();
            }
            RescheduleOutcome::Unknown => line["state"] = "unknown".into(),
        }
        println!("{line}");
        Ok(())
    }
}

/// An ended entry's state, and the entry it became if it was rescheduled.
fn describe(line: &mut serde_json::Value, ended: Ended) {
    line["state"] = ended.outcome.as_str().into();
    if let Some(next) = ended.rescheduled_as {
        line["rescheduled_as"] = next.to_string().into();
    }
}

fn rfc3339(time: std::time::SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Millis, true)
}
