//! {{name}}'s API against the real broker, with a schema registry in process: start Fanout's
//! local stack first (`scripts/stack up` in Fanout's checkout).

use std::{future::IntoFuture, time::Duration};

use fanout::events::{{Event}};
use fanout::testing::service::{post_json, Stack};
use fanout::testing::{anyhow, sample_json, serde_json::json};
use fanout::{PublishOptions, Publisher};

use {{crate}}::{routes, App};

#[tokio::test]
async fn a_posted_event_is_in_kafka_under_the_id_the_api_answered() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("{{name}}", 1).await?;
    let publisher = Publisher::new(stack.publisher_config("{{name}}"))?;
    let app = App::new(publisher, PublishOptions::new().topic(topic.name()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/events", listener.local_addr()?);
    let server = tokio::spawn(fanout::axum::serve(listener, routes(app)).into_future());

    let (status, answer) = post_json(&url, &sample_json::<{{Event}}>()?).await?;
    assert_eq!(status, 201, "{answer}");
    let (status, refused) = post_json(&url, &json!({"not": "a {{Event}}"})).await?;
    assert_eq!(status, 422, "{refused}");

    let records = stack.read_topic(topic.name(), 1, Duration::from_secs(30)).await?;
    assert_eq!(records.len(), 1, "only the valid event is published");
    assert_eq!(records[0].1.get("ce_id").map(String::as_str), answer["event_id"].as_str());

    server.abort();
    stack.stop().await
}
