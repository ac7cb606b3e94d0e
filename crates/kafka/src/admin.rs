//! Topic administration: create when absent and wait until the broker serves the topic; delete.

use std::time::{Duration, Instant};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    types::RDKafkaErrorCode,
    ClientConfig,
};

/// How long the broker may take to create or delete topics, per request.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// A topic to create when it does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic's name.
    pub name: String,
    /// Its partition count.
    pub partitions: i32,
    /// Its replication factor; `None` takes the broker's `default.replication.factor`.
    pub replication: Option<i32>,
    /// Topic-level configuration, e.g. `("cleanup.policy", "compact")`.
    pub config: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic of `partitions` partitions with the broker's default replication and settings.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self { name: name.into(), partitions, replication: None, config: Vec::new() }
    }

    /// The same topic with this replication factor.
    pub fn replication(mut self, factor: i32) -> Self {
        self.replication = Some(factor);
        self
    }

    /// The same topic with one more topic-level setting.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }
}

/// Why topics could not be created, deleted or seen.
#[derive(thiserror::Error)]
pub enum AdminError {
    /// The client could not be created or the request failed as a whole (unreachable broker,
    /// authentication, timeout).
    #[error("cannot {operation}")]
    Client {
        /// What was being done, e.g. `create topics`.
        operation: &'static str,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The broker refused one topic (or group).
    #[error("cannot {operation} {topic}: {code}")]
    Refused {
        /// What was being done.
        operation: &'static str,
        /// The topic (or group).
        topic: String,
        /// The broker's error code, e.g. `TopicAuthorizationFailed`.
        code: RDKafkaErrorCode,
    },
    /// The topic was created but the broker did not serve all its partitions in time.
    #[error("topic {topic} did not show {partitions} partitions with leaders within {waited:?}")]
    NotReady {
        /// The topic.
        topic: String,
        /// The partitions expected.
        partitions: i32,
        /// How long was waited.
        waited: Duration,
    },
}

fanout_core::debug_as_report!(AdminError);

impl AdminError {
    /// The broker's code when it refused a topic (for example to tolerate a missing create
    /// permission where topics are created by other means).
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Creates each topic of `topics` that does not exist yet, then waits up to `wait` until the
/// broker's metadata shows every one with all its partitions led, so a client started right
/// after does not race metadata propagation. An existing topic is left as it is (its partition
/// count is not checked against the spec, only that it is served).
pub async fn ensure_topics(
    config: &ClientConfig,
    topics: &[TopicSpec],
    wait: Duration,
) -> Result<(), AdminError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin(config)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|spec| {
            let replication = TopicReplication::Fixed(spec.replication.unwrap_or(-1));
            spec.config
                .iter()
                .fold(NewTopic::new(&spec.name, spec.partitions, replication), |t, (k, v)| t.set(k, v))
        })
        .collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(OPERATION_TIMEOUT)))
        .await
        .map_err(|source| AdminError::Client { operation: "create topics", source })?;
    settle(results, "create topic", RDKafkaErrorCode::TopicAlreadyExists)?;
    await_served(config, topics, wait).await
}

/// Deletes the topics; one that does not exist is not an error.
pub async fn delete_topics(config: &ClientConfig, names: &[&str]) -> Result<(), AdminError> {
    if names.is_empty() {
        return Ok(());
    }
    let results = admin(config)?
        .delete_topics(names, &AdminOptions::new().operation_timeout(Some(OPERATION_TIMEOUT)))
        .await
        .map_err(|source| AdminError::Client { operation: "delete topics", source })?;
    settle(results, "delete topic", RDKafkaErrorCode::UnknownTopicOrPartition)
}

/// Deletes consumer groups; one that does not exist (never committed) is not an error. A group
/// with members is refused by the broker ([`AdminError::Refused`] with `NonEmptyGroup`).
pub async fn delete_groups(config: &ClientConfig, names: &[&str]) -> Result<(), AdminError> {
    if names.is_empty() {
        return Ok(());
    }
    let results = admin(config)?
        .delete_groups(names, &AdminOptions::new().operation_timeout(Some(OPERATION_TIMEOUT)))
        .await
        .map_err(|source| AdminError::Client { operation: "delete groups", source })?;
    settle(results, "delete group", RDKafkaErrorCode::GroupIdNotFound)
}

fn admin(config: &ClientConfig) -> Result<AdminClient<DefaultClientContext>, AdminError> {
    config.create().map_err(|source| AdminError::Client { operation: "create an admin client", source })
}

/// The first refusal among the broker's per-name answers, `fine` aside (it means the work was
/// already done: the topic exists, or is already gone).
fn settle(
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    operation: &'static str,
    fine: RDKafkaErrorCode,
) -> Result<(), AdminError> {
    match results.into_iter().find_map(|result| result.err().filter(|(_, code)| *code != fine)) {
        Some((topic, code)) => Err(AdminError::Refused { operation, topic, code }),
        None => Ok(()),
    }
}

/// Polls metadata until every topic is served with its partitions led, or `wait` passes.
async fn await_served(config: &ClientConfig, topics: &[TopicSpec], wait: Duration) -> Result<(), AdminError> {
    let config = config.clone();
    let topics = topics.to_vec();
    let waited = tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = config
            .create()
            .map_err(|source| AdminError::Client { operation: "create a metadata client", source })?;
        let deadline = Instant::now() + wait;
        for spec in &topics {
            loop {
                let served = probe
                    .fetch_metadata(Some(&spec.name), Duration::from_secs(5))
                    .map(|metadata| {
                        metadata.topics().iter().any(|t| {
                            t.name() == spec.name
                                && t.error().is_none()
                                && !t.partitions().is_empty()
                                && t.partitions().iter().all(|p| p.leader() >= 0)
                        })
                    })
                    .unwrap_or(false);
                if served {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(AdminError::NotReady {
                        topic: spec.name.clone(),
                        partitions: spec.partitions,
                        waited: wait,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    })
    .await;
    match waited {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Cancelled only when the runtime shuts down; nobody waits for the answer then.
        Err(_) => Ok(()),
    }
}
