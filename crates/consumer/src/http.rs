//! The consumer's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, plus any routes the service
//! adds.

use std::{sync::Arc, time::Duration};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use fanout_schema_registry::SchemaRegistryClient;
use prometheus::{Encoder, TextEncoder};

use crate::{kafka::Shared, store::Store, ConsumerError};

/// How long `/readyz` waits for the registry: an orchestrator's probe must get its answer.
const REGISTRY_PROBE: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Health {
    shared: Arc<Shared>,
    store: Store,
    registry: SchemaRegistryClient,
}

/// The runtime's routes merged with the service's own.
pub(crate) fn router(
    shared: Arc<Shared>,
    store: Store,
    registry: SchemaRegistryClient,
    extra: impl IntoIterator<Item = Router>,
) -> Result<Router, ConsumerError> {
    let health = Health { shared, store, registry };
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(health);
    for extra in extra {
        // axum reports a path served twice only by panicking; a wiring mistake must come back
        // as the build's error instead, with axum's message (which names the path).
        let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| router.merge(extra)));
        router = merged.map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("overlapping routes");
            ConsumerError::Wiring(format!("the service's routes clash: {message}"))
        })?;
    }
    Ok(router)
}

async fn metrics() -> impl IntoResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&prometheus::gather(), &mut body) {
        Ok(()) => (StatusCode::OK, [("content-type", prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Ready when the consumer owns at least one partition of a topic it reads events from, its
/// store answers and so does its schema registry (without which no new writer schema decodes:
/// events would only be held). A partition of its own retry topic does not count: an instance
/// owning only that would be ready with nothing to read, e.g. before its source topic exists.
async fn ready(State(health): State<Health>) -> impl IntoResponse {
    let (sources, retries) = health.shared.assigned_counts();
    let (store, registry) = tokio::join!(health.store.ping(), async {
        // The cheapest call of the API: the global compatibility level.
        matches!(tokio::time::timeout(REGISTRY_PROBE, health.registry.compatibility(None)).await, Ok(Ok(_)))
    });
    let body = format!(
        "source_partitions={sources} retry_partitions={retries} store_reachable={store} registry_reachable={registry}\n"
    );
    let status =
        if sources > 0 && store && registry { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, body)
}
