//! Traces you can follow, through a real Jaeger: one event published through the SDK and applied
//! by two consumer services (rewards and pinning) makes one trace, whose root is the `publish`
//! span the event's `traceparent` names and whose two `handle` spans, one per consumer, are its
//! children. An event enqueued in the transactional outbox makes one too, rooted at its
//! `enqueue` span although the relay publishes it later. Spans go over OTLP/HTTP to the local stack's Jaeger (`scripts/stack up jaeger`) and
//! are read back through its HTTP query API.
//!
//! Its own test binary: the process-wide subscriber exporting the spans is installed here.

use std::{collections::HashMap, time::Duration};

use anyhow::{ensure, Context};
use fanout_core::{headers, trace::TraceParent};
use fanout_events::{Category, PostPublished};
use fanout_producer::outbox::{self, Outbox, RelayConfig};
use fanout_producer::{PublishOptions, Publisher};
use fanout_service::{LogFormat, ServiceConfig, Telemetry, TelemetryConfig};
use fanout_testkit::service::{sqlite, Running, Stack};
use serde_json::Value;
use sqlx::{sqlite::SqliteConnectOptions, SqlitePool};

/// Jaeger's query API and UI.
fn jaeger_url() -> String {
    std::env::var("FANOUT_TEST_JAEGER").unwrap_or_else(|_| "http://127.0.0.1:16686".to_owned())
}

/// Jaeger's OTLP/HTTP receiver.
fn otlp_url() -> String {
    std::env::var("FANOUT_TEST_OTLP").unwrap_or_else(|_| "http://127.0.0.1:4318".to_owned())
}

/// A span as Jaeger's query API (`/api/traces/{id}`) returns it: its id, operation, the span it
/// is a child of, and its tags as text.
#[derive(Debug, Clone)]
struct Span {
    id: String,
    operation: String,
    parent: Option<String>,
    tags: HashMap<String, String>,
}

/// The spans Jaeger holds for `trace_id` (none while it has not received any).
async fn spans(http: &reqwest::Client, trace_id: &str) -> anyhow::Result<Vec<Span>> {
    let url = format!("{}/api/traces/{trace_id}", jaeger_url());
    let response = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    let body: Value = response.error_for_status()?.json().await?;
    let traces = body["data"].as_array().cloned().unwrap_or_default();
    ensure!(traces.len() <= 1, "Jaeger returned {} traces for {trace_id}: {body}", traces.len());
    Ok(traces
        .iter()
        .flat_map(|trace| trace["spans"].as_array().cloned().unwrap_or_default())
        .map(|span| Span {
            id: span["spanID"].as_str().unwrap_or_default().to_owned(),
            operation: span["operationName"].as_str().unwrap_or_default().to_owned(),
            parent: span["references"].as_array().and_then(|refs| {
                refs.iter()
                    .find(|r| r["refType"] == "CHILD_OF" && r["traceID"] == trace_id)
                    .and_then(|r| r["spanID"].as_str().map(str::to_owned))
            }),
            tags: span["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|tag| {
                    let value = match &tag["value"] {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    Some((tag["key"].as_str()?.to_owned(), value))
                })
                .collect(),
        })
        .collect())
}

/// Checks that Jaeger holds, for `traceparent`'s trace, one `root` span (the span the
/// traceparent names, with no parent) and one `handle` span of each consumer in `names` under it,
/// all tagged with `event_id`; flushes the exporter while it waits.
async fn assert_one_trace(
    http: &reqwest::Client,
    telemetry: &Telemetry,
    traceparent: TraceParent,
    root: &str,
    event_id: &str,
    names: &[String],
) -> anyhow::Result<()> {
    let trace_id = format!("{:032x}", traceparent.trace_id);
    let root_id = format!("{:016x}", traceparent.parent_id);
    let last_seen = std::sync::Mutex::new(Vec::new());
    let waited = fanout_testkit::wait_until(
        Duration::from_secs(30),
        &format!("Jaeger holding the {root} span and every handle span"),
        || {
            // Spans are sent in batches every few seconds; now, rather than at the next batch.
            let flushed = telemetry.flush();
            let (trace_id, last_seen) = (&trace_id, &last_seen);
            async move {
                flushed?;
                let seen = spans(http, trace_id).await?;
                let handled = |name: &String| {
                    seen.iter().any(|s| s.operation == "handle" && s.tags.get("consumer") == Some(name))
                };
                let complete = seen.iter().any(|s| s.operation == root) && names.iter().all(handled);
                *last_seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = seen;
                Ok(complete)
            }
        },
    )
    .await;
    let seen = last_seen.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?;
    waited.with_context(|| format!("the spans of trace {trace_id} in Jaeger: {seen:#?}"))?;

    let roots: Vec<&Span> = seen.iter().filter(|s| s.operation == root).collect();
    ensure!(roots.len() == 1, "one {root} span, not {}: {seen:#?}", roots.len());
    let root_span = roots[0];
    assert_eq!(root_span.id, root_id, "the traceparent names the {root} span: {seen:#?}");
    assert_eq!(root_span.parent, None, "the {root} span is the trace's root: {seen:#?}");
    assert_eq!(root_span.tags.get("event_id").map(String::as_str), Some(event_id), "{root_span:#?}");
    for name in names {
        let handles: Vec<&Span> =
            seen.iter().filter(|s| s.operation == "handle" && s.tags.get("consumer") == Some(name)).collect();
        ensure!(handles.len() == 1, "one handle span for {name}, not {}: {seen:#?}", handles.len());
        assert_eq!(
            handles[0].parent.as_ref(),
            Some(&root_span.id),
            "{name}'s handle span is the {root} span's child"
        );
        assert_eq!(handles[0].tags.get("event_id").map(String::as_str), Some(event_id), "{:#?}", handles[0]);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_event_is_one_trace_from_its_publish_or_enqueue_span_to_each_consumers_handle_span(
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    // Fail at once, naming the missing part, rather than at the deadline.
    http.get(format!("{}/api/services", jaeger_url())).send().await.with_context(|| {
        format!("no Jaeger at {} (start it with `scripts/stack up jaeger`)", jaeger_url())
    })?;
    let service = fanout_testkit::unique_name("trace");
    // The filter decides what is exported too: the spans under test, and warnings.
    let filter =
        "warn,fanout_producer::publisher=info,fanout_producer::outbox=info,fanout_consumer::meta=info";
    let telemetry =
        fanout_service::init_tracing(&service, filter, LogFormat::Text, &TelemetryConfig::otlp(otlp_url()))?;
    ensure!(telemetry.exporting(), "span export did not start");

    let stack = Stack::start().await?;
    let topic = stack.topic("trace", 1).await?;
    let (_rewards_db, rewards_url) = sqlite("trace-rewards")?;
    let (_pinning_db, pinning_url) = sqlite("trace-pinning")?;
    let mut rewards = ServiceConfig::new(fanout_rewards::RewardsSettings {
        topic: topic.name().to_owned(),
        ..Default::default()
    });
    stack.configure(&mut rewards, &rewards_url);
    let mut pinning = ServiceConfig::new(fanout_pinning::PinningSettings {
        topic: topic.name().to_owned(),
        ..Default::default()
    });
    stack.configure(&mut pinning, &pinning_url);
    let consumers = [
        Running::start(fanout_rewards::build(rewards).await?),
        Running::start(fanout_pinning::build(pinning).await?),
    ];

    let publisher = Publisher::new(stack.publisher_config("trace-test"))?;
    let post = PostPublished {
        post_id: 42,
        user_id: 7,
        category: Category::Job,
        city: "Berlin".into(),
        title: "Barista wanted".into(),
        published_at: 1_764_000_000_000,
    };
    let delivery = publisher.publish_with(&post, &PublishOptions::new().topic(topic.name())).await?;
    for consumer in &consumers {
        fanout_testkit::wait_until(
            Duration::from_secs(60),
            &format!("{} applying the event", consumer.name),
            || async move { Ok(consumer.consumed("ok").await? >= 1.0) },
        )
        .await?;
    }

    // The second event goes through the transactional outbox: enqueued inside the caller's
    // transaction, published later by the relay, its trace rooted at the `enqueue` span.
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite:{}", dir.path().join("outbox.db").display());
    let pool =
        SqlitePool::connect_with(db_url.parse::<SqliteConnectOptions>()?.create_if_missing(true)).await?;
    Outbox::migrate_sqlite(&pool).await?;
    let mut tx = pool.begin().await?;
    let enqueued = Outbox::new("trace-test")
        .enqueue_with(
            &mut tx,
            &PostPublished { post_id: 43, ..post },
            &PublishOptions::new().topic(topic.name()),
        )
        .await?;
    tx.commit().await?;
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            outbox::relay(RelayConfig::new(db_url), &publisher, async {
                let _ = relay_stopped.await;
            })
            .await
        }
    });
    for consumer in &consumers {
        fanout_testkit::wait_until(
            Duration::from_secs(60),
            &format!("{} applying both events", consumer.name),
            || async move { Ok(consumer.consumed("ok").await? >= 2.0) },
        )
        .await?;
    }
    let _ = stop_relay.send(());
    relay.await??;

    // The traces the events carry, as the consumers read them.
    let records = stack.read_topic(topic.name(), 2, Duration::from_secs(10)).await?;
    let names: Vec<String> = consumers.iter().map(|c| c.name.clone()).collect();
    for ((_, headers), (root, event_id)) in
        records.iter().zip([("publish", delivery.event_id), ("enqueue", enqueued)])
    {
        let traceparent = headers
            .get(headers::TRACEPARENT)
            .and_then(|value| TraceParent::parse(value))
            .with_context(|| format!("the {root}ed record has no valid traceparent"))?;
        assert_one_trace(&http, &telemetry, traceparent, root, &event_id.to_string(), &names).await?;
    }

    for consumer in consumers {
        let name = consumer.name.clone();
        consumer.stop().await?;
        stack.delete_derived_topics(topic.name(), &name).await;
    }
    drop(topic);
    stack.stop().await?;
    telemetry.shutdown();
    Ok(())
}
