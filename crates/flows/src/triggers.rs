//! Trigger topics: each record of a flow's `[start] topic` requests the run named by its key.
//!
//! Forwarding runs beside the engine's transactions, in a consumer group of its own
//! ([`EngineConfig::triggers_group`]), at least once: a request published twice starts its run
//! once, since a run's roots start only from `Waiting`. Its own group lets a trigger topic start
//! from its end: a flow put on a topic that has years of records behind it starts runs for the
//! records written from then on, not one for every record ever written. The starting position
//! is committed the moment the group is first given a partition, so a restart before the first
//! record resumes there rather than at a newer end.

use std::{collections::HashMap, time::Duration};

use fanout_producer::{PublishOptions, Publisher};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer},
    error::KafkaError,
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
};

use crate::{signals::RunRequested, EngineConfig};

/// The most records forwarded in one publish.
const BATCH: usize = 500;

/// Starts each assigned partition the group has no position in yet at its end, and commits
/// that position.
struct FromTheEnd;

impl ClientContext for FromTheEnd {}

impl ConsumerContext for FromTheEnd {
    // The assignment itself is made here: a partition's start has to be a concrete offset when
    // it is assigned. Left to `auto.offset.reset = latest`, "the end" would be looked up when
    // fetching begins, and records written between now and then would be skipped.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        assignment: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr;
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            // Revoked (or the rebalance failed): an eager group gives everything up.
            if let Err(error) = consumer.unassign() {
                tracing::warn!(error = %fanout_core::report(&error), "trigger topics: unassign failed");
            }
            return;
        }
        if let Err(error) = start_new_partitions_at_their_end(consumer, assignment) {
            // `auto.offset.reset = latest` still starts them near their end.
            tracing::warn!(error = %fanout_core::report(&error), "cannot record the trigger topics' starting positions");
        }
        if let Err(error) = consumer.assign(assignment) {
            tracing::error!(error = %fanout_core::report(&error), "trigger topics: assign failed");
        }
    }
}

fn start_new_partitions_at_their_end(
    consumer: &BaseConsumer<FromTheEnd>,
    assignment: &mut TopicPartitionList,
) -> Result<(), KafkaError> {
    let timeout = Duration::from_secs(10);
    let committed = consumer.committed_offsets(assignment.clone(), timeout)?;
    let mut start = TopicPartitionList::new();
    for element in committed.elements() {
        let offset = match element.offset() {
            Offset::Offset(at) => at,
            _ => consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?.1,
        };
        assignment.set_partition_offset(element.topic(), element.partition(), Offset::Offset(offset))?;
        if !matches!(element.offset(), Offset::Offset(_)) {
            start.add_partition_offset(element.topic(), element.partition(), Offset::Offset(offset))?;
        }
    }
    if start.count() > 0 {
        consumer.commit(&start, CommitMode::Sync)?;
        tracing::info!(partitions = start.count(), "trigger topics: new partitions start at their end");
    }
    Ok(())
}

/// Forwards the records of the trigger topics (`topic → flow`) as run requests until the task is
/// dropped. Failures are logged and retried: nothing is committed that was not forwarded.
pub(crate) async fn forward(
    config: EngineConfig,
    client: ClientConfig,
    triggers: HashMap<String, String>,
    publisher: Publisher,
) {
    let mut consumer_config = client;
    consumer_config
        .set("group.id", config.triggers_group())
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        // Eager: the rebalance callback assigns whole assignments (see `FromTheEnd`).
        .set("partition.assignment.strategy", "range")
        .set("isolation.level", "read_committed");
    if let Some(instance) = &config.instance_id {
        consumer_config.set("group.instance.id", instance);
    }
    let consumer: StreamConsumer<FromTheEnd> = match consumer_config.create_with_context(FromTheEnd) {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::error!(error = %fanout_core::report(&error), "cannot create the trigger topics' consumer; runs do not start from them");
            return;
        }
    };
    let topics: Vec<&str> = triggers.keys().map(String::as_str).collect();
    if let Err(error) = consumer.subscribe(&topics) {
        tracing::error!(error = %fanout_core::report(&error), "cannot subscribe to the trigger topics; runs do not start from them");
        return;
    }
    let topic = config.topics().requested;
    let requested = PublishOptions::new().topic(&topic);
    loop {
        let mut requests = Vec::new();
        let mut offsets = TopicPartitionList::new();
        let first = consumer.recv().await;
        let mut next = Some(first);
        while let Some(received) = next.take() {
            match received {
                Ok(message) => {
                    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
                    let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(offset + 1));
                    match (triggers.get(topic), message.key()) {
                        (Some(flow), Some(key)) => requests.push(RunRequested {
                            flow: flow.clone(),
                            run: String::from_utf8_lossy(key).into_owned(),
                            retry_task: None,
                            cascade: false,
                            requested_by: format!("topic {topic}"),
                        }),
                        _ => tracing::warn!(
                            topic,
                            partition,
                            offset,
                            "trigger record without a key; no run to start"
                        ),
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %fanout_core::report(&error), "trigger topics' consumer")
                }
            }
            if requests.len() < BATCH {
                next = futures::FutureExt::now_or_never(consumer.recv());
            }
        }
        let mut failures = 0u32;
        loop {
            let failed = publisher.publish_all(&requests, &requested).await.into_iter().find_map(Result::err);
            match failed {
                None => break,
                Some(error) => {
                    // Published again whole: the requests that went through start nothing twice.
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %fanout_core::report(&error), "forwarding trigger records failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                }
            }
        }
        if offsets.count() > 0 {
            if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
                // Forwarded again after a restart, which starts nothing twice.
                tracing::warn!(error = %fanout_core::report(&error), "committing the trigger topics' offsets failed");
            }
        }
    }
}
