//! How to run a registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The topic Confluent's registry uses; the default here too.
pub const DEFAULT_TOPIC: &str = "_schemas";

/// Where the registry keeps its state and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Kafka `bootstrap.servers`.
    pub bootstrap: String,
    /// The compacted topic holding every schema, config and mode; created when absent.
    pub topic: String,
    /// Replication factor used when creating the topic (ignored when it exists); `None` takes the
    /// broker's `default.replication.factor`, so a replicated cluster replicates the registry too.
    pub replication_factor: Option<i32>,
    /// The HTTP address to listen on; port 0 picks a free port (see
    /// [`RunningRegistry::local_addr`](crate::RunningRegistry::local_addr)).
    pub listen: SocketAddr,
    /// The URL other instances forward writes to when this one leads (its `client.id` in the
    /// election group); `None` advertises the address it listens on (127.0.0.1 when that is
    /// 0.0.0.0: set it when instances run on several hosts).
    pub advertised_url: Option<String>,
    /// Extra librdkafka properties (security, timeouts) for every client the registry creates.
    /// `acks` and `enable.idempotence` are always forced to `all` / `true`.
    pub kafka_properties: BTreeMap<String, String>,
}

impl RegistryConfig {
    /// A config with the default topic `_schemas`, the broker's default replication and no extra
    /// properties.
    pub fn new(bootstrap: impl Into<String>, listen: SocketAddr) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topic: DEFAULT_TOPIC.to_owned(),
            replication_factor: None,
            listen,
            advertised_url: None,
            kafka_properties: BTreeMap::new(),
        }
    }

    /// Replaces the topic name.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }
}
