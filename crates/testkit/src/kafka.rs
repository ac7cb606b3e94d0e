use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaErrorCode,
};

use crate::{unique_name, TestkitError, DEFAULT_BOOTSTRAP};

/// How long [`Kafka::connect`] waits for a broker to answer metadata.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the test broker.
#[derive(Clone)]
pub struct Kafka {
    bootstrap: String,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka").field("bootstrap", &self.bootstrap).finish()
    }
}

impl Kafka {
    /// Connects to the broker at `FANOUT_TEST_BOOTSTRAP` (default `127.0.0.1:9092`), failing with
    /// [`TestkitError::BrokerUnavailable`] if it does not answer a metadata request within 10 s.
    pub async fn connect() -> Result<Self, TestkitError> {
        let bootstrap =
            std::env::var("FANOUT_TEST_BOOTSTRAP").unwrap_or_else(|_| DEFAULT_BOOTSTRAP.to_owned());
        Self::connect_to(&bootstrap, CONNECT_TIMEOUT).await
    }

    /// Connects to the broker at `bootstrap`, waiting at most `timeout` for metadata.
    pub async fn connect_to(bootstrap: &str, timeout: Duration) -> Result<Self, TestkitError> {
        let bootstrap = bootstrap.to_owned();
        let probe = bootstrap.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer =
                ClientConfig::new().set("bootstrap.servers", &probe).create().map_err(|e| e.to_string())?;
            consumer.fetch_metadata(None, timeout).map(|_| ()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match answer {
            Ok(()) => Ok(Self { bootstrap }),
            Err(reason) => Err(TestkitError::BrokerUnavailable { bootstrap, reason }),
        }
    }

    /// The bootstrap address, for building clients.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// A client config with `bootstrap.servers` set.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Creates a topic named `test-<prefix>-<uuid>` with `partitions` partitions and waits until
    /// the broker reports it. The topic is deleted when the returned guard drops.
    pub async fn topic(&self, prefix: &str, partitions: i32) -> Result<TestTopic, TestkitError> {
        let name = unique_name(prefix);
        self.create_topic(&name, partitions).await?;
        Ok(TestTopic { name, kafka: self.clone() })
    }

    /// Creates a topic with an exact name (for code that derives topic names itself). Not
    /// deleted automatically; pair it with [`Kafka::delete_topic`] or use a name from
    /// [`unique_name`].
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<(), TestkitError> {
        let admin = self.admin()?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
            .await
            .map_err(|e| admin_error("create topic", name, e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(TestkitError::Admin {
                        operation: "create topic",
                        target: topic,
                        reason: code.to_string(),
                    })
                }
            }
        }
        self.await_topic(name, partitions).await
    }

    /// Deletes a topic; a topic that does not exist is not an error.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TestkitError> {
        let admin = self.admin()?;
        let results = admin
            .delete_topics(&[name], &AdminOptions::new())
            .await
            .map_err(|e| admin_error("delete topic", name, e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => {
                    return Err(TestkitError::Admin {
                        operation: "delete topic",
                        target: topic,
                        reason: code.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, TestkitError> {
        self.client_config().create().map_err(|e| TestkitError::BrokerUnavailable {
            bootstrap: self.bootstrap.clone(),
            reason: e.to_string(),
        })
    }

    /// Waits until metadata shows the topic with all its partitions, so a producer started right
    /// after creation does not race the broker's metadata propagation.
    async fn await_topic(&self, name: &str, partitions: i32) -> Result<(), TestkitError> {
        let config = self.client_config();
        let topic = name.to_owned();
        let seen = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                let metadata = consumer
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                let ready = metadata.topics().iter().any(|t| {
                    t.name() == topic
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                });
                if ready {
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    return Err("topic did not appear in metadata within 15 s".to_owned());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        seen.map_err(|reason| TestkitError::Admin {
            operation: "create topic",
            target: name.to_owned(),
            reason,
        })
    }
}

fn admin_error(operation: &'static str, target: &str, e: rdkafka::error::KafkaError) -> TestkitError {
    TestkitError::Admin { operation, target: target.to_owned(), reason: e.to_string() }
}

/// A topic that exists for one test and is deleted when dropped.
#[derive(Debug)]
pub struct TestTopic {
    name: String,
    kafka: Kafka,
}

impl TestTopic {
    /// The topic's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        // Drop cannot be async, and may run inside a runtime; a plain thread with a small runtime
        // of its own deletes the topic either way.
        let kafka = self.kafka.clone();
        let name = std::mem::take(&mut self.name);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                if let Err(e) = runtime.block_on(kafka.delete_topic(&name)) {
                    eprintln!("testkit: could not delete topic {name}: {e}");
                }
            }
        });
        let _ = cleanup.join();
    }
}
