//! The built-in schema registry, in process, for one test.

use std::net::SocketAddr;

use fanout_core::Secret;
use fanout_registry_server::{
    hash_password, RegistryConfig, RegistrySecurity, RegistryServer, RegistryUser, Role, RunningRegistry,
};
use fanout_schema_registry::RegistrySettings;

use crate::{Kafka, TestTopic, TestkitError};

/// Fanout's own registry serving on a free local port, its state on a topic of its own: a test
/// sees only the schemas it registered, and the first one it registers gets id 1. The state
/// topic is deleted when the registry is dropped or [`stop`](Self::stop)ped.
///
/// ```no_run
/// # async fn example() -> Result<(), fanout_testkit::TestkitError> {
/// let kafka = fanout_testkit::Kafka::connect().await?;
/// let registry = fanout_testkit::Registry::start(&kafka).await?;
/// let settings = registry.settings(); // for a serde, a publisher or a service
/// # let _ = settings;
/// registry.stop().await
/// # }
/// ```
#[derive(Debug)]
pub struct Registry {
    // Declared before `state`, so a dropped registry stops tailing before its topic goes.
    running: Option<RunningRegistry>,
    url: String,
    state: TestTopic,
}

impl Registry {
    /// Starts the registry on a new state topic (`test-schemas-<uuid>`).
    pub async fn start(kafka: &Kafka) -> Result<Self, TestkitError> {
        Self::start_at(kafka, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// As [`start`](Self::start), listening on `listen`: for a test whose clients were given the
    /// registry's address before it came up.
    pub async fn start_at(kafka: &Kafka, listen: SocketAddr) -> Result<Self, TestkitError> {
        Self::start_with(kafka, listen, RegistrySecurity::default()).await
    }

    /// As [`start`](Self::start), with users and TLS: its [`url`](Self::url) is `https://...`
    /// when `security.tls` is set, and [`settings`](Self::settings) carry no credentials.
    pub async fn start_secured(kafka: &Kafka, security: RegistrySecurity) -> Result<Self, TestkitError> {
        Self::start_with(kafka, SocketAddr::from(([127, 0, 0, 1], 0)), security).await
    }

    /// A user of a locked registry, its password hashed as `fanout registry hash-password` does.
    pub fn user(name: &str, role: Role, password: &str) -> Result<RegistryUser, TestkitError> {
        Ok(RegistryUser { name: name.into(), role, password_hash: Secret::new(hash_password(password)?) })
    }

    async fn start_with(
        kafka: &Kafka,
        listen: SocketAddr,
        security: RegistrySecurity,
    ) -> Result<Self, TestkitError> {
        let state = kafka.future_topic("schemas");
        let mut config =
            RegistryConfig::new(kafka.bootstrap(), listen).with_topic(state.name()).with_security(security);
        config.kafka_properties.extend(kafka.properties().iter().cloned());
        let running = RegistryServer::start(config).await?;
        Ok(Self { url: running.url(), running: Some(running), state })
    }

    /// Stops serving where it listens and serves the same state (every schema and id) on `listen`
    /// instead: a registry coming up where a client was told to look, holding what the client
    /// will ask for.
    pub async fn serve_at(&mut self, listen: SocketAddr, kafka: &Kafka) -> Result<(), TestkitError> {
        if let Some(running) = self.running.take() {
            running.shutdown().await?;
        }
        let mut config = RegistryConfig::new(kafka.bootstrap(), listen).with_topic(self.state.name());
        config.kafka_properties.extend(kafka.properties().iter().cloned());
        let running = RegistryServer::start(config).await?;
        self.url = running.url();
        self.running = Some(running);
        Ok(())
    }

    /// Stops serving (requests in flight finish) but keeps the state topic: a registry that is
    /// down, for clients to ride out, until [`serve_at`](Self::serve_at) brings it back.
    pub async fn stop_serving(&mut self) -> Result<(), TestkitError> {
        if let Some(running) = self.running.take() {
            running.shutdown().await?;
        }
        Ok(())
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Client settings for this registry (the defaults otherwise).
    pub fn settings(&self) -> RegistrySettings {
        RegistrySettings::with_urls(&[self.url.as_str()])
    }

    /// The registry's state topic.
    pub fn state_topic(&self) -> &str {
        self.state.name()
    }

    /// Stops serving, waits for requests in flight, and deletes the state topic.
    pub async fn stop(mut self) -> Result<(), TestkitError> {
        if let Some(running) = self.running.take() {
            running.shutdown().await?;
        }
        Ok(())
    }
}
