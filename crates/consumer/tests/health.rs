//! `/healthz` and `/readyz`: up while the process is; ready only while the instance owns
//! partitions of its source topics and its store answers (busy is not unreachable).

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::{Kafka, Postgres};
use sqlx::{postgres::PgConnectOptions, ConnectOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_needs_source_partitions_and_a_reachable_store() -> TestResult {
    let kafka = Kafka::connect().await?;
    // One partition, and one of the retry topic: two instances own one each, a third none.
    let topic = kafka.topic("consumer-readyz", 1).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let config = config(&db.url());
    let first = start(config.clone(), topic.name(), Recorder::default()).await?;
    wait_ready(&first, Duration::from_secs(30)).await?;
    assert_eq!(partitions(&first).await?, (1, 1));
    let second = start(config.clone(), topic.name(), Recorder::default()).await?;
    let name = second.name.clone();
    wait_until(Duration::from_secs(30), "the two partitions shared", || async {
        Ok(assigned(&first).await? == 1 && assigned(&second).await? == 1)
    })
    .await?;
    // The instance owning only the retry topic's partition has nothing of its own to read.
    let (source_owner, retry_owner) =
        if partitions(&first).await?.0 == 1 { (first, second) } else { (second, first) };
    assert_eq!(partitions(&source_owner).await?, (1, 0));
    assert_eq!(http_status(source_owner.http, "/readyz").await?, 200);
    assert_eq!(partitions(&retry_owner).await?, (0, 1));
    assert_eq!(http_status(retry_owner.http, "/readyz").await?, 503, "a retry partition alone is not ready");

    let third = start(config, topic.name(), Recorder::default()).await?;
    assert_eq!(http_status(third.http, "/healthz").await?, 200, "the process is up");
    assert_eq!(http_status(third.http, "/readyz").await?, 503, "no partition, not ready");
    assert_eq!(assigned(&third).await?, 0);

    // The source partition's owner leaves; the idle instance takes it and becomes ready.
    source_owner.stop().await?;
    wait_ready(&third, Duration::from_secs(30)).await?;
    assert_eq!(partitions(&third).await?, (1, 0));

    // The store goes away: not ready (answered promptly), and ready again once it is back.
    let admin: PgConnectOptions = std::env::var("FANOUT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| fanout_testkit::DEFAULT_DATABASE_URL.to_owned())
        .parse()?;
    let mut conn = admin.connect().await?;
    sqlx::query(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false", db.name()))
        .execute(&mut conn)
        .await?;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(db.name())
        .execute(&mut conn)
        .await?;
    let unreachable = wait_until(Duration::from_secs(30), "not ready without its store", || async {
        let response = http_get(third.http, "/readyz").await?;
        Ok(response.contains(" 503 ") && response.contains("store_reachable=false"))
    })
    .await;
    sqlx::query(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true", db.name()))
        .execute(&mut conn)
        .await?;
    unreachable?;
    wait_ready(&third, Duration::from_secs(30)).await?;

    retry_owner.stop().await?;
    third.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_answers_while_every_store_connection_is_busy() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-readyz-busy", 1).await?;
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    let mut config = config(&db.url());
    config.store.max_connections = 1;
    config.processing.shutdown_timeout_ms = 1_000;
    let recorder = Recorder::default();
    recorder.script.slow.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(1, Duration::from_secs(30));
    let calls = recorder.calls.clone();
    let running = start(config, topic.name(), recorder).await?;
    let name = running.name.clone();
    wait_ready(&running, Duration::from_secs(30)).await?;
    publish(&kafka, topic.name(), &[Outgoing::event(&post(1, 0))]).await?;
    // The slow handler's batch holds the only store connection.
    wait_until(Duration::from_secs(30), "the slow handler running", || {
        let calls = calls.clone();
        async move { Ok(calls.load(std::sync::atomic::Ordering::SeqCst) == 1) }
    })
    .await?;
    let asked = std::time::Instant::now();
    assert_eq!(http_status(running.http, "/readyz").await?, 200, "busy is not unreachable");
    assert!(asked.elapsed() < Duration::from_secs(3), "answered in {:?}", asked.elapsed());

    running.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

/// A service's routes get the store's pool, several `routes` calls add up, and a path served
/// twice is a build error naming it (axum would panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_add_up_query_the_store_and_refuse_a_clash() -> TestResult {
    use axum::{extract::State, routing::get, Router};

    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-routes", 1).await?;
    let (_dir, url) = sqlite();
    let count = |pool: sqlx::AnyPool| {
        Router::new()
            .route(
                "/v1/count",
                get(|State(pool): State<sqlx::AnyPool>| async move {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
                        .fetch_one(&pool)
                        .await
                        .unwrap_or(-1);
                    n.to_string()
                }),
            )
            .with_state(pool)
    };
    let version = |_pool: sqlx::AnyPool| Router::new().route("/v1/version", get(|| async { "1" }));
    let (registry, decoder) = common::registry(topic.name()).await?;
    let consumer = fanout_consumer::Consumer::builder(config(&url))
        .decoder(decoder.clone())
        .handle_topic(topic.name(), Recorder::default())
        .routes(count)
        .routes(version)
        .build()
        .await?;
    create_effects(consumer.pool()).await?;
    let running = run(Built { consumer, registry: Some(registry) });
    let name = running.name.clone();
    assert!(http_get(running.http, "/v1/count").await?.ends_with("\r\n\r\n0"), "the pool answers");
    assert!(http_get(running.http, "/v1/version").await?.ends_with("\r\n\r\n1"), "both calls served");
    running.stop().await?;

    let clash = fanout_consumer::Consumer::builder(config(&url))
        .decoder(decoder)
        .handle_topic(topic.name(), Recorder::default())
        .routes(version)
        .routes(version)
        .build()
        .await
        .expect_err("a path served twice");
    assert!(
        matches!(clash, fanout_consumer::ConsumerError::Wiring(_))
            && clash.to_string().contains("/v1/version"),
        "{clash}"
    );
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}

/// Without its schema registry a consumer can only hold events back, so it is not ready: red
/// while nothing answers at the registry's address, green once the registry comes up there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_needs_the_registry_to_answer() -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-readyz-registry", 1).await?;
    let (_dir, url) = sqlite();
    let (running, address) = start_before_registry(config(&url), topic.name()).await?;
    let name = running.name.clone();
    wait_until(Duration::from_secs(30), "partitions assigned, not ready without a registry", || async {
        let response = http_get(running.http, "/readyz").await?;
        Ok(response.contains(" 503 ")
            && !response.contains("source_partitions=0")
            && response.contains("registry_reachable=false"))
    })
    .await?;

    let registry = fanout_testkit::Registry::start_at(&kafka, address).await?;
    wait_ready(&running, Duration::from_secs(30)).await?;
    assert!(http_get(running.http, "/readyz").await?.contains("registry_reachable=true"));

    running.stop().await?;
    registry.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
