//! The local broker started by `scripts/stack` keeps its data: messages written before a
//! `kill -9` of the broker are all there after `scripts/stack up kafka` brings it back, and a
//! second `up` of a running stack changes nothing.
//!
//! This test kills the shared broker, so it lives alone in its own test binary (cargo runs test
//! binaries one after another).

use std::time::Duration;

use anyhow::ensure;
use fanout_tests::{broker_pid, kill_broker, stack};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
    Message, Offset, TopicPartitionList,
};

#[tokio::test]
async fn broker_survives_kill_9_with_its_messages() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("durability", 2).await?;

    let second_up = stack(&["up", "kafka"])?;
    ensure!(second_up.contains("already running"), "a second `up` did something: {second_up}");
    let pid_before = broker_pid()?;

    let producer: FutureProducer =
        kafka.client_config().set("acks", "all").set("enable.idempotence", "true").create()?;
    let count = 200;
    for i in 0..count {
        let payload = format!("message-{i}");
        producer
            .send(FutureRecord::to(topic.name()).key(&payload).payload(&payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
    }
    drop(producer);

    ensure!(kill_broker().await? == pid_before, "the broker's pid changed before the kill");

    let up = stack(&["up", "kafka"])?;
    ensure!(up.contains("ready"), "broker did not come back: {up}");
    ensure!(broker_pid()? != pid_before, "the broker was not restarted");

    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", fanout_testkit::unique_name("durability"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..2 {
        assignment.add_partition_offset(topic.name(), p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < count {
        ensure!(
            std::time::Instant::now() < deadline,
            "only {} of {count} messages after restart",
            seen.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message?;
            let payload =
                message.payload().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
            seen.insert(payload);
        }
    }
    let expected: std::collections::BTreeSet<String> = (0..count).map(|i| format!("message-{i}")).collect();
    assert_eq!(seen, expected);
    Ok(())
}
