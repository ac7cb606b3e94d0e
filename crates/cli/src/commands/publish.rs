//! `fanout publish TYPE --json FILE|-`: JSON lines in, events through the producer SDK out.

use std::{
    future::Future,
    io::{BufRead, BufReader},
    pin::Pin,
};

use anyhow::{bail, Context};
use clap::Args;
use fanout_core::{Event, EventVisitor};
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};

use super::connection::Connection;
use crate::events;

/// Publish events given as JSON lines (one event per line) through the producer SDK.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event type, e.g. `post.published`.
    event_type: String,
    /// A file of JSON lines, or `-` for standard input.
    #[arg(long)]
    json: String,
    /// Publish to this topic instead of the event type's own.
    #[arg(long)]
    topic: Option<String>,
    /// Deliver at this time (RFC 3339) through `fanout-scheduler`, not now.
    #[arg(long, value_parser = super::parse_time, conflicts_with = "after")]
    at: Option<chrono::DateTime<chrono::Utc>>,
    /// Deliver after this long (`90s`, `10m`, `2h`) through `fanout-scheduler`, not now.
    #[arg(long, value_parser = super::parse_duration)]
    after: Option<std::time::Duration>,
    /// The CloudEvents source the events carry.
    #[arg(long, default_value = "fanout-cli")]
    source: String,
    #[command(flatten)]
    connection: Connection,
}

impl PublishArgs {
    /// Validates every line first, so a bad line publishes nothing; then publishes all and prints
    /// one JSON line per delivery.
    pub async fn run(self) -> anyhow::Result<()> {
        events::check(&self.event_type)?;
        let reader: Box<dyn BufRead> = if self.json == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            let file =
                std::fs::File::open(&self.json).with_context(|| format!("cannot open {}", self.json))?;
            Box::new(BufReader::new(file))
        };
        let mut lines = Vec::new();
        for (index, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("cannot read line {}", index + 1))?;
            if !line.trim().is_empty() {
                lines.push((index + 1, line));
            }
        }
        let publish = PublishLines { args: &self, lines };
        fanout_events::visit(&self.event_type, publish)
            .ok_or_else(|| events::unknown(&self.event_type))?
            .await
    }
}

/// Publishes JSON lines as events of the type the command names.
struct PublishLines<'a> {
    args: &'a PublishArgs,
    /// Non-empty lines with their 1-based numbers.
    lines: Vec<(usize, String)>,
}

impl<'a> EventVisitor for PublishLines<'a> {
    type Output = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

    fn visit<E: Event>(self) -> Self::Output {
        Box::pin(self.publish::<E>())
    }
}

impl PublishLines<'_> {
    async fn publish<E: Event>(self) -> anyhow::Result<()> {
        let args = self.args;
        let mut batch = Vec::with_capacity(self.lines.len());
        for (line_no, line) in &self.lines {
            let event: E = serde_json::from_str(line)
                .with_context(|| format!("line {line_no} is not a valid {} event", E::TYPE))?;
            batch.push(event);
        }
        let mut config = PublisherConfig::new(args.source.clone());
        let settings = args.connection.connect().await?;
        config.kafka = settings.kafka;
        config.registry = settings.registry;
        let publisher = Publisher::new(config)?;
        let options = PublishOptions { topic: args.topic.clone(), ..PublishOptions::default() };
        let deliver_at = match (args.at, args.after) {
            (Some(at), _) => Some(std::time::SystemTime::from(at)),
            (None, Some(after)) => Some(std::time::SystemTime::now() + after),
            (None, None) => None,
        };
        if let Some(deliver_at) = deliver_at {
            return schedule(publisher, &batch, deliver_at, &options).await;
        }
        let mut failures = 0usize;
        for (chunk_no, chunk) in batch.chunks(1000).enumerate() {
            for (offset, result) in publisher.publish_all(chunk, &options).await.into_iter().enumerate() {
                let line = chunk_no * 1000 + offset + 1;
                match result {
                    Ok(delivery) => println!(
                        "{}",
                        serde_json::json!({
                            "event_id": delivery.event_id.to_string(),
                            "topic": &*delivery.topic,
                            "partition": delivery.partition,
                            "offset": delivery.offset,
                        })
                    ),
                    Err(error) => {
                        failures += 1;
                        eprintln!("fanout: event {line} was not published: {}", fanout_core::report(&error));
                    }
                }
            }
        }
        publisher.close(std::time::Duration::from_secs(30)).await?;
        if failures > 0 {
            bail!("{failures} of {} events were not published", batch.len());
        }
        Ok(())
    }
}

/// Schedules each event for `deliver_at`, printing one JSON line per scheduled event; stops at the
/// first failure (the ones before it stay scheduled, and were printed).
async fn schedule<E: Event>(
    publisher: Publisher,
    events: &[E],
    deliver_at: std::time::SystemTime,
    options: &PublishOptions,
) -> anyhow::Result<()> {
    let at = chrono::DateTime::<chrono::Utc>::from(deliver_at)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for (index, event) in events.iter().enumerate() {
        let scheduled = publisher
            .publish_at(event, deliver_at, options)
            .await
            .with_context(|| format!("event {} was not scheduled", index + 1))?;
        println!(
            "{}",
            serde_json::json!({
                "event_id": scheduled.event_id.to_string(),
                "schedule_id": scheduled.schedule_id.to_string(),
                "deliver_at": at,
            })
        );
    }
    publisher.close(std::time::Duration::from_secs(30)).await?;
    Ok(())
}
