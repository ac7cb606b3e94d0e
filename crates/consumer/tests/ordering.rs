//! Per-key order with parallel keys: a deliberately slow key does not stall the other keys of
//! its partition, and every key's events apply in order.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::{Kafka, Postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_key_does_not_stall_other_keys_and_order_holds() -> TestResult {
    let kafka = Kafka::connect().await?;
    // One partition: every key shares it, so only key-level parallelism can keep them moving.
    let topic = kafka.topic("consumer-order", 1).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let slow_post = 0_i64;
    let per_key = 10_i64;
    let keys = 6_i64;
    let records: Vec<Outgoing> =
        (0..per_key * keys).map(|i| Outgoing::event(&post(i % keys, i / keys))).collect();
    publish(&kafka, topic.name(), &records).await?;

    let mut config = config(&db.url());
    config.processing.key_parallelism = 4;
    // One event per transaction: on PostgreSQL the slow key then holds one connection only.
    config.processing.batch_size = 1;
    config.store.max_connections = 4;
    let recorder = Recorder::default();
    recorder
        .script
        .slow
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .insert(slow_post, Duration::from_millis(400));
    let running = start(config, topic.name(), recorder).await?;
    let pool = running.pool.clone();
    let name = running.name.clone();

    wait_until(Duration::from_secs(30), "every fast key's events applied", || {
        let pool = pool.clone();
        async move {
            Ok(scalar(&pool, "SELECT COUNT(*) FROM effects WHERE post_id <> 0").await?
                == per_key * (keys - 1))
        }
    })
    .await?;
    let slow_done = scalar(&pool, "SELECT COUNT(*) FROM effects WHERE post_id = 0").await?;
    assert!(
        slow_done < per_key / 2,
        "the fast keys finished while the slow key was still early ({slow_done} done)"
    );

    wait_until(Duration::from_secs(30), "the slow key's events applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == per_key * keys) }
    })
    .await?;
    running.stop().await?;
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM order_violations").await?, 0, "per-key order held");
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
