//! The typed publisher: event in, CloudEvents headers and Confluent wire-format Avro out.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use fanout_core::{trace::TraceParent, Event};
use fanout_schema_registry::{AvroSerde, Encoder};
use tracing::Instrument;

use crate::{
    envelope::{Clock, Stamp},
    raw::{Delivery, OutgoingRecord, RawPublisher, RecordParts},
    PublishError, PublisherConfig,
};

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
    raw: RawPublisher,
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
        let raw = RawPublisher::from_client_config(&config.client_config()?)?;
        let serde = AvroSerde::from_settings(&config.registry)
            .map_err(|e| PublishError::Config(format!("schema registry: {e}")))?;
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
        let (started, now) = Clock::new().now();
        let stamp = Stamp::new(parent, now);
        let record = scratch.fill(&encoder, topic, event, &stamp, &self.inner.source)?;
        let span = tracing::info_span!("publish", event_type = T::TYPE, topic, event_id = %stamp.event_id);
        let ack = self.inner.raw.send_parts(record, started).instrument(span).await?;
        match ack {
            Ok((partition, offset)) => {
                Ok(Delivery { topic: topic.to_owned(), partition, offset, event_id: stamp.event_id })
            }
            Err(source) => Err(PublishError::Kafka { topic: topic.to_owned(), source }),
        }
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
        if events.is_empty() {
            return Vec::new();
        }
        // Everything that is the same for every event is resolved once per call: the encoder,
        // the topic's metric handles, the buffers.
        let encoder = match self.encoder::<T>(topic).await {
            Ok(encoder) => encoder,
            Err(first) => return self.publish_batch_unresolved(topic, events, first).await,
        };
        let raw = &self.inner.raw;
        let mut batch = raw.batch(events.len(), vec![raw.topic_metrics(topic)]);
        let mut ids = Vec::with_capacity(events.len());
        let mut scratch = Scratch::default();
        let mut clock = Clock::new();
        for event in events {
            let (started, now) = clock.now();
            let stamp = Stamp::new(None, now);
            ids.push(stamp.event_id);
            match scratch.fill(&encoder, topic, event, &stamp, &self.inner.source) {
                Ok(record) => batch.send(record, started).await,
                Err(e) => batch.fail(e),
            }
        }
        let mut ids = ids.into_iter();
        batch
            .finish(|outcome| {
                let event_id = ids.next().unwrap_or_default();
                match outcome? {
                    Ok((partition, offset)) => {
                        Ok(Delivery { topic: topic.to_owned(), partition, offset, event_id })
                    }
                    Err(source) => Err(PublishError::Kafka { topic: topic.to_owned(), source }),
                }
            })
            .await
    }

    /// `publish_all` when `T`'s schema could not be resolved for the first event: each event
    /// tries again (the registry may come back mid-batch), as separate `publish` calls would.
    async fn publish_batch_unresolved<T: Event>(
        &self,
        topic: &str,
        events: &[T],
        first: PublishError,
    ) -> Vec<Result<Delivery, PublishError>> {
        let mut records = Vec::with_capacity(events.len());
        let mut failed = vec![(0, first)];
        for (index, event) in events.iter().enumerate().skip(1) {
            match self.record(topic, event, None).await {
                Ok(record) => records.push(record),
                Err(e) => failed.push((index, e)),
            }
        }
        let mut sent = self.inner.raw.send_all(records).await.into_iter();
        let mut failed = failed.into_iter().peekable();
        (0..events.len())
            .map(|index| match failed.next_if(|(i, _)| *i == index) {
                Some((_, e)) => Err(e),
                None => sent.next().unwrap_or(Err(PublishError::Closed)),
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
        self.inner.raw.flush(deadline).await
    }

    /// Flushes, then drops this handle.
    pub async fn close(self, deadline: Duration) -> Result<(), PublishError> {
        self.flush(deadline).await
    }

    /// The untyped layer, for relays that send pre-encoded records.
    pub fn raw(&self) -> &RawPublisher {
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
    ) -> Result<OutgoingRecord, PublishError> {
        let encoder = self.encoder::<T>(topic).await?;
        let payload = encoder.encode(event).map_err(|source| PublishError::Encode {
            event_type: T::TYPE,
            topic: topic.to_owned(),
            source,
        })?;
        let stamp = Stamp::new(parent, std::time::SystemTime::now());
        Ok(OutgoingRecord {
            topic: topic.to_owned(),
            key: event.key(),
            payload,
            headers: stamp.owned_headers(&self.inner.source, T::TYPE),
            event_id: stamp.event_id,
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
        stamp: &Stamp,
        source: &str,
    ) -> Result<RecordParts<'a>, PublishError> {
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
        let (headers, header_bytes) = stamp.headers(source, T::TYPE);
        Ok(RecordParts { topic, key: &self.key, payload: &self.payload, headers, header_bytes })
    }
}
