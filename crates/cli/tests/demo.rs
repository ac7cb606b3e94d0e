//! The main job end to end, as README's first command runs it: 5,000 mixed events with about 5%
//! re-sent duplicates and a few poison records through rewards, pinning and stats. The demo
//! checks every user's read-API totals against an independent computation from the published
//! events and exits non-zero on any difference; this test also reads its summary table. The
//! terminal shows the demo's own output only: every log line goes to the log file it names, where
//! the poison records' dead letters are logged.

use std::process::Command;

use anyhow::{ensure, Context};

/// One row of the demo's summary table.
#[derive(Debug)]
struct Row {
    consumer: String,
    applied: u64,
    duplicates: u64,
    dead_lettered: u64,
    check: String,
}

fn rows(stdout: &str) -> Vec<Row> {
    stdout
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let name = *cells.first()?;
            if !["rewards", "pinning", "stats"].contains(&name) || cells.len() < 8 {
                return None;
            }
            // consumer applied duplicates dead-lettered p50 "ms" p99 "ms" check metrics
            Some(Row {
                consumer: name.to_owned(),
                applied: cells[1].parse().ok()?,
                duplicates: cells[2].parse().ok()?,
                dead_lettered: cells[3].parse().ok()?,
                check: cells.get(cells.len() - 2)?.to_string(),
            })
        })
        .collect()
}

/// The "(N re-sent duplicates, K poison)" of the demo's "published" line.
fn published(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with("published "))?;
    let inner = line.split('(').nth(1)?.split(')').next()?;
    let mut numbers = inner.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

#[test]
fn five_thousand_mixed_events_every_effect_once_duplicates_counted_poison_dead_lettered() -> anyhow::Result<()>
{
    // Fails loudly, with how to start it, when no broker answers.
    let runtime = tokio::runtime::Runtime::new()?;
    let kafka = runtime.block_on(fanout_testkit::Kafka::connect())?;
    let logs = tempfile::tempdir()?;
    let log_dir = logs.path().to_str().context("a UTF-8 temporary directory")?;
    let output = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["demo", "--events", "5000", "--rate", "0", "--poison", "3", "--bootstrap", kafka.bootstrap()])
        .args(["--log-dir", log_dir])
        // At the demo's own default level, as `make demo` runs it.
        .env_remove("FANOUT_LOG")
        .output()
        .context("running fanout demo")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "fanout demo failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");

    let (resent, poison) = published(&stdout).context("no 'published' line")?;
    assert_eq!(poison, 3);
    assert!((150..=350).contains(&resent), "about 5% of 5000 re-sent, got {resent}");
    let rows = rows(&stdout);
    assert_eq!(rows.len(), 3, "one row per consumer:\n{stdout}");
    for row in &rows {
        assert_eq!(row.applied, 5000, "{}: every distinct event applied once", row.consumer);
        assert!(
            row.duplicates >= resent,
            "{}: {} duplicates, {resent} re-sent",
            row.consumer,
            row.duplicates
        );
        assert_eq!(row.dead_lettered, 3, "{}: the poison records dead-lettered", row.consumer);
        assert_eq!(row.check, "ok", "{}: read API agrees with the published events", row.consumer);
    }
    assert!(stdout.contains("demo OK: every effect applied exactly once"), "{stdout}");
    // Plain `fanout demo` runs every scenario: the task flow and the payments too, checked by
    // themselves.
    assert!(stdout.contains("flows demo OK"), "{stdout}");
    assert!(
        stdout.contains("critical path: extract-orders -> join")
            || stdout.contains("critical path: extract-users -> join"),
        "{stdout}"
    );
    // And the payments scenario: each requester's results once, its lost charges as timeouts.
    assert!(stdout.contains("payments OK"), "{stdout}");
    for requester in ["orders", "memberships"] {
        let row =
            stdout.lines().find(|l| l.starts_with(&format!("{requester} "))).context("a requester row")?;
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..], ["30", "28", "2", "0", "0", "ok"], "{row}");
    }
    let refused = stdout.lines().find(|l| l.starts_with("gateway:")).context("the gateway line")?;
    assert!(!refused.ends_with(" 0 refused (401)"), "a forged callback was sent and refused: {refused}");

    // The terminal: the demo's output, no log line.
    for text in [&stdout, &stderr] {
        assert!(!text.contains("WARN") && !text.contains("ERROR"), "a log line on the terminal:\n{text}");
    }
    // Named at the start and again in the summary.
    let named: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("log file")).map(str::trim).collect();
    ensure!(named.len() == 2 && named[0] == named[1], "the log file named twice:\n{stdout}");
    let log_file = std::path::PathBuf::from(named[0]);
    assert!(log_file.starts_with(logs.path()), "{} is in --log-dir", log_file.display());
    let dead = stdout.lines().find(|l| l.starts_with("dead letters:")).context("a dead letters line")?;
    assert!(dead.contains("3 per consumer, as expected: the 3 poison record(s) sent on purpose"), "{dead}");
    // The log file: each consumer's three dead letters, and the end of a partition is no warning.
    let log =
        std::fs::read_to_string(&log_file).with_context(|| format!("reading {}", log_file.display()))?;
    let dead_lettered: Vec<&str> = log.lines().filter(|l| l.contains("event dead-lettered")).collect();
    assert_eq!(dead_lettered.len(), 9, "3 poison records x 3 consumers:\n{}", dead_lettered.join("\n"));
    for consumer in ["rewards", "pinning", "stats"] {
        let theirs = dead_lettered.iter().filter(|l| l.contains(&format!("consumer={consumer} "))).count();
        assert_eq!(theirs, 3, "{consumer}:\n{}", dead_lettered.join("\n"));
    }
    assert!(
        dead_lettered.iter().all(|l| l.contains("ERROR") && l.contains("undecodable")),
        "{dead_lettered:?}"
    );
    assert!(!log.contains("PartitionEOF"), "end of partition logged:\n{log}");
    Ok(())
}
