//! The stats service against the real broker and the in-process registry, on SQLite and on
//! PostgreSQL: every post published through the SDK is counted by category and city.

use std::time::Duration;

use fanout_events::{Category, PostPublished};
use fanout_stats::StatsConfig;
use fanout_testkit::{
    service::{get_json, sqlite, wait_for_json, Running, Stack},
    wait_until,
};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

fn post(post_id: i64, user_id: i64, category: Category, city: &str) -> PostPublished {
    PostPublished {
        post_id,
        user_id,
        category,
        city: city.into(),
        title: format!("post {post_id}"),
        published_at: 1_764_000_000_000 + post_id,
    }
}

async fn counts_posts_by_category_and_city(store_url: &str) -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("stats", 3).await?;
    let mut config = StatsConfig::default();
    stack.configure(&mut config, store_url);
    config.service.topic = topic.name().to_owned();
    let running = Running::start(fanout_stats::build(config).await?);

    stack
        .publish(
            topic.name(),
            &[
                post(1, 5, Category::Secondhand, "Wuhan"),
                post(2, 5, Category::Secondhand, "Wuhan"),
                post(3, 5, Category::Job, "Beijing"),
                post(4, 6, Category::Housing, "Wuhan"),
                // A city with a quote and non-ASCII text goes through bound parameters unharmed.
                post(5, 6, Category::Other, "Saint-Étienne's"),
            ],
        )
        .await?;
    wait_for_json(
        &running.url("/v1/users/5/stats"),
        &json!({
            "user_id": 5,
            "posts": 3,
            "by_category": {"HOUSING": 0, "JOB": 1, "OTHER": 0, "SECONDHAND": 2},
            "by_city": {"Beijing": 1, "Wuhan": 2},
        }),
        LIMIT,
    )
    .await?;
    wait_for_json(
        &running.url("/v1/users/6/stats"),
        &json!({
            "user_id": 6,
            "posts": 2,
            "by_category": {"HOUSING": 1, "JOB": 0, "OTHER": 1, "SECONDHAND": 0},
            "by_city": {"Saint-Étienne's": 1, "Wuhan": 1},
        }),
        LIMIT,
    )
    .await?;
    wait_until(LIMIT, "every event applied", || async { Ok(running.consumed("ok").await? >= 5.0) }).await?;

    let (status, body) = get_json(&running.url("/v1/users/7/stats")).await?;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = get_json(&running.url("/v1/users/seven/stats")).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("seven")), "{body}");

    let name = running.name.clone();
    running.stop().await?;
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_on_sqlite() -> anyhow::Result<()> {
    let (_dir, url) = sqlite("stats")?;
    counts_posts_by_category_and_city(&url).await
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_on_postgres() -> anyhow::Result<()> {
    let database = fanout_testkit::Postgres::connect().await?.database().await?;
    counts_posts_by_category_and_city(&database.url()).await
}
