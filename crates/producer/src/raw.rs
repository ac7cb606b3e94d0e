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
    metrics::{TopicMetrics, TopicMetricsCache},
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
    fn parts(&self) -> RecordParts<'_> {
        let headers = self
            .headers
            .iter()
            .fold(OwnedHeaders::new_with_capacity(self.headers.len()), |h, (key, value)| {
                h.insert(Header { key, value: Some(value) })
            });
        RecordParts {
            topic: &self.topic,
            key: &self.key,
            payload: &self.payload,
            headers,
            header_bytes: self.headers.iter().map(|(k, v)| k.len() + v.len()).sum(),
        }
    }
}

/// A record as librdkafka takes it: borrowed key and payload (librdkafka copies them), headers
/// already in librdkafka's form. The typed publisher builds these straight from an event.
pub(crate) struct RecordParts<'a> {
    pub(crate) topic: &'a str,
    pub(crate) key: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) headers: OwnedHeaders,
    /// Header names and values, in bytes.
    pub(crate) header_bytes: usize,
}

impl RecordParts<'_> {
    /// Close to what librdkafka counts against message.max.bytes (record overhead aside).
    fn size(&self) -> usize {
        self.key.len() + self.payload.len() + self.header_bytes
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
    topics: Arc<TopicMetricsCache>,
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
        let producer: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext::new())
            .map_err(|e| PublishError::Config(e.to_string()))?;
        Ok(Self { producer: Arc::new(producer), max_message_bytes, topics: Default::default() })
    }

    /// Sends one record and waits until Kafka acknowledges it (or delivery finally fails).
    pub async fn send(&self, record: OutgoingRecord) -> Result<Delivery, PublishError> {
        let ack = self.send_parts(record.parts(), Instant::now()).await?;
        into_delivery(record.topic, record.event_id, ack)
    }

    /// Sends one record given as parts (handed over at `started`) and waits for its
    /// acknowledgement.
    pub(crate) async fn send_parts(
        &self,
        record: RecordParts<'_>,
        started: Instant,
    ) -> Result<Ack, PublishError> {
        let (tx, rx) = oneshot::channel();
        let metrics = self.topics.get(record.topic);
        let waiter = Waiter::One { sender: tx, metrics: metrics.clone() };
        let context = self.producer.context();
        // Counted before sending: the acknowledgement may arrive before `send` returns.
        let in_flight = context.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        context.metrics.queue_depth.set(in_flight);
        if let Err(e) = self.enqueue(record, Ticket { started, waiter }, &metrics).await {
            context.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        rx.await.map_err(|_| PublishError::Closed)
    }

    /// Sends many records and waits for all acknowledgements, one result per record in input
    /// order. Records of one key keep their order (idempotent producer).
    pub async fn send_all(&self, records: Vec<OutgoingRecord>) -> Vec<Result<Delivery, PublishError>> {
        let metrics = match records.first() {
            Some(first) if records.iter().all(|r| r.topic == first.topic) => {
                vec![self.topics.get(&first.topic)]
            }
            _ => records.iter().map(|r| self.topics.get(&r.topic)).collect(),
        };
        let mut batch = self.batch(records.len(), metrics);
        for record in &records {
            batch.send(record.parts(), Instant::now()).await;
        }
        let mut records = records.into_iter();
        batch
            .finish(|outcome| {
                let record = records.next();
                match (outcome, record) {
                    (Ok(ack), Some(record)) => into_delivery(record.topic, record.event_id, ack),
                    (Err(e), _) => Err(e),
                    (Ok(_), None) => Err(PublishError::Closed),
                }
            })
            .await
    }

    /// Starts a batch of `len` records; `metrics` as for [`BatchTracker::new`].
    pub(crate) fn batch(&self, len: usize, metrics: Vec<Arc<TopicMetrics>>) -> Batch<'_> {
        // The whole batch is counted in flight once, rather than once per record: the polling
        // thread decrements this counter on every acknowledgement, and a counter both threads
        // write per record bounces between their cores.
        let context = self.producer.context();
        let in_flight = context.in_flight.fetch_add(len as i64, Ordering::AcqRel) + len as i64;
        context.metrics.queue_depth.set(in_flight);
        Batch {
            publisher: self,
            tracker: BatchTracker::new(len, metrics),
            early: Vec::new(),
            next: 0,
            reserved: len as i64,
        }
    }

    /// The metric handles of `topic`.
    pub(crate) fn topic_metrics(&self, topic: &str) -> Arc<TopicMetrics> {
        self.topics.get(topic)
    }

    /// Records handed to librdkafka and not yet acknowledged. A `send_all`/`publish_all` call
    /// counts its whole batch when it starts handing records over.
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

    /// Hands a record to librdkafka, waiting while its queue is full (back-pressure). The caller
    /// has counted it in `in_flight`.
    async fn enqueue(
        &self,
        record: RecordParts<'_>,
        ticket: Ticket,
        metrics: &TopicMetrics,
    ) -> Result<(), PublishError> {
        let size = record.size();
        if size > self.max_message_bytes {
            return Err(PublishError::TooLarge {
                topic: record.topic.to_owned(),
                size,
                max: self.max_message_bytes,
            });
        }
        let base = BaseRecord::with_opaque_to(record.topic, Box::new(ticket))
            .key(record.key)
            .payload(record.payload)
            .headers(record.headers);
        let error = match self.producer.send(base) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), base)) => {
                match self.wait_for_space(base).await {
                    Ok(()) => return Ok(()),
                    Err(error) => error,
                }
            }
            Err((error, _)) => error,
        };
        metrics.record_refused();
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
            return Err(PublishError::TooLarge {
                topic: record.topic.to_owned(),
                size,
                max: self.max_message_bytes,
            });
        }
        Err(PublishError::Kafka { topic: record.topic.to_owned(), source: error })
    }

    /// Retries a record refused for a full queue until librdkafka takes it (back-pressure) or
    /// refuses it for another reason.
    async fn wait_for_space(
        &self,
        mut base: BaseRecord<'_, [u8], [u8], Box<Ticket>>,
    ) -> Result<(), KafkaError> {
        let context = self.producer.context();
        let _blocked = Blocked::new(&context.blocked);
        loop {
            // Registered before trying, so an acknowledgement between the failed send and the
            // wait is not missed.
            let space = context.space.notified();
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    // The polling thread frees space as acknowledgements arrive; the timeout
                    // covers a wake-up that raced the registration above.
                    let _ = tokio::time::timeout(Duration::from_millis(10), space).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

/// Counts a sender waiting for queue space while it lives, so acknowledgements wake it.
struct Blocked<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Blocked<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One `send_all`/`publish_all` call in progress: records are handed to librdkafka one at a
/// time with [`Batch::send`] (or failed before sending with [`Batch::fail`]); [`Batch::finish`]
/// waits once for all their acknowledgements.
pub(crate) struct Batch<'p> {
    publisher: &'p RawPublisher,
    tracker: Arc<BatchTracker>,
    /// Records that never reached librdkafka, with why, in index order.
    early: Vec<(usize, PublishError)>,
    /// The index of the next record.
    next: usize,
    /// Records counted in flight by [`RawPublisher::batch`] that are not yet sent or failed.
    reserved: i64,
}

impl Batch<'_> {
    /// Hands the next record to librdkafka (at `started`), waiting while its queue is full.
    pub(crate) async fn send(&mut self, record: RecordParts<'_>, started: Instant) {
        let index = self.take_index();
        let ticket = Ticket { started, waiter: Waiter::Batch { tracker: self.tracker.clone(), index } };
        let Some(metrics) = self.tracker.metrics(index) else {
            return self.refused(index, PublishError::Closed);
        };
        if let Err(e) = self.publisher.enqueue(record, ticket, metrics).await {
            self.refused(index, e);
        }
    }

    /// Fails the next record without sending it (it could not be encoded).
    pub(crate) fn fail(&mut self, error: PublishError) {
        let index = self.take_index();
        self.refused(index, error);
    }

    fn take_index(&mut self) -> usize {
        let index = self.next;
        self.next += 1;
        self.reserved -= 1;
        index
    }

    fn refused(&mut self, index: usize, error: PublishError) {
        self.publisher.producer.context().in_flight.fetch_sub(1, Ordering::AcqRel);
        // The record never reached librdkafka, so no report will close its slot: close it here.
        self.tracker.fail_unsent(index, KafkaError::Canceled);
        self.early.push((index, error));
    }

    /// Waits for every acknowledgement; then each record's outcome, in order, through `each`.
    pub(crate) async fn finish<R>(mut self, mut each: impl FnMut(Result<Ack, PublishError>) -> R) -> Vec<R> {
        // Records never handed over (a caller that sent fewer than it announced) are closed.
        while self.reserved > 0 {
            self.fail(PublishError::Closed);
        }
        let mut early = std::mem::take(&mut self.early).into_iter().peekable();
        self.tracker
            .wait(|index, ack| {
                each(match early.next_if(|(i, _)| *i == index) {
                    Some((_, e)) => Err(e),
                    None => ack.ok_or(PublishError::Closed),
                })
            })
            .await
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        // A batch dropped half-way (its caller's future was dropped) un-counts what it never sent.
        if self.reserved > 0 {
            self.publisher.producer.context().in_flight.fetch_sub(self.reserved, Ordering::AcqRel);
        }
    }
}

fn into_delivery(topic: String, event_id: Uuid, ack: Ack) -> Result<Delivery, PublishError> {
    match ack {
        Ok((partition, offset)) => Ok(Delivery { topic, partition, offset, event_id }),
        Err(source) => Err(PublishError::Kafka { topic, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publisher whose broker does not exist: creating it needs none, and nothing here sends.
    fn offline() -> RawPublisher {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        RawPublisher::from_client_config(&config).expect("a producer needs no broker to be created")
    }

    fn not_encoded() -> PublishError {
        PublishError::Config("not encoded".into())
    }

    #[tokio::test]
    async fn a_batch_reports_every_record_in_order_and_uncounts_what_it_never_sent() {
        let raw = offline();
        let mut batch = raw.batch(3, vec![raw.topic_metrics("t")]);
        assert_eq!(raw.in_flight(), 3, "counted in flight up front");
        batch.fail(not_encoded());
        assert_eq!(raw.in_flight(), 2);
        // The caller announced three records and handed over one: the other two are closed.
        let outcomes = batch.finish(|outcome| outcome.map(|_| ()).map_err(|e| e.to_string())).await;
        assert_eq!(
            outcomes,
            [
                Err(not_encoded().to_string()),
                Err(PublishError::Closed.to_string()),
                Err(PublishError::Closed.to_string())
            ]
        );
        assert_eq!(raw.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_dropped_batch_uncounts_what_it_never_sent() {
        let raw = offline();
        let mut batch = raw.batch(5, vec![raw.topic_metrics("t")]);
        batch.fail(not_encoded());
        drop(batch);
        assert_eq!(raw.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_oversized_record_is_refused_before_librdkafka() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1").set("message.max.bytes", "1000");
        let raw = RawPublisher::from_client_config(&config).expect("producer");
        let record = OutgoingRecord {
            topic: "t".into(),
            key: b"k".to_vec(),
            payload: vec![0; 900],
            headers: vec![("h".into(), vec![0; 200])],
            event_id: Uuid::nil(),
        };
        let results = raw.send_all(vec![record]).await;
        assert!(
            matches!(results.as_slice(), [Err(PublishError::TooLarge { size: 1102, max: 1000, .. })]),
            "{results:?}"
        );
        assert_eq!(raw.in_flight(), 0);
    }
}
