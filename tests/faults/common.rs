//! What the fault tests share: the cluster with a registry on it, posts to publish, the rewards
//! ledger, and the workspace's service binaries.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use fanout_events::{Category, PostPublished};
use fanout_testkit::{service::Stack, stack::Cluster};

/// How long any single wait in the suite may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(180);

/// The cluster, up (every node running), with a registry and publisher on it.
pub async fn cluster_stack() -> anyhow::Result<(Cluster, Stack)> {
    let cluster = Cluster::up().await.context("bringing the three-node cluster up")?;
    let login =
        cluster.kafka().properties().iter().find(|(k, _)| k == "sasl.mechanism").map(|(_, v)| v.as_str());
    eprintln!("cluster: {} ({})", cluster.kafka().bootstrap(), login.unwrap_or("PLAINTEXT"));
    let stack = Stack::start_on(cluster.kafka().clone()).await?;
    Ok((cluster, stack))
}

/// The `i`th JOB post: each earns its author the rewards service's beans, so the ledger holds
/// one row per event applied.
pub fn job_post(i: i64) -> PostPublished {
    PostPublished {
        post_id: i,
        user_id: i % 97,
        category: Category::Job,
        city: ["Chengdu", "Wuhan", "Osaka"][(i % 3) as usize].to_owned(),
        title: format!("job {i}"),
        published_at: 1_764_000_000_000 + i,
    }
}

/// A binary of the workspace built beside this test (`make faults` builds them first).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/faults-<hash>
    let dir =
        exe.parent().and_then(|deps| deps.parent()).context("the test binary has no target directory")?;
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p {name}`; `make faults` does)",
        path.display()
    );
    Ok(path)
}

/// Rows in `rewards_ledger`, distinct event ids among them, and the sum of the balances.
pub async fn ledger(pool: &sqlx::PgPool) -> anyhow::Result<(i64, i64, i64)> {
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM rewards_ledger")
            .fetch_one(pool)
            .await?;
    let balance: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(balance), 0)::BIGINT FROM rewards_balances")
        .fetch_one(pool)
        .await?;
    Ok((rows, distinct, balance))
}

/// Rows in `rewards_ledger`, or 0 while the table does not exist yet.
pub async fn ledger_rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM rewards_ledger").fetch_one(pool).await.unwrap_or(0)
}

/// Publishes `events` to `topic` in the background, `chunk` of them every `every` (a steady
/// upstream rather than one burst), each chunk's acknowledgements awaited; the task fails on the
/// first event not acknowledged.
pub fn publish_paced<E: fanout_core::Event + Send + Sync + 'static>(
    stack: &Stack,
    source: &str,
    topic: &str,
    events: Vec<E>,
    chunk: usize,
    every: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let publisher = fanout_producer::Publisher::new(stack.publisher_config(source))?;
    let to = fanout_producer::PublishOptions::new().topic(topic);
    Ok(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        for chunk in events.chunks(chunk) {
            ticks.tick().await;
            for result in publisher.publish_all(chunk, &to).await {
                result?;
            }
        }
        anyhow::Ok(())
    }))
}
