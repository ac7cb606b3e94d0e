//! Dedupe marks expire by `store.dedupe_retention_hours`, in the background: marks older than
//! the retention are deleted (an event seen again after that is applied again, as documented),
//! recent ones are kept (a duplicate is still skipped), and other consumers' marks are not
//! touched.

mod common;

use std::time::Duration;

use common::*;
use fanout_testkit::{Kafka, Postgres};

const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_deletes_expired_dedupe_marks_and_keeps_recent_ones() -> TestResult {
    let (_dir, url) = sqlite();
    expired_marks_are_deleted_and_recent_ones_kept(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_deletes_expired_dedupe_marks_and_keeps_recent_ones() -> TestResult {
    let pg = Postgres::connect().await?;
    let db = pg.database().await?;
    expired_marks_are_deleted_and_recent_ones_kept(&db.url()).await
}

async fn expired_marks_are_deleted_and_recent_ones_kept(url: &str) -> TestResult {
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-retention", 1).await?;
    let mut config = config(url);
    config.store.dedupe_retention_hours = 1;
    let built = build(config, topic.name(), Recorder::default()).await?;
    let name = built.consumer.name().to_owned();
    let pool = built.consumer.pool().clone();

    // Marks written by earlier runs: two past the retention, one within it, and an old one of
    // another consumer sharing the database.
    let now = chrono::Utc::now().timestamp_millis();
    let other = format!("{name}-other");
    for (consumer, id, age_ms) in [
        (name.as_str(), "expired-1", 2 * HOUR_MS),
        (name.as_str(), "expired-2", HOUR_MS + 60_000),
        (name.as_str(), "recent", HOUR_MS - 600_000),
        (other.as_str(), "expired-other", 2 * HOUR_MS),
    ] {
        sqlx::query("INSERT INTO fanout_processed (consumer, event_id, processed_at_ms) VALUES ($1, $2, $3)")
            .bind(consumer)
            .bind(id)
            .bind(now - age_ms)
            .execute(&pool)
            .await?;
    }

    let running = run(built);
    let marks = |sql: &'static str| {
        let pool = pool.clone();
        let name = name.clone();
        async move {
            Ok::<i64, anyhow::Error>(sqlx::query_scalar::<_, i64>(sql).bind(name).fetch_one(&pool).await?)
        }
    };
    wait_until(Duration::from_secs(30), "the expired marks deleted", || async {
        Ok(marks("SELECT COUNT(*) FROM fanout_processed WHERE consumer = $1 AND event_id LIKE 'expired-%'")
            .await?
            == 0)
    })
    .await?;
    assert_eq!(
        marks("SELECT COUNT(*) FROM fanout_processed WHERE consumer = $1 AND event_id = 'recent'").await?,
        1,
        "a mark within the retention is kept"
    );
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM fanout_processed WHERE event_id = 'expired-other'").await?,
        1,
        "another consumer's marks are its own business"
    );

    // What the marks mean: the recent one still makes its event a duplicate; the expired one no
    // longer does.
    let mut recent = Outgoing::event(&post(1, 0));
    recent.event_id = "recent".into();
    let mut expired = Outgoing::event(&post(2, 0));
    expired.event_id = "expired-1".into();
    publish(&kafka, topic.name(), &[recent, expired]).await?;
    wait_until(Duration::from_secs(30), "both events finished", || {
        let name = name.clone();
        async move { Ok(outcome(&name, "ok") + outcome(&name, "duplicate") >= 2.0) }
    })
    .await?;
    assert_eq!(outcome(&name, "duplicate"), 1.0, "the event with a recent mark is skipped");
    assert_eq!(
        scalar(&pool, "SELECT COUNT(*) FROM effects WHERE event_id = 'expired-1'").await?,
        1,
        "the event whose mark expired is applied again"
    );
    assert_eq!(effects(&pool).await?, 1);

    running.stop().await?;
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
