//! Statistics over repetitions and the report every scenario prints into.
//!
//! Every figure is a median over repetitions with its spread (min–max), and every comparison is
//! the median of per-repetition ratios: Fanout and its peer run back to back in each repetition,
//! so a repetition's ratio sees the same machine load on both sides. That is what makes the
//! figures usable on a shared, noisy machine where absolute rates drift between repetitions.

use std::fmt::Write as _;

/// Samples of one figure, one per repetition.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Adds one repetition's value.
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// How many repetitions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The median (mean of the middle two for an even count); NaN when empty.
    pub fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// The smallest sample.
    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The largest sample.
    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// Per-repetition ratios `self[i] / peer[i]`.
    pub fn ratios(&self, peer: &Samples) -> Samples {
        Samples(self.0.iter().zip(&peer.0).map(|(a, b)| a / b).collect())
    }
}

/// What a ratio must reach.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The ratio must be at least this (rates: higher is better).
    AtLeast(f64),
    /// The ratio must be at most this (latencies, CPU: lower is better).
    AtMost(f64),
}

impl Target {
    fn met(self, ratio: f64) -> bool {
        match self {
            Self::AtLeast(t) => ratio >= t,
            Self::AtMost(t) => ratio <= t,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::AtLeast(t) => format!("≥ {t}×"),
            Self::AtMost(t) => format!("≤ {t}×"),
        }
    }

    /// How far `ratio` is from the target, as a signed percentage of the target (negative =
    /// missed by that much).
    fn margin(self, ratio: f64) -> f64 {
        match self {
            Self::AtLeast(t) => (ratio / t - 1.0) * 100.0,
            Self::AtMost(t) => (t / ratio - 1.0) * 100.0,
        }
    }
}

/// One compared figure: Fanout's samples, the peer's, and the target on their ratio.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Scenario number and name, e.g. `1 produce`.
    pub scenario: String,
    /// What is measured, e.g. `1 KB, events/s`.
    pub metric: String,
    /// The Fanout side, named.
    pub fanout: (String, Samples),
    /// The peer side, named.
    pub peer: (String, Samples),
    /// The unit both sides are in.
    pub unit: Unit,
    /// The target on `fanout / peer`, when the issue sets one.
    pub target: Option<Target>,
    /// A figure the Fanout side must reach on its own (a rate, in the row's unit), when the issue
    /// sets one besides the ratio.
    pub floor: Option<f64>,
}

/// How to print a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Events (or operations) per second.
    PerSecond,
    /// Microseconds.
    Micros,
    /// A plain count (events).
    Count,
    /// Milliseconds.
    Millis,
    /// Seconds.
    Seconds,
    /// Mebibytes (memory).
    MiB,
}

impl Unit {
    fn number(self, value: f64) -> String {
        match self {
            Self::PerSecond => group(value),
            Self::Micros if value < 100.0 => format!("{value:.1}"),
            Self::Micros => group(value),
            Self::Count => group(value),
            Self::Millis | Self::Seconds if value < 100.0 => format!("{value:.1}"),
            Self::Millis | Self::Seconds | Self::MiB => group(value),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::PerSecond => "/s",
            Self::Micros => " µs",
            Self::Count => "",
            Self::Millis => " ms",
            Self::Seconds => " s",
            Self::MiB => " MiB",
        }
    }
}

/// Thousands separators, no decimals.
fn group(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn spread(unit: Unit, samples: &Samples) -> String {
    if samples.len() < 2 {
        return format!("{}{}", unit.number(samples.median()), unit.suffix());
    }
    format!(
        "{}{} ({}–{})",
        unit.number(samples.median()),
        unit.suffix(),
        unit.number(samples.min()),
        unit.number(samples.max())
    )
}

/// Two decimals, or four significant ones for ratios far below 1 (0.00× would hide them).
fn ratio(value: f64) -> String {
    if !value.is_finite() {
        // A peer figure of zero (nothing outstanding) has no ratio.
        return "n/a".to_owned();
    }
    if value < 0.1 {
        format!("{value:.4}")
    } else {
        format!("{value:.2}")
    }
}

fn ratio_text(ratios: &Samples) -> String {
    if !ratios.median().is_finite() {
        return "n/a".to_owned();
    }
    if ratios.len() < 2 {
        return format!("{}×", ratio(ratios.median()));
    }
    format!("{}× ({}–{})", ratio(ratios.median()), ratio(ratios.min()), ratio(ratios.max()))
}

impl Comparison {
    /// `fanout / peer`, per repetition.
    pub fn ratios(&self) -> Samples {
        self.fanout.1.ratios(&self.peer.1)
    }

    /// "met", "MISSED by x%" or "-" (no target); an absolute floor gets its own verdict after
    /// the ratio's.
    pub fn verdict(&self) -> String {
        let mut verdicts = Vec::new();
        if let Some(target) = self.target {
            verdicts.push(verdict(target, self.ratios().median(), &target.describe()));
        }
        if let Some(floor) = self.floor {
            let describe = format!("≥ {}{}", self.unit.number(floor), self.unit.suffix());
            verdicts.push(verdict(Target::AtLeast(floor), self.fanout.1.median(), &describe));
        }
        if verdicts.is_empty() {
            return "-".to_owned();
        }
        verdicts.join("; ")
    }

    /// Targets missed in this row (ratio and floor count separately).
    pub fn missed(&self) -> usize {
        let ratio = self.target.is_some_and(|t| !t.met(self.ratios().median()));
        let floor = self.floor.is_some_and(|f| self.fanout.1.median() < f);
        usize::from(ratio) + usize::from(floor)
    }
}

/// A figure the issue bounds on its own (a latency, a memory size, a recovery time), with the
/// peer's beside it when there is one: the ratio is printed for reading, the verdict is on the
/// bound.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Scenario number and name, e.g. `7 schedule`.
    pub scenario: String,
    /// What is measured.
    pub metric: String,
    /// The Fanout side, named.
    pub fanout: (String, Samples),
    /// The peer side, when there is one.
    pub peer: Option<(String, Samples)>,
    /// The unit both sides are in.
    pub unit: Unit,
    /// The bound on the Fanout side's median (in the row's unit), when the issue sets one: at
    /// most a latency, at least a rate.
    pub bound: Option<Target>,
}

impl Limit {
    fn cells(&self) -> [String; 6] {
        let (peer_name, peer_spread, ratios) = match &self.peer {
            Some((name, samples)) => {
                (name.clone(), spread(self.unit, samples), ratio_text(&self.fanout.1.ratios(samples)))
            }
            None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        let verdict = match self.bound {
            Some(bound) => {
                let (sign, value) = match bound {
                    Target::AtLeast(v) => ("≥", v),
                    Target::AtMost(v) => ("≤", v),
                };
                let describe = format!("{sign} {}{}", self.unit.number(value), self.unit.suffix());
                verdict(bound, self.fanout.1.median(), &describe)
            }
            None => "-".to_owned(),
        };
        [self.fanout.0.clone(), spread(self.unit, &self.fanout.1), peer_name, peer_spread, ratios, verdict]
    }

    fn missed(&self) -> bool {
        self.bound.is_some_and(|b| !b.met(self.fanout.1.median()))
    }
}

/// "met (≥ 0.6×, +12%)" or "MISSED (≥ 0.6×, short by 40%)" for `value` against `target`.
fn verdict(target: Target, value: f64, describe: &str) -> String {
    if target.met(value) {
        format!("met ({describe}, {:+.0}%)", target.margin(value))
    } else {
        let short = -target.margin(value);
        let precision = if short > 99.0 { 1 } else { 0 };
        format!("MISSED ({describe}, short by {short:.precision$}%)")
    }
}

/// Everything a run measured, printed as it goes and summarised at the end.
#[derive(Debug, Default)]
pub struct Report {
    context: Vec<(String, String)>,
    comparisons: Vec<Comparison>,
    limits: Vec<Limit>,
    notes: Vec<String>,
}

impl Report {
    /// Records (and prints) one line of run context.
    pub fn context(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        println!("  {key:<28} {value}");
        self.context.push((key.to_owned(), value));
    }

    /// Records (and prints) a note the reader needs to interpret the figures.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.notes.push(note);
    }

    /// Records (and prints) one comparison.
    pub fn compare(&mut self, comparison: Comparison) {
        let c = &comparison;
        println!(
            "  {:<34} {:<22} {:<34} vs {:<24} {:<34} ratio {:<20} {}",
            c.metric,
            c.fanout.0,
            spread(c.unit, &c.fanout.1),
            c.peer.0,
            spread(c.unit, &c.peer.1),
            ratio_text(&c.ratios()),
            c.verdict()
        );
        self.comparisons.push(comparison);
    }

    /// Records (and prints) one bounded figure.
    pub fn limit(&mut self, limit: Limit) {
        let [name, value, peer, peer_value, ratios, verdict] = limit.cells();
        println!(
            "  {:<34} {:<22} {:<34} vs {:<24} {:<34} ratio {:<20} {}",
            limit.metric, name, value, peer, peer_value, ratios, verdict
        );
        self.limits.push(limit);
    }

    /// The summary as a Markdown table (the form BENCHMARKS.md takes it in).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| # | figure | Fanout | median (min–max) | peer | median (min–max) | ratio | target |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for c in &self.comparisons {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                c.scenario,
                c.metric,
                c.fanout.0,
                spread(c.unit, &c.fanout.1),
                c.peer.0,
                spread(c.unit, &c.peer.1),
                ratio_text(&c.ratios()),
                c.verdict()
            );
        }
        for limit in &self.limits {
            let [name, value, peer, peer_value, ratios, verdict] = limit.cells();
            let _ = writeln!(
                out,
                "| {} | {} | {name} | {value} | {peer} | {peer_value} | {ratios} | {verdict} |",
                limit.scenario, limit.metric
            );
        }
        if !self.context.is_empty() {
            let _ = writeln!(out, "\nContext:\n");
            for (key, value) in &self.context {
                let _ = writeln!(out, "- {key}: {value}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nNotes:\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// Comparisons whose target was missed.
    pub fn missed(&self) -> usize {
        self.comparisons.iter().map(Comparison::missed).sum::<usize>()
            + self.limits.iter().filter(|l| l.missed()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Samples {
        let mut s = Samples::new();
        for v in values {
            s.push(*v);
        }
        s
    }

    #[test]
    fn median_spread_and_paired_ratios() {
        let a = samples(&[3.0, 1.0, 2.0]);
        assert_eq!(a.median(), 2.0);
        assert_eq!((a.min(), a.max()), (1.0, 3.0));
        assert_eq!(samples(&[1.0, 2.0, 3.0, 10.0]).median(), 2.5);
        let ratios = samples(&[2.0, 4.0]).ratios(&samples(&[1.0, 8.0]));
        assert_eq!(ratios.median(), 1.25, "median of per-repetition ratios 2.0 and 0.5");
    }

    #[test]
    fn verdicts_say_by_how_much() {
        let c = Comparison {
            scenario: "1".into(),
            metric: "m".into(),
            fanout: ("f".into(), samples(&[80.0])),
            peer: ("p".into(), samples(&[100.0])),
            unit: Unit::PerSecond,
            target: Some(Target::AtLeast(0.85)),
            floor: None,
        };
        assert!(c.verdict().starts_with("MISSED"), "{}", c.verdict());
        assert!(c.verdict().contains("short by 6%"), "{}", c.verdict());
        let floored = Comparison { floor: Some(100.0), ..c.clone() };
        assert!(floored.verdict().ends_with("MISSED (≥ 100/s, short by 20%)"), "{}", floored.verdict());
        assert_eq!(floored.missed(), 2);
        assert_eq!(group(1234567.0), "1,234,567");
        assert_eq!(group(12.0), "12");
        assert_eq!(ratio(295.0 / 0.0), "n/a");
    }

    #[test]
    fn a_bounded_figure_is_judged_on_its_own_value() {
        let limit = Limit {
            scenario: "7".into(),
            metric: "p99".into(),
            fanout: ("scheduler".into(), samples(&[120.0])),
            peer: Some(("raw".into(), samples(&[10.0]))),
            unit: Unit::Millis,
            bound: Some(Target::AtMost(100.0)),
        };
        let [_, value, _, _, ratios, verdict] = limit.cells();
        assert_eq!(value, "120 ms");
        assert_eq!(ratios, "12.00×");
        assert_eq!(verdict, "MISSED (≤ 100 ms, short by 17%)");
        let mut report = Report::default();
        report.limit(limit.clone());
        report.limit(Limit { fanout: ("scheduler".into(), samples(&[80.0])), ..limit });
        assert_eq!(report.missed(), 1);
        assert!(report
            .markdown()
            .contains("| 7 | p99 | scheduler | 80.0 ms | raw | 10.0 ms | 8.00× | met (≤ 100 ms, +25%) |"));
    }
}
