//! `TaskLate`: a task not finished by its `expect_within` raises its alarm through the scheduler,
//! while it still runs; one that finishes in time raises none (the engine cancels the alarm in
//! the transaction that records the finish), nor does one started twice in one batch for its
//! first start (the alarm the second replaces is cancelled in the transaction that sets both).
//! The engine counts an alarm as a late task only while its attempt still runs, and keeps its
//! runs gauge right across a pause (its partitions given up, then restored).

mod common;

use std::time::Duration;

use common::{InProcess, InProcessWorker};
use fanout_flows::signals::{RunRequested, TaskLate};
use fanout_kafka::TopicRead;
use fanout_producer::{PublishOptions, Publisher};
use fanout_scheduler::{Scheduler, SchedulerConfig};
use fanout_schema_registry::AvroSerde;
use fanout_testkit::{service::Stack, unique_name, wait_until};

const FLOW: &str = r#"
name = "deadlines"
[[tasks]]
name = "quick"
command = ["true"]
expect_within = "2s"
[[tasks]]
name = "slow"
after = ["quick"]
command = ["sh", "-c", "sleep 4"]
expect_within = "1s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_past_its_expected_time_raises_its_alarm_and_one_in_time_none() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let schedule_topic = kafka.future_topic("flow-schedule");
    let scheduler_config = SchedulerConfig {
        name: unique_name("flow-scheduler"),
        topic: schedule_topic.name().to_owned(),
        partitions: 3,
        window_secs: 10,
        http: fanout_config::HttpSettings::on("127.0.0.1:0"),
        kafka: fanout_config::KafkaSettings { bootstrap: kafka.bootstrap().to_owned(), ..Default::default() },
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::start(scheduler_config.clone()).await?;
    let (stop_scheduler, scheduler_stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(scheduler.run(async move {
        let _ = scheduler_stopped.await;
    }));
    let engine = InProcess::start_with(&stack, FLOW, schedule_topic.name()).await?;
    let topics = engine.config.topics();
    let worker = InProcessWorker::start(&engine, 2)?;

    let publisher = Publisher::new(stack.publisher_config("late-test"))?;
    let request = RunRequested {
        flow: "deadlines".into(),
        run: "2026-11-30".into(),
        retry_task: None,
        cascade: false,
        requested_by: "test".into(),
    };
    let requested = PublishOptions::new().topic(&topics.requested);
    publisher.publish_with(&request, &requested).await?;

    let serde = AvroSerde::from_urls(&[stack.registry_url()])?;
    let mut read = kafka.client_config();
    read.set("isolation.level", "read_committed");
    wait_until(Duration::from_secs(30), "slow's alarm", || async {
        Ok(!TopicRead::new(&topics.late).read(&read).await?.is_empty())
    })
    .await?;
    // The alarm came while slow still ran: its success is not in yet.
    let successes = TopicRead::new(&topics.succeeded).read(&read).await?.len();
    assert_eq!(successes, 1, "only quick had succeeded when slow's alarm came");
    wait_until(Duration::from_secs(30), "slow to finish", || async {
        Ok(TopicRead::new(&topics.succeeded).read(&read).await?.len() >= 2)
    })
    .await?;
    engine.wait_caught_up(&kafka).await?;

    // quick is asked to run again twice, both requests read in one batch (written while the
    // engine is paused): attempts 2 and 3 start in one transaction, each with its alarm. And an
    // alarm of slow's finished attempt comes late, as one dispatched just before its cancel.
    let engine = engine.pause().await?;
    let retry = RunRequested { retry_task: Some("quick".into()), ..request };
    for sent in publisher.publish_all(&[retry.clone(), retry], &requested).await {
        sent?;
    }
    let stale = TaskLate {
        flow: "deadlines".into(),
        run: "2026-11-30".into(),
        task: "slow".into(),
        attempt: 1,
        started_at: 0,
        expected_by: 1_000,
    };
    publisher.publish_with(&stale, &PublishOptions::new().topic(&topics.late)).await?;
    let engine = engine.resume().await?;
    wait_until(Duration::from_secs(30), "quick's attempts 2 and 3 to finish", || async {
        Ok(TopicRead::new(&topics.succeeded).read(&read).await?.len() >= 4)
    })
    .await?;
    engine.wait_caught_up(&kafka).await?;

    // quick's alarms, one per attempt: each in the schedule topic, cancelled (attempts 1 and 3
    // by the transaction that recorded their success, attempt 2's by the one that replaced it
    // with attempt 3's), and listed by no dispatch marker — so never to be delivered.
    let schedule = TopicRead::new(schedule_topic.name()).read(&read).await?;
    let mut quick_alarms = Vec::new();
    for record in schedule.iter().filter(|r| r.header(fanout_core::schedule::DELIVER_AT).is_some()) {
        let alarm = serde.decode::<TaskLate>(record.payload.as_deref().unwrap_or_default()).await?;
        if alarm.task == "quick" {
            quick_alarms.push((alarm.attempt, record.key.clone().unwrap_or_default()));
        }
    }
    quick_alarms.sort();
    let attempts: Vec<i32> = quick_alarms.iter().map(|(attempt, _)| *attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "an alarm for each of quick's attempts");
    for (attempt, key) in &quick_alarms {
        let cancelled = schedule.iter().any(|r| {
            r.key.as_ref() == Some(key)
                && r.payload.is_none()
                && r.header(fanout_core::schedule::OUTCOME) == Some("cancelled")
        });
        assert!(cancelled, "the alarm of quick's attempt {attempt} was cancelled");
        let id = String::from_utf8_lossy(key).into_owned();
        let dispatched = schedule
            .iter()
            .filter(|r| r.key.as_deref() == Some(fanout_core::schedule::MARKER_KEY.as_bytes()))
            .any(|r| {
                fanout_core::schedule::marker::decode(r.payload.as_deref().unwrap_or_default())
                    .any(|(listed, _)| listed == id)
            });
        assert!(!dispatched, "the alarm of quick's attempt {attempt} was dispatched");
    }
    let mut alarms = Vec::new();
    for record in TopicRead::new(&topics.late).read(&read).await? {
        alarms.push(serde.decode::<TaskLate>(&record.payload.unwrap_or_default()).await?);
    }
    alarms.retain(|alarm| *alarm != stale);
    assert_eq!(alarms.len(), 1, "one alarm, slow's: {alarms:?}");
    let alarm = &alarms[0];
    assert_eq!((alarm.task.as_str(), alarm.attempt), ("slow", 1));
    assert_eq!(alarm.expected_by - alarm.started_at, 1_000);
    // slow's alarm counted (it came while slow ran), not the stale one; the run is counted once
    // although the engine was paused and resumed.
    engine
        .wait_metrics(&[
            ("fanout_flow_tasks_late_total", 1.0),
            ("fanout_flow_runs{state=\"succeeded\"}", 1.0),
            ("fanout_flow_runs{state=\"running\"}", 0.0),
            ("fanout_flow_runs{state=\"failed\"}", 0.0),
        ])
        .await?;

    worker.stop(&kafka).await?;
    engine.stop(&kafka).await?;
    let _ = stop_scheduler.send(());
    scheduler.await??;
    kafka.delete_topic(&fanout_core::schedule::dead_letters(schedule_topic.name())).await?;
    wait_until(Duration::from_secs(30), "the groups to go", || async {
        Ok(kafka.delete_groups(&[&scheduler_config.name]).await.is_ok())
    })
    .await?;
    stack.stop().await
}
