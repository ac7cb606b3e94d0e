//! Shared by the producer's integration tests.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use fanout_events::{Category, PostPublished};
use fanout_producer::PublisherConfig;
use fanout_registry_server::{RegistryConfig, RegistryServer, RunningRegistry};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{Kafka, TestTopic};

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

/// Every record of `topic` once it holds at least `count` (failing after `deadline`), extras
/// included, in partition order, decoded.
#[allow(dead_code)]
pub async fn consume_all(
    kafka: &Kafka,
    registry: &RunningRegistry,
    topic: &str,
    count: usize,
    deadline: Duration,
) -> anyhow::Result<Vec<Record>> {
    let fetched = kafka.read_at_least(topic, count, deadline).await?;
    let serde = AvroSerde::from_urls(&[registry.url()])?;
    let mut records = Vec::with_capacity(fetched.len());
    for record in fetched {
        let payload = record.payload.as_deref().unwrap_or_default();
        let event = serde.decode::<PostPublished>(payload).await.context("decoding a published record")?;
        let headers = record
            .headers
            .iter()
            .map(|(name, value)| {
                (name.clone(), String::from_utf8_lossy(value.as_deref().unwrap_or_default()).into_owned())
            })
            .collect();
        records.push(Record {
            key: String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned(),
            partition: record.partition,
            offset: record.offset,
            headers,
            event,
        });
    }
    Ok(records)
}
