//! Shared helpers: a registry on a fresh topic of the real broker, and a small JSON client.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fanout_registry_server::{RegistryConfig, RegistryServer, RunningRegistry};
use fanout_testkit::TestTopic;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A unique registry state topic on the test broker (the registry itself creates it), deleted
/// when the test ends, pass or fail.
pub async fn topic() -> Result<TestTopic, fanout_testkit::TestkitError> {
    Ok(fanout_testkit::Kafka::connect().await?.future_topic("schemas"))
}

pub fn config(topic: &TestTopic) -> RegistryConfig {
    let bootstrap = fanout_testkit::bootstrap();
    let listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    RegistryConfig::new(bootstrap, listen).with_topic(topic.name())
}

pub async fn start(topic: &TestTopic) -> Result<Client, fanout_registry_server::RegistryError> {
    let registry = RegistryServer::start(config(topic)).await?;
    Ok(Client::new(registry))
}

/// A registry and an HTTP client for it.
pub struct Client {
    pub registry: RunningRegistry,
    http: reqwest::Client,
}

/// An answer: status, content type and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub text: String,
    pub body: Value,
}

impl Answer {
    pub fn error_code(&self) -> Option<i64> {
        self.body.get("error_code").and_then(Value::as_i64)
    }
}

impl Client {
    pub fn new(registry: RunningRegistry) -> Self {
        Self { registry, http: reqwest::Client::new() }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Result<Answer> {
        let mut request = self.http.request(method, format!("{}{path}", self.registry.url()));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        Self::answer(request.send().await?).await
    }

    pub async fn raw(&self, request: reqwest::RequestBuilder) -> reqwest::Result<Answer> {
        Self::answer(request.send().await?).await
    }

    pub fn http(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.registry.url()))
    }

    async fn answer(response: reqwest::Response) -> reqwest::Result<Answer> {
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, content_type, text, body })
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<Answer> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Result<Answer> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> reqwest::Result<Answer> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Result<Answer> {
        self.call(Method::DELETE, path, None).await
    }

    /// Registers `schema` under `subject` (raw path segment), asserting success; returns the id.
    pub async fn register(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
        let answer = self
            .post(
                &format!("/subjects/{subject}/versions?normalize=False"),
                serde_json::json!({
                    "schema": schema, "schemaType": "AVRO", "references": []
                }),
            )
            .await?;
        if answer.status != StatusCode::OK {
            return Err(format!("register under {subject} failed: {answer:?}").into());
        }
        answer.body.get("id").and_then(Value::as_i64).ok_or_else(|| format!("no id in {answer:?}").into())
    }
}

/// A record schema `R` with the given fields (JSON array items).
pub fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"fanout.test","fields":[{fields}]}}"#)
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
