//! `fanout_producer_queue_depth` sums every producer of the process. Alone in its test binary:
//! the gauge is process-wide, and other tests' producers would move it.

use fanout_kafka::{ProduceError, ProducerSettings, RecordProducer};

fn queue_depth() -> i64 {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == "fanout_producer_queue_depth")
        .flat_map(|family| family.get_metric().iter())
        .map(|metric| metric.get_gauge().get_value() as i64)
        .sum()
}

#[tokio::test]
async fn the_queue_depth_gauge_sums_every_producer_of_the_process() {
    // No broker: creating a producer needs none, and nothing here is handed to librdkafka.
    let kafka = fanout_config::KafkaSettings { bootstrap: "127.0.0.1:1".into(), ..Default::default() };
    let first = RecordProducer::new(&kafka, &ProducerSettings::default()).expect("producer");
    let second = RecordProducer::new(&kafka, &ProducerSettings::default()).expect("producer");
    let before = queue_depth();

    let three = first.batch::<ProduceError>(3);
    let two = second.batch::<ProduceError>(2);
    assert_eq!(queue_depth() - before, 5, "both producers' records count");
    drop(two);
    assert_eq!(queue_depth() - before, 3, "one producer's batch left, the other's still counts");
    let outcomes = three.finish().await;
    assert!(outcomes.iter().all(|o| matches!(o, Err(ProduceError::Closed))), "{outcomes:?}");
    assert_eq!(queue_depth(), before);
}
