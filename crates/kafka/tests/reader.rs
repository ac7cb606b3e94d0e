//! The record producer and the bounded reader against the real broker.

use std::{ops::ControlFlow, time::Duration};

use fanout_kafka::{Headers, OwnedRecord, ProducerSettings, ReadError, Record, RecordProducer, TopicRead};

fn producer(kafka: &fanout_testkit::Kafka) -> RecordProducer {
    let settings =
        fanout_config::KafkaSettings { bootstrap: kafka.bootstrap().to_owned(), ..Default::default() };
    RecordProducer::new(&settings, &ProducerSettings::default()).expect("producer")
}

fn keyed(topic: &str, key: &str, value: &str) -> OwnedRecord {
    OwnedRecord {
        topic: topic.to_owned(),
        key: Some(key.as_bytes().to_vec()),
        payload: Some(value.as_bytes().to_vec()),
        headers: vec![("value".to_owned(), Some(value.as_bytes().to_vec()))],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_stops_at_the_end_the_topic_had_when_it_started() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("kafka-read", 3).await?;
    let producer = producer(&kafka);
    let records: Vec<OwnedRecord> =
        (0..30).map(|i| keyed(topic.name(), &format!("k{}", i % 7), &i.to_string())).collect();
    for result in producer.send_all(records.iter().map(OwnedRecord::record)).await {
        result?;
    }

    // Records written while the read runs (here: after its first record) are left for the next.
    let config = kafka.client_config();
    let (late_topic, late_producer) = (topic.name().to_owned(), producer.clone());
    let read = TopicRead::new(topic.name());
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        read.read_blocking(&config, |record| {
            if seen.is_empty() {
                let late: Vec<OwnedRecord> =
                    (30..40).map(|i| keyed(&late_topic, "late", &i.to_string())).collect();
                let sent = runtime.block_on(late_producer.send_all(late.iter().map(OwnedRecord::record)));
                assert!(sent.iter().all(Result::is_ok), "{sent:?}");
            }
            seen.push(record);
            ControlFlow::Continue(())
        })?;
        anyhow::Ok(seen)
    })
    .await??;
    let mut values: Vec<i64> = seen.iter().filter_map(|r| r.header("value")?.parse().ok()).collect();
    values.sort_unstable();
    assert_eq!(values, (0..30).collect::<Vec<_>>(), "exactly the records written before the read");

    // The next read sees them all, in offset order per partition, one key on one partition.
    let all = TopicRead::new(topic.name()).read(&kafka.client_config()).await?;
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| (w[0].partition, w[0].offset) < (w[1].partition, w[1].offset)));
    let late: Vec<&str> =
        all.iter().filter(|r| r.key.as_deref() == Some(b"late")).filter_map(|r| r.header("value")).collect();
    assert_eq!(late, (30..40).map(|i| i.to_string()).collect::<Vec<_>>(), "one key keeps its order");

    // A partition from an offset: the tail of that partition only.
    let partition = all[0].partition;
    let in_partition: Vec<i64> = all.iter().filter(|r| r.partition == partition).map(|r| r.offset).collect();
    let tail = TopicRead::new(topic.name())
        .partitions([partition])
        .from_offset(in_partition[1])
        .read(&kafka.client_config())
        .await?;
    assert_eq!(tail.iter().map(|r| r.offset).collect::<Vec<_>>(), in_partition[1..]);
    Ok(())
}

#[tokio::test]
async fn keys_payloads_and_null_headers_come_back_byte_for_byte() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("kafka-bytes", 1).await?;
    let producer = producer(&kafka);
    let binary = [0xff, 0x00, 0x7f];
    let delivered = producer
        .send(Record {
            partition: None,
            topic: topic.name(),
            key: None,
            payload: None,
            headers: Headers::with_capacity(3)
                .add("null", None)
                .add("empty", Some(b""))
                .add("binary", Some(&binary)),
        })
        .await?;
    let read = TopicRead::new(topic.name()).read(&kafka.client_config()).await?;
    assert_eq!(read.len(), 1);
    let record = &read[0];
    assert_eq!((record.partition, record.offset), (delivered.partition, delivered.offset));
    assert_eq!((record.key.as_deref(), record.payload.as_deref()), (None, None), "no key, a tombstone");
    assert_eq!(
        record.headers,
        [
            ("null".to_owned(), None),
            ("empty".to_owned(), Some(Vec::new())),
            ("binary".to_owned(), Some(binary.to_vec()))
        ]
    );
    Ok(())
}

#[tokio::test]
async fn an_empty_topic_reads_at_once_and_a_missing_one_is_named() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("kafka-empty", 2).await?;
    let started = std::time::Instant::now();
    let read =
        TopicRead::new(topic.name()).timeout(Duration::from_secs(30)).read(&kafka.client_config()).await?;
    assert!(read.is_empty());
    assert!(started.elapsed() < Duration::from_secs(10), "waited {:?} on an empty topic", started.elapsed());

    let missing = fanout_testkit::unique_name("kafka-missing");
    let err = TopicRead::new(&missing).read(&kafka.client_config()).await.expect_err("no such topic");
    assert!(matches!(err, ReadError::UnknownTopic { ref topic } if *topic == missing), "{err:?}");
    Ok(())
}
