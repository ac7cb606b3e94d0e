//! The pinning service against the real broker and the in-process registry, on SQLite and on
//! PostgreSQL: HOUSING posts published through the SDK grant credits visible in the read API.

use std::time::Duration;

use fanout_events::{Category, PostPublished};
use fanout_pinning::PinningConfig;
use fanout_testkit::{
    service::{get_json, sqlite, wait_for_json, Running, Stack},
    wait_until,
};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

fn post(post_id: i64, user_id: i64, category: Category) -> PostPublished {
    PostPublished {
        post_id,
        user_id,
        category,
        city: "Lyon".into(),
        title: format!("post {post_id}"),
        published_at: 1_764_000_000_000 + post_id,
    }
}

async fn grants_pins_for_housing_posts(store_url: &str) -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("pinning", 3).await?;
    let mut config = PinningConfig::default();
    stack.configure(&mut config, store_url);
    config.service.topic = topic.name().to_owned();
    let running = Running::start(fanout_pinning::build(config).await?);

    stack
        .publish(
            topic.name(),
            &[
                post(1, 10, Category::Housing),
                post(2, 10, Category::Housing),
                post(3, 10, Category::Job),
                post(4, 20, Category::Housing),
                post(5, 30, Category::Other),
            ],
        )
        .await?;
    wait_for_json(&running.url("/v1/users/10/pins"), &json!({"user_id": 10, "credits": 4}), LIMIT).await?;
    wait_for_json(&running.url("/v1/users/20/pins"), &json!({"user_id": 20, "credits": 2}), LIMIT).await?;
    wait_until(LIMIT, "every event applied", || async { Ok(running.consumed("ok").await? >= 5.0) }).await?;

    let (status, body) = get_json(&running.url("/v1/users/30/pins")).await?;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("30")), "{body}");
    let (status, body) = get_json(&running.url("/v1/users/1e3/pins")).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");

    let name = running.name.clone();
    running.stop().await?;
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn pinning_on_sqlite() -> anyhow::Result<()> {
    let (_dir, url) = sqlite("pinning")?;
    grants_pins_for_housing_posts(&url).await
}

#[tokio::test(flavor = "multi_thread")]
async fn pinning_on_postgres() -> anyhow::Result<()> {
    let database = fanout_testkit::Postgres::connect().await?.database().await?;
    grants_pins_for_housing_posts(&database.url()).await
}
