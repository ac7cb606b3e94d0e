//! The consumer's retry path through the scheduler (`[retry] scheduler = true`), against the real
//! broker: a consumer and a scheduler run in this process; an event whose first attempt fails is
//! written to the schedule topic, delivered to the consumer's retry topic 2 s later and applied
//! then; a later event of its key waits behind it (through the scheduler too), while an event of
//! another key is applied at once.
//!
//! Checks return errors rather than panic, so the topics and groups are deleted even when one
//! fails. It lives with the scheduler's tests because it needs a scheduler running: the consumer crate
//! sits below the scheduler (scheduler → service → consumer) and does not depend on it.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{ensure, Context};
use common::{committed, post, InProcess};
use fanout_consumer::{
    async_trait, dlq_headers, sqlx, Consumer, EventMeta, Handler, HandlerError, RegistryDecoder,
};
use fanout_core::{clock::now_ms, schedule, topics};
use fanout_events::PostPublished;
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use fanout_testkit::{wait_until, Kafka, Registry};
use sqlx::Row;
use tokio::sync::oneshot;

/// The key whose first event fails its first attempt.
const FLAKY: i64 = 1;
/// Another key, on the same partition.
const OTHER: i64 = 2;
/// The retry delay under test.
const DELAY_MS: i64 = 2_000;

/// Fails the first attempt of event (FLAKY, 0), remembering when; applies everything else as a
/// row with the time it was applied.
#[derive(Debug, Clone, Default)]
struct FailsOnce {
    failed_at_ms: Arc<Mutex<Option<i64>>>,
}

#[async_trait]
impl Handler for FailsOnce {
    type Event = PostPublished;

    async fn handle(
        &self,
        event: PostPublished,
        meta: &EventMeta,
        tx: &mut sqlx::AnyConnection,
    ) -> Result<(), HandlerError> {
        if event.post_id == FLAKY && event.user_id == 0 && meta.attempt == 1 {
            if let Ok(mut failed) = self.failed_at_ms.lock() {
                failed.get_or_insert(now_ms());
            }
            return Err(HandlerError::transient("flaky on its first attempt"));
        }
        sqlx::query("INSERT INTO effects (post_id, seq, attempt, applied_at) VALUES ($1, $2, $3, $4)")
            .bind(event.post_id)
            .bind(event.user_id)
            .bind(i64::from(meta.attempt))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// One applied event: (post, seq) → (attempt, applied at).
#[derive(Debug, Clone, Copy)]
struct Applied {
    attempt: i64,
    at_ms: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_retry_with_a_2s_delay_goes_through_the_scheduler_and_its_key_waits_behind_it(
) -> anyhow::Result<()> {
    let kafka = Kafka::connect().await?;
    let scheduler = InProcess::start(&kafka, "sched-retry").await?;
    // One partition: the other key sits right behind the held-back one and must still flow.
    let topic = kafka.topic("sched-retry-main", 1).await?;
    let registry = Registry::start(&kafka).await?;
    let (_dir, url) = fanout_testkit::service::sqlite("sched-retry")?;

    let mut config = fanout_testkit::consumer_config("sched-retry", &url);
    config.retry.attempts = 1;
    config.retry.delays_ms = vec![DELAY_MS as u64];
    config.retry.scheduler = true;
    config.retry.schedule_topic = scheduler.config.topic.clone();
    let name = config.name.clone();
    let handler = FailsOnce::default();
    let consumer = Consumer::builder(config)
        .decoder(RegistryDecoder::from_settings(&registry.settings())?)
        .handle_topic(topic.name(), handler.clone())
        .build()
        .await?;
    sqlx::query(
        "CREATE TABLE effects (post_id BIGINT NOT NULL, seq BIGINT NOT NULL, attempt BIGINT NOT NULL, \
         applied_at BIGINT NOT NULL)",
    )
    .execute(consumer.pool())
    .await?;
    let pool = consumer.pool().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));

    let publisher = Publisher::new(PublisherConfig {
        kafka: fanout_config::KafkaSettings { bootstrap: kafka.bootstrap().to_owned(), ..Default::default() },
        registry: registry.settings(),
        ..PublisherConfig::new("sched-retry-test")
    })?;
    let to = PublishOptions::new().topic(topic.name());
    let mut ids = Vec::new();
    for (post_id, seq) in [(FLAKY, 0), (FLAKY, 1), (OTHER, 0)] {
        ids.push(publisher.publish_with(&post(post_id, seq), &to).await?.event_id.to_string());
    }
    publisher.close(Duration::from_secs(10)).await?;
    let (a_id, b_id) = (ids[0].clone(), ids[1].clone());

    let outcome = async {
        wait_until(Duration::from_secs(60), "all three events applied", || {
            let pool = pool.clone();
            async move {
                let n: i64 =
                    sqlx::query("SELECT COUNT(*) FROM effects").fetch_one(&pool).await?.try_get(0)?;
                Ok(n == 3)
            }
        })
        .await?;
        let rows =
            sqlx::query("SELECT post_id, seq, attempt, applied_at FROM effects").fetch_all(&pool).await?;
        let mut applied = std::collections::HashMap::new();
        for row in rows {
            let key: (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            applied.insert(key, Applied { attempt: row.try_get(2)?, at_ms: row.try_get(3)? });
        }
        let get = |key: (i64, i64)| applied.get(&key).copied().with_context(|| format!("{key:?} applied"));
        let (a, b, c) = (get((FLAKY, 0))?, get((FLAKY, 1))?, get((OTHER, 0))?);
        let failed_at =
            handler.failed_at_ms.lock().ok().and_then(|f| *f).context("the first attempt of A failed")?;

        // The other key is not held up: applied before A could even be due.
        ensure!(c.at_ms < failed_at + DELAY_MS, "C applied {} ms after A failed", c.at_ms - failed_at);
        // A waited its whole delay, then succeeded on its second attempt.
        ensure!(a.attempt == 2, "A applied on attempt {}, not its second", a.attempt);
        ensure!(
            a.at_ms >= failed_at + DELAY_MS,
            "A applied {} ms after its failure, before its {DELAY_MS} ms delay",
            a.at_ms - failed_at
        );
        // B, same key, waited behind A.
        ensure!(b.attempt == 1, "B never failed, yet was applied on attempt {}", b.attempt);
        ensure!(b.at_ms >= a.at_ms, "B applied {} ms before A", a.at_ms - b.at_ms);

        // Both came to the retry topic from the scheduler (`fanout_scheduled_for`), A first, B
        // marked as held back; A was due its delay after its failure.
        let retry = topics::retry(topic.name(), &name);
        let delivered = committed(&kafka, &retry).await?;
        let find = |id: &str| {
            delivered
                .iter()
                .find(|r| r.header("ce_id") == Some(id))
                .with_context(|| format!("{id} in {retry}"))
        };
        let (a_retry, b_retry) = (find(&a_id)?, find(&b_id)?);
        ensure!(delivered.len() == 2, "only A and B went through the retry path: {delivered:?}");
        let scheduled_for =
            a_retry.header_i64(schedule::SCHEDULED_FOR).context("A was delivered by the scheduler")?;
        ensure!(
            scheduled_for >= failed_at + DELAY_MS,
            "A scheduled for {scheduled_for}, failed at {failed_at}"
        );
        ensure!(b_retry.header_i64(schedule::SCHEDULED_FOR).is_some(), "B was delivered by the scheduler");
        ensure!(b_retry.header(dlq_headers::HELD_BACK) == Some("true"), "B was held back: {b_retry:?}");
        ensure!(a_retry.partition == b_retry.partition, "one key, one retry partition");
        ensure!(a_retry.offset < b_retry.offset, "A reached the retry topic before B");
        ensure!(a_retry.header(dlq_headers::ATTEMPTS) == Some("1"), "A's attempt carried: {a_retry:?}");

        // The schedule topic holds their entries, addressed to the retry topic (then tombstones).
        let entries = committed(&kafka, &scheduler.config.topic).await?;
        let targets: Vec<(&str, &str)> = entries
            .iter()
            .filter_map(|r| Some((r.header("ce_id")?, r.header(schedule::TARGET_TOPIC)?)))
            .collect();
        let expected = [(a_id.as_str(), retry.as_str()), (b_id.as_str(), retry.as_str())];
        ensure!(targets == expected, "schedule entries {targets:?}, expected {expected:?}");
        anyhow::Ok(())
    }
    .await;

    let _ = stop.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(60), running).await;
    kafka.delete_consumer(topic.name(), &name).await;
    registry.stop().await?;
    scheduler.stop(&kafka).await?;
    outcome?;
    stopped???;
    Ok(())
}
