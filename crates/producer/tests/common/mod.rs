//! Shared by the producer's integration tests.

use std::{collections::HashMap, time::Duration};

use anyhow::{ensure, Context};
use fanout_events::{Category, PostPublished};
use fanout_producer::PublisherConfig;
use fanout_registry_server::{RegistryConfig, RegistryServer, RunningRegistry};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{Kafka, TestTopic};
use rdkafka::{message::Headers, Message};

/// The built-in registry, in process, on its own state topic, which the guard deletes.
pub async fn start_registry(kafka: &Kafka) -> anyhow::Result<(RunningRegistry, TestTopic)> {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let state = kafka.future_topic("schemas");
    let config = RegistryConfig::new(kafka.bootstrap(), listen).with_topic(state.name());
    Ok((RegistryServer::start(config).await?, state))
}

pub fn publisher_config(kafka: &Kafka, registry: &RunningRegistry) -> PublisherConfig {
    let mut config = PublisherConfig::new("producer-tests");
    config.kafka.bootstrap = kafka.bootstrap().to_owned();
    config.registry.urls = vec![registry.url()];
    config
}

/// Event `seq` of post `post_id`; `published_at` carries `seq` so order can be checked.
pub fn event(post_id: i64, seq: i64) -> PostPublished {
    PostPublished {
        post_id,
        user_id: post_id % 13,
        category: Category::ALL[(seq % 4) as usize],
        city: "Lyon".into(),
        title: format!("post {post_id} #{seq}"),
        published_at: seq,
    }
}

#[allow(dead_code)]
pub struct Record {
    pub key: String,
    pub partition: i32,
    pub offset: i64,
    pub headers: HashMap<String, String>,
    pub event: PostPublished,
}

/// Reads `topic` from the beginning until `count` records arrived (fails after `deadline`),
/// then keeps reading briefly to catch extras. Records are in partition order.
#[allow(dead_code)]
pub async fn consume_all(
    kafka: &Kafka,
    registry: &RunningRegistry,
    topic: &str,
    count: usize,
    deadline: Duration,
) -> anyhow::Result<Vec<Record>> {
    let consumer = kafka.reader(topic)?;
    let mut raw = Vec::new();
    let until = std::time::Instant::now() + deadline;
    let mut quiet_since: Option<std::time::Instant> = None;
    loop {
        let now = std::time::Instant::now();
        ensure!(
            now < until || raw.len() >= count,
            "only {} of {count} records within {deadline:?}",
            raw.len()
        );
        // Once the expected count is reached, 2 s without a record means there are no extras.
        if raw.len() >= count && quiet_since.is_some_and(|q| q.elapsed() > Duration::from_secs(2)) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(message) => {
                let message = message?;
                quiet_since = None;
                let mut headers = HashMap::new();
                if let Some(hs) = message.headers() {
                    for h in hs.iter() {
                        headers.insert(
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                raw.push((
                    String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                    message.partition(),
                    message.offset(),
                    headers,
                    message.payload().unwrap_or_default().to_vec(),
                ));
            }
            None => {
                quiet_since.get_or_insert(now);
            }
        }
    }
    let serde = AvroSerde::from_urls(&[registry.url()])?;
    let mut records = Vec::with_capacity(raw.len());
    for (key, partition, offset, headers, payload) in raw {
        let event = serde.decode::<PostPublished>(&payload).await.context("decoding a published record")?;
        records.push(Record { key, partition, offset, headers, event });
    }
    Ok(records)
}
