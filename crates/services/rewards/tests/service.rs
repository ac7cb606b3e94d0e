//! The rewards service against the real broker and the in-process registry, on SQLite and on
//! PostgreSQL: events published through the SDK come out of the read API.

use std::time::Duration;

use fanout_events::{Category, PostPublished};
use fanout_rewards::RewardsConfig;
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
        city: "Berlin".into(),
        title: format!("post {post_id}"),
        published_at: 1_764_000_000_000 + post_id,
    }
}

/// Publishes JOB and other posts plus two undecodable records; checks balances, ledger counts,
/// 404, 400 and that the poison went to the dead-letter topic without stopping the service.
async fn credits_beans_for_job_posts(store_url: &str) -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("rewards", 3).await?;
    let mut config = RewardsConfig::default();
    stack.configure(&mut config, store_url);
    config.service.topic = topic.name().to_owned();
    config.service.beans_per_job_post = 7;
    let running = Running::start(fanout_rewards::build(config).await?);

    let (status, body) = get_json(&running.url("/v1/users/100/beans")).await?;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("100")), "{body}");

    stack
        .publish(
            topic.name(),
            &[
                post(1, 100, Category::Job),
                post(2, 100, Category::Job),
                post(3, 100, Category::Housing),
                post(4, 200, Category::Job),
                post(5, 300, Category::Secondhand),
            ],
        )
        .await?;
    // Not Confluent-framed, and framed with a schema id the registry never issued.
    stack.publish_raw(topic.name(), b"6", b"{\"post_id\": 6}").await?;
    stack.publish_raw(topic.name(), b"7", &[0, 0x7f, 0xff, 0xff, 0xf0, 2, 4]).await?;

    wait_for_json(
        &running.url("/v1/users/100/beans"),
        &json!({"user_id": 100, "balance": 14, "ledger_entries": 2}),
        LIMIT,
    )
    .await?;
    wait_for_json(
        &running.url("/v1/users/200/beans"),
        &json!({"user_id": 200, "balance": 7, "ledger_entries": 1}),
        LIMIT,
    )
    .await?;
    wait_until(LIMIT, "every event applied and both poison records dead-lettered", || async {
        Ok(running.consumed("ok").await? >= 5.0 && running.consumed("dead_lettered").await? >= 2.0)
    })
    .await?;

    // User 300 only posted second-hand: the rewards service never heard of them.
    let (status, body) = get_json(&running.url("/v1/users/300/beans")).await?;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get_json(&running.url("/v1/users/abc/beans")).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("abc")), "{body}");

    let dead = fanout_core::topics::dead_letter(topic.name(), &running.name);
    let mut letters = stack.read_topic(&dead, 2, LIMIT).await?;
    letters.sort_by(|a, b| a.0.cmp(&b.0));
    let error = |i: usize| letters[i].1.get(fanout_consumer::dlq_headers::ERROR).cloned().unwrap_or_default();
    assert_eq!((letters[0].0.as_str(), letters[1].0.as_str()), ("6", "7"));
    assert!(error(0).contains("malformed"), "{}", error(0));
    assert!(error(1).contains("unknown schema id"), "{}", error(1));

    let name = running.name.clone();
    running.stop().await?;
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn rewards_on_sqlite() -> anyhow::Result<()> {
    let (_dir, url) = sqlite("rewards")?;
    credits_beans_for_job_posts(&url).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rewards_on_postgres() -> anyhow::Result<()> {
    let database = fanout_testkit::Postgres::connect().await?.database().await?;
    credits_beans_for_job_posts(&database.url()).await
}

/// The service behind a locked door: the stack's SASL/SCRAM-SHA-512 listener (port 9094, user
/// `fanout`), reached through `[kafka.properties]` alone. Every client of the consumer runtime
/// (group member, retry and dead-letter producer, admin) must carry the credentials, or no event
/// is applied.
#[tokio::test(flavor = "multi_thread")]
async fn rewards_through_the_sasl_listener() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("rewards-sasl", 1).await?;
    let (_dir, url) = sqlite("rewards-sasl")?;
    let mut config = RewardsConfig::default();
    stack.configure(&mut config, &url);
    let mut sasl = fanout_config::KafkaSettings {
        bootstrap: std::env::var("FANOUT_TEST_SASL_BOOTSTRAP")
            .unwrap_or_else(|_| "127.0.0.1:9094".to_owned()),
        ..Default::default()
    };
    for (key, value) in [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "fanout"),
        ("sasl.password", "fanout-secret"),
    ] {
        sasl.properties.insert(key.to_owned(), value.to_owned());
    }
    config.consumer.kafka = sasl.clone();
    config.service.topic = topic.name().to_owned();
    config.service.beans_per_job_post = 5;
    let running = Running::start(fanout_rewards::build(config).await?);

    stack.publish(topic.name(), &[post(1, 100, Category::Job), post(2, 100, Category::Job)]).await?;
    wait_for_json(
        &running.url("/v1/users/100/beans"),
        &json!({"user_id": 100, "balance": 10, "ledger_entries": 2}),
        LIMIT,
    )
    .await?;
    let name = running.name.clone();
    running.stop().await?;
    stack.delete_derived_topics(topic.name(), &name).await;

    // The same service with a wrong password stops at once, naming the refusal.
    let (_refused_dir, url) = sqlite("rewards-sasl-refused")?;
    let mut refused = RewardsConfig::default();
    stack.configure(&mut refused, &url);
    refused.consumer.kafka = sasl;
    refused.consumer.kafka.properties.insert("sasl.password".to_owned(), "not-the-password".to_owned());
    refused.service.topic = topic.name().to_owned();
    let started = std::time::Instant::now();
    let ran = fanout_rewards::build(refused).await?.run(std::future::pending()).await;
    let said = fanout_service::report(&ran.expect_err("a wrong password must stop the service"));
    assert!(said.contains("refused the credentials"), "{said}");
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    stack.stop().await
}
