//! The broker is killed (`kill -9`) and restarted while the scheduler delivers: nothing is
//! delivered early (Pulsar's open bug: delayed messages delivered at once after a broker
//! restart), nothing is lost, nothing is delivered twice.
//!
//! This test kills the shared broker, so it lives alone in its own test binary.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use common::{assert_exactly_once_never_early, committed, ms, post, InProcess};

use fanout_producer::{PublishOptions, Publisher};
use fanout_testkit::{
    service::Stack,
    stack::{broker_pid, kill_broker, stack},
    wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_delivers_nothing_early_loses_nothing_duplicates_nothing() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt().with_env_filter("fanout_scheduler=info").try_init();
    let stack_ = Stack::start().await?;
    let kafka = stack_.kafka.clone();
    let target = kafka.topic("scheduled-broker", 3).await?;
    let scheduler = InProcess::start(&kafka, "schedule-broker").await?;

    let mut publisher_config = stack_.publisher_config("scheduling-broker-test");
    publisher_config.schedule_topic = scheduler.schedule_topic.name().to_owned();
    let publisher = Publisher::new(publisher_config)?;
    let to = PublishOptions::new().topic(target.name());
    // 2,000 entries from 3 s to 23 s from now: the restart lands among them.
    let count = 2_000;
    let start = SystemTime::now() + Duration::from_secs(3);
    let mut due: HashMap<String, i64> = HashMap::new();
    for n in 0..count {
        let at = start + Duration::from_millis(n * 10);
        let scheduled = publisher.publish_at(&post((n % 100) as i64, n as i64), at, &to).await?;
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
        anyhow::ensure!(!scheduler.running.is_finished(), "the scheduler stopped during the broker restart");
        Ok(committed(&kafka, target.name()).await?.len() >= due.len())
    })
    .await?;
    let delivered = committed(&kafka, target.name()).await?;
    assert_exactly_once_never_early(&delivered, &due);

    scheduler.stop(&kafka).await?;
    stack_.stop().await
}
