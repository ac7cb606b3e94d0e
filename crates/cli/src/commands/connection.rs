//! How a command reaches the cluster and the registry: the same layers as a service's
//! configuration (defaults < `--config FILE` < `FANOUT_` environment), then the command line.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use fanout_config::KafkaSettings;
use fanout_schema_registry::RegistrySettings;
use rdkafka::ClientConfig;
use serde::Deserialize;

/// The `[kafka]` and `[registry]` sections of a Fanout configuration file. Other sections are
/// ignored, so a service's or a publisher's own file works as it is; inside these two sections an
/// unknown key is refused by name, as in a service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClientSettings {
    /// The cluster, with `[kafka.properties]` (SASL, TLS) passed to every client.
    pub kafka: KafkaSettings,
    /// The registry, with its credentials and CA.
    pub registry: RegistrySettings,
}

/// Where the cluster is, for commands that need no registry.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// A Fanout TOML file whose `[kafka]` (and `[registry]`) sections say how to connect,
    /// including `[kafka.properties]` for SASL/TLS and registry credentials. `FANOUT_KAFKA__*`
    /// and `FANOUT_REGISTRY__*` variables override it; the flags below override both.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers [default: 127.0.0.1:9092, or the file's / environment's].
    #[arg(long)]
    pub bootstrap: Option<String>,
}

/// Where the cluster and the registry are.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Schema registry URL(s), comma-separated for failover [default: http://127.0.0.1:8081, or
    /// the file's / environment's].
    #[arg(long)]
    pub registry: Option<String>,
}

impl KafkaArgs {
    /// The layered settings with `--bootstrap` applied.
    pub fn settings(&self) -> anyhow::Result<ClientSettings> {
        let mut settings: ClientSettings =
            fanout_config::load(self.config.as_deref()).context("cannot load the connection settings")?;
        if let Some(bootstrap) = &self.bootstrap {
            settings.kafka.bootstrap.clone_from(bootstrap);
        }
        Ok(settings)
    }

    /// The settings, once the cluster has answered with them: refused credentials fail at once,
    /// naming authentication, instead of the first real request timing out.
    pub async fn connect(&self) -> anyhow::Result<ClientSettings> {
        answered(self.settings()?, CONNECT_TIMEOUT).await
    }
}

/// How long a command waits for the cluster's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `settings`, once the cluster they name has answered within `timeout`.
async fn answered(settings: ClientSettings, timeout: Duration) -> anyhow::Result<ClientSettings> {
    fanout_kafka::check_cluster(&settings.client_config(), timeout).await?;
    Ok(settings)
}

impl Connection {
    /// [`Connection::settings`], once the cluster has answered with them (see
    /// [`KafkaArgs::connect`]).
    pub async fn connect(&self) -> anyhow::Result<ClientSettings> {
        self.connect_within(CONNECT_TIMEOUT).await
    }

    /// [`Connection::connect`] with the command's own patience.
    pub async fn connect_within(&self, timeout: Duration) -> anyhow::Result<ClientSettings> {
        answered(self.settings()?, timeout).await
    }

    /// The layered settings with `--bootstrap` and `--registry` applied.
    pub fn settings(&self) -> anyhow::Result<ClientSettings> {
        let mut settings = self.kafka.settings()?;
        if let Some(registry) = &self.registry {
            settings.registry.urls =
                registry.split(',').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
        }
        Ok(settings)
    }
}

impl ClientSettings {
    /// A librdkafka configuration with the bootstrap servers and every `[kafka.properties]`.
    pub fn client_config(&self) -> ClientConfig {
        fanout_kafka::client_config(&self.kafka)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        connection: Connection,
    }

    #[test]
    fn a_service_file_gives_kafka_properties_and_registry_credentials_and_flags_win() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            "name = \"rewards\"\n[kafka]\nbootstrap = \"file:9092\"\n[kafka.properties]\n\
             \"security.protocol\" = \"SASL_PLAINTEXT\"\n[registry]\nurls = [\"http://file:8081\"]\n\
             username = \"ops\"\npassword = \"s3cret\"\n[service]\nbeans_per_job_post = 3"
        )
        .expect("writes");
        let path = file.path().display().to_string();

        let cli = Cli::parse_from(["fanout", "--config", &path]);
        let settings = cli.connection.settings().expect("loads");
        assert_eq!(settings.kafka.bootstrap, "file:9092");
        assert_eq!(settings.client_config().get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(settings.registry.urls, ["http://file:8081"]);
        assert_eq!(settings.registry.username.as_deref(), Some("ops"));

        let cli = Cli::parse_from([
            "fanout",
            "--config",
            &path,
            "--bootstrap",
            "flag:9092",
            "--registry",
            "http://a, http://b",
        ]);
        let settings = cli.connection.settings().expect("loads");
        assert_eq!(settings.kafka.bootstrap, "flag:9092");
        assert_eq!(settings.registry.urls, ["http://a", "http://b"]);
        assert_eq!(settings.client_config().get("security.protocol"), Some("SASL_PLAINTEXT"), "file kept");
    }

    #[test]
    fn a_typo_inside_the_kafka_section_is_refused_by_name() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "[kafka]\nboostrap = \"x:9092\"").expect("writes");
        let path = file.path().display().to_string();
        let err = Cli::parse_from(["fanout", "--config", &path]).connection.settings().expect_err("typo");
        assert!(format!("{err:#}").contains("boostrap"), "{err:#}");
    }
}
