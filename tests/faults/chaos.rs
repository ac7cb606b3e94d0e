//! Fault 3: consumer chaos. Three `fanout-rewards` processes share one consumer group and one
//! PostgreSQL store; every two to four seconds one is killed (`kill -9`), stopped (SIGTERM) or
//! started, while 50,000 events are published. The ledger ends equal to what was published:
//! every event credited once.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context};
use fanout_testkit::{wait_until, Postgres};

use crate::common::{binary, cluster_stack, job_post, ledger, ledger_rows, publish_paced, LIMIT};

const EVENTS: i64 = 50_000;
const BEANS: i64 = 10;

struct Instance {
    child: Child,
    log: PathBuf,
}

fn spawn(config: &Path, log: PathBuf) -> anyhow::Result<Instance> {
    let file = std::fs::File::create(&log)?;
    let child = Command::new(binary("fanout-rewards")?)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .context("starting fanout-rewards")?;
    Ok(Instance { child, log })
}

/// Sends `signal` to the instance and reaps it, within a minute.
async fn stop_with(instance: &mut Instance, signal: &str) -> anyhow::Result<std::process::ExitStatus> {
    let pid = instance.child.id().to_string();
    ensure!(Command::new("kill").args([signal, &pid]).status()?.success(), "kill {signal} {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = instance.child.try_wait()? {
            return Ok(status);
        }
        ensure!(Instant::now() < deadline, "instance {pid} still running a minute after kill {signal}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small deterministic generator, so a failing run can be replayed from its printed seed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_killed_stopped_and_started_credit_every_event_once() -> anyhow::Result<()> {
    let (_cluster, stack) = cluster_stack().await?;
    let topic = stack.topic("fault-chaos", 6).await?;
    let db = Postgres::connect().await?.database().await?;
    let pool = sqlx::PgPool::connect_with(db.options()).await?;
    let dir = tempfile::tempdir()?;
    let name = fanout_testkit::unique_name("rewards");
    let config = dir.path().join("rewards.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"{name}\"\nlog = \"warn\"\n\
             [service]\ntopic = \"{topic}\"\nbeans_per_job_post = {BEANS}\n\
             [kafka]\nbootstrap = \"{bootstrap}\"\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n{login}\
             [registry]\nurls = [\"{registry}\"]\n\
             [store]\nurl = \"{store}\"\n\
             [processing]\ncommit_interval_ms = 500\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            topic = topic.name(),
            bootstrap = stack.kafka.bootstrap(),
            registry = stack.registry_url(),
            store = db.url(),
            // The cluster's SASL login, when the suite runs with one.
            login = stack
                .kafka
                .properties()
                .iter()
                .map(|(key, value)| format!("\"{key}\" = \"{value}\"\n"))
                .collect::<String>(),
        ),
    )?;

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64 | 1;
    let mut dice = Dice(seed);
    let mut logs = 0;
    let mut next_log = || {
        logs += 1;
        dir.path().join(format!("rewards-{logs}.log"))
    };
    let mut running: Vec<Instance> = Vec::new();
    for _ in 0..3 {
        running.push(spawn(&config, next_log())?);
    }

    // The upstream publishes at a steady pace for about forty seconds, while the chaos runs.
    let publishing = publish_paced(
        &stack,
        "fault-chaos",
        topic.name(),
        (0..EVENTS).map(job_post).collect(),
        250,
        Duration::from_millis(200),
    )?;

    let (mut killed, mut stopped, mut started) = (0, 0, 0);
    let chaos_until = Instant::now() + LIMIT;
    let result = async {
        while !publishing.is_finished() || killed + stopped + started < 12 {
            ensure!(Instant::now() < chaos_until, "the chaos phase did not end within {LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(2_000 + dice.roll(2_000))).await;
            let action = if running.len() <= 1 {
                2
            } else if running.len() == 3 {
                dice.roll(2)
            } else {
                dice.roll(3)
            };
            match action {
                0 | 1 => {
                    let mut victim = running.remove(dice.roll(running.len() as u64) as usize);
                    let status = stop_with(&mut victim, if action == 0 { "-9" } else { "-TERM" }).await?;
                    if action == 0 {
                        killed += 1;
                    } else {
                        ensure!(
                            status.success(),
                            "an instance exited {status} after SIGTERM (log {})",
                            victim.log.display()
                        );
                        stopped += 1;
                    }
                }
                _ => {
                    running.push(spawn(&config, next_log())?);
                    started += 1;
                }
            }
        }
        publishing.await??;
        // Back to three, then let them finish.
        while running.len() < 3 {
            running.push(spawn(&config, next_log())?);
        }
        wait_until(LIMIT, "every event credited", || {
            let pool = pool.clone();
            async move { Ok(ledger_rows(&pool).await >= EVENTS) }
        })
        .await
    }
    .await;
    for instance in &mut running {
        let _ = stop_with(instance, "-TERM").await;
    }
    if let Err(error) = result {
        for entry in std::fs::read_dir(dir.path())?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!(
                    "---- {} ----\n{}",
                    entry.path().display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        return Err(error.context(format!("chaos seed {seed}")));
    }

    let (rows, distinct, balance) = ledger(&pool).await?;
    eprintln!(
        "verdict: fault 3: {EVENTS} events published; {killed} kill -9, {stopped} SIGTERM, {started} starts \
         (seed {seed}); ledger {rows} rows, {distinct} distinct events, balances {balance} (expected {})",
        EVENTS * BEANS
    );
    ensure!(rows == EVENTS, "ledger holds {rows} rows for {EVENTS} events");
    ensure!(distinct == EVENTS, "ledger holds {distinct} distinct events for {EVENTS}");
    ensure!(balance == EVENTS * BEANS, "balances sum to {balance}, not {}", EVENTS * BEANS);
    ensure!(killed >= 1 && stopped >= 1 && started >= 1, "the chaos did not exercise every action");
    pool.close().await;
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}
