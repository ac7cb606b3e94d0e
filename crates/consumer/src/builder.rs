//! Wiring a consumer: config, handlers, decoder, extra HTTP routes.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use fanout_core::Event;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sqlx::AnyPool;

use crate::{
    batch::Engine,
    failure::Outbound,
    handler::{Route, Typed},
    kafka::{Context, Shared},
    metrics::ConsumerMetrics,
    routing::Routes,
    store::Store,
    ConsumerConfig, ConsumerError, Handler, RegistryDecoder,
};

type MakeRoute = Box<dyn FnOnce(RegistryDecoder) -> Arc<dyn Route> + Send>;
type MakeRouter = Box<dyn FnOnce(AnyPool) -> axum::Router + Send>;

/// Builds a [`Consumer`]: a configuration, a decoder and one handler per event type or topic.
pub struct ConsumerBuilder {
    config: ConsumerConfig,
    decoder: Option<RegistryDecoder>,
    handlers: Vec<(String, MakeRoute)>,
    routes: Vec<MakeRouter>,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<&str> = self.handlers.iter().map(|(t, _)| t.as_str()).collect();
        f.debug_struct("ConsumerBuilder")
            .field("name", &self.config.name)
            .field("topics", &topics)
            .finish_non_exhaustive()
    }
}

impl ConsumerBuilder {
    pub(crate) fn new(config: ConsumerConfig) -> Self {
        Self { config, decoder: None, handlers: Vec::new(), routes: Vec::new() }
    }

    /// The registry every handler's payloads are decoded through (Confluent wire format).
    pub fn decoder(mut self, decoder: RegistryDecoder) -> Self {
        self.decoder = Some(decoder);
        self
    }

    /// Handles the handler's event type from that type's own topic, [`Event::TOPIC`].
    pub fn handle<H: Handler>(self, handler: H) -> Self {
        self.handle_topic(H::Event::TOPIC, handler)
    }

    /// Handles the handler's event type as published to `topic` (tests, per-tenant topics,
    /// migrations).
    pub fn handle_topic<H: Handler>(mut self, topic: impl Into<String>, handler: H) -> Self {
        let make: MakeRoute = Box::new(move |decoder| Arc::new(Typed { handler, decoder }) as Arc<dyn Route>);
        self.handlers.push((topic.into(), make));
        self
    }

    /// Extra HTTP routes of the service (its read API), served beside `/metrics`, `/healthz` and
    /// `/readyz`. `make` receives the store's pool once [`build`](Self::build) opened it, so a
    /// route can always query it. Several calls add up; a path served twice fails the build,
    /// naming the path.
    pub fn routes(mut self, make: impl FnOnce(AnyPool) -> axum::Router + Send + 'static) -> Self {
        self.routes.push(Box::new(make));
        self
    }

    /// Validates the configuration, opens the store, binds the HTTP endpoint and creates the
    /// Kafka clients. Nothing is consumed until [`Consumer::run`].
    pub async fn build(self) -> Result<Consumer, ConsumerError> {
        let config = self.config;
        config.validate()?;
        let Some(decoder) = self.decoder else {
            return Err(ConsumerError::Wiring("no decoder: set one with ConsumerBuilder::decoder".into()));
        };
        if self.handlers.is_empty() {
            return Err(ConsumerError::Wiring("no handler: add one with ConsumerBuilder::handle".into()));
        }
        let mut routes = Routes::default();
        for (topic, make) in self.handlers {
            routes.bind(&config.name, topic, make(decoder.clone()))?;
        }
        let main_topics: Vec<String> =
            routes.bindings().iter().map(|binding| binding.topic.clone()).collect();

        let store = Store::open(&config.store, &config.name).await?;
        let metrics = ConsumerMetrics::get();
        for binding in routes.bindings() {
            metrics.zero(&config.name, &binding.topic);
        }
        let outbound = Outbound::new(
            &config.producer_client_config(),
            &fanout_kafka::client_config(&config.kafka),
            &config.retry,
            Arc::from(config.name.as_str()),
        )
        .map_err(ConsumerError::Producer)?;
        let shared = Arc::new(Shared::new(main_topics.iter().cloned()));
        let (inbound_tx, inbound) = tokio::sync::mpsc::unbounded_channel();
        let context = Context {
            consumer: config.name.clone(),
            inbound: inbound_tx,
            shared: shared.clone(),
            metrics: metrics.clone(),
            revoke_wait: Duration::from_millis(config.processing.drain_timeout_ms) + Duration::from_secs(2),
        };
        let kafka: BaseConsumer<Context> =
            config.consumer_client_config().create_with_context(context).map_err(|source| {
                ConsumerError::Kafka { operation: "create the consumer", source: source.into() }
            })?;
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .map_err(|source| ConsumerError::Http { listen: config.http.listen.clone(), source })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| ConsumerError::Http { listen: config.http.listen.clone(), source })?;
        let extra = self.routes.into_iter().map(|make| make(store.pool().clone()));
        let registry = decoder.serde().client().clone();
        let router = crate::http::router(shared.clone(), store.clone(), registry, extra)?;
        let router =
            crate::require_bearer(router, config.http.bearer_token().map_err(ConsumerError::Config)?);
        let engine = Arc::new(Engine {
            consumer: Arc::from(config.name.as_str()),
            store,
            routes,
            outbound,
            retry: config.retry.clone(),
            metrics,
            registry_outage: Default::default(),
        });
        Ok(Consumer {
            config,
            engine,
            main_topics,
            kafka: Arc::new(kafka),
            inbound,
            shared,
            listener: Some(listener),
            router,
            http_addr,
        })
    }

    /// Builds and runs until `shutdown` completes: the one call a service's `main` makes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumerError> {
        self.build().await?.run(shutdown).await
    }
}

/// A consumer ready to run; see [`Consumer::builder`].
pub struct Consumer {
    pub(crate) config: ConsumerConfig,
    pub(crate) engine: Arc<Engine>,
    pub(crate) main_topics: Vec<String>,
    pub(crate) kafka: Arc<BaseConsumer<Context>>,
    pub(crate) inbound: tokio::sync::mpsc::UnboundedReceiver<crate::kafka::Inbound>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) listener: Option<tokio::net::TcpListener>,
    pub(crate) router: axum::Router,
    pub(crate) http_addr: SocketAddr,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.config.name)
            .field("topics", &self.main_topics)
            .field("http", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Starts wiring a consumer from its configuration.
    pub fn builder(config: ConsumerConfig) -> ConsumerBuilder {
        ConsumerBuilder::new(config)
    }

    /// The store's connection pool, for the consumer's own tables (create them before
    /// [`Consumer::run`]) and read APIs.
    pub fn pool(&self) -> &AnyPool {
        self.engine.store.pool()
    }

    /// The consumer's name: its consumer group and dedupe namespace.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Where the HTTP endpoint listens (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The topics this consumer reads events from (its retry topics aside).
    pub fn topics(&self) -> &[String] {
        &self.main_topics
    }

    pub(crate) fn subscribe(&self) -> Result<(), ConsumerError> {
        // The retry topics are read even with no delay tiers configured: events held back there
        // behind a failing one must still come back.
        let retry_topics: Vec<String> =
            self.main_topics.iter().map(|t| fanout_core::topics::retry(t, &self.config.name)).collect();
        let topics: Vec<&str> = self.main_topics.iter().chain(&retry_topics).map(String::as_str).collect();
        self.kafka
            .subscribe(&topics)
            .map_err(|source| ConsumerError::Kafka { operation: "subscribe", source: source.into() })
    }
}
