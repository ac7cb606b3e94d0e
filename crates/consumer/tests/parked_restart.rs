//! Held-back keys survive a restart: the consumer stops while an event of key K waits in the
//! retry topic and a later K event is held back behind it; more K events arrive while it is
//! down. After the restart every K event is applied once, in order, after the failing one, and
//! no key stays parked.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::Kafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_back_events_of_a_parked_key_survive_a_restart_in_order() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-parked-restart", 2).await?;
    let (_dir, url) = sqlite();
    let parked = 5_i64;
    let mut config = config(&url);
    // One in-process attempt, then the retry topic; the second tier is far away, so the failing
    // event cannot be dead-lettered before the first run stops.
    config.retry.attempts = 1;
    config.retry.delays_ms = vec![1_000, 600_000];

    let first = Recorder::default();
    first.script.always_transient.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((parked, 0));
    let mut records = vec![Outgoing::event(&post(parked, 0)), Outgoing::event(&post(parked, 1))];
    records.extend((10..16).map(|p| Outgoing::event(&post(p, 0))));
    publish(&kafka, topic.name(), &records).await?;

    let running = start(config.clone(), topic.name(), first).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(30), "other keys applied and K parked behind its failing event", || {
        let pool = pool.clone();
        async move {
            Ok(scalar(&pool, "SELECT COUNT(*) FROM effects WHERE post_id >= 10").await? == 6
                && scalar(&pool, "SELECT COUNT(*) FROM fanout_parked_keys").await? == 2)
        }
    })
    .await?;
    running.stop().await?;
    assert_eq!(
        scalar(&pool, &format!("SELECT COUNT(*) FROM effects WHERE post_id = {parked}")).await?,
        0,
        "nothing of K applied while its first event fails"
    );

    // More events of K arrive while the consumer is down.
    publish(&kafka, topic.name(), &[Outgoing::event(&post(parked, 2)), Outgoing::event(&post(parked, 3))])
        .await?;

    let running = start(config, topic.name(), Recorder::default()).await?;
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(60), "every event of K applied after the restart", || {
        let pool = pool.clone();
        async move {
            Ok(scalar(&pool, &format!("SELECT COUNT(*) FROM effects WHERE post_id = {parked}")).await? == 4)
        }
    })
    .await?;
    wait_until(Duration::from_secs(30), "no key left parked", || {
        let pool = pool.clone();
        async move { Ok(scalar(&pool, "SELECT COUNT(*) FROM fanout_parked_keys").await? == 0) }
    })
    .await?;
    running.stop().await?;

    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM order_violations").await?, 0, "K applied in order");
    assert_eq!(effects(&pool).await?, 6 + 4, "every event applied once");
    assert_eq!(scalar(&pool, "SELECT COUNT(DISTINCT event_id) FROM effects").await?, 6 + 4);
    assert_eq!(outcome(&name, "dead_lettered"), 0.0);
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
