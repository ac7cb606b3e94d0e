//! The one record producer: every record Fanout writes to Kafka goes through [`RecordProducer`]
//! (the SDK's `Publisher`, the outbox relay, the consumer runtime's retry and dead-letter records,
//! `fanout dlq replay`).
//!
//! Durability is not configurable: idempotent, `acks=all`, at most five requests in flight, so a
//! record acknowledged `Ok` is in Kafka exactly once and one key's records keep their order. A full
//! local queue makes a send wait (back-pressure) instead of failing.

mod config;
mod delivery;
mod metrics;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseRecord, Producer, ThreadedProducer},
};
use tokio::sync::oneshot;

pub use config::{producer_config, ProducerConfigError, ProducerSettings};
use delivery::{Ack, BatchTracker, DeliveryContext, Ticket, Waiter};
use metrics::{TopicMetrics, TopicMetricsCache};

/// Record headers, already in librdkafka's form, with their size in bytes.
pub struct Headers {
    inner: OwnedHeaders,
    bytes: usize,
}

impl Headers {
    /// No headers, room for `capacity`.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { inner: OwnedHeaders::new_with_capacity(capacity), bytes: 0 }
    }

    /// These headers and one more; `None` is a header without a value (Kafka's null), which is
    /// not the same as an empty one.
    pub fn add(mut self, name: &str, value: Option<&[u8]>) -> Self {
        self.bytes += name.len() + value.map_or(0, <[u8]>::len);
        self.inner = self.inner.insert(Header { key: name, value });
        self
    }

    /// Names and values, in bytes, as counted against `message.max.bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl<'h> FromIterator<(&'h str, Option<&'h [u8]>)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'h str, Option<&'h [u8]>)>>(pairs: I) -> Self {
        let pairs = pairs.into_iter();
        let capacity = pairs.size_hint().0;
        pairs.fold(Self::with_capacity(capacity), |headers, (name, value)| headers.add(name, value))
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rdkafka::message::Headers as _;
        f.debug_map()
            .entries(self.inner.iter().map(|h| (h.key, h.value.map(String::from_utf8_lossy))))
            .finish()
    }
}

/// A record to send. Key and payload are borrowed: librdkafka copies them when it takes the
/// record, so a caller can reuse its buffers for the next one.
#[derive(Debug)]
pub struct Record<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// The partition, for a topic whose writer picks it (the registry's one-partition log);
    /// `None`, as almost always: the key's partition.
    pub partition: Option<i32>,
    /// Partitioning key; records without one are spread over the partitions.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a tombstone.
    pub payload: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: Headers,
}

impl Record<'_> {
    /// Close to what librdkafka counts against `message.max.bytes` (record overhead aside).
    fn size(&self) -> usize {
        self.key.map_or(0, <[u8]>::len) + self.payload.map_or(0, <[u8]>::len) + self.headers.bytes
    }
}

/// A record whose parts are owned, for records kept to be sent later or more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Destination topic.
    pub topic: String,
    /// Partitioning key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub payload: Option<Vec<u8>>,
    /// Headers, in order; `None` values are null headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl OwnedRecord {
    /// The record to hand to [`RecordProducer::send`].
    pub fn record(&self) -> Record<'_> {
        Record {
            partition: None,
            topic: &self.topic,
            key: self.key.as_deref(),
            payload: self.payload.as_deref(),
            headers: self.headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())).collect(),
        }
    }
}

/// Where an acknowledged record is: durably in Kafka there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
}

/// Why a record was not delivered.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
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
    #[error("Kafka did not acknowledge the record for topic {topic}")]
    NotDelivered {
        /// The topic.
        topic: String,
        /// Why, in librdkafka's words.
        #[source]
        source: ClientError,
    },
    /// The producer's delivery thread stopped before acknowledging the record.
    #[error("the producer is closed")]
    Closed,
    /// Some in-flight records were not acknowledged by the flush deadline.
    #[error("{in_flight} records still in flight at the flush deadline")]
    FlushTimeout {
        /// Records not yet acknowledged.
        in_flight: i32,
    },
    /// A transaction step failed (see [`RecordProducer::transactional`]). When
    /// [`ProduceError::is_fenced`], another instance took over this producer's work and this one
    /// must stop; otherwise abort and try the transaction again.
    #[error("could not {operation} the Kafka transaction")]
    Transaction {
        /// What was attempted: `start`, `begin`, `commit`, `abort`.
        operation: &'static str,
        /// Why, in librdkafka's words.
        #[source]
        source: ClientError,
    },
}

fanout_core::debug_as_report!(ProduceError);

impl ProduceError {
    /// True when sending the same record again later may succeed (broker unreachable, timeouts).
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::NotDelivered { source, .. } => source.is_retriable(),
            Self::FlushTimeout { .. } => true,
            Self::Transaction { .. } => !self.is_fenced(),
            Self::TooLarge { .. } | Self::Closed => false,
        }
    }

    /// True when a transaction failed for good: a newer producer with the same transactional id,
    /// or a newer consumer-group generation, fenced this one (or librdkafka reports a fatal
    /// error). Its work is someone else's now.
    pub fn is_fenced(&self) -> bool {
        match self {
            Self::Transaction { source, .. } => match &source.0 {
                KafkaError::Transaction(error) => error.is_fatal(),
                other => other.rdkafka_error_code().is_some_and(|code| {
                    matches!(code, RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
                }),
            },
            _ => false,
        }
    }

    fn transaction(operation: &'static str, error: KafkaError) -> Self {
        Self::Transaction { operation, source: ClientError(error) }
    }

    fn not_delivered(topic: &str, error: KafkaError) -> Self {
        Self::NotDelivered { topic: topic.to_owned(), source: ClientError(error) }
    }
}

/// The Kafka client library's error (why a record was not delivered, why a producer could not be
/// created). Opaque, so that code handling Fanout's errors does not depend on the client
/// library's types; [`ClientError::is_retriable`] says what callers act on.
#[derive(Clone, thiserror::Error)]
#[error(transparent)]
pub struct ClientError(KafkaError);

fanout_core::debug_as_report!(ClientError);

impl ClientError {
    /// True for the errors that may clear up: timeouts, an unreachable or restarting broker,
    /// too few in-sync replicas, a full queue.
    pub fn is_retriable(&self) -> bool {
        use RDKafkaErrorCode as C;
        self.0.rdkafka_error_code().is_some_and(|code| {
            matches!(
                code,
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
        })
    }
}

/// Sends [`Record`]s and resolves each with where it landed ([`Delivered`]) or a
/// [`ProduceError`]. Cloning is cheap and shares the producer.
#[derive(Clone)]
pub struct RecordProducer {
    producer: Arc<ThreadedProducer<DeliveryContext>>,
    max_message_bytes: usize,
    topics: Arc<TopicMetricsCache>,
}

impl std::fmt::Debug for RecordProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordProducer")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

/// librdkafka properties the delivery guarantee depends on; every producer gets them.
pub(crate) const GUARANTEES: [(&str, &str); 3] =
    [("acks", "all"), ("enable.idempotence", "true"), ("max.in.flight.requests.per.connection", "5")];

impl RecordProducer {
    /// A producer for `kafka` (with its `[kafka.properties]`) tuned by `settings`; see
    /// [`producer_config`] for what is refused.
    pub fn new(
        kafka: &fanout_config::KafkaSettings,
        settings: &ProducerSettings,
    ) -> Result<Self, ProducerConfigError> {
        Self::from_config(producer_config(kafka, settings)?)
    }

    /// A producer from a complete librdkafka configuration, for callers that assemble their own
    /// (the consumer runtime filters its consumer-only properties). The delivery guarantee is
    /// set on top of whatever `config` says.
    pub fn from_config(mut config: ClientConfig) -> Result<Self, ProducerConfigError> {
        for (key, value) in GUARANTEES {
            config.set(key, value);
        }
        let producer: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext::new())
            .map_err(|e| ProducerConfigError::Create(ClientError(e)))?;
        // librdkafka has validated the value by now; its default otherwise.
        let max_message_bytes =
            config.get("message.max.bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(1_000_000);
        Ok(Self { producer: Arc::new(producer), max_message_bytes, topics: Default::default() })
    }

    /// A transactional producer (`transactional.id` = `id`), its transactions initialised: records
    /// sent between [`RecordProducer::begin`] and [`RecordProducer::commit`] become visible to
    /// `read_committed` consumers together, with the consumer offsets given to `commit`, or not
    /// at all. Starting it fences any older producer with the same id. One task drives its
    /// transactions; its records are sent with [`RecordProducer::send_all`] as usual.
    pub async fn transactional(
        mut config: ClientConfig,
        id: &str,
        timeout: Duration,
    ) -> Result<Self, ProduceError> {
        config.set("transactional.id", id);
        let producer = Self::from_config(config).map_err(|e| match e {
            ProducerConfigError::Create(source) => ProduceError::Transaction { operation: "create", source },
            other => ProduceError::transaction("create", KafkaError::ClientCreation(other.to_string())),
        })?;
        producer.blocking("start", move |p| p.init_transactions(timeout)).await?;
        Ok(producer)
    }

    /// Begins a transaction.
    pub async fn begin(&self) -> Result<(), ProduceError> {
        self.blocking("begin", |p| p.begin_transaction()).await
    }

    /// Adds `offsets` of the consumer group `group` to the transaction and commits it: the
    /// records and the offsets become visible together. A consumer-group generation that moved
    /// on (a rebalance gave the partitions away) fences the commit.
    pub async fn commit(
        &self,
        offsets: rdkafka::TopicPartitionList,
        group: rdkafka::consumer::ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), ProduceError> {
        self.blocking("commit", move |p| {
            if offsets.count() > 0 {
                p.send_offsets_to_transaction(&offsets, &group, timeout)?;
            }
            p.commit_transaction(timeout)
        })
        .await
    }

    /// Commits the transaction, which carries records only (no consumer offsets).
    pub async fn commit_records(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.blocking("commit", move |p| p.commit_transaction(timeout)).await
    }

    /// Aborts the transaction: none of its records becomes visible to `read_committed` readers.
    pub async fn abort(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.blocking("abort", move |p| p.abort_transaction(timeout)).await
    }

    /// Runs one of librdkafka's blocking transaction calls off the async workers.
    async fn blocking(
        &self,
        operation: &'static str,
        call: impl FnOnce(&ThreadedProducer<DeliveryContext>) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), ProduceError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || call(&producer))
            .await
            .map_err(|_| ProduceError::Closed)?
            .map_err(|e| ProduceError::transaction(operation, e))
    }

    /// Sends one record and waits until Kafka acknowledges it (or delivery finally fails).
    pub async fn send(&self, record: Record<'_>) -> Result<Delivered, ProduceError> {
        let (tx, rx) = oneshot::channel();
        let topic = record.topic;
        let metrics = self.topics.get(topic);
        let waiter = Waiter::One { sender: tx, metrics: metrics.clone() };
        let context = self.producer.context();
        // Counted before sending: the acknowledgement may arrive before `send` returns.
        context.count(1);
        if let Err(e) = self.enqueue(record, Ticket { started: Instant::now(), waiter }, &metrics).await {
            context.uncount(1);
            return Err(e);
        }
        match rx.await {
            Ok(ack) => delivered(topic, ack),
            Err(_) => Err(ProduceError::Closed),
        }
    }

    /// Sends many records and waits for all acknowledgements, one result per record in input
    /// order. Records of one key keep their order.
    pub async fn send_all<'r, I>(&self, records: I) -> Vec<Result<Delivered, ProduceError>>
    where
        I: IntoIterator<Item = Record<'r>>,
        I::IntoIter: ExactSizeIterator,
    {
        let records = records.into_iter();
        let mut batch = self.batch(records.len());
        for record in records {
            batch.send(record, Instant::now()).await;
        }
        batch.finish().await
    }

    /// Starts a batch of `len` records: hand them over with [`Batch::send`], then wait once for
    /// all their acknowledgements with [`Batch::finish`]. Cheaper per record than
    /// [`RecordProducer::send`]: one wake-up per batch. `E` is the caller's error type, for
    /// records that fail before they are sent ([`Batch::fail`]).
    pub fn batch<E: From<ProduceError>>(&self, len: usize) -> Batch<'_, E> {
        // The whole batch is counted in flight once, rather than once per record: the polling
        // thread decrements this counter on every acknowledgement, and a counter both threads
        // write per record bounces between their cores.
        self.producer.context().count(len as i64);
        Batch {
            producer: self,
            tracker: BatchTracker::new(len),
            topic: None,
            early: Vec::new(),
            next: 0,
            reserved: len as i64,
        }
    }

    /// Records handed to librdkafka and not yet acknowledged. A batch counts all its records
    /// when it starts.
    pub fn in_flight(&self) -> i64 {
        self.producer.context().in_flight.load(Ordering::Acquire)
    }

    /// Waits until every in-flight record is acknowledged, at most `deadline`.
    pub async fn flush(&self, deadline: Duration) -> Result<(), ProduceError> {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(deadline))
            .await
            .map_err(|_| ProduceError::Closed)?;
        flushed.map_err(|_| ProduceError::FlushTimeout { in_flight: self.producer.in_flight_count() })
    }

    /// Hands a record to librdkafka, waiting while its queue is full (back-pressure). The caller
    /// has counted it in `in_flight`.
    async fn enqueue(
        &self,
        record: Record<'_>,
        ticket: Ticket,
        metrics: &TopicMetrics,
    ) -> Result<(), ProduceError> {
        let size = record.size();
        let too_large =
            || ProduceError::TooLarge { topic: record.topic.to_owned(), size, max: self.max_message_bytes };
        if size > self.max_message_bytes {
            return Err(too_large());
        }
        let mut base =
            BaseRecord::with_opaque_to(record.topic, Box::new(ticket)).headers(record.headers.inner);
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(payload) = record.payload {
            base = base.payload(payload);
        }
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
            return Err(too_large());
        }
        Err(ProduceError::not_delivered(record.topic, error))
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
struct Blocked<'a>(&'a AtomicUsize);

impl<'a> Blocked<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A batch in progress (see [`RecordProducer::batch`]): records are handed to librdkafka one at
/// a time with [`Batch::send`] (or failed before sending with [`Batch::fail`]);
/// [`Batch::finish`] waits once for all their acknowledgements.
pub struct Batch<'p, E> {
    producer: &'p RecordProducer,
    tracker: Arc<BatchTracker>,
    /// The topic of the batch's first record and its metric handles: a batch usually goes to one
    /// topic, and then its records are recorded without a lookup each.
    topic: Option<(String, Arc<TopicMetrics>)>,
    /// Records that never reached librdkafka, with why, in index order.
    early: Vec<(usize, E)>,
    /// The index of the next record.
    next: usize,
    /// Records counted in flight by [`RecordProducer::batch`] that are not yet sent or failed.
    reserved: i64,
}

impl<E> std::fmt::Debug for Batch<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("next", &self.next)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl<E: From<ProduceError>> Batch<'_, E> {
    /// Hands the next record to librdkafka, waiting while its queue is full. `started` is when the
    /// caller took it up (the start of `fanout_produce_duration_seconds`), so a caller that reads
    /// the clock anyway need not read it twice.
    pub async fn send(&mut self, record: Record<'_>, started: Instant) {
        let index = self.take_index();
        let (producer, tracker) = (self.producer, &self.tracker);
        let (topic, shared) = self.topic.get_or_insert_with(|| {
            let metrics = producer.topics.get(record.topic);
            let _ = tracker.metrics.set(metrics.clone());
            (record.topic.to_owned(), metrics)
        });
        // A record for another topic than the batch's first carries its own handles.
        let own = (topic != record.topic).then(|| producer.topics.get(record.topic));
        let ticket = Ticket {
            started,
            waiter: Waiter::Batch { tracker: tracker.clone(), index, metrics: own.clone() },
        };
        let metrics: &TopicMetrics = own.as_deref().unwrap_or(shared);
        let sent = producer.enqueue(record, ticket, metrics).await;
        if let Err(e) = sent {
            self.refused(index, e.into());
        }
    }

    /// Fails the next record without sending it (the caller could not build it).
    pub fn fail(&mut self, error: E) {
        let index = self.take_index();
        self.refused(index, error);
    }

    fn take_index(&mut self) -> usize {
        let index = self.next;
        self.next += 1;
        self.reserved -= 1;
        index
    }

    fn refused(&mut self, index: usize, error: E) {
        self.producer.producer.context().uncount(1);
        // The record never reached librdkafka, so no report will close its slot: close it here.
        self.tracker.fail_unsent(index, KafkaError::Canceled);
        self.early.push((index, error));
    }

    /// Waits for every acknowledgement; then each record's outcome, in order. Records announced
    /// to [`RecordProducer::batch`] but never sent are [`ProduceError::Closed`].
    pub async fn finish(mut self) -> Vec<Result<Delivered, E>> {
        while self.reserved > 0 {
            self.fail(ProduceError::Closed.into());
        }
        let mut early = std::mem::take(&mut self.early).into_iter().peekable();
        let topic = self.topic.as_ref().map(|(topic, _)| topic.as_str()).unwrap_or_default();
        self.tracker
            .wait(|index, ack| match early.next_if(|(i, _)| *i == index) {
                Some((_, e)) => Err(e),
                None => match ack {
                    Some(ack) => delivered(topic, ack).map_err(E::from),
                    None => Err(ProduceError::Closed.into()),
                },
            })
            .await
    }
}

impl<E> Drop for Batch<'_, E> {
    fn drop(&mut self) {
        // A batch dropped half-way (its caller's future was dropped) un-counts what it never sent.
        if self.reserved > 0 {
            self.producer.producer.context().uncount(self.reserved);
        }
    }
}

fn delivered(topic: &str, ack: Ack) -> Result<Delivered, ProduceError> {
    match ack {
        Ok((partition, offset)) => Ok(Delivered { partition, offset }),
        Err(error) => Err(ProduceError::not_delivered(topic, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer whose broker does not exist: creating it needs none, and nothing here sends.
    fn offline(max_message_bytes: Option<&str>) -> RecordProducer {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        if let Some(max) = max_message_bytes {
            config.set("message.max.bytes", max);
        }
        RecordProducer::from_config(config).expect("a producer needs no broker to be created")
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Failed {
        NotBuilt,
        Produce(String),
    }

    impl From<ProduceError> for Failed {
        fn from(e: ProduceError) -> Self {
            Self::Produce(e.to_string())
        }
    }

    #[tokio::test]
    async fn a_batch_reports_every_record_in_order_and_uncounts_what_it_never_sent() {
        let producer = offline(None);
        let mut batch = producer.batch::<Failed>(3);
        assert_eq!(producer.in_flight(), 3, "counted in flight up front");
        batch.fail(Failed::NotBuilt);
        assert_eq!(producer.in_flight(), 2);
        // The caller announced three records and handed over one: the other two are closed.
        let outcomes = batch.finish().await;
        let closed = Failed::Produce(ProduceError::Closed.to_string());
        assert_eq!(outcomes, [Err(Failed::NotBuilt), Err(closed.clone()), Err(closed)]);
        assert_eq!(producer.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_dropped_batch_uncounts_what_it_never_sent() {
        let producer = offline(None);
        let mut batch = producer.batch::<ProduceError>(5);
        batch.fail(ProduceError::Closed);
        drop(batch);
        assert_eq!(producer.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_oversized_record_is_refused_before_librdkafka() {
        let producer = offline(Some("1000"));
        let payload = vec![0; 900];
        let value = vec![0; 200];
        let record = Record {
            partition: None,
            topic: "t",
            key: Some(b"k"),
            payload: Some(&payload),
            headers: Headers::with_capacity(1).add("h", Some(&value)),
        };
        let results = producer.send_all([record]).await;
        assert!(
            matches!(results.as_slice(), [Err(ProduceError::TooLarge { size: 1102, max: 1000, .. })]),
            "{results:?}"
        );
        assert_eq!(producer.in_flight(), 0);
    }

    #[test]
    fn headers_count_their_bytes_and_keep_null_values_apart_from_empty_ones() {
        use rdkafka::message::Headers as _;
        let headers: Headers =
            [("a", Some(&b"xyz"[..])), ("null", None), ("empty", Some(&b""[..]))].into_iter().collect();
        assert_eq!(headers.bytes(), 1 + 3 + 4 + 5);
        let values: Vec<_> = headers.inner.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(values, [("a", Some(&b"xyz"[..])), ("null", None), ("empty", Some(&b""[..]))]);
    }
}
