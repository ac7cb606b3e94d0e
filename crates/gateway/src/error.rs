//! Why the gateway could not start or stopped.

use crate::ConfigError;

/// Why [`crate::Gateway`] could not start, or stopped serving.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A value of the configuration cannot be used; the message names the key.
    #[error("configuration: {0}")]
    Config(String),
    /// A source's verification settings cannot be used.
    #[error(transparent)]
    Source(#[from] ConfigError),
    /// The dedupe store does not answer.
    #[error("the dedupe store at {url} cannot be reached")]
    Store {
        /// Its URL, password redacted.
        url: String,
        /// What the driver said (sqlx's error, boxed so this type does not tie you to its version).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The dedupe store's table could not be created or migrated.
    #[error("the dedupe store's table")]
    Migrate(#[from] fanout_migrate::MigrationError),
    /// The sources' topics or the rejects topic could not be created.
    #[error("creating the gateway's topics")]
    Topics(#[from] fanout_kafka::AdminError),
    /// The producer could not be created, or the schema registered, or the last callbacks
    /// flushed at shutdown.
    #[error("publishing")]
    Publish(#[from] fanout_producer::PublishError),
    /// A port could not be bound.
    #[error("cannot listen on {listen} ({key})")]
    Bind {
        /// The configuration key.
        key: &'static str,
        /// The address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Prometheus scrape target could not be written.
    #[error("writing the scrape target")]
    ScrapeTarget(#[from] fanout_service::ServiceError),
    /// The HTTP server failed.
    #[error("serving callbacks")]
    Serve {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fanout_core::debug_as_report!(GatewayError);
