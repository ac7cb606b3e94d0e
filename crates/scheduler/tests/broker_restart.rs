//! The broker is killed (`kill -9`) and restarted while the scheduler delivers: nothing is
//! delivered early (Pulsar's open bug: delayed messages delivered at once after a broker
//! restart), nothing is lost, nothing is delivered twice.
//!
//! This test kills the shared broker, so it lives alone in its own test binary.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fanout_events::{Category, PostPublished};
use fanout_kafka::{FetchedRecord, TopicRead};
use fanout_producer::{PublishOptions, Publisher};
use fanout_scheduler::{Scheduler, SchedulerConfig};
use fanout_testkit::{
    service::Stack,
    stack::{broker_pid, kill_broker, stack},
    unique_name, wait_until, Kafka,
};

fn ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn committed(kafka: &Kafka, topic: &str) -> anyhow::Result<Vec<FetchedRecord>> {
    let mut config = kafka.client_config();
    config.set("isolation.level", "read_committed");
    Ok(TopicRead::new(topic).timeout(Duration::from_secs(30)).read(&config).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_delivers_nothing_early_loses_nothing_duplicates_nothing() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt().with_env_filter("fanout_scheduler=info").try_init();
    let stack_ = Stack::start().await?;
    let kafka = stack_.kafka.clone();
    let target = kafka.topic("scheduled-broker", 3).await?;
    let schedule_topic = kafka.future_topic("schedule-broker");
    let config = SchedulerConfig {
        name: unique_name("scheduler-broker"),
        topic: schedule_topic.name().to_owned(),
        partitions: 3,
        window_secs: 10,
        kafka: fanout_config::KafkaSettings { bootstrap: kafka.bootstrap().to_owned(), ..Default::default() },
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::start(config.clone()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(scheduler.run(async move {
        let _ = stopped.await;
    }));

    let mut publisher_config = stack_.publisher_config("scheduling-broker-test");
    publisher_config.schedule_topic = schedule_topic.name().to_owned();
    let publisher = Publisher::new(publisher_config)?;
    let to = PublishOptions::new().topic(target.name());
    // 2,000 entries from 3 s to 23 s from now: the restart lands among them.
    let count = 2_000;
    let start = SystemTime::now() + Duration::from_secs(3);
    let mut due: HashMap<String, i64> = HashMap::new();
    for n in 0..count {
        let at = start + Duration::from_millis(n * 10);
        let post = PostPublished {
            post_id: (n % 100) as i64,
            user_id: n as i64,
            category: Category::Secondhand,
            city: "Porto".into(),
            title: format!("scheduled {n}"),
            published_at: 1_764_000_000_000,
        };
        let scheduled = publisher.publish_at(&post, at, &to).await?;
        due.insert(scheduled.event_id.to_string(), ms(at));
    }

    wait_until(Duration::from_secs(60), "some delivered before the broker dies", || async {
        Ok(committed(&kafka, target.name()).await?.len() >= 300)
    })
    .await?;
    let pid = kill_broker().await?;
    let up = tokio::task::spawn_blocking(|| stack(&["up", "kafka"])).await??;
    anyhow::ensure!(up.contains("ready"), "broker did not come back: {up}");
    anyhow::ensure!(broker_pid()? != pid, "the broker was not restarted");

    wait_until(Duration::from_secs(180), "every entry delivered after the restart", || async {
        anyhow::ensure!(!running.is_finished(), "the scheduler stopped during the broker restart");
        Ok(committed(&kafka, target.name()).await?.len() >= due.len())
    })
    .await?;
    let delivered = committed(&kafka, target.name()).await?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for record in &delivered {
        let id = record.header("ce_id").unwrap_or_default();
        *seen.entry(id).or_default() += 1;
        let at = record.timestamp_ms.unwrap_or_default();
        assert!(at >= due[id], "{id} delivered {} ms early", due[id] - at);
    }
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} entries delivered more than once");
    assert_eq!(seen.len(), due.len(), "every entry delivered");

    let _ = stop.send(());
    running.await??;
    kafka.delete_topic(&fanout_core::schedule::dead_letters(schedule_topic.name())).await?;
    kafka.delete_groups(&[&config.name]).await?;
    stack_.stop().await
}
