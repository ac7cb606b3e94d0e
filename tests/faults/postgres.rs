//! Fault 4: PostgreSQL (the consumers' store) is restarted in the middle of a run. The consumer
//! stalls, `/readyz` turns 503, then 200 again once the database is back; nothing is lost and
//! nothing is applied twice.

use anyhow::ensure;
use fanout_service::ServiceConfig;
use fanout_testkit::{
    service::{get_text, Running},
    stack::stack,
    wait_until, Postgres,
};

use crate::common::{cluster_stack, job_post, ledger, ledger_rows, publish_paced, LIMIT};

const EVENTS: i64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_mid_run_stalls_the_consumer_and_loses_nothing() -> anyhow::Result<()> {
    let (_cluster, stack_) = cluster_stack().await?;
    let topic = stack_.topic("fault-postgres", 3).await?;
    let db = Postgres::connect().await?.database().await?;
    let pool = sqlx::PgPool::connect_with(db.options()).await?;
    let mut config = ServiceConfig::new(fanout_rewards::RewardsSettings {
        topic: topic.name().to_owned(),
        ..Default::default()
    });
    stack_.configure(&mut config, &db.url());
    let service = Running::start(fanout_rewards::build(config).await?);
    let readyz = service.url("/readyz");
    let ready = |want: bool| {
        let readyz = readyz.clone();
        move || {
            let readyz = readyz.clone();
            async move { Ok(matches!(get_text(&readyz).await, Ok((200, _))) == want) }
        }
    };
    wait_until(LIMIT, "/readyz 200 at start", ready(true)).await?;

    let publishing = publish_paced(
        &stack_,
        "fault-postgres",
        topic.name(),
        (0..EVENTS).map(job_post).collect(),
        200,
        std::time::Duration::from_millis(100),
    )?;
    wait_until(LIMIT, "a fifth of the events credited", || {
        let pool = pool.clone();
        async move { Ok(ledger_rows(&pool).await >= EVENTS / 5) }
    })
    .await?;

    pool.close().await;
    tokio::task::spawn_blocking(|| stack(&["down", "postgres"])).await??;
    let down = std::time::Instant::now();
    let red = wait_until(LIMIT, "/readyz to turn 503 with PostgreSQL down", ready(false)).await;
    let red_after = down.elapsed();
    // Bring it back whatever the verdict, so no later test finds the database gone.
    tokio::task::spawn_blocking(|| stack(&["up", "postgres"])).await??;
    let up = std::time::Instant::now();
    red?;
    wait_until(LIMIT, "/readyz 200 again after PostgreSQL restarted", ready(true)).await?;
    let green_after = up.elapsed();
    publishing.await??;

    let pool = sqlx::PgPool::connect_with(db.options()).await?;
    wait_until(LIMIT, "every event credited after the restart", || {
        let pool = pool.clone();
        async move { Ok(ledger_rows(&pool).await >= EVENTS) }
    })
    .await?;
    let name = service.name.clone();
    let duplicates = service.consumed("duplicate").await?;
    service.stop().await?;
    let (rows, distinct, balance) = ledger(&pool).await?;
    eprintln!(
        "verdict: fault 4: PostgreSQL stopped after a fifth of {EVENTS} events; /readyz 503 after {red_after:?}, \
         200 {green_after:?} after the restart; ledger {rows} rows, {distinct} distinct, balances {balance}; \
         {duplicates} duplicates skipped"
    );
    ensure!(rows == EVENTS && distinct == EVENTS, "ledger {rows} rows ({distinct} distinct) for {EVENTS}");
    ensure!(balance == EVENTS * 10, "balances {balance}, not {}", EVENTS * 10);
    pool.close().await;
    stack_.delete_derived_topics(topic.name(), &name).await;
    stack_.stop().await
}
