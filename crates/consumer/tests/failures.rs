//! Failures: transient then success (applied once), permanent (dead-lettered with the documented
//! headers, original bytes kept), poison bytes (dead-lettered, nothing stalls), and the retry
//! topic: an event failing through every tier is dead-lettered while other keys flow, and later
//! events of its key wait behind it and are then applied in order. Database errors in a handler:
//! a unique-key violation is dead-lettered at once, a lost database is retried.

mod common;

use std::time::Duration;

use common::*;
use fanout_consumer::dlq_headers as h;
use fanout_testkit::{Kafka, Postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_permanent_and_poison_failures() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-fail", 1).await?;
    let (_dir, url) = sqlite();
    let flaky = 1_i64;
    let forbidden = 2_i64;
    let mut records: Vec<Outgoing> =
        vec![Outgoing::event(&post(flaky, 0)), Outgoing::event(&post(forbidden, 0))];
    let poison = Outgoing {
        key: b"poison".to_vec(),
        payload: b"not avro at all".to_vec(),
        event_id: "poison-1".into(),
    };
    let unknown_schema = Outgoing {
        key: b"unknown".to_vec(),
        payload: vec![0, 0, 0, 0, 42, 1, 2],
        event_id: "unknown-1".into(),
    };
    records.push(poison.clone());
    records.push(unknown_schema);
    records.extend((10..20).map(|p| Outgoing::event(&post(p, 0))));
    publish(&kafka, topic.name(), &records).await?;

    let config = config(&url);
    let recorder = Recorder::default();
    recorder.script.transient.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(flaky, 2);
    recorder.script.permanent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(forbidden);
    let running = start(config, topic.name(), recorder).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(30), "the flaky and the healthy events applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == 11) }
    })
    .await?;

    // Transient twice, then applied once, on its third attempt.
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM effects WHERE post_id = 1").await?, 1);
    assert_eq!(scalar(&pool, "SELECT attempt FROM effects WHERE post_id = 1").await?, 3);
    assert_eq!(outcome(&name, "retried"), 2.0);

    // Permanent and undecodable: dead-lettered with the documented headers, bytes unchanged.
    let dlq = fanout_core::topics::dead_letter(topic.name(), &name);
    let dead = read_topic(&kafka, &dlq, 3, Duration::from_secs(30)).await?;
    let forbidden_record = &records[1];
    let forbidden_dead = dead
        .iter()
        .find(|d| d.header("ce_id").as_deref() == Some(forbidden_record.event_id.as_str()))
        .ok_or_else(|| anyhow::anyhow!("the permanent failure is not in the DLQ"))?;
    assert_eq!(forbidden_dead.key.as_deref(), Some(forbidden_record.key.as_slice()));
    assert_eq!(forbidden_dead.payload.as_deref(), Some(forbidden_record.payload.as_slice()));
    assert_eq!(forbidden_dead.header(h::ATTEMPTS).as_deref(), Some("1"));
    assert_eq!(forbidden_dead.header(h::ORIGINAL_TOPIC).as_deref(), Some(topic.name()));
    assert_eq!(forbidden_dead.header(h::ORIGINAL_PARTITION).as_deref(), Some("0"));
    assert_eq!(forbidden_dead.header(h::ORIGINAL_OFFSET).as_deref(), Some("1"));
    assert_eq!(forbidden_dead.header(h::CONSUMER).as_deref(), Some(name.as_str()));
    assert!(forbidden_dead.header(h::ERROR).is_some_and(|e| e.contains("forbidden")));
    assert!(forbidden_dead.header(h::FIRST_FAILURE_TIME).is_some());
    assert!(forbidden_dead.header(h::LAST_FAILURE_TIME).is_some());
    // The original CloudEvents headers come first, in their order.
    let names: Vec<&str> = forbidden_dead.headers.iter().map(|(k, _)| k.as_str()).take(2).collect();
    assert_eq!(names, ["ce_specversion", "ce_id"]);

    let poison_dead = dead
        .iter()
        .find(|d| d.header("ce_id").as_deref() == Some("poison-1"))
        .ok_or_else(|| anyhow::anyhow!("the poison record is not in the DLQ"))?;
    assert_eq!(poison_dead.payload.as_deref(), Some(poison.payload.as_slice()));
    assert!(poison_dead.header(h::ERROR).is_some_and(|e| e.contains("undecodable")));
    let unknown_dead = dead
        .iter()
        .find(|d| d.header("ce_id").as_deref() == Some("unknown-1"))
        .ok_or_else(|| anyhow::anyhow!("the unknown-schema record is not in the DLQ"))?;
    assert!(unknown_dead.header(h::ERROR).is_some_and(|e| e.contains("unknown schema id 42")));
    assert_eq!(metric("fanout_dead_lettered_total", &[("consumer", &name)]), 3.0);

    running.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_retry_topic_keeps_per_key_order_and_dead_letters_when_exhausted() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-retry", 2).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let stuck = 3_i64;
    let recovering = 4_i64;
    let mut records = vec![
        Outgoing::event(&post(stuck, 0)),
        Outgoing::event(&post(recovering, 0)),
        Outgoing::event(&post(stuck, 1)),
        Outgoing::event(&post(recovering, 1)),
        Outgoing::event(&post(stuck, 2)),
    ];
    records.extend((20..30).map(|p| Outgoing::event(&post(p, 0))));
    publish(&kafka, topic.name(), &records).await?;

    let mut config = config(&db.url());
    config.retry.attempts = 2;
    config.retry.delays_ms = vec![1_500, 1_500];
    let recorder = Recorder::default();
    // (stuck, 0) fails through every attempt; (recovering, 0) fails three times, so succeeds on
    // its fourth attempt, after its first trip through the retry topic.
    recorder.script.always_transient.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((stuck, 0));
    recorder.script.transient.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(recovering, 3);
    let running = start(config, topic.name(), recorder).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();

    wait_until(Duration::from_secs(30), "the other keys applied", || {
        let pool = pool.clone();
        async move { Ok(scalar(&pool, "SELECT COUNT(*) FROM effects WHERE post_id >= 20").await? == 10) }
    })
    .await?;
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM effects WHERE post_id = 3").await?,
        0,
        "the stuck key's later events wait behind its failing event"
    );

    wait_until(Duration::from_secs(60), "the held-back events applied after the dead letter", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == 10 + 2 + 2) }
    })
    .await?;
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM order_violations").await?,
        0,
        "per-key order held through retries"
    );
    assert_eq!(scalar(&pool, "SELECT MIN(seq) FROM effects WHERE post_id = 3").await?, 1);
    assert_eq!(scalar(&pool, "SELECT attempt FROM effects WHERE post_id = 4 AND seq = 0").await?, 4);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM fanout_parked_keys").await?, 0, "no key left parked");

    let dlq = fanout_core::topics::dead_letter(topic.name(), &name);
    let dead = read_topic(&kafka, &dlq, 1, Duration::from_secs(30)).await?;
    assert_eq!(dead[0].header("ce_id").as_deref(), Some(records[0].event_id.as_str()));
    assert_eq!(dead[0].header(h::ATTEMPTS).as_deref(), Some("4"), "2 in process + 2 retry tiers");
    assert_eq!(dead[0].header(h::ORIGINAL_TOPIC).as_deref(), Some(topic.name()));
    assert_eq!(dead[0].payload.as_deref(), Some(records[0].payload.as_slice()));
    let first = dead[0].header(h::FIRST_FAILURE_TIME).unwrap_or_default();
    let last = dead[0].header(h::LAST_FAILURE_TIME).unwrap_or_default();
    assert!(first < last, "first failure {first} before last {last}");
    assert!(outcome(&name, "parked") >= 2.0);

    running.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_unique_violation_is_dead_lettered_at_once_and_a_lost_database_retried() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-db-errors", 1).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let (duplicate, lost) = (5_i64, 6_i64);
    let records = vec![Outgoing::event(&post(duplicate, 0)), Outgoing::event(&post(lost, 0))];
    publish(&kafka, topic.name(), &records).await?;

    let recorder = Recorder::default();
    recorder.script.duplicate_claim.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(duplicate);
    recorder.script.database_gone.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(lost, 2);
    let running = start(config(&db.url()), topic.name(), recorder).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();

    // Transient: backed off twice in process, applied on its third attempt.
    wait_until(Duration::from_secs(30), "the lost-database event applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == 1) }
    })
    .await?;
    assert_eq!(scalar(&pool, "SELECT attempt FROM effects WHERE post_id = 6").await?, 3);

    // Permanent: dead-lettered on its first attempt, its writes rolled back.
    let dlq = fanout_core::topics::dead_letter(topic.name(), &name);
    let dead = read_topic(&kafka, &dlq, 1, Duration::from_secs(30)).await?;
    assert_eq!(dead[0].header("ce_id").as_deref(), Some(records[0].event_id.as_str()));
    assert_eq!(dead[0].header(h::ATTEMPTS).as_deref(), Some("1"), "no retry before the dead letter");
    let error = dead[0].header(h::ERROR).unwrap_or_default();
    assert!(error.starts_with("permanent: database: ") && error.contains("claims_pkey"), "{error}");
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM claims").await?, 0);
    assert_eq!(outcome(&name, "retried"), 2.0, "only the lost database was retried");
    assert_eq!(outcome(&name, "dead_lettered"), 1.0);

    running.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
