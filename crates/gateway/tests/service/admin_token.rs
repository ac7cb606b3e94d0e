//! The admin port behind `[http] bearer_token`: `/metrics` and the route registration need the
//! token, the probes do not; the scrape target goes where Prometheus sends the token; an awaiter
//! without the token is told to set `gateway_token`.

use std::time::Duration;

use crate::common::TestGateway;
use fanout_core::Secret;
use fanout_gateway::{Awaiter, AwaiterConfig, AwaiterError};

const TOKEN: &str = "gateway-admin-t0k";

#[tokio::test]
async fn the_admin_port_needs_the_bearer_token_but_the_probes_do_not() -> anyhow::Result<()> {
    let targets = tempfile::tempdir()?;
    let dir = targets.path().to_owned();
    let gateway = TestGateway::start(|c| {
        c.http.bearer_token = Some(Secret::new(TOKEN));
        c.prometheus_targets_dir = Some(dir);
    })
    .await?;
    let http = reqwest::Client::new();

    let metrics = gateway.admin_url("/metrics");
    let refused = http.get(&metrics).send().await?;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"fanout\"")
    );
    assert_eq!(http.get(&metrics).bearer_auth("wrong").send().await?.status(), 401);
    let scraped = http.get(&metrics).bearer_auth(TOKEN).send().await?;
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await?.contains("fanout_gateway_requests_total"));
    assert_eq!(http.get(gateway.admin_url("/healthz")).send().await?.status(), 200);
    assert_ne!(http.get(gateway.admin_url("/readyz")).send().await?.status(), 401);

    let route = gateway.admin_url("/routes/pay/order-7");
    let body = serde_json::json!({"reply_topic": "orders.replies", "expires_in_secs": 60});
    assert_eq!(http.put(&route).json(&body).send().await?.status(), 401);
    assert_eq!(http.put(&route).json(&body).bearer_auth(TOKEN).send().await?.status(), 204);

    // The target is under secured/, which the Prometheus job with the token reads.
    let target = targets.path().join("secured").join(format!(
        "{}-{}.json",
        gateway.config.name,
        gateway.running.as_ref().map(|r| r.http.port()).unwrap_or_default()
    ));
    assert!(target.is_file(), "no scrape target at {}", target.display());

    // A requester that was not given the token is told which setting is missing.
    let reply = gateway.kafka.future_topic("admin-token-replies");
    let awaiter = Awaiter::start(AwaiterConfig {
        requester: "orders".into(),
        reply_topic: reply.name().to_owned(),
        gateway: gateway.admin_url(""),
        gateway_token: None,
        partitions: 1,
        kafka: gateway.config.kafka.clone(),
        registry: gateway.config.registry.clone(),
        schedule_topic: gateway.kafka.future_topic("admin-token-schedule").name().to_owned(),
    })
    .await?;
    let refused = awaiter.expect("pay", "order-8", Duration::from_secs(60)).await.err();
    assert!(
        matches!(&refused, Some(AwaiterError::Route { reason, .. }) if reason.contains("gateway_token")),
        "{refused:?}"
    );
    drop(awaiter);
    gateway.finish().await
}
