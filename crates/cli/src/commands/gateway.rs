//! `fanout gateway rejects`: the callbacks the gateway refused, with the reason, read from its
//! rejects topic.

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use fanout_kafka::TopicRead;
use serde_json::{json, Value};

use super::connection::KafkaArgs;

/// Inspect the callback gateway.
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// One JSON line per refused request on the rejects topic, oldest first: position, source,
    /// reason (bad_signature, stale_timestamp, body_too_large, unroutable, ...), the reason in
    /// words, when, and the body's size (`--body`: its first 64 KiB as text). Reads up to the end
    /// the topic had when the command started.
    Rejects(RejectsArgs),
}

/// `fanout gateway rejects`.
#[derive(Debug, Args)]
pub struct RejectsArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The gateway's `rejects_topic`.
    #[arg(long, default_value = "_fanout_gateway_rejects")]
    topic: String,
    /// Only this source's.
    #[arg(long)]
    source: Option<String>,
    /// Only this reason's (a `fanout_gateway_requests_total` outcome, e.g. `bad_signature`).
    #[arg(long)]
    reason: Option<String>,
    /// Only those refused at or after this time (RFC 3339, e.g. 2026-11-30T10:00:00Z).
    #[arg(long, value_parser = super::parse_time)]
    since: Option<DateTime<Utc>>,
    /// Print the body too (as text; bytes that are not UTF-8 are replaced).
    #[arg(long)]
    body: bool,
}

impl GatewayCommand {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Rejects(args) => args.run().await,
        }
    }
}

impl RejectsArgs {
    async fn run(self) -> anyhow::Result<()> {
        let settings = self.kafka.connect().await?;
        let records = TopicRead::new(&self.topic)
            .read(&fanout_kafka::client_config(&settings.kafka))
            .await
            .with_context(|| format!("reading the rejects topic {}", self.topic))?;
        for record in records {
            let header = |name: &str| {
                record
                    .headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, v)| v.as_deref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let source = header(fanout_gateway::REJECT_SOURCE);
            let reason = header(fanout_gateway::REJECT_REASON);
            let at = header(fanout_gateway::REJECT_AT).and_then(|ms| ms.parse::<i64>().ok());
            if self.source.as_ref().is_some_and(|wanted| source.as_ref() != Some(wanted))
                || self.reason.as_ref().is_some_and(|wanted| reason.as_ref() != Some(wanted))
                || self.since.is_some_and(|since| at.is_none_or(|at| at < since.timestamp_millis()))
            {
                continue;
            }
            let mut line = json!({
                "partition": record.partition,
                "offset": record.offset,
                "source": source,
                "reason": reason,
                "detail": header(fanout_gateway::REJECT_DETAIL),
                "rejected_at": at.and_then(DateTime::<Utc>::from_timestamp_millis)
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
                "body_bytes": header(fanout_gateway::REJECT_BODY_BYTES_HEADER).and_then(|n| n.parse::<u64>().ok()),
            });
            if self.body {
                line["body"] = Value::String(
                    String::from_utf8_lossy(record.payload.as_deref().unwrap_or_default()).into_owned(),
                );
            }
            println!("{line}");
        }
        Ok(())
    }
}
