//! The typed publisher: event in, CloudEvents headers and Confluent wire-format Avro out.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, SystemTime},
};

use fanout_core::{
    envelope::Envelope,
    trace::{self, TraceParent},
    Event,
};
use fanout_kafka::{Delivered, OwnedRecord, Record, RecordProducer};
use fanout_schema_registry::{AvroSerde, Encoder};
use tracing::{
    field::{display, Empty},
    Instrument,
};
use uuid::Uuid;

use crate::{clock::Clock, PublishError, PublishOptions, PublisherConfig};

/// Where a published event is: durably in Kafka there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic (shared by the deliveries of one call).
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
    /// The event id (`ce_id`).
    pub event_id: Uuid,
}

/// Publishes domain events. Once [`Publisher::publish`] returns `Ok`, the event is durably in
/// Kafka exactly once (idempotent producer, `acks=all`); when it returns `Err`, it may not be.
///
/// Creating a publisher asks nothing of the broker or the registry. The first publish of each
/// event type (per topic) asks the registry once for its schema id, and every later one uses the
/// cached id, so publishing goes on while the registry is down; [`Publisher::prepare`] does that
/// first lookup at start-up instead, so a missing schema stops the service there.
///
/// ```no_run
/// # async fn example(request_trace: Option<fanout_core::trace::TraceParent>) -> Result<(), Box<dyn std::error::Error>> {
/// use fanout_events::{Category, PostPublished};
/// use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
///
/// let publisher = Publisher::new(PublisherConfig::new("post-service"))?;
/// publisher.prepare::<PostPublished>().await?;
/// let post = PostPublished {
///     post_id: 1,
///     user_id: 7,
///     category: Category::Job,
///     city: "Berlin".into(),
///     title: "Barista".into(),
///     published_at: 1_764_000_000_000,
/// };
/// let delivery = publisher.publish(&post).await?;
/// println!("event {} at {}/{}@{}", delivery.event_id, delivery.topic, delivery.partition, delivery.offset);
///
/// // Continuing the trace of the request that caused it, to another topic.
/// let mut options = PublishOptions::new().topic("post.published.eu");
/// options.trace_parent = request_trace;
/// publisher.publish_with(&post, &options).await?;
/// publisher.close(std::time::Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

/// One event type's encoders (each an `Arc<Encoder<T>>`), by topic.
type EncodersByTopic = HashMap<String, Arc<dyn Any + Send + Sync>>;

struct Inner {
    raw: RecordProducer,
    /// For metadata: the schedule topic's partition count.
    kafka: fanout_config::KafkaSettings,
    schedule_topic: String,
    schedule_horizon: Duration,
    schedule_partitions: tokio::sync::OnceCell<i32>,
    /// The transactional producer of reschedules (a cancel and its new entry commit together),
    /// created on first use; one transaction at a time.
    rescheduler: tokio::sync::OnceCell<tokio::sync::Mutex<RecordProducer>>,
    serde: AvroSerde,
    source: String,
    /// One encoder per event type, resolved (schema id looked up) on first use; afterwards the
    /// hot path makes no registry call, so publishing continues while the registry is down.
    /// Keyed by type, then topic, so a lookup needs no owned key.
    encoders: RwLock<HashMap<TypeId, EncodersByTopic>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("source", &self.inner.source).finish_non_exhaustive()
    }
}

impl Publisher {
    /// Creates a publisher from its configuration. Nothing is asked of the broker or the registry
    /// yet (see [`Publisher::prepare`]); an invalid configuration fails here.
    pub fn new(config: PublisherConfig) -> Result<Self, PublishError> {
        let raw = RecordProducer::new(&config.kafka, &config.producer)?;
        let serde = AvroSerde::from_settings(&config.registry).map_err(PublishError::Registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                raw,
                kafka: config.kafka.clone(),
                schedule_topic: config.schedule_topic,
                schedule_horizon: Duration::from_secs(u64::from(config.schedule_horizon_days) * 86_400),
                schedule_partitions: tokio::sync::OnceCell::new(),
                rescheduler: tokio::sync::OnceCell::new(),
                serde,
                source: config.source,
                encoders: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Looks up (or registers, if configured to) the schema of `T` for its topic now, so the
    /// first publish does not wait on the registry and a missing schema fails at start-up rather
    /// than at the first event.
    pub async fn prepare<T: Event>(&self) -> Result<(), PublishError> {
        self.encoder::<T>(T::TOPIC).await.map(|_| ())
    }

    /// [`Publisher::prepare`] for events of `T` published to `topic` instead of their type's
    /// own (its subject is `topic`'s).
    pub async fn prepare_for<T: Event>(&self, topic: &str) -> Result<(), PublishError> {
        self.encoder::<T>(topic).await.map(|_| ())
    }

    /// Publishes one event to its type's topic, as the root of a new trace, and waits for Kafka's
    /// acknowledgement.
    pub async fn publish<T: Event>(&self, event: &T) -> Result<Delivery, PublishError> {
        self.publish_with(event, &PublishOptions::default()).await
    }

    /// Publishes one event as `options` say (another topic, a trace to continue) and waits for
    /// Kafka's acknowledgement, in a `publish` span; when spans are exported, the event's
    /// `traceparent` names that span, so its consumers' `handle` spans are its children.
    pub async fn publish_with<T: Event>(
        &self,
        event: &T,
        options: &PublishOptions,
    ) -> Result<Delivery, PublishError> {
        let topic = options.topic_for::<T>();
        let encoder = self.encoder::<T>(topic).await?;
        let mut scratch = Scratch::default();
        // The span first: when spans are exported, the event's `traceparent` is its context.
        let span = tracing::info_span!("publish", event_type = T::TYPE, topic, event_id = Empty);
        let envelope = options.envelope::<T>(&self.inner.source, &span);
        span.record("event_id", display(envelope.id()));
        let record = scratch.fill(&encoder, topic, event, &envelope)?;
        let delivered = self.inner.raw.send(record).instrument(span).await?;
        Ok(Delivery {
            topic: Arc::from(topic),
            partition: delivered.partition,
            offset: delivered.offset,
            event_id: envelope.id(),
        })
    }

    /// Publishes many events as `options` say (each its own event id; with a trace parent, each a
    /// child span of it; when spans are exported, each names the call's `publish_all` span) and
    /// waits for all acknowledgements: one result per event, in order.
    /// Cheaper per event than a [`Publisher::publish`] each: one wake-up per call.
    pub async fn publish_all<T: Event>(
        &self,
        events: &[T],
        options: &PublishOptions,
    ) -> Vec<Result<Delivery, PublishError>> {
        let topic = options.topic_for::<T>();
        let span = tracing::info_span!("publish_all", event_type = T::TYPE, topic, count = events.len());
        // When spans are exported, every event names this span as its parent.
        let exported = trace::exported(&span, options.trace_parent);
        self.publish_batch(topic, events, options.trace_parent, exported).instrument(span).await
    }

    async fn publish_batch<T: Event>(
        &self,
        topic: &str,
        events: &[T],
        parent: Option<TraceParent>,
        exported: Option<TraceParent>,
    ) -> Vec<Result<Delivery, PublishError>> {
        // Everything that is the same for every event is resolved once per call: the encoder,
        // the topic's metric handles, the buffers. An encoder that cannot be resolved (the
        // registry is down and the schema not cached) is tried again for each event, as separate
        // `publish` calls would, since the registry may come back mid-batch.
        let mut encoder = None;
        let mut batch = self.inner.raw.batch::<PublishError>(events.len());
        let mut ids = Vec::with_capacity(events.len());
        let mut scratch = Scratch::default();
        let mut clock = Clock::new();
        for event in events {
            if encoder.is_none() {
                match self.encoder::<T>(topic).await {
                    Ok(resolved) => encoder = Some(resolved),
                    Err(e) => {
                        ids.push(Uuid::nil());
                        batch.fail(e);
                        continue;
                    }
                }
            }
            let Some(encoder) = encoder.as_deref() else { continue };
            let (started, now) = clock.now();
            let envelope = match exported {
                Some(trace) => Envelope::traced(T::TYPE, &self.inner.source, trace, now),
                None => Envelope::new(T::TYPE, &self.inner.source, parent, now),
            };
            ids.push(envelope.id());
            match scratch.fill(encoder, topic, event, &envelope) {
                Ok(record) => batch.send(record, started).await,
                Err(e) => batch.fail(e),
            }
        }
        let topic: Arc<str> = Arc::from(topic);
        batch
            .finish()
            .await
            .into_iter()
            .zip(ids)
            .map(|(outcome, event_id)| {
                outcome.map(|delivered| Delivery {
                    topic: topic.clone(),
                    partition: delivered.partition,
                    offset: delivered.offset,
                    event_id,
                })
            })
            .collect()
    }

    /// Encodes `event` as `options` say into a record with a fresh event id and its CloudEvents
    /// headers, without sending it; [`Publisher::send_records`] sends it, once or more. Sending
    /// one record twice is what an at-least-once upstream does after a lost acknowledgement: both
    /// copies carry the same `ce_id`, so consumers apply it once.
    pub async fn encode<T: Event>(
        &self,
        event: &T,
        options: &PublishOptions,
    ) -> Result<OwnedRecord, PublishError> {
        let topic = options.topic_for::<T>();
        let encoder = self.encoder::<T>(topic).await?;
        let payload = encoder.encode(event).map_err(|source| PublishError::Encode {
            event_type: T::TYPE,
            topic: topic.to_owned(),
            source,
        })?;
        let envelope = options.envelope::<T>(&self.inner.source, &tracing::Span::none());
        Ok(OwnedRecord {
            topic: topic.to_owned(),
            key: Some(event.key()),
            payload: Some(payload),
            headers: envelope
                .headers()
                .iter()
                .map(|(name, value)| ((*name).to_owned(), Some(value.to_vec())))
                .collect(),
        })
    }

    /// Sends records as they are, with the same delivery guarantee and no encoding or envelope
    /// added: records from [`Publisher::encode`], or bytes a test needs on a topic. One result
    /// per record, in order.
    pub async fn send_records(&self, records: &[OwnedRecord]) -> Vec<Result<Delivered, PublishError>> {
        let sent = self.inner.raw.send_all(records.iter().map(OwnedRecord::record)).await;
        sent.into_iter().map(|result| result.map_err(PublishError::from)).collect()
    }

    /// Waits until every in-flight event is acknowledged, at most `deadline`.
    pub async fn flush(&self, deadline: Duration) -> Result<(), PublishError> {
        Ok(self.inner.raw.flush(deadline).await?)
    }

    /// Flushes, then drops this handle.
    pub async fn close(self, deadline: Duration) -> Result<(), PublishError> {
        self.flush(deadline).await
    }

    /// The schedule topic scheduled events are written to.
    pub(crate) fn schedule_topic(&self) -> &str {
        &self.inner.schedule_topic
    }

    /// Refuses a `deliver_at` beyond the configured horizon.
    pub(crate) fn check_horizon(&self, deliver_at: SystemTime) -> Result<(), PublishError> {
        if deliver_at > SystemTime::now() + self.inner.schedule_horizon {
            return Err(PublishError::BeyondHorizon {
                deliver_at: chrono::DateTime::<chrono::Utc>::from(deliver_at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                horizon_days: (self.inner.schedule_horizon.as_secs() / 86_400) as u32,
            });
        }
        Ok(())
    }

    /// The schedule topic's partition count, asked of the cluster once.
    pub(crate) async fn schedule_partitions(&self) -> Result<i32, PublishError> {
        let inner = self.inner.clone();
        self.inner
            .schedule_partitions
            .get_or_try_init(|| async move {
                let topic = inner.schedule_topic.clone();
                let client = fanout_kafka::client_config(&inner.kafka);
                let error = |source| PublishError::Schedule {
                    topic: inner.schedule_topic.clone(),
                    source: Box::new(source),
                };
                match tokio::task::spawn_blocking(move || {
                    fanout_kafka::topic_partitions(&client, &topic, Duration::from_secs(10))
                })
                .await
                {
                    Ok(Ok(partitions)) => Ok(partitions.len() as i32),
                    Ok(Err(source)) => Err(error(source)),
                    Err(_) => Err(PublishError::Produce(fanout_kafka::ProduceError::Closed)),
                }
            })
            .await
            .copied()
    }

    /// A client configuration for this publisher's cluster (readers of the schedule topic).
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        fanout_kafka::client_config(&self.inner.kafka)
    }

    /// The reschedule producer, started on first use.
    pub(crate) async fn rescheduler(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, RecordProducer>, PublishError> {
        let producer = self
            .inner
            .rescheduler
            .get_or_try_init(|| async {
                let mut config = self.client_config();
                // A publisher that dies mid-reschedule holds readers of the partition back until
                // the broker aborts its transaction: seconds, not the default minute.
                config.set("transaction.timeout.ms", "10000");
                let id = format!("{}-reschedule-{}", self.inner.source, uuid::Uuid::now_v7());
                RecordProducer::transactional(config, &id, Duration::from_secs(30))
                    .await
                    .map(tokio::sync::Mutex::new)
            })
            .await?;
        Ok(producer.lock().await)
    }

    /// The record producer under this publisher, for the outbox relay.
    pub(crate) fn raw(&self) -> &RecordProducer {
        &self.inner.raw
    }

    /// The registry id of `schema` for `topic`'s values, following the configured schema
    /// selection (auto-register, latest or pinned). Cached.
    pub(crate) async fn schema_id(&self, topic: &str, schema: &str) -> Result<u32, PublishError> {
        self.inner.serde.schema_id_for(topic, schema).await.map_err(|source| PublishError::Encode {
            event_type: "outbox row",
            topic: topic.to_owned(),
            source,
        })
    }

    async fn encoder<T: Event>(&self, topic: &str) -> Result<Arc<Encoder<T>>, PublishError> {
        let cached = self
            .inner
            .encoders
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&TypeId::of::<T>())
            .and_then(|by_topic| by_topic.get(topic).cloned());
        if let Some(encoder) = cached.and_then(|e| e.downcast::<Encoder<T>>().ok()) {
            return Ok(encoder);
        }
        let encoder = Arc::new(self.inner.serde.encoder::<T>(topic).await.map_err(|source| {
            PublishError::Encode { event_type: T::TYPE, topic: topic.to_owned(), source }
        })?);
        self.inner
            .encoders
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(TypeId::of::<T>())
            .or_default()
            .insert(topic.to_owned(), encoder.clone());
        Ok(encoder)
    }
}

/// Buffers reused for every event of a call: librdkafka copies key and payload when it takes a
/// record, so one pair of buffers serves the whole batch.
#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    payload: Vec<u8>,
}

impl Scratch {
    /// Encodes `event` and its envelope into a record borrowing these buffers.
    fn fill<'a, T: Event>(
        &'a mut self,
        encoder: &Encoder<T>,
        topic: &'a str,
        event: &T,
        envelope: &Envelope<'_>,
    ) -> Result<Record<'a>, PublishError> {
        let encoded = if self.payload.capacity() == 0 {
            // A fresh buffer: the encoder sizes it from its last payload, in one allocation.
            encoder.encode(event).map(|payload| self.payload = payload)
        } else {
            self.payload.clear();
            encoder.encode_into(event, &mut self.payload)
        };
        encoded.map_err(|source| PublishError::Encode {
            event_type: T::TYPE,
            topic: topic.to_owned(),
            source,
        })?;
        self.key.clear();
        event.write_key(&mut self.key);
        Ok(Record {
            partition: None,
            topic,
            key: Some(&self.key),
            payload: Some(&self.payload),
            headers: envelope.headers().iter().map(|(name, value)| (*name, Some(*value))).collect(),
        })
    }
}
