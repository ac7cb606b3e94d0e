//! Several instances of one consumer on PostgreSQL, one joining and one leaving mid-stream
//! (cooperative-sticky rebalances with in-flight work): every effect exactly once, order kept.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::{Kafka, Postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_joining_and_leaving_mid_stream_apply_every_event_once() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-rebalance", 6).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let total = 600_i64;
    let keys = 40_i64;
    let records: Vec<Outgoing> = (0..total).map(|i| Outgoing::event(&post(i % keys, i / keys))).collect();
    publish(&kafka, topic.name(), &records).await?;

    let mut config = config(&db.url());
    config.processing.key_parallelism = 4;
    config.processing.batch_size = 5;
    config.processing.drain_timeout_ms = 5_000;
    // Slow handlers keep work in flight while partitions move.
    let slow = |recorder: &Recorder| -> TestResult {
        recorder
            .script
            .slow
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .extend((0..keys).map(|p| (p, Duration::from_millis(10))));
        Ok(())
    };
    let (a, b, c) = (Recorder::default(), Recorder::default(), Recorder::default());
    slow(&a)?;
    slow(&b)?;
    slow(&c)?;
    let calls = [a.calls.clone(), b.calls.clone(), c.calls.clone()];
    let first = start(config.clone(), topic.name(), a).await?;
    let second = start(config.clone(), topic.name(), b).await?;
    let pool = first.pool.clone();
    let name = first.name.clone();
    wait_until(Duration::from_secs(60), "some events applied by the first two instances", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? >= total / 6) }
    })
    .await?;

    // A third joins while work is in flight.
    let third = start(config.clone(), topic.name(), c).await?;
    wait_ready(&third, Duration::from_secs(60)).await?;
    wait_until(Duration::from_secs(60), "half the events applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? >= total / 2) }
    })
    .await?;
    // One instance leaves while work is in flight; its partitions move to the others.
    first.stop().await?;

    wait_until(Duration::from_secs(120), "every event applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? >= total) }
    })
    .await?;
    second.stop().await?;
    third.stop().await?;

    assert_eq!(effects(&pool).await?, total, "every event applied exactly once");
    assert_eq!(scalar(&pool, "SELECT COUNT(DISTINCT event_id) FROM effects").await?, total);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM order_violations").await?, 0, "per-key order kept");
    // Which instance applies what is the assignor's choice: the retry topic's partitions count
    // too, and cooperative-sticky balances partition counts, not topics, so an instance that
    // joins second may own only retry partitions and have nothing to apply. The instance that
    // left applied some events before its partitions moved on.
    let working = calls.iter().filter(|c| c.load(std::sync::atomic::Ordering::SeqCst) > 0).count();
    assert!(working >= 1, "{working} instances did work");
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
