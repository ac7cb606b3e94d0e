//! The metrics of a consumer: `fanout_consumer_lag` for every partition the instance owns (gone
//! once it no longer owns them), and a handler-duration and an end-to-end-latency observation
//! per applied event, all served at `/metrics`.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::Kafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_and_histograms_cover_what_the_consumer_owns_and_applies() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-lag", 2).await?;
    let (_dir, url) = sqlite();
    let records: Vec<Outgoing> = (0..20).map(|i| Outgoing::event(&post(i % 4, i / 4))).collect();
    publish(&kafka, topic.name(), &records).await?;
    let running = start(config(&url), topic.name(), Recorder::default()).await?;
    let name = running.name.clone();
    let retry = fanout_core::topics::retry(topic.name(), &name);
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(30), "every event applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == 20) }
    })
    .await?;

    let series = |topic: &str, partition: &str| {
        [("consumer", name.as_str()), ("topic", topic), ("partition", partition)]
            .map(|(k, v)| (k, v.to_owned()))
    };
    let lag = |topic: &str, partition: &str| {
        let labels = series(topic, partition);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        metric_present("fanout_consumer_lag", &labels).then(|| metric("fanout_consumer_lag", &labels))
    };
    wait_until(Duration::from_secs(30), "lag 0 reported for all four assigned partitions", || {
        let all = [(topic.name(), "0"), (topic.name(), "1"), (retry.as_str(), "0"), (retry.as_str(), "1")];
        let caught_up = all.iter().all(|(t, p)| lag(t, p) == Some(0.0));
        async move { Ok(caught_up) }
    })
    .await?;
    let body = http_get(running.http, "/metrics").await?;
    for family in [
        "fanout_consumer_lag{",
        "fanout_consumed_total{",
        "fanout_handler_duration_seconds_bucket{",
        "fanout_end_to_end_latency_seconds_bucket{",
        "fanout_consumer_in_flight{",
    ] {
        assert!(body.contains(family), "{family} served at /metrics");
    }
    let labels = [("consumer", name.as_str()), ("topic", topic.name())];
    // One per handler call, and a call takes a whole batch.
    let calls = histogram("fanout_handler_duration_seconds", &labels).0;
    assert!((1..=20).contains(&calls), "{calls} handler calls for 20 events");
    // From each event's ce_time to its effect committing: positive, and well below a minute.
    let (count, sum) = histogram("fanout_end_to_end_latency_seconds", &labels);
    assert_eq!(count, 20, "one per applied event");
    assert!(sum > 0.0 && sum < 20.0 * 60.0, "{sum}");
    assert_eq!(outcome(&name, "ok"), 20.0);

    running.stop().await?;
    assert_eq!(lag(topic.name(), "0"), None, "no lag reported for a partition no longer owned");
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

/// Every counter an alert is written on exists at zero from start-up, before anything failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerting_counters_exist_at_zero_before_they_first_count() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-zero", 1).await?;
    let (_dir, url) = sqlite();
    let running = start(config(&url), topic.name(), Recorder::default()).await?;
    let name = running.name.clone();
    let by_topic = [("consumer", name.as_str()), ("topic", topic.name())];
    for counter in ["fanout_dead_lettered_total", "fanout_duplicates_total"] {
        assert!(metric_present(counter, &by_topic), "{counter} is not served before it counts");
        assert_eq!(metric(counter, &by_topic), 0.0, "{counter}");
    }
    for outcome in ["ok", "duplicate", "retried", "dead_lettered", "parked", "failed"] {
        let labels = [("consumer", name.as_str()), ("topic", topic.name()), ("outcome", outcome)];
        assert!(metric_present("fanout_consumed_total", &labels), "outcome {outcome}");
    }
    let by_consumer = [("consumer", name.as_str())];
    assert!(metric_present("fanout_registry_unavailable_total", &by_consumer));
    assert!(metric_present("fanout_consumer_fetch_pauses_total", &by_consumer));

    running.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_registry_outage_gauge_is_up_while_events_are_held_and_down_once_they_decode() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-registry-gauge", 1).await?;
    // The registry holds the schema under the id the records carry, but is not where the
    // consumer looks until later.
    let (mut registry, _) = common::registry(topic.name()).await?;
    let (_dir, url) = sqlite();
    let (running, address) = start_before_registry(config(&url), topic.name()).await?;
    let name = running.name.clone();
    let gauge = [("consumer", name.as_str())];
    assert_eq!(metric("fanout_registry_outage", &gauge), 0.0, "no outage before any event");

    publish(&kafka, topic.name(), &[Outgoing::event(&post(1, 1))]).await?;
    wait_until(Duration::from_secs(30), "the outage gauge to rise", || async {
        Ok(metric("fanout_registry_outage", &gauge) == 1.0)
    })
    .await?;
    assert_eq!(effects(&running.pool).await?, 0, "the event is held, not applied");

    registry.serve_at(address, &kafka).await?;
    wait_until(Duration::from_secs(30), "the held event applied and the gauge down", || async {
        Ok(effects(&running.pool).await? == 1 && metric("fanout_registry_outage", &gauge) == 0.0)
    })
    .await?;

    running.stop().await?;
    registry.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
