//! The context every run records: the machine, the Kafka version, and the Kafka tools' own
//! `kafka-producer-perf-test` rate on the same broker, so a reader can tell a slow machine from a
//! slow client.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context};

use super::{env::Env, report::Report, Plan};

/// Records cores, memory, CPU model and load.
pub fn machine(report: &mut Report) {
    let cores =
        std::thread::available_parallelism().map(|n| n.get().to_string()).unwrap_or_else(|_| "?".into());
    report.context("cores", cores);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
            .unwrap_or_else(|| "?".into())
    };
    report.context("memory", format!("{} total, {} available", field("MemTotal:"), field("MemAvailable:")));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_owned())
        .unwrap_or_else(|| "?".into());
    report.context("cpu", model);
    load(report, "load average at start");
}

/// Records the 1/5/15-minute load average: other work on the machine shows up here.
pub fn load(report: &mut Report, key: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    report.context(key, load.join(" "));
}

/// The broker's version as it logged it at start-up, else the version of the Kafka jars.
fn kafka_version(lib: &Path) -> String {
    // The line is in the current log or, after rotation, in one of the rotated ones.
    let logs = lib.parent().map(|kafka| kafka.join("logs")).into_iter().flat_map(|dir| {
        ["server.log", "server.log.1", "server.log.2", "server.log.3"].map(|name| dir.join(name))
    });
    for log in logs {
        let Ok(text) = std::fs::read_to_string(log) else { continue };
        let logged = text
            .lines()
            .rev()
            .find_map(|l| l.split("Kafka version: ").nth(1))
            .map(|v| v.split_whitespace().next().unwrap_or(v).to_owned());
        if let Some(version) = logged {
            return format!("Apache Kafka {version} (broker log)");
        }
    }
    let jar = std::fs::read_dir(lib).ok().and_then(|entries| {
        entries.filter_map(Result::ok).find_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix("kafka-clients-").and_then(|v| v.strip_suffix(".jar")).map(str::to_owned)
        })
    });
    match jar {
        Some(version) => format!("Apache Kafka {version} (jars in {})", lib.display()),
        None => "unknown (no Kafka jars found; pass --kafka-lib)".into(),
    }
}

/// Records the Kafka version and runs `kafka-producer-perf-test` (1 KB records, the SDK's
/// producer settings) against a fresh topic; a failure is recorded, not fatal.
pub async fn kafka(env: &Env, plan: &Plan, lib: &Path, report: &mut Report) {
    report.context("kafka", kafka_version(lib));
    match perf_test(env, plan, lib).await {
        Ok((rate, line)) => {
            report.context("kafka-producer-perf-test", format!("{rate:.0} records/s, 1 KB ({line})"));
        }
        Err(e) => report.context("kafka-producer-perf-test", format!("not run: {e:#}")),
    }
}

async fn perf_test(env: &Env, plan: &Plan, lib: &Path) -> anyhow::Result<(f64, String)> {
    if !lib.is_dir() {
        bail!("{} is not a directory; `scripts/stack up kafka` installs the jars there", lib.display());
    }
    let topic = env.topic("perf-test", 3).await?;
    let records = plan.perf_test_records.to_string();
    let classpath = format!("{}/*", lib.display());
    let props = [
        format!("bootstrap.servers={}", env.bootstrap),
        "acks=all".into(),
        "enable.idempotence=true".into(),
        "linger.ms=5".into(),
        "compression.type=lz4".into(),
        "batch.size=1000000".into(),
    ];
    let mut command = Command::new("java");
    command
        .args(["-Xms64m", "-Xmx512m", "-cp", &classpath, "org.apache.kafka.tools.ProducerPerformance"])
        .args(["--topic", &topic, "--num-records", &records, "--record-size", "1024", "--throughput", "-1"])
        .arg("--producer-props")
        .args(&props)
        .stdin(Stdio::null());
    let output =
        tokio::time::timeout(Duration::from_secs(180), tokio::process::Command::from(command).output())
            .await
            .context("kafka-producer-perf-test took over 180 s")?
            .context("starting java (kafka-producer-perf-test)")?;
    env.cleanup().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The last "records sent" line is the summary of the whole run.
    let summary = stdout.lines().rev().find(|l| l.contains("records sent") && l.contains("records/sec"));
    let Some(summary) = summary else {
        bail!(
            "no summary in its output (exit {}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default()
        );
    };
    // "50000 records sent, 41356.5 records/sec (40.39 MB/sec), 350.12 ms avg latency, ..."
    let rate = summary
        .split(',')
        .find(|part| part.contains("records/sec"))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .context("cannot parse the perf test's rate")?;
    Ok((rate, summary.trim().to_owned()))
}
