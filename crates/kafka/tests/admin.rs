//! Topic administration against the real broker.

use std::time::Duration;

use fanout_kafka::{delete_topics, ensure_topics, AdminError, TopicSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};

fn partitions(config: &rdkafka::ClientConfig, topic: &str) -> usize {
    let probe: BaseConsumer = config.create().expect("metadata client");
    let metadata = probe.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

#[tokio::test]
async fn topics_are_created_once_served_at_return_and_deleted() {
    let kafka = fanout_testkit::Kafka::connect().await.expect("broker");
    let config = kafka.client_config();
    let name = fanout_testkit::unique_name("kafka-admin");
    let spec = TopicSpec::new(&name, 3).replication(1).with("cleanup.policy", "compact");

    ensure_topics(&config, std::slice::from_ref(&spec), Duration::from_secs(15)).await.expect("created");
    assert_eq!(partitions(&config, &name), 3, "served with all partitions when ensure_topics returns");
    // Again, as every instance of a service does at start: the existing topic is fine.
    ensure_topics(&config, &[TopicSpec::new(&name, 3)], Duration::from_secs(15)).await.expect("exists");

    // A topic the broker must refuse: more replicas than brokers.
    let refused = fanout_testkit::unique_name("kafka-admin-refused");
    let err = ensure_topics(&config, &[TopicSpec::new(&refused, 1).replication(5)], Duration::from_secs(5))
        .await
        .expect_err("replication 5 on one broker");
    assert!(matches!(err, AdminError::Refused { ref topic, .. } if *topic == refused), "{err:?}");

    delete_topics(&config, &[&name, &refused]).await.expect("deleted, the absent one too");
    fanout_testkit::wait_until(Duration::from_secs(15), "the topic to be gone", || {
        let gone = partitions(&config, &name) == 0;
        async move { Ok(gone) }
    })
    .await
    .expect("deleted");
}
