//! The producer SDK against the real broker and the built-in registry.

mod common;

use std::{collections::HashMap, time::Duration};

use fanout_core::{headers, trace::TraceParent};
use fanout_events::PostPublished;
use fanout_producer::{ProduceError, PublishError, PublishOptions, Publisher};

use common::{consume_all, event, publisher_config, start_registry};

/// 10,000 events published concurrently from 100 tasks are all in Kafka, each exactly once, and
/// each key's events are in the order its task published them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_events_exactly_once_in_order_per_key() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("publish-10k", 4).await?;
    let (registry, _schemas) = start_registry(&kafka).await?;
    let publisher = Publisher::new(publisher_config(&kafka, &registry))?;

    let tasks: Vec<_> = (0..100)
        .map(|task| {
            let publisher = publisher.clone();
            let to = PublishOptions::new().topic(topic.name());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for seq in 0..100 {
                    // Each task owns one key (post_id) and publishes its events in sequence.
                    let delivery = publisher.publish_with(&event(task, seq), &to).await?;
                    ids.push(delivery.event_id);
                }
                Ok::<_, PublishError>(ids)
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await??);
    }
    assert_eq!(acknowledged.len(), 10_000);

    let records = consume_all(&kafka, &registry, topic.name(), 10_000, Duration::from_secs(90)).await?;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for record in &records {
        *by_id.entry(record.headers[headers::ID].clone()).or_default() += 1;
        let seq = record.event.published_at;
        let previous = last_seq.insert(record.key.clone(), seq);
        assert!(previous.is_none_or(|p| p < seq), "key {} out of order: {previous:?} then {seq}", record.key);
    }
    assert_eq!(records.len(), 10_000, "extra or missing records");
    for id in &acknowledged {
        assert_eq!(by_id.get(&id.to_string()), Some(&1), "event {id} not exactly once");
    }
    publisher.close(Duration::from_secs(10)).await?;
    Ok(())
}

/// The batch API returns one result per event, in order, and the events carry CloudEvents
/// headers, each a child span of the batch's trace parent, and decode back to what was published.
#[tokio::test]
async fn publish_all_delivers_in_order_with_cloudevents_headers() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("publish-all", 1).await?;
    let (registry, _schemas) = start_registry(&kafka).await?;
    let publisher = Publisher::new(publisher_config(&kafka, &registry))?;
    let events: Vec<PostPublished> = (0..500).map(|i| event(7, i)).collect();
    let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let options = PublishOptions { trace_parent: parent, ..PublishOptions::new().topic(topic.name()) };
    let results = publisher.publish_all(&events, &options).await;
    let deliveries: Vec<_> = results.into_iter().collect::<Result<_, _>>()?;
    let offsets: Vec<i64> = deliveries.iter().map(|d| d.offset).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets not increasing: {offsets:?}");

    let records = consume_all(&kafka, &registry, topic.name(), 500, Duration::from_secs(30)).await?;
    assert_eq!(records.len(), 500);
    let mut spans = std::collections::HashSet::new();
    for (record, (sent, delivery)) in records.iter().zip(events.iter().zip(&deliveries)) {
        assert_eq!(&record.event, sent);
        assert_eq!(record.headers[headers::ID], delivery.event_id.to_string());
        assert_eq!(record.headers[headers::TYPE], "post.published");
        assert_eq!(record.headers[headers::SPECVERSION], "1.0");
        assert_eq!(record.headers[headers::SOURCE], "producer-tests");
        assert_eq!(record.headers[headers::CONTENT_TYPE], "application/avro");
        let trace = TraceParent::parse(&record.headers[headers::TRACEPARENT]).expect("a valid traceparent");
        assert_eq!(Some(trace.trace_id), parent.map(|p| p.trace_id), "continues the batch's trace");
        spans.insert(trace.parent_id);
        assert!(chrono::DateTime::parse_from_rfc3339(&record.headers[headers::TIME]).is_ok());
        assert_eq!(uuid::Uuid::parse_str(&record.headers[headers::ID])?.get_version_num(), 7);
        assert_eq!(record.key, sent.post_id.to_string());
    }
    assert_eq!(spans.len(), 500, "a span of its own per event");
    Ok(())
}

/// A record over `message.max.bytes` fails before sending with a typed error.
#[tokio::test]
async fn oversized_event_is_a_typed_error_before_sending() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("publish-large", 1).await?;
    let (registry, _schemas) = start_registry(&kafka).await?;
    let mut config = publisher_config(&kafka, &registry);
    config.producer.max_message_bytes = 10_000;
    let publisher = Publisher::new(config)?;
    let mut big = event(1, 1);
    big.title = "x".repeat(20_000);
    let err = publisher
        .publish_with(&big, &PublishOptions::new().topic(topic.name()))
        .await
        .expect_err("too large");
    assert!(matches!(err, PublishError::Produce(ProduceError::TooLarge { max: 10_000, .. })), "{err:?}");
    Ok(())
}

/// Once a type's schema is resolved, publishing needs no registry: it continues while the
/// registry is down; a type never resolved fails with a clear error.
#[tokio::test]
async fn registry_outage_uses_cached_schemas_and_fails_first_time_schemas_clearly() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("publish-registry-down", 1).await?;
    let other = kafka.topic("publish-registry-down-other", 1).await?;
    let (registry, _schemas) = start_registry(&kafka).await?;
    let publisher = Publisher::new(publisher_config(&kafka, &registry))?;
    let to = PublishOptions::new().topic(topic.name());
    publisher.publish_with(&event(1, 0), &to).await?;

    registry.shutdown().await?;
    publisher.publish_with(&event(1, 1), &to).await?;
    let to_other = PublishOptions::new().topic(other.name());
    let err = publisher.publish_with(&event(1, 2), &to_other).await.expect_err("unknown subject");
    assert!(matches!(err, PublishError::Encode { .. }), "{err:?}");
    assert!(err.to_string().contains(other.name()), "{err}");
    Ok(())
}

/// With no broker, publish retries until `delivery.timeout.ms`, then returns a typed,
/// retriable error.
#[tokio::test]
async fn unreachable_broker_is_a_retriable_error_after_the_delivery_timeout() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let (registry, _schemas) = start_registry(&kafka).await?;
    let mut config = publisher_config(&kafka, &registry);
    let warm = Publisher::new(config.clone())?;
    warm.prepare::<PostPublished>().await?;
    config.kafka.bootstrap = "127.0.0.1:1".into();
    config.producer.delivery_timeout_ms = 2_000;
    let publisher = Publisher::new(config)?;
    let started = std::time::Instant::now();
    let err = publisher.publish(&event(1, 1)).await.expect_err("no broker");
    assert!(err.is_retriable(), "{err:?}");
    assert!(matches!(err, PublishError::Produce(ProduceError::NotDelivered { .. })), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(1_500), "gave up before the delivery timeout");
    Ok(())
}
