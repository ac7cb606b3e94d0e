//! Flow control without pausing: draining a backlog many times the runtime's buffer neither
//! pauses a partition nor fetches an offset twice.
//!
//! Pausing was the flow control once, and in librdkafka a pause throws away the partition's
//! prefetched records and a resume waits up to a second for the next fetch: a backlog drained at
//! about `max_buffered` events a second, however fast the store. Both counters below stay at 0
//! only while full buffers are handled by not taking records, as they must be.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::Kafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_many_buffers_deep_drains_without_pausing_or_refetching() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-flow", 2).await?;
    let total = 2_000_i64;
    let records: Vec<Outgoing> = (0..total).map(|i| Outgoing::event(&post(i % 200, i / 200))).collect();
    publish(&kafka, topic.name(), &records).await?;

    let (_dir, url) = sqlite();
    let mut config = config(&url);
    // Twenty buffers deep.
    config.processing.max_buffered = 100;
    config.processing.batch_size = 50;
    let running = start(config, topic.name(), Recorder::default()).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(90), "the whole backlog applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? >= total) }
    })
    .await?;
    let labels = [("consumer", name.as_str())];
    assert_eq!(metric("fanout_consumer_fetch_pauses_total", &labels), 0.0, "no partition paused");
    assert_eq!(metric("fanout_consumer_refetched_total", &labels), 0.0, "no offset fetched twice");
    assert!(metric_present("fanout_consumer_fetch_pauses_total", &labels), "the counter is served");
    running.stop().await?;

    assert_eq!(effects(&pool).await?, total, "each event applied once");
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM order_violations").await?, 0, "per-key order kept");
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
