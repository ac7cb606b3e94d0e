//! `fanout registry serve`: the built-in Confluent-compatible schema registry;
//! `fanout registry hash-password`: a user's `password_hash` for its `[registry_server]` section.

use std::io::Read;
use std::net::SocketAddr;

use anyhow::Context;
use clap::{Args, Subcommand};
use fanout_registry_server::{RegistryConfig, RegistrySecurity, RegistryServer};
use serde::Deserialize;

use super::connection::KafkaArgs;

/// The built-in registry.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve the Confluent Schema Registry REST API, state kept in a compacted Kafka topic.
    /// Users and TLS come from the `[registry_server]` section of `--config`.
    Serve(ServeArgs),
    /// Read a password on stdin and print its argon2id hash, for a user's `password_hash`.
    HashPassword,
}

/// The `[registry_server]` section of the `--config` file; its other sections are the
/// connection's.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServerFile {
    registry_server: RegistrySecurity,
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
            Self::HashPassword => {
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .context("cannot read the password from stdin")?;
                // `echo` and a file's last line add a newline that is not part of the password.
                let password = password.strip_suffix('\n').unwrap_or(&password);
                let password = password.strip_suffix('\r').unwrap_or(password);
                anyhow::ensure!(!password.is_empty(), "no password on stdin");
                println!("{}", fanout_registry_server::hash_password(password)?);
                Ok(())
            }
            Self::Serve(args) => {
                let server: ServerFile = fanout_config::load(args.kafka.config.as_deref())
                    .context("cannot load the [registry_server] section")?;
                let kafka = args.kafka.connect().await?.kafka;
                let mut config = RegistryConfig::new(&kafka.bootstrap, args.listen)
                    .with_topic(&args.topic)
                    .with_security(server.registry_server);
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
