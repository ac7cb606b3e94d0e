//! The real `fanout-rewards` binary: it refuses a misspelt key by name, and it runs from a
//! config file until SIGTERM, publishing a Prometheus scrape target meanwhile.

use std::{
    io::Read,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use fanout_events::{Category, PostPublished};
use fanout_testkit::{
    service::{get_json, wait_for_json, Stack},
    wait_until,
};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_fanout-rewards");
const LIMIT: Duration = Duration::from_secs(60);

/// The binary with a clean environment: `FANOUT_*` variables of the developer's shell (or of
/// the test kit) would otherwise be read as configuration keys.
fn command(config: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.arg("--config").arg(config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FANOUT_") {
            command.env_remove(key);
        }
    }
    command
}

/// Waits for `child` to exit within `limit`; kills it (this test's own child, by handle) and
/// fails otherwise.
fn wait_for_exit(child: &mut Child, limit: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("fanout-rewards did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the child's stderr to its end on a thread of its own, so a chatty child never blocks
/// on a full pipe while the test waits for something else.
fn drain_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    })
}

fn joined(reader: std::thread::JoinHandle<String>) -> String {
    reader.join().unwrap_or_else(|_| "(the stderr reader panicked)".to_owned())
}

#[test]
fn a_misspelt_key_refuses_to_start_and_names_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (text, key) in [
        ("name = \"rewards\"\n[service]\nbeans_per_jb_post = 10\n", "beans_per_jb_post"),
        ("name = \"rewards\"\n[kafka]\nbootstrapp = \"127.0.0.1:9092\"\n", "bootstrapp"),
        ("nmae = \"rewards\"\n", "nmae"),
    ] {
        let path = dir.path().join("rewards.toml");
        std::fs::write(&path, text)?;
        let mut child = command(&path).spawn().context("starting fanout-rewards")?;
        let reader = drain_stderr(&mut child);
        let status = wait_for_exit(&mut child, Duration::from_secs(30))?;
        let stderr = joined(reader);
        assert!(!status.success(), "{key}: exited {status}; stderr: {stderr}");
        assert!(stderr.contains(key), "{key}: stderr does not name it: {stderr}");
        assert!(stderr.starts_with("fanout-rewards: "), "{stderr}");
    }
    Ok(())
}

#[test]
fn a_missing_config_file_is_named() -> anyhow::Result<()> {
    let mut child = command(Path::new("/nonexistent/rewards.toml")).spawn()?;
    let reader = drain_stderr(&mut child);
    let status = wait_for_exit(&mut child, Duration::from_secs(30))?;
    let stderr = joined(reader);
    assert!(!status.success());
    assert!(stderr.contains("/nonexistent/rewards.toml"), "{stderr}");
    Ok(())
}

/// Started from a file, with JSON logs and a targets directory from the environment: the scrape
/// target appears, the read API answers, SIGTERM stops it cleanly and takes the target away.
#[tokio::test(flavor = "multi_thread")]
async fn runs_from_its_config_file_until_sigterm() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("rewards-bin", 1).await?;
    let dir = tempfile::tempdir()?;
    let targets = dir.path().join("targets");
    let name = fanout_testkit::unique_name("rewards");
    let config = dir.path().join("rewards.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"{name}\"\n\
             [service]\ntopic = \"{topic}\"\nbeans_per_job_post = 58\n\
             [kafka]\nbootstrap = \"{bootstrap}\"\n\
             [registry]\nurls = [\"{registry}\"]\n\
             [store]\nurl = \"sqlite:{db}\"\n\
             [processing]\ncommit_interval_ms = 200\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            topic = topic.name(),
            bootstrap = stack.kafka.bootstrap(),
            registry = stack.registry_url(),
            db = dir.path().join("rewards.db").display(),
        ),
    )?;
    let mut child = command(&config)
        .env(fanout_service::TARGETS_DIR_ENV, &targets)
        .env("FANOUT_LOG_FORMAT", "json")
        .spawn()
        .context("starting fanout-rewards")?;
    let reader = drain_stderr(&mut child);
    let result = exercise(&stack, &mut child, topic.name(), &name, &targets).await;
    if result.is_err() {
        // Never leave the child behind a failed assertion.
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = joined(reader);
    result.with_context(|| format!("fanout-rewards stderr:\n{stderr}"))?;

    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log output");
    for line in lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}"))?;
        assert!(parsed.get("level").is_some(), "{line}");
    }
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}

async fn exercise(
    stack: &Stack,
    child: &mut Child,
    topic: &str,
    name: &str,
    targets: &Path,
) -> anyhow::Result<()> {
    let target_file = std::cell::RefCell::new(None);
    wait_until(LIMIT, "the scrape target file", || async {
        let found = std::fs::read_dir(targets)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "json"));
        let present = found.is_some();
        *target_file.borrow_mut() = found;
        Ok(present)
    })
    .await?;
    let target_file = target_file.into_inner().context("target file vanished")?;
    let target: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&target_file)?)?;
    assert_eq!(target[0]["labels"], json!({"service": name}), "{target}");
    let address = target[0]["targets"][0].as_str().context("no target address")?.to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    let metrics = reqwest::get(format!("http://{address}/metrics")).await?;
    assert_eq!(metrics.status(), 200);
    let (status, _) = get_json(&format!("http://{address}/v1/users/9/beans")).await?;
    assert_eq!(status, 404);

    let post = |post_id| PostPublished {
        post_id,
        user_id: 9,
        category: Category::Job,
        city: "Wuhan".into(),
        title: "Cook".into(),
        published_at: 1_764_000_000_000,
    };
    stack.publish(topic, &[post(1), post(2)]).await?;
    wait_for_json(
        &format!("http://{address}/v1/users/9/beans"),
        &json!({"user_id": 9, "balance": 116, "ledger_entries": 2}),
        LIMIT,
    )
    .await?;

    // SIGTERM to this test's own child, by pid.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    anyhow::ensure!(killed.success(), "kill -TERM failed");
    let status = tokio::task::block_in_place(|| wait_for_exit(child, LIMIT))?;
    anyhow::ensure!(status.success(), "fanout-rewards exited {status} after SIGTERM");
    anyhow::ensure!(!target_file.exists(), "the scrape target {} was left behind", target_file.display());
    Ok(())
}

/// The ledger rows and the sum of balances in the service's SQLite file, read beside the
/// running (or killed) process.
async fn ledger(db: &Path) -> anyhow::Result<(i64, i64)> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await?;
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM rewards_ledger").fetch_one(&pool).await.unwrap_or(0);
    let balance: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(balance), 0) FROM rewards_balances")
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
    pool.close().await;
    Ok((rows, balance))
}

/// `kill -9` of the real process in the middle of its batches, then a restart with the same
/// config: every event credited exactly once. Offsets are committed rarely, so the kill lands
/// between effects committed in the store and offsets committed in Kafka, and the restarted
/// process must meet those events again and skip them as duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_batch_then_restart_credits_every_event_exactly_once() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let topic = stack.topic("rewards-kill", 3).await?;
    let dir = tempfile::tempdir()?;
    let name = fanout_testkit::unique_name("rewards");
    let db = dir.path().join("rewards.db");
    // A fixed port, so the restarted process serves /metrics where the test looks.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.path().join("rewards.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"{name}\"\n\
             [service]\ntopic = \"{topic}\"\n\
             [kafka]\nbootstrap = \"{bootstrap}\"\n\
             [registry]\nurls = [\"{registry}\"]\n\
             [store]\nurl = \"sqlite:{db}\"\n\
             [processing]\ncommit_interval_ms = 60000\nbatch_size = 5\nkey_parallelism = 2\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n",
            topic = topic.name(),
            bootstrap = stack.kafka.bootstrap(),
            registry = stack.registry_url(),
            db = db.display(),
        ),
    )?;
    let total = 2_000_i64;
    let events: Vec<PostPublished> = (0..total)
        .map(|i| PostPublished {
            post_id: i,
            user_id: i % 41,
            category: Category::Job,
            city: "Wuhan".into(),
            title: format!("job {i}"),
            published_at: 1_764_000_000_000 + i,
        })
        .collect();
    stack.publish(topic.name(), &events).await?;

    let mut first = command(&config).stderr(Stdio::null()).spawn().context("starting fanout-rewards")?;
    let started = wait_until(LIMIT, "a tenth of the events credited", || async {
        Ok(ledger(&db).await.map(|(rows, _)| rows >= total / 10).unwrap_or(false))
    })
    .await;
    first.kill()?; // SIGKILL: no drain, no commit, no goodbye to the group.
    first.wait()?;
    started?;
    let (at_kill, _) = ledger(&db).await?;
    anyhow::ensure!(at_kill < total, "the process finished before it was killed; publish more events");

    let mut second = command(&config).stderr(Stdio::null()).spawn().context("restarting fanout-rewards")?;
    let finished = wait_until(Duration::from_secs(180), "every event credited after the restart", || async {
        Ok(ledger(&db).await.map(|(rows, _)| rows >= total).unwrap_or(false))
    })
    .await;
    let duplicates = async {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await?.text().await?;
        anyhow::Ok(
            text.lines()
                .filter(|l| l.starts_with("fanout_consumed_total") && l.contains("outcome=\"duplicate\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>(),
        )
    }
    .await;
    Command::new("kill").args(["-TERM", &second.id().to_string()]).status()?;
    let stopped = tokio::task::block_in_place(|| wait_for_exit(&mut second, LIMIT));
    finished?;

    let (rows, balance) = ledger(&db).await?;
    assert_eq!(rows, total, "one ledger row per event: none lost, none twice");
    assert_eq!(balance, total * 10, "balances credit every event once");
    assert!(duplicates? >= 1.0, "the restart met events credited before the kill and skipped them");
    anyhow::ensure!(stopped?.success(), "the restarted process did not stop cleanly on SIGTERM");
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}
