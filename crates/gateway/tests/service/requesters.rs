//! Requesters: each receives only the callbacks of its own requests, on its own topic; a second
//! requester is added without a change to the gateway or its config; a callback that never comes
//! is a `CallbackTimedOut` from the scheduler, even when the requester that waited is gone.

use std::time::{Duration, Instant};

use crate::common::{callback, post, TestGateway, SECRET};
use fanout_core::headers;
use fanout_gateway::{Awaiter, AwaiterConfig, Reply};
use fanout_scheduler::{Scheduler, SchedulerConfig};
use fanout_testkit::{unique_name, FetchedRecord, TestTopic};

/// `(ce_type, key)` of each record, in offset order per partition.
fn kinds(records: &[FetchedRecord]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            let kind = r.headers.iter().find(|(n, _)| n == headers::TYPE).and_then(|(_, v)| v.clone());
            let text = |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
            (text(kind), text(r.key.clone()))
        })
        .collect()
}

async fn replied(pending: fanout_gateway::Pending) -> anyhow::Result<Reply> {
    Ok(tokio::time::timeout(Duration::from_secs(30), pending.wait()).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_requester_gets_its_own_results_and_timeouts_without_a_gateway_change() -> anyhow::Result<()> {
    let gateway = TestGateway::start(|c| crate::common::rename_source(c, "pay-req")).await?;
    let schedule_topic = gateway.kafka.future_topic("gateway-schedule");
    let scheduler_config = SchedulerConfig {
        name: unique_name("gateway-scheduler"),
        topic: schedule_topic.name().to_owned(),
        partitions: 3,
        window_secs: 10,
        http: fanout_config::HttpSettings::on("127.0.0.1:0"),
        kafka: gateway.config.kafka.clone(),
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::start(scheduler_config.clone()).await?;
    let (stop_scheduler, scheduler_stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(scheduler.run(async move {
        let _ = scheduler_stopped.await;
    }));
    let awaiter_config = |requester: &str, reply: &TestTopic| AwaiterConfig {
        requester: requester.to_owned(),
        reply_topic: reply.name().to_owned(),
        gateway: gateway.admin_url(""),
        gateway_token: None,
        partitions: 3,
        kafka: gateway.config.kafka.clone(),
        registry: gateway.config.registry.clone(),
        schedule_topic: schedule_topic.name().to_owned(),
    };
    let client = reqwest::Client::new();
    let url = gateway.url("pay-req");
    let minute = Duration::from_secs(60);

    let orders_topic = gateway.kafka.future_topic("orders-replies");
    let orders = Awaiter::start(awaiter_config("orders", &orders_topic)).await?;
    let order_1 = orders.expect("pay-req", "order-1", minute).await?;
    let (headers, body) = callback("evt-o1", "order-1", SECRET);
    assert_eq!(post(&client, &url, &headers, body).await?.0, 200);
    match replied(order_1).await? {
        Reply::Received(result) => {
            assert_eq!(
                (result.correlation_id.as_str(), result.provider_event_id.as_str()),
                ("order-1", "evt-o1")
            );
            assert!(result.body.contains("\"amount\":1299"), "{}", result.body);
        }
        other => panic!("order-1: {other:?}"),
    }

    // A second requester, started now: the gateway and its config are as they were.
    let memberships_topic = gateway.kafka.future_topic("memberships-replies");
    let memberships = Awaiter::start(awaiter_config("memberships", &memberships_topic)).await?;
    let membership_1 = memberships.expect("pay-req", "membership-1", minute).await?;
    let order_2 = orders.expect("pay-req", "order-2", minute).await?;
    for (id, request) in [("evt-m1", "membership-1"), ("evt-o2", "order-2"), ("evt-walk-in", "walk-in-1")] {
        let (headers, body) = callback(id, request, SECRET);
        assert_eq!(post(&client, &url, &headers, body).await?.0, 200, "{request}");
    }
    let received = |reply: Reply| match reply {
        Reply::Received(result) => result.correlation_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(received(replied(membership_1).await?), "membership-1");
    assert_eq!(received(replied(order_2).await?), "order-2");

    // Each topic holds its own and nothing else: an unregistered request's callback stays on the
    // source's topic.
    let callback_kind = |key: &str| ("callback.received".to_owned(), key.to_owned());
    let mut on_orders =
        kinds(&gateway.kafka.read_at_least(orders_topic.name(), 2, Duration::from_secs(10)).await?);
    on_orders.sort();
    assert_eq!(on_orders, [callback_kind("order-1"), callback_kind("order-2")]);
    let on_memberships = kinds(&gateway.kafka.read(memberships_topic.name()).await?);
    assert_eq!(on_memberships, [callback_kind("membership-1")]);
    assert_eq!(kinds(&gateway.kafka.read(gateway.topic.name()).await?), [callback_kind("walk-in-1")]);

    // No callback: the timeout, from the scheduler, at its time.
    let started = Instant::now();
    let order_3 = orders.expect("pay-req", "order-3", Duration::from_secs(2)).await?;
    match replied(order_3).await? {
        Reply::TimedOut(timeout) => {
            assert_eq!(timeout.correlation_id, "order-3");
            assert_eq!(timeout.expected_by - timeout.requested_at, 2_000);
        }
        other => panic!("order-3: {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "not before its time: {:?}", started.elapsed());
    // The provider calls back late after all: it still reaches the requester, after the timeout.
    let (headers, body) = callback("evt-o3", "order-3", SECRET);
    assert_eq!(post(&client, &url, &headers, body).await?.0, 200);

    // A requester instance that waits and is gone before the timeout: the timeout comes anyway.
    let gone = Awaiter::start(awaiter_config("orders", &orders_topic)).await?;
    let _never_waited = gone.expect("pay-req", "order-4", Duration::from_secs(1)).await?;
    drop(gone);
    let records = gateway.kafka.read_at_least(orders_topic.name(), 5, Duration::from_secs(20)).await?;
    let order_3_events: Vec<String> =
        kinds(&records).into_iter().filter(|(_, key)| key == "order-3").map(|(kind, _)| kind).collect();
    assert_eq!(
        order_3_events,
        ["callback.timed_out", "callback.received"],
        "the partition's order says which came first"
    );
    assert!(kinds(&records).contains(&("callback.timed_out".to_owned(), "order-4".to_owned())));

    // Route registration refuses what it cannot use, saying why.
    let put = |path: String, body: serde_json::Value| {
        let client = client.clone();
        async move { client.put(path).json(&body).send().await }
    };
    let bad = put(
        gateway.admin_url("/routes/pay-req/x"),
        serde_json::json!({"reply_topic": "no spaces", "expires_in_secs": 60}),
    )
    .await?;
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await?.contains("reply_topic"));
    let unknown = put(
        gateway.admin_url("/routes/nosuch/x"),
        serde_json::json!({"reply_topic": "t", "expires_in_secs": 60}),
    )
    .await?;
    assert_eq!(unknown.status().as_u16(), 404);

    drop((orders, memberships));
    let _ = stop_scheduler.send(());
    scheduler.await??;
    gateway.kafka.delete_topic(&fanout_core::schedule::dead_letters(schedule_topic.name())).await?;
    fanout_testkit::wait_until(Duration::from_secs(30), "the scheduler's group gone", || {
        let kafka = gateway.kafka.clone();
        let group = scheduler_config.name.clone();
        async move { Ok(kafka.delete_groups(&[&group]).await.is_ok()) }
    })
    .await?;
    gateway.finish().await
}
