//! Every event's effect is applied exactly once, on SQLite and on PostgreSQL: duplicates (the
//! same `ce_id` re-sent) are skipped and counted, and a restarted consumer resumes from its
//! committed offsets without re-applying anything.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::{Kafka, Postgres};

/// 60 events over 12 keys on 3 partitions, 10 of them re-sent with the same id.
fn events() -> (Vec<Outgoing>, usize) {
    let mut records: Vec<Outgoing> = (0..60).map(|i| Outgoing::event(&post(i % 12, i / 12))).collect();
    let resent: Vec<Outgoing> = records.iter().step_by(6).cloned().collect();
    let distinct = records.len();
    records.extend(resent);
    (records, distinct)
}

async fn applies_each_event_once(store_url: &str) -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-once", 3).await?;
    let (records, distinct) = events();
    let duplicates = records.len() - distinct;
    publish(&kafka, topic.name(), &records).await?;

    let mut config = config(store_url);
    config.processing.key_parallelism = 4;
    config.processing.batch_size = 8;
    let running = start(config.clone(), topic.name(), Recorder::default()).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(60), "every event applied and every duplicate seen", || {
        let pool = pool.clone();
        let name = name.clone();
        async move {
            Ok(effects(&pool).await? >= distinct as i64
                && metric("fanout_duplicates_total", &[("consumer", &name)]) >= duplicates as f64)
        }
    })
    .await?;
    // The HTTP endpoint serves the same numbers.
    let body = http_get(running.http, "/metrics").await?;
    assert!(body.contains("fanout_consumed_total"), "{body}");
    assert!(http_get(running.http, "/healthz").await?.contains("ok"));
    running.stop().await?;

    assert_eq!(effects(&pool).await?, distinct as i64, "each distinct event applied once");
    assert_eq!(scalar(&pool, "SELECT COUNT(DISTINCT event_id) FROM effects").await?, distinct as i64);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM order_violations").await?, 0, "per-key order kept");
    assert_eq!(outcome(&name, "ok"), distinct as f64);
    assert_eq!(outcome(&name, "duplicate"), duplicates as f64);
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM fanout_processed").await?,
        distinct as i64,
        "one dedupe mark per event"
    );

    // A restart with the same group and store resumes after the committed offsets: nothing is
    // handled again, and new events are.
    let recorder = Recorder::default();
    let calls = recorder.calls.clone();
    let running = start(config, topic.name(), recorder).await?;
    publish(&kafka, topic.name(), &[Outgoing::event(&post(99, 0))]).await?;
    let pool2 = running.pool.clone();
    wait_until(Duration::from_secs(60), "the new event applied", || {
        let pool = pool2.clone();
        async move { Ok(effects(&pool).await? == distinct as i64 + 1) }
    })
    .await?;
    running.stop().await?;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "only the new event reached the handler");
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_applies_each_event_exactly_once() -> TestResult {
    let (_dir, url) = sqlite();
    applies_each_event_once(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_applies_each_event_exactly_once() -> TestResult {
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    applies_each_event_once(&db.url()).await
}
