//! What the gateway's tests share: a gateway in process on the real broker, registry and
//! PostgreSQL, and a provider that signs its callbacks.
#![allow(dead_code)] // each test binary uses its own part

use std::{net::SocketAddr, time::SystemTime};

use fanout_gateway::{Gateway, GatewayConfig};
use fanout_testkit::{Kafka, Registry, TestDatabase, TestTopic};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::{sync::oneshot, task::JoinHandle};

/// The shared secret of the test sources.
pub const SECRET: &str = "gateway-test-secret";

/// A gateway for one test, its topics and database, and how to stop it.
#[derive(Debug)]
pub struct TestGateway {
    pub kafka: Kafka,
    pub registry: Registry,
    pub database: TestDatabase,
    pub topic: TestTopic,
    pub rejects: TestTopic,
    pub config: GatewayConfig,
    pub running: Option<Running>,
}

#[derive(Debug)]
pub struct Running {
    pub callbacks: SocketAddr,
    pub http: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), fanout_gateway::GatewayError>>,
}

impl TestGateway {
    /// The gateway's configuration with one source, `pay`: the generic HMAC scheme signing
    /// `{timestamp}.{body}` into `X-Signature`, ids in the body. `adjust` changes it before start.
    pub async fn start(adjust: impl FnOnce(&mut GatewayConfig)) -> anyhow::Result<Self> {
        let kafka = Kafka::connect().await?;
        let registry = Registry::start(&kafka).await?;
        let database = fanout_testkit::Postgres::connect().await?.database().await?;
        let topic = kafka.future_topic("gateway-pay");
        let rejects = kafka.future_topic("gateway-rejects");
        let mut config: GatewayConfig = fanout_config::from_toml_str(&format!(
            "listen = \"127.0.0.1:0\"\nrejects_topic = \"{}\"\npartitions = 3\npublish_timeout_ms = 3000\n\
             [http]\nlisten = \"127.0.0.1:0\"\n{}",
            rejects.name(),
            pay_source("pay", topic.name()),
        ))?;
        config.kafka.bootstrap = kafka.bootstrap().to_owned();
        config.registry = registry.settings();
        config.store.url = database.url();
        adjust(&mut config);
        let mut gateway = Self { kafka, registry, database, topic, rejects, config, running: None };
        gateway.run().await?;
        Ok(gateway)
    }

    /// Starts (again) a gateway of this configuration.
    pub async fn run(&mut self) -> anyhow::Result<()> {
        let gateway = Gateway::start(self.config.clone()).await?;
        let (callbacks, http) = (gateway.callbacks_addr(), gateway.http_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run(async move {
            let _ = stopped.await;
        }));
        self.running = Some(Running { callbacks, http, stop, task });
        Ok(())
    }

    /// Stops the running gateway gracefully.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            running.task.await??;
        }
        Ok(())
    }

    pub fn url(&self, source: &str) -> String {
        let running = self.running.as_ref().expect("running");
        format!("http://{}/callbacks/{source}", running.callbacks)
    }

    pub fn admin_url(&self, path: &str) -> String {
        let running = self.running.as_ref().expect("running");
        format!("http://{}{path}", running.http)
    }

    /// `fanout_gateway_requests_total{source, outcome}` as served now.
    pub async fn requests(&self, source: &str, outcome: &str) -> anyhow::Result<f64> {
        let text = reqwest::get(self.admin_url("/metrics")).await?.text().await?;
        let series = format!("fanout_gateway_requests_total{{outcome=\"{outcome}\",source=\"{source}\"}} ");
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0))
    }

    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.registry.stop().await?;
        Ok(())
    }
}

/// The `[sources.NAME]` table of the test source: the generic HMAC scheme signing
/// `{timestamp}.{body}` into `X-Signature` with [`SECRET`], ids in the body, a 4 KiB limit.
pub fn pay_source(name: &str, topic: &str) -> String {
    format!(
        r#"
[sources.{name}]
verify = "hmac"
secrets = ["{SECRET}"]
signature_header = "X-Signature"
timestamp_header = "X-Timestamp"
signed_payload = "{{timestamp}}.{{body}}"
topic = "{topic}"
event_id = "body:/id"
correlation_id = "body:/request_id"
event_type = "body:/status"
max_body_bytes = 4096
"#
    )
}

/// Renames the test source `pay` to `to`: tests in one binary share the process's metrics, so
/// each counts its own source's.
pub fn rename_source(config: &mut GatewayConfig, to: &str) {
    let source = config.sources.remove("pay").expect("the test source");
    config.sources.insert(to.to_owned(), source);
}

/// A provider's callback for `pay`: JSON with the ids, signed now with `secret`.
pub fn callback(id: &str, request_id: &str, secret: &str) -> (Vec<(&'static str, String)>, String) {
    let body = serde_json::json!({"id": id, "request_id": request_id, "status": "SUCCESS", "amount": 1299})
        .to_string();
    (sign(&body, secret, now_secs()), body)
}

/// The headers of `body` signed at `timestamp` with `secret`.
pub fn sign(body: &str, secret: &str, timestamp: i64) -> Vec<(&'static str, String)> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    vec![
        ("X-Signature", hex::encode(mac.finalize().into_bytes())),
        ("X-Timestamp", timestamp.to_string()),
        ("Content-Type", "application/json".to_owned()),
    ]
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// POSTs a callback; its status, `Retry-After` and body.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&'static str, String)],
    body: impl Into<reqwest::Body>,
) -> anyhow::Result<(u16, Option<String>, String)> {
    let mut request = client.post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((status, retry_after, response.text().await?))
}
