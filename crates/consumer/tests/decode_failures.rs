//! Payloads that can never decode, through the production decoder ([`RegistryDecoder`]) and the
//! built-in registry: bytes without a Confluent frame and a frame naming a schema id the
//! registry does not have are both dead-lettered at once, with their bytes and the documented
//! headers, while every other event, later events of the same keys included, flows.

mod common;

use std::time::Duration;

use common::*;
use fanout_consumer::{dlq_headers as h, Consumer, RegistryDecoder};
use fanout_events::PostPublished;
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{Kafka, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_bytes_and_unknown_schema_ids_are_dead_lettered_while_others_flow() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-decode", 1).await?;
    let registry = Registry::start(&kafka).await?;
    let serde = AvroSerde::from_settings(&registry.settings())?;
    let encoder = serde.encoder::<PostPublished>(topic.name()).await?;
    let unknown_id = encoder.schema_id() + 1_000;

    let event = |post_id: i64, seq: i64| -> anyhow::Result<Outgoing> {
        let mut out = Outgoing::event(&post(post_id, seq));
        out.payload = encoder.encode(&post(post_id, seq))?;
        Ok(out)
    };
    let (poison_key, unknown_key) = (1_i64, 2_i64);
    let mut poison = event(poison_key, 0)?;
    poison.payload = b"{\"post_id\": 1}".to_vec();
    let mut unknown = event(unknown_key, 0)?;
    unknown.payload = {
        let mut framed = vec![0];
        framed.extend_from_slice(&unknown_id.to_be_bytes());
        framed.extend_from_slice(&encoder.encode(&post(unknown_key, 0))?[5..]);
        framed
    };
    let mut records = vec![poison.clone(), unknown.clone()];
    // Later events of the same keys, and other keys, all on the same partition.
    records.push(event(poison_key, 1)?);
    records.push(event(unknown_key, 1)?);
    for post_id in 10..20 {
        records.push(event(post_id, 0)?);
    }
    publish(&kafka, topic.name(), &records).await?;

    let (_dir, url) = sqlite();
    let consumer = Consumer::builder(config(&url))
        .decoder(RegistryDecoder::new(serde.clone()))
        .handle_topic(topic.name(), Recorder::default())
        .build()
        .await?;
    create_effects(consumer.pool()).await?;
    let running = run(Built { consumer, registry: Some(registry) });
    let name = running.name.clone();
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(30), "every decodable event applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == 12) }
    })
    .await?;
    assert_eq!(scalar(&pool, "SELECT COUNT(*) FROM effects WHERE post_id IN (1, 2) AND seq = 1").await?, 2);

    let dlq = fanout_core::topics::dead_letter(topic.name(), &name);
    let dead = read_topic(&kafka, &dlq, 2, Duration::from_secs(30)).await?;
    let find = |id: &str| {
        dead.iter()
            .find(|d| d.header("ce_id").as_deref() == Some(id))
            .ok_or_else(|| anyhow::anyhow!("{id} is not in the dead-letter topic"))
    };
    for (record, offset, error) in
        [(&poison, "0", "malformed payload"), (&unknown, "1", &format!("unknown schema id {unknown_id}"))]
    {
        let dead = find(&record.event_id)?;
        assert_eq!(dead.payload.as_deref(), Some(record.payload.as_slice()), "bytes kept");
        assert_eq!(dead.key.as_deref(), Some(record.key.as_slice()));
        assert!(dead.header(h::ERROR).is_some_and(|e| e.contains(error)), "{:?}", dead.header(h::ERROR));
        assert_eq!(dead.header(h::ATTEMPTS).as_deref(), Some("1"), "no retry for poison");
        assert_eq!(dead.header(h::ORIGINAL_TOPIC).as_deref(), Some(topic.name()));
        assert_eq!(dead.header(h::ORIGINAL_OFFSET).as_deref(), Some(offset));
        assert_eq!(dead.header(h::CONSUMER).as_deref(), Some(name.as_str()));
        assert!(dead.header(h::FIRST_FAILURE_TIME).is_some() && dead.header(h::LAST_FAILURE_TIME).is_some());
    }
    assert_eq!(outcome(&name, "dead_lettered"), 2.0);
    assert_eq!(outcome(&name, "retried"), 0.0, "poison is never retried");

    running.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
