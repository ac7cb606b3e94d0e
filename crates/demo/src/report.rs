//! Reading the consumers' own metrics back, and the summary table.

use prometheus::proto::{Metric, MetricFamily};

/// What one consumer did with the demo's topic, from its Prometheus metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConsumerFigures {
    /// `fanout_consumed_total{outcome="ok"}`.
    pub applied: u64,
    /// `fanout_consumed_total{outcome="duplicate"}`.
    pub duplicates: u64,
    /// `fanout_consumed_total{outcome="dead_lettered"}`.
    pub dead_lettered: u64,
    /// `fanout_consumed_total{outcome="retried"}`.
    pub retried: u64,
    /// End-to-end latency quantiles in seconds, from `fanout_end_to_end_latency_seconds`.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl ConsumerFigures {
    /// Records the consumer finished (applied, skipped as duplicate or dead-lettered).
    pub fn finished(&self) -> u64 {
        self.applied + self.duplicates + self.dead_lettered
    }
}

fn label<'a>(metric: &'a Metric, name: &str) -> Option<&'a str> {
    metric.get_label().iter().find(|l| l.name() == name).map(|l| l.value())
}

fn of<'a>(
    families: &'a [MetricFamily],
    name: &'a str,
    consumer: &'a str,
    topic: &'a str,
) -> impl Iterator<Item = &'a Metric> + 'a {
    families
        .iter()
        .filter(move |f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(move |m| label(m, "consumer") == Some(consumer))
        .filter(move |m| label(m, "topic").is_some_and(|t| t == topic || t.starts_with(&format!("{topic}."))))
}

/// The figures of `consumer` on `topic` (its retry topic included) in `families`.
pub fn figures(families: &[MetricFamily], consumer: &str, topic: &str) -> ConsumerFigures {
    let mut figures = ConsumerFigures::default();
    for metric in of(families, "fanout_consumed_total", consumer, topic) {
        let value = metric.get_counter().get_value() as u64;
        match label(metric, "outcome") {
            Some("ok") => figures.applied += value,
            Some("duplicate") => figures.duplicates += value,
            Some("dead_lettered") => figures.dead_lettered += value,
            Some("retried") => figures.retried += value,
            _ => {}
        }
    }
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let mut total = 0;
    for metric in of(families, "fanout_end_to_end_latency_seconds", consumer, topic) {
        let histogram = metric.get_histogram();
        total += histogram.get_sample_count();
        for (i, bucket) in histogram.get_bucket().iter().enumerate() {
            match buckets.get_mut(i) {
                Some(b) => b.1 += bucket.cumulative_count(),
                None => buckets.push((bucket.upper_bound(), bucket.cumulative_count())),
            }
        }
    }
    figures.p50 = quantile(0.5, &buckets, total);
    figures.p99 = quantile(0.99, &buckets, total);
    figures
}

/// A quantile from cumulative histogram buckets, interpolated linearly inside the bucket the
/// rank falls in — the same estimate as PromQL's `histogram_quantile`.
pub fn quantile(q: f64, buckets: &[(f64, u64)], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for &(upper, count) in buckets {
        if count as f64 >= rank {
            let in_bucket = (count - lower_count) as f64;
            let fraction = if in_bucket > 0.0 { (rank - lower_count as f64) / in_bucket } else { 1.0 };
            return Some(lower_bound + (upper - lower_bound) * fraction);
        }
        lower_bound = upper;
        lower_count = count;
    }
    // Beyond the last finite bucket: all that can be said is "more than" its bound.
    Some(lower_bound)
}

fn millis(seconds: Option<f64>) -> String {
    seconds.map(|s| format!("{:.1} ms", s * 1000.0)).unwrap_or_else(|| "-".to_owned())
}

/// One row of the summary.
#[derive(Debug)]
pub struct Row {
    /// The consumer.
    pub consumer: String,
    /// Its figures.
    pub figures: ConsumerFigures,
    /// Where its `/metrics` is.
    pub metrics_url: String,
    /// Whether its read API agreed with the independent computation.
    pub verified: bool,
}

/// The summary table, one row per consumer.
pub fn table(rows: &[Row]) -> String {
    let header =
        ["consumer", "applied", "duplicates", "dead-lettered", "p50 e2e", "p99 e2e", "check", "metrics"];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.consumer.clone(),
                r.figures.applied.to_string(),
                r.figures.duplicates.to_string(),
                r.figures.dead_lettered.to_string(),
                millis(r.figures.p50),
                millis(r.figures.p99),
                if r.verified { "ok".to_owned() } else { "MISMATCH".to_owned() },
                r.metrics_url.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| if (1..=5).contains(&i) { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(&header.map(str::to_owned));
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for row in &cells {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

/// What the dead-lettered column means: the poison records the demo sent on purpose, each
/// dead-lettered once by every consumer; any other count is named (the check fails on it).
pub fn dead_letters(rows: &[Row], poison: u64) -> String {
    let unexpected: Vec<String> = rows
        .iter()
        .filter(|r| r.figures.dead_lettered != poison)
        .map(|r| format!("{} dead-lettered {}", r.consumer, r.figures.dead_lettered))
        .collect();
    if !unexpected.is_empty() {
        format!(
            "dead letters: UNEXPECTED: {}, but {poison} poison record(s) were sent (see the log file)",
            unexpected.join(", ")
        )
    } else if poison == 0 {
        "dead letters: none".to_owned()
    } else {
        format!(
            "dead letters: {poison} per consumer, as expected: the {poison} poison record(s) sent on purpose \
             (not Avro at all)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 100 samples: 50 below 10 ms, 49 in (10 ms, 20 ms], 1 in (20 ms, 1 s].
        let buckets = [(0.01, 50), (0.02, 99), (1.0, 100)];
        assert_eq!(quantile(0.5, &buckets, 100), Some(0.01));
        let p99 = quantile(0.99, &buckets, 100).unwrap_or_default();
        assert!((p99 - 0.02).abs() < 1e-9, "{p99}");
        let p75 = quantile(0.75, &buckets, 100).unwrap_or_default();
        assert!(p75 > 0.01 && p75 < 0.02, "{p75}");
        assert_eq!(quantile(0.5, &buckets, 0), None);
    }

    fn rows() -> [Row; 2] {
        [
            Row {
                consumer: "rewards".into(),
                figures: ConsumerFigures {
                    applied: 1000,
                    duplicates: 50,
                    dead_lettered: 1,
                    ..Default::default()
                },
                metrics_url: "http://127.0.0.1:9101/metrics".into(),
                verified: true,
            },
            Row {
                consumer: "stats".into(),
                figures: ConsumerFigures::default(),
                metrics_url: "http://127.0.0.1:9103/metrics".into(),
                verified: false,
            },
        ]
    }

    #[test]
    fn the_table_lines_up_and_flags_mismatches() {
        let table = table(&rows());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].contains("1000") && lines[2].contains(" ok "));
        assert!(lines[3].contains("MISMATCH"));
        // Numbers are right-aligned under their header.
        assert_eq!(
            lines[0].find("applied").map(|i| i + "applied".len()),
            lines[2].find("1000").map(|i| i + 4)
        );
    }

    #[test]
    fn dead_letters_are_the_poison_records_or_named_as_unexpected() {
        let [rewards, stats] = rows();
        let expected = dead_letters(std::slice::from_ref(&rewards), 1);
        assert!(expected.contains("as expected: the 1 poison record(s) sent on purpose"), "{expected}");
        let unexpected = dead_letters(&[rewards, stats], 1);
        assert!(unexpected.contains("UNEXPECTED: stats dead-lettered 0,"), "{unexpected}");
        assert!(!unexpected.contains("rewards"), "{unexpected}");
    }
}
