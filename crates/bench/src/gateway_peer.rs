//! The gateway scenario's peer, run as its own process (`fanout bench gateway-peer`, hidden): the
//! bare axum handler a team would write to put callbacks on Kafka, without the gateway's safety.
//! `POST /callbacks/{source}` takes the body and publishes it as it is with the platform's one
//! record producer ([`RecordProducer`]: idempotent, `acks=all`, the gateway's linger and delivery
//! timeout), then answers 200 — no verification, no dedupe, no Avro, no registry. The gateway's
//! figures over this one's are what the safety costs.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header, StatusCode},
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use fanout_config::KafkaSettings;
use fanout_kafka::{Headers, ProducerSettings, Record, RecordProducer};

/// The gateway's own producer tuning (`Gateway::start`): linger 1 ms, and a delivery timeout
/// equal to its `publish_timeout_ms` (5 s by default), after which it answers 503.
pub const LINGER_MS: u32 = 1;
/// See [`LINGER_MS`].
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The gateway's answer to an accepted callback, byte for byte, so both sides write as much.
const ACCEPTED: &str = r#"{"status":"accepted"}"#;

/// `fanout bench gateway-peer`: serves the peer until SIGTERM.
#[derive(Debug, clap::Args)]
pub struct GatewayPeerArgs {
    /// Where `POST /callbacks/{source}` is served.
    #[arg(long)]
    listen: SocketAddr,
    /// `/readyz`, as the bench's child services serve it.
    #[arg(long, env = "FANOUT_HTTP__LISTEN")]
    http: SocketAddr,
    /// Kafka bootstrap servers.
    #[arg(long)]
    bootstrap: String,
    /// The topic every callback is published to.
    #[arg(long)]
    topic: String,
}

struct Peer {
    producer: RecordProducer,
    topic: String,
    next_key: AtomicU64,
}

impl GatewayPeerArgs {
    /// Serves until SIGTERM or Ctrl-C, then flushes.
    pub async fn run(self) -> anyhow::Result<()> {
        let kafka = KafkaSettings { bootstrap: self.bootstrap.clone(), ..KafkaSettings::default() };
        let settings = ProducerSettings {
            linger_ms: LINGER_MS,
            delivery_timeout_ms: PUBLISH_TIMEOUT.as_millis() as u32,
            ..ProducerSettings::default()
        };
        let peer = Arc::new(Peer {
            producer: RecordProducer::new(&kafka, &settings)?,
            topic: self.topic,
            next_key: AtomicU64::new(0),
        });
        let callbacks = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let admin = tokio::net::TcpListener::bind(self.http)
            .await
            .with_context(|| format!("cannot listen on {}", self.http))?;
        let routes = Router::new().route("/callbacks/{source}", post(callback)).with_state(peer.clone());
        let admin_routes = Router::new().route("/readyz", get(|| async { "ok" }));
        let admin = tokio::spawn(async move { axum::serve(admin, admin_routes).await });
        axum::serve(callbacks, routes).with_graceful_shutdown(fanout_service::shutdown_signal()).await?;
        admin.abort();
        peer.producer.flush(Duration::from_secs(10)).await?;
        Ok(())
    }
}

async fn callback(
    State(peer): State<Arc<Peer>>,
    Path(_source): Path<String>,
    body: Bytes,
) -> axum::response::Response {
    // A unique key per callback spreads them over the partitions as the gateway's unique
    // correlation ids do (a keyless record would stick to one partition per batch: fewer, larger
    // batches than the gateway sends, an advantage that has nothing to do with safety).
    let key = peer.next_key.fetch_add(1, Ordering::Relaxed).to_string();
    let record = Record {
        topic: &peer.topic,
        partition: None,
        key: Some(key.as_bytes()),
        payload: Some(&body[..]),
        headers: Headers::with_capacity(0),
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, peer.producer.send(record)).await {
        Ok(Ok(_)) => ([(header::CONTENT_TYPE, "application/json")], ACCEPTED).into_response(),
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
