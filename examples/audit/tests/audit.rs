//! audit against the real broker, with a schema registry in process: start Fanout's local
//! stack first (`scripts/stack up` in Fanout's checkout).

use std::time::Duration;

use fanout::events::PostPublished;
use fanout::testing::service::{get_json, sqlite, Running, Stack};
use fanout::testing::{anyhow, sample, wait_until};
use fanout::ServiceConfig;

use audit::{build, AuditSettings};

#[tokio::test]
async fn every_event_is_recorded_once() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("audit", 1).await?;
    let (_dir, store) = sqlite("audit")?;
    let mut config = ServiceConfig::<AuditSettings>::default();
    stack.configure(&mut config, &store);
    config.service.topic = topic.name().to_owned();
    let service = Running::start(build(config).await?);

    let events: Vec<PostPublished> = vec![sample()?, sample()?];
    stack.publish(topic.name(), &events).await?;
    let count = service.url("/v1/audit/count");
    wait_until(Duration::from_secs(60), "both events recorded", || {
        let count = count.clone();
        async move { Ok(get_json(&count).await?.1["events"] == 2) }
    })
    .await?;
    assert_eq!(service.consumed("ok").await?, 2.0);

    let name = service.name.clone();
    service.stop().await?;
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}
