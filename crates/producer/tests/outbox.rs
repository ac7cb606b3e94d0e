//! The transactional outbox against real SQLite and PostgreSQL databases and the real broker:
//! an event exists exactly when the caller's transaction commits, and the relay publishes rows in
//! insertion order with the event id fixed at enqueue.

mod common;

use std::time::Duration;

use fanout_core::{envelope::Envelope, headers, trace::TraceParent, Event};
use fanout_events::PostPublished;
use fanout_producer::{
    outbox::{relay, Outbox, OutboxDatabase, OutboxRow, RelayConfig},
    PublishOptions, Publisher,
};
use sqlx::{sqlite::SqliteConnectOptions, PgPool, SqlitePool};
use tokio::sync::oneshot;

use common::{consume_all, event, publisher_config, start_registry};

async fn relay_until_drained(
    db_url: &str,
    publisher: &Publisher,
    unsent: impl Fn() -> futures::future::BoxFuture<'static, i64>,
) -> anyhow::Result<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let relay_task = {
        let publisher = publisher.clone();
        let config = RelayConfig::new(db_url);
        tokio::spawn(async move {
            relay(config, &publisher, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while unsent().await > 0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "relay did not drain the outbox in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    relay_task.await??;
    Ok(())
}

#[tokio::test]
async fn sqlite_outbox_publishes_committed_events_only_in_order() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("outbox-sqlite", 1).await?;
    let (registry, _schemas) = start_registry(&kafka).await?;
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite:{}", dir.path().join("post-service.db").display());
    let pool =
        SqlitePool::connect_with(db_url.parse::<SqliteConnectOptions>()?.create_if_missing(true)).await?;
    Outbox::migrate_sqlite(&pool).await?;
    sqlx::query("CREATE TABLE posts (id INTEGER PRIMARY KEY)").execute(&pool).await?;
    let outbox = Outbox::new("post-service");
    let to = PublishOptions::new().topic(topic.name());

    let mut committed = Vec::new();
    for i in 0..50 {
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO posts (id) VALUES (?1)").bind(i).execute(&mut *tx).await?;
        let id = outbox.enqueue_with(&mut tx, &event(i, i), &to).await?;
        if i % 5 == 4 {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
            committed.push(id);
        }
    }

    let publisher = Publisher::new(publisher_config(&kafka, &registry))?;
    let counter = pool.clone();
    relay_until_drained(&db_url, &publisher, move || {
        let pool = counter.clone();
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM fanout_outbox WHERE sent_at_ms IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap_or(i64::MAX)
        })
    })
    .await?;

    let records =
        consume_all(&kafka, &registry, topic.name(), committed.len(), Duration::from_secs(30)).await?;
    let seen: Vec<String> = records.iter().map(|r| r.headers[headers::ID].clone()).collect();
    let expected: Vec<String> = committed.iter().map(|id| id.to_string()).collect();
    assert_eq!(seen, expected, "exactly the committed events, in insertion order");
    assert!(records.iter().all(|r| r.headers[headers::SOURCE] == "post-service"));
    Ok(())
}

#[tokio::test]
async fn postgres_outbox_publishes_committed_events_only() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("outbox-postgres", 1).await?;
    let (registry, _schemas) = start_registry(&kafka).await?;
    let pg = fanout_testkit::Postgres::connect().await?;
    let database = pg.database().await?;
    let pool = PgPool::connect_with(database.options()).await?;
    // Two instances starting together both migrate; the second waits for the first.
    let other = PgPool::connect_with(database.options()).await?;
    let (first, second) = tokio::join!(Outbox::migrate_postgres(&pool), Outbox::migrate_postgres(&other));
    first?;
    second?;
    other.close().await;
    let outbox = Outbox::new("post-service");
    let to = PublishOptions::new().topic(topic.name());

    let mut tx = pool.begin().await?;
    let kept = outbox.enqueue_with(&mut tx, &event(1, 1), &to).await?;
    tx.commit().await?;
    let mut tx = pool.begin().await?;
    outbox.enqueue_with(&mut tx, &event(2, 2), &to).await?;
    tx.rollback().await?;

    let publisher = Publisher::new(publisher_config(&kafka, &registry))?;
    let counter = pool.clone();
    relay_until_drained(&database.url(), &publisher, move || {
        let pool = counter.clone();
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM fanout_outbox WHERE sent_at_ms IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap_or(i64::MAX)
        })
    })
    .await?;
    pool.close().await;

    let records = consume_all(&kafka, &registry, topic.name(), 1, Duration::from_secs(30)).await?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].headers[headers::ID], kept.to_string());
    Ok(())
}

/// The SDK and the outbox relay write one envelope: for the same event with the same id, time
/// and trace, the relay's record is the SDK's, headers (names, values, order), key and payload,
/// byte for byte, as read back from Kafka.
#[tokio::test]
async fn the_relay_writes_the_sdks_headers_byte_for_byte() -> anyhow::Result<()> {
    let kafka = fanout_testkit::Kafka::connect().await?;
    let topic = kafka.topic("outbox-same-bytes", 1).await?;
    let (registry, _schemas) = start_registry(&kafka).await?;
    let config = publisher_config(&kafka, &registry);
    let publisher = Publisher::new(config.clone())?;
    let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let post = event(7, 3);
    let options = PublishOptions { trace_parent: parent, ..PublishOptions::new().topic(topic.name()) };
    publisher.publish_with(&post, &options).await?;
    let sdk = kafka.read(topic.name()).await?.remove(0);

    // The same event through the outbox, with the identity the SDK gave it.
    let received = Envelope::parse(sdk.headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())));
    let (Some(id), Some(time), Some(trace)) = (received.id, received.time, received.trace) else {
        anyhow::bail!("the SDK's record lacks its envelope: {:?}", sdk.headers);
    };
    let envelope = Envelope::from_parts(PostPublished::TYPE, &config.source, id.parse()?, time, trace);
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite:{}", dir.path().join("post-service.db").display());
    let pool =
        SqlitePool::connect_with(db_url.parse::<SqliteConnectOptions>()?.create_if_missing(true)).await?;
    Outbox::migrate_sqlite(&pool).await?;
    let mut tx = pool.begin().await?;
    <sqlx::Sqlite as OutboxDatabase>::insert(&mut tx, &OutboxRow::new(topic.name(), &post, &envelope)?)
        .await?;
    tx.commit().await?;
    let counter = pool.clone();
    relay_until_drained(&db_url, &publisher, move || {
        let pool = counter.clone();
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM fanout_outbox WHERE sent_at_ms IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap_or(i64::MAX)
        })
    })
    .await?;

    let records = kafka.read(topic.name()).await?;
    assert_eq!(records.len(), 2, "the SDK's record and the relay's");
    let relayed = &records[1];
    assert_eq!(relayed.headers, sdk.headers);
    assert_eq!(relayed.headers.len(), 7, "{:?}", relayed.headers);
    assert_eq!((&relayed.key, &relayed.payload), (&sdk.key, &sdk.payload), "same key, same framed payload");
    Ok(())
}
