//! The gateway against the real broker, registry and PostgreSQL: what it publishes, what it
//! refuses and how, and what it remembers.

use std::{collections::HashMap, time::Duration};

use crate::common::{callback, now_secs, post, sign, TestGateway, SECRET};
use fanout_core::headers;
use fanout_gateway::{callback_event_id, REJECT_REASON};
use fanout_testkit::FetchedRecord;

fn header<'r>(record: &'r FetchedRecord, name: &str) -> Option<&'r str> {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// How many records of `records` carry each `ce_id`.
fn by_event_id(records: &[FetchedRecord]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for record in records {
        *counts.entry(header(record, headers::ID).unwrap_or_default().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_callbacks_are_published_once_and_everything_else_is_refused() -> anyhow::Result<()> {
    let gateway = TestGateway::start(|c| crate::common::rename_source(c, "pay")).await?;
    let client = reqwest::Client::new();
    let url = gateway.url("pay");

    let (headers_a, body_a) = callback("evt-1", "order-1", SECRET);
    let (status, _, answer) = post(&client, &url, &headers_a, body_a.clone()).await?;
    assert_eq!((status, answer.as_str()), (200, r#"{"status":"accepted"}"#));
    let records = gateway.kafka.read_at_least(gateway.topic.name(), 1, Duration::from_secs(10)).await?;
    let record = &records[0];
    assert_eq!(record.key.as_deref(), Some(&b"order-1"[..]), "keyed by the correlation id");
    let expected_id = callback_event_id("pay", "evt-1").to_string();
    assert_eq!(header(record, headers::ID), Some(expected_id.as_str()));
    assert_eq!(header(record, headers::TYPE), Some("callback.received"));
    assert_eq!(header(record, headers::SOURCE), Some("fanout-gateway"));
    let payload = String::from_utf8_lossy(record.payload.as_deref().unwrap_or_default()).into_owned();
    assert!(payload.contains(&body_a), "the verified body is published as it came: {payload:?}");

    // The provider retries (signed anew): 200, nothing published.
    let (retry_headers, _) = callback("evt-1", "order-1", SECRET);
    let (status, _, answer) = post(&client, &url, &retry_headers, body_a.clone()).await?;
    assert_eq!((status, answer.as_str()), (200, r#"{"status":"duplicate"}"#));
    // A second callback after it: once it is on the topic, so would the retry be, were it published.
    let (headers_b, body_b) = callback("evt-2", "order-2", SECRET);
    assert_eq!(post(&client, &url, &headers_b, body_b).await?.0, 200);
    let records = gateway.kafka.read_at_least(gateway.topic.name(), 2, Duration::from_secs(10)).await?;
    let counts = by_event_id(&records);
    assert_eq!(counts.get(&expected_id), Some(&1), "evt-1 once: {counts:?}");
    assert_eq!(records.len(), 2, "{counts:?}");

    // Refused, each the same way whatever is wrong: no oracle for a forger.
    let (forged, body) = callback("evt-3", "order-3", "not-the-secret");
    assert_eq!(post(&client, &url, &forged, body.clone()).await?.0, 401);
    let stale = sign(&body, SECRET, now_secs() - 600);
    let (status, _, answer) = post(&client, &url, &stale, body.clone()).await?;
    assert_eq!((status, answer.as_str()), (401, r#"{"error":"unauthorized"}"#));
    let (mut tampered, _) = callback("evt-3", "order-3", SECRET);
    tampered.retain(|(name, _)| *name != "X-Signature");
    assert_eq!(post(&client, &url, &tampered, body.clone()).await?.2, r#"{"error":"unauthorized"}"#);
    let big = format!("{{\"id\":\"evt-4\",\"request_id\":\"o\",\"pad\":\"{}\"}}", "x".repeat(5000));
    assert_eq!(post(&client, &url, &sign(&big, SECRET, now_secs()), big).await?.0, 413);
    assert_eq!(post(&client, &gateway.url("nosuch"), &headers_a, body_a).await?.0, 404);
    // Verified, but without the correlation id the source names: 422 saying so, and the
    // provider's retries keep it until the config is fixed.
    let unroutable = r#"{"id":"evt-5","status":"SUCCESS"}"#;
    let (status, _, answer) = post(&client, &url, &sign(unroutable, SECRET, now_secs()), unroutable).await?;
    assert_eq!(status, 422);
    assert!(answer.contains("correlation_id: nothing at body:/request_id"), "{answer}");

    let records = gateway.kafka.read(gateway.topic.name()).await?;
    assert_eq!(records.len(), 2, "nothing refused was published");
    for (outcome, count) in [
        ("accepted", 2.0),
        ("duplicate", 1.0),
        ("bad_signature", 1.0),
        ("stale_timestamp", 1.0),
        ("missing_header", 1.0),
        ("body_too_large", 1.0),
        ("unroutable", 1.0),
    ] {
        assert_eq!(gateway.requests("pay", outcome).await?, count, "{outcome}");
    }
    assert!(gateway.requests("_unknown", "unknown_source").await? >= 1.0);

    // Every refusal of a known source is on the rejects topic with its reason.
    let rejects = gateway.kafka.read_at_least(gateway.rejects.name(), 5, Duration::from_secs(10)).await?;
    let mut reasons: Vec<&str> = rejects.iter().filter_map(|r| header(r, REJECT_REASON)).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["bad_signature", "body_too_large", "missing_header", "stale_timestamp", "unroutable"]
    );
    assert!(
        rejects.iter().all(|r| !String::from_utf8_lossy(
            &r.headers.iter().flat_map(|(_, v)| v.clone().unwrap_or_default()).collect::<Vec<_>>()
        )
        .contains(SECRET)),
        "no secret on the rejects topic"
    );
    gateway.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_70_hours_later_is_still_a_duplicate_across_restarts() -> anyhow::Result<()> {
    let mut gateway = TestGateway::start(|c| {
        crate::common::rename_source(c, "pay-late");
        c.dedupe_hours = 72;
        c.sweep_interval_secs = 1;
    })
    .await?;
    let client = reqwest::Client::new();
    for (id, request) in [("evt-70h", "order-70h"), ("evt-73h", "order-73h")] {
        let (headers, body) = callback(id, request, SECRET);
        assert_eq!(post(&client, &gateway.url("pay-late"), &headers, body).await?.0, 200);
    }
    // The simulated clock: the store's rows are made 70 and 73 hours old, as if published then.
    let pool = sqlx::PgPool::connect(&gateway.database.url()).await?;
    let hours_ago = |h: i64| (now_secs() - h * 3600) * 1000;
    for (id, hours) in [("evt-70h", 70), ("evt-73h", 73)] {
        sqlx::query("UPDATE fanout_gateway_callbacks SET published_at_ms = $1 WHERE provider_event_id = $2")
            .bind(hours_ago(hours))
            .bind(id)
            .execute(&pool)
            .await?;
    }
    // The sweep forgets the one past 72 hours, and only it.
    fanout_testkit::wait_until(Duration::from_secs(10), "the 73-hour-old callback forgotten", || {
        let pool = pool.clone();
        async move {
            let left: Vec<String> =
                sqlx::query_scalar("SELECT provider_event_id FROM fanout_gateway_callbacks")
                    .fetch_all(&pool)
                    .await?;
            Ok(left == ["evt-70h"])
        }
    })
    .await?;
    pool.close().await;

    // A restarted gateway still remembers.
    gateway.stop().await?;
    gateway.run().await?;
    let url = gateway.url("pay-late");
    let (headers, body) = callback("evt-70h", "order-70h", SECRET);
    let (status, _, answer) = post(&client, &url, &headers, body).await?;
    assert_eq!((status, answer.as_str()), (200, r#"{"status":"duplicate"}"#), "70 hours later");
    let (headers, body) = callback("evt-73h", "order-73h", SECRET);
    let (status, _, answer) = post(&client, &url, &headers, body).await?;
    assert_eq!((status, answer.as_str()), (200, r#"{"status":"accepted"}"#), "past the window it is new");

    let records = gateway.kafka.read_at_least(gateway.topic.name(), 3, Duration::from_secs(10)).await?;
    let counts = by_event_id(&records);
    assert_eq!(counts.get(&callback_event_id("pay-late", "evt-70h").to_string()), Some(&1), "{counts:?}");
    // Published again under the same event id: a consumer that still remembers it applies it once.
    assert_eq!(counts.get(&callback_event_id("pay-late", "evt-73h").to_string()), Some(&2), "{counts:?}");
    gateway.finish().await
}
