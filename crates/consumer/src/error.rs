//! Errors of the consumer runtime, and the errors a handler or decoder returns to it.

use std::fmt;

/// Why the consumer could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The configuration is invalid; the message names the key.
    #[error("invalid consumer configuration: {0}")]
    Config(String),
    /// The idempotency store could not be opened or prepared.
    #[error("consumer store {url}: {source}")]
    Store {
        /// The store URL, password removed.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The runtime's tables could not be created or migrated.
    #[error("consumer store {url}")]
    Migration {
        /// The store URL, password removed.
        url: String,
        /// What failed, naming the migration.
        #[source]
        source: fanout_migrate::MigrationError,
    },
    /// A Kafka client could not be created or subscribed.
    #[error("kafka {operation}: {source}")]
    Kafka {
        /// What was attempted.
        operation: &'static str,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The HTTP endpoint could not be bound or failed.
    #[error("http endpoint {listen}: {source}")]
    Http {
        /// The configured address.
        listen: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The builder has no handler, or two handlers claim one topic.
    #[error("invalid consumer wiring: {0}")]
    Wiring(String),
    /// A background task of the runtime failed.
    #[error("consumer runtime task failed: {0}")]
    Task(String),
}

/// What a handler reports when it cannot apply an event. The runtime rolls back the handler's
/// writes (its savepoint) either way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// May succeed later (a dependency is down, a lock timed out): retried with backoff, then
    /// through the retry topic, then dead-lettered when the attempts are exhausted.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (the event violates an invariant): dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    /// A transient error from anything displayable.
    pub fn transient(error: impl fmt::Display) -> Self {
        Self::Transient(error.to_string())
    }

    /// A permanent error from anything displayable.
    pub fn permanent(error: impl fmt::Display) -> Self {
        Self::Permanent(error.to_string())
    }

    /// True for [`HandlerError::Permanent`].
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}

/// A database error inside a handler is transient by default: connection losses, lock timeouts
/// and serialization failures all clear up; a handler that knows better maps it itself.
impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Transient(format!("database: {error}"))
    }
}

/// Why a payload could not be turned into a typed event.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a valid payload (no magic byte, truncated, not the schema's shape):
    /// dead-lettered at once.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The payload names a schema id the registry does not know: dead-lettered at once.
    #[error("unknown schema id {0}")]
    UnknownSchema(u32),
    /// The registry could not be asked (down, timed out): retried until it answers; the event is
    /// never dead-lettered for this.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
}

impl DecodeError {
    /// True when decoding the same bytes can never succeed.
    pub fn is_poison(&self) -> bool {
        !matches!(self, Self::Unavailable(_))
    }
}
