use std::time::{Duration, Instant};

use fanout_kafka::{AdminError, FetchedRecord, TopicRead, TopicSpec};
use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
};

use crate::{unique_name, TestkitError};

/// How long [`Kafka::connect`] waits for a broker to answer metadata.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often [`Kafka::read_at_least`] reads the topic again.
const READ_AGAIN: Duration = Duration::from_millis(100);

/// A handle on the test broker.
#[derive(Clone)]
pub struct Kafka {
    bootstrap: String,
    /// librdkafka properties every client of this handle gets (a SASL login).
    properties: Vec<(String, String)>,
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
        Self::connect_to(&crate::bootstrap(), CONNECT_TIMEOUT).await
    }

    /// Connects to the broker at `bootstrap`, waiting at most `timeout` for metadata.
    pub async fn connect_to(bootstrap: &str, timeout: Duration) -> Result<Self, TestkitError> {
        Self::connect_with(bootstrap, Vec::new(), timeout).await
    }

    /// As [`Kafka::connect_to`], every client of the handle getting `properties` too (e.g.
    /// `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`).
    pub async fn connect_with(
        bootstrap: &str,
        properties: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, TestkitError> {
        let kafka = Self { bootstrap: bootstrap.to_owned(), properties };
        let probe = kafka.client_config();
        let answer = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = probe.create().map_err(|e| e.to_string())?;
            consumer.fetch_metadata(None, timeout).map(|_| ()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let bootstrap = kafka.bootstrap.clone();
        match answer {
            Ok(()) => Ok(kafka),
            Err(reason) => Err(TestkitError::BrokerUnavailable { bootstrap, reason }),
        }
    }

    /// The bootstrap address, for building clients.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The librdkafka properties every client of this handle gets besides the bootstrap.
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// A client config with `bootstrap.servers` and the handle's properties set.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Creates a topic named `test-<prefix>-<uuid>` with `partitions` partitions and waits until
    /// the broker reports it. The topic is deleted when the returned guard drops.
    pub async fn topic(&self, prefix: &str, partitions: i32) -> Result<TestTopic, TestkitError> {
        let name = unique_name(prefix);
        self.create_topic(&name, partitions).await?;
        Ok(TestTopic { name, kafka: self.clone() })
    }

    /// A unique name (`test-<prefix>-<uuid>`) for a topic that something else creates, such as a
    /// registry's state topic; deleted when the guard drops, like a [`Kafka::topic`].
    pub fn future_topic(&self, prefix: &str) -> TestTopic {
        TestTopic { name: unique_name(prefix), kafka: self.clone() }
    }

    /// Creates a topic with an exact name (for code that derives topic names itself). Not
    /// deleted automatically; pair it with [`Kafka::delete_topic`] or use a name from
    /// [`unique_name`].
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<(), TestkitError> {
        let spec = TopicSpec::new(name, partitions);
        fanout_kafka::ensure_topics(&self.client_config(), &[spec], Duration::from_secs(15))
            .await
            .map_err(|e| admin_error("create topic", name, &e))
    }

    /// Deletes what a consumer runtime named `consumer` leaves behind for `topic`: its retry and
    /// dead-letter topics, the record of its replayed dead letters (`fanout dlq replay`) and its
    /// consumer group. Failures are printed, not returned, so clean-up never hides a test's own
    /// verdict.
    pub async fn delete_consumer(&self, topic: &str, consumer: &str) {
        use fanout_core::topics;
        for name in [
            topics::retry(topic, consumer),
            topics::dead_letter(topic, consumer),
            topics::dead_letter_replays(topic, consumer),
        ] {
            if let Err(e) = self.delete_topic(&name).await {
                eprintln!("testkit: could not delete {name}: {e}");
            }
        }
        if let Err(e) = self.delete_groups(&[consumer]).await {
            eprintln!("testkit: could not delete group {consumer}: {e}");
        }
    }

    /// Deletes consumer groups; one that never committed (and so does not exist) is not an error.
    pub async fn delete_groups(&self, names: &[&str]) -> Result<(), TestkitError> {
        fanout_kafka::delete_groups(&self.client_config(), names)
            .await
            .map_err(|e| admin_error("delete group", &names.join(","), &e))
    }

    /// Every record `topic` holds now, from its oldest, in offset order per partition (see
    /// [`fanout_kafka::TopicRead`]): records acknowledged before the call are all there. Joins no
    /// consumer group, so reading leaves nothing behind.
    pub async fn read(&self, topic: &str) -> Result<Vec<FetchedRecord>, TestkitError> {
        Ok(TopicRead::new(topic).read(&self.client_config()).await?)
    }

    /// [`Kafka::read`] again until `topic` holds at least `count` records (something else writes
    /// them, e.g. a consumer dead-lettering events), failing after `limit`. Returns every record,
    /// so extras show too. A read that fails (a broker still electing leaders after a restart) is
    /// tried again; the last failure is returned at the deadline.
    pub async fn read_at_least(
        &self,
        topic: &str,
        count: usize,
        limit: Duration,
    ) -> Result<Vec<FetchedRecord>, TestkitError> {
        let deadline = Instant::now() + limit;
        loop {
            let read = self.read(topic).await;
            match read {
                Ok(records) if records.len() >= count => return Ok(records),
                Ok(records) if Instant::now() >= deadline => {
                    return Err(TestkitError::TooFewRecords {
                        topic: topic.to_owned(),
                        expected: count,
                        found: records.len(),
                        waited: limit,
                    })
                }
                Err(error) if Instant::now() >= deadline => return Err(error),
                Ok(_) | Err(_) => tokio::time::sleep(READ_AGAIN).await,
            }
        }
    }

    /// Deletes a topic; a topic that does not exist is not an error.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TestkitError> {
        fanout_kafka::delete_topics(&self.client_config(), &[name])
            .await
            .map_err(|e| admin_error("delete topic", name, &e))
    }
}
fn admin_error(operation: &'static str, target: &str, e: &AdminError) -> TestkitError {
    TestkitError::Admin { operation, target: target.to_owned(), reason: fanout_core::report(e) }
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
