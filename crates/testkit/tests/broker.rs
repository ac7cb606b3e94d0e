//! The test kit against the real broker: it fails loudly when none answers, and its topics are
//! real, unique and cleaned up.

use std::time::Duration;

use fanout_testkit::{Kafka, TestkitError};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};

#[tokio::test]
async fn connect_fails_loudly_when_no_broker_answers() {
    // Nothing listens on port 1; the kit must say so and how to fix it rather than skip.
    let err = Kafka::connect_to("127.0.0.1:1", Duration::from_secs(3))
        .await
        .expect_err("connecting to a closed port must fail");
    assert!(matches!(err, TestkitError::BrokerUnavailable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(message.contains("scripts/stack up kafka"), "{message}");
}

#[tokio::test]
async fn topics_are_unique_usable_and_deleted_on_drop() {
    let kafka = Kafka::connect().await.expect("the test broker answers");
    let a = kafka.topic("kit", 3).await.expect("creates topic");
    let b = kafka.topic("kit", 1).await.expect("creates topic");
    assert_ne!(a.name(), b.name());

    let producer: FutureProducer = kafka.client_config().create().expect("producer");
    let delivery = producer
        .send(FutureRecord::to(a.name()).key("k").payload("v").partition(2), Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(delivery.partition, 2, "the topic has the three partitions asked for");

    let name = a.name().to_owned();
    drop(a);
    let consumer: BaseConsumer = kafka.client_config().create().expect("consumer");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(5)).expect("metadata");
        if !metadata.topics().iter().any(|t| t.name() == name) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "topic {name} still exists after drop");
        std::thread::sleep(Duration::from_millis(100));
    }
}
