//! The full run's charts, as SVG (plotters' SVG backend: no system fonts needed, the viewer
//! renders the text): latency percentiles per rate for Fanout and the raw pair, and the consume
//! rate against the runtime's batch size beside the hand-written loop.
//!
//! The scenarios fill [`ChartData`] as they measure; shaping it into series is kept apart from
//! drawing so it can be tested without rendering anything.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

use super::peer::PEER_BATCH;

/// Which side of a latency comparison a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// SDK → the three services.
    Fanout,
    /// Raw producer → three raw consumers.
    Raw,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Self::Fanout => "Fanout",
            Self::Raw => "raw pair",
        }
    }
}

/// One side's latency percentiles at one rate (medians over repetitions), in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyPoint {
    /// Events per second.
    pub rate: f64,
    /// Whose latencies.
    pub side: Side,
    /// p50, p90 and p99, µs.
    pub quantiles: [f64; 3],
}

/// The percentiles the latency chart draws, in [`LatencyPoint::quantiles`] order.
pub const QUANTILES: [(f64, &str); 3] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")];

/// What the scenarios measured for the charts.
#[derive(Debug, Default, Clone)]
pub struct ChartData {
    /// Latency percentiles per rate and side.
    pub latency: Vec<LatencyPoint>,
    /// The runtime's consume rate (median events/s) per `processing.batch_size`.
    pub batch_sizes: Vec<(usize, f64)>,
    /// The hand-written loop's rate on the same store, for reference.
    pub batch_peer: Option<f64>,
}

/// One line of a chart: its legend, its side and its (x, y) points sorted by x.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    label: String,
    side: Side,
    quantile: usize,
    points: Vec<(f64, f64)>,
}

/// The latency chart's lines: one per side and percentile, rate → milliseconds.
fn latency_series(points: &[LatencyPoint]) -> Vec<Series> {
    let mut series = Vec::new();
    for side in [Side::Fanout, Side::Raw] {
        for (q, (_, name)) in QUANTILES.iter().enumerate() {
            let mut line: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.side == side)
                .map(|p| (p.rate, p.quantiles[q] / 1_000.0))
                .collect();
            if line.is_empty() {
                continue;
            }
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(Series {
                label: format!("{} {name}", side.label()),
                side,
                quantile: q,
                points: line,
            });
        }
    }
    series
}

/// Powers of ten around `values` (positive ones only), for a log axis that shows whole decades.
fn decades(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return None;
    }
    Some((
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()).max(10f64.powf(lo.log10().floor() + 1.0)),
    ))
}

/// A colour per side (Fanout red, raw blue), darker for higher percentiles.
fn colour(side: Side, quantile: usize) -> RGBColor {
    let shade = [200u8, 140, 80][quantile.min(2)];
    match side {
        Side::Fanout => RGBColor(230, shade.saturating_sub(60), shade.saturating_sub(60)),
        Side::Raw => RGBColor(shade.saturating_sub(60), shade.saturating_sub(20), 230),
    }
}

/// Writes the charts there is data for into `dir` (created); returns the files written.
pub fn write(dir: &Path, data: &ChartData) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    if !data.latency.is_empty() {
        let path = dir.join("latency.svg");
        latency_chart(&path, &data.latency).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    if !data.batch_sizes.is_empty() {
        let path = dir.join("consume-batch-size.svg");
        batch_size_chart(&path, &data.batch_sizes, data.batch_peer)
            .with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

// plotters' errors borrow the backend's error type; flatten them to text.
fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn latency_chart(path: &Path, points: &[LatencyPoint]) -> anyhow::Result<()> {
    let series = latency_series(points);
    let (y_lo, y_hi) =
        decades(series.iter().flat_map(|s| s.points.iter().map(|p| p.1))).context("no latency to draw")?;
    let (x_lo, x_hi) = decades(points.iter().map(|p| p.rate)).context("no rate to draw")?;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Fan-out latency, publish → three consumers (log scales)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("events/s")
        .y_desc("latency, ms")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(err)?;
    for line in &series {
        let colour = colour(line.side, line.quantile);
        let style = ShapeStyle { color: colour.to_rgba(), filled: true, stroke_width: 2 };
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(err)?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        chart.draw_series(line.points.iter().map(|p| Circle::new(*p, 3, style))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn batch_size_chart(path: &Path, rates: &[(usize, f64)], peer: Option<f64>) -> anyhow::Result<()> {
    let mut rates: Vec<(f64, f64)> = rates.iter().map(|(size, rate)| (*size as f64, *rate)).collect();
    rates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (x_lo, x_hi) = decades(rates.iter().map(|r| r.0)).context("no batch size to draw")?;
    let y_hi = rates.iter().map(|r| r.1).chain(peer).fold(0.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Consume with exactly-once effects on SQLite, by processing.batch_size", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), 0.0..y_hi.max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("batch_size (log scale)")
        .y_desc("events/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    let fanout = ShapeStyle { color: colour(Side::Fanout, 1).to_rgba(), filled: true, stroke_width: 2 };
    chart
        .draw_series(LineSeries::new(rates.iter().copied(), fanout))
        .map_err(err)?
        .label("Fanout runtime")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], fanout));
    chart.draw_series(rates.iter().map(|p| Circle::new(*p, 4, fanout))).map_err(err)?;
    if let Some(peer) = peer {
        let style = ShapeStyle { color: colour(Side::Raw, 1).to_rgba(), filled: true, stroke_width: 2 };
        chart
            .draw_series(LineSeries::new([(x_lo, peer), (x_hi, peer)], style))
            .map_err(err)?
            .label(format!("hand-written loop (poll batches of up to {PEER_BATCH})"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(rate: f64, side: Side, p50: f64) -> LatencyPoint {
        LatencyPoint { rate, side, quantiles: [p50, p50 * 2.0, p50 * 4.0] }
    }

    #[test]
    fn latency_lines_are_per_side_and_percentile_sorted_by_rate_in_milliseconds() {
        let points = [
            point(5_000.0, Side::Fanout, 8_000.0),
            point(1_000.0, Side::Raw, 4_000.0),
            point(1_000.0, Side::Fanout, 10_000.0),
        ];
        let series = latency_series(&points);
        assert_eq!(series.len(), 6, "three percentiles for each of two sides");
        assert_eq!(series[0].label, "Fanout p50");
        assert_eq!(series[0].points, vec![(1_000.0, 10.0), (5_000.0, 8.0)]);
        assert_eq!(series[2].label, "Fanout p99");
        assert_eq!(series[2].points, vec![(1_000.0, 40.0), (5_000.0, 32.0)]);
        assert_eq!(series[3].label, "raw pair p50");
        assert_eq!(series[3].points, vec![(1_000.0, 4.0)]);
    }

    #[test]
    fn log_axes_span_whole_decades() {
        assert_eq!(decades([3.2, 27_000.0]), Some((1.0, 100_000.0)));
        assert_eq!(decades([1_000.0, 10_000.0]), Some((1_000.0, 10_000.0)));
        assert_eq!(decades([5.0]), Some((1.0, 10.0)), "one value still gets a decade");
        assert_eq!(decades([0.0, f64::NAN]), None);
    }

    #[test]
    fn charts_are_written_as_svg() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = ChartData {
            latency: vec![point(1_000.0, Side::Fanout, 9_000.0), point(1_000.0, Side::Raw, 4_000.0)],
            batch_sizes: vec![(50, 4_000.0), (1_000, 40_000.0)],
            batch_peer: Some(60_000.0),
        };
        let written = write(dir.path(), &data).expect("draws");
        assert_eq!(written.len(), 2);
        for path in written {
            let svg = std::fs::read_to_string(&path).expect("reads");
            assert!(svg.starts_with("<svg"), "{}", path.display());
            assert!(svg.contains("events/s"));
        }
    }
}
