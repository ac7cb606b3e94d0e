//! Scenario 1, produce: the SDK publishing typed events (Avro through the cached registry
//! encoder, CloudEvents headers, idempotent `acks=all`, every delivery confirmed) against a bare
//! rust-rdkafka `BaseProducer` sending pre-encoded payloads of the same size with the same
//! librdkafka settings.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use fanout_core::{headers, Event};
use fanout_events::PostPublished;
use fanout_producer::{PublishOptions, Publisher};
use futures::StreamExt;
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext},
    ClientContext,
};

use super::{
    env::{post, title_for, Env},
    report::{Comparison, Report, Samples, Target, Unit},
    Plan,
};

/// Events per `publish_all` call: large enough to amortise the one wake-up per batch, small
/// enough that a batch is a few milliseconds of work.
const CHUNK: usize = 1_000;
/// `publish_all` calls in flight at once, so one batch's acknowledgement wait overlaps the next
/// batches' sends (a single call at a time would idle for linger plus a round trip per batch).
const WINDOW: usize = 16;
/// `publish` futures in flight at once in the one-future-per-event variant.
const EVENT_WINDOW: usize = 16_000;
/// Distinct events cycled through; published events need not be distinct.
const POOL: usize = 10 * CHUNK;

/// Counts delivery reports, which is all the raw peer does with them.
#[derive(Default)]
struct Counting {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the scenario for 100 B and 1 KB events.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let header_bytes = cloudevents_header_bytes();
    report.note(format!(
        "produce: both sides use the SDK's librdkafka settings (acks=all, enable.idempotence, linger.ms=5, \
         compression lz4, batch.size 1000000); the raw BaseProducer sends a pre-encoded key and payload of \
         the same size and no headers, the SDK adds {header_bytes} B of CloudEvents headers per record"
    ));
    for (size, label, events, target) in
        [(100, "100 B", plan.produce_events_100b, 0.70), (1024, "1 KB", plan.produce_events_1kb, 0.85)]
    {
        let topic = env.topic("produce", 3).await?;
        let title = title_for(size)?;
        let pool: Vec<PostPublished> = (0..POOL as u64).map(|seq| post(seq, title)).collect();
        let publisher = Publisher::new(env.publisher_config())?;
        // The raw peer sends what the SDK's encoder produces, encoded once up front.
        let encoder = env.serde()?.encoder::<PostPublished>(&topic).await?;
        let records: Arc<Vec<(Vec<u8>, Vec<u8>)>> = Arc::new(
            pool.iter()
                .map(|event| Ok((event.key(), encoder.encode(event)?)))
                .collect::<anyhow::Result<_>>()?,
        );
        let raw: Arc<BaseProducer<Counting>> =
            Arc::new(env.producer_config()?.create_with_context(Counting::default())?);

        // Untimed warm-up: connections, producer ids, metadata and the schema id on both sides.
        raw_send(raw.clone(), topic.clone(), records.clone(), 2 * CHUNK, false).await?;
        publish_batches(&publisher, &topic, &pool, 2 * CHUNK).await?;

        let (mut raw_rates, mut headed_rates) = (Samples::new(), Samples::new());
        let (mut batch_rates, mut each_rates) = (Samples::new(), Samples::new());
        for rep in 0..plan.reps {
            // Who goes first alternates, so neither side always inherits the other's broker
            // backlog (log flushes, compression of the previous run's batches).
            if rep % 2 == 1 {
                batch_rates.push(publish_batches(&publisher, &topic, &pool, events).await?);
                each_rates.push(publish_each(&publisher, &topic, &pool, events).await?);
            }
            raw_rates.push(raw_send(raw.clone(), topic.clone(), records.clone(), events, false).await?);
            headed_rates.push(raw_send(raw.clone(), topic.clone(), records.clone(), events, true).await?);
            if rep % 2 == 0 {
                batch_rates.push(publish_batches(&publisher, &topic, &pool, events).await?);
                each_rates.push(publish_each(&publisher, &topic, &pool, events).await?);
            }
        }
        publisher.close(Duration::from_secs(30)).await?;
        let raw_name = "BaseProducer".to_owned();
        report.compare(Comparison {
            scenario: "1 produce".into(),
            metric: format!("{label}, events/s"),
            fanout: (format!("publish_all ({CHUNK}×{WINDOW})"), batch_rates),
            peer: (raw_name.clone(), raw_rates.clone()),
            unit: Unit::PerSecond,
            target: Some(Target::AtLeast(target)),
            floor: None,
        });
        report.compare(Comparison {
            scenario: "1 produce".into(),
            metric: format!("{label}, events/s"),
            fanout: ("publish, future/event".into(), each_rates),
            peer: (raw_name, raw_rates.clone()),
            unit: Unit::PerSecond,
            target: None,
            floor: None,
        });
        // Diagnostic: how much of the gap is the header bytes themselves rather than the SDK.
        report.compare(Comparison {
            scenario: "1 produce".into(),
            metric: format!("{label}, events/s"),
            fanout: ("BaseProducer + headers".into(), headed_rates),
            peer: ("BaseProducer".into(), raw_rates),
            unit: Unit::PerSecond,
            target: None,
            floor: None,
        });
    }
    Ok(())
}

/// Bytes of the CloudEvents headers the SDK adds to every record (names and values).
fn cloudevents_header_bytes() -> usize {
    RAW_HEADERS.iter().map(|(name, value)| name.len() + value.len()).sum()
}

/// Header values of the SDK's sizes, for the raw peer's with-headers variant.
const RAW_HEADERS: [(&str, &str); 7] = [
    (headers::SPECVERSION, headers::SPECVERSION_VALUE),
    (headers::ID, "01936f6e-2a4b-7c3d-8e9f-0a1b2c3d4e5f"),
    (headers::TYPE, "post.published"),
    (headers::SOURCE, "fanout-bench"),
    (headers::TIME, "2025-01-01T00:00:00.000Z"),
    (headers::CONTENT_TYPE, headers::CONTENT_TYPE_AVRO),
    (headers::TRACEPARENT, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
];

/// The raw peer: `events` sends on one thread, serving delivery reports every 64 sends, then
/// until every report is in; the rate counts only confirmed deliveries. `with_headers` adds headers of the SDK's
/// names and sizes to every record, built per record as a raw producer would.
async fn raw_send(
    producer: Arc<BaseProducer<Counting>>,
    topic: String,
    records: Arc<Vec<(Vec<u8>, Vec<u8>)>>,
    events: usize,
    with_headers: bool,
) -> anyhow::Result<f64> {
    tokio::task::spawn_blocking(move || {
        let context = producer.context();
        let ok_before = context.ok.load(Ordering::Relaxed);
        let failed_before = context.failed.load(Ordering::Relaxed);
        let start = Instant::now();
        for i in 0..events {
            let (key, payload) = &records[i % records.len()];
            let mut record = BaseRecord::to(&topic).key(key).payload(payload);
            if with_headers {
                let headers =
                    RAW_HEADERS.iter().fold(OwnedHeaders::new_with_capacity(7), |h, (key, value)| {
                        h.insert(Header { key, value: Some(*value) })
                    });
                record = record.headers(headers);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((error, _)) => return Err(error).context("raw send"),
                }
            }
            if i % 64 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        // Wait for the delivery reports rather than `flush`: rust-rdkafka 0.39's flush polls in
        // 100 ms slices and keeps polling to the end of a slice after the last report, which
        // would charge the raw peer up to 100 ms per run that it does not owe.
        let deadline = Instant::now() + Duration::from_secs(60);
        let reported = || {
            context.ok.load(Ordering::Relaxed) - ok_before + context.failed.load(Ordering::Relaxed)
                - failed_before
        };
        while reported() < events as u64 {
            if Instant::now() > deadline {
                bail!("raw producer: only {} of {events} delivery reports within 60 s", reported());
            }
            producer.poll(Duration::from_millis(1));
        }
        let elapsed = start.elapsed();
        let ok = context.ok.load(Ordering::Relaxed) - ok_before;
        let failed = context.failed.load(Ordering::Relaxed) - failed_before;
        if ok != events as u64 || failed > 0 {
            bail!("raw producer: {ok} of {events} delivered, {failed} failed");
        }
        Ok(events as f64 / elapsed.as_secs_f64())
    })
    .await?
}

/// The SDK, batch API: `publish_all` calls of [`CHUNK`] events, [`WINDOW`] in flight; each call
/// returns when all its events are acknowledged.
async fn publish_batches(
    publisher: &Publisher,
    topic: &str,
    pool: &[PostPublished],
    events: usize,
) -> anyhow::Result<f64> {
    let to = PublishOptions::new().topic(topic);
    let start = Instant::now();
    let chunks = (0..events).step_by(CHUNK).map(|first| {
        let offset = first % pool.len();
        &pool[offset..offset + CHUNK.min(events - first)]
    });
    let mut calls =
        futures::stream::iter(chunks).map(|chunk| publisher.publish_all(chunk, &to)).buffer_unordered(WINDOW);
    let mut delivered = 0usize;
    while let Some(results) = calls.next().await {
        for result in results {
            result.context("publish_all")?;
            delivered += 1;
        }
    }
    if delivered != events {
        bail!("publish_all: {delivered} of {events} delivered");
    }
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

/// The SDK, one `publish` future per event, [`EVENT_WINDOW`] in flight.
async fn publish_each(
    publisher: &Publisher,
    topic: &str,
    pool: &[PostPublished],
    events: usize,
) -> anyhow::Result<f64> {
    let to = PublishOptions::new().topic(topic);
    let start = Instant::now();
    let mut sends = futures::stream::iter(0..events)
        .map(|i| publisher.publish_with(&pool[i % pool.len()], &to))
        .buffer_unordered(EVENT_WINDOW);
    let mut delivered = 0usize;
    while let Some(result) = sends.next().await {
        result.context("publish")?;
        delivered += 1;
    }
    if delivered != events {
        bail!("publish: {delivered} of {events} delivered");
    }
    Ok(events as f64 / start.elapsed().as_secs_f64())
}
