//! The usual order on a new topic: the consumer starts first, the topic is created afterwards
//! (by its first publish or an operator). The consumer says it is waiting and starts consuming
//! within seconds of the creation, not after librdkafka's default five-minute metadata refresh.
//! Until then it owns its retry topic's partition only, and is not ready.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::Kafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_started_before_its_topic_picks_it_up_within_seconds() -> TestResult {
    let kafka = Kafka::connect().await?;
    // Named, not created: the guard deletes it at the end.
    let topic = kafka.future_topic("consumer-new-topic");
    let (_dir, url) = sqlite();
    let running = start(config(&url), topic.name(), Recorder::default()).await?;
    let name = running.name.clone();
    // Its retry topic is created at start, so the group assigns that partition at once.
    wait_until(Duration::from_secs(30), "the retry topic's partition assigned", || async {
        Ok(partitions(&running).await? == (0, 1))
    })
    .await?;
    assert_eq!(http_status(running.http, "/healthz").await?, 200);
    let response = http_get(running.http, "/readyz").await?;
    assert!(
        response.contains(" 503 ") && response.contains("source_partitions=0 retry_partitions=1"),
        "not ready without its source topic: {response}"
    );
    let (client, probe) = (kafka.client_config(), topic.name().to_owned());
    let missing = tokio::task::spawn_blocking(move || {
        fanout_kafka::topic_partitions(&client, &probe, Duration::from_secs(5))
    })
    .await?;
    assert!(
        matches!(missing, Err(fanout_kafka::ReadError::UnknownTopic { .. })),
        "the consumer must not have created its source topic: {missing:?}"
    );

    kafka.create_topic(topic.name(), 1).await?;
    publish(&kafka, topic.name(), &[Outgoing::event(&post(1, 0))]).await?;
    // Generous, and still far below the five minutes this used to take.
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(45), "the first event applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == 1) }
    })
    .await?;
    let response = http_get(running.http, "/readyz").await?;
    assert!(
        response.contains(" 200 ") && response.contains("source_partitions=1 retry_partitions=1"),
        "ready once its source topic is assigned: {response}"
    );

    running.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
