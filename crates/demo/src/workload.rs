//! The demo's events and what they must add up to, computed independently of the services.

use std::collections::BTreeMap;

use fanout_events::{Category, PostPublished};
use rand::{rngs::StdRng, Rng, SeedableRng};

const CITIES: [&str; 6] = ["Beijing", "Shanghai", "Shenzhen", "Chengdu", "Hangzhou", "Wuhan"];

/// One step of the upstream's output: a new event, or the same record sent again (as an
/// at-least-once upstream does when an acknowledgement is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Publish event `index` of [`Workload::events`].
    Publish(usize),
    /// Send event `index` again, with the same `ce_id`.
    Resend(usize),
}

/// What the demo publishes, in order.
#[derive(Debug)]
pub struct Workload {
    /// Distinct events.
    pub events: Vec<PostPublished>,
    /// Publishing order, resends included.
    pub steps: Vec<Step>,
}

impl Workload {
    /// `count` distinct events from `users` authors (a realistic mix: some prolific users, every
    /// category and city), with about 5% of them sent twice, shortly after the first copy.
    pub fn generate(count: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let users = (count / 20).clamp(5, 500) as i64;
        let base_post = 1_000_000 + (seed % 1_000_000) as i64 * 10_000;
        let now = chrono::Utc::now().timestamp_millis();
        let events: Vec<PostPublished> = (0..count)
            .map(|i| {
                // Squaring skews authorship: a few users post a lot, as on a real site.
                let user = (rng.gen::<f64>().powi(2) * users as f64) as i64 + 1;
                let category = match rng.gen_range(0..100) {
                    0..=29 => Category::Job,
                    30..=54 => Category::Housing,
                    55..=79 => Category::Secondhand,
                    _ => Category::Other,
                };
                let city = CITIES[rng.gen_range(0..CITIES.len())];
                PostPublished {
                    post_id: base_post + i as i64,
                    user_id: user,
                    category,
                    city: city.to_owned(),
                    title: format!("{} post #{i} in {city}", category.as_str().to_lowercase()),
                    published_at: now,
                }
            })
            .collect();
        let mut steps = Vec::with_capacity(count + count / 20 + 1);
        let mut pending_resends: Vec<usize> = Vec::new();
        for index in 0..count {
            steps.push(Step::Publish(index));
            if rng.gen_range(0..100) < 5 {
                pending_resends.push(index);
            }
            // Resend a little later, so the copy is not simply adjacent to its original.
            if pending_resends.len() > 3 || (index + 1 == count) {
                steps.extend(pending_resends.drain(..).map(Step::Resend));
            }
        }
        Self { events, steps }
    }

    /// How many records are resends.
    pub fn resends(&self) -> usize {
        self.steps.iter().filter(|s| matches!(s, Step::Resend(_))).count()
    }

    /// The totals the services must show, from the distinct events alone.
    pub fn expected(&self, beans_per_job: i64, pins_per_housing: i64) -> Expected {
        let mut expected = Expected::default();
        for event in &self.events {
            let user = expected.users.entry(event.user_id).or_default();
            user.posts += 1;
            *user.by_category.entry(event.category.as_str().to_owned()).or_default() += 1;
            *user.by_city.entry(event.city.clone()).or_default() += 1;
            match event.category {
                Category::Job => {
                    user.beans += beans_per_job;
                    user.ledger_entries += 1;
                }
                Category::Housing => user.pins += pins_per_housing,
                _ => {}
            }
        }
        expected
    }
}

/// What one user's read APIs must answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserTotals {
    /// Beans balance (rewards).
    pub beans: i64,
    /// Ledger rows (rewards): one per JOB post.
    pub ledger_entries: i64,
    /// Top-placement credits (pinning).
    pub pins: i64,
    /// Posts (stats).
    pub posts: i64,
    /// Posts by category symbol (stats).
    pub by_category: BTreeMap<String, i64>,
    /// Posts by city (stats).
    pub by_city: BTreeMap<String, i64>,
}

/// Totals per user.
#[derive(Debug, Default)]
pub struct Expected {
    /// Keyed by user id.
    pub users: BTreeMap<i64, UserTotals>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_five_percent_are_resent_and_every_resend_follows_its_original() {
        let workload = Workload::generate(2_000, 7);
        let resends = workload.resends();
        assert!((50..=150).contains(&resends), "{resends} resends of 2000");
        let mut published = std::collections::HashSet::new();
        for step in &workload.steps {
            match *step {
                Step::Publish(i) => assert!(published.insert(i)),
                Step::Resend(i) => assert!(published.contains(&i), "resend of {i} before its original"),
            }
        }
        assert_eq!(published.len(), 2_000);
    }

    #[test]
    fn expected_totals_count_distinct_events_only() {
        let workload = Workload::generate(500, 3);
        let expected = workload.expected(10, 2);
        let posts: i64 = expected.users.values().map(|u| u.posts).sum();
        assert_eq!(posts, 500);
        let jobs = workload.events.iter().filter(|e| e.category == Category::Job).count() as i64;
        assert_eq!(expected.users.values().map(|u| u.beans).sum::<i64>(), jobs * 10);
        assert_eq!(expected.users.values().map(|u| u.ledger_entries).sum::<i64>(), jobs);
        let housing = workload.events.iter().filter(|e| e.category == Category::Housing).count() as i64;
        assert_eq!(expected.users.values().map(|u| u.pins).sum::<i64>(), housing * 2);
    }
}
