//! The local broker started by `scripts/stack` keeps its data: messages written before a
//! `kill -9` of the broker are all there after `scripts/stack up kafka` brings it back, and a
//! second `up` of a running stack changes nothing.
//!
//! This test kills the shared broker, so it lives alone in its own test binary (cargo runs test
//! binaries one after another).

use std::time::Duration;

use anyhow::ensure;
use fanout_kafka::{OwnedRecord, ProducerSettings, RecordProducer};
use fanout_testkit::stack::{broker_pid, kill_broker, stack};

#[tokio::test]
async fn broker_survives_kill_9_with_its_messages() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("durability", 2).await?;

    let second_up = stack(&["up", "kafka"])?;
    ensure!(second_up.contains("already running"), "a second `up` did something: {second_up}");
    let pid_before = broker_pid()?;

    let settings =
        fanout_config::KafkaSettings { bootstrap: kafka.bootstrap().to_owned(), ..Default::default() };
    let producer = RecordProducer::new(&settings, &ProducerSettings::default())?;
    let count = 200;
    let records: Vec<OwnedRecord> = (0..count)
        .map(|i| {
            let payload = format!("message-{i}").into_bytes();
            OwnedRecord {
                topic: topic.name().to_owned(),
                key: Some(payload.clone()),
                payload: Some(payload),
                headers: Vec::new(),
            }
        })
        .collect();
    for sent in producer.send_all(records.iter().map(OwnedRecord::record)).await {
        sent?;
    }
    drop(producer);

    ensure!(kill_broker().await? == pid_before, "the broker's pid changed before the kill");

    let up = stack(&["up", "kafka"])?;
    ensure!(up.contains("ready"), "broker did not come back: {up}");
    ensure!(broker_pid()? != pid_before, "the broker was not restarted");

    // The restarted broker may still be electing leaders: the read is tried again until then.
    let read = kafka.read_at_least(topic.name(), count, Duration::from_secs(60)).await?;
    let seen: std::collections::BTreeSet<String> = read
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect();
    ensure!(read.len() == count, "{} records after the restart, {count} written", read.len());
    let expected: std::collections::BTreeSet<String> = (0..count).map(|i| format!("message-{i}")).collect();
    assert_eq!(seen, expected);
    Ok(())
}
