//! The typed publisher: event in, CloudEvents headers and Confluent wire-format Avro out.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use fanout_core::{envelope::Envelope, trace::TraceParent, Event};
use fanout_kafka::{OwnedRecord, Record, RecordProducer};
use fanout_schema_registry::{AvroSerde, Encoder};
use tracing::Instrument;
use uuid::Uuid;

use crate::{clock::Clock, PublishError, PublisherConfig};

/// Where a published event is: durably in Kafka there.
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

/// Publishes domain events. Once [`Publisher::publish`] returns `Ok`, the event is durably in
/// Kafka exactly once (idempotent producer, `acks=all`); when it returns `Err`, it may not be.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use fanout_events::{Category, PostPublished};
/// use fanout_producer::{Publisher, PublisherConfig};
///
/// let publisher = Publisher::new(PublisherConfig::new("post-service")).await?;
/// let delivery = publisher
///     .publish(&PostPublished {
///         post_id: 1,
///         user_id: 7,
///         category: Category::Job,
///         city: "Berlin".into(),
///         title: "Barista".into(),
///         published_at: 1_764_000_000_000,
///     })
///     .await?;
/// println!("event {} at {}/{}@{}", delivery.event_id, delivery.topic, delivery.partition, delivery.offset);
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
    /// Creates a publisher from its configuration.
    pub async fn new(config: PublisherConfig) -> Result<Self, PublishError> {
        let raw = RecordProducer::new(&config.kafka, &config.producer)?;
        let serde = AvroSerde::from_settings(&config.registry).map_err(PublishError::Registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                raw,
                serde,
                source: config.source,
                encoders: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Publishes one event and waits for Kafka's acknowledgement. Starts a new trace.
    pub async fn publish<T: Event>(&self, event: &T) -> Result<Delivery, PublishError> {
        self.publish_traced(event, None).await
    }

    /// Publishes one event continuing the trace `parent` (e.g. the trace of the request or event
    /// that caused it), so its handlers join the same trace.
    pub async fn publish_traced<T: Event>(
        &self,
        event: &T,
        parent: Option<TraceParent>,
    ) -> Result<Delivery, PublishError> {
        self.publish_to(T::TOPIC, event, parent).await
    }

    /// Publishes one event to `topic` instead of the event type's own topic (tests, migrations,
    /// per-tenant topics). The schema subject follows `topic`.
    pub async fn publish_to<T: Event>(
        &self,
        topic: &str,
        event: &T,
        parent: Option<TraceParent>,
    ) -> Result<Delivery, PublishError> {
        let encoder = self.encoder::<T>(topic).await?;
        let mut scratch = Scratch::default();
        let envelope = Envelope::new(T::TYPE, &self.inner.source, parent, std::time::SystemTime::now());
        let record = scratch.fill(&encoder, topic, event, &envelope)?;
        let span = tracing::info_span!("publish", event_type = T::TYPE, topic, event_id = %envelope.id());
        let delivered = self.inner.raw.send(record).instrument(span).await?;
        Ok(Delivery {
            topic: topic.to_owned(),
            partition: delivered.partition,
            offset: delivered.offset,
            event_id: envelope.id(),
        })
    }

    /// Publishes many events and waits for all acknowledgements: one result per event, in order.
    /// Cheaper per event than calling [`Publisher::publish`] for each: one wake-up per batch.
    pub async fn publish_all<T: Event>(&self, events: &[T]) -> Vec<Result<Delivery, PublishError>> {
        self.publish_all_to(T::TOPIC, events).await
    }

    /// As [`Publisher::publish_all`], to `topic`.
    pub async fn publish_all_to<T: Event>(
        &self,
        topic: &str,
        events: &[T],
    ) -> Vec<Result<Delivery, PublishError>> {
        let span = tracing::info_span!("publish_all", event_type = T::TYPE, topic, count = events.len());
        self.publish_batch(topic, events).instrument(span).await
    }

    async fn publish_batch<T: Event>(
        &self,
        topic: &str,
        events: &[T],
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
            let envelope = Envelope::new(T::TYPE, &self.inner.source, None, now);
            ids.push(envelope.id());
            match scratch.fill(encoder, topic, event, &envelope) {
                Ok(record) => batch.send(record, started).await,
                Err(e) => batch.fail(e),
            }
        }
        batch
            .finish()
            .await
            .into_iter()
            .zip(ids)
            .map(|(outcome, event_id)| {
                outcome.map(|delivered| Delivery {
                    topic: topic.to_owned(),
                    partition: delivered.partition,
                    offset: delivered.offset,
                    event_id,
                })
            })
            .collect()
    }

    /// Resolves the schema of `T` now (registering it if configured to), so the first publish
    /// does not wait on the registry and a missing schema fails at start-up.
    pub async fn prepare<T: Event>(&self) -> Result<(), PublishError> {
        self.encoder::<T>(T::TOPIC).await.map(|_| ())
    }

    /// Waits until every in-flight event is acknowledged, at most `deadline`.
    pub async fn flush(&self, deadline: Duration) -> Result<(), PublishError> {
        Ok(self.inner.raw.flush(deadline).await?)
    }

    /// Flushes, then drops this handle.
    pub async fn close(self, deadline: Duration) -> Result<(), PublishError> {
        self.flush(deadline).await
    }

    /// The untyped layer, for relays that send pre-encoded records.
    pub fn raw(&self) -> &RecordProducer {
        &self.inner.raw
    }

    /// The registry id of `schema` for `topic`'s values, following the configured schema
    /// selection (auto-register, latest or pinned). Cached.
    pub async fn schema_id(&self, topic: &str, schema: &str) -> Result<u32, PublishError> {
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

    /// Encodes `event` for `topic` into a record with a fresh event id and CloudEvents headers,
    /// without sending it; [`Publisher::raw`] sends it. Sending one record twice is what an
    /// at-least-once upstream does after a lost acknowledgement: both copies carry the same
    /// `ce_id`, so consumers apply it once.
    pub async fn record<T: Event>(
        &self,
        topic: &str,
        event: &T,
        parent: Option<TraceParent>,
    ) -> Result<OwnedRecord, PublishError> {
        let encoder = self.encoder::<T>(topic).await?;
        let payload = encoder.encode(event).map_err(|source| PublishError::Encode {
            event_type: T::TYPE,
            topic: topic.to_owned(),
            source,
        })?;
        let envelope = Envelope::new(T::TYPE, &self.inner.source, parent, std::time::SystemTime::now());
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
            topic,
            key: Some(&self.key),
            payload: Some(&self.payload),
            headers: envelope.headers().iter().map(|(name, value)| (*name, Some(*value))).collect(),
        })
    }
}
