//! Graceful shutdown (what SIGTERM/SIGINT trigger in a service): fetching stops, in-flight work
//! finishes and is committed, the group is left at once, and `run` returns within
//! `processing.shutdown_timeout_ms`, abandoning (uncommitted) whatever could not finish.

mod common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use common::*;
use fanout_testkit::{Kafka, Postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_in_flight_work_and_commits_so_a_restart_sees_no_duplicate() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-shutdown", 2).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let total = 48_i64;
    let keys = 8_i64;
    let records: Vec<Outgoing> = (0..total).map(|i| Outgoing::event(&post(i % keys, i / keys))).collect();
    publish(&kafka, topic.name(), &records).await?;

    let mut config = config(&db.url());
    config.processing.key_parallelism = 4;
    config.processing.batch_size = 2;
    // No periodic commit: only the shutdown's own commit can record progress.
    config.processing.commit_interval_ms = 600_000;
    config.processing.shutdown_timeout_ms = 20_000;
    // One key much slower than the others: they run ahead of it, so when the shutdown begins
    // events of the slow key wait below offsets already applied.
    let slow = Recorder::default();
    slow.script
        .slow
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .extend((0..keys).map(|p| (p, Duration::from_millis(if p == 0 { 400 } else { 30 }))));
    let calls = slow.calls.clone();
    let running = start(config.clone(), topic.name(), slow).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(30), "some events applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? >= 8) }
    })
    .await?;
    let stopping = Instant::now();
    running.stop().await?;
    assert!(stopping.elapsed() < Duration::from_secs(20), "stopped in {:?}", stopping.elapsed());
    let applied = effects(&pool).await?;
    assert!(applied < total, "the shutdown came mid-stream ({applied} of {total})");
    assert_eq!(
        calls.load(Ordering::SeqCst) as i64,
        applied,
        "every handler call under way when the shutdown began finished and committed"
    );

    let recorder = Recorder::default();
    let calls = recorder.calls.clone();
    let running = start(config, topic.name(), recorder).await?;
    wait_until(Duration::from_secs(60), "the rest applied after the restart", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? >= total) }
    })
    .await?;
    running.stop().await?;
    assert_eq!(effects(&pool).await?, total);
    assert_eq!(scalar(&pool, "SELECT COUNT(DISTINCT event_id) FROM effects").await?, total);
    assert_eq!(outcome(&name, "duplicate"), 0.0, "the restart resumed exactly after the finished work");
    assert_eq!(calls.load(Ordering::SeqCst) as i64, total - applied);
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_returns_within_its_deadline_and_abandons_unfinished_work_uncommitted() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-shutdown-deadline", 1).await?;
    // PostgreSQL: on SQLite the hung handler's transaction would hold the single write lock.
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let hung = 0_i64;
    let others = 10_i64;
    let mut records = vec![Outgoing::event(&post(hung, 0))];
    records.extend((1..=others).map(|p| Outgoing::event(&post(p, 0))));
    publish(&kafka, topic.name(), &records).await?;

    let mut config = config(&db.url());
    config.processing.batch_size = 1;
    config.processing.shutdown_timeout_ms = 2_000;
    let recorder = Recorder::default();
    recorder
        .script
        .slow
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .insert(hung, Duration::from_secs(600));
    let running = start(config.clone(), topic.name(), recorder).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(30), "the other keys applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == others) }
    })
    .await?;
    let stopping = Instant::now();
    running.stop().await?;
    let took = stopping.elapsed();
    assert!(took <= Duration::from_millis(2_000 + 500), "run returned {took:?} after the shutdown began");
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM fanout_processed").await?,
        others,
        "the abandoned event left no dedupe mark"
    );

    // The abandoned event is not lost: its offset was never committed (nor, therefore, any later
    // one: the events after it come back as duplicates).
    let running = start(config, topic.name(), Recorder::default()).await?;
    wait_until(Duration::from_secs(30), "the abandoned event applied after the restart", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == others + 1) }
    })
    .await?;
    wait_until(Duration::from_secs(30), "the later events skipped as duplicates", || {
        let name = name.clone();
        async move { Ok(outcome(&name, "duplicate") >= others as f64) }
    })
    .await?;
    running.stop().await?;
    assert_eq!(scalar(&pool, "SELECT COUNT(DISTINCT event_id) FROM effects").await?, others + 1);
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_instance_leaves_the_group_and_its_partitions_move_at_once() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-shutdown-leave", 2).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let mut config = config(&db.url());
    // Were the group not left, the survivor would wait this long for the partitions.
    config.kafka.properties.insert("session.timeout.ms".into(), "45000".into());
    let first = start(config.clone(), topic.name(), Recorder::default()).await?;
    wait_ready(&first, Duration::from_secs(30)).await?;
    let second = start(config, topic.name(), Recorder::default()).await?;
    let name = second.name.clone();
    // 2 partitions of the topic and 2 of its retry topic, shared by the two instances.
    wait_until(Duration::from_secs(30), "the partitions shared", || async {
        Ok(assigned(&first).await? + assigned(&second).await? == 4 && assigned(&second).await? > 0)
    })
    .await?;

    first.stop().await?;
    let left = Instant::now();
    wait_until(Duration::from_secs(20), "the survivor owning every partition", || async {
        Ok(assigned(&second).await? == 4)
    })
    .await?;
    assert!(left.elapsed() < Duration::from_secs(20));

    second.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
