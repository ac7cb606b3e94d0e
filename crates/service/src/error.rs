//! Why a service could not start or stopped abnormally.

use std::path::PathBuf;

/// A service failure; [`crate::main`] prints it and exits non-zero.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration could not be loaded (missing file, unknown key, malformed value); the
    /// message names the key and the file or environment variable it came from.
    #[error(transparent)]
    Load(#[from] fanout_config::ConfigError),
    /// A value is unusable; the message names the key.
    #[error("invalid service configuration: {0}")]
    Config(String),
    /// The schema registry client could not be created from `[registry]`.
    #[error("schema registry: {0}")]
    Registry(#[from] fanout_schema_registry::RegistryError),
    /// The consumer runtime could not start or failed.
    #[error(transparent)]
    Consumer(#[from] fanout_consumer::ConsumerError),
    /// The service's tables could not be migrated.
    #[error(transparent)]
    Migration(#[from] fanout_migrate::MigrationError),
    /// The Prometheus scrape target file could not be written.
    #[error("prometheus scrape target {}", path.display())]
    ScrapeTarget {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Span export could not be set up, or flushing it failed.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fanout_core::debug_as_report!(ServiceError);
