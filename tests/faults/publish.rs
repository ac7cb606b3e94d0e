//! Fault 1: the leader of a partition is killed (`kill -9`) while the SDK publishes, and while
//! the outbox relay drains a backlog. Every event acknowledged is in the topic, exactly once.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use anyhow::ensure;
use fanout_core::headers;
use fanout_producer::{
    outbox::{relay, Outbox, RelayConfig},
    PublishOptions, Publisher,
};
use fanout_testkit::{wait_until, FetchedRecord};

use crate::common::{cluster_stack, job_post, LIMIT};

/// Copies of each `ce_id` among `records`.
fn copies(records: &[FetchedRecord]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for record in records {
        *seen.entry(record.header(headers::ID).unwrap_or_default().to_owned()).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_while_publishing_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let (cluster, stack) = cluster_stack().await?;
    let topic = stack.topic("fault-publish", 3).await?;
    let mut config = stack.publisher_config("fault-publish");
    // Long enough to ride out a leader election; the run shows it is not needed.
    config.producer.delivery_timeout_ms = 120_000;
    let publisher = Publisher::new(config)?;
    let to = PublishOptions::new().topic(topic.name());
    publisher.publish_with(&job_post(0), &to).await?;

    let (tasks, per_task) = (8_i64, 1_500_i64);
    let acked = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..tasks)
        .map(|task| {
            let (publisher, to, acked) = (publisher.clone(), to.clone(), acked.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for seq in 0..per_task {
                    let result = publisher.publish_with(&job_post(1 + task * per_task + seq), &to).await;
                    if result.is_ok() {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    outcomes.push(result.map(|d| d.event_id.to_string()).map_err(|e| e.to_string()));
                }
                outcomes
            })
        })
        .collect();

    let total = (tasks * per_task) as usize;
    wait_until(LIMIT, "a fifth of the events acknowledged", || {
        let acked = acked.clone();
        async move { Ok(acked.load(Ordering::Relaxed) >= total / 5) }
    })
    .await?;
    let leader = cluster.leader(topic.name(), 0).await?;
    cluster.kill(leader).await?;
    let acked_at_kill = acked.load(Ordering::Relaxed);

    let mut acknowledged = vec![];
    let mut failed = vec![];
    for task in publishers {
        for outcome in task.await? {
            match outcome {
                Ok(id) => acknowledged.push(id),
                Err(e) => failed.push(e),
            }
        }
    }
    let new_leader = cluster.leader(topic.name(), 0).await?;
    cluster.restart_killed().await?;

    let records = stack.kafka.read_at_least(topic.name(), acknowledged.len() + 1, LIMIT).await?;
    let seen = copies(&records);
    let duplicated = seen.values().filter(|n| **n > 1).count();
    let lost = acknowledged.iter().filter(|id| !seen.contains_key(id.as_str())).count();
    eprintln!(
        "verdict: fault 1 (SDK): killed node {leader} (leader of partition 0) after {acked_at_kill} acks; \
         partition 0 then led by node {new_leader}; {} of {total} acknowledged, {} failed, {} records in the \
         topic, {lost} acknowledged lost, {duplicated} duplicated",
        acknowledged.len(),
        failed.len(),
        records.len(),
    );
    ensure!(new_leader != leader, "partition 0 is still led by the killed node {leader}");
    ensure!(lost == 0, "{lost} acknowledged events are not in the topic");
    ensure!(duplicated == 0, "{duplicated} events are in the topic more than once");
    // Two of three replicas stay in sync, so nothing needs to fail at all.
    ensure!(
        failed.is_empty(),
        "{} publishes failed while one node was down: {:?}",
        failed.len(),
        failed.first()
    );
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_while_the_outbox_relay_drains_publishes_each_row_once() -> anyhow::Result<()> {
    let (cluster, stack) = cluster_stack().await?;
    let topic = stack.topic("fault-outbox", 3).await?;
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite:{}", dir.path().join("outbox.db").display());
    let options: sqlx::sqlite::SqliteConnectOptions = db_url.parse()?;
    let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true)).await?;
    Outbox::migrate_sqlite(&pool).await?;
    let rows = 20_000_i64;
    let outbox = Outbox::new("post-service");
    let to = PublishOptions::new().topic(topic.name());
    let mut enqueued = Vec::new();
    let mut tx = pool.begin().await?;
    for i in 0..rows {
        enqueued.push(outbox.enqueue_with(&mut tx, &job_post(i), &to).await?.to_string());
    }
    tx.commit().await?;

    let mut config = stack.publisher_config("fanout-outbox-relay");
    config.producer.delivery_timeout_ms = 120_000;
    let publisher = Publisher::new(config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut relay_config = RelayConfig::new(&db_url);
    relay_config.batch_size = 200;
    let relaying = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            relay(relay_config, &publisher, async move {
                let _ = stopped.await;
            })
            .await
        }
    });
    let sent = |pool: sqlx::SqlitePool| async move {
        anyhow::Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM fanout_outbox WHERE sent_at_ms IS NOT NULL")
                .fetch_one(&pool)
                .await?,
        )
    };
    wait_until(LIMIT, "the relay to send a tenth of the rows", || {
        let pool = pool.clone();
        async move { Ok(sent(pool).await? >= rows / 10) }
    })
    .await?;
    let leader = cluster.leader(topic.name(), 0).await?;
    cluster.kill(leader).await?;
    let sent_at_kill = sent(pool.clone()).await?;
    ensure!(sent_at_kill < rows, "the relay finished before the kill; enqueue more rows");
    wait_until(LIMIT, "the relay to send every row with one node down", || {
        let pool = pool.clone();
        async move { Ok(sent(pool).await? == rows) }
    })
    .await?;
    let _ = stop.send(());
    let stats = relaying.await??;
    cluster.restart_killed().await?;

    let records = stack.kafka.read_at_least(topic.name(), rows as usize, LIMIT).await?;
    let seen = copies(&records);
    let lost = enqueued.iter().filter(|id| !seen.contains_key(id.as_str())).count();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    eprintln!(
        "verdict: fault 1 (outbox): killed node {leader} after {sent_at_kill} of {rows} rows sent; relay \
         published {}; {} records in the topic, {lost} rows lost, {duplicated} duplicated",
        stats.published,
        records.len()
    );
    ensure!(lost == 0, "{lost} enqueued rows never reached the topic");
    ensure!(duplicated == 0, "{duplicated} rows are in the topic more than once");
    stack.stop().await
}
