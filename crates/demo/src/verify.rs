//! The demo's own check: every user's beans, pins and stats, read through the services' HTTP
//! APIs, against the totals computed from the published events.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::Value;

use super::{
    services::Running,
    workload::{Expected, UserTotals},
};

/// Every disagreement, each starting with the service's name.
pub async fn read_apis(running: &Running, expected: &Expected) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("creating an HTTP client")?;
    let mut mismatches = Vec::new();
    for (&user, want) in &expected.users {
        for service in &running.services {
            let url = format!("http://{}/v1/users/{user}/{}", service.http, service.resource);
            let answer = get(&http, &url).await?;
            if let Some(problem) = compare(service.name, user, want, answer.as_ref()) {
                mismatches.push(problem);
            }
        }
    }
    Ok(mismatches)
}

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<Option<Value>> {
    let response = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let status = response.status();
    anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
    Ok(Some(response.json().await.with_context(|| format!("GET {url}: not JSON"))?))
}

fn int(value: Option<&Value>, field: &str) -> i64 {
    value.and_then(|v| v.get(field)).and_then(Value::as_i64).unwrap_or(0)
}

fn counters(value: Option<&Value>, field: &str) -> BTreeMap<String, i64> {
    value
        .and_then(|v| v.get(field))
        .and_then(Value::as_object)
        .map(|o| {
            o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_i64()?))).filter(|(_, n)| *n != 0).collect()
        })
        .unwrap_or_default()
}

/// `None` when the answer agrees. A 404 (no answer) means "nothing recorded", which is right
/// exactly when nothing is expected.
fn compare(service: &str, user: i64, want: &UserTotals, answer: Option<&Value>) -> Option<String> {
    let (got, expected): (String, String) = match service {
        "rewards" => (
            format!("balance {} in {} ledger rows", int(answer, "balance"), int(answer, "ledger_entries")),
            format!("balance {} in {} ledger rows", want.beans, want.ledger_entries),
        ),
        "pinning" => (format!("{} credits", int(answer, "credits")), format!("{} credits", want.pins)),
        "stats" => (
            format!(
                "{} posts {:?} {:?}",
                int(answer, "posts"),
                counters(answer, "by_category"),
                counters(answer, "by_city")
            ),
            format!("{} posts {:?} {:?}", want.posts, want.by_category, want.by_city),
        ),
        other => return Some(format!("{other}: no check for this service")),
    };
    (got != expected).then(|| format!("{service}: user {user} has {got}, expected {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_user_agrees_only_when_nothing_is_expected() {
        let nothing = UserTotals { posts: 1, ..Default::default() };
        assert_eq!(compare("rewards", 7, &nothing, None), None);
        let some = UserTotals { beans: 10, ledger_entries: 1, ..Default::default() };
        let problem = compare("rewards", 7, &some, None).unwrap_or_default();
        assert!(problem.contains("user 7") && problem.contains("expected balance 10"), "{problem}");
    }

    #[test]
    fn stats_compare_every_counter() {
        let want = UserTotals {
            posts: 2,
            by_category: [("JOB".to_owned(), 2)].into(),
            by_city: [("Wuhan".to_owned(), 2)].into(),
            ..Default::default()
        };
        let right =
            serde_json::json!({"posts": 2, "by_category": {"JOB": 2, "OTHER": 0}, "by_city": {"Wuhan": 2}});
        assert_eq!(compare("stats", 1, &want, Some(&right)), None);
        let wrong = serde_json::json!({"posts": 2, "by_category": {"JOB": 1}, "by_city": {"Wuhan": 2}});
        assert!(compare("stats", 1, &want, Some(&wrong)).is_some());
    }
}
