//! The demo's upstream: publishes the workload through the SDK at a fixed rate, re-sends some
//! records unchanged (same `ce_id`) and slips in one poison record.

use std::time::Duration;

use anyhow::Context;
use fanout_core::headers;
use fanout_events::PostPublished;
use fanout_producer::{OwnedRecord, PublishOptions, Publisher, PublisherConfig};
use indicatif::{MultiProgress, ProgressBar};
use tokio::task::JoinSet;

use super::workload::{Step, Workload};

/// What reached Kafka.
#[derive(Debug)]
pub struct Published {
    /// Records acknowledged, resends and poison included.
    pub records: usize,
    /// Resent duplicates.
    pub resends: usize,
    /// Poison records.
    pub poison: usize,
}

/// Records per send batch: the rate is kept by sending a slice every tick.
const TICK: Duration = Duration::from_millis(20);

pub async fn publish(
    bootstrap: &str,
    registry: &str,
    topic: &str,
    workload: &Workload,
    rate: u32,
    poison_count: usize,
    progress: &MultiProgress,
) -> anyhow::Result<Published> {
    let mut config = PublisherConfig::new("post-service (fanout demo)");
    config.kafka.bootstrap = bootstrap.to_owned();
    config.registry.urls = vec![registry.to_owned()];
    let publisher = Publisher::new(config).context("creating the publisher")?;
    let to = PublishOptions::new().topic(topic);

    let total = workload.steps.len() + poison_count;
    let bar = progress.add(ProgressBar::new(total as u64));
    bar.set_style(super::bar_style());
    bar.set_prefix(format!("{:<9}", "publish"));
    bar.set_message(if rate == 0 {
        "as fast as acknowledged".to_owned()
    } else {
        format!("{rate} events/s")
    });

    let mut records: Vec<Option<OwnedRecord>> = vec![None; workload.events.len()];
    let per_tick =
        if rate == 0 { 1_000 } else { (rate as f64 * TICK.as_secs_f64()).ceil().max(1.0) as usize };
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = JoinSet::new();
    // Poison records spread evenly through the stream, so consumers must keep going after each.
    let poison_at: Vec<usize> =
        (1..=poison_count).map(|i| i * workload.steps.len() / (poison_count + 1)).collect();
    let mut index = 0;
    while index < workload.steps.len() {
        if rate > 0 {
            ticker.tick().await;
        }
        let end = (index + per_tick).min(workload.steps.len());
        let mut batch = Vec::with_capacity(end - index + 1);
        for step in &workload.steps[index..end] {
            let record = match *step {
                Step::Publish(i) => {
                    let event: &PostPublished = &workload.events[i];
                    let record = publisher.encode(event, &to).await.context("encoding an event")?;
                    records[i] = Some(record.clone());
                    record
                }
                Step::Resend(i) => records[i].clone().context("a resend before its original")?,
            };
            batch.push(record);
        }
        for _ in poison_at.iter().filter(|at| (index..end).contains(at)) {
            batch.push(poison(topic));
        }
        index = end;
        let publisher = publisher.clone();
        let bar = bar.clone();
        sends.spawn(async move {
            let count = batch.len();
            let results = publisher.send_records(&batch).await;
            bar.inc(count as u64);
            results.into_iter().collect::<Result<Vec<_>, _>>().map(|d| d.len())
        });
        if rate == 0 {
            // Unlimited: keep a bounded number of batches in flight, so memory stays flat.
            while sends.len() > 8 {
                if let Some(done) = sends.join_next().await {
                    done??;
                }
            }
        }
    }
    let mut acknowledged = 0;
    while let Some(done) = sends.join_next().await {
        acknowledged += done.context("a publishing task failed")??;
    }
    publisher.flush(Duration::from_secs(30)).await?;
    bar.finish_with_message("acknowledged by Kafka");
    Ok(Published { records: acknowledged, resends: workload.resends(), poison: poison_count })
}

/// A record no consumer can decode: JSON where the Confluent wire format is expected. Each
/// consumer must dead-letter it and keep going.
fn poison(topic: &str) -> OwnedRecord {
    let event_id = uuid::Uuid::now_v7();
    OwnedRecord {
        topic: topic.to_owned(),
        key: Some(b"poison".to_vec()),
        payload: Some(br#"{"post_id": "not avro at all"}"#.to_vec()),
        headers: vec![
            (headers::SPECVERSION.to_owned(), Some(headers::SPECVERSION_VALUE.as_bytes().to_vec())),
            (headers::ID.to_owned(), Some(event_id.to_string().into_bytes())),
            (headers::TYPE.to_owned(), Some(b"post.published".to_vec())),
            (headers::SOURCE.to_owned(), Some(b"a broken upstream".to_vec())),
        ],
    }
}
