//! `fanout outbox relay --db URL`: publishes a service's outbox table.

use anyhow::Context;
use clap::{Args, Subcommand};
use fanout_producer::{
    outbox::{relay, RelayConfig},
    Publisher, PublisherConfig,
};

use super::connection::Connection;

/// Transactional outbox commands.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Publish pending outbox rows in insertion order until stopped (SIGINT/SIGTERM).
    Relay(RelayArgs),
}

/// Arguments of `fanout outbox relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The database holding `fanout_outbox`: `sqlite:path.db` or `postgres://...`.
    #[arg(long)]
    db: String,
    /// Rows published per round (a crash re-publishes at most one round).
    #[arg(long, default_value_t = 500)]
    batch_size: i64,
    #[command(flatten)]
    connection: Connection,
}

impl OutboxCommand {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Relay(args) => {
                // Each row carries the `ce_source` its service enqueued it with; this name is the
                // relay's own (its client id), never an event's.
                let mut config = PublisherConfig::new("fanout-outbox-relay");
                let settings = args.connection.connect().await?;
                config.kafka = settings.kafka;
                config.registry = settings.registry;
                let publisher = Publisher::new(config)?;
                let mut relay_config = RelayConfig::new(&args.db);
                relay_config.batch_size = args.batch_size;
                let stats = relay(relay_config, &publisher, fanout_service::shutdown_signal())
                    .await
                    .with_context(|| format!("outbox relay for {}", args.db))?;
                publisher.close(std::time::Duration::from_secs(30)).await?;
                eprintln!("fanout: outbox relay stopped after publishing {} rows", stats.published);
                Ok(())
            }
        }
    }
}
