//! The outbox relay (`fanout outbox relay`) is killed with SIGKILL mid-batch and restarted:
//! every enqueued row is published, duplicates come only from the killed batch, and a consumer
//! deduplicating on `ce_id` applies each event once.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::ensure;
use fanout_core::headers;
use fanout_events::{Category, PostPublished};
use fanout_producer::{outbox::Outbox, PublishOptions};
use sqlx::{sqlite::SqliteConnectOptions, SqlitePool};

const ROWS: i64 = 3_000;
const BATCH: i64 = 100;

fn spawn_relay(db_url: &str, bootstrap: &str, registry: &str) -> anyhow::Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["outbox", "relay", "--db", db_url, "--batch-size", &BATCH.to_string()])
        .args(["--bootstrap", bootstrap, "--registry", registry])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?)
}

async fn sent(pool: &SqlitePool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM fanout_outbox WHERE sent_at_ms IS NOT NULL")
        .fetch_one(pool)
        .await?)
}

async fn wait_for(
    what: &str,
    deadline: Duration,
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + deadline;
    while !done().await? {
        ensure!(std::time::Instant::now() < until, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_batch_loses_nothing_and_duplicates_only_that_batch() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("outbox-kill", 3).await?;
    let registry = fanout_testkit::Registry::start(&kafka).await?;
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite:{}", dir.path().join("outbox.db").display());
    let pool =
        SqlitePool::connect_with(db_url.parse::<SqliteConnectOptions>()?.create_if_missing(true)).await?;
    Outbox::migrate_sqlite(&pool).await?;

    let outbox = Outbox::new("post-service");
    let mut enqueued = Vec::new();
    let to = PublishOptions::new().topic(topic.name());
    let mut tx = pool.begin().await?;
    for i in 0..ROWS {
        let event = PostPublished {
            post_id: i % 97,
            user_id: i % 31,
            category: Category::ALL[(i % 4) as usize],
            city: "Osaka".into(),
            title: format!("row {i}"),
            published_at: i,
        };
        enqueued.push(outbox.enqueue_with(&mut tx, &event, &to).await?.to_string());
    }
    tx.commit().await?;

    let mut relay = spawn_relay(&db_url, kafka.bootstrap(), registry.url())?;
    wait_for("the relay to mark a few batches sent", Duration::from_secs(60), async || {
        Ok(sent(&pool).await? >= 3 * BATCH)
    })
    .await?;
    relay.kill()?;
    relay.wait()?;
    let sent_at_kill = sent(&pool).await?;
    ensure!(sent_at_kill < ROWS, "the relay finished before it could be killed; enlarge ROWS");

    let mut relay = spawn_relay(&db_url, kafka.bootstrap(), registry.url())?;
    wait_for("the restarted relay to drain the outbox", Duration::from_secs(120), async || {
        Ok(sent(&pool).await? == ROWS)
    })
    .await?;
    relay.kill()?;
    relay.wait()?;

    let records = kafka.read_at_least(topic.name(), ROWS as usize, Duration::from_secs(60)).await?;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for record in &records {
        *copies.entry(record.header(headers::ID).unwrap_or_default()).or_default() += 1;
    }
    for id in &enqueued {
        ensure!(copies.contains_key(id.as_str()), "enqueued event {id} never published");
    }
    let duplicates = records.len() - copies.len();
    eprintln!(
        "{} records for {ROWS} rows: {duplicates} duplicates (killed after {sent_at_kill} marked sent)",
        records.len()
    );
    ensure!(duplicates as i64 <= BATCH, "{duplicates} duplicates: more than the one killed batch of {BATCH}");
    // What a consumer deduplicating on ce_id applies: each event exactly once.
    assert_eq!(copies.len(), enqueued.len());
    Ok(())
}
