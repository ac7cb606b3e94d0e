//! Fault 2: the leader of a partition (and of whatever else that node led: group coordinators,
//! the controller) is killed with `kill -9` and later restarted while the three consumer services
//! of the mission (rewards, pinning, stats) apply their effects. Every effect is applied once.

use std::time::Duration;

use anyhow::ensure;
use fanout_events::{Category, PostPublished};
use fanout_service::{ServiceConfig, Settings};
use fanout_testkit::{
    service::{Running, Stack},
    wait_until, Postgres, TestDatabase,
};
use sqlx::PgPool;

use crate::common::{cluster_stack, publish_paced, LIMIT};

const EVENTS: i64 = 20_000;

fn post(i: i64) -> PostPublished {
    PostPublished {
        post_id: i,
        user_id: i % 89,
        category: Category::ALL[(i % 4) as usize],
        city: ["Chengdu", "Wuhan", "Osaka"][(i % 3) as usize].to_owned(),
        title: format!("post {i}"),
        published_at: 1_764_000_000_000 + i,
    }
}

fn configure<S: Settings>(stack: &Stack, settings: S, db: &TestDatabase) -> ServiceConfig<S> {
    let mut config = ServiceConfig::new(settings);
    stack.configure(&mut config, &db.url());
    // A killed node's group members and partitions move within seconds.
    config.consumer.kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    config.consumer.kafka.properties.insert("heartbeat.interval.ms".into(), "1000".into());
    config
}

/// `fanout_consumed_total{outcome="ok"}` of each service.
async fn applied(running: &[Running]) -> anyhow::Result<Vec<f64>> {
    let mut counts = Vec::new();
    for service in running {
        counts.push(service.consumed("ok").await?);
    }
    Ok(counts)
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_and_restarted_under_three_services_applies_each_effect_once() -> anyhow::Result<()> {
    let (cluster, stack) = cluster_stack().await?;
    let topic = stack.topic("fault-consumers", 3).await?;
    let pg = Postgres::connect().await?;
    let dbs = [pg.database().await?, pg.database().await?, pg.database().await?];
    let t = topic.name().to_owned();
    let services = [
        fanout_rewards::build(configure(
            &stack,
            fanout_rewards::RewardsSettings { topic: t.clone(), ..Default::default() },
            &dbs[0],
        ))
        .await?,
        fanout_pinning::build(configure(
            &stack,
            fanout_pinning::PinningSettings { topic: t.clone(), ..Default::default() },
            &dbs[1],
        ))
        .await?,
        fanout_stats::build(configure(&stack, fanout_stats::StatsSettings { topic: t.clone() }, &dbs[2]))
            .await?,
    ];
    let mut pools = Vec::new();
    for db in &dbs {
        pools.push(PgPool::connect_with(db.options()).await?);
    }
    let running: Vec<Running> = services.into_iter().map(Running::start).collect();

    let events: Vec<PostPublished> = (0..EVENTS).map(post).collect();
    let jobs = events.iter().filter(|e| e.category == Category::Job).count() as i64;
    let housing = events.iter().filter(|e| e.category == Category::Housing).count() as i64;
    let publishing =
        publish_paced(&stack, "fault-consumers", topic.name(), events, 200, Duration::from_millis(100))?;

    let all = &running;
    wait_until(LIMIT, "every service applying events", || {
        let counts = applied(all);
        async move { Ok(counts.await?.iter().all(|c| *c >= (EVENTS / 10) as f64)) }
    })
    .await?;
    let leader = cluster.leader(topic.name(), 0).await?;
    cluster.kill(leader).await?;
    let at_kill = applied(&running).await?;
    wait_until(LIMIT, "every service applying 1,000 more events with a node down", || {
        let counts = applied(all);
        let at_kill = at_kill.clone();
        async move {
            let counts = counts.await?;
            Ok(counts.iter().zip(&at_kill).all(|(now, then)| *now >= (then + 1_000.0).min(EVENTS as f64)))
        }
    })
    .await?;
    cluster.restart_killed().await?;
    publishing.await??;

    let complete = || {
        let pools = pools.clone();
        async move {
            Ok(scalar(&pools[0], "SELECT COUNT(*) FROM rewards_ledger").await >= jobs
                && scalar(&pools[1], "SELECT COUNT(*) FROM pinning_grants").await >= housing
                && scalar(&pools[2], "SELECT COALESCE(SUM(posts), 0)::BIGINT FROM stats_by_category").await
                    >= EVENTS)
        }
    };
    wait_until(LIMIT, "every service to apply every event", complete).await?;
    let mut names = Vec::new();
    for service in running {
        names.push(service.name.clone());
        service.stop().await?;
    }

    let ledger = scalar(&pools[0], "SELECT COUNT(*) FROM rewards_ledger").await;
    let balances = scalar(&pools[0], "SELECT COALESCE(SUM(balance), 0)::BIGINT FROM rewards_balances").await;
    let grants = scalar(&pools[1], "SELECT COUNT(*) FROM pinning_grants").await;
    let credits = scalar(&pools[1], "SELECT COALESCE(SUM(credits), 0)::BIGINT FROM pinning_credits").await;
    let by_category =
        scalar(&pools[2], "SELECT COALESCE(SUM(posts), 0)::BIGINT FROM stats_by_category").await;
    let by_city = scalar(&pools[2], "SELECT COALESCE(SUM(posts), 0)::BIGINT FROM stats_by_city").await;
    eprintln!(
        "verdict: fault 2: killed node {leader} (leader of partition 0) with {at_kill:?} applied, restarted it; \
         {EVENTS} events: rewards ledger {ledger}/{jobs} (balances {balances}), pinning grants {grants}/{housing} \
         (credits {credits}), stats {by_category}/{EVENTS} by category and {by_city}/{EVENTS} by city"
    );
    ensure!(
        ledger == jobs && balances == jobs * 10,
        "rewards: {ledger} rows, {balances} beans for {jobs} JOB posts"
    );
    ensure!(
        grants == housing && credits == housing * 2,
        "pinning: {grants} grants, {credits} credits for {housing}"
    );
    ensure!(
        by_category == EVENTS && by_city == EVENTS,
        "stats: {by_category} / {by_city} posts for {EVENTS}"
    );
    for pool in &pools {
        pool.close().await;
    }
    for name in &names {
        stack.delete_derived_topics(topic.name(), name).await;
    }
    stack.stop().await
}
