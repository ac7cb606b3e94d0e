//! `fanout registry serve`: the built-in Confluent-compatible schema registry.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Args, Subcommand};
use fanout_registry_server::{RegistryConfig, RegistryServer};

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
    /// Kafka bootstrap servers.
    #[arg(long, env = "FANOUT_KAFKA__BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The compacted topic holding every schema, version and setting.
    #[arg(long, default_value = "_schemas")]
    topic: String,
}

impl RegistryCommand {
    /// Runs until SIGINT/SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Serve(args) => {
                let config = RegistryConfig::new(&args.bootstrap, args.listen).with_topic(&args.topic);
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
