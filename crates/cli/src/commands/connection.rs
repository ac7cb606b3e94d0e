//! Where the broker and the registry are; shared by the commands that need them.

use clap::Args;
use fanout_schema_registry::RegistrySettings;

/// Broker and registry addresses.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Kafka bootstrap servers.
    #[arg(long, env = "FANOUT_KAFKA__BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Schema registry URL(s), comma-separated for failover.
    #[arg(long, env = "FANOUT_REGISTRY__URLS", default_value = "http://127.0.0.1:8081")]
    pub registry: String,
}

impl Connection {
    /// Registry client settings for `--registry`.
    pub fn registry_settings(&self) -> RegistrySettings {
        RegistrySettings {
            urls: self.registry.split(',').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect(),
            ..RegistrySettings::default()
        }
    }
}
