//! The requester's side: wait for the callback of a request made to a provider, from the bus.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use fanout_config::KafkaSettings;
use fanout_core::Event;
use fanout_kafka::TopicSpec;
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use fanout_schema_registry::{AvroSerde, RegistrySettings, SubjectNameStrategy};
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    Message, Offset, TopicPartitionList,
};
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::{unix_ms, CallbackReceived, CallbackTimedOut};

/// What an [`Awaiter`] needs: who the requester is, its reply topic, and where the gateway, the
/// cluster, the registry and the schedule topic are.
///
/// ```
/// let config: fanout_gateway::AwaiterConfig = fanout_config::from_toml_str(
///     r#"
///     requester = "orders"
///     reply_topic = "orders.payment-results"
///     gateway = "http://gateway-admin:9121"
///     "#,
/// )?;
/// assert_eq!(config.schedule_topic, "_fanout_schedule");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwaiterConfig {
    /// The requesting service: the `ce_source` of its timeouts.
    pub requester: String,
    /// The requester's own topic: the gateway publishes the callbacks of its registered requests
    /// there, and its timeouts are delivered there.
    pub reply_topic: String,
    /// The gateway's admin address (its `[http] listen`), where routes are registered.
    pub gateway: String,
    /// The token the gateway's admin port requires (its `[http] bearer_token`), if it does.
    #[serde(default)]
    pub gateway_token: Option<fanout_core::Secret>,
    /// Partitions of the reply topic, when the awaiter creates it.
    #[serde(default = "partitions")]
    pub partitions: i32,
    /// The cluster.
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// The registry.
    #[serde(default)]
    pub registry: RegistrySettings,
    /// The scheduler's topic, through which timeouts are delivered.
    #[serde(default = "schedule_topic")]
    pub schedule_topic: String,
}

fn partitions() -> i32 {
    6
}

fn schedule_topic() -> String {
    fanout_core::schedule::TOPIC.to_owned()
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The callback came.
    Received(CallbackReceived),
    /// It had not come by the timeout. A callback arriving later still lands on the reply topic
    /// (the route outlives the timeout by a day), after this in the partition's order.
    TimedOut(CallbackTimedOut),
}

/// Why an [`Awaiter`] could not start, expect or wait.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum AwaiterError {
    /// The reply topic could not be created.
    #[error("creating the reply topic {topic}")]
    Topic {
        /// The topic.
        topic: String,
        /// Why.
        #[source]
        source: fanout_kafka::AdminError,
    },
    /// The reply topic could not be read.
    #[error("reading the reply topic {topic}")]
    Read {
        /// The topic.
        topic: String,
        /// Why (librdkafka's error; boxed, so this type does not tie you to rdkafka's version).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The timeout could not be scheduled, or its schema registered.
    #[error("scheduling the timeout")]
    Schedule(#[from] fanout_producer::PublishError),
    /// The gateway refused or did not answer the route registration.
    #[error("registering the route at {url}: {reason}")]
    Route {
        /// Where.
        url: String,
        /// Its answer, or why there was none.
        reason: String,
    },
    /// The registry cannot be reached with these settings.
    #[error("the schema registry")]
    Registry(#[from] fanout_schema_registry::RegistryError),
    /// The reader stopped (the awaiter was dropped) before the wait ended.
    #[error("the awaiter stopped before the reply came")]
    Stopped,
    /// The same request is awaited twice at once.
    #[error("{source_name}/{correlation_id} is awaited already")]
    AlreadyAwaited {
        /// The gateway source.
        source_name: String,
        /// The request's id.
        correlation_id: String,
    },
}

fanout_core::debug_as_report!(AwaiterError);

type Waiters = Arc<Mutex<HashMap<(String, String), oneshot::Sender<Reply>>>>;

/// Waits for callbacks of a requester's requests: [`Awaiter::expect`] before calling the
/// provider, then [`Pending::wait`].
///
/// `expect` registers the request with the gateway (its callbacks go to the requester's reply
/// topic) and schedules a [`CallbackTimedOut`] to that topic at the timeout, through the
/// scheduler, so a callback that never comes is an event even if the requester restarted
/// meanwhile. Both are keyed by the request's id, so one partition holds them in the order they
/// happened: whichever the reply topic shows first won. An awaiter reads every partition of the
/// reply topic from where it was when it started and keeps only what this process awaits, so
/// every instance of a requester runs one; replies after a restart are for the requester's
/// consumer of the reply topic (a Fanout consumer, deduplicating on `ce_id`).
///
/// ```no_run
/// # async fn example(config: fanout_gateway::AwaiterConfig) -> Result<(), fanout_gateway::AwaiterError> {
/// use std::time::Duration;
/// use fanout_gateway::{Awaiter, Reply};
///
/// let awaiter = Awaiter::start(config).await?;
/// let pending = awaiter.expect("wechatpay", "order-42", Duration::from_secs(900)).await?;
/// // ... ask the provider to charge order-42; it answers "accepted" and calls back later ...
/// match pending.wait().await? {
///     Reply::Received(callback) => println!("{}: {}", callback.correlation_id, callback.body),
///     Reply::TimedOut(timeout) => println!("no answer for {} in time", timeout.correlation_id),
/// }
/// # Ok(()) }
/// ```
pub struct Awaiter {
    config: AwaiterConfig,
    publisher: Publisher,
    http: reqwest::Client,
    waiters: Waiters,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Awaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Awaiter")
            .field("requester", &self.config.requester)
            .field("reply_topic", &self.config.reply_topic)
            .finish_non_exhaustive()
    }
}

/// One awaited request; [`Pending::wait`] until its callback or its timeout.
#[derive(Debug)]
pub struct Pending {
    reply: oneshot::Receiver<Reply>,
}

impl Pending {
    /// Waits for the callback, or the timeout set by [`Awaiter::expect`].
    pub async fn wait(self) -> Result<Reply, AwaiterError> {
        self.reply.await.map_err(|_| AwaiterError::Stopped)
    }
}

impl Awaiter {
    /// Creates the reply topic if missing, registers the timeout's schema, and starts reading
    /// the reply topic from its end.
    pub async fn start(config: AwaiterConfig) -> Result<Self, AwaiterError> {
        let client = fanout_kafka::client_config(&config.kafka);
        let topic = config.reply_topic.clone();
        fanout_kafka::ensure_topics(
            &client,
            &[TopicSpec::new(&topic, config.partitions)],
            Duration::from_secs(30),
        )
        .await
        .map_err(|source| AwaiterError::Topic { topic: topic.clone(), source })?;
        let mut publisher_config = PublisherConfig::new(&config.requester);
        publisher_config.kafka = config.kafka.clone();
        publisher_config.registry = config.registry.clone();
        // The reply topic carries two record types (the gateway's callbacks under `<topic>-value`),
        // so the timeout's schema has a subject of its own.
        publisher_config.registry.subject_strategy = SubjectNameStrategy::TopicRecordName;
        publisher_config.schedule_topic = config.schedule_topic.clone();
        let publisher = Publisher::new(publisher_config)?;
        publisher.prepare_for::<CallbackTimedOut>(&topic).await?;

        let consumer = reader(&config, client).await?;
        let serde = AvroSerde::from_settings(&config.registry)?;
        let waiters: Waiters = Arc::default();
        let reader = tokio::spawn(read(consumer, serde, waiters.clone(), topic));
        Ok(Self { config, publisher, http: reqwest::Client::new(), waiters, reader })
    }

    /// Prepares to wait for the callback of request `correlation_id` through gateway source
    /// `source`, at most `timeout`: call it before asking the provider, so that no callback can
    /// come before it. Registers the route with the gateway (kept a day past the timeout, so a
    /// late callback still reaches the reply topic) and schedules the timeout.
    pub async fn expect(
        &self,
        source: &str,
        correlation_id: &str,
        timeout: Duration,
    ) -> Result<Pending, AwaiterError> {
        let key = (source.to_owned(), correlation_id.to_owned());
        let (tx, reply) = oneshot::channel();
        {
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            if waiters.get(&key).is_some_and(|waiting| !waiting.is_closed()) {
                return Err(AwaiterError::AlreadyAwaited { source_name: key.0, correlation_id: key.1 });
            }
            waiters.insert(key.clone(), tx);
        }
        let registered = self.register(source, correlation_id, timeout).await;
        let scheduled = match registered {
            Ok(()) => self.schedule_timeout(source, correlation_id, timeout).await,
            Err(e) => Err(e),
        };
        if let Err(error) = scheduled {
            self.waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
            return Err(error);
        }
        Ok(Pending { reply })
    }

    /// [`Awaiter::expect`], then [`Pending::wait`]: for a request already made whose callback
    /// cannot have come yet.
    pub async fn wait(
        &self,
        source: &str,
        correlation_id: &str,
        timeout: Duration,
    ) -> Result<Reply, AwaiterError> {
        self.expect(source, correlation_id, timeout).await?.wait().await
    }

    async fn register(
        &self,
        source: &str,
        correlation_id: &str,
        timeout: Duration,
    ) -> Result<(), AwaiterError> {
        let url = format!(
            "{}/routes/{}/{}",
            self.config.gateway.trim_end_matches('/'),
            path_segment(source),
            path_segment(correlation_id)
        );
        let failed = |reason: String| AwaiterError::Route { url: url.clone(), reason };
        let body = serde_json::json!({
            "reply_topic": self.config.reply_topic,
            "expires_in_secs": timeout.as_secs() + 86_400,
        });
        let mut request = self.http.put(&url).json(&body).timeout(Duration::from_secs(10));
        if let Some(token) = &self.config.gateway_token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| failed(fanout_core::report(&e)))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(failed(match self.config.gateway_token {
                Some(_) => {
                    "the gateway refused the gateway_token (401): it is not its [http] bearer_token".into()
                }
                None => "the gateway's admin port needs a bearer token (401): set gateway_token to its \
                         [http] bearer_token"
                    .into(),
            }));
        }
        Err(failed(format!("{status}: {}", response.text().await.unwrap_or_default())))
    }

    async fn schedule_timeout(
        &self,
        source: &str,
        correlation_id: &str,
        timeout: Duration,
    ) -> Result<(), AwaiterError> {
        let now = SystemTime::now();
        let event = CallbackTimedOut {
            source: source.to_owned(),
            correlation_id: correlation_id.to_owned(),
            requested_at: unix_ms(now),
            expected_by: unix_ms(now + timeout),
        };
        let options = PublishOptions::new().topic(&self.config.reply_topic);
        self.publisher.publish_at(&event, now + timeout, &options).await?;
        Ok(())
    }
}

impl Drop for Awaiter {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A consumer assigned every partition of the reply topic at its current end, as concrete
/// offsets: a reply written right after [`Awaiter::start`] returns is read.
async fn reader(
    config: &AwaiterConfig,
    client: rdkafka::ClientConfig,
) -> Result<StreamConsumer, AwaiterError> {
    let topic = config.reply_topic.clone();
    let failed = |source: rdkafka::error::KafkaError| AwaiterError::Read {
        topic: config.reply_topic.clone(),
        source: Box::new(source),
    };
    let mut consumer_config = client;
    consumer_config
        // Never joins or commits: the group id only satisfies librdkafka.
        .set("group.id", format!("{}-awaiter-{}", config.requester, uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("isolation.level", "read_committed");
    let consumer: StreamConsumer = consumer_config.create().map_err(failed)?;
    let (consumer, assignment) = tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(&topic, partition.id(), Duration::from_secs(10))?;
            assignment.add_partition_offset(&topic, partition.id(), Offset::Offset(high))?;
        }
        Ok::<_, rdkafka::error::KafkaError>((consumer, assignment))
    })
    .await
    .map_err(|_| AwaiterError::Stopped)?
    .map_err(failed)?;
    consumer.assign(&assignment).map_err(failed)?;
    Ok(consumer)
}

async fn read(consumer: StreamConsumer, serde: AvroSerde, waiters: Waiters, topic: String) {
    loop {
        let message = match consumer.recv().await {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, topic, "reading the reply topic; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let event_type = message
            .headers()
            .and_then(|headers| {
                use rdkafka::message::Headers;
                headers.iter().find(|h| h.key == fanout_core::headers::TYPE).and_then(|h| h.value)
            })
            .map(<[u8]>::to_vec);
        let Some(payload) = message.payload() else { continue };
        let reply = match event_type.as_deref() {
            Some(t) if t == CallbackReceived::TYPE.as_bytes() => {
                serde.decode::<CallbackReceived>(payload).await.map(Reply::Received)
            }
            Some(t) if t == CallbackTimedOut::TYPE.as_bytes() => {
                serde.decode::<CallbackTimedOut>(payload).await.map(Reply::TimedOut)
            }
            _ => continue,
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                tracing::warn!(error = %fanout_core::report(&error), topic, offset = message.offset(), "a reply could not be decoded; skipped");
                continue;
            }
        };
        let key = match &reply {
            Reply::Received(c) => (c.source.clone(), c.correlation_id.clone()),
            Reply::TimedOut(t) => (t.source.clone(), t.correlation_id.clone()),
        };
        // The first of callback and timeout ends the wait; what comes after is the consumer's.
        if let Some(waiting) = waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&key) {
            let _ = waiting.send(reply);
        }
    }
}

/// `text` percent-encoded for one URL path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_one_path_segment_whatever_they_hold() {
        assert_eq!(super::path_segment("order-42_a.b~"), "order-42_a.b~");
        assert_eq!(super::path_segment("a/b c%"), "a%2Fb%20c%25");
    }
}
