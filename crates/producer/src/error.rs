use rdkafka::error::KafkaError;

/// Why a publish failed. Each variant says whether trying again later can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event could not be encoded (schema lookup or Avro encoding).
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
    /// The record is larger than the producer's `message.max.bytes`; it was not sent.
    #[error(
        "record for topic {topic} is {size} bytes, over the {max}-byte limit (message.max.bytes); not sent"
    )]
    TooLarge {
        /// The topic.
        topic: String,
        /// Key, payload and headers, in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Kafka did not acknowledge the record: the broker refused it, or it could not be delivered
    /// within `delivery.timeout.ms` (librdkafka retried until then).
    #[error("kafka did not acknowledge the record for topic {topic}")]
    Kafka {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The publisher is closed, or its delivery thread stopped before acknowledging.
    #[error("the publisher is closed")]
    Closed,
    /// Some in-flight records were not acknowledged by the flush deadline.
    #[error("{in_flight} records still in flight at the flush deadline")]
    FlushTimeout {
        /// Records not yet acknowledged.
        in_flight: i32,
    },
    /// The producer could not be created from its configuration.
    #[error("invalid producer configuration: {0}")]
    Config(String),
}

impl PublishError {
    /// True when the same publish may succeed later (broker unreachable, timeouts).
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Kafka { source, .. } => source.rdkafka_error_code().is_some_and(|c| {
                use rdkafka::types::RDKafkaErrorCode as C;
                matches!(
                    c,
                    C::MessageTimedOut
                        | C::RequestTimedOut
                        | C::AllBrokersDown
                        | C::BrokerTransportFailure
                        | C::NotEnoughReplicas
                        | C::NotEnoughReplicasAfterAppend
                        | C::LeaderNotAvailable
                        | C::NotLeaderForPartition
                        | C::QueueFull
                )
            }),
            Self::FlushTimeout { .. } => true,
            _ => false,
        }
    }
}
