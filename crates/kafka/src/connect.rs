//! Checking that the cluster answers, failing fast and by name when it refuses the credentials.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use rdkafka::{
    client::ClientContext,
    error::KafkaError,
    producer::{BaseProducer, DeliveryResult, Producer, ProducerContext},
    types::RDKafkaErrorCode,
    ClientConfig,
};

/// Why the cluster could not be reached.
#[derive(thiserror::Error)]
pub enum ConnectError {
    /// The broker refused the SASL credentials (or the TLS handshake failed on authentication).
    #[error("Kafka at {bootstrap} refused the credentials: {reason}")]
    Authentication {
        /// Where the client connected.
        bootstrap: String,
        /// librdkafka's words, e.g. "SASL authentication error: Authentication failed ...".
        reason: String,
    },
    /// No broker answered a metadata request in time.
    #[error("no Kafka broker at {bootstrap} answered within {waited:?}")]
    Unreachable {
        /// Where the client connected.
        bootstrap: String,
        /// How long was waited.
        waited: Duration,
        /// The last metadata request's error.
        #[source]
        source: KafkaError,
    },
    /// The configuration was refused by librdkafka (an unknown property, a bad value).
    #[error("invalid Kafka client configuration")]
    Config(#[source] KafkaError),
}

fanout_core::debug_as_report!(ConnectError);

/// Records the first authentication failure librdkafka reports.
#[derive(Default)]
struct Watch {
    authentication: Mutex<Option<String>>,
}

impl ProducerContext for Watch {
    type DeliveryOpaque = ();

    // Nothing is ever produced: the producer is only a handle that serves error events.
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            if let Ok(mut slot) = self.authentication.lock() {
                slot.get_or_insert_with(|| reason.to_owned());
            }
        }
    }
}

/// Connects with `config` and waits up to `timeout` for the cluster's metadata. A refused
/// password ends the wait at once with [`ConnectError::Authentication`] instead of the generic
/// transport failure librdkafka reports after the timeout.
pub async fn check_cluster(config: &ClientConfig, timeout: Duration) -> Result<(), ConnectError> {
    let config = config.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let bootstrap = config.get("bootstrap.servers").unwrap_or_default().to_owned();
        let producer: BaseProducer<Watch> =
            config.create_with_context(Watch::default()).map_err(ConnectError::Config)?;
        let deadline = Instant::now() + timeout;
        loop {
            let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(250));
            let error = match producer.client().fetch_metadata(None, slice) {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            // Serves librdkafka's error events, where an authentication failure is reported.
            producer.poll(Duration::ZERO);
            if let Some(reason) = producer.context().authentication.lock().ok().and_then(|slot| slot.clone())
            {
                return Err(ConnectError::Authentication { bootstrap, reason });
            }
            if Instant::now() >= deadline {
                return Err(ConnectError::Unreachable { bootstrap, waited: timeout, source: error });
            }
        }
    })
    .await;
    match checked {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Cancelled only when the runtime shuts down; nobody waits for the answer then.
        Err(_) => Ok(()),
    }
}
