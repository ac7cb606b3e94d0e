//! Sending prepared records with delivery confirmation, back-pressure and batches. The typed
//! [`crate::Publisher`] and the outbox relay both sit on this.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseRecord, Producer, ThreadedProducer},
};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    delivery::{Ack, BatchTracker, DeliveryContext, Ticket, Waiter},
    metrics::ProducerMetrics,
    PublishError,
};

/// A record ready to send: encoded payload and headers.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    /// Destination topic.
    pub topic: String,
    /// Partitioning key (the aggregate id).
    pub key: Vec<u8>,
    /// Encoded payload.
    pub payload: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The event id (`ce_id`), echoed in the [`Delivery`].
    pub event_id: Uuid,
}

impl OutgoingRecord {
    fn size(&self) -> usize {
        // Close to what librdkafka counts against message.max.bytes (record overhead aside).
        self.key.len()
            + self.payload.len()
            + self.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }

    fn owned_headers(&self) -> OwnedHeaders {
        self.headers.iter().fold(OwnedHeaders::new_with_capacity(self.headers.len()), |h, (key, value)| {
            h.insert(Header { key, value: Some(value) })
        })
    }
}

/// Where an acknowledged event is: it is durably in Kafka there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
    /// The event id (`ce_id`).
    pub event_id: Uuid,
}

/// Sends [`OutgoingRecord`]s and resolves each with its [`Delivery`] or a [`PublishError`].
#[derive(Clone)]
pub struct RawPublisher {
    producer: Arc<ThreadedProducer<DeliveryContext>>,
    max_message_bytes: usize,
}

impl std::fmt::Debug for RawPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPublisher")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl RawPublisher {
    /// Creates the producer from a complete librdkafka configuration.
    pub fn from_client_config(config: &ClientConfig) -> Result<Self, PublishError> {
        let max_message_bytes = config
            .get("message.max.bytes")
            .map(|v| {
                v.parse::<usize>().map_err(|_| PublishError::Config(format!("message.max.bytes = {v:?}")))
            })
            .transpose()?
            .unwrap_or(1_000_000);
        let context = DeliveryContext {
            metrics: ProducerMetrics::get(),
            in_flight: Default::default(),
            space: Default::default(),
        };
        let producer: ThreadedProducer<DeliveryContext> =
            config.create_with_context(context).map_err(|e| PublishError::Config(e.to_string()))?;
        Ok(Self { producer: Arc::new(producer), max_message_bytes })
    }

    /// Sends one record and waits until Kafka acknowledges it (or delivery finally fails).
    pub async fn send(&self, record: OutgoingRecord) -> Result<Delivery, PublishError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(&record, Waiter::One(tx)).await?;
        let ack = rx.await.map_err(|_| PublishError::Closed)?;
        into_delivery(record, ack)
    }

    /// Sends many records and waits for all acknowledgements, one result per record in input
    /// order. Records of one key keep their order (idempotent producer).
    pub async fn send_all(&self, records: Vec<OutgoingRecord>) -> Vec<Result<Delivery, PublishError>> {
        let tracker = BatchTracker::new(records.len());
        let mut early: Vec<Option<PublishError>> = (0..records.len()).map(|_| None).collect();
        for (index, record) in records.iter().enumerate() {
            let waiter = Waiter::Batch { tracker: tracker.clone(), index };
            if let Err(e) = self.enqueue(record, waiter).await {
                // The ticket never reached librdkafka, so close its slot by hand.
                tracker.fail_unsent(index, KafkaError::Canceled);
                early[index] = Some(e);
            }
        }
        let acks = tracker.wait().await;
        records
            .into_iter()
            .zip(acks)
            .zip(early)
            .map(|((record, ack), early)| match (early, ack) {
                (Some(e), _) => Err(e),
                (None, Some(ack)) => into_delivery(record, ack),
                (None, None) => Err(PublishError::Closed),
            })
            .collect()
    }

    /// Records handed to librdkafka and not yet acknowledged.
    pub fn in_flight(&self) -> i64 {
        self.producer.context().in_flight.load(Ordering::Acquire)
    }

    /// Waits until every in-flight record is acknowledged, at most `deadline`.
    pub async fn flush(&self, deadline: Duration) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(deadline))
            .await
            .map_err(|_| PublishError::Closed)?;
        flushed.map_err(|_| PublishError::FlushTimeout { in_flight: self.producer.in_flight_count() })
    }

    /// Hands a record to librdkafka, waiting while its queue is full (back-pressure).
    async fn enqueue(&self, record: &OutgoingRecord, waiter: Waiter) -> Result<(), PublishError> {
        let size = record.size();
        if size > self.max_message_bytes {
            return Err(PublishError::TooLarge {
                topic: record.topic.clone(),
                size,
                max: self.max_message_bytes,
            });
        }
        let context = self.producer.context();
        let mut ticket = Box::new(Ticket { started: Instant::now(), waiter });
        loop {
            // Registered before trying, so an acknowledgement between the failed send and the wait
            // is not missed.
            let space = context.space.notified();
            let base = BaseRecord::with_opaque_to(&record.topic, ticket)
                .key(&record.key[..])
                .payload(&record.payload[..])
                .headers(record.owned_headers());
            context.in_flight.fetch_add(1, Ordering::AcqRel);
            match self.producer.send(base) {
                Ok(()) => {
                    context.metrics.queue_depth.set(context.in_flight.load(Ordering::Acquire));
                    return Ok(());
                }
                Err((error, base)) => {
                    context.in_flight.fetch_sub(1, Ordering::AcqRel);
                    ticket = base.delivery_opaque;
                    if matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                        // The polling thread frees space as acknowledgements arrive; the timeout
                        // covers a wake-up that raced the registration above.
                        let _ = tokio::time::timeout(Duration::from_millis(10), space).await;
                        continue;
                    }
                    context.metrics.record_refused(&record.topic);
                    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
                        return Err(PublishError::TooLarge {
                            topic: record.topic.clone(),
                            size,
                            max: self.max_message_bytes,
                        });
                    }
                    return Err(PublishError::Kafka { topic: record.topic.clone(), source: error });
                }
            }
        }
    }
}

fn into_delivery(record: OutgoingRecord, ack: Ack) -> Result<Delivery, PublishError> {
    match ack {
        Ok((partition, offset)) => {
            Ok(Delivery { topic: record.topic, partition, offset, event_id: record.event_id })
        }
        Err(source) => Err(PublishError::Kafka { topic: record.topic, source }),
    }
}
