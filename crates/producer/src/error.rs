use fanout_kafka::{ProduceError, ProducerConfigError};

/// Why a publish failed, or a publisher could not be created. [`PublishError::is_retriable`] says
/// whether trying again later can help.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event could not be encoded (schema lookup or Avro encoding); nothing was sent.
    #[error("cannot encode {event_type} for topic {topic}")]
    Encode {
        /// The event type.
        event_type: &'static str,
        /// The topic it was for.
        topic: String,
        /// The registry or serde error.
        #[source]
        source: fanout_schema_registry::SerdeError,
    },
    /// The record was not delivered: too large, not acknowledged by Kafka, or the producer is
    /// closed.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// The producer could not be created from the configuration.
    #[error("invalid publisher configuration")]
    Config(#[from] ProducerConfigError),
    /// The schedule topic could not be used: it does not exist (no `fanout-scheduler` has run
    /// against this cluster) or the cluster did not answer.
    #[error("cannot schedule on topic {topic}")]
    Schedule {
        /// The schedule topic.
        topic: String,
        /// Why (boxed: a rare error should not make every publish result larger).
        #[source]
        source: Box<fanout_kafka::ReadError>,
    },
    /// A scheduled event's `deliver_at` is further ahead than the publisher's
    /// `schedule_horizon_days`; nothing was written.
    #[error("deliver_at {deliver_at} is more than {horizon_days} days ahead (schedule_horizon_days)")]
    BeyondHorizon {
        /// The refused time, RFC 3339.
        deliver_at: String,
        /// The configured horizon.
        horizon_days: u32,
    },
    /// The registry client could not be created from the configuration.
    #[error("invalid schema registry configuration")]
    Registry(#[source] fanout_schema_registry::RegistryError),
}

fanout_core::debug_as_report!(PublishError);

impl PublishError {
    /// True when the same publish may succeed later (broker unreachable, timeouts).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Produce(e) if e.is_retriable())
    }
}
