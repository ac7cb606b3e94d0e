//! Kafka down: the gateway answers 503 with `Retry-After` and never 2xx; once the broker is back,
//! the provider's retries land, each callback once.
//!
//! This test kills the shared broker, so it lives alone in its own test binary.

#[path = "service/common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{callback, post, TestGateway, SECRET};
use fanout_core::headers;
use fanout_gateway::callback_event_id;
use fanout_testkit::stack::{broker_pid, kill_broker, stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_kafka_is_down_callbacks_get_503_and_land_once_when_it_is_back() -> anyhow::Result<()> {
    let gateway = TestGateway::start(|c| c.publish_timeout_ms = 2_000).await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let url = gateway.url("pay");
    let (headers, body) = callback("evt-before", "order-before", SECRET);
    assert_eq!(post(&client, &url, &headers, body).await?.0, 200);

    let pid = kill_broker().await?;
    // Every callback while the broker is gone: 503 with Retry-After, never a 2xx.
    let down: Vec<_> =
        (0..5).map(|i| callback(&format!("evt-down-{i}"), &format!("order-down-{i}"), SECRET)).collect();
    for (headers, body) in &down {
        let (status, retry_after, _) = post(&client, &url, headers, body.clone()).await?;
        assert_eq!(status, 503, "with the broker down");
        assert_eq!(retry_after.as_deref(), Some("10"));
    }
    assert_eq!(gateway.requests("pay", "unavailable").await?, 5.0);

    let up = tokio::task::spawn_blocking(|| stack(&["up", "kafka"])).await??;
    anyhow::ensure!(up.contains("ready"), "broker did not come back: {up}");
    anyhow::ensure!(broker_pid()? != pid, "the broker was not restarted");

    // The provider retries each one (signed anew) until it gets a 2xx.
    let deadline = Instant::now() + Duration::from_secs(90);
    for (i, (_, body)) in down.iter().enumerate() {
        loop {
            let headers = common::sign(body, SECRET, common::now_secs());
            let (status, _, answer) = post(&client, &url, &headers, body.clone()).await?;
            if status == 200 {
                assert_eq!(answer, r#"{"status":"accepted"}"#, "evt-down-{i} was never published before");
                break;
            }
            assert_eq!(status, 503, "only 503 while the broker recovers");
            anyhow::ensure!(
                Instant::now() < deadline,
                "evt-down-{i} not accepted 90 s after the broker came back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let records = gateway.kafka.read_at_least(gateway.topic.name(), 6, Duration::from_secs(30)).await?;
    let ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.headers.iter().find(|(n, _)| n == headers::ID))
        .filter_map(|(_, v)| v.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()))
        .collect();
    // Each callback is on the topic. A publish answered 503 at its timeout while its record was
    // already on the wire may still land, and the provider's retry is then a second copy: under
    // the same ce_id, so a consumer applies it once. So: every id there, no other id.
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    for id in std::iter::once("evt-before".to_owned()).chain((0..5).map(|i| format!("evt-down-{i}"))) {
        let expected = callback_event_id("pay", &id).to_string();
        assert!(distinct.contains(&expected), "{id} is not on the topic");
    }
    assert_eq!(distinct.len(), 6, "only these callbacks: {ids:?}");
    gateway.finish().await
}
