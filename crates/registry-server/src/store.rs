//! The Kafka side: the state topic, the producer that writes it and the tail that reads it.
//!
//! Writes are decided by the elected leader (`election`), one at a time under a mutex, each on
//! the state it has seen; a write that lost to another writer's record in the log is refused by
//! the fold and decided again (`service::register`).

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use fanout_kafka::{Headers, RecordProducer, TopicSpec};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{watch, Mutex, MutexGuard};

use crate::config::RegistryConfig;
use crate::error::{ApiError, RegistryError};
use crate::record::LogRecord;
use crate::state::State;

/// The registry keeps everything in partition 0: one partition gives one total order.
const PARTITION: i32 = 0;
/// How long startup may take to read the topic to its end.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a write waits for the tail to have read everything before the write's offset.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long admin and metadata calls may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// The state, the producer and the write lock, shared by every request.
pub struct Store {
    topic: String,
    producer: RecordProducer,
    state: RwLock<State>,
    /// `State::next_offset`, published so writers can wait for the tail.
    position: watch::Sender<i64>,
    writes: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// Stops the tail when signalled or dropped.
#[derive(Debug)]
pub struct Tail {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Tail {
    /// Stops the tail and waits for it.
    pub async fn stop(self) -> Result<(), RegistryError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| RegistryError::Task(e.to_string()))
    }
}

/// A client config: `defaults`, overridden by the user's properties.
fn client_config_with(config: &RegistryConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap);
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in &config.kafka_properties {
        client.set(key, value);
    }
    client
}

fn client_config(config: &RegistryConfig) -> ClientConfig {
    client_config_with(config, &[])
}

impl Store {
    /// Creates the topic if needed, reads it to its end and keeps tailing it.
    pub async fn open(config: &RegistryConfig) -> Result<(Arc<Store>, Tail), RegistryError> {
        create_topic(config).await?;
        let end = end_offset(config).await?;

        // A write that cannot be acknowledged within 30 s is answered as failed, not retried forever.
        let producer =
            RecordProducer::from_config(client_config_with(config, &[("message.timeout.ms", "30000")]))
                .map_err(|e| RegistryError::kafka("producer creation", fanout_core::report(&e)))?;

        let (position, _) = watch::channel(0);
        let store = Arc::new(Store {
            topic: config.topic.clone(),
            producer,
            state: RwLock::new(State::default()),
            position,
            writes: Mutex::new(()),
        });
        let tail = start_tail(config, Arc::clone(&store))?;

        let mut seen = store.position.subscribe();
        let caught_up =
            matches!(tokio::time::timeout(CATCH_UP_TIMEOUT, seen.wait_for(|p| *p >= end)).await, Ok(Ok(_)));
        if !caught_up {
            let _ = tail.stop().await;
            return Err(RegistryError::CatchUpTimeout {
                topic: config.topic.clone(),
                seconds: CATCH_UP_TIMEOUT.as_secs(),
            });
        }
        Ok((store, tail))
    }

    /// A read view of the state. Never hold it across an await.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish_position(&self, position: i64) {
        self.position.send_replace(position);
    }

    /// Serializes writers: take this, decide on the state, [`Store::write`], then drop it.
    pub async fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Appends `records` in order, each acknowledged by all in-sync replicas, and folds each into
    /// the state before returning, so the caller reads its own writes. `Ok(false)` when the fold
    /// refused one of them: another writer's record for the same version or id came first in the
    /// log (see `State::holds`), and the caller decides again on the state that now shows it.
    pub async fn write(&self, _lock: &MutexGuard<'_, ()>, records: Vec<LogRecord>) -> Result<bool, ApiError> {
        let mut held = true;
        for record in records {
            let (key, value) = record.encode().map_err(ApiError::store)?;
            let kafka_record = fanout_kafka::Record {
                partition: Some(PARTITION),
                topic: &self.topic,
                key: Some(&key),
                payload: value.as_deref(),
                headers: Headers::with_capacity(0),
            };
            let delivery = self
                .producer
                .send(kafka_record)
                .await
                .map_err(|e| ApiError::store(fanout_core::report(&e)))?;
            // Fold in only once everything before this offset is folded in; otherwise a record
            // from elsewhere would later be skipped as "already applied".
            let mut position = self.position.subscribe();
            // The watch `Ref` must not outlive this statement: it read-locks the channel, and
            // publishing the new position below needs the write lock.
            let caught_up = matches!(
                tokio::time::timeout(VISIBILITY_TIMEOUT, position.wait_for(|p| *p >= delivery.offset)).await,
                Ok(Ok(_))
            );
            if !caught_up {
                return Err(ApiError::timeout(format!(
                    "offset {} of {} is written but not yet readable",
                    delivery.offset, self.topic
                )));
            }
            let next = {
                let mut state = self.state_mut();
                // The tail may have folded it already; either way the state now says whether it won.
                state.apply(delivery.offset, record.clone());
                held &= state.holds(&record);
                state.next_offset()
            };
            self.publish_position(next);
        }
        Ok(held)
    }
}

async fn create_topic(config: &RegistryConfig) -> Result<(), RegistryError> {
    let mut topic = TopicSpec::new(&config.topic, 1).with("cleanup.policy", "compact");
    topic.replication = config.replication_factor;
    fanout_kafka::ensure_topics(&client_config(config), &[topic], ADMIN_TIMEOUT)
        .await
        .map_err(|e| RegistryError::kafka("create topic", fanout_core::report(&e)))
}

/// The high watermark of the state partition, retried until the (possibly new) topic's metadata
/// has propagated.
async fn end_offset(config: &RegistryConfig) -> Result<i64, RegistryError> {
    let client = client_config(config);
    let topic = config.topic.clone();
    let fetched = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client.create().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        loop {
            match consumer.fetch_watermarks(&topic, PARTITION, Duration::from_secs(5)) {
                Ok((_, high)) => return Ok(high),
                Err(e) if Instant::now() > deadline => return Err(e.to_string()),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
    .await
    .map_err(|e| RegistryError::Task(e.to_string()))?;
    fetched.map_err(|reason| RegistryError::kafka("fetch watermarks", reason))
}

/// The tail's client context: reaching the end of the partition is how the tail learns it is
/// caught up, not an error, so librdkafka's report of it is not logged as one.
struct TailContext;

impl ClientContext for TailContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !fanout_kafka::is_end_of_partition(&error) {
            tracing::warn!(error = %fanout_core::report(&error), reason, "registry tail: librdkafka error");
        }
    }
}

impl ConsumerContext for TailContext {}

fn start_tail(config: &RegistryConfig, store: Arc<Store>) -> Result<Tail, RegistryError> {
    let group = format!("fanout-registry-{}", config.topic);
    let mut consumer_config = client_config_with(
        config,
        // No group membership is used (the partition is assigned), but librdkafka wants an id. A
        // short fetch wait keeps other instances' writes quickly visible.
        &[("group.id", group.as_str()), ("fetch.wait.max.ms", "50")],
    );
    consumer_config.set("enable.auto.commit", "false").set("enable.partition.eof", "true");
    let consumer: StreamConsumer<TailContext> = consumer_config
        .create_with_context(TailContext)
        .map_err(|e| RegistryError::kafka("consumer creation", e))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&config.topic, PARTITION, Offset::Beginning)
        .map_err(|e| RegistryError::kafka("assign", e))?;
    consumer.assign(&assignment).map_err(|e| RegistryError::kafka("assign", e))?;

    let (stop, mut stopped) = watch::channel(false);
    let topic = config.topic.clone();
    let task = tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                _ = stopped.changed() => break,
                received = consumer.recv() => received,
            };
            match received {
                Ok(message) => {
                    let offset = message.offset();
                    let next = {
                        let mut state = store.state_mut();
                        match message.key().map(|key| LogRecord::decode(key, message.payload())) {
                            Some(Ok(record)) => state.apply(offset, record),
                            Some(Err(e)) => {
                                tracing::warn!(%topic, offset, error = %fanout_core::report(&e), "skipping record")
                            }
                            None => tracing::warn!(%topic, offset, "skipping record without key"),
                        }
                        state.advance_to(offset + 1);
                        state.next_offset()
                    };
                    store.publish_position(next);
                }
                Err(KafkaError::PartitionEOF(_)) => {
                    // Only at the end of the partition is the consumer's position an end offset;
                    // it covers a compacted-away last record before it.
                    let position = consumer.position().ok().and_then(|list| {
                        list.find_partition(&topic, PARTITION).and_then(|p| match p.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                    });
                    if let Some(position) = position {
                        let next = {
                            let mut state = store.state_mut();
                            state.advance_to(position);
                            state.next_offset()
                        };
                        store.publish_position(next);
                    }
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %fanout_core::report(&e), "registry tail error; retrying");
                    // Back off so a broker outage does not spin this task.
                    tokio::select! {
                        _ = stopped.changed() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    });
    Ok(Tail { stop, task })
}
