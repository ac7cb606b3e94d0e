//! A consumer that dies mid-stream (its run future dropped: batches aborted, transactions rolled
//! back, no further offset commits) and is restarted with the same group and store applies every
//! event exactly once: what it applied but had not committed to Kafka comes back as duplicates.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::{Kafka, Postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_stream_then_restart_applies_every_event_once() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-crash", 3).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let total = 300_i64;
    let records: Vec<Outgoing> = (0..total).map(|i| Outgoing::event(&post(i % 25, i / 25))).collect();
    publish(&kafka, topic.name(), &records).await?;

    let mut config = config(&db.url());
    config.processing.key_parallelism = 4;
    config.processing.batch_size = 10;
    // Commit rarely, so the crash lands between effects committed in the store and offsets
    // committed in Kafka: the restart must meet those events again and skip them.
    config.processing.commit_interval_ms = 60_000;
    let script = Recorder::default();
    // Slow enough that the crash catches batches in flight.
    script
        .script
        .slow
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .extend((0..25).map(|p| (p, Duration::from_millis(5))));
    let first = start(config.clone(), topic.name(), script).await?;
    let pool = first.pool.clone();
    wait_until(Duration::from_secs(60), "a third of the events applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? >= total / 3) }
    })
    .await?;
    first.crash().await;
    let applied_before = effects(&pool).await?;
    assert!(applied_before < total, "the crash came mid-stream ({applied_before} of {total})");

    let second = start(config, topic.name(), Recorder::default()).await?;
    let name = second.name.clone();
    wait_until(Duration::from_secs(90), "every event applied after the restart", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? >= total) }
    })
    .await?;
    second.stop().await?;

    assert_eq!(effects(&pool).await?, total, "no event applied twice, none lost");
    assert_eq!(scalar(&pool, "SELECT COUNT(DISTINCT event_id) FROM effects").await?, total);
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM order_violations").await?, 0);
    assert!(
        outcome(&name, "duplicate") >= 1.0,
        "the restart met events applied before the crash and skipped them"
    );
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
