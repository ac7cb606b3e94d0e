//! The gateway: `POST /callbacks/{source}` verified, deduplicated, published, acknowledged.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use fanout_kafka::{OwnedRecord, TopicSpec};
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use serde_json::Value;
use tokio::{net::TcpListener, sync::mpsc};

use crate::{
    callback::{callback_event_id, CallbackReceived},
    dedupe::{Dedupe, Published},
    metrics::{self, Outcome, SourceMetrics},
    settings::{Field, GatewayConfig, SourceSettings},
    unix_ms, GatewayError, Rejection, Verifier,
};

/// Requests written to the rejects topic are cut to this many bytes of body.
const REJECT_BODY_BYTES: usize = 64 * 1024;

/// A running gateway, its ports bound; [`Gateway::run`] serves until shutdown.
///
/// ```no_run
/// # async fn example() -> Result<(), fanout_gateway::GatewayError> {
/// let config: fanout_gateway::GatewayConfig = fanout_config::load(Some("gateway.toml".as_ref()))
///     .map_err(|e| fanout_gateway::GatewayError::Config(e.to_string()))?;
/// let gateway = fanout_gateway::Gateway::start(config).await?;
/// println!("callbacks at http://{}/callbacks/<source>", gateway.callbacks_addr());
/// gateway.run(async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
#[derive(Debug)]
pub struct Gateway {
    callbacks: (TcpListener, SocketAddr),
    admin: (TcpListener, SocketAddr),
    shared: Arc<Shared>,
    sweep_every: Duration,
    keep: Duration,
    name: String,
    targets_dir: Option<std::path::PathBuf>,
    /// The token the admin port requires (`[http] bearer_token`), if any.
    admin_token: Option<fanout_core::Secret>,
}

struct Source {
    name: Arc<str>,
    verifier: Verifier,
    settings: SourceSettings,
    topic: Arc<str>,
    publish: PublishOptions,
    metrics: SourceMetrics,
}

struct Shared {
    sources: HashMap<String, Source>,
    publisher: Publisher,
    dedupe: Dedupe,
    publish_timeout: Duration,
    retry_after: HeaderValue,
    rejects: mpsc::Sender<OwnedRecord>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("sources", &self.sources.keys()).finish_non_exhaustive()
    }
}

impl Gateway {
    /// Checks the configuration (every source's keys), connects to and migrates the dedupe
    /// store, creates the sources' topics and the rejects topic where missing, registers the
    /// `CallbackReceived` schema under each source's topic, and binds both ports. Nothing is
    /// accepted before [`Gateway::run`].
    pub async fn start(config: GatewayConfig) -> Result<Self, GatewayError> {
        config.validate().map_err(GatewayError::Config)?;
        let admin_token = config.http.bearer_token().map_err(GatewayError::Config)?;
        let mut verifiers = Vec::with_capacity(config.sources.len());
        for (name, source) in &config.sources {
            verifiers.push((name.clone(), source.verifier(name)?, source.clone()));
        }
        let dedupe = Dedupe::open(&config.store.url, config.store.max_connections).await?;

        let client = fanout_kafka::client_config(&config.kafka);
        let mut topics: Vec<TopicSpec> =
            config.sources.values().map(|s| TopicSpec::new(&s.topic, config.partitions)).collect();
        topics.push(TopicSpec::new(&config.rejects_topic, 1));
        fanout_kafka::ensure_topics(&client, &topics, Duration::from_secs(30)).await?;

        let mut publisher_config = PublisherConfig::new(&config.name);
        publisher_config.kafka = config.kafka.clone();
        publisher_config.registry = config.registry.clone();
        // A callback not acknowledged in time is answered 503, and librdkafka gives up on it
        // about then too rather than delivering it much later (were it delivered anyway, the
        // provider's retry is the same event, by its id).
        publisher_config.producer.delivery_timeout_ms =
            u32::try_from(config.publish_timeout_ms).unwrap_or(u32::MAX);
        publisher_config.producer.linger_ms = 1;
        let publisher = Publisher::new(publisher_config)?;
        let mut sources = HashMap::with_capacity(verifiers.len());
        for (name, verifier, settings) in verifiers {
            publisher.prepare_for::<CallbackReceived>(&settings.topic).await?;
            let source = Source {
                name: Arc::from(name.as_str()),
                verifier,
                topic: Arc::from(settings.topic.as_str()),
                publish: PublishOptions::new().topic(&settings.topic),
                metrics: SourceMetrics::new(&name),
                settings,
            };
            sources.insert(name, source);
        }

        let rejects = spawn_rejects_writer(publisher.clone(), config.rejects_topic.clone());
        let callbacks = bind(&config.listen, "listen").await?;
        let admin = bind(&config.http.listen, "http.listen").await?;
        let retry_after = HeaderValue::from(config.retry_after_secs);
        let shared = Arc::new(Shared {
            sources,
            publisher,
            dedupe,
            publish_timeout: config.publish_timeout(),
            retry_after,
            rejects,
        });
        let keep = Duration::from_secs(config.dedupe_hours * 3600);
        let sweep_every = Duration::from_secs(config.sweep_interval_secs);
        Ok(Self {
            callbacks,
            admin,
            shared,
            sweep_every,
            keep,
            name: config.name,
            targets_dir: config.prometheus_targets_dir,
            admin_token,
        })
    }

    /// Where `POST /callbacks/{source}` is served.
    pub fn callbacks_addr(&self) -> SocketAddr {
        self.callbacks.1
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.admin.1
    }

    /// Serves until `shutdown` completes; then stops taking requests, answers those in flight and
    /// flushes what they published.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), GatewayError> {
        let callbacks =
            Router::new().route("/callbacks/{source}", post(callback)).with_state(self.shared.clone());
        let admin = Router::new()
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route("/routes/{source}/{correlation_id}", put(register_route))
            .with_state(self.shared.clone());
        // With `[http] bearer_token`, metrics and route registration need it; the probes do not.
        let secured = self.admin_token.is_some();
        let admin = fanout_service::require_bearer(admin, self.admin_token);
        let admin = tokio::spawn(async move {
            if let Err(error) = axum::serve(self.admin.0, admin).await {
                tracing::error!(%error, "the gateway's admin endpoint stopped");
            }
        });
        let sweep = tokio::spawn(sweep(self.shared.clone(), self.keep, self.sweep_every));
        // Removed when `run` returns: a stopped gateway must not stay a scrape target.
        let _target = match &self.targets_dir {
            Some(dir) => {
                Some(fanout_service::ScrapeTarget::write_for(dir, &self.name, self.admin.1, secured)?)
            }
            None => None,
        };
        tracing::info!(
            callbacks = %self.callbacks.1,
            http = %self.admin.1,
            sources = ?self.shared.sources.keys().collect::<Vec<_>>(),
            "gateway serving"
        );
        let served = axum::serve(self.callbacks.0, callbacks).with_graceful_shutdown(shutdown).await;
        sweep.abort();
        admin.abort();
        served.map_err(|source| GatewayError::Serve { source })?;
        self.shared.publisher.flush(Duration::from_secs(10)).await?;
        tracing::info!("gateway stopped");
        Ok(())
    }
}

async fn bind(listen: &str, key: &'static str) -> Result<(TcpListener, SocketAddr), GatewayError> {
    let failed = |source| GatewayError::Bind { key, listen: listen.to_owned(), source };
    let listener = TcpListener::bind(listen).await.map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    Ok((listener, addr))
}

/// The answer to one callback request.
fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrived = Instant::now();
    let received_at = SystemTime::now();
    let Some(source) = shared.sources.get(&name) else {
        metrics::unknown_source();
        return answer(StatusCode::NOT_FOUND, serde_json::json!({"error": "no such source"}));
    };
    let limit = source.verifier.max_body_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = match declared {
        Some(declared) if declared > limit => None,
        _ => axum::body::to_bytes(body, limit).await.ok(),
    };
    let Some(body) = body else {
        let rejection = Rejection::BodyTooLarge { limit, actual: declared.unwrap_or(limit + 1) };
        return shared.reject(source, &rejection, &[], arrived);
    };
    let verified = match source.verifier.verify(&headers, &body, received_at) {
        Ok(verified) => verified,
        Err(rejection) => return shared.reject(source, &rejection, &body, arrived),
    };
    let event = match source.settings.route(&name, &headers, &verified, received_at) {
        Ok(event) => event,
        Err(reason) => {
            tracing::warn!(source = %name, %reason, "verified callback not published: unroutable");
            shared.write_reject(source, "unroutable", &reason, &body, body.len());
            source.metrics.count(Outcome::Unroutable, arrived);
            return answer(StatusCode::UNPROCESSABLE_ENTITY, serde_json::json!({ "error": reason }));
        }
    };
    shared.publish(source, event, arrived).await
}

impl Shared {
    /// 401 without a reason (413 for a body over the limit); the reason goes to the log, the
    /// metrics and the rejects topic.
    fn reject(&self, source: &Source, rejection: &Rejection, body: &[u8], arrived: Instant) -> Response {
        let kind = rejection.kind();
        tracing::warn!(source = %source.name, reason = kind, detail = %rejection, "callback rejected");
        source.metrics.count(Outcome::Rejected(kind), arrived);
        // A body over the limit was not read: its declared size stands for it.
        let size = match rejection {
            Rejection::BodyTooLarge { actual, .. } => *actual,
            _ => body.len(),
        };
        self.write_reject(source, kind, &rejection.to_string(), body, size);
        match rejection {
            Rejection::BodyTooLarge { .. } => {
                answer(StatusCode::PAYLOAD_TOO_LARGE, serde_json::json!({"error": "body too large"}))
            }
            _ => answer(StatusCode::UNAUTHORIZED, serde_json::json!({"error": "unauthorized"})),
        }
    }

    /// Queues a rejected request for the rejects topic; dropped (and counted) when the queue is
    /// full, so a flood of forgeries cannot hold the gateway up.
    fn write_reject(&self, source: &Source, reason: &str, detail: &str, body: &[u8], size: usize) {
        let at = unix_ms(SystemTime::now()).to_string();
        let record = OwnedRecord {
            topic: String::new(),
            key: Some(source.name.as_bytes().to_vec()),
            payload: Some(body[..body.len().min(REJECT_BODY_BYTES)].to_vec()),
            headers: vec![
                (REJECT_SOURCE.to_owned(), Some(source.name.as_bytes().to_vec())),
                (REJECT_REASON.to_owned(), Some(reason.as_bytes().to_vec())),
                (REJECT_DETAIL.to_owned(), Some(detail.as_bytes().to_vec())),
                (REJECT_AT.to_owned(), Some(at.into_bytes())),
                (REJECT_BODY_BYTES_HEADER.to_owned(), Some(size.to_string().into_bytes())),
            ],
        };
        if self.rejects.try_send(record).is_err() {
            metrics::reject_dropped();
        }
    }

    /// Dedupe, publish, record: 200 only once the callback is in Kafka and remembered.
    async fn publish(&self, source: &Source, event: CallbackReceived, arrived: Instant) -> Response {
        let unavailable = |what: &str| {
            source.metrics.count(Outcome::Unavailable, arrived);
            let mut response =
                answer(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": "try again later"}));
            response.headers_mut().insert(header::RETRY_AFTER, self.retry_after.clone());
            tracing::warn!(source = %source.name, unavailable = what, "callback answered 503");
            response
        };
        // The store gets the time Kafka gets: a database that hangs is answered 503, not waited on.
        let lookup = self.dedupe.lookup(&source.name, &event.provider_event_id, &event.correlation_id);
        let known = match tokio::time::timeout(self.publish_timeout, lookup).await {
            Ok(Ok(known)) => known,
            Ok(Err(error)) => {
                tracing::warn!(error = %fanout_core::report(&*error), "dedupe lookup failed");
                return unavailable("dedupe store");
            }
            Err(_) => return unavailable("dedupe store (timed out)"),
        };
        if known.published {
            source.metrics.count(Outcome::Duplicate, arrived);
            return answer(StatusCode::OK, serde_json::json!({"status": "duplicate"}));
        }
        // A requester that registered the request gets its callbacks on its own topic.
        let (topic, publish) = match known.reply_topic {
            Some(reply_topic) => (Arc::from(reply_topic.as_str()), PublishOptions::new().topic(reply_topic)),
            None => (source.topic.clone(), source.publish.clone()),
        };
        let options = PublishOptions {
            event_id: Some(callback_event_id(&source.name, &event.provider_event_id)),
            ..publish
        };
        // librdkafka fails the record at its delivery timeout (the same figure); this bound is
        // only for a send that waits for room in a full queue.
        let delivery = match tokio::time::timeout(
            self.publish_timeout * 2,
            self.publisher.publish_with(&event, &options),
        )
        .await
        {
            Ok(Ok(delivery)) => delivery,
            Ok(Err(error)) => {
                tracing::warn!(error = %fanout_core::report(&error), "publishing a callback failed");
                return unavailable("kafka");
            }
            Err(_) => return unavailable("kafka (timed out)"),
        };
        let published = Published {
            source: source.name.clone(),
            provider_event_id: event.provider_event_id,
            topic,
            partition: delivery.partition,
            offset: delivery.offset,
            at_ms: unix_ms(SystemTime::now()),
        };
        // Published but not remembered: the provider's retry publishes it again, under the same
        // event id, which consumers apply once.
        match tokio::time::timeout(self.publish_timeout, self.dedupe.record(published)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %fanout_core::report(&*error), "recording a published callback failed");
                return unavailable("dedupe store");
            }
            Err(_) => return unavailable("dedupe store (timed out)"),
        }
        source.metrics.count(Outcome::Accepted, arrived);
        answer(StatusCode::OK, serde_json::json!({"status": "accepted"}))
    }
}

/// The header names of a record on the rejects topic.
pub const REJECT_SOURCE: &str = "fanout_gateway_source";
/// Why it was rejected: a [`Rejection::kind`] or `unroutable`.
pub const REJECT_REASON: &str = "fanout_gateway_reason";
/// The reason in words (never a secret or a signature).
pub const REJECT_DETAIL: &str = "fanout_gateway_detail";
/// When, Unix ms.
pub const REJECT_AT: &str = "fanout_gateway_rejected_at";
/// The body's whole size; the record carries at most its first 64 KiB.
pub const REJECT_BODY_BYTES_HEADER: &str = "fanout_gateway_body_bytes";

fn spawn_rejects_writer(publisher: Publisher, topic: String) -> mpsc::Sender<OwnedRecord> {
    let (tx, mut rx) = mpsc::channel::<OwnedRecord>(1024);
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 256).await > 0 {
            for record in &mut batch {
                record.topic.clone_from(&topic);
            }
            for result in publisher.send_records(&batch).await {
                if let Err(error) = result {
                    tracing::warn!(error = %fanout_core::report(&error), topic, "a rejected request was not written to the rejects topic");
                }
            }
            batch.clear();
        }
    });
    tx
}

impl SourceSettings {
    /// The event to publish for a verified request, or why it cannot be routed.
    fn route(
        &self,
        source: &str,
        headers: &HeaderMap,
        verified: &crate::Verified<'_>,
        received_at: SystemTime,
    ) -> Result<CallbackReceived, String> {
        let body =
            std::str::from_utf8(verified.body()).map_err(|_| "the body is not UTF-8 text".to_owned())?;
        let mut fields = Fields {
            headers,
            body: verified.body(),
            signed: verified.signed_body(),
            parsed: None,
            parsed_signed: None,
        };
        let event_id = fields.get(&self.event_id, "event_id")?;
        let correlation_id = fields.get(&self.correlation_id, "correlation_id")?;
        // Informative only: a callback whose type is not where expected is still the answer to
        // its request, so it is published without one rather than refused.
        let event_type = self.event_type.as_ref().and_then(|field| fields.get(field, "event_type").ok());
        Ok(CallbackReceived {
            source: source.to_owned(),
            provider_event_id: event_id,
            correlation_id,
            event_type,
            received_at: unix_ms(received_at),
            signed_at: verified.timestamp().map(|secs| secs.saturating_mul(1000)),
            body: body.to_owned(),
        })
    }
}

/// A request's values, each body parsed as JSON at most once.
struct Fields<'a> {
    headers: &'a HeaderMap,
    body: &'a [u8],
    signed: &'a [u8],
    parsed: Option<Value>,
    parsed_signed: Option<Value>,
}

impl Fields<'_> {
    fn get(&mut self, field: &Field, key: &str) -> Result<String, String> {
        let not_found = || format!("{key}: nothing at {field}");
        let value = match field {
            Field::Header(name) => {
                let value = self.headers.get(name.as_str()).ok_or_else(not_found)?;
                return value
                    .to_str()
                    .map(str::to_owned)
                    .map_err(|_| format!("{key}: {field} is not visible ASCII"));
            }
            Field::Body(pointer) => parsed(&mut self.parsed, self.body, key)?.pointer(pointer),
            Field::Signed(pointer) => parsed(&mut self.parsed_signed, self.signed, key)?.pointer(pointer),
        };
        match value {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            Some(Value::Number(number)) => Ok(number.to_string()),
            Some(_) => Err(format!("{key}: {field} is not a non-empty string or a number")),
            None => Err(not_found()),
        }
    }
}

fn parsed<'v>(slot: &'v mut Option<Value>, bytes: &[u8], key: &str) -> Result<&'v Value, String> {
    if slot.is_none() {
        let value =
            serde_json::from_slice(bytes).map_err(|e| format!("{key}: the body is not JSON ({e})"))?;
        *slot = Some(value);
    }
    Ok(slot.get_or_insert(Value::Null))
}

async fn metrics_text() -> Result<String, StatusCode> {
    prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

/// Ready while the dedupe store answers: without it every callback would be answered 503.
async fn ready(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    let store = tokio::time::timeout(Duration::from_secs(2), shared.dedupe.ping()).await.unwrap_or(false);
    let sources = shared.sources.len();
    if store {
        (StatusCode::OK, format!("sources={sources} store=ok"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("sources={sources} store=unreachable"))
    }
}

/// A requester's route: `PUT /routes/{source}/{correlation_id}` on the admin port.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRequest {
    /// The requester's topic for this request's callbacks.
    reply_topic: String,
    /// How long the route is kept, in seconds.
    expires_in_secs: u64,
}

/// The longest a route is kept: a requester that waits longer than a month for a callback
/// consumes the source's topic instead.
const MAX_ROUTE_SECS: u64 = 31 * 86_400;

/// Registers where the callbacks answering one request go: 204, or 400/404 saying what is wrong.
async fn register_route(
    State(shared): State<Arc<Shared>>,
    Path((source, correlation_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let bad = |message: String| answer(StatusCode::BAD_REQUEST, serde_json::json!({ "error": message }));
    if !shared.sources.contains_key(&source) {
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": format!("no source {source:?}") }),
        );
    }
    let request: RouteRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad(format!("expected {{\"reply_topic\": \"...\", \"expires_in_secs\": N}}: {e}")),
    };
    if let Err(problem) = valid_topic(&request.reply_topic) {
        return bad(format!("reply_topic: {problem}"));
    }
    if request.expires_in_secs == 0 || request.expires_in_secs > MAX_ROUTE_SECS {
        return bad(format!("expires_in_secs: from 1 to {MAX_ROUTE_SECS}, got {}", request.expires_in_secs));
    }
    let expires_at_ms =
        unix_ms(SystemTime::now()) + i64::try_from(request.expires_in_secs * 1000).unwrap_or(i64::MAX);
    match shared.dedupe.route(&source, &correlation_id, &request.reply_topic, expires_at_ms).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => {
            tracing::warn!(error = %fanout_core::report(&error), "registering a route failed");
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "the store is unavailable"}),
            );
            response.headers_mut().insert(header::RETRY_AFTER, shared.retry_after.clone());
            response
        }
    }
}

/// Kafka's rule for a topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn valid_topic(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err(format!("{name:?} is not a Kafka topic name (1 to 249 characters, not . or ..)"));
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some(c) => {
            Err(format!("{name:?} is not a Kafka topic name: {c:?} (letters, digits, '.', '_', '-' only)"))
        }
        None => Ok(()),
    }
}

/// Forgets published callbacks older than `keep`, every `every`.
async fn sweep(shared: Arc<Shared>, keep: Duration, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let before = unix_ms(SystemTime::now() - keep);
        match shared.dedupe.forget_before(before).await {
            Ok(0) => {}
            Ok(count) => {
                metrics::forgotten(count);
                tracing::info!(count, "forgot published callbacks past dedupe_hours");
            }
            Err(error) => {
                tracing::warn!(error = %fanout_core::report(&error), "the dedupe sweep failed; it runs again")
            }
        }
        if let Err(error) = shared.dedupe.forget_routes(unix_ms(SystemTime::now())).await {
            tracing::warn!(error = %fanout_core::report(&error), "the route sweep failed; it runs again");
        }
    }
}
