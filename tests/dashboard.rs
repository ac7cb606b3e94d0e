//! The Grafana dashboard queries only metrics Fanout exports, with labels they carry, so a
//! renamed metric or label shows up here instead of as an empty panel at 3 a.m.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use fanout_testkit::stack::repo_root;

/// Every `fanout_*` metric registered in the crates' sources, with its label names, read from
/// the `register_*!("name", "help", &["label", ...])` calls.
fn exported_metrics() -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut metrics = BTreeMap::new();
    let mut stack = vec![repo_root().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            for call in text.split("register_").skip(1) {
                let Some(body) = call.split_once("!(").map(|(_, b)| b) else { continue };
                let Some(name) = body.trim_start().strip_prefix('"').and_then(|b| b.split('"').next()) else {
                    continue;
                };
                if !name.starts_with("fanout_") {
                    continue;
                }
                // The label list is the first `&[...]` of the call.
                let labels: BTreeSet<String> = body
                    .split_once("&[")
                    .and_then(|(_, rest)| rest.split_once(']'))
                    .map(|(list, _)| {
                        list.split(',')
                            .map(|l| l.trim().trim_matches('"').to_owned())
                            .filter(|l| !l.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                metrics.insert(name.to_owned(), labels);
            }
        }
    }
    Ok(metrics)
}

/// The `fanout_*` series names in a PromQL expression, histogram suffixes removed.
fn series(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("fanout_"))
        .map(|w| ["_bucket", "_sum", "_count"].iter().find_map(|s| w.strip_suffix(s)).unwrap_or(w).to_owned())
        .collect()
}

/// Label names used in `by (...)` clauses and `{label=...}` matchers.
fn labels(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for part in expr.split("by (").skip(1) {
        if let Some((list, _)) = part.split_once(')') {
            found.extend(list.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty() && l != "le"));
        }
    }
    for part in expr.split('{').skip(1) {
        if let Some((matchers, _)) = part.split_once('}') {
            found.extend(
                matchers
                    .split(',')
                    .filter_map(|m| m.split(['=', '!', '~']).next())
                    .map(|l| l.trim().to_owned()),
            );
        }
    }
    found
}

#[test]
fn every_dashboard_query_uses_exported_metrics_and_labels() -> anyhow::Result<()> {
    let exported = exported_metrics()?;
    assert!(exported.contains_key("fanout_consumed_total"), "metric scan found {exported:?}");
    let path = repo_root().join("deploy/grafana/dashboards/fanout.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| path.display().to_string())?)?;
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().context("no panels")? {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().context("a target without expr")?;
            let names = series(expr);
            assert!(!names.is_empty(), "panel {title:?} queries no fanout metric: {expr}");
            for name in names {
                let known = exported.get(&name);
                assert!(known.is_some(), "panel {title:?} queries {name}, which nothing exports");
                let allowed = known.cloned().unwrap_or_default();
                for label in labels(expr) {
                    assert!(
                        allowed.contains(&label),
                        "panel {title:?}: {name} has no label {label:?} ({allowed:?})"
                    );
                }
                queried.insert(name);
            }
        }
    }
    for required in [
        "fanout_consumed_total",
        "fanout_consumer_lag",
        "fanout_end_to_end_latency_seconds",
        "fanout_produced_total",
        "fanout_scheduled_pending",
        "fanout_schedule_dispatched_total",
        "fanout_schedule_lateness_seconds",
        "fanout_scheduled_in_window",
        "fanout_gateway_requests_total",
        "fanout_gateway_accept_duration_seconds",
    ] {
        assert!(queried.contains(required), "the dashboard shows nothing of {required}");
    }
    Ok(())
}

#[test]
fn the_expression_scanner_reads_histograms_and_labels() {
    let expr = "histogram_quantile(0.99, sum by (consumer, le) (rate(fanout_end_to_end_latency_seconds_bucket{topic=~\"x\"}[1m])))";
    assert_eq!(series(expr), ["fanout_end_to_end_latency_seconds"]);
    assert_eq!(labels(expr), BTreeSet::from(["consumer".to_owned(), "topic".to_owned()]));
}
