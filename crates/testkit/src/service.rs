//! Test support for consumer services (`anyhow` throughout, as in the tests themselves).
//!
//! * [`Stack`]: the real broker, the built-in registry in process on its own state topic, a
//!   publisher, and [`Stack::configure`] to point a service at them with a unique consumer
//!   group.
//! * [`Running`]: a built service running in the background, stopped gracefully.
//! * [`get_json`], [`wait_for_json`] and [`crate::wait_until`]: read APIs, and conditions polled up to
//!   a deadline instead of fixed sleeps.
use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context;
use fanout_core::Event;
use fanout_producer::{OwnedRecord, PublishOptions, Publisher, PublisherConfig};
use fanout_service::{Service, ServiceConfig, ServiceError, Settings};

use crate::{Kafka, Registry, TestTopic};
use tokio::{sync::oneshot, task::JoinHandle};

/// The broker, an in-process registry and a publisher for one test.
#[derive(Debug)]
pub struct Stack {
    /// The test broker.
    pub kafka: Kafka,
    registry: Registry,
    publisher: Publisher,
}

impl Stack {
    /// Connects to the broker and starts a registry on a state topic of its own.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(Kafka::connect().await?).await
    }

    /// As [`Stack::start`] on another broker or cluster (the fault suite's three nodes).
    pub async fn start_on(kafka: Kafka) -> anyhow::Result<Self> {
        let registry = Registry::start(&kafka).await.context("starting the in-process registry")?;
        let publisher = Publisher::new(publisher_config(&kafka, &registry, "service-tests"))
            .context("creating the publisher")?;
        Ok(Self { kafka, registry, publisher })
    }

    /// The registry's base URL.
    pub fn registry_url(&self) -> &str {
        self.registry.url()
    }

    /// A fresh topic with `partitions` partitions, deleted when the guard drops.
    pub async fn topic(&self, prefix: &str, partitions: i32) -> anyhow::Result<TestTopic> {
        Ok(self.kafka.topic(prefix, partitions).await?)
    }

    /// Points `config` at this stack: a unique consumer name (prefixed with the service's
    /// kind), the test broker and registry, HTTP on a free port, `store_url`, and short commit
    /// and retry intervals so tests finish quickly.
    pub fn configure<S: Settings>(&self, config: &mut ServiceConfig<S>, store_url: &str) {
        config.consumer = crate::consumer_config(S::SERVICE, store_url);
        config.consumer.kafka.bootstrap = self.kafka.bootstrap().to_owned();
        config.consumer.kafka.properties.extend(self.kafka.properties().iter().cloned());
        config.registry.urls = vec![self.registry.url().to_owned()];
    }

    /// A publisher's configuration pointing at this stack's broker and registry.
    pub fn publisher_config(&self, source: &str) -> PublisherConfig {
        publisher_config(&self.kafka, &self.registry, source)
    }

    /// Publishes `events` to `topic` through the SDK and waits for every acknowledgement.
    pub async fn publish<E: Event>(&self, topic: &str, events: &[E]) -> anyhow::Result<()> {
        for (index, delivered) in self
            .publisher
            .publish_all(events, &PublishOptions::new().topic(topic))
            .await
            .into_iter()
            .enumerate()
        {
            delivered.with_context(|| format!("publishing event {index} to {topic}"))?;
        }
        Ok(())
    }

    /// Publishes raw bytes (a poison record) to `topic` with a fresh `ce_id`, through the SDK's
    /// untyped layer (same delivery guarantee, no encoding).
    pub async fn publish_raw(&self, topic: &str, key: &[u8], payload: &[u8]) -> anyhow::Result<()> {
        let event_id = uuid::Uuid::now_v7();
        let record = OwnedRecord {
            topic: topic.to_owned(),
            key: Some(key.to_vec()),
            payload: Some(payload.to_vec()),
            headers: vec![(fanout_core::headers::ID.to_owned(), Some(event_id.to_string().into_bytes()))],
        };
        let sent = self.publisher.send_records(std::slice::from_ref(&record)).await;
        sent.into_iter()
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("publishing raw bytes to {topic}"))?;
        Ok(())
    }

    /// The records of `topic` once it holds at least `count`, within `limit`: each record's key
    /// and headers (values as text).
    pub async fn read_topic(
        &self,
        topic: &str,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<Vec<(String, HashMap<String, String>)>> {
        let text = |bytes: Option<&[u8]>| String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned();
        Ok(self
            .kafka
            .read_at_least(topic, count, limit)
            .await?
            .into_iter()
            .map(|record| {
                let headers = record
                    .headers
                    .iter()
                    .map(|(name, value)| (name.clone(), text(value.as_deref())))
                    .collect();
                (text(record.key.as_deref()), headers)
            })
            .collect())
    }

    /// Deletes the retry and dead-letter topics and the group of the consumer `name` of `topic`.
    pub async fn delete_derived_topics(&self, topic: &str, name: &str) {
        self.kafka.delete_consumer(topic, name).await;
    }

    /// Stops the registry and deletes its state topic.
    pub async fn stop(self) -> anyhow::Result<()> {
        Ok(self.registry.stop().await?)
    }
}

fn publisher_config(kafka: &Kafka, registry: &Registry, source: &str) -> PublisherConfig {
    let mut config = PublisherConfig::new(source);
    config.kafka.bootstrap = kafka.bootstrap().to_owned();
    config.kafka.properties.extend(kafka.properties().iter().cloned());
    config.registry = registry.settings();
    config
}

/// A service running in the background.
#[derive(Debug)]
pub struct Running {
    /// The consumer's name (its group).
    pub name: String,
    /// Where its HTTP endpoint listens.
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServiceError>>,
}

impl Running {
    /// Runs a built service until [`Running::stop`].
    pub fn start(service: Service) -> Self {
        let name = service.name().to_owned();
        let http = service.http_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(service.run(async move {
            let _ = stopped.await;
        }));
        Self { name, http, stop: Some(stop), task }
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `fanout_consumed_total` of this service's consumer with `outcome` (`ok`, `duplicate`,
    /// `dead_lettered`, ...), summed over topics, as its own `/metrics` serves it.
    pub async fn consumed(&self, outcome: &str) -> anyhow::Result<f64> {
        let url = self.url("/metrics");
        let text = reqwest::get(&url).await.with_context(|| format!("GET {url}"))?.text().await?;
        let consumer = format!("consumer=\"{}\"", self.name);
        let outcome = format!("outcome=\"{outcome}\"");
        Ok(text
            .lines()
            .filter(|l| {
                l.starts_with("fanout_consumed_total{") && l.contains(&consumer) && l.contains(&outcome)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Graceful shutdown, within a minute; fails if the service failed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .context("the service did not stop within 60 s")?
            .context("the service task panicked")?
            .context("the service failed")?;
        Ok(())
    }
}

/// A fresh SQLite database URL in a temporary directory, kept as long as the guard lives.
pub fn sqlite(name: &str) -> anyhow::Result<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join(format!("{name}.db")).display());
    Ok((dir, url))
}

/// GETs `url`: the status and the body as JSON (`Null` when the body is not JSON).
pub async fn get_json(url: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let response = reqwest::get(url).await.with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
}

/// GETs `url`: the status and the body as text.
pub async fn get_text(url: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::get(url).await.with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// POSTs `body` as JSON to `url`: the status and the answer as JSON (`Null` when it is not JSON).
pub async fn post_json(url: &str, body: &serde_json::Value) -> anyhow::Result<(u16, serde_json::Value)> {
    let response =
        reqwest::Client::new().post(url).json(body).send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let answer = response.bytes().await?;
    Ok((status, serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null)))
}

/// Waits until GET `url` answers 200 with exactly `expected`; on timeout, says what it last got.
pub async fn wait_for_json(url: &str, expected: &serde_json::Value, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = get_json(url).await?;
        if status == 200 && &body == expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for GET {url} to answer 200 {expected}; last answer: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
