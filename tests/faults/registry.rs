//! Fault 5: the schema registry is stopped in the middle of a run. Publishing and consuming
//! events of a schema the clients already know continue; registering a new one fails with an
//! error that names the registry, and succeeds once the registry is back.

use std::{net::SocketAddr, time::Duration};

use anyhow::{ensure, Context};
use fanout_producer::{PublishOptions, Publisher, PublisherConfig};
use fanout_service::ServiceConfig;
use fanout_testkit::{service::Running, stack::Cluster, wait_until, Postgres, Registry};

use crate::common::{job_post, ledger_rows, LIMIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_registry_stops_only_new_schemas() -> anyhow::Result<()> {
    let cluster = Cluster::up().await?;
    let kafka = cluster.kafka().clone();
    let topic = kafka.topic("fault-registry", 3).await?;
    let new_topic = kafka.topic("fault-registry-new", 1).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let mut registry = Registry::start_at(&kafka, listen).await?;
    let db = Postgres::connect().await?.database().await?;
    let pool = sqlx::PgPool::connect_with(db.options()).await?;

    let mut config = ServiceConfig::new(fanout_rewards::RewardsSettings {
        topic: topic.name().to_owned(),
        ..Default::default()
    });
    config.consumer = fanout_testkit::consumer_config("rewards", &db.url());
    config.consumer.kafka.bootstrap = kafka.bootstrap().to_owned();
    config.consumer.kafka.properties.extend(kafka.properties().iter().cloned());
    config.registry.urls = vec![registry.url().to_owned()];
    let service = Running::start(fanout_rewards::build(config).await?);
    let mut publisher_config = PublisherConfig::new("fault-registry");
    publisher_config.kafka.bootstrap = kafka.bootstrap().to_owned();
    publisher_config.kafka.properties.extend(kafka.properties().iter().cloned());
    publisher_config.registry = registry.settings();
    let publisher = Publisher::new(publisher_config)?;
    let to = PublishOptions::new().topic(topic.name());
    let publish = |from: i64, count: i64| {
        let (publisher, to) = (publisher.clone(), to.clone());
        async move {
            let events: Vec<_> = (from..from + count).map(job_post).collect();
            for result in publisher.publish_all(&events, &to).await {
                result.context("publishing a known schema")?;
            }
            anyhow::Ok(())
        }
    };
    let credited = |n: i64| {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move { Ok(ledger_rows(&pool).await >= n) }
        }
    };

    publish(0, 2_000).await?;
    wait_until(LIMIT, "the first 2,000 events credited", credited(2_000)).await?;

    registry.stop_serving().await?;
    ensure!(
        reqwest::get(format!("{}/subjects", registry.url())).await.is_err(),
        "the registry still answers after stopping"
    );
    publish(2_000, 2_000).await?;
    wait_until(LIMIT, "2,000 more events credited with the registry down", credited(4_000)).await?;
    let refused = publisher
        .publish_with(&job_post(9_000), &PublishOptions::new().topic(new_topic.name()))
        .await
        .err()
        .context("a schema the registry never saw was published while it was down")?;
    let message = format!("{:#}", anyhow::Error::from(refused));
    eprintln!("registry down, new subject: {message}");
    ensure!(
        message.contains(&port.to_string()),
        "the error does not name the registry at {listen}: {message}"
    );

    registry.serve_at(listen, &kafka).await?;
    let back = std::time::Instant::now();
    wait_until(Duration::from_secs(30), "the new schema registered after the registry came back", || {
        let publisher = publisher.clone();
        let to = PublishOptions::new().topic(new_topic.name());
        async move { Ok(publisher.publish_with(&job_post(9_000), &to).await.is_ok()) }
    })
    .await?;
    let recovered = back.elapsed();
    publish(4_000, 1_000).await?;
    wait_until(LIMIT, "all 5,000 events credited", credited(5_000)).await?;
    let name = service.name.clone();
    service.stop().await?;
    let rows = ledger_rows(&pool).await;
    eprintln!(
        "verdict: fault 5: 2,000 events published and credited while the registry was down, a new subject \
         refused naming the registry, registered {recovered:?} after it came back; ledger {rows}/5000"
    );
    ensure!(rows == 5_000, "ledger holds {rows} rows for 5,000 events");
    pool.close().await;
    kafka.delete_consumer(topic.name(), &name).await;
    registry.stop().await?;
    Ok(())
}
