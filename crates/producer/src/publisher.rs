//! The typed publisher: event in, CloudEvents headers and Confluent wire-format Avro out.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use fanout_events::{headers, trace::TraceParent, Event};
use fanout_schema_registry::{AvroSerde, Encoder};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    raw::{Delivery, OutgoingRecord, RawPublisher},
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
/// let mut config = PublisherConfig::default();
/// config.source = "post-service".into();
/// let publisher = Publisher::new(config).await?;
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

struct Inner {
    raw: RawPublisher,
    serde: AvroSerde,
    source: String,
    /// One encoder per event type, resolved (schema id looked up) on first use; afterwards the
    /// hot path makes no registry call, so publishing continues while the registry is down.
    encoders: Mutex<HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>>,
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
                encoders: Mutex::new(HashMap::new()),
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
        let record = self.record(topic, event, parent).await?;
        let span = tracing::info_span!("publish", event_type = T::TYPE, topic, event_id = %record.event_id);
        self.inner.raw.send(record).instrument(span).await
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
        let mut records = Vec::with_capacity(events.len());
        let mut failed = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match self.record(topic, event, None).await {
                Ok(record) => records.push(record),
                Err(e) => failed.push((index, e)),
            }
        }
        let span = tracing::info_span!("publish_all", event_type = T::TYPE, topic, count = events.len());
        let mut sent = self.inner.raw.send_all(records).instrument(span).await.into_iter();
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
        let key = (TypeId::of::<T>(), topic.to_owned());
        let cached = self.inner.encoders.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(encoder) = cached.and_then(|e| e.downcast::<Encoder<T>>().ok()) {
            return Ok(encoder);
        }
        let encoder = Arc::new(self.inner.serde.encoder::<T>(topic).await.map_err(|source| {
            PublishError::Encode { event_type: T::TYPE, topic: topic.to_owned(), source }
        })?);
        if let Ok(mut map) = self.inner.encoders.lock() {
            map.insert(key, encoder.clone());
        }
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
        let event_id = Uuid::now_v7();
        let trace = parent.map(|p| p.child()).unwrap_or_else(TraceParent::new_root);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Ok(OutgoingRecord {
            topic: topic.to_owned(),
            key: event.key(),
            payload,
            headers: vec![
                (headers::SPECVERSION.to_owned(), headers::SPECVERSION_VALUE.as_bytes().to_vec()),
                (headers::ID.to_owned(), event_id.to_string().into_bytes()),
                (headers::TYPE.to_owned(), T::TYPE.as_bytes().to_vec()),
                (headers::SOURCE.to_owned(), self.inner.source.as_bytes().to_vec()),
                (headers::TIME.to_owned(), time.into_bytes()),
                (headers::CONTENT_TYPE.to_owned(), headers::CONTENT_TYPE_AVRO.as_bytes().to_vec()),
                (headers::TRACEPARENT.to_owned(), trace.to_string().into_bytes()),
            ],
            event_id,
        })
    }
}
