//! `fanout flow start|show` with the real binary: a run started from the command line runs to
//! its end through the engine and a worker, and `show` draws it with its critical path and the
//! timetable it beat.

use std::time::Duration;

use anyhow::ensure;
use fanout_flows::{Engine, EngineConfig, WorkerConfig};
use fanout_testkit::{service::Stack, unique_name, wait_until};

const FLOW: &str = r#"
name = "nightly"
[[tasks]]
name = "extract"
command = ["sh", "-c", "sleep 1"]
expect_within = "5s"
[[tasks]]
name = "clean"
command = ["true"]
expect_within = "5s"
[[tasks]]
name = "join"
after = ["extract", "clean"]
command = ["true"]
expect_within = "5s"
"#;

async fn fanout(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanout")).args(args).output().await?;
    ensure!(out.status.success(), "fanout {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_started_from_the_command_line_is_shown_with_its_critical_path() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("nightly.toml"), FLOW)?;
    let config = EngineConfig {
        name: unique_name("flow-engine"),
        flows: dir.path().to_owned(),
        topic_prefix: unique_name("flows"),
        partitions: 3,
        state_topic: unique_name("flow-state"),
        schedule_topic: unique_name("no-scheduler"),
        kafka: fanout_config::KafkaSettings { bootstrap: kafka.bootstrap().to_owned(), ..Default::default() },
        registry: fanout_schema_registry::RegistrySettings {
            urls: vec![stack.registry_url().to_owned()],
            ..Default::default()
        },
        http: fanout_config::HttpSettings::on("127.0.0.1:0"),
        ..EngineConfig::default()
    };
    let topics = config.topics();
    let engine = Engine::start(config.clone()).await?;
    let (stop_engine, engine_stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = tokio::spawn(engine.run(async move {
        let _ = engine_stopped.await;
    }));
    let workers = unique_name("flow-workers");
    let worker = WorkerConfig {
        group: workers.clone(),
        flows: fanout_flows::load_flows(dir.path())?,
        topics: topics.clone(),
        concurrency: 4,
        worker: "cli-test".into(),
        kafka: config.kafka.clone(),
        registry: config.registry.clone(),
    };
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(fanout_flows::run_worker(worker, async move {
        let _ = worker_stopped.await;
    }));

    let common = [
        "--topic-prefix",
        config.topic_prefix.as_str(),
        "--bootstrap",
        kafka.bootstrap(),
        "--registry",
        stack.registry_url(),
    ];
    let started =
        fanout(&[&["flow", "start", "nightly", "--run", "2026-11-30"], common.as_slice()].concat()).await?;
    assert!(started.contains("\"run\":\"2026-11-30\""), "{started}");
    let flows = dir.path().to_string_lossy().into_owned();
    let show =
        [&["flow", "show", "nightly", "--run", "2026-11-30", "--flows", flows.as_str()], common.as_slice()]
            .concat();
    wait_until(Duration::from_secs(60), "the run to finish", || async {
        // Finished once join, the last task, has its run time.
        Ok(fanout(&show)
            .await?
            .lines()
            .any(|line| line.contains("join") && line.contains("run ") && !line.contains("run       -")))
    })
    .await?;
    let chart = fanout(&show).await?;
    eprintln!("{chart}");
    assert!(chart.contains("critical path: extract -> join"), "{chart}");
    assert!(chart.contains("on a timetable"), "{chart}");
    let unknown = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(
            [&["flow", "show", "weekly", "--run", "x", "--flows", flows.as_str()], common.as_slice()]
                .concat(),
        )
        .output()
        .await?;
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no flow weekly"), "the error names the flow");

    let _ = stop_worker.send(());
    worker.await??;
    let _ = stop_engine.send(());
    engine.await??;
    for name in [
        &topics.requested,
        &topics.started,
        &topics.succeeded,
        &topics.failed,
        &topics.late,
        &config.state_topic,
    ] {
        kafka.delete_topic(name).await?;
    }
    wait_until(Duration::from_secs(30), "the groups to go", || async {
        Ok(kafka.delete_groups(&[&config.name, &workers]).await.is_ok())
    })
    .await?;
    stack.stop().await
}
