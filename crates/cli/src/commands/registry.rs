//! `fanout registry serve`: the built-in Confluent-compatible schema registry.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Args, Subcommand};
use fanout_registry_server::{RegistryConfig, RegistryServer};

use super::connection::KafkaArgs;

/// The built-in registry.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve the Confluent Schema Registry REST API, state kept in a compacted Kafka topic.
    Serve(ServeArgs),
}

/// Arguments of `fanout registry serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The compacted topic holding every schema, version and setting.
    #[arg(long, default_value = "_schemas")]
    topic: String,
    /// The URL the other instances forward writes to while this one leads (default: the listen
    /// address; set it when instances run on several hosts or listen on 0.0.0.0).
    #[arg(long)]
    advertised_url: Option<String>,
}

impl RegistryCommand {
    /// Runs until SIGINT/SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Serve(args) => {
                let kafka = args.kafka.connect().await?.kafka;
                let mut config = RegistryConfig::new(&kafka.bootstrap, args.listen).with_topic(&args.topic);
                config.kafka_properties = kafka.properties;
                config.advertised_url = args.advertised_url;
                let registry = RegistryServer::start(config).await.with_context(|| {
                    format!("starting the registry on {} (topic {})", args.listen, args.topic)
                })?;
                eprintln!(
                    "fanout: schema registry at {} (state in Kafka topic {})",
                    registry.url(),
                    args.topic
                );
                fanout_service::shutdown_signal().await;
                registry.shutdown().await?;
                Ok(())
            }
        }
    }
}
