//! The main job end to end, as README's first command runs it: 5,000 mixed events with about 5%
//! re-sent duplicates and a few poison records through rewards, pinning and stats. The demo
//! checks every user's read-API totals against an independent computation from the published
//! events and exits non-zero on any difference; this test also reads its summary table.

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
    let output = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["demo", "--events", "5000", "--rate", "0", "--poison", "3", "--bootstrap", kafka.bootstrap()])
        .env("FANOUT_LOG", "error")
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
    assert!(stdout.contains("demo OK"), "{stdout}");
    Ok(())
}
